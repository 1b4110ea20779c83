"""What a report holds and the exit code it decides: plain data, importable without pandas.

``triage run`` builds the report in a forked process (:mod:`triage.app.reportproc`); the summary it sends back
must not load pandas where it is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from triage.errors import ExitCode
from triage.severities import SEVERITIES


@dataclass
class ReportResult:
    """Where the report went and what it holds."""

    outputs: dict[str, str] = field(default_factory=dict)
    findings: int = 0
    by_severity: dict[str, int] = field(default_factory=dict)
    by_analyzer: dict[str, int] = field(default_factory=dict)
    runs: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    max_severity: str | None = None
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # host -> verdict, cves, ledger tally
    ledger: dict[str, dict[str, int]] = field(default_factory=dict)  # host -> status -> steps
    timesketch_skipped: int = 0
    stix: dict[str, int] = field(default_factory=dict)
    html: str = ""
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def outcome(reports: list[dict[str, Any]], fail_on: str | None) -> tuple[ExitCode, str]:
    """The exit code of ``run``/``report`` over one or more host reports, and a one-line reason.

    Precedence: findings at or above ``fail_on`` first (exit 1: the evidence read already answers),
    then any host whose verdict is "insufficient evidence" (exit 4), else 0.
    """
    if fail_on:
        for rep in reports:
            worst = rep.get("max_severity")
            if worst and SEVERITIES.index(worst) >= SEVERITIES.index(fail_on):
                return ExitCode.FINDINGS, f"findings at or above {fail_on} (worst: {worst})"
    lacking = [
        f"{host}: {'; '.join(h.get('missing') or []) or 'no evidence examined'}"
        for rep in reports
        for host, h in (rep.get("hosts") or {}).items()
        if h.get("verdict") == "insufficient evidence"
    ]
    if lacking:
        more = f" (and {len(lacking) - 1} more hosts)" if len(lacking) > 1 else ""
        return ExitCode.INSUFFICIENT, f"insufficient evidence for a verdict on {lacking[0]}{more}"
    return ExitCode.OK, ""
