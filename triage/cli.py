"""The ``triage`` command line: collect, analyze, report, run, verify, list."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from triage import __version__
from triage.errors import ExitCode, TriageError, UsageError
from triage.finding import SEVERITIES

log = logging.getLogger("triage")
stdout = Console(highlight=False, soft_wrap=True)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr")
    common.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress")
    common.add_argument("--examiner", help="who is doing this (custody log); default $TRIAGE_EXAMINER or login")

    collect_opts = argparse.ArgumentParser(add_help=False)
    collect_opts.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="mounted volume, KAPE output, Velociraptor collection (folder or zip), disk image (E01, raw/dd, "
        "split raw, VMDK, VHD, VHDX: give the first segment), memory image or loose files",
    )
    collect_opts.add_argument("--case", required=True, metavar="DIR", help="case folder (created if absent)")
    collect_opts.add_argument("--host", help="host name (default: from the SYSTEM hive or the collection)")
    collect_opts.add_argument(
        "--link",
        nargs="?",
        const="reference",
        choices=("reference", "hard"),
        help="memory images and loose files: reference them in place (default) or hard "
        "link them instead of copying; always hashed",
    )
    collect_opts.add_argument(
        "--as",
        dest="as_type",
        default="auto",
        choices=("auto", "volume", "kape", "velociraptor", "image", "memory", "files"),
        help="what the sources are (default: recognise; disk images by their magic, 'image' reads any "
        "other file as a raw disk)",
    )
    collect_opts.add_argument(
        "--no-verify-image",
        dest="verify_image",
        action="store_false",
        help="do not hash disk images before collecting (by default the whole media stream is hashed and "
        "compared with the hashes an E01 stores; the skip is recorded)",
    )
    collect_opts.add_argument("--kind", help="evidence kind for loose files (default: guessed from the name)")
    collect_opts.add_argument("--case-id", help="case id for a new case")

    analyze_opts = argparse.ArgumentParser(add_help=False)
    analyze_opts.add_argument(
        "--jobs", "-j", type=int, default=os.cpu_count() or 1, help="worker processes of the local pool"
    )
    where = analyze_opts.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="run the analyzer units on this dask.distributed scheduler's workers "
        "(they must see the case folder at the same path)",
    )
    where.add_argument(
        "--cluster", metavar="local:N", help="run the analyzer units on a local dask cluster of N worker processes"
    )
    analyze_opts.add_argument("--only", type=_csv, default=(), help="comma-separated analyzers to run")
    analyze_opts.add_argument("--skip", type=_csv, default=(), help="comma-separated analyzers not to run")
    analyze_opts.add_argument("--force", action="store_true", help="rerun units that already finished")
    analyze_opts.add_argument(
        "--sigma",
        action="append",
        default=[],
        metavar="DIR",
        help="also load these Sigma rule files or folders (e.g. a SigmaHQ rules/windows checkout), unmodified",
    )
    analyze_opts.add_argument(
        "--yara",
        action="append",
        default=[],
        metavar="DIR",
        help="also load these YARA rule files or folders (e.g. signature-base yara/), unmodified",
    )
    analyze_opts.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE_OR_FILE",
        help="import extra analyzers (module name or .py file)",
    )
    analyze_opts.add_argument(
        "--symbols",
        action="append",
        default=[],
        metavar="DIR",
        help="Volatility 3 symbol tables for memory images (ISF folders, windows.zip packs); never downloaded. "
        "Default: $TRIAGE_SYMBOLS, else 'symbols' in ~/.config/triage/config.toml",
    )

    report_opts = argparse.ArgumentParser(add_help=False)
    report_opts.add_argument(
        "--fail-on",
        choices=SEVERITIES,
        default=None,
        help=f"exit {int(ExitCode.FINDINGS)} when a finding is at or above this severity",
    )

    p = argparse.ArgumentParser(
        prog="triage",
        description="Forensic triage of Windows/Exchange servers along CISA Emergency Directive 21-02.",
    )
    p.add_argument("--version", action="version", version=f"triage {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("collect", parents=[common, collect_opts], help="collect sources into a case folder")
    a = sub.add_parser("analyze", parents=[common, analyze_opts], help="run analyzers over a case")
    a.add_argument("case", metavar="CASE")
    r = sub.add_parser("report", parents=[common, report_opts], help="write the findings report of a case")
    r.add_argument("case", metavar="CASE")
    r.add_argument(
        "--jobs", "-j", type=int, default=os.cpu_count() or 1, help="processes for the host reports of a fleet folder"
    )
    sub.add_parser(
        "run",
        parents=[common, collect_opts, analyze_opts, report_opts],
        help="collect, analyze and report in one go",
    )
    v = sub.add_parser("verify", parents=[common], help="re-hash the evidence and walk the custody chain")
    v.add_argument("case", metavar="CASE")
    li = sub.add_parser("list", parents=[common], help="list analyzers and artifact families")
    li.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE")
    return p


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("regipy", "pyarrow"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


# -- commands ---------------------------------------------------------------------------------------
def cmd_collect(args: argparse.Namespace, plan: Any = None) -> dict[str, Any]:
    """Collect the sources (``plan``: already opened, see :mod:`triage.fleet`) into ``args.case``."""
    from triage.case import Case
    from triage.collectors.collect import CollectStats, collect_files, collect_volume
    from triage.fleet import open_sources
    from triage.progress import byte_progress

    plan = plan or open_sources(args.sources, args.as_type)  # usage errors before any write; HOST=PATH too
    sources = list(plan.sources)
    case = Case.create_or_open(args.case, examiner=args.examiner, case_id=args.case_id)
    stats = CollectStats()
    link = {"reference": "reference", "hard": "hardlink", None: None}[args.link]
    # volumes first: their SYSTEM hive names the host, which loose files and memory images of the
    # same command then share (unless --host says otherwise)
    sources.sort(key=lambda src: not src.drives)
    for src in sources:
        if src.image is not None:  # before collecting: a bad image is the first thing the custody log says
            from triage.collectors.diskimage import record_image

            with byte_progress(f"verifying {Path(src.location).name}", enabled=not args.quiet) as advance:
                record_image(case, src, host=args.host, verify=args.verify_image, stats=stats, progress=advance)
    with byte_progress("collecting", enabled=not args.quiet) as advance:
        for src in sources:
            log.info("collecting %s (%s)", src.location, src.source_type)
            named = plan.host_for(src) or args.host  # HOST=PATH names this source's host
            case.custody.append(
                "collect_start", source=src.location, source_type=src.source_type, host=named, link=link
            )
            try:
                if src.drives:
                    collect_volume(case, src, host=named, progress=advance, stats=stats)
                elif src.files:
                    host = named or (next(iter(stats.hosts)) if len(stats.hosts) == 1 else None)
                    collect_files(case, src, host=host, kind=args.kind, link=link, progress=advance, stats=stats)
                else:
                    why = "; ".join(src.notes) or "nothing to collect"
                    log.error("%s: no Windows volume found in this %s source (%s)", src.location, src.source_type, why)
                    stats.add(
                        case.record_attempt(
                            host=named or src.host_hint or "unknown-host",
                            kind="collection",
                            outcome="failure",
                            source_path=src.location,
                            collector="triage.collectors.volume",
                            collector_version="1.0",
                            details=f"no Windows volume found: {why}",
                            source_type=src.source_type,
                        )
                    )
            finally:
                src.close()
    case.custody.append("collect_end", **stats.as_dict())
    case.close()
    summary = {"case": str(case.path), "case_id": case.case_id, **stats.as_dict()}
    if not args.json:
        t = Table(title=f"Collected into {case.path}")
        t.add_column("kind")
        t.add_column("files", justify="right")
        for kind, n in sorted(stats.kinds.items()):
            t.add_row(kind, str(n))
        stdout.print(t)
        stdout.print(
            f"outcomes: {dict(stats.outcomes)}; {stats.bytes:,} bytes; hosts: {', '.join(sorted(stats.hosts))}"
            + (f"; already collected: {stats.skipped_duplicates}" if stats.skipped_duplicates else "")
        )
        for img in stats.images:
            stdout.print(f"disk image {img['image']} ({img['format']}): verification {img['verification']}")
        if stats.exchange:
            stdout.print(
                f"Exchange install root: {stats.exchange.get('root') or 'not found'} "
                f"({stats.exchange.get('how')}: {stats.exchange.get('detail')})"
            )
    return summary


def _analyzer_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    opts: dict[str, dict[str, Any]] = {}
    if getattr(args, "sigma", None):
        missing = [d for d in args.sigma if not os.path.exists(d)]
        if missing:
            raise UsageError(f"--sigma: no such file or folder: {', '.join(missing)}")
        opts["eventlog"] = {"sigma": [os.path.abspath(d) for d in args.sigma]}
        opts["weblog_sigma"] = dict(opts["eventlog"])  # the sets' webserver/proxy rules over IIS/HttpProxy logs
    if getattr(args, "yara", None):
        missing = [d for d in args.yara if not os.path.exists(d)]
        if missing:
            raise UsageError(f"--yara: no such file or folder: {', '.join(missing)}")
        opts["yara"] = {"yara": [os.path.abspath(d) for d in args.yara]}
    if getattr(args, "symbols", None):  # else the memory analyzer reads $TRIAGE_SYMBOLS and the config file
        missing = [d for d in args.symbols if not os.path.exists(d)]
        if missing:
            raise UsageError(f"--symbols: no such file or folder: {', '.join(missing)}")
        opts["memory"] = {"symbols": [os.path.abspath(d) for d in args.symbols]}
    return opts


def _report_sigma(case: Any, dirs: list[str]) -> dict[str, Any]:
    """Load the extra Sigma sets once up front: say what loaded, what was skipped and why."""
    from collections import Counter

    from triage.registry import signature_path
    from triage.sigma import load_rules

    ruleset = load_rules([signature_path("sigma/ed2102"), *dirs])
    reasons = Counter(s.reason.split(":")[0][:80] for s in ruleset.skipped)
    info = {
        "loaded": len(ruleset.loaded),
        "skipped": len(ruleset.skipped),
        "sources": dirs,
        "skip_reasons": dict(reasons.most_common(10)),
    }
    out = case.path / "runs" / "sigma-rules.json"
    out.write_text(json.dumps(info | {"skipped_rules": [s._asdict() for s in ruleset.skipped]}, indent=1, default=str))
    case.custody.append("rules_loaded", engine="sigma", **info)
    log.info(
        "Sigma rules: %d loaded, %d skipped (%s); details in %s",
        info["loaded"],
        info["skipped"],
        ", ".join(f"{k}: {v}" for k, v in reasons.most_common(3)) or "none",
        out,
    )
    return info


def cmd_analyze(args: argparse.Namespace) -> dict[str, Any]:
    from triage.case import Case
    from triage.progress import unit_progress
    from triage.runner import analyze_case

    case = Case.open(args.case)
    sigma = _report_sigma(case, _analyzer_options(args)["eventlog"]["sigma"]) if args.sigma else None
    if args.yara:  # compile once up front (filling the rule cache) and record per file what loaded
        from triage.analyzers.yara.content import report_rule_load

        yara = report_rule_load(case, _analyzer_options(args)["yara"]["yara"])
    with unit_progress("analyzing", enabled=not args.quiet) as update:
        summary = analyze_case(
            case,
            executor=getattr(args, "executor", None),
            jobs=max(1, args.jobs),
            only=args.only,
            skip=args.skip,
            force=args.force,
            plugins=tuple(args.plugin),
            options=_analyzer_options(args),
            on_progress=update,
        )
    case.close()
    for err in summary.errors[:20]:
        log.error("analyzer %s failed on %s: %s", err["analyzer"], err["evidence_id"], err["message"])
    if not args.json:
        stdout.print(
            f"analyze {summary.run_id}: {summary.planned} units planned, {summary.reused} already done, "
            f"statuses {dict(summary.statuses)}, {summary.findings} findings"
        )
    return summary.as_dict() | ({"sigma": sigma} if sigma else {}) | ({"yara": yara} if args.yara else {})


def cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    from triage.case import Case
    from triage.report import ReportOptions, build_report
    from triage.report.summary import ledger_summary_lines

    case = Case.open(args.case)
    opts = ReportOptions(
        command_line=shlex.join(sys.argv),
        rule_dirs=tuple(getattr(args, "sigma", None) or ()) + tuple(getattr(args, "yara", None) or ()),
    )
    res = build_report(case, opts)
    case.close()
    if not args.json:
        t = Table(title=f"Findings of {case.case_id}")
        t.add_column("severity")
        t.add_column("count", justify="right")
        for sev, n in res.by_severity.items():
            t.add_row(sev, str(n))
        stdout.print(t)
        if res.by_analyzer:
            stdout.print("by analyzer: " + ", ".join(f"{a} {n}" for a, n in res.by_analyzer.items()))
        for analyzer, statuses in sorted(res.runs.items()):
            stdout.print(f"analyzer {analyzer}: " + ", ".join(f"{s} {n}" for s, n in sorted(statuses.items())))
        for w in res.warnings:
            log.warning(w)
        ledger = json.loads(Path(res.outputs["ledger.json"]).read_text(encoding="utf-8"))
        for line in ledger_summary_lines(ledger):
            stdout.print(line, markup=False)
        data = f"data:   {res.outputs['findings.parquet']} (csv, jsonl, xlsx, timesketch, stix alongside)"
        stdout.print(data, markup=False)
        stdout.print(f"report: {res.html}", markup=False)
    return res.as_dict()


def cmd_verify(args: argparse.Namespace) -> dict[str, Any]:
    from triage.case import Case
    from triage.progress import byte_progress
    from triage.verify import verify_case

    case = Case.open(args.case)
    with byte_progress("verifying", enabled=not args.quiet) as advance:
        rep = verify_case(case, progress=advance)
    case.close()
    if not args.json:
        for p in rep.problems:
            stdout.print(f"[red]CHANGED[/red] {p['where']}: {p['problem']}", markup=True)
        for w in rep.warnings:
            stdout.print(f"warning {w['where']}: {w['warning']}")
        verdict = "OK" if rep.ok else f"FAILED ({len(rep.problems)} problems)"
        stdout.print(
            f"verify {verdict}: {rep.artifacts_checked} artifacts, {rep.bytes_checked:,} bytes, "
            f"{rep.custody_events} custody events"
        )
    return rep.as_dict()


def cmd_list(args: argparse.Namespace) -> dict[str, Any]:
    from triage.collectors.families import load_families
    from triage.registry import discover, import_failures

    reg = discover(tuple(args.plugin))
    fams = load_families()
    data = {
        "analyzers": [c.describe() for _, c in sorted(reg.items())],
        "import_failures": {k: v.strip().splitlines()[-1] for k, v in import_failures().items()},
        "families": [{"name": f.name, "kind": f.kind, "step": f.step, "paths": list(f.paths)} for f in fams],
    }
    if not args.json:
        t = Table(title="Analyzers")
        for col in ("name", "version", "consumes", "description"):
            t.add_column(col)
        for d in data["analyzers"]:
            t.add_row(d["name"], d["version"], ", ".join(d["consumes"]), d["doc"])
        stdout.print(t)
        t = Table(title="Artifact families")
        for col in ("name", "kind", "step", "paths"):
            t.add_column(col)
        for f in fams:
            t.add_row(f.name, f.kind, str(f.step or ""), "\n".join(f.paths))
        stdout.print(t)
        for mod, err in data["import_failures"].items():
            stdout.print(f"[yellow]failed to import {mod}: {err}[/yellow]")
    return data


def _fail_on(args: argparse.Namespace, summary: dict[str, Any]) -> ExitCode:
    threshold = getattr(args, "fail_on", None)
    worst = summary.get("max_severity")
    if threshold and worst and SEVERITIES.index(worst) >= SEVERITIES.index(threshold):
        return ExitCode.FINDINGS
    return ExitCode.OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    _setup_logging(args)
    from triage import fleet

    try:
        if args.command in ("analyze", "run"):
            from triage.executors import open_executor

            # one executor per command (a dask cluster starts once), closed in the finally below
            args.executor = open_executor(jobs=max(1, args.jobs), scheduler=args.scheduler, cluster=args.cluster)
        code = ExitCode.OK
        if args.command == "collect":
            out: dict[str, Any] = cmd_collect(args)
        elif args.command in ("analyze", "report", "verify") and fleet.is_fleet_folder(args.case):
            # a fleet folder (triage.fleet): the command runs over every host case, plus the fleet report
            if args.command == "analyze":
                out = fleet.analyze_fleet(args)
            else:
                out, code = fleet.report_fleet(args) if args.command == "report" else fleet.verify_fleet(args)
        elif args.command == "analyze":
            out = cmd_analyze(args)
        elif args.command == "report":
            out = cmd_report(args)
            code = _fail_on(args, out)
        elif args.command == "run":
            plan = fleet.plan_sources(args.sources, args.as_type, host=args.host)
            if plan.fleet or fleet.is_fleet_folder(args.case):
                out, code = fleet.run_fleet(args, plan)
            else:
                out = {"collect": cmd_collect(args, plan)}
                args.case = out["collect"]["case"]
                out["analyze"] = cmd_analyze(args)
                out["report"] = cmd_report(args)
                code = _fail_on(args, out["report"])
        elif args.command == "verify":
            out = cmd_verify(args)
            code = ExitCode.OK if out["ok"] else ExitCode.INTEGRITY
        else:
            out = cmd_list(args)
        if args.json:
            print(json.dumps(out, indent=2, default=str, ensure_ascii=False))
        return int(code)
    except TriageError as exc:
        log.error("%s", exc)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        log.error("interrupted; rerun the same command to resume")
        return 130
    except Exception:
        log.exception("internal error (please report it with this traceback)")
        return int(ExitCode.INTERNAL)
    finally:
        if getattr(args, "executor", None) is not None:
            args.executor.close()


__all__ = ["UsageError", "build_parser", "main"]
