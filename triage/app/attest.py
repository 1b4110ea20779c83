"""Attest manual ED 21-02 steps: one attestation from the command line, or a filled sheet (CSV / YAML).

Over a fleet folder (one case per host), each row goes to the case of its host (``*``: every host case).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage.app.progress import NullProgress, Progress
from triage.case import Case
from triage.errors import ExitCode, UsageError
from triage.fleet import fleet_id_of, host_cases, is_fleet_folder
from triage.report.attest import Attestation, AttestationInput, Checked, check, read_sheet, record
from triage.report.directive import load_directive


@dataclass(frozen=True)
class AttestRequest:
    """What ``triage attest`` is asked: one attestation (``single``) or a sheet (``sheet``), not both."""

    case: Path
    single: AttestationInput | None = None
    sheet: Path | None = None
    examiner: str | None = None  # who runs the command (the custody events' actor; default the case's examiner)


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
    if is_fleet_folder(request.case):
        return _attest_fleet(request, inputs, progress)
    case = _open(request.case, request.examiner)
    try:
        with case.writer():  # one writer at a time; hosts are read under the lock
            case.custody.prepare()
            case.recover()  # leftovers of a killed command, each recorded, before anything is added
            checked = check(inputs, load_directive(), _case_hosts(case))
            progress.message(logging.INFO, f"recording {len(checked)} attestation(s) in {case.path}")
            recorded = record(case, checked, sheet=request.sheet)
    finally:
        case.close()
    return AttestSummary(case=case.path, case_id=case.case_id, recorded=recorded)


def _open(path: Path, examiner: str | None) -> Case:
    case = Case.open(path)
    if examiner:
        case.custody.actor = examiner
    return case


def _case_hosts(case: Case) -> list[str]:
    return sorted({r.source_host for r in case.manifest() if r.source_host})


def _attest_fleet(request: AttestRequest, inputs: list[AttestationInput], progress: Progress) -> AttestSummary:
    """Rows to the host cases of a fleet folder: every row, file and host case checked before any is written."""
    root = Path(request.case)
    cases = host_cases(root)
    checked = check(inputs, load_directive(), sorted(cases))
    per_host = {h: [Checked(c.input, (h,), c.files) for c in checked if h in c.hosts] for h in cases}
    for host, items in per_host.items():
        if not items:
            continue
        case = Case.open(cases[host])
        try:
            if host not in _case_hosts(case):
                raise UsageError(f"nothing attested: the fleet's case for {host} ({case.path}) holds no host {host}")
        finally:
            case.close()
    recorded: list[Attestation] = []
    for host, items in per_host.items():
        if not items:
            continue
        case = _open(cases[host], request.examiner)
        try:
            with case.writer():
                case.custody.prepare()
                case.recover()
                progress.message(logging.INFO, f"recording {len(items)} attestation(s) in {case.path}")
                recorded += record(case, items, sheet=request.sheet)
        finally:
            case.close()
    return AttestSummary(case=root, case_id=fleet_id_of(root), recorded=recorded)
