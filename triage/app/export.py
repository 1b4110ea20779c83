"""Export a case's submission package (``triage export``): verify it, write the package, record the export."""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triage.app.progress import Progress
from triage.app.seal import refuse_unless_verified
from triage.case import Case
from triage.errors import ExitCode, UsageError
from triage.export import build_package
from triage.seal import READ_ONLY_ACTIONS, latest_seal
from triage.verify import VerifyReport, verify_case


@dataclass(frozen=True)
class ExportRequest:
    """What ``triage export`` is asked: the case and the package to write (``.zip``: a zip, else a folder)."""

    case: Path
    to: Path


@dataclass
class ExportSummary:
    """The package written and the custody event that records it."""

    case: Path
    package: dict[str, Any]
    state: dict[str, Any]
    recorded: str
    exit_code: ExitCode = ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` summary."""
        return {
            "case": str(self.case),
            **self.package,
            "state": self.state,
            "recorded": self.recorded,
            "exit_code": int(self.exit_code),
        }


def _check_target(case: Path, out: Path) -> None:
    if out.exists() or out.is_symlink():
        raise UsageError(f"--to {out} exists: export never overwrites")
    if not out.parent.is_dir():
        raise UsageError(f"--to {out}: the folder {out.parent} does not exist")
    inside = out.parent.resolve() / out.name
    if inside.is_relative_to(case.resolve()):
        raise UsageError(f"--to {out} is inside the case: write the package elsewhere")


def case_state(case: Case, rep: VerifyReport) -> dict[str, Any]:
    """What the package says about the case: verify's verdict, the seal, and what changed after it.

    Only facts that stay the same for the same case: no times of this export, no read-only events.
    """
    state: dict[str, Any] = {"verify": rep.verdict, "sealed": rep.seal is not None}
    if rep.seal is None:
        return state
    keys = ("sealed_by", "sealed_at", "seal_event", "custody_head", "signed_by", "signature_ok", "files")
    state["seal"] = {k: rep.seal.get(k) for k in keys}
    _seal, later = latest_seal(case.custody.events)
    changes = [ev for ev in later if ev.get("action") not in READ_ONLY_ACTIONS]
    counts = Counter(str(ev.get("action")) for ev in changes)
    state["changes_after_seal"] = {
        "events": len(changes),
        "by_action": dict(sorted(counts.items())),
        "first": _brief(changes[0]) if changes else None,
        "last": _brief(changes[-1]) if changes else None,
    }
    return state


def _brief(ev: dict[str, Any]) -> str:
    return f"{ev.get('action')} (event {ev.get('seq')}) by {ev.get('actor')} at {ev.get('ts')}"


@contextlib.contextmanager
def _maybe_locked(case: Case) -> Iterator[bool]:
    """The writer lock where the case can be written (then the export is recorded); read-only media: no lock."""
    if not os.access(case.path, os.W_OK):
        yield False
        return
    with case.writer():
        case.custody.prepare()
        yield True


def export(request: ExportRequest, progress: Progress) -> ExportSummary:
    """Verify the case, write its package to ``request.to`` and record an ``export`` custody event."""
    case = Case.open(request.case)
    _check_target(case.path, request.to)
    try:
        with _maybe_locked(case) as writable:
            with progress.bytes("verifying before the export") as advance:
                rep = verify_case(case, record=False, progress=advance)
            refuse_unless_verified(rep, "exported")
            state = case_state(case, rep)
            package = build_package(case.path, case.case_id, request.to, state)
            if writable:
                ev = case.custody.append("export", **package)
                recorded = f"export event {ev['seq']} in {case.custody.path}"
            else:
                recorded = f"not recorded: {case.path} cannot be written; this output is the only record"
    finally:
        case.close()
    return ExportSummary(case=case.path, package=package, state=state, recorded=recorded)
