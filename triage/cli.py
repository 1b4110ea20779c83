"""The ``triage`` command line: collect, analyze, report, run, verify, list."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import shlex
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from triage import __version__
from triage.errors import CollectionFailed, ExitCode, TriageError, UsageError
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
        help="what the sources are (default: recognise by content: disk images, zips and loose artifacts by their "
        "bytes; 'image' reads any other file as a raw disk)",
    )
    collect_opts.add_argument(
        "--no-verify-image",
        dest="verify_image",
        action="store_false",
        help="do not hash disk images before collecting (by default the whole media stream is hashed and "
        "compared with the hashes an E01 stores; the skip is recorded)",
    )
    collect_opts.add_argument(
        "--kind", help="evidence kind for loose files (default: recognised from their bytes, the name breaking ties)"
    )
    collect_opts.add_argument(
        "--password",
        metavar="PASSWORD",
        help="password of an encrypted Velociraptor collection (or $TRIAGE_COLLECTION_PASSWORD, which keeps it out "
        "of the process list); never logged or stored",
    )
    collect_opts.add_argument(
        "--key",
        metavar="KEY.pem",
        help="private key of the certificate an encrypted (X.509) Velociraptor collection was made for "
        "(or $TRIAGE_COLLECTION_KEY)",
    )
    collect_opts.add_argument("--case-id", help="case id for a new case")

    analyze_opts = argparse.ArgumentParser(add_help=False)
    analyze_opts.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes of the local pool (at most 4 per CPU); every unit runs in a worker process",
    )
    analyze_opts.add_argument(
        "--unit-time-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wall time one analyzer unit may take before its worker is killed (0: none); default: "
        "'unit_time_limit' in ~/.config/triage/config.toml, else 3600 (memory images: 21600)",
    )
    analyze_opts.add_argument(
        "--unit-memory-limit",
        default=None,
        metavar="SIZE",
        help="memory one analyzer unit may add (e.g. 4GiB, 512M; 0: none); default: 'unit_memory_limit' in "
        "the config file, else 8GiB",
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
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE_OR_FILE",
        help="import extra analyzers (module name or .py file)",
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
    # --sigma, --yara, --symbols, ...: the options the analyzers declare, added by analyze and run when used
    from triage.options import AnalyzerOptionsParser

    sub = p.add_subparsers(dest="command", required=True, parser_class=AnalyzerOptionsParser)
    sub.add_parser("collect", parents=[common, collect_opts], help="collect sources into a case folder")
    a = sub.add_parser("analyze", parents=[common, analyze_opts], help="run analyzers over a case")
    a.add_argument("case", metavar="CASE")
    r = sub.add_parser("report", parents=[common, report_opts], help="write the findings report of a case")
    r.add_argument("case", metavar="CASE")
    r.add_argument(
        "--jobs", "-j", type=int, default=os.cpu_count() or 1, help="processes for the host reports of a fleet folder"
    )
    ru = sub.add_parser(
        "run",
        parents=[common, collect_opts, analyze_opts, report_opts],
        help="collect, analyze and report in one go",
    )
    a.takes_analyzer_options = ru.takes_analyzer_options = True
    v = sub.add_parser("verify", parents=[common], help="re-hash the whole case and walk the custody chain")
    v.add_argument("case", metavar="CASE")
    v.add_argument(
        "--head",
        metavar="HASH",
        action="append",
        help="a custody head kept outside the case (printed at the end of every command): the chain must "
        "contain that event; on a fleet folder one per host, HOST=HASH, repeatable",
    )
    li = sub.add_parser("list", parents=[common], help="list analyzers and artifact families")
    li.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE")
    return p


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    for stream in (sys.stdout, sys.stderr):  # evidence names with undecodable bytes print escaped, never raise
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
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
    from triage.fleet import open_sources

    plan = plan or open_sources(args.sources, args.as_type)  # usage errors before any write; HOST=PATH too
    sources = list(plan.sources)
    if args.kind is None:
        from collectors.sources import precheck_examinable

        try:
            precheck_examinable(sources)  # junk only: exit 4 before a case folder is made
        except BaseException:
            plan.close()
            raise
    case = Case.create_or_open(args.case, examiner=args.examiner, case_id=args.case_id)
    with case.writer():  # one writer at a time; a second collect waits for this one
        return _collect_locked(args, plan, case, sources)


def _collect_locked(args: argparse.Namespace, plan: Any, case: Any, sources: list[Any]) -> dict[str, Any]:
    from collectors.collect import CollectStats, collect_source
    from triage.progress import byte_progress

    case.custody.prepare()
    case.recover()  # leftovers of a killed or failed collect, each recorded
    collect_id = uuid.uuid4().hex[:12]
    case.custody.append(
        "collect_begin", collect_id=collect_id, sources=[os.path.abspath(src.location) for src in sources]
    )
    stats = CollectStats()
    link = {"reference": "reference", "hard": "hardlink", None: None}[args.link]
    # volumes first: their SYSTEM hive names the host, which loose files and memory images of the
    # same command then share (unless --host says otherwise)
    sources.sort(key=lambda src: not src.drives)
    for src in sources:
        if src.image is not None:  # before collecting: a bad image is the first thing the custody log says
            from collectors.diskimage import record_image

            with byte_progress(f"verifying {Path(src.location).name}", enabled=not args.quiet) as advance:
                record_image(case, src, host=args.host, verify=args.verify_image, stats=stats, progress=advance)
    with byte_progress("collecting", enabled=not args.quiet) as advance:
        for src in sources:
            log.info("collecting %s (%s)", src.location, src.source_type)
            named = plan.host_for(src) or args.host  # HOST=PATH names this source's host
            case.custody.append(
                "collect_start",
                source=src.location,
                source_type=src.source_type,
                host=named,
                link=link,
                collect_id=collect_id,
            )
            try:
                if not src.drives and not src.files and not src.members:
                    why = "; ".join(src.notes) or "nothing to collect"
                    log.error("%s: nothing found in this %s source (%s)", src.location, src.source_type, why)
                collect_source(case, src, host=named, kind=args.kind, link=link, progress=advance, stats=stats)
            finally:
                src.close()
    failures = len(case.write_failures)
    case.custody.append("collect_end", collect_id=collect_id, write_failures=failures, **stats.as_dict())
    case.close()
    if failures:
        raise CollectionFailed(
            f"{failures} files could not be written into {case.path} (first: {case.write_failures[0]}); "
            "free space and rerun the same collect to resume"
        )
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
    _collection_verdict(args, stats)
    return summary


def _collection_verdict(args: argparse.Namespace, stats: Any) -> None:
    """Nothing examinable is an error (exit 4); failed artifacts set exit 5 once the command has finished."""
    from triage.errors import InsufficientEvidence

    if not stats.examinable:
        failed = f"; {stats.failures} failed" if stats.failures else ""
        raise InsufficientEvidence(
            f"nothing examinable in {', '.join(args.sources)}: {stats.files} file(s) stored, none an event log, hive, "
            f"web or Exchange log, memory image, program or server page{failed} (see the manifest)"
        )
    if stats.failures:
        log.warning("%d artifact(s) could not be collected (failure rows in the manifest)", stats.failures)
        args.collection_failures = stats.failures


def _analyzer_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    from triage.options import analyzer_options
    from triage.registry import discover

    # --plugin analyzers too (by absolute path, as the runner imports them): their config keys count
    plugins = [os.path.abspath(p) if p.endswith(".py") else p for p in getattr(args, "plugin", None) or ()]
    discover(tuple(p for p in plugins if not p.endswith(".py") or os.path.isfile(p)))
    opts = analyzer_options(args)  # declared by the analyzers: flags, environment, config file
    missing = [p for p in getattr(args, "plugin", None) or () if p.endswith(".py") and not os.path.isfile(p)]
    if missing:
        raise UsageError(f"--plugin: no such file: {', '.join(missing)}")
    return opts


def _report_sigma(case: Any, dirs: list[str]) -> dict[str, Any]:
    """Load the extra Sigma sets once up front: say what loaded, what was skipped and why."""
    from triage.options import preload_rules

    return preload_rules(case, {"eventlog": {"sigma": dirs}})["sigma"]


def cmd_analyze(args: argparse.Namespace) -> dict[str, Any]:
    from triage.case import Case

    case = Case.open(args.case)
    with case.writer():  # one writer at a time
        return _analyze_locked(args, case)


def _analyze_locked(args: argparse.Namespace, case: Any) -> dict[str, Any]:
    from triage.progress import unit_progress
    from triage.runner import analyze_case

    case.custody.prepare()
    case.recover()  # leftovers of a killed command, each recorded
    sigma = _report_sigma(case, _analyzer_options(args)["eventlog"]["sigma"]) if args.sigma else None
    if args.yara:  # compile once up front (filling the rule cache) and record per file what loaded
        from analyzers.yara.content import report_rule_load

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


def _redacted_argv(argv: Sequence[str]) -> list[str]:
    """The command line with the value of --password hidden (it is recorded in the report's provenance)."""
    out: list[str] = []
    hide = False
    for arg in argv:
        if hide:
            out.append("***")
            hide = False
        elif arg == "--password":
            out.append(arg)
            hide = True
        elif arg.startswith("--password="):
            out.append("--password=***")
        else:
            out.append(arg)
    return out


def cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    from triage.case import Case
    from triage.report import ReportOptions, build_report
    from triage.report.summary import ledger_summary_lines

    case = Case.open(args.case)
    opts = ReportOptions(
        command_line=shlex.join(_redacted_argv(sys.argv)),
        rule_dirs=tuple(getattr(args, "sigma", None) or ()) + tuple(getattr(args, "yara", None) or ()),
    )
    with case.writer():  # one writer at a time
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


def parse_head_hash(text: str) -> str:
    """A ``--head`` value as 64 lower-case hex digits, else a usage error."""
    anchor = text.strip().lower()
    if len(anchor) != 64 or any(c not in "0123456789abcdef" for c in anchor):
        raise UsageError("--head: expected the 64 hex digits of a custody event hash")
    return anchor


def cmd_verify(args: argparse.Namespace) -> dict[str, Any]:
    from triage.case import Case
    from triage.progress import byte_progress
    from triage.verify import verify_case

    anchor = getattr(args, "head", None)
    if isinstance(anchor, list):  # repeatable for fleets (HOST=HASH); a single case has one head
        if len(anchor) > 1:
            raise UsageError("--head: a single case has one custody head; give --head once")
        anchor = anchor[0] if anchor else None
    if anchor is not None:
        anchor = parse_head_hash(anchor)
    case = Case.open(args.case)
    with byte_progress("verifying", enabled=not args.quiet) as advance:
        rep = verify_case(case, progress=advance, anchor=anchor)
    case.close()
    if not args.json:
        for p in rep.problems:
            stdout.print(f"CHANGED {p['where']}: {p['problem']}", markup=False)
        for p in rep.failed:
            stdout.print(f"FAILED {p['where']}: {p['problem']}", markup=False)
        for p in rep.incomplete:
            stdout.print(f"INCOMPLETE {p['where']}: {p['problem']}", markup=False)
        for w in rep.warnings:
            stdout.print(f"warning {w['where']}: {w['warning']}", markup=False)
        if rep.anchor is not None:
            a = rep.anchor
            text = (
                f"head {a['hash'][:12]} is event {a['seq']} of the chain; {a['events_after']} events came after it"
                if a["found"]
                else f"head {a['hash'][:12]} is NOT in the chain"
            )
            stdout.print(text, markup=False)
        n = len(rep.problems) + len(rep.failed) + len(rep.incomplete)
        verdict = "OK" if rep.ok else f"{rep.verdict} ({n} problems)"
        stdout.print(
            f"verify {verdict}: {rep.artifacts_checked} artifacts, {rep.bytes_checked:,} bytes, "
            f"{rep.files_checked} other files, {rep.custody_events} custody events",
            markup=False,
        )
        if rep.recorded.startswith("not recorded"):
            stdout.print(rep.recorded, markup=False)
    return rep.as_dict()


def cmd_list(args: argparse.Namespace) -> dict[str, Any]:
    from collectors.families import load_families
    from triage.formats.recognize import table as format_table
    from triage.registry import discover, import_failures

    reg = discover(tuple(args.plugin))
    fams = load_families()
    data = {
        "formats": format_table(),
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
        t = Table(title="Recognised formats (by content; the name only breaks ties)")
        for col in ("format", "kind", "how", "description"):
            t.add_column(col)
        for f in data["formats"]:
            t.add_row(f["name"], f["kind"], f["how"], f["description"])
        stdout.print(t)
        for mod, err in data["import_failures"].items():
            stdout.print(f"[yellow]failed to import {mod}: {err}[/yellow]")
    return data


def _fail_on(args: argparse.Namespace, summary: dict[str, Any]) -> ExitCode:
    """Exit 1 for findings at or above --fail-on, else 4 when a host lacks the evidence for a verdict."""
    from triage.report.build import outcome

    code, reason = outcome([summary], getattr(args, "fail_on", None))
    if reason:
        summary["exit_reason"] = reason
        log.warning("exit %d: %s", int(code), reason)
    return code


def _os_error_code(args: argparse.Namespace, exc: OSError) -> ExitCode | None:
    """The exit code of an error from the file system around the case (None: not one of those, a bug)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ExitCode.COLLECTION_FAILED if args.command in ("collect", "run") else ExitCode.INCOMPLETE
    if exc.errno in (
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.ENAMETOOLONG,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENOENT,
        errno.ELOOP,
    ):
        return ExitCode.USAGE
    return None


def _report_head(args: argparse.Namespace) -> dict[str, Any] | None:
    """Print the custody chain's head on stderr: kept elsewhere, it makes truncation and rewriting detectable."""
    case = getattr(args, "case", None)
    if not case or args.command == "list":
        return None
    from triage.custody import parse_head

    try:
        seq, digest = parse_head((Path(case) / "custody.head").read_bytes())
    except (OSError, ValueError):
        return None
    print(f"custody head: event {seq} {digest} (keep it; 'triage verify --head {digest}' checks it)", file=sys.stderr)
    return {"seq": seq, "hash": digest}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    _setup_logging(args)
    from triage import fleet

    if getattr(args, "password", None) or getattr(args, "key", None):
        from collectors.encrypted import set_credentials

        set_credentials(args.password, args.key)
        sys.argv[:] = _redacted_argv(sys.argv)  # reports and fleet files record the command line

    try:
        if args.command in ("analyze", "run"):
            from triage.executors import open_executor, resolve_limits

            _analyzer_options(args)  # bad --sigma/--yara/--plugin paths are usage errors before anything runs
            limits = resolve_limits(args.unit_time_limit, args.unit_memory_limit)
            # one executor per command (a dask cluster starts once), closed in the finally below
            args.executor = open_executor(jobs=args.jobs, scheduler=args.scheduler, cluster=args.cluster, limits=limits)
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
            code = ExitCode(out["exit_code"])
        else:
            out = cmd_list(args)
        head = _report_head(args)
        if args.json:
            if head is not None and isinstance(out, dict):
                # run: under its last step, so the summary keeps its collect/analyze/report shape
                target = out["report"] if args.command == "run" and isinstance(out.get("report"), dict) else out
                target["custody_head"] = head
            print(json.dumps(out, indent=2, default=str, ensure_ascii=False))
        failed = getattr(args, "collection_failures", 0)
        if failed and code == ExitCode.OK:
            log.error("collection incomplete: %d artifact(s) failed (failure rows in the manifest)", failed)
            code = ExitCode.COLLECTION_FAILED
        return int(code)
    except TriageError as exc:
        log.error("%s", exc)
        _report_head(args)
        return int(exc.exit_code)
    except OSError as exc:
        # the case or its folder cannot be written or named: one line, a named code
        code = _os_error_code(args, exc)
        if code is None:
            log.exception("internal error (please report it with this traceback)")
            return int(ExitCode.INTERNAL)
        where = f"{exc.filename}: " if exc.filename else ""
        log.error("%s%s", where, exc.strerror or exc)
        _report_head(args)
        return int(code)
    except KeyboardInterrupt:
        log.error("interrupted; rerun the same command to resume")
        return int(ExitCode.INTERRUPTED)
    except Exception:
        log.exception("internal error (please report it with this traceback)")
        return int(ExitCode.INTERNAL)
    finally:
        if getattr(args, "executor", None) is not None:
            args.executor.close()


__all__ = ["UsageError", "build_parser", "main"]
