"""Many hosts in one command: sources assigned to hosts, one complete case per host, and a fleet report.

``triage run`` recognises every source first, then assigns it to a host:

- volumes, KAPE outputs, Velociraptor collections and disk images: by the computer name in their SYSTEM
  hive, else the collection's host name;
- memory images and loose files: by ``HOST=PATH`` on the command line, or by a file name that starts with
  exactly one known host name followed by a non-alphanumeric character (``EXCH01-memory.raw``); with
  several hosts and no such match the command stops with a usage error listing the hosts.
  ``HOST=PATH`` also names the host of a volume whose hive does not.

One host keeps the single-case layout. Several hosts (or a ``--case`` folder that already is a fleet) make
a fleet folder::

    DIR/fleet/index.json       fleet id, examiner, tool version, host -> host case folder
    DIR/hosts/<HOST>/          a complete case per host (collect, analyze, report, verify as usual)
    DIR/fleet/                 fleet.json, fleet.csv, fleet.html, cisa_fleet.csv (triage.report.fleet)

Hosts are collected one after another (I/O bound); the analysis of all host cases goes to one executor.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shlex
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collectors.sources import Source, open_source_path
from triage.case import safe_host
from triage.errors import ExitCode, InsufficientEvidence, UsageError

log = logging.getLogger(__name__)
INDEX = Path("fleet") / "index.json"


# -- sources -> hosts -------------------------------------------------------------------------------
def split_source_arg(arg: str) -> tuple[str | None, str]:
    """``HOST=PATH`` -> (HOST, PATH); a path that exists as given (even with ``=`` in it) stays a path."""
    if os.path.lexists(arg) or "=" not in arg:
        return None, arg
    host, path = arg.split("=", 1)
    if not host.strip() or not path or "/" in host or os.sep in host:
        return None, arg
    return host.strip(), path


@dataclass
class SourcePlan:
    """The recognised sources and the host each belongs to."""

    sources: list[Source]
    explicit: dict[int, str] = field(default_factory=dict)  # id(source) -> host named on the command line
    hosts: dict[str, list[Source]] = field(default_factory=dict)  # host -> its sources (fleet planning)
    unnamed: list[Source] = field(default_factory=list)  # volumes without a name, loose files without a host

    @property
    def fleet(self) -> bool:
        """More than one host: the run makes one case per host."""
        return len(self.hosts) + (1 if self.unnamed and not self.hosts else 0) > 1

    def host_for(self, src: Source) -> str | None:
        return self.explicit.get(id(src))

    def close(self) -> None:
        for src in self.sources:
            src.close()


def open_sources(args: list[str], as_type: str) -> SourcePlan:
    """Recognise every source (``HOST=PATH`` allowed); usage errors before anything is written."""
    plan = SourcePlan([])
    try:
        for arg in args:
            host, path = split_source_arg(arg)
            src = open_source_path(path, as_type)
            plan.sources.append(src)
            if host:
                plan.explicit[id(src)] = safe_host(host)
    except BaseException:
        plan.close()
        raise
    return plan


def _volume_name(src: Source) -> str | None:
    from collectors.hostinfo import computer_name

    sysdrive = next((d for d, r in src.drives.items() if r.child("Windows") is not None), next(iter(src.drives)))
    name = computer_name(src.drives[sysdrive]) or src.host_hint
    return safe_host(name) if name else None


def _prefix_matches(name: str, hosts: list[str]) -> list[str]:
    base = name.casefold()
    out = []
    for h in hosts:
        key = h.casefold()
        if base.startswith(key) and (len(base) == len(key) or not base[len(key)].isalnum()):
            out.append(h)
    return out


def assign_hosts(plan: SourcePlan, host: str | None = None) -> SourcePlan:
    """Fill ``plan.hosts``: which host each source belongs to (``--host`` puts everything on one host)."""
    plan.hosts.clear()
    plan.unnamed.clear()
    if host:
        plan.hosts[safe_host(host)] = list(plan.sources)
        return plan
    loose: list[Source] = []
    for src in plan.sources:
        name = plan.host_for(src)
        if name is None and src.drives:
            name = _volume_name(src)
        if name is None:
            (plan.unnamed if src.drives else loose).append(src)
        else:
            # Windows computer names ignore case: EXCH01 from a hive and exch01=PATH are one host
            name = next((h for h in plan.hosts if h.casefold() == name.casefold()), name)
            if id(src) in plan.explicit:
                plan.explicit[id(src)] = name  # collected under the spelling the host already has
            plan.hosts.setdefault(name, []).append(src)
    known = list(plan.hosts)
    for src in loose:
        if len(known) <= 1:
            # one host (or none): loose files go with it, as a single-host run always did
            (plan.hosts[known[0]] if known else plan.unnamed).append(src)
            continue
        matches = _prefix_matches(os.path.basename(src.location.rstrip("/")), known)
        if len(matches) != 1:
            why = "starts with several host names" if matches else "does not start with a host name"
            raise UsageError(
                f"{src.location}: cannot tell which host this {src.source_type} source belongs to (its name {why}); "
                f"name it as HOST=PATH or give it a name starting with one of the hosts: {', '.join(known)}"
            )
        plan.hosts[matches[0]].append(src)
    if plan.unnamed and known:
        names = ", ".join(s.location for s in plan.unnamed)
        raise UsageError(
            f"no host name in the SYSTEM hive or the collection of {names}; with several hosts in one run, "
            f"name it as HOST=PATH (hosts so far: {', '.join(known)})"
        )
    return plan


def plan_sources(args: list[str], as_type: str, host: str | None = None) -> SourcePlan:
    """Open and assign the sources of a ``triage run``."""
    plan = open_sources(args, as_type)
    try:
        return assign_hosts(plan, host)
    except BaseException:
        plan.close()
        raise


# -- fleet folders ----------------------------------------------------------------------------------
def is_fleet_folder(path: str | os.PathLike[str]) -> bool:
    """A folder made by a fleet run: ``fleet/index.json`` or host cases under ``hosts/``, no ``case.json``."""
    p = Path(path)
    if (p / "case.json").exists():
        return False
    if (p / INDEX).is_file():
        return True
    hosts = p / "hosts"
    return hosts.is_dir() and any((d / "case.json").is_file() for d in hosts.iterdir())


def host_cases(root: Path) -> dict[str, Path]:
    """Host name -> host case folder, from the index (and any host case folder not in it)."""
    out: dict[str, Path] = {}
    try:
        index = json.loads((root / INDEX).read_text(encoding="utf-8"))
        for host, rel in index.get("hosts", {}).items():
            out[str(host)] = root / rel
    except (OSError, ValueError):
        pass
    if (root / "hosts").is_dir():
        known = {p.resolve() for p in out.values()}
        for d in sorted((root / "hosts").iterdir()):
            if (d / "case.json").is_file() and d.resolve() not in known:
                out[d.name] = d
    return out


def _open_index(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    if (root / "case.json").exists():
        raise UsageError(
            f"{root} is a single-host case folder; a run over several hosts needs a new --case folder "
            "(it becomes a fleet folder with one case per host)"
        )
    if root.exists() and any(root.iterdir()) and not is_fleet_folder(root):
        raise UsageError(f"{root} exists, is not empty and is not a case or fleet folder")
    try:
        return dict(json.loads((root / INDEX).read_text(encoding="utf-8")))
    except FileNotFoundError:
        pass
    except ValueError as exc:
        raise UsageError(f"{root / INDEX} is not valid JSON: {exc}") from None
    from triage import __version__
    from triage.custody import CustodyLog

    return {
        "fleet_id": args.case_id or f"FLEET-{datetime.now(UTC):%Y%m%d}-{uuid.uuid4().hex[:8]}",
        "examiner": args.examiner or os.environ.get("TRIAGE_EXAMINER") or CustodyLog(root).actor,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "tool_version": __version__,
        "hosts": {},
    }


def _write_index(root: Path, index: dict[str, Any]) -> None:
    path = root / INDEX
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _host_args(args: argparse.Namespace, case_dir: Path, **extra: Any) -> argparse.Namespace:
    h = copy.copy(args)
    h.case = str(case_dir)
    h.json = True  # the per-host commands print nothing; the fleet prints one table
    for k, v in extra.items():
        setattr(h, k, v)
    return h


# -- commands ---------------------------------------------------------------------------------------
def analyze_hosts(cases: dict[str, Path], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Analyze every host case: the units of all of them go to one executor (``args.executor``)."""
    from triage import cli
    from triage.case import Case
    from triage.progress import unit_progress
    from triage.runner import analyze_cases

    opened = {host: Case.open(path) for host, path in cases.items()}
    extra: dict[str, dict[str, Any]] = {h: {} for h in opened}
    try:
        options = cli._analyzer_options(args)
        for host, case in opened.items():
            if args.sigma:
                extra[host]["sigma"] = cli._report_sigma(case, options["eventlog"]["sigma"])
            if args.yara:
                from analyzers.yara.content import report_rule_load

                extra[host]["yara"] = report_rule_load(case, options["yara"]["yara"])
        common = dict(
            jobs=max(1, args.jobs),
            only=args.only,
            skip=args.skip,
            force=args.force,
            plugins=tuple(args.plugin),
            options=options,
        )
        with unit_progress("analyzing the fleet", enabled=not args.quiet) as update:
            by_path = analyze_cases(
                list(opened.values()), executor=getattr(args, "executor", None), on_progress=update, **common
            )
        summaries = {h: by_path[str(c.path)] for h, c in opened.items()}
    finally:
        for case in opened.values():
            case.close()
    out = {}
    for host, s in summaries.items():
        for err in s.errors[:20]:
            log.error("%s: analyzer %s failed on %s: %s", host, err["analyzer"], err["evidence_id"], err["message"])
        out[host] = s.as_dict() | extra[host]
    return out


def report_hosts(cases: dict[str, Path], args: argparse.Namespace, root: Path, fleet_id: str) -> dict[str, Any]:
    """Rebuild every host report, then the fleet report."""
    from triage import cli
    from triage.report.fleet import build_fleet_report

    reports: dict[str, Any] = {}
    jobs = min(max(1, getattr(args, "jobs", 1) or 1), len(cases))
    if jobs <= 1:
        for host, path in cases.items():
            reports[host] = cli.cmd_report(_host_args(args, path))
    else:
        # host reports are independent and CPU bound (exports, ledger): one process per host at a time.
        # Forked like the runner's pool; the executor (a dask client) stays in the parent.
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        plain = _host_args(args, Path("."))
        plain.executor = None
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {
                host: pool.submit(_report_one, _host_args(plain, path), list(sys.argv)) for host, path in cases.items()
            }
            reports = {host: fut.result() for host, fut in futures.items()}
    for host, rep in reports.items():
        for w in rep.get("warnings", []):
            log.warning("%s: %s", host, w)
    fleet = build_fleet_report(root, cases, fleet_id=fleet_id, command_line=shlex.join(sys.argv))
    return {"hosts": reports, "fleet": fleet}


def _report_one(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """One host's report in a pool worker (the command line recorded in it is the fleet command's)."""
    from triage import cli

    sys.argv = argv
    return cli.cmd_report(args)


def _fleet_id(root: Path) -> str:
    try:
        return str(json.loads((root / INDEX).read_text(encoding="utf-8")).get("fleet_id", ""))
    except (OSError, ValueError):
        return ""


def _worst(reports: dict[str, dict[str, Any]], threshold: str | None) -> ExitCode:
    """Exit 1 for findings at or above the threshold on any host, else 4 when a host lacks evidence."""
    from triage.report.build import outcome

    code, reason = outcome(list(reports.values()), threshold)
    if reason:
        log.warning("exit %d: %s", int(code), reason)
    return code


def run_fleet(args: argparse.Namespace, plan: SourcePlan) -> tuple[dict[str, Any], ExitCode]:
    """``triage run`` over several hosts: collect each host into its case, analyze all, report all."""
    from triage import cli

    root = Path(args.case).absolute()
    try:
        index = _open_index(root, args)
        root.mkdir(parents=True, exist_ok=True)
        if plan.unnamed:  # a fleet folder given one source without a name: it stays what it always was
            plan.hosts.setdefault("unknown-host", []).extend(plan.unnamed)
            plan.unnamed.clear()
        cases: dict[str, Path] = {}
        collected: dict[str, dict[str, Any]] = {}
        insufficient: list[str] = []
        for host in plan.hosts:
            rel = (Path("hosts") / safe_host(host)).as_posix()
            index["hosts"][host] = rel
            cases[host] = root / rel
        _write_index(root, index)
        for host, sources in plan.hosts.items():
            log.info("collecting host %s (%d sources)", host, len(sources))
            hargs = _host_args(args, cases[host], host=host, case_id=f"{index['fleet_id']}-{host}")
            try:
                collected[host] = cli.cmd_collect(hargs, SourcePlan(sources, explicit={id(s): host for s in sources}))
            except InsufficientEvidence as exc:  # this host's sources hold nothing examinable: the others go on
                log.error("host %s: %s", host, exc)
                collected[host] = {"error": str(exc), "exit_code": int(exc.exit_code)}
                insufficient.append(host)
            # failed artifacts of any host make the whole command exit 5 once it has finished
            failed = getattr(hargs, "collection_failures", 0)
            args.collection_failures = getattr(args, "collection_failures", 0) + failed
    finally:
        plan.close()
    refused = [h for h in insufficient if not (cases[h] / "case.json").exists()]
    for host in refused:  # refused before its case was made: nothing to analyze or report
        del cases[host]
        index["hosts"].pop(host, None)
    if refused:
        _write_index(root, index)
    all_cases = host_cases(root)
    analyzed = analyze_hosts(cases, args)
    reported = report_hosts(all_cases, args, root, index["fleet_id"])
    out = {
        "fleet": str(root),
        "fleet_id": index["fleet_id"],
        "hosts": {
            h: {
                "case": str(cases[h]) if h in cases else None,
                "collect": collected[h],
                "analyze": analyzed.get(h),
                "report": reported["hosts"].get(h),
            }
            for h in collected
        },
        "fleet_report": _fleet_summary(reported["fleet"]),
    }
    if not args.json:
        print_fleet(reported["fleet"])
    code = _worst(reported["hosts"], getattr(args, "fail_on", None))
    if code == ExitCode.OK and insufficient:
        log.warning("exit %d: nothing examinable for host(s) %s", int(ExitCode.INSUFFICIENT), ", ".join(insufficient))
        code = ExitCode.INSUFFICIENT
    return out, code


def _fleet_summary(fleet: Any) -> dict[str, Any]:
    return {"outputs": fleet.outputs, "sha256": fleet.hashes, "totals": fleet.totals["counts"]}


def print_fleet(fleet: Any) -> None:
    """One row per host and the totals, on stdout."""
    from rich.table import Table

    from triage.cli import stdout

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


def analyze_fleet(args: argparse.Namespace) -> dict[str, Any]:
    """``triage analyze FLEET``: every host case, on one executor."""
    from triage.cli import stdout

    root = Path(args.case)
    out = analyze_hosts(host_cases(root), args)
    if not args.json:
        for host, s in out.items():
            stdout.print(
                f"{host}: {s['planned']} units planned, {s['reused']} already done, statuses {dict(s['statuses'])}, "
                f"{s['findings']} findings",
                markup=False,
            )
    return {"fleet": str(root), "hosts": out}


def report_fleet(args: argparse.Namespace) -> tuple[dict[str, Any], ExitCode]:
    """``triage report FLEET``: every host report, then the fleet report."""
    root = Path(args.case)
    rep = report_hosts(host_cases(root), args, root, _fleet_id(root))
    if not args.json:
        print_fleet(rep["fleet"])
    out = {"fleet": str(root), "hosts": rep["hosts"], "fleet_report": _fleet_summary(rep["fleet"])}
    return out, _worst(rep["hosts"], getattr(args, "fail_on", None))


# A fleet's verify exit code is the worst of its host cases' own codes, in this order: a change or a damaged
# case (3) outweighs files a collection could not write (5), which outweighs a command that never finished
# (6): tampering must never be reported as a mere interruption. Any other code a host case ends with (a
# usage error while opening it) ranks just below 3.
VERIFY_SEVERITY = (ExitCode.INTEGRITY, ExitCode.COLLECTION_FAILED, ExitCode.INCOMPLETE, ExitCode.OK)


def worst_verify_code(codes: list[ExitCode]) -> ExitCode:
    """The fleet's verify exit code from its host cases' codes (``VERIFY_SEVERITY``; an empty fleet is 3)."""
    if not codes:
        return ExitCode.INTEGRITY  # nothing verified is not a clean verify

    def rank(code: ExitCode) -> float:
        return VERIFY_SEVERITY.index(code) if code in VERIFY_SEVERITY else 0.5

    return min(codes, key=rank)


def _fleet_heads(values: list[str] | None, hosts: list[str]) -> dict[str, str]:
    """``--head HOST=HASH`` (repeatable) -> {host: hash}; a bare hash on a fleet is a usage error."""
    from triage.cli import parse_head_hash

    by_upper = {h.upper(): h for h in hosts}
    heads: dict[str, str] = {}
    for value in values or []:
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


def verify_fleet(args: argparse.Namespace) -> tuple[dict[str, Any], ExitCode]:
    """``triage verify FLEET``: every host case; the exit code is the worst host code (``VERIFY_SEVERITY``)."""
    from triage import cli
    from triage.cli import stdout
    from triage.errors import TriageError

    root = Path(args.case)
    cases = host_cases(root)
    heads = _fleet_heads(getattr(args, "head", None), list(cases))
    results: dict[str, dict[str, Any]] = {}
    for host, path in cases.items():
        try:
            results[host] = cli.cmd_verify(_host_args(args, path, head=heads.get(host)))
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
    ok = code == ExitCode.OK
    if not args.json:
        for host, r in results.items():
            stdout.print(f"{host}: verify {r['verdict']} (exit {r['exit_code']})", markup=False)
            for key, label in (("problems", "CHANGED"), ("collection_failed", "FAILED"), ("incomplete", "INCOMPLETE")):
                for p in r.get(key, []):
                    stdout.print(f"  {label} {p['where']}: {p['problem']}", markup=False)
            anchor = r.get("anchor")
            if anchor:
                found = f"is event {anchor['seq']}" if anchor["found"] else "is NOT in the chain"
                stdout.print(f"  head {anchor['hash'][:12]} {found}", markup=False)
        stdout.print(f"fleet verify {'OK' if ok else code.name}: {len(results)} host cases", markup=False)
    # stderr, like a single case's head: one line per host, each to be kept for 'verify --head HOST=HASH'
    for host, r in results.items():
        head = r.get("custody_head") or {}
        if head:
            print(
                f"custody head {host}: event {head['seq']} {head['hash']} (keep it; 'triage verify --head "
                f"{host}={head['hash']}')",
                file=sys.stderr,
            )
    return {"fleet": str(root), "ok": ok, "exit_code": int(code), "hosts": results}, code
