"""The application layer over a fleet folder: every host case, on one executor, plus the fleet report.

Host planning and the fleet folder itself (index, host cases) are :mod:`triage.fleet`; this module runs the
commands over them. Per-host requests are the single-case requests with the host's case folder.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triage import runner
from triage.app.analyze import (
    AnalyzeRequest,
    AnalyzeSummary,
    executor_for,
    options_of,
    unit_done_to,
    unit_progress_to,
)
from triage.app.collect import CollectRequest, CollectSummary, collect
from triage.app.options import AnalyzerOptions, preload_rules
from triage.app.progress import Progress
from triage.app.report import ReportRequest, ReportSummary, report
from triage.app.verify import VerifyRequest, parse_head_hash
from triage.app.verify import verify as verify_one
from triage.case import Case, safe_host
from triage.errors import ExitCode, InsufficientEvidence, TriageError, UsageError
from triage.executors import Executor
from triage.fleet import SourcePlan, fleet_id_of, host_cases, open_index, worst_verify_code, write_index
from triage.report.build import outcome
from triage.report.fleet import FleetReport, build_fleet_report

SOURCE = "triage.fleet"  # the name fleet messages carry


# -- summaries ------------------------------------------------------------------------------------
@dataclass
class FleetAnalyzeSummary:
    """``analyze`` over a fleet folder: one summary per host case."""

    root: Path
    hosts: dict[str, AnalyzeSummary]

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        return {"fleet": str(self.root), "hosts": {h: s.as_dict() for h, s in self.hosts.items()}}


def fleet_report_summary(fleet: FleetReport) -> dict[str, Any]:
    """The fleet report's outputs, their hashes and the totals (the ``fleet_report`` of a JSON summary)."""
    return {"outputs": fleet.outputs, "sha256": fleet.hashes, "totals": fleet.totals["counts"]}


@dataclass
class FleetReportSummary:
    """``report`` over a fleet folder: every host report and the fleet report."""

    root: Path
    hosts: dict[str, ReportSummary]
    fleet: FleetReport
    exit_code: ExitCode = ExitCode.OK
    exit_reason: str = ""

    def host_dicts(self) -> dict[str, dict[str, Any]]:
        return {h: s.result.as_dict() for h, s in self.hosts.items()}

    def as_dict(self) -> dict[str, Any]:
        return {"fleet": str(self.root), "hosts": self.host_dicts(), "fleet_report": fleet_report_summary(self.fleet)}


@dataclass
class FleetVerifyResult:
    """``verify`` over a fleet folder; a host case that could not be opened has a result that says why."""

    root: Path
    hosts: dict[str, dict[str, Any]]  # host -> the host case's verify summary
    exit_code: ExitCode

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        return {"fleet": str(self.root), "ok": self.ok, "exit_code": int(self.exit_code), "hosts": self.hosts}


@dataclass
class HostRun:
    """One host of a fleet run: its collection (or why it was refused), analysis and report."""

    case: Path | None
    collect: CollectSummary | None = None
    collect_error: InsufficientEvidence | None = None
    analyze: AnalyzeSummary | None = None
    report: ReportSummary | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.collect is not None:
            collected: dict[str, Any] = self.collect.as_dict()
        else:
            err = self.collect_error
            collected = {"error": str(err), "exit_code": int(err.exit_code) if err else int(ExitCode.INSUFFICIENT)}
        return {
            "case": str(self.case) if self.case is not None else None,
            "collect": collected,
            "analyze": self.analyze.as_dict() if self.analyze else None,
            "report": self.report.result.as_dict() if self.report else None,
        }


@dataclass
class FleetRunSummary:
    """``run`` over several hosts: one case per host, and the fleet report."""

    root: Path
    fleet_id: str
    hosts: dict[str, HostRun]
    fleet: FleetReport
    exit_code: ExitCode = ExitCode.OK
    exit_reason: str = ""
    collection_failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "fleet": str(self.root),
            "fleet_id": self.fleet_id,
            "hosts": {h: r.as_dict() for h, r in self.hosts.items()},
            "fleet_report": fleet_report_summary(self.fleet),
        }


# -- steps over host cases --------------------------------------------------------------------------
def analyze_hosts(
    cases: dict[str, Path],
    request: AnalyzeRequest,
    executor: Executor,
    progress: Progress,
    options: AnalyzerOptions | None = None,
) -> dict[str, AnalyzeSummary]:
    """Analyze every host case: the units of all of them go to one executor."""
    if options is None:
        options = options_of(request)
    opened = {host: Case.open(path) for host, path in cases.items()}
    loaded: dict[str, dict[str, dict[str, Any]]] = {h: {} for h in opened}
    try:
        for host, case in opened.items():
            loaded[host] = preload_rules(case, options, progress)
        with progress.units("analyzing the fleet") as update:
            by_path = runner.analyze_cases(
                list(opened.values()),
                executor=executor,
                on_progress=update,
                jobs=max(1, request.execution.jobs),
                only=request.only,
                skip=request.skip,
                force=request.force,
                plugins=request.rules.plugins,
                options=options,
                on_unit_progress=unit_progress_to(progress),
                on_unit_done=unit_done_to(progress),
            )
        summaries = {h: by_path[str(c.path)] for h, c in opened.items()}
    finally:
        for case in opened.values():
            case.close()
    out = {}
    for host, s in summaries.items():
        for err in s.errors[:20]:
            progress.message(
                logging.ERROR,
                f"{host}: analyzer {err['analyzer']} failed on {err['evidence_id']}: {err['message']}",
                SOURCE,
            )
        out[host] = AnalyzeSummary(case=cases[host], run=s, rules_loaded=loaded[host])
    return out


def _report_one(request: ReportRequest) -> ReportSummary:
    """One host's report in a pool worker."""
    return report(request)


def report_hosts(
    cases: dict[str, Path], request: ReportRequest, root: Path, fleet_id: str, progress: Progress
) -> tuple[dict[str, ReportSummary], FleetReport]:
    """Rebuild every host report (``request.jobs`` at a time), then the fleet report."""
    requests = {host: dataclasses.replace(request, case=path) for host, path in cases.items()}
    jobs = min(max(1, request.jobs), len(cases))
    if jobs <= 1:
        reports = {host: report(req) for host, req in requests.items()}
    else:
        # host reports are independent and CPU bound (exports, ledger): one process per host at a time,
        # forked like the runner's pool
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {host: pool.submit(_report_one, req) for host, req in requests.items()}
            reports = {host: fut.result() for host, fut in futures.items()}
    for host, rep in reports.items():
        for w in rep.result.warnings:
            progress.message(logging.WARNING, f"{host}: {w}", SOURCE)
    fleet = build_fleet_report(root, cases, fleet_id=fleet_id, command_line=request.command_line or "")
    return reports, fleet


def _worst(reports: dict[str, ReportSummary], fail_on: str | None, progress: Progress) -> tuple[ExitCode, str]:
    """Exit 1 for findings at or above ``fail_on`` on any host, else 4 when a host lacks evidence."""
    code, reason = outcome([r.result.as_dict() for r in reports.values()], fail_on)
    if reason:
        progress.message(logging.WARNING, f"exit {int(code)}: {reason}", SOURCE)
    return code, reason


# -- commands over a fleet folder -------------------------------------------------------------------
def analyze_fleet(request: AnalyzeRequest, progress: Progress, executor: Executor | None = None) -> FleetAnalyzeSummary:
    """``analyze`` over a fleet folder: every host case, on one executor."""
    options = options_of(request)
    root = Path(request.case)
    if executor is not None:
        return FleetAnalyzeSummary(root, analyze_hosts(host_cases(root), request, executor, progress, options))
    with executor_for(request.execution) as ex:
        return FleetAnalyzeSummary(root, analyze_hosts(host_cases(root), request, ex, progress, options))


def report_fleet(request: ReportRequest, progress: Progress) -> FleetReportSummary:
    """``report`` over a fleet folder: every host report, then the fleet report."""
    root = Path(request.case)
    reports, fleet = report_hosts(host_cases(root), request, root, fleet_id_of(root), progress)
    code, reason = _worst(reports, request.fail_on, progress)
    return FleetReportSummary(root, reports, fleet, exit_code=code, exit_reason=reason)


def fleet_heads(values: tuple[str, ...], hosts: list[str]) -> dict[str, str]:
    """``HOST=HASH`` values -> {host: hash}; a bare hash on a fleet is a usage error."""
    by_upper = {h.upper(): h for h in hosts}
    heads: dict[str, str] = {}
    for value in values:
        name, sep, digest = value.partition("=")
        if not sep:
            raise UsageError(
                "--head: a fleet has one custody head per host; give --head HOST=HASH for each host to check "
                f"(hosts: {', '.join(hosts)})"
            )
        host = by_upper.get(name.strip().upper())
        if host is None:
            raise UsageError(f"--head {name}=...: no host case {name!r} in this fleet (hosts: {', '.join(hosts)})")
        if host in heads:
            raise UsageError(f"--head: host {host} given twice")
        heads[host] = parse_head_hash(digest)
    return heads


def verify_fleet(request: VerifyRequest, progress: Progress) -> FleetVerifyResult:
    """``verify`` over a fleet folder; the exit code is the worst host code (``VERIFY_SEVERITY``)."""
    root = Path(request.case)
    cases = host_cases(root)
    heads = fleet_heads(request.heads, list(cases))
    results: dict[str, dict[str, Any]] = {}
    for host, path in cases.items():
        head = heads.get(host)
        try:
            results[host] = verify_one(VerifyRequest(path, (head,) if head else (), ca=request.ca), progress).as_dict()
        except (TriageError, OSError) as exc:  # a host case that cannot even be opened costs only itself
            code = exc.exit_code if isinstance(exc, TriageError) else ExitCode.USAGE
            what = str(exc) if isinstance(exc, TriageError) else f"{exc.filename or path}: {exc.strerror or exc}"
            results[host] = {
                "ok": False,
                "verdict": "FAILED" if code == ExitCode.INTEGRITY else code.name,
                "exit_code": int(code),
                "problems": [{"where": str(path), "problem": what}],
                "custody_head": {},
            }
    code = worst_verify_code([ExitCode(r["exit_code"]) for r in results.values()])
    return FleetVerifyResult(root, results, code)


def run_fleet(
    collect_request: CollectRequest,
    analyze_request: AnalyzeRequest,
    report_request: ReportRequest,
    plan: SourcePlan,
    executor: Executor,
    progress: Progress,
) -> FleetRunSummary:
    """``run`` over several hosts: collect each host into its case, analyze all, report all."""
    root = Path(collect_request.case).absolute()
    hosts: dict[str, HostRun] = {}
    failures = 0
    try:
        index = open_index(root, collect_request.case_id, collect_request.examiner)
        root.mkdir(parents=True, exist_ok=True)
        if plan.unnamed:  # a fleet folder given one source without a name: it stays what it always was
            plan.hosts.setdefault("unknown-host", []).extend(plan.unnamed)
            plan.unnamed.clear()
        cases: dict[str, Path] = {}
        for host in plan.hosts:
            rel = (Path("hosts") / safe_host(host)).as_posix()
            index["hosts"][host] = rel
            cases[host] = root / rel
        write_index(root, index)
        for host, sources in plan.hosts.items():
            progress.message(logging.INFO, f"collecting host {host} ({len(sources)} sources)", SOURCE)
            req = dataclasses.replace(
                collect_request, case=cases[host], host=host, case_id=f"{index['fleet_id']}-{host}"
            )
            run = hosts[host] = HostRun(case=cases[host])
            try:
                run.collect = collect(req, progress, SourcePlan(sources, explicit={id(s): host for s in sources}))
                failures += run.collect.collection_failures
            except InsufficientEvidence as exc:  # this host's sources hold nothing examinable: the others go on
                progress.message(logging.ERROR, f"host {host}: {exc}", SOURCE)
                run.collect_error = exc
    finally:
        plan.close()
    refused = [h for h, r in hosts.items() if r.collect_error and not (cases[h] / "case.json").exists()]
    for host in refused:  # refused before its case was made: nothing to analyze or report
        del cases[host]
        index["hosts"].pop(host, None)
        hosts[host].case = None
    if refused:
        write_index(root, index)
    all_cases = host_cases(root)
    analyzed = analyze_hosts(cases, analyze_request, executor, progress)
    reports, fleet = report_hosts(all_cases, report_request, root, index["fleet_id"], progress)
    for host, run in hosts.items():
        run.analyze = analyzed.get(host)
        run.report = reports.get(host)
    code, reason = _worst(reports, report_request.fail_on, progress)
    insufficient = [h for h, r in hosts.items() if r.collect_error is not None]
    if code == ExitCode.OK and insufficient:
        progress.message(
            logging.WARNING,
            f"exit {int(ExitCode.INSUFFICIENT)}: nothing examinable for host(s) {', '.join(insufficient)}",
            SOURCE,
        )
        code = ExitCode.INSUFFICIENT
    return FleetRunSummary(
        root, index["fleet_id"], hosts, fleet, exit_code=code, exit_reason=reason, collection_failures=failures
    )
