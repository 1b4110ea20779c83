"""Analyze a case: preload the extra rule sets once, then run every analyzer unit on one executor."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage import runner
from triage.app.options import AnalyzerOptions, RuleInputs, analyzer_options, preload_rules
from triage.app.progress import Progress, unit_key
from triage.case import Case
from triage.errors import ExitCode
from triage.executors import Executor, open_executor, resolve_limits


@dataclass(frozen=True)
class ExecutorRequest:
    """Where analyzer units run and under which per-unit bounds."""

    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    scheduler: str | None = None  # tcp://HOST:PORT of a dask scheduler
    cluster: str | None = None  # local:N, a local dask cluster
    unit_time_limit: float | None = None  # seconds (0: none); None: config file, else the default
    unit_memory_limit: str | None = None  # e.g. 4GiB (0: none); None: config file, else the default


@dataclass(frozen=True)
class AnalyzeRequest:
    """What ``triage analyze`` is asked: which analyzers, with which extra rules, where the units run."""

    case: Path
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    force: bool = False  # rerun units that already finished
    rules: RuleInputs = field(default_factory=RuleInputs)
    execution: ExecutorRequest = field(default_factory=ExecutorRequest)


@dataclass
class AnalyzeSummary:
    """The runner's summary of one case, plus what the extra rule sets loaded."""

    case: Path
    run: runner.AnalyzeSummary
    rules_loaded: dict[str, dict[str, Any]] = field(default_factory=dict)  # engine -> load summary

    @property
    def exit_code(self) -> ExitCode:
        """Analyzing alone decides no verdict: unit errors are reported, the report decides the exit code."""
        return ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` summary."""
        return self.run.as_dict() | self.rules_loaded


def options_of(request: AnalyzeRequest) -> AnalyzerOptions:
    """The request's analyzer options; a named path that does not exist is a usage error."""
    return analyzer_options(request.rules)


@contextlib.contextmanager
def executor_for(request: ExecutorRequest) -> Iterator[Executor]:
    """One executor for a whole command (a dask cluster starts once), closed at the end."""
    limits = resolve_limits(request.unit_time_limit, request.unit_memory_limit)
    ex = open_executor(jobs=request.jobs, scheduler=request.scheduler, cluster=request.cluster, limits=limits)
    try:
        yield ex
    finally:
        ex.close()


def unit_progress_to(progress: Progress) -> runner.UnitProgress:
    """The runner's unit-progress callback, passed on to ``progress``."""

    def forward(analyzer: str, evidence_id: str, done: float, total: float, text: str) -> None:
        progress.unit_progress(unit_key(analyzer, evidence_id), done, total, text)

    return forward


def unit_done_to(progress: Progress) -> runner.UnitDone:
    """The runner's unit-end callback, passed on to ``progress``."""
    return lambda analyzer, evidence_id: progress.unit_finished(unit_key(analyzer, evidence_id))


def analyze(request: AnalyzeRequest, progress: Progress, executor: Executor | None = None) -> AnalyzeSummary:
    """Run the analyzers over the request's case (``executor``: given and left open, else opened here)."""
    options = options_of(request)  # bad paths are usage errors before anything runs
    with contextlib.ExitStack() as stack:
        if executor is None:
            executor = stack.enter_context(executor_for(request.execution))
        case = Case.open(request.case)
        with case.writer():  # one writer at a time
            summary = analyze_into(case, request, options, executor, progress)
        case.close()
    return summary


def analyze_into(
    case: Case, request: AnalyzeRequest, options: AnalyzerOptions, executor: Executor | None, progress: Progress
) -> AnalyzeSummary:
    """Analyze an open case whose writer lock the caller holds."""
    case.custody.prepare()
    case.recover()  # leftovers of a killed command, each recorded
    loaded = preload_rules(case, options, progress)
    if executor is not None:  # workers start now and load analyzers and rules while this process plans
        runner.warm_pool(
            executor, [case], only=request.only, skip=request.skip, plugins=request.rules.plugins, options=options
        )
    with progress.units("analyzing") as update:
        summary = runner.analyze_case(
            case,
            executor=executor,
            jobs=max(1, request.execution.jobs),
            only=request.only,
            skip=request.skip,
            force=request.force,
            plugins=request.rules.plugins,
            options=options,
            on_progress=update,
            on_unit_progress=unit_progress_to(progress),
            on_unit_done=unit_done_to(progress),
        )
    # the durable point is the case's close() (syncfs of its filesystem, then the custody log): one per command
    for err in summary.errors[:20]:
        progress.message(
            logging.ERROR, f"analyzer {err['analyzer']} failed on {err['evidence_id']}: {err['message']}"
        )
    return AnalyzeSummary(case=case.path, run=summary, rules_loaded=loaded)
