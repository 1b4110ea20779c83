"""The ``triage`` command line: collect, analyze, report, run, verify, list."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import errno
import functools
import json
import logging
import os
import shlex
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

# start-up: `triage --help` imports no pandas/pyarrow/rich/engine; each command loads what it uses
# (``triage.app`` resolves its names on first use)
from triage import __version__, app
from triage.errors import ExitCode, TriageError, UsageError
from triage.severities import SEVERITIES

if TYPE_CHECKING:
    from rich.console import Console

    from triage.app.attest import AttestSummary
    from triage.app.progress import Transfer
    from triage.app.reportproc import ReportProcess
    from triage.app.timeline import TimelineSummary
    from triage.progress import UnitBars
    from triage.report.fleet import FleetReport

log = logging.getLogger("triage")


class _Stdout:
    """rich's console on stdout, made on first print."""

    _console: Console | None = None

    def print(self, *objects: Any, **kw: Any) -> None:
        self._get().print(*objects, **kw)

    def load(self) -> None:
        """Make the console and load rich's table (what the summaries print with) ahead of the first print."""
        import rich.table  # noqa: F401

        self._get()

    def _get(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(highlight=False, soft_wrap=True)
        return self._console

    def line(self, text: str) -> None:
        """A line the command composed from its own values (no markup, tabs or control characters, which rich
        would change): the same text, without loading rich for it (a quiet ``analyze`` loads it for nothing else)."""
        print(text, flush=True)


stdout = _Stdout()


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


# examples under each subcommand's --help (what an examiner types most; formats described in the README)
EXAMPLES = {
    "collect": [
        "triage collect /mnt/ex01.E01 --case cases/EX01 --examiner 'A. Examiner'   # an acquired disk image",
        "triage collect kape_output/ --case cases/EX01   # a KAPE or Velociraptor collection, or a plain folder",
        "triage collect EX01-memory.raw --as memory --case cases/EX01 --host EX01",
    ],
    "analyze": [
        "triage analyze cases/EX01 -j 2",
        "triage analyze cases/EX01 --only eventlog --sigma sigma/rules/windows   # add a third-party Sigma set",
        "triage analyze cases/EX01 --only yara --yara signature-base/yara --force",
    ],
    "report": [
        "triage report cases/EX01 --fail-on high   # exit code 1 when a finding is at or above high",
        "triage report fleet/ -j 2   # a fleet folder: one report per host plus the fleet page",
    ],
    "run": [
        "triage run /mnt/ex01.E01 EX01-memory.raw --case cases/EX01 --examiner 'A. Examiner'",
        "triage run hosts/*.E01 --case fleet/ -j 2   # several hosts: a fleet folder",
    ],
    "verify": [
        "triage verify cases/EX01",
        "triage verify cases/EX01 --head 3f1c...   # the custody head printed when the case was handed over",
        "triage verify cases/EX01 --ca agency-ca.pem   # also check the seal's certificate chain",
    ],
    "list": ["triage list", "triage list --plugin my_analyzer.py --json"],
    "timeline": [
        "triage timeline cases/EX01   # CASE/timeline: Timesketch JSONL and plaso-style CSV",
        "triage timeline cases/EX01 --from 2021-03-02 --to 2021-03-04 --format timesketch --out /tmp/ex01-tl",
    ],
}


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

    # typed as plain parsers: the parents are plain ArgumentParsers; each subcommand parser is an AnalyzerOptionsParser
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = p.add_subparsers(
        dest="command", required=True, parser_class=AnalyzerOptionsParser
    )
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
    a.takes_analyzer_options = ru.takes_analyzer_options = True  # type: ignore[attr-defined]
    v = sub.add_parser("verify", parents=[common], help="re-hash the whole case and walk the custody chain")
    v.add_argument("case", metavar="CASE")
    v.add_argument(
        "--head",
        metavar="HASH",
        action="append",
        help="a custody head kept outside the case (printed at the end of every command): the chain must "
        "contain that event; on a fleet folder one per host, HOST=HASH, repeatable",
    )
    at = sub.add_parser(
        "attest",
        parents=[common],
        help="record a person's attestation of an ED 21-02 step (with files), or a filled sheet of them",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  triage attest CASE --step 24 --status done --by 'J. Doe, ISSO' --note 'deny-by-default since 2021-04-20'"
        " --file fw-export.txt\n"
        "  triage attest CASE --step 20 --status done --result clean --by 'J. Doe' --note 'MSERT full scan'"
        " --file msert.log --host EXCH01\n"
        "  triage attest CASE --from attestations.csv   # columns: step,host,status,by,note,files,result\n"
        "then 'triage report CASE' shows them in the ledger, apart from the machine evidence",
    )
    at.add_argument("case", metavar="CASE")
    at.add_argument("--step", help="the ledger step, e.g. 2, 24 or 4.1")
    at.add_argument("--status", help="done | not-done | not-applicable")
    at.add_argument("--by", help="who attests (name and role)")
    at.add_argument("--note", help="what was done, or why not")
    at.add_argument("--file", action="append", default=[], metavar="F", help="a file backing the attestation")
    at.add_argument("--host", default="", help="the host (needed when the case holds several; '*' for all)")
    at.add_argument("--result", default="", help="for a scan attested done: clean | indications")
    at.add_argument("--from", dest="sheet", metavar="SHEET", help="a filled sheet (.csv or .yaml) of attestations")
    tl = sub.add_parser(
        "timeline",
        parents=[common],
        help="every parsed event of a case as one timeline (Timesketch JSONL, plaso-style CSV)",
        description="Every parsed event of the case (EVTX records, Exchange/IIS log rows, NTFS $SI/$FN and file "
        "times, registry key last-write times, memory process start times) in time order, findings as tags. "
        "Example: triage timeline CASE --from 2021-03-02 --to 2021-03-04 --format timesketch",
    )
    tl.add_argument("case", metavar="CASE")
    tl.add_argument("--from", dest="start", metavar="T", help="keep events at or after T (ISO 8601; UTC if no offset)")
    tl.add_argument("--to", dest="end", metavar="T", help="keep events at or before T (ISO 8601; UTC if no offset)")
    tl.add_argument(
        "--format", dest="timeline_format", choices=("timesketch", "csv", "both"), default="both", help="output files"
    )
    tl.add_argument(
        "--out", metavar="DIR", help="write there instead of CASE/timeline (hashes still go to the custody log)"
    )
    li = sub.add_parser("list", parents=[common], help="list analyzers and artifact families")
    li.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE")
    _add_seal_and_export(sub, common, v)
    for name, lines in EXAMPLES.items():
        parser = sub.choices[name]
        if parser.epilog is None:
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
            parser.epilog = "examples:\n" + "\n".join(f"  {line}" for line in lines)
    return p


def _add_seal_and_export(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    verify: argparse.ArgumentParser,
) -> None:
    """The ``seal`` and ``export`` subcommands and verify's ``--ca`` (Sealing and handing over a case)."""
    from triage.seal_names import PASSPHRASE_ENV

    verify.add_argument(
        "--ca",
        metavar="BUNDLE.pem",
        type=Path,
        help="CA certificates (PEM) the seal's signing certificate must chain to (at the seal's time)",
    )
    se = sub.add_parser(
        "seal",
        parents=[common],
        help="verify the case, then sign what it holds (seal/seal.json and a detached signature)",
        epilog="example: triage seal CASE --key examiner.key --cert examiner.crt --by 'A. Examiner'. "
        f"An encrypted key's passphrase comes from ${PASSPHRASE_ENV} or a prompt, never an argument.",
    )
    se.add_argument("case", metavar="CASE")
    se.add_argument(
        "--key",
        required=True,
        type=Path,
        metavar="KEY.pem",
        help="private key: RSA or EC with --cert (CMS signature), or Ed25519 alone (raw signature); never stored",
    )
    se.add_argument("--cert", type=Path, metavar="CERT.pem", help="the key's X.509 certificate (PEM or DER)")
    se.add_argument("--by", required=True, metavar="NAME", help="who seals the case (recorded in the seal)")
    ex = sub.add_parser(
        "export",
        parents=[common],
        help="verify the case and write its submission package (report, ledger, hashes, custody log, seal)",
        epilog="example: triage export CASE --to CASE-2021-001.zip (a name without .zip makes a folder); "
        "check it with 'sha256sum -c SHA256SUMS' in the package",
    )
    ex.add_argument("case", metavar="CASE")
    ex.add_argument("--to", required=True, type=Path, metavar="OUT.zip", help="the package (never overwritten)")


def _setup_logging(args: argparse.Namespace) -> None:
    _configure_logging(args.quiet, args.verbose)


def _configure_logging(quiet: bool, verbose: int) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    for stream in (sys.stdout, sys.stderr):  # evidence names with undecodable bytes print escaped, never raise
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    from triage.progress import ConsoleLogHandler

    handler = ConsoleLogHandler()  # through the bars' console: a log line never breaks a live bar
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("regipy", "pyarrow"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


class _MeanwhileOnPlan:
    """A transfer meter that runs ``meanwhile`` in a thread when the first copies are planned: a collection's
    command process then mostly waits for its copy helper, so what it loads there (the summary's renderer) is
    not paid after the last copy. Joined when the transfer ends: nothing else runs it concurrently."""

    def __init__(self, meter: Transfer, meanwhile: Callable[[], None]) -> None:
        self._meter = meter
        self._meanwhile: Callable[[], None] | None = meanwhile
        self._thread: threading.Thread | None = None

    def plan(self, files: int, nbytes: int) -> None:
        if self._meanwhile is not None:
            self._thread = threading.Thread(target=self._meanwhile, name="triage-meanwhile", daemon=True)
            self._meanwhile = None
            self._thread.start()
        self._meter.plan(files, nbytes)

    def advance(self, nbytes: int) -> None:
        self._meter.advance(nbytes)

    def file_done(self) -> None:
        self._meter.file_done()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class ConsoleProgress:
    """The command line's :class:`triage.app.Progress`: rich bars on stderr, messages through logging.

    While a units bar is open, each unit that reports its own progress gets a transient line under it
    (removed when the unit is over); quiet shows no bar and no line.
    """

    def __init__(self, quiet: bool = False, meanwhile: Callable[[], None] | None = None) -> None:
        self.quiet = quiet
        self._open: list[UnitBars] = []  # units bars open now, innermost last
        # loaded in a thread once a transfer's copies start (the command then mostly waits for its copy helper)
        self.meanwhile = meanwhile

    def bytes(self, description: str) -> AbstractContextManager[Callable[[int], None]]:
        from triage.progress import byte_progress

        return byte_progress(description, enabled=not self.quiet)

    @contextlib.contextmanager
    def transfer(self, description: str) -> Iterator[Transfer]:
        from triage.progress import transfer_progress

        with transfer_progress(description, enabled=not self.quiet) as meter:
            if self.meanwhile is None:
                yield meter
                return
            meanwhile, self.meanwhile = self.meanwhile, None
            loading = _MeanwhileOnPlan(meter, meanwhile)
            try:
                yield loading
            finally:
                loading.join()

    @contextlib.contextmanager
    def units(self, description: str) -> Iterator[Callable[[int, int], None]]:
        from triage.progress import unit_progress

        with unit_progress(description, enabled=not self.quiet) as bars:
            self._open.append(bars)
            try:
                yield bars
            finally:
                self._open.remove(bars)

    def message(self, level: int, text: str, source: str = "triage") -> None:
        logging.getLogger(source).log(level, "%s", text)

    def unit_progress(self, unit: str, done: float, total: float, text: str) -> None:
        if self._open and not self.quiet:
            self._open[-1].unit(unit, done, total, text)

    def unit_finished(self, unit: str) -> None:
        if self._open:
            self._open[-1].finished(unit)


# -- requests from the command line -----------------------------------------------------------------
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


def _collect_request(args: argparse.Namespace) -> app.CollectRequest:
    return app.CollectRequest(
        sources=tuple(args.sources),
        case=Path(args.case),
        host=args.host,
        link=args.link,
        as_type=args.as_type,
        verify_image=args.verify_image,
        kind=args.kind,
        case_id=args.case_id,
        examiner=args.examiner,
        password=args.password,
        key=args.key,
    )


def _rule_inputs(args: argparse.Namespace) -> app.RuleInputs:
    """The rule and symbol folders and plugins named on the command line (the app layer validates them)."""
    from triage.options import declared_options, flag_dests

    # the flags the analyzers declare (added to analyze/run when they parse), by destination
    dests = flag_dests(declared_options())
    return app.RuleInputs(
        plugins=tuple(getattr(args, "plugin", None) or ()),
        **{dest: getattr(args, dest) for dest in dests if getattr(args, dest, None) not in (None, [], ())},
    )


def _analyze_request(args: argparse.Namespace) -> app.AnalyzeRequest:
    return app.AnalyzeRequest(
        case=Path(args.case),
        only=tuple(args.only),
        skip=tuple(args.skip),
        force=args.force,
        rules=_rule_inputs(args),
        execution=app.ExecutorRequest(
            jobs=args.jobs,
            scheduler=args.scheduler,
            cluster=args.cluster,
            unit_time_limit=args.unit_time_limit,
            unit_memory_limit=args.unit_memory_limit,
        ),
    )


def _report_request(args: argparse.Namespace) -> app.ReportRequest:
    return app.ReportRequest(
        case=Path(args.case),
        fail_on=getattr(args, "fail_on", None),
        command_line=shlex.join(_redacted_argv(sys.argv)),
        rule_dirs=tuple(getattr(args, "sigma", None) or ()) + tuple(getattr(args, "yara", None) or ()),
        jobs=max(1, getattr(args, "jobs", 1) or 1),
    )


# -- rendering (stdout; the JSON summary instead with --json) -------------------------------------------
def render_collect(s: app.CollectSummary) -> None:
    from rich.table import Table

    stats = s.stats
    t = Table(title=f"Collected into {s.case}")
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


def render_analyze(s: app.AnalyzeSummary) -> None:
    r = s.run
    stdout.line(
        f"analyze {r.run_id}: {r.planned} units planned, {r.reused} already done, "
        f"statuses {dict(r.statuses)}, {r.findings} findings"
    )


def render_report(s: app.ReportSummary) -> None:
    from rich.table import Table

    res = s.result
    t = Table(title=f"Findings of {s.case_id}")
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
    from triage.report.summary import ledger_summary_lines

    ledger = json.loads(Path(res.outputs["ledger.json"]).read_text(encoding="utf-8"))
    for line in ledger_summary_lines(ledger):
        stdout.print(line, markup=False)
    data = f"data:   {res.outputs['findings.parquet']} (csv, jsonl, xlsx, timesketch, stix alongside)"
    stdout.print(data, markup=False)
    stdout.print(f"report: {res.html}", markup=False)


def render_verify(v: app.VerifyResult) -> None:
    rep = v.report
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
    render_seal_state(rep.seal)


def render_seal_state(seal: dict[str, Any] | None) -> None:
    """Who sealed the case, when, over which custody head, and what the signature says."""
    if seal is None:
        stdout.print("not sealed", markup=False)
        return
    head = seal.get("custody_head") or {}
    stdout.print(
        f"sealed by {seal.get('sealed_by')} at {seal.get('sealed_at')} (seal event {seal.get('seal_event')}, "
        f"custody head event {head.get('seq')}, {seal.get('files')} files)",
        markup=False,
    )
    stdout.print(seal.get("trust") or "signature NOT valid", markup=False)


def render_seal(s: app.SealSummary) -> None:
    d = s.as_dict()
    signer = d["signer"]
    who = signer.get("subject") or f"Ed25519 key SHA256 {signer['public_key_sha256']}"
    stdout.print(
        f"sealed {d['case_id']} by {d['sealed_by']} at {d['sealed_at']}: {d['sealed_files']} files, custody head "
        f"event {d['custody_head_sealed']['seq']}; signed by {who}",
        markup=False,
    )
    for rel in d["seal_files"]:
        stdout.print(f"  {s.case / rel}", markup=False)


def render_export(s: app.ExportSummary) -> None:
    p = s.package
    stdout.print(f"exported {p['files']} files to {p['to']} ({p['format']}, sha256 {p['sha256']})", markup=False)
    stdout.print(f"recorded: {s.recorded}", markup=False)


def render_list(c: app.Catalog) -> None:
    from rich.table import Table

    t = Table(title="Analyzers")
    for col in ("name", "version", "consumes", "description"):
        t.add_column(col)
    for d in c.analyzers:
        t.add_row(d["name"], d["version"], ", ".join(d["consumes"]), d["doc"])
    stdout.print(t)
    t = Table(title="Artifact families")
    for col in ("name", "kind", "step", "paths"):
        t.add_column(col)
    for f in c.families:
        t.add_row(f["name"], f["kind"], str(f["step"] or ""), "\n".join(f["paths"]))
    stdout.print(t)
    t = Table(title="Recognised formats (by content; the name only breaks ties)")
    for col in ("format", "kind", "how", "description"):
        t.add_column(col)
    for f in c.formats:
        t.add_row(f["name"], f["kind"], f["how"], f["description"])
    stdout.print(t)
    for mod, err in c.import_failures.items():
        stdout.print(f"[yellow]failed to import {mod}: {err}[/yellow]")


def render_fleet(fleet: FleetReport) -> None:
    """One row per host and the totals."""
    from rich.table import Table

    t = Table(title=f"Fleet of {len(fleet.hosts)} hosts")
    for col in ("host", "verdict", "exchange", "build", "April SU", "critical/high/medium", "not done", "disconnect"):
        t.add_column(col)
    for r in fleet.hosts:
        c = r["counts"]
        t.add_row(
            r["host"],
            r["verdict"],
            f"{r['exchange_version']} {r['exchange_cu']}".strip() or "-",
            f"{r['exchange_build']} {r['build_status']}".strip() or "-",
            r["updated_april_2021"] or "-",
            f"{c.get('critical', 0)}/{c.get('high', 0)}/{c.get('medium', 0)}",
            str(r["steps_not_done"]),
            "yes" if r["to_disconnect"] else "no",
        )
    stdout.print(t)
    n = fleet.totals["counts"]
    stdout.print(
        f"Exchange servers {n['exchange_servers']} (2013: {n['exchange_2013']}, 2016: {n['exchange_2016']}, "
        f"2019: {n['exchange_2019']}, other: {n['exchange_other']}); updated {n['updated']}, not updated "
        f"{n['not_updated']}, unknown {n['update_unknown']}; compromised {n['compromised']}, suspicious "
        f"{n['suspicious']}; to disconnect {n['to_disconnect']}; hosts with steps not done {n['failed_steps']}",
        markup=False,
    )
    stdout.print(f"fleet report: {fleet.html} (fleet.json, fleet.csv, cisa_fleet.csv alongside)", markup=False)


def render_fleet_analyze(s: app.FleetAnalyzeSummary) -> None:
    for host, h in s.hosts.items():
        r = h.run
        stdout.print(
            f"{host}: {r.planned} units planned, {r.reused} already done, statuses {dict(r.statuses)}, "
            f"{r.findings} findings",
            markup=False,
        )


def render_fleet_verify(v: app.FleetVerifyResult, as_json: bool) -> None:
    if not as_json:
        for host, r in v.hosts.items():
            stdout.print(f"{host}: verify {r['verdict']} (exit {r['exit_code']})", markup=False)
            for key, label in (("problems", "CHANGED"), ("collection_failed", "FAILED"), ("incomplete", "INCOMPLETE")):
                for p in r.get(key, []):
                    stdout.print(f"  {label} {p['where']}: {p['problem']}", markup=False)
            anchor = r.get("anchor")
            if anchor:
                found = f"is event {anchor['seq']}" if anchor["found"] else "is NOT in the chain"
                stdout.print(f"  head {anchor['hash'][:12]} {found}", markup=False)
        stdout.print(f"fleet verify {'OK' if v.ok else v.exit_code.name}: {len(v.hosts)} host cases", markup=False)
    # stderr, like a single case's head: one line per host, each to be kept for 'verify --head HOST=HASH'
    for host, r in v.hosts.items():
        head = r.get("custody_head") or {}
        if head:
            print(
                f"custody head {host}: event {head['seq']} {head['hash']} (keep it; 'triage verify --head "
                f"{host}={head['hash']}')",
                file=sys.stderr,
            )


# -- commands ---------------------------------------------------------------------------------------
def _exit_reason(code: ExitCode, reason: str) -> None:
    if reason:
        log.warning("exit %d: %s", int(code), reason)


def _collect(args: argparse.Namespace, progress: ConsoleProgress) -> app.CollectSummary:
    try:
        s = app.collect(_collect_request(args), progress)
    except app.NothingExaminable as exc:
        if not args.json:
            render_collect(exc.summary)
        raise
    if not args.json:
        render_collect(s)
    return s


def _run(
    args: argparse.Namespace, progress: ConsoleProgress, report_process: ReportProcess | None = None
) -> app.RunSummary | app.FleetRunSummary:
    try:
        request = app.RunRequest.of(_collect_request(args), _analyze_request(args), _report_request(args))
        s = app.run(request, progress, report_process=report_process)
    except app.NothingExaminable as exc:
        if not args.json:
            render_collect(exc.summary)
        raise
    if not isinstance(s, app.RunSummary):  # a fleet (app.RunSummary is loaded: asking for the fleet type would
        if not args.json:  # load the fleet layer, verify and its crypto, which a single host's run never uses)
            render_fleet(s.fleet)
        return s
    if not args.json:
        render_collect(s.collect)
        render_analyze(s.analyze)
        render_report(s.report)
    _exit_reason(s.report.exit_code, s.report.exit_reason)
    return s


if TYPE_CHECKING:  # evaluated, the alias would load every app module
    Summary: TypeAlias = (
        app.SealSummary
        | app.ExportSummary
        | app.CollectSummary
        | app.AnalyzeSummary
        | app.ReportSummary
        | app.VerifyResult
        | app.RunSummary
        | app.Catalog
        | app.FleetAnalyzeSummary
        | app.FleetReportSummary
        | app.FleetVerifyResult
        | app.FleetRunSummary
        | AttestSummary
        | TimelineSummary
    )


def _attest(args: argparse.Namespace, progress: ConsoleProgress) -> AttestSummary:
    """``triage attest``: one attestation from the flags, or a sheet (the flags then stay unset)."""
    from triage.report.attest import AttestationInput

    single_flags = (args.step, args.status, args.by, args.note, args.file, args.result)
    if args.sheet and any(single_flags):
        raise UsageError("attest: --from SHEET takes the attestations from the sheet; drop --step/--status/--by ...")
    if args.sheet:
        request = app.AttestRequest(Path(args.case), sheet=Path(args.sheet), examiner=args.examiner)
    else:
        missing = [f for f, v in (("--step", args.step), ("--status", args.status), ("--by", args.by),
                                  ("--note", args.note)) if not v]  # fmt: skip
        if missing:
            raise UsageError(f"attest: {', '.join(missing)} missing (or give --from SHEET)")
        single = AttestationInput(args.step, args.status, args.by, args.note, args.host, tuple(args.file), args.result)
        request = app.AttestRequest(Path(args.case), single=single, examiner=args.examiner)
    s = app.attest(request, progress)
    if not args.json:
        for a in s.recorded:
            files = f", {len(a.files)} file(s) stored and hashed" if a.files else ""
            stdout.print(f"attested step {a.step} on {a.host}: {a.status} by {a.by}{files}", markup=False)
        stdout.print(f"{len(s.recorded)} attestation(s) recorded; 'triage report {args.case}' shows them in the ledger",
                     markup=False)  # fmt: skip
    return s


def _timeline(args: argparse.Namespace, progress: ConsoleProgress) -> TimelineSummary:
    from triage.app.timeline import TimelineRequest, timeline  # loaded by the command that uses it

    fmt = args.timeline_format
    formats = ("timesketch", "csv") if fmt == "both" else (fmt,)
    request = TimelineRequest(Path(args.case), args.start, args.end, formats, Path(args.out) if args.out else None)
    s = timeline(request, progress)
    if not args.json:
        res = s.result
        window = f", {res.outside_window:,} outside the window" if res.outside_window else ""
        stdout.print(
            f"timeline of {s.case_id}: {res.events:,} events ({res.read:,} read, {res.no_time:,} without a readable "
            f"time{window}); {res.tagged_events:,} tagged by {res.findings_tagging:,} findings, "
            f"{res.findings_as_events:,} findings as events of their own",
            markup=False,
        )
        for name, path in res.outputs.items():
            stdout.print(f"{name}: {path} sha256 {res.hashes[name]}", markup=False)
    _exit_reason(s.exit_code, s.exit_reason)
    return s


def _dispatch(
    args: argparse.Namespace, progress: ConsoleProgress, report_process: ReportProcess | None = None
) -> Summary:
    """Build the request, call the application layer, render the summary (unless --json)."""
    command = args.command
    if command in ("seal", "export"):
        return _seal(args, progress) if command == "seal" else _export(args, progress)
    if command == "collect":
        return _collect(args, progress)
    if command == "run":
        return _run(args, progress, report_process)
    if command == "attest":
        return _attest(args, progress)
    if command == "list":
        c = app.catalog(tuple(args.plugin))
        if not args.json:
            render_list(c)
        return c
    if command == "timeline":
        return _timeline(args, progress)
    fleet = app.is_fleet_folder(args.case)
    if command == "analyze":
        if fleet:  # a fleet folder: the command runs over every host case, plus the fleet report
            fa = app.analyze_fleet(_analyze_request(args), progress)
            if not args.json:
                render_fleet_analyze(fa)
            return fa
        a = app.analyze(_analyze_request(args), progress)
        if not args.json:
            render_analyze(a)
        return a
    if command == "report":
        if fleet:
            fr = app.report_fleet(_report_request(args), progress)
            if not args.json:
                render_fleet(fr.fleet)
            return fr
        r = app.report(_report_request(args))
        if not args.json:
            render_report(r)
        _exit_reason(r.exit_code, r.exit_reason)
        return r
    heads = tuple(args.head or ())
    if fleet:
        fv = app.verify_fleet(app.VerifyRequest(Path(args.case), heads, ca=args.ca), progress)
        render_fleet_verify(fv, args.json)
        return fv
    v = app.verify(app.VerifyRequest(Path(args.case), heads, ca=args.ca), progress)
    if not args.json:
        render_verify(v)
    return v


def _passphrase() -> bytes | None:
    """The seal key's passphrase: from the environment, else asked on the terminal (never an argument)."""
    from triage.seal_names import PASSPHRASE_ENV

    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV].encode()
    if not sys.stdin.isatty():
        return None
    import getpass

    return getpass.getpass("passphrase of the seal key: ").encode() or None


def _refuse_fleet(args: argparse.Namespace) -> None:
    if app.is_fleet_folder(args.case):
        raise UsageError(f"{args.case} is a fleet folder: {args.command} each host case in it")


def _seal(args: argparse.Namespace, progress: ConsoleProgress) -> app.SealSummary:
    _refuse_fleet(args)
    request = app.SealRequest(case=Path(args.case), key=args.key, cert=args.cert, by=args.by, passphrase=_passphrase)
    s = app.seal(request, progress)
    if not args.json:
        render_seal(s)
    return s


def _export(args: argparse.Namespace, progress: ConsoleProgress) -> app.ExportSummary:
    _refuse_fleet(args)
    e = app.export(app.ExportRequest(case=Path(args.case), to=args.to), progress)
    if not args.json:
        render_export(e)
    return e


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


def _start_report_process(argv: Sequence[str]) -> ReportProcess | None:
    """``run``: fork the report process first, while this process has no thread and has imported little; it
    imports the report's modules (pandas) while this one parses, collects and analyzes."""
    if list(argv[:1]) != ["run"] or "-h" in argv or "--help" in argv:
        return None
    from triage.app.reportproc import ReportProcess

    for stream in (sys.stdout, sys.stderr):  # nothing buffered here is written twice
        stream.flush()
    return ReportProcess.start()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    report_process = _start_report_process(argv)
    try:
        return _main(argv, report_process)
    finally:
        if report_process is not None:
            report_process.discard()  # a no-op once it reported


def _main(argv: list[str], report_process: ReportProcess | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    _setup_logging(args)
    if report_process is not None:  # its log lines as this process's
        report_process.setup = functools.partial(_configure_logging, args.quiet, args.verbose)
        if not args.json:  # the summary's renderer loaded while the child reports, not after
            report_process.meanwhile = stdout.load
    if getattr(args, "password", None) or getattr(args, "key", None):
        sys.argv[:] = _redacted_argv(sys.argv)  # reports and fleet files record the command line

    try:
        # a collection's summary renderer is loaded while its copies run (a run's, while its report child works)
        meanwhile = stdout.load if args.command == "collect" and not args.json else None
        summary = _dispatch(args, ConsoleProgress(quiet=args.quiet, meanwhile=meanwhile), report_process)
        code = summary.exit_code
        out = summary.as_dict()
        head = _report_head(args)
        if args.json:
            if head is not None:
                # run: under its last step, so the summary keeps its collect/analyze/report shape
                target = out["report"] if args.command == "run" and isinstance(out.get("report"), dict) else out
                target["custody_head"] = head
            print(json.dumps(out, indent=2, default=str, ensure_ascii=False))
        failed = getattr(summary, "collection_failures", 0)
        if failed and code in (ExitCode.OK, ExitCode.COLLECTION_FAILED):
            log.error("collection incomplete: %d artifact(s) failed (failure rows in the manifest)", failed)
            code = ExitCode.COLLECTION_FAILED
        return int(code)
    except TriageError as exc:
        log.error("%s", exc)
        _report_head(args)
        return int(exc.exit_code)
    except OSError as exc:
        # the case or its folder cannot be written or named: one line, a named code
        os_code = _os_error_code(args, exc)
        if os_code is None:
            log.exception("internal error (please report it with this traceback)")
            return int(ExitCode.INTERNAL)
        where = f"{exc.filename}: " if exc.filename else ""
        log.error("%s%s", where, exc.strerror or exc)
        _report_head(args)
        return int(os_code)
    except KeyboardInterrupt:
        log.error("interrupted; rerun the same command to resume")
        return int(ExitCode.INTERRUPTED)
    except Exception:
        log.exception("internal error (please report it with this traceback)")
        return int(ExitCode.INTERNAL)


def console() -> int:
    """The ``triage`` console script and ``python -m triage``: :func:`main` over ``sys.argv``, then the exit.

    The exit skips tearing the interpreter down (freeing every module and object: pandas, pyarrow, compiled
    rule sets), which cost a tiny run about 0.3 CPU s. Exit handlers still run (logging flushed, worker pools
    joined, temporary folders removed) and both streams are flushed; the case needs nothing more (every command
    closes and syncs it). With another thread still running, or a stream that cannot be flushed, the process
    exits the usual way (the code is returned for ``sys.exit``).
    """
    code = main()
    if threading.active_count() != 1:
        return code
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # e.g. stdout a closed pipe: Python's own exit reports it
        return code
    os._exit(code)


__all__ = ["ConsoleProgress", "UsageError", "build_parser", "console", "main"]
