"""Run collect, analyze and report in one go, over one host's case or a fleet of hosts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from triage.app.analyze import AnalyzeRequest, AnalyzeSummary, analyze_into, executor_for, options_of
from triage.app.collect import (
    CollectRequest,
    CollectSummary,
    check_collection,
    collect_into,
    open_case,
    precheck,
    set_credentials,
)
from triage.app.progress import Progress
from triage.app.report import ReportRequest, ReportSummary, report_into
from triage.errors import ExitCode
from triage.executors import Executor
from triage.fleet import is_fleet_folder, plan_sources

if TYPE_CHECKING:
    from triage.app.fleet import FleetRunSummary
    from triage.app.reportproc import ReportProcess


@dataclass(frozen=True)
class RunRequest:
    """What ``triage run`` is asked: a collection, then an analysis and a report of the case(s) it fills.

    The case folder is ``collect.case``; the ``case`` of ``analyze`` and ``report`` is not read.
    """

    collect: CollectRequest
    analyze: AnalyzeRequest
    report: ReportRequest

    @classmethod
    def of(cls, collect: CollectRequest, analyze: AnalyzeRequest, report: ReportRequest) -> RunRequest:
        """The three requests, their case folders set to the collection's."""
        return cls(
            collect,
            dataclasses.replace(analyze, case=collect.case),
            dataclasses.replace(report, case=collect.case),
        )


@dataclass
class RunSummary:
    """A single-host run: the summary of each step; ``exit_code`` is the command's."""

    collect: CollectSummary
    analyze: AnalyzeSummary
    report: ReportSummary

    @property
    def collection_failures(self) -> int:
        return self.collect.collection_failures

    @property
    def exit_code(self) -> ExitCode:
        code = self.report.exit_code
        return ExitCode.COLLECTION_FAILED if code == ExitCode.OK and self.collection_failures else code

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` summary."""
        return {"collect": self.collect.as_dict(), "analyze": self.analyze.as_dict(), "report": self.report.as_dict()}


def run(
    request: RunRequest,
    progress: Progress,
    executor: Executor | None = None,
    report_process: ReportProcess | None = None,
) -> RunSummary | FleetRunSummary:
    """Collect, analyze and report; sources of several hosts (or a fleet folder) make one case per host.

    ``report_process``: a :class:`~triage.app.reportproc.ReportProcess` the caller started (before any thread)
    that builds a single host's report with its imports already done; it is ended in every other case.
    Raises :class:`~triage.app.collect.NothingExaminable` (exit 4) when a single host's sources hold
    nothing examinable.
    """
    try:
        set_credentials(request.collect)
        options_of(request.analyze)  # bad --sigma/--yara/--plugin paths are usage errors before anything runs
        if executor is None:
            with executor_for(request.analyze.execution) as ex:
                return _run(request, progress, ex, report_process)
        return _run(request, progress, executor, report_process)
    finally:
        if report_process is not None:
            report_process.discard()  # a no-op once it reported


def _run(
    request: RunRequest, progress: Progress, executor: Executor, report_process: ReportProcess | None
) -> RunSummary | FleetRunSummary:
    creq = request.collect
    plan = plan_sources(list(creq.sources), creq.as_type, host=creq.host)
    if plan.fleet or is_fleet_folder(creq.case):
        if report_process is not None:
            report_process.discard()  # each host's report is the fleet layer's
        # here, not at the top: a single host's run needs neither the fleet layer nor verify and its crypto
        from triage.app.fleet import run_fleet

        return run_fleet(creq, request.analyze, request.report, plan, executor, progress)
    precheck(creq, plan)
    try:
        case = open_case(creq)
    except BaseException:
        plan.close()
        raise
    # the case is opened once and locked for the whole run: no other command writes between the steps
    with case.writer():
        collected = collect_into(case, creq, plan, progress)
        check_collection(creq, collected, progress)
        analyzed = analyze_into(case, request.analyze, options_of(request.analyze), executor, progress)
        if report_process is not None:
            reported = report_process.report(case, request.report)
        else:
            reported = report_into(case, request.report)
    case.close()
    return RunSummary(collected, analyzed, reported)
