"""Runs (analyzer x evidence) units resumably, in a local process pool or on a dask cluster.

Each unit (:mod:`triage.unitrun`) writes ``results/<analyzer>/<evidence_id>.parquet`` and then ``.run.json``
(both via a temporary file and an atomic rename), so a run killed half way leaves only whole results, and the
next run skips every unit that finished. Units reach the executors as typed :class:`triage.tasks.UnitTask`
records. A crashing analyzer, or a worker that dies, becomes an
``error`` run record with its traceback; the findings it had yielded before are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from triage.case import Case, ManifestRow
from triage.custody import utcnow
from triage.executors import Executor, LocalPoolExecutor, UnitLimits
from triage.finding import storable_value
from triage.hashing import hash_file, sha256_bytes
from triage.registry import Analyzer, analyzers, discover, iter_selected
from triage.tasks import UnitSpec, UnitTask
from triage.unitrun import _atomic_write, _died_record, _instance, drop_instances, result_paths, run_unit

__all__ = [
    "AnalyzeSummary",
    "analyze_case",
    "analyze_cases",
    "analyzers",
    "drop_instances",
    "host_group",
    "result_paths",
    "run_unit",
]

log = logging.getLogger(__name__)
DONE = ("success", "no_findings", "skipped")
# a unit's own progress as the caller sees it: (analyzer, evidence_id, done, total, text)
UnitProgress = Callable[[str, str, float, float, str], None]
# a unit's end as the caller sees it (any status, also one not run now): (analyzer, evidence_id)
UnitDone = Callable[[str, str], None]


@dataclass
class AnalyzeSummary:
    """The outcome of one ``triage analyze``."""

    run_id: str
    started: str
    finished: str = ""
    planned: int = 0
    reused: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    findings: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C: the units not run are left for the next run
    limits: dict[str, Any] = field(default_factory=dict)  # the per-unit bounds the units ran under

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["statuses"] = dict(self.statuses)
        return d


def _finished(
    case_dir: Path, analyzer: Analyzer, row: ManifestRow, why: dict[str, str] | None = None, run_id: str = ""
) -> bool:
    """Whether the unit's result on disk may be reused: a finished record of this analyzer, rules and evidence,
    and a result file whose hash is the one the record holds. ``why`` gets the reason a result is not
    trusted (replaced or deleted), for the custody log."""
    parquet, run = result_paths(case_dir, analyzer.name, row.artifact_id)
    try:
        rec = json.loads(run.read_text())
    except (OSError, ValueError):
        return False
    if not (
        rec.get("status") in DONE
        and rec.get("analyzer_version") == analyzer.version
        and rec.get("fingerprint") == analyzer.run_fingerprint(run_id)
        and rec.get("evidence_sha256") == row.sha256
    ):
        return False
    want = rec.get("result_sha256") or ""
    if not want:  # nothing was written (a skipped unit), or a record of an older version
        return rec.get("status") == "skipped" or (not rec.get("result_path") and parquet.exists())
    try:
        got = hash_file(parquet, ("sha256",))[1]["sha256"]
    except OSError:
        got = ""
    if got != want:
        if why is not None:
            why["problem"] = "deleted" if not got else f"sha256 {got} != recorded {want}"
        return False
    return _outputs_intact(case_dir, rec, why)


def _outputs_intact(case_dir: Path, rec: dict[str, Any], why: dict[str, str] | None) -> bool:
    """The unit's side outputs (tables it stored) are all there with the hashes its record lists."""
    for out in rec.get("outputs") or []:
        try:
            got = hash_file(case_dir / str(out["path"]), ("sha256",))[1]["sha256"]
        except (OSError, KeyError, TypeError):
            got = ""
        if got != out.get("sha256"):
            if why is not None:
                why["problem"] = f"side output {out.get('path')} " + ("deleted" if not got else f"sha256 {got} changed")
            return False
    return True


def host_group(analyzer: str, host: str, members: list[ManifestRow]) -> ManifestRow:
    """The stand-in evidence row of a host-scope unit: its hash covers every member's hash."""
    digest = hashlib.sha256()
    for m in sorted(members, key=lambda r: r.artifact_id):
        digest.update(f"{m.artifact_id}:{m.sha256}\n".encode())
    return ManifestRow(
        artifact_id="H" + hashlib.sha256(f"{analyzer}\x00{host}".encode()).hexdigest()[:15],
        kind="host",
        outcome="success",
        source_host=host,
        source_path=f"{len(members)} artifacts of {host}",
        collector="triage.runner",
        collector_version="1",
        collected_at="",
        relpath="",
        sha256=digest.hexdigest(),
    )


@dataclass
class _Planned:
    """One case's share of an analyze_cases call."""

    case: Case
    summary: AnalyzeSummary
    selected: list[type[Analyzer]]
    tasks: list[UnitTask]
    units: list[dict[str, Any]] = field(default_factory=list)  # per unit run now: who ran it


def _plan(
    case: Case,
    selected: list[type[Analyzer]],
    *,
    force: bool,
    plugins: tuple[str, ...],
    options: dict[str, dict[str, Any]],
    limits: UnitLimits,
) -> tuple[_Planned, dict[str, tuple[type[Analyzer], ManifestRow]]]:
    summary = AnalyzeSummary(
        run_id=f"run-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}",
        started=utcnow(),
        limits=limits.as_dict(),
    )
    rows = case.evidence()
    tasks: list[UnitTask] = []
    lookup: dict[str, tuple[type[Analyzer], ManifestRow]] = {}
    for cls in selected:
        planner = _instance(cls, options.get(cls.name, {}))
        units: list[tuple[ManifestRow, list[ManifestRow] | None]] = [(r, None) for r in rows if r.kind in cls.consumes]
        if cls.scope == "host":
            units = []
            for host in sorted({r.source_host for r in rows}):
                group = [r for r in rows if r.source_host == host and r.kind in cls.consumes]
                if group:
                    units.append((host_group(cls.name, host, group), group))
        for row, members in units:
            summary.planned += 1
            why: dict[str, str] = {}
            if not force and _finished(case.path, planner, row, why, summary.run_id):
                summary.reused += 1
                continue
            if why:  # a result on disk that is not the one recorded: say so before redoing it
                log.warning(
                    "%s on %s: %s; running the unit again",
                    cls.name,
                    row.artifact_id,
                    why["problem"]
                    if why["problem"].startswith("side output")
                    else f"the result file was {'deleted' if why['problem'] == 'deleted' else 'replaced'}",
                )
                case.custody.append(
                    "result_redo",
                    analyzer=cls.name,
                    evidence_id=row.artifact_id,
                    result_path=result_paths(case.path, cls.name, row.artifact_id)[0].relative_to(case.path).as_posix(),
                    problem=why["problem"],
                )
            task = UnitTask(
                key=f"triage-{cls.name}-{row.artifact_id}-{summary.run_id}",
                spec=UnitSpec(
                    case_dir=str(case.path.absolute()),  # dask workers run elsewhere, with another cwd
                    case_id=case.case_id,
                    analyzer=cls.name,
                    evidence=row.as_dict(),
                    plugins=plugins,
                    options=options.get(cls.name, {}),
                    members=[m.as_dict() for m in members] if members is not None else None,
                    run_id=summary.run_id,
                ),
                time_limit=limits.time_for(getattr(cls, "unit_time_limit", None)),
            )
            tasks.append(task)
            lookup[task.key] = (cls, row)
    return _Planned(case, summary, selected, tasks), lookup


def analyze_cases(
    cases: Sequence[Case],
    *,
    executor: Executor | None = None,
    jobs: int = 1,
    only: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
    force: bool = False,
    plugins: tuple[str, ...] = (),
    options: dict[str, dict[str, Any]] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    limits: UnitLimits | None = None,
    on_unit_progress: UnitProgress | None = None,
    on_unit_done: UnitDone | None = None,
) -> dict[str, AnalyzeSummary]:
    """Plan the units of several cases and run them all on one executor.

    Returns one summary per case, keyed by ``str(case.path)`` (case ids need not be unique). Each
    case gets its own ``runs/<run_id>.json`` and ``analyze`` custody event, as with
    :func:`analyze_case`. ``executor`` defaults to ``LocalPoolExecutor(jobs)`` (opened and closed
    here); a given executor is used as is and left open. ``on_progress(done, total)`` counts the
    units run now, over all cases. ``limits``: the per-unit time and memory bounds (default: the
    executor's, else :class:`UnitLimits`'s defaults); every unit runs in a child process under them.
    ``on_unit_progress(analyzer, evidence_id, done, total, text)`` gets what long units report of their own
    progress (:meth:`triage.registry.Unit.progress`, e.g. the memory analyzer's scan and plugins);
    ``on_unit_done(analyzer, evidence_id)`` is told when each unit is over (its result is counted), so a
    display can drop that unit's own line.

    Ctrl-C (KeyboardInterrupt) stops the run at once: units in flight and queued are left for the next
    run, each case still gets its run record (``interrupted``) and custody event, and the interrupt
    is raised again.
    """
    options = options or {}
    limits = limits or getattr(executor, "limits", None) or UnitLimits()
    # plugin files by absolute path: dask workers import them with another working directory
    plugins = tuple(os.path.abspath(p) if p.endswith(".py") and os.path.isfile(p) else p for p in plugins)
    discover(plugins)
    selected = list(iter_selected(only, skip))
    plans: list[_Planned] = []
    lookup: dict[str, tuple[_Planned, type[Analyzer], ManifestRow]] = {}
    for case in cases:
        plan, keys = _plan(case, selected, force=force, plugins=plugins, options=options, limits=limits)
        plans.append(plan)
        lookup.update({k: (plan, cls, row) for k, (cls, row) in keys.items()})
    tasks = [t for p in plans for t in p.tasks]
    total, done = len(tasks), 0

    def on_result(task: UnitTask, rec: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        plan = lookup[task.key][0]
        summary = plan.summary
        summary.statuses[rec["status"]] += 1
        summary.findings += rec.get("findings", 0)
        plan.units.append(
            {
                "analyzer": rec["analyzer"],
                "evidence_id": rec["evidence_id"],
                "status": rec["status"],
                "worker": rec.get("worker", ""),
            }
        )
        if rec["status"] == "error":
            summary.errors.append(
                {
                    "analyzer": rec["analyzer"],
                    "evidence_id": rec["evidence_id"],
                    "message": rec.get("message", ""),
                }
            )
        if on_unit_done is not None:
            on_unit_done(rec["analyzer"], rec["evidence_id"])
        if on_progress:
            on_progress(done, total)

    def on_failed(task: UnitTask, why: str) -> None:
        plan, cls, row = lookup[task.key]
        on_result(task, _died_record(plan.case.path, cls, row, why, plan.summary.run_id))

    def finished(task: UnitTask) -> dict[str, Any] | None:
        """The unit's record if this run already wrote it (any status), or it is reusable."""
        plan, cls, row = lookup[task.key]
        try:
            rec = json.loads(result_paths(plan.case.path, cls.name, row.artifact_id)[1].read_text())
        except (OSError, ValueError):
            return None
        if rec.get("run_id") == plan.summary.run_id or _finished(
            plan.case.path, _instance(cls, options.get(cls.name, {})), row, run_id=plan.summary.run_id
        ):
            return dict(rec)
        return None

    def forward(task: UnitTask, done_: float, total_: float, text: str) -> None:
        if on_unit_progress is not None:
            on_unit_progress(task.analyzer, task.evidence_id, done_, total_, text)

    own = executor is None
    ex = executor if executor is not None else LocalPoolExecutor(jobs, limits)
    interrupted = False
    try:
        if tasks:
            ex.preflight(
                [(str(p.case.path.absolute()), sha256_bytes((p.case.path / "case.json").read_bytes())) for p in plans],
                plugins,
            )
            try:
                ex.run(
                    tasks,
                    on_result=on_result,
                    on_failed=on_failed,
                    finished=finished,
                    on_progress=forward if on_unit_progress is not None else None,
                )
            except KeyboardInterrupt:
                interrupted = True
        described = ex.describe()
    finally:
        if own:
            ex.close()
    for plan in plans:
        plan.summary.interrupted = interrupted
        _write_run(plan, described, jobs=jobs, force=force, options=options)
    if interrupted:
        raise KeyboardInterrupt
    return {str(p.case.path): p.summary for p in plans}


def _write_run(
    plan: _Planned, executor: dict[str, Any], *, jobs: int, force: bool, options: dict[str, dict[str, Any]]
) -> None:
    """The case's runs/<run_id>.json and its custody event."""
    case, summary = plan.case, plan.summary
    summary.finished = utcnow()
    run_file = case.path / "runs" / f"{summary.run_id}.json"
    run_file.parent.mkdir(exist_ok=True)
    analyzers_run = {c.name: c.version for c in plan.selected}
    by_worker = Counter(u["worker"] or "unknown" for u in plan.units)
    body = summary.as_dict() | {
        "analyzers": analyzers_run,
        "jobs": jobs,
        "force": force,
        "options": options,  # e.g. extra --sigma/--yara folders, for the report's provenance
        "executor": executor,
        "units": sorted(plan.units, key=lambda u: (u["analyzer"], u["evidence_id"])),
        "results": case.result_hashes(sorted(analyzers_run)),  # verify checks results/ against these
    }
    body = storable_value(json.loads(json.dumps(body, default=str)))  # error messages may quote evidence names
    _atomic_write(run_file, json.dumps(body, indent=1, ensure_ascii=False).encode())
    case.custody.append(
        "analyze",
        run_id=summary.run_id,
        planned=summary.planned,
        reused=summary.reused,
        statuses=dict(summary.statuses),
        findings=summary.findings,
        interrupted=summary.interrupted,
        limits=summary.limits,
        analyzers=analyzers_run,
        executor={k: executor.get(k) for k in ("kind", "address", "workers")},
        units_by_worker=dict(sorted(by_worker.items())),
        run_record=run_file.relative_to(case.path).as_posix(),
        run_record_sha256=hash_file(run_file, ("sha256",))[1]["sha256"],
    )


def analyze_case(
    case: Case,
    *,
    executor: Executor | None = None,
    jobs: int = 1,
    only: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
    force: bool = False,
    plugins: tuple[str, ...] = (),
    options: dict[str, dict[str, Any]] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    limits: UnitLimits | None = None,
    on_unit_progress: UnitProgress | None = None,
    on_unit_done: UnitDone | None = None,
) -> AnalyzeSummary:
    """Plan and run all units of the selected analyzers over the case's evidence.

    ``options`` maps an analyzer name to its options (e.g. ``{"eventlog": {"sigma": [DIR]}}``).
    ``executor``: where units run (default: a local pool of ``jobs`` processes).
    """
    return analyze_cases(
        [case],
        executor=executor,
        jobs=jobs,
        only=only,
        skip=skip,
        force=force,
        plugins=plugins,
        options=options,
        on_progress=on_progress,
        limits=limits,
        on_unit_progress=on_unit_progress,
        on_unit_done=on_unit_done,
    )[str(case.path)]
