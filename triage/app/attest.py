"""Attest manual ED 21-02 steps: one attestation from the command line, or a filled sheet (CSV / YAML)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage.app.progress import NullProgress, Progress
from triage.case import Case
from triage.errors import ExitCode, UsageError
from triage.report.attest import Attestation, AttestationInput, check, read_sheet, record
from triage.report.directive import load_directive


@dataclass(frozen=True)
class AttestRequest:
    """What ``triage attest`` is asked: one attestation (``single``) or a sheet (``sheet``), not both."""

    case: Path
    single: AttestationInput | None = None
    sheet: Path | None = None


@dataclass
class AttestSummary:
    """The attestations recorded (one per step and host) and the command's exit code."""

    case: Path
    case_id: str
    recorded: list[Attestation] = field(default_factory=list)
    exit_code: ExitCode = ExitCode.OK

    @property
    def files_stored(self) -> int:
        return sum(len(a.files) for a in self.recorded)

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` summary."""
        return {
            "case": str(self.case),
            "case_id": self.case_id,
            "exit_code": int(self.exit_code),
            "attestations": [a.as_dict() for a in self.recorded],
            "files_stored": self.files_stored,
        }


def attest(request: AttestRequest, progress: Progress | None = None) -> AttestSummary:
    """Check every attestation (and open every attached file) first, then record them all in the case.

    A bad field is a :class:`UsageError` (exit 2) naming the row; an attached file that cannot be read an
    :class:`~triage.report.attest.AttestationFileError` (exit 5); in both cases nothing is recorded.
    """
    progress = progress or NullProgress()
    if (request.single is None) == (request.sheet is None):
        raise UsageError("attest: give either --step/--status/--by/--note or --from SHEET")
    inputs = [request.single] if request.single is not None else read_sheet(request.sheet)  # type: ignore[arg-type]
    case = Case.open(request.case)
    try:
        with case.writer():  # one writer at a time; hosts are read under the lock
            case.custody.prepare()
            case.recover()  # leftovers of a killed command, each recorded, before anything is added
            hosts = sorted({r.source_host for r in case.manifest() if r.source_host})
            checked = check(inputs, load_directive(), hosts)
            progress.message(logging.INFO, f"recording {len(checked)} attestation(s) in {case.path}")
            recorded = record(case, checked, sheet=request.sheet)
    finally:
        case.close()
    return AttestSummary(case=case.path, case_id=case.case_id, recorded=recorded)
