"""Collect sources into a case: recognise them, verify disk images, copy and hash, record custody."""

from __future__ import annotations

import gc
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from collectors.collect import CollectStats, collect_source
from collectors.sources import Source
from triage.app.progress import Progress
from triage.case import Case
from triage.errors import CollectionFailed, ExitCode, InsufficientEvidence
from triage.fleet import SourcePlan, open_sources

SourceType = Literal["auto", "volume", "kape", "velociraptor", "image", "memory", "files"]
LINK_STORAGE: dict[str | None, str | None] = {"reference": "reference", "hard": "hardlink", None: None}


@dataclass(frozen=True)
class CollectRequest:
    """What ``triage collect`` is asked: the sources, the case folder and how to treat the sources."""

    sources: tuple[str, ...]  # paths, or HOST=PATH
    case: Path
    host: str | None = None  # every source's host (default: from the SYSTEM hive or the collection)
    link: Literal["reference", "hard"] | None = None  # memory images and loose files: not copied
    as_type: SourceType = "auto"
    verify_image: bool = True  # hash disk images before collecting
    kind: str | None = None  # evidence kind of loose files
    case_id: str | None = None  # for a new case
    examiner: str | None = None
    password: str | None = None  # of an encrypted Velociraptor collection; never logged or stored
    key: str | None = None  # private key (PEM file) of an X.509-encrypted collection

    def __repr__(self) -> str:  # the password never reaches a log line or traceback
        hidden = "***" if self.password else None
        return (
            f"CollectRequest(sources={self.sources!r}, case={str(self.case)!r}, host={self.host!r}, "
            f"password={hidden})"
        )


@dataclass
class CollectSummary:
    """What one collection stored (``stats``) in which case."""

    case: Path
    case_id: str
    stats: CollectStats

    @property
    def collection_failures(self) -> int:
        """Artifacts that could not be collected (failure rows in the manifest)."""
        return self.stats.failures

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.COLLECTION_FAILED if self.collection_failures else ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` summary."""
        return {"case": str(self.case), "case_id": self.case_id, **self.stats.as_dict()}


class NothingExaminable(InsufficientEvidence):
    """The sources held nothing examinable (exit 4); ``summary`` says what was stored nonetheless."""

    def __init__(self, message: str, summary: CollectSummary) -> None:
        super().__init__(message)
        self.summary = summary


def set_credentials(request: CollectRequest) -> None:
    """Make the request's password or key known to the collection readers of this process."""
    if request.password or request.key:
        from collectors.encrypted import set_credentials as _set

        _set(request.password, request.key)


def open_plan(request: CollectRequest) -> SourcePlan:
    """Recognise the request's sources (``HOST=PATH`` allowed): usage errors before anything is written."""
    set_credentials(request)
    return open_sources(list(request.sources), request.as_type)


def precheck(request: CollectRequest, plan: SourcePlan) -> None:
    """Refuse sources that hold only junk (exit 4) before a case folder is made; closes the plan then."""
    if request.kind is None:
        from collectors.sources import precheck_examinable

        try:
            precheck_examinable(list(plan.sources))
        except BaseException:
            plan.close()
            raise


def open_case(request: CollectRequest) -> Case:
    """The request's case folder, created if absent."""
    return Case.create_or_open(request.case, examiner=request.examiner, case_id=request.case_id)


def collect(request: CollectRequest, progress: Progress, plan: SourcePlan | None = None) -> CollectSummary:
    """Collect the request's sources (``plan``: already opened, e.g. one host of a fleet) into its case.

    Raises :class:`NothingExaminable` (exit 4) when nothing examinable was stored, :class:`CollectionFailed`
    (exit 5) when the case could not be written; failed artifacts are counted in the summary.
    """
    if plan is None:
        plan = open_plan(request)
    else:
        set_credentials(request)
    precheck(request, plan)
    try:
        case = open_case(request)
    except BaseException:
        plan.close()
        raise
    with case.writer():  # one writer at a time; a second collect waits for this one
        summary = collect_into(case, request, plan, progress)
    case.close(files=False)  # _collect_locked ended with the case's syncfs; a second one waited for others' writes
    return check_collection(request, summary, progress)


def collect_into(case: Case, request: CollectRequest, plan: SourcePlan, progress: Progress) -> CollectSummary:
    """Collect into an open case whose writer lock the caller holds; closes the plan's sources."""
    sources: list[Source] = list(plan.sources)
    try:
        return _collect_locked(case, request, plan, sources, progress)
    finally:
        plan.close()


def _collect_locked(
    case: Case, request: CollectRequest, plan: SourcePlan, sources: list[Source], progress: Progress
) -> CollectSummary:
    case.custody.prepare()
    case.recover()  # leftovers of a killed or failed collect, each recorded
    collect_id = uuid.uuid4().hex[:12]
    case.custody.append(
        "collect_begin", collect_id=collect_id, sources=[os.path.abspath(src.location) for src in sources]
    )
    stats = CollectStats()
    link = LINK_STORAGE[request.link]
    # volumes first: their SYSTEM hive names the host, which loose files and memory images of the
    # same command then share (unless the request names the host)
    sources.sort(key=lambda src: not src.drives)
    for src in sources:
        if src.image is not None:  # before collecting: a bad image is the first thing the custody log says
            from collectors.images.record import record_image

            with progress.bytes(f"verifying {Path(src.location).name}") as advance:
                record_image(
                    case, src, host=request.host, verify=request.verify_image, stats=stats, progress=advance
                )
    # what is loaded so far lives as long as the command: the collector's garbage collections skip it (they
    # scanned every module's objects again and again while thousands of rows were made)
    gc.freeze()
    try:
        _collect_sources(case, request, plan, sources, progress, stats, collect_id, link)
    finally:
        gc.unfreeze()  # a library caller's later garbage is collected as before
    failures = len(case.write_failures)
    case.custody.append("collect_end", collect_id=collect_id, write_failures=failures, **stats.as_dict())
    case.sync()
    if failures:
        raise CollectionFailed(
            f"{failures} files could not be written into {case.path} (first: {case.write_failures[0]}); "
            "free space and rerun the same collect to resume"
        )
    return CollectSummary(case=case.path, case_id=case.case_id, stats=stats)


def _collect_sources(
    case: Case,
    request: CollectRequest,
    plan: SourcePlan,
    sources: list[Source],
    progress: Progress,
    stats: CollectStats,
    collect_id: str,
    link: str | None,
) -> None:
    # the sources are walked before they are copied: the display shows files and bytes of their totals and an ETA
    with progress.transfer("collecting") as meter, case.batch():
        for src in sources:
            progress.message(logging.INFO, f"collecting {src.location} ({src.source_type})")
            named = plan.host_for(src) or request.host  # HOST=PATH names this source's host
            case.custody.append(
                "collect_start",
                source=src.location,
                source_type=src.source_type,
                host=named,
                link=link,
                collect_id=collect_id,
            )
            try:
                if not src.drives and not src.files and not src.members:
                    why = "; ".join(src.notes) or "nothing to collect"
                    progress.message(
                        logging.ERROR, f"{src.location}: nothing found in this {src.source_type} source ({why})"
                    )
                collect_source(case, src, host=named, kind=request.kind, link=link, progress=meter, stats=stats)
            finally:
                src.close()


def check_collection(request: CollectRequest, summary: CollectSummary, progress: Progress) -> CollectSummary:
    """Nothing examinable is an error (exit 4); failed artifacts are a warning here and exit 5 at the end."""
    stats = summary.stats
    if not stats.examinable:
        failed = f"; {stats.failures} failed" if stats.failures else ""
        raise NothingExaminable(
            f"nothing examinable in {', '.join(request.sources)}: {stats.files} file(s) stored, none an event log, "
            f"hive, web or Exchange log, memory image, program or server page{failed} (see the manifest)",
            summary,
        )
    if stats.failures:
        progress.message(
            logging.WARNING, f"{stats.failures} artifact(s) could not be collected (failure rows in the manifest)"
        )
    return summary
