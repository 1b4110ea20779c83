"""Verify a case: re-hash every artifact and file, walk the custody chain, check a head kept elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triage.app.progress import Progress
from triage.case import Case
from triage.errors import ExitCode, UsageError
from triage.verify import VerifyReport, verify_case


@dataclass(frozen=True)
class VerifyRequest:
    """What ``triage verify`` is asked: the case, and custody heads kept outside it (``--head``)."""

    case: Path
    heads: tuple[str, ...] = ()  # a case: one hash; a fleet folder: HOST=HASH per host
    ca: Path | None = None  # a PEM bundle a sealed case's signing certificate must chain to (--ca)


@dataclass
class VerifyResult:
    """What verify checked and found; ``exit_code`` is the command's."""

    case: Path
    report: VerifyReport

    @property
    def exit_code(self) -> ExitCode:
        return self.report.exit_code

    @property
    def ok(self) -> bool:
        return self.report.ok

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` summary."""
        return self.report.as_dict()


def parse_head_hash(text: str) -> str:
    """A ``--head`` value as 64 lower-case hex digits, else a usage error."""
    anchor = text.strip().lower()
    if len(anchor) != 64 or any(c not in "0123456789abcdef" for c in anchor):
        raise UsageError("--head: expected the 64 hex digits of a custody event hash")
    return anchor


def single_head(heads: tuple[str, ...]) -> str | None:
    """The one custody head of a single case (a usage error when several are given)."""
    if len(heads) > 1:
        raise UsageError("--head: a single case has one custody head; give --head once")
    return parse_head_hash(heads[0]) if heads else None


def verify(request: VerifyRequest, progress: Progress) -> VerifyResult:
    """Verify the request's case (read-only but for the recorded ``verify`` custody event)."""
    anchor = single_head(request.heads)
    case = Case.open(request.case)
    with progress.bytes("verifying") as advance:
        rep = verify_case(case, progress=advance, anchor=anchor, ca=request.ca)
    case.close()
    return VerifyResult(case=case.path, report=rep)
