"""The benchmark suite: one run, one table of ratios, every time measured against a baseline in the same run.

Sections (``--only`` / ``--skip`` take these names, comma-separated; ``analyzers`` means the first eight):

  evtx       triage eventlog analysis (read + ED 21-02 Sigma pack) vs evtx parse-only and python-evtx (slice)
  registry   the three registry analyzers vs a regipy walk of the same hives (the pure-Python walk of the
             11 MiB corpus SYSTEM hive is time-boxed by ``--budget`` and extrapolated by key count, which
             understates the ratio; a synthetic SYSTEM hive is walked in full when the corpus is absent)
  exchange   Test-ProxyLogon checks and web log rules vs a Python line count of the same logs
  yara       file scanning vs the ``yara`` CLI (yara-python when the CLI is absent), same files and rules
  memory     raw memory image scan vs the ``yara`` CLI on the same image and rules
  report     ``build_report`` findings/s vs pandas reading the results and writing one CSV; 1M findings
             extrapolated from the marginal cost between two sizes (N/4 and N)
  collect    the ``triage collect`` command vs ``cp -a`` + ``hashdeep -c md5,sha256`` of the same tree
  image      disk-image collection (``benchmarks/image_collect.py``, when present)
  fleet      a synthetic fleet of ``--hosts`` hosts: collect, analyze (local pool jobs=1/N, dask local:1/N)
             and report timed separately; speed-up and scaling efficiency T1 / (N * TN)
  startup    ``triage --help`` / ``--version`` vs ``python -c pass``; ``triage run`` of a 4-event EVTX vs parsing it
  overhead   per-unit scheduling cost: ``--units`` no-op units run directly, in the local pool, on dask
  timeline   ``triage timeline`` over ``--timeline-events`` EVTX records (sorted, tagged, Timesketch JSONL) vs
             reading the same records and writing JSONL (``benchmarks/timeline_scale.py``); peak RSS of both

Ratio = baseline time / triage time for the same work (above 1: triage is faster); for the fleet rows it is
the speed-up of N workers over 1. Machines here are shared and noisy: read ratios, not absolute times; the
load average at start and end is printed with the table. The table goes to stdout (rich), progress to
stderr; ``--json OUT`` and ``--markdown OUT`` write the same rows.

Usage: python benchmarks/suite.py [--only fleet,overhead] [--hosts 20] [--records 30000] [--findings 100000]
       [--json OUT] [--markdown OUT]      (defaults take about 5 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the sibling benchmark modules

ANALYZER_SECTIONS = ("evtx", "registry", "exchange", "yara", "memory", "report", "collect", "image")
SECTIONS = (*ANALYZER_SECTIONS, "fleet", "overhead", "startup", "timeline")


@dataclass
class Row:
    """One line of the table: a measure of triage against its baseline, both timed in this run."""

    section: str
    measure: str
    value: float  # triage's figure, in ``unit``
    unit: str
    baseline: str
    baseline_value: float | None  # in ``unit`` too; None when there is no measured baseline
    ratio: float | None  # baseline time / triage time (speed-up for the fleet rows)
    target: str = ""  # the project's target for this ratio, with "ok" or "BELOW"
    note: str = ""


class Suite:
    """Collects rows and prints progress on stderr."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.console import Console

        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.rows: list[Row] = []
        self.skipped: dict[str, str] = {}
        self.t0 = time.perf_counter()
        self.quiet = quiet

    def log(self, msg: str) -> None:
        if not self.quiet:
            self.err.print(f"[dim]{time.perf_counter() - self.t0:7.1f}s[/dim] {msg}", markup=True)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        self.log(f"  -> {row.measure}: {fmt(row.value, row.unit)} vs {row.baseline}: {fmt_ratio(row.ratio)}")


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms/unit":
        return f"{value:.1f} ms/unit"
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:,.1f} {unit}"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:,.0f}x" if r >= 100 else f"{r:.2f}x"


def target(ratio: float | None, minimum: float, text: str) -> str:
    if ratio is None:
        return text
    return f"{text} {'ok' if ratio >= minimum else 'BELOW'}"


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """The benchmark modules print their own tables: keep stdout for ours."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


# -- per-analyzer sections ------------------------------------------------------------------------------
def bench_evtx(s: Suite, args: argparse.Namespace, work: Path) -> None:
    import evtx_throughput as m

    path = work / "bench.evtx"
    s.log(f"evtx: writing {args.records:,} records")
    m.write_log(path, args.records)
    s.log(f"evtx: timing (python-evtx on the first {args.slow_records:,} records)")
    with quiet_stdout():
        rates = m.measure(path, args.slow_records)
    ours = rates["triage analyze, ED 21-02 pack"]
    base, slow = rates["evtx parse only"], rates["python-evtx parse only"]
    note = f"{args.records:,} Sysmon records, {path.stat().st_size / 1e6:.0f} MB; read + 66 Sigma rules"
    s.add(
        Row(
            "evtx",
            "eventlog analysis",
            ours,
            "rec/s",
            "evtx parse-only",
            base,
            ours / base,
            target(ours / base, 0.5, ">= 0.5x"),
            note,
        )
    )
    s.add(
        Row(
            "evtx",
            "eventlog analysis",
            ours,
            "rec/s",
            "python-evtx (slice)",
            slow,
            ours / slow,
            target(ours / slow, 50, ">= 50x"),
            f"python-evtx timed on {args.slow_records:,} records",
        )
    )
    path.unlink()


def bench_registry(s: Suite, args: argparse.Namespace, work: Path) -> None:
    import registry_hives as m

    logging.disable(logging.WARNING)  # regipy logs each undecodable string on a walk
    try:
        hives, origin = m.build_hives(work / "hives")
        corpus = origin.startswith("corpus")
        s.log(f"registry: {len(hives)} hives, SYSTEM from {origin}")
        res, notes = m.measure(
            work, hives, repeat=max(3, args.repeat), budget=args.budget if corpus else None, log=False
        )
    finally:
        logging.disable(logging.NOTSET)
    backend = "rust" if "analysis/rust" in res else "python"
    ours = res[f"analysis/{backend}"]
    walk = res["walk/python"]
    how = (notes["walk/python"] or ["full walk"])[0].replace("SYSTEM EXTRAPOLATED: ", "SYSTEM time-boxed, ")
    size = sum(p.stat().st_size for p in hives.values()) / 2**20
    s.add(
        Row(
            "registry",
            f"3 registry analyzers ({backend} reader)",
            ours,
            "s",
            "regipy walk, pure Python",
            walk,
            walk / ours,
            target(walk / ours, 20, ">= 20x"),
            f"{len(hives)} hives, {size:.1f} MiB; {how}",
        )
    )
    if "walk/rust" in res:
        rw = res["walk/rust"]
        s.add(
            Row(
                "registry",
                f"3 registry analyzers ({backend} reader)",
                ours,
                "s",
                "regipy-rs full walk",
                rw,
                rw / ours,
                "",
                "all hives walked in full",
            )
        )


def bench_exchange(s: Suite, args: argparse.Namespace, work: Path) -> None:
    import exchange_logs as m

    s.log(f"exchange: writing {args.exchange_mb} MiB of HttpProxy logs")
    files, planted = m.build(work / "exlogs", args.exchange_mb, 6)
    mb = sum(f.path.stat().st_size for f in files) / 1e6
    with quiet_stdout():
        results, pre, _full = m.measure(files, args.repeat, rules=True)
    secs = dict(results)
    base = secs["python line count (baseline)"]
    hits = len(pre.hits_26855)  # type: ignore[attr-defined]
    for name, label in (
        ("TPL checks, ServerInfo~ pre-filter", "Test-ProxyLogon checks"),
        ("web log rules (full parse)", "web log rules"),
    ):
        t = secs[name]
        note = f"{mb:.0f} MB, {hits}/{planted} planted SSRF rows found" if "TPL" in name else "full parse + YAML rules"
        s.add(Row("exchange", label, mb / t, "MB/s", "python line count", mb / base, base / t, "", note))
    shutil.rmtree(work / "exlogs", ignore_errors=True)


def bench_yara(s: Suite, args: argparse.Namespace, work: Path) -> None:
    import yara_scan as m

    from analyzers.yara.content import own_rule_paths

    root = work / "yara" / "C"
    files = m.make_files(root, args.yara_pages, args.yara_mb)
    total = sum(p.stat().st_size for p in files) / 2**20
    taken: set[str] = set()
    extra = [str(m.CORPUS_RULES)] if m.CORPUS_RULES.is_dir() else []
    rule_files = m.find_rule_files(own_rule_paths(), "triage", taken) + m.find_rule_files(extra, "third_party", taken)
    cache = work / "yara" / "cache"
    old = os.environ.get("TRIAGE_YARA_CACHE")
    os.environ["TRIAGE_YARA_CACHE"] = str(cache)  # the pool's workers find the same cache
    try:
        engine, fallback = m.CONFIGS[next(iter(m.CONFIGS))]
        warm = m.load_rules(rule_files, engine=engine, fallback=fallback, cache_dir=cache)
        skip = {str(f.path) for f in warm.files if f.status == "skipped"}
        cli = shutil.which("yara")
        configs = dict(list(m.CONFIGS.items())[:1])
        if not cli:  # compare the two Python engines instead
            configs.update({k: v for k, v in m.CONFIGS.items() if v[0] == m.YARA_PYTHON})
        s.log(f"yara: {len(files)} files, {total:.0f} MiB, {len(rule_files)} rule files; CLI: {cli or 'absent'}")
        with quiet_stdout():
            res = m.measure_scan(work / "yara", root, files, rule_files, args.workers, args.repeat, configs, skip)
    finally:
        if old is None:
            os.environ.pop("TRIAGE_YARA_CACHE", None)
        else:
            os.environ["TRIAGE_YARA_CACHE"] = old
    label = next(iter(configs))
    one, many = res[f"triage {label}, 1 process"], res[f"triage {label}, {args.workers} processes"]
    agree = all(found == one[2] for _, _, found in res.values())
    note = f"{len(files)} files, {total:.0f} MiB, {len(rule_files)} rule files; same matches: {agree}"
    if cli:
        for other, mine, what in (
            ("yara CLI -p 1", one, "1 process"),
            ("yara CLI (default threads)", many, f"{args.workers} processes"),
        ):
            s.add(
                Row(
                    "yara",
                    f"file scan, {what}",
                    total / mine[0],
                    "MiB/s",
                    other,
                    total / res[other][0],
                    res[other][0] / mine[0],
                    "",
                    note,
                )
            )
    else:
        py = res[f"triage {next(k for k in configs if k != label)}, 1 process"]
        s.add(
            Row(
                "yara",
                "file scan, 1 process (yara-x)",
                total / one[0],
                "MiB/s",
                "yara-python (CLI absent)",
                total / py[0],
                py[0] / one[0],
                "",
                note,
            )
        )
    shutil.rmtree(work / "yara", ignore_errors=True)
    bench_yara_command(s, args, work)


def bench_yara_command(s: Suite, args: argparse.Namespace, work: Path) -> None:
    """Issue 15's rows: ``triage analyze --only yara -j N`` against ``yara -r -p N``, same rules and files, per web
    root (thousands of small files; a few hundred bigger ones) and rule set, with the engine alone beside it."""
    import yara_scan as m

    if not shutil.which("yara"):
        s.log("yara command rows skipped: the yara CLI is not installed (apt-get install -y yara)")
        return
    old = os.environ.get("TRIAGE_YARA_CACHE")
    os.environ["TRIAGE_YARA_CACHE"] = str(work / "yara-command" / "cache")
    try:
        with quiet_stdout():
            rows = m.command_rows(
                work / "yara-command", args.workers, max(3, args.repeat), args.yara_webroot, args.yara_big
            )
    finally:
        if old is None:
            os.environ.pop("TRIAGE_YARA_CACHE", None)
        else:
            os.environ["TRIAGE_YARA_CACHE"] = old
    for r in rows:
        ratio = r["ratio_median"]
        s.add(
            Row(
                "yara",
                f"analyze --only yara -j {args.workers}, {r['rules']} rules, {r['files']} {r['web root']}",
                r["triage_s"],
                "s",
                f"yara -r -p {args.workers}",
                r["yara_s"],
                1 / ratio,
                f"<= 1.0x: {ratio:.2f}x {'ok' if ratio <= 1.0 else 'BELOW'}",
                f"{r['mib']:.0f} MiB; median of {len(r['ratios'])} alternating rounds; engine alone "
                f"{r['engine_ratio_median']:.2f}x yara; same (file, rule) pairs: {r['same_pairs']} "
                f"({r['triage_pairs']} / {r['cli_pairs']})",
            )
        )
    shutil.rmtree(work / "yara-command", ignore_errors=True)


def bench_memory(s: Suite, args: argparse.Namespace, work: Path) -> None:
    import memory_scan as m

    from analyzers.memory import rawscan, yararules

    compiled = yararules.compile_rules(yararules.rule_files())
    files = compiled.files
    image = work / "memory.raw"
    size = args.memory_mb * m.MIB
    s.log(f"memory: writing a {args.memory_mb} MiB image")
    plants = m.write_image(image, size, 0.25)
    with open(image, "rb") as fh:  # into the page cache, so both read from memory
        while fh.read(64 * m.MIB):
            pass
    cli = shutil.which("yara") is not None
    workers = sorted({1, rawscan.default_workers()})
    r = m.measure(image, files, args.repeat, cli, workers)
    mib = args.memory_mb
    if not cli:  # no external baseline: triage's worker counts against each other
        t1 = r["triage-1"]["wall_s"]
        for n in workers[1:]:
            tn = r[f"triage-{n}"]["wall_s"]
            s.add(
                Row(
                    "memory",
                    f"raw image scan, {n} workers",
                    mib / tn,
                    "MiB/s",
                    "1 worker (yara CLI absent)",
                    mib / t1,
                    t1 / tn,
                    "",
                    f"{mib} MiB image, {len(plants)} plants",
                )
            )
    else:
        y = r["yara"]["wall_s"]
        same = set(r["triage-1_hits"]) == set(r["yara_hits"])
        for n in workers:
            t = r[f"triage-{n}"]["wall_s"]
            s.add(
                Row(
                    "memory",
                    f"raw image scan, {n} worker{'s' * (n > 1)}",
                    mib / t,
                    "MiB/s",
                    "yara CLI",
                    mib / y,
                    y / t,
                    "",
                    f"{mib} MiB image, {len(files)} rule files; same hits as CLI: {same}; wall includes start-up "
                    f"and compile ({r[f'triage-{n}']['compile_s']:.1f} s; scan alone "
                    f"{mib / r[f'triage-{n}']['scan_s']:.0f} MiB/s)",
                )
            )
    image.unlink()


def bench_report(s: Suite, args: argparse.Namespace, work: Path) -> None:
    import report_scale as m

    # one size, measured directly: extrapolating to 1M from small cases misleads, because the XLSX sheets
    # (10,000 rows per area) and STIX observations (1,000) are capped, so their cost stops growing
    n = args.findings
    case_dir = work / f"report-case-{n}"
    s.log(f"report: generating a case with {n:,} findings, then `triage report` against the baseline")
    m.generate_case(case_dir, n, hosts=8)
    r = m.measure(case_dir, work, max(1, args.repeat))
    wall, rss = r["triage_s"], r["triage_rss_mib"]
    if n >= 1_000_000:
        met = "ok" if wall < 30 and rss < 1024 else "MISSED"
        target = f"1M < 30 s, RSS < 1 GiB: {wall:.0f} s, {rss:,.0f} MiB {met}"
    else:
        target = "1M < 30 s, RSS < 1 GiB: run --findings 1000000"
    s.add(
        Row(
            "report",
            f"triage report, {n:,} findings",
            n / wall,
            "findings/s",
            "pandas parquet -> CSV",
            n / r["baseline_s"],
            r["ratio"],
            target,
            f"whole commands, median of per-round ratios; peak RSS {rss:,.0f} MiB "
            f"(baseline {r['baseline_rss_mib']:,.0f} MiB)",
        )
    )


def bench_collect(s: Suite, args: argparse.Namespace, work: Path) -> None:
    import collect_throughput as m

    from triage.testing.volume import VolumeSpec, build_volume

    # two shapes: a web root of thousands of small files (per-file cost) and a few big logs (bytes per second)
    for shape in ("small", "big"):
        vol = build_volume(work / "collect-vol", VolumeSpec(compromised=True))
        m.shape_volume(vol, shape, args.collect_small, args.collect_mib)
        nfiles = sum(len(f) for _, _, f in os.walk(vol))
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(vol) for f in fs)
        s.log(f"collect {shape}: {nfiles} files, {size / 1e6:.0f} MB")
        (work / "collect-scratch").mkdir()
        r = m.measure(vol, work / "collect-scratch", max(1, args.repeat))
        mb = size / 1e6
        s.add(
            Row(
                "collect",
                f"triage collect, {'small files' if shape == 'small' else 'big files'} "
                "(copy + sha256 + md5 + manifest + custody)",
                mb / r["triage_s"],
                "MB/s",
                r["baseline_label"],
                mb / r["baseline_s"],
                r["ratio"],
                target(r["ratio"], 0.9, ">= 0.9x"),
                f"whole commands, median of per-round ratios; {nfiles} files, {mb:.0f} MB, warm page cache",
            )
        )
        shutil.rmtree(work / "collect-vol", ignore_errors=True)
        shutil.rmtree(work / "collect-scratch", ignore_errors=True)


def bench_image(s: Suite, args: argparse.Namespace, work: Path) -> None:
    try:
        import image_collect as m

        from triage.testing import diskimage as di
        from triage.testing.volume import VolumeSpec, build_volume
    except ImportError as exc:
        s.skipped["image"] = f"disk image benchmark not available: {exc}"
        return
    reason = di.tools_missing()
    if reason:
        s.skipped["image"] = f"cannot build disk images here: {reason}"
        return
    s.log(f"image: building a GPT disk with an NTFS C: of {args.image_mb} MiB padding (mkntfs, ntfs-3g)")
    tree = build_volume(work / "tree" / "C", VolumeSpec())
    m.pad_tree(tree, args.image_mb)
    vol = di.build_ntfs_volume(tree, work / "C.ntfs", label="System")
    layout = di.build_disk([vol], work / "disk.raw", scheme="gpt")
    vol.unlink()
    formats = [f for f in args.image_formats.split(",") if f]
    images = {f: di.to_format(layout.path, f, work / f, name="bench") for f in formats}  # type: ignore[arg-type]
    tree_bytes = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())

    def best(fn: Callable[[Path], Any]) -> float:
        times = []
        for r in range(args.repeat):
            dest = work / f"out{r}"
            times.append(timed(lambda d=dest: fn(d))[0])
            _make_writable(dest)
            shutil.rmtree(dest, ignore_errors=True)
        return min(times)

    s.log("image: timing cp -a, triage collect of the folder and of each image")
    with quiet_stdout():
        best(lambda d: m.triage_collect(tree, d))  # warm: the first collect pays for imports
        cp = best(lambda d: subprocess.run(["cp", "-a", str(tree), str(d)], check=True))
        folder = best(lambda d: m.triage_collect(tree, d))
        mb = tree_bytes / 1e6
        for fmt, paths in images.items():
            t = best(lambda d, p=paths: m.triage_collect(p[0], d))
            size = sum(p.stat().st_size for p in paths) / 1e6
            note = f"{mb:.0f} MB tree; {fmt} image {size:.0f} MB; read without mounting"
            s.add(
                Row(
                    "image",
                    f"triage collect, {fmt} image",
                    mb / t,
                    "MB/s",
                    "cp -a of the tree",
                    mb / cp,
                    cp / t,
                    "",
                    note,
                )
            )
            s.add(
                Row(
                    "image",
                    f"triage collect, {fmt} image",
                    mb / t,
                    "MB/s",
                    "triage collect of the tree",
                    mb / folder,
                    folder / t,
                    "",
                    "same files as a mounted folder",
                )
            )


# -- fleet ----------------------------------------------------------------------------------------------
def fleet_sources(out: Path, hosts: int) -> tuple[list[tuple[str, Path]], str]:
    """(host name, volume folder) per host: FLEET's build_fleet when present, else our own volumes."""
    try:
        from triage.testing.fleet import build_fleet
    except ImportError:
        from triage.testing.volume import VolumeSpec, build_volume

        out.mkdir(parents=True)
        srcs = []
        for i in range(hosts):
            name = f"EXCH{i + 1:02d}"
            spec = VolumeSpec(hostname=name, compromised=i % 3 == 0, event_logs=True, all_hives=True)
            srcs.append((name, build_volume(out / name, spec)))
        return srcs, "triage.testing.volume"
    fleet = build_fleet(out, hosts, seed=0, event_logs=True, all_hives=True)
    return [(h.name, h.source) for h in fleet], "triage.testing.fleet"


def collect_fleet(sources: list[tuple[str, Path]], cases: Path) -> dict[str, Path]:
    """One case per host, collected one after the other (as ``triage run`` does); host -> case folder."""
    from collectors.collect import collect_volume
    from collectors.sources import open_source_path
    from triage.case import Case

    out = {}
    for name, src_path in sources:
        case = Case.create_or_open(cases / name, examiner="bench", case_id=f"BENCH-{name}")
        src = open_source_path(str(src_path))
        try:
            collect_volume(case, src, host=None)
        finally:
            src.close()
            case.close()
        out[name] = cases / name
    return out


def analyze_fleet(case_dirs: dict[str, Path], executor: Any) -> tuple[int, int]:
    """All units of all cases on one executor; returns the units run and the findings they made."""
    from triage.case import Case

    cases = [Case.open(p) for p in case_dirs.values()]
    try:
        try:
            from triage.runner import analyze_cases
        except ImportError:  # before the multi-case runner: one case at a time
            from triage.runner import analyze_case

            done = [analyze_case(c, jobs=executor) for c in cases]
            return sum(sm.planned for sm in done), sum(sm.findings for sm in done)
        summaries = analyze_cases(cases, executor=executor).values()
        return sum(sm.planned - sm.reused for sm in summaries), sum(sm.findings for sm in summaries)
    finally:
        for c in cases:
            c.close()


def report_fleet(case_dirs: dict[str, Path], fleet_dir: Path, jobs: int = 1) -> int:
    """Each host's report (``jobs`` at a time, as ``triage run``/``report`` on a fleet do), then the fleet
    report; returns the findings reported."""
    from triage.app import NullProgress, ReportRequest
    from triage.app.fleet import report_hosts

    reports, _fleet = report_hosts(case_dirs, ReportRequest(fleet_dir, jobs=jobs), fleet_dir, "bench", NullProgress())
    return sum(r.result.findings for r in reports.values())


def _executor(kind: str, n: int) -> Any:
    """The executor the CLI would open for ``--jobs n`` or ``--cluster local:n``."""
    try:
        from triage.executors import open_executor
    except ImportError:
        if kind == "dask":
            raise
        return n  # analyze_case(jobs=n)
    return open_executor(jobs=n) if kind == "pool" else open_executor(cluster=f"local:{n}")


def _close(ex: Any) -> None:
    if hasattr(ex, "close"):
        ex.close()


def bench_fleet(s: Suite, args: argparse.Namespace, work: Path) -> None:
    n = args.workers
    srcs, how = fleet_sources(work / "fleet-src", args.hosts)
    size = sum(f.stat().st_size for _, p in srcs for f in p.rglob("*") if f.is_file()) / 1e6
    s.log(f"fleet: {len(srcs)} hosts from {how}, {size:.1f} MB of sources")
    # warm this process (imports, rule loading) on a copy of one host, so the forked pool workers of every
    # configuration start alike; dask workers are fresh processes and load their rules themselves
    warm = collect_fleet(srcs[:1], work / "fleet-warm")
    analyze_fleet(warm, _executor("pool", 1))
    try:
        import distributed  # noqa: F401

        dask_ok = True
    except ImportError:
        dask_ok = False
    configs = [("pool", 1), ("pool", n)] + ([("dask", 1), ("dask", n)] if dask_ok else [])
    times: dict[tuple[str, int], dict[str, float]] = {}
    last: dict[str, Path] = {}
    for kind, k in configs:
        root = work / f"fleet-{kind}{k}"
        s.log(f"fleet: {kind} x{k}: collect")
        t_collect, case_dirs = timed(lambda r=root: collect_fleet(srcs, r))
        t_start, ex = timed(lambda kind=kind, k=k: _executor(kind, k))
        t_warm = 0.0
        try:
            if kind == "dask":  # fresh worker processes import triage and load rules once: time that apart
                s.log(f"fleet: {kind} x{k}: warming the workers on one host")
                spare = collect_fleet(srcs[:1], work / f"fleet-warm-{kind}{k}")
                t_warm = timed(lambda d=spare, e=ex: analyze_fleet(d, e))[0]
            s.log(f"fleet: {kind} x{k}: analyze")
            t_an, (units, findings) = timed(lambda d=case_dirs, e=ex: analyze_fleet(d, e))
        finally:
            _close(ex)
        times[(kind, k)] = {
            "collect": t_collect,
            "start": t_start,
            "warm": t_warm,
            "analyze": t_an,
            "units": units,
            "findings": findings,
        }
        if last:
            shutil.rmtree(next(iter(last.values())).parent, ignore_errors=True)
        last = case_dirs
    fleet_dir = work / f"fleet-{configs[-1][0]}{configs[-1][1]}"
    s.log("fleet: reports (one per host + the fleet report), 1 process")
    t_report1, found = timed(lambda: report_fleet(last, fleet_dir, 1))
    s.log(f"fleet: reports, {n} processes")
    t_report, found_n = timed(lambda: report_fleet(last, fleet_dir, n))
    t_cp = min(
        timed(
            lambda i=i: [subprocess.run(["cp", "-a", str(p), str(work / f"cp{i}-{h}")], check=True) for h, p in srcs]
        )[0]
        for i in range(args.repeat)
    )
    pool1 = times[("pool", 1)]
    same = len({(t["units"], t["findings"]) for t in times.values()}) == 1
    s.add(
        Row(
            "fleet",
            f"collect {len(srcs)} hosts (sequential)",
            pool1["collect"],
            "s",
            "cp -a of the sources",
            t_cp,
            t_cp / pool1["collect"],
            "",
            f"{size:.1f} MB; hashing, manifest, custody, read-only",
        )
    )
    for kind in ("pool", "dask"):
        if (kind, 1) not in times:
            continue
        t1, tn = times[(kind, 1)], times[(kind, n)]
        name = "local pool" if kind == "pool" else "dask LocalCluster"
        what = f"--jobs {n}" if kind == "pool" else f"--cluster local:{n}"
        eff = t1["analyze"] / (n * tn["analyze"])
        start = (
            f"; warm workers: cluster start {t1['start']:.1f} / {tn['start']:.1f} s and a one-host warm-up "
            f"{t1['warm']:.1f} / {tn['warm']:.1f} s not in the times"
            if kind == "dask"
            else ""
        )
        s.add(
            Row(
                "fleet",
                f"analyze {len(srcs)} hosts, {name} {what}",
                tn["analyze"],
                "s",
                f"{name}, 1 worker",
                t1["analyze"],
                t1["analyze"] / tn["analyze"],
                f"efficiency {eff:.0%}",
                f"{int(tn['units'])} units, {int(tn['findings'])} findings (same in every run: {same}); "
                f"T1/({n}*T{n}) = {eff:.2f}{start}",
            )
        )
    if ("dask", 1) in times:
        dn, pn = times[("dask", n)]["analyze"], times[("pool", n)]["analyze"]
        s.add(
            Row(
                "fleet",
                f"analyze, dask local:{n}",
                dn,
                "s",
                f"local pool --jobs {n}",
                pn,
                pn / dn,
                "",
                "same units; both warm (the pool forks a warm parent, dask workers warmed on one host)",
            )
        )
    s.add(
        Row(
            "fleet",
            f"reports of {len(srcs)} hosts + fleet report, {n} processes",
            t_report,
            "s",
            "1 process",
            t_report1,
            t_report1 / t_report,
            f"efficiency {t_report1 / (n * t_report):.0%}",
            f"{found:,} findings (same with {n}: {found == found_n})",
        )
    )
    for kind in ("pool", "dask"):
        if (kind, 1) not in times:
            continue
        t1, tn = times[(kind, 1)], times[(kind, n)]
        e1 = t1["collect"] + t1["start"] + t1["warm"] + t1["analyze"] + t_report1
        en = tn["collect"] + tn["start"] + tn["warm"] + tn["analyze"] + t_report
        name = "local pool" if kind == "pool" else "dask"
        s.add(
            Row(
                "fleet",
                f"end to end (collect + analyze + report), {name} x{n}",
                en,
                "s",
                f"{name} x1",
                e1,
                e1 / en,
                "",
                f"reports {t_report1:.1f} s with 1 process, {t_report:.1f} s with {n}"
                + ("; cluster start and warm-up included" if kind == "dask" else ""),
            )
        )


# -- per-unit overhead ----------------------------------------------------------------------------------
NOOP_PLUGIN = '''
"""A no-op analyzer for the scheduling overhead benchmark."""
from triage.registry import Analyzer, register


@register
class BenchNoop(Analyzer):
    """Yields nothing: what is left is the cost of planning, scheduling and recording a unit."""

    name = "bench_noop"
    version = "1"
    consumes = ("bench_blob",)

    def analyze(self, unit):
        return iter(())
'''


def bench_overhead(s: Suite, args: argparse.Namespace, work: Path) -> None:
    from collectors.collect import collect_files
    from collectors.sources import open_source_path
    from triage.case import Case

    plugin = work / "bench_noop_plugin.py"
    plugin.write_text(NOOP_PLUGIN)
    blobs = work / "blobs"
    blobs.mkdir()
    for i in range(args.units):
        (blobs / f"b{i:05d}.bin").write_bytes(i.to_bytes(4, "little"))
    case = Case.create_or_open(work / "noop-case", examiner="bench")
    src = open_source_path(str(blobs), "files")
    collect_files(case, src, host="NOOP", kind="bench_blob")
    src.close()
    case.close()
    s.log(f"overhead: {args.units} no-op units")

    def run(ex: Any) -> float:
        from triage.runner import analyze_cases

        case = Case.open(work / "noop-case")
        try:
            t, summaries = timed(
                lambda: analyze_cases([case], executor=ex, only=("bench_noop",), plugins=(str(plugin),), force=True)
            )
        finally:
            case.close()
        sm = next(iter(summaries.values()))
        assert sm.statuses.get("no_findings") == args.units, sm.statuses
        return t

    per: dict[str, float] = {}
    ex = _executor("pool", 1)
    run(ex)  # warm: imports, plugin, first parquet writes
    per["direct"] = run(ex) / args.units * 1000
    ex = _executor("pool", args.workers)
    per["pool"] = run(ex) / args.units * 1000  # includes forking the pool, as every analyze does
    try:
        t_start, ex = timed(lambda: _executor("dask", args.workers))
    except Exception as exc:  # no dask: the other rows still stand
        s.skipped["overhead/dask"] = f"{type(exc).__name__}: {exc}"
    else:
        try:
            run(ex)  # the workers import triage and the plugin once
            per["dask"] = run(ex) / args.units * 1000
        finally:
            _close(ex)
    d = per["direct"]
    s.add(
        Row(
            "overhead",
            f"local pool --jobs {args.workers}",
            per["pool"],
            "ms/unit",
            "direct call (jobs=1)",
            d,
            d / per["pool"],
            "",
            f"{args.units} no-op units, each writes a parquet + run record; pool start included",
        )
    )
    if "dask" in per:
        s.add(
            Row(
                "overhead",
                f"dask local:{args.workers}",
                per["dask"],
                "ms/unit",
                "direct call (jobs=1)",
                d,
                d / per["dask"],
                "",
                f"warm workers; cluster start {t_start:.1f} s not included",
            )
        )


# -- output ---------------------------------------------------------------------------------------------
COLUMNS = ("section", "measure", "triage", "baseline", "ratio", "target", "note")


def table_cells(r: Row) -> list[str]:
    base = f"{r.baseline} ({fmt(r.baseline_value, r.unit)})" if r.baseline_value is not None else r.baseline
    return [r.section, r.measure, fmt(r.value, r.unit), base, fmt_ratio(r.ratio), r.target, r.note]


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    lines = [
        f"Benchmark suite, {meta['date']}: {meta['cpus']} cores, load average {meta['load_start']:.2f} at start, "
        f"{meta['load_end']:.2f} at end; {meta['seconds']:.0f} s. Ratio = baseline time / triage time.",
        "Load average at each section's start: "
        + ", ".join(f"{k} {v:.1f}" for k, v in meta.get("load_by_section", {}).items()),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in table_cells(r)) + " |")
    for k, why in meta["skipped"].items():
        lines.append(f"\nskipped {k}: {why}")
    return "\n".join(lines) + "\n"


def print_table(rows: list[Row], meta: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    t = Table(
        title="triage benchmark suite (ratio = baseline time / triage time)",
        caption=f"{meta['cpus']} cores, load {meta['load_start']:.2f} -> {meta['load_end']:.2f}, "
        f"{meta['seconds']:.0f} s",
    )
    for c in COLUMNS:
        t.add_column(c, justify="right" if c in ("triage", "ratio") else "left", overflow="fold")
    for r in rows:
        t.add_row(*table_cells(r))
    out.print(t)
    for k, why in meta["skipped"].items():
        out.print(f"skipped {k}: {why}")


def bench_timeline(s: Suite, args: argparse.Namespace, work: Path) -> None:
    import timeline_scale as m

    n = args.timeline_events
    s.log(f"timeline: {n:,} EVTX records, triage timeline vs EVTX -> JSONL, one round each")
    with quiet_stdout():
        res = m.run(n, per_file=min(100_000, n), rounds=args.repeat, work=work)
    r = res["rounds"][0]
    s.add(
        Row(
            "timeline",
            f"triage timeline, {res['records']:,} EVTX records",
            res["records"] / res["median_triage_s"],
            "events/s",
            "EVTX reader -> JSONL",
            res["records"] / res["median_baseline_s"],
            res["median_ratio"],
            "",
            f"peak RSS {res['max_triage_peak_mib']:.0f} MiB (baseline {res['max_baseline_peak_mib']:.0f} MiB); "
            f"{r['triage_events']:,} events written (record + file times), sorted and tagged",
        )
    )


def parse_sections(values: list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        for name in (x.strip() for x in v.split(",") if x.strip()):
            names = ANALYZER_SECTIONS if name == "analyzers" else (name,)
            for n in names:
                if n not in SECTIONS:
                    raise SystemExit(f"unknown section {n!r}; choose from {', '.join(SECTIONS)} or 'analyzers'")
                if n not in out:
                    out.append(n)
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", default=[], metavar="SECTION", help="run only these sections")
    ap.add_argument("--skip", action="append", default=[], metavar="SECTION", help="leave these sections out")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the rows as JSON")
    ap.add_argument("--markdown", type=Path, metavar="OUT", help="also write the table as Markdown")
    ap.add_argument("--quiet", action="store_true", help="no progress on stderr")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender where cheap (best counts)")
    ap.add_argument("--workers", type=int, default=2, help="the N of the N-worker runs (fleet, overhead, yara)")
    g = ap.add_argument_group("sizes")
    g.add_argument("--records", type=int, default=30_000, help="event log records")
    g.add_argument("--slow-records", type=int, default=500, help="records python-evtx is timed on")
    g.add_argument("--budget", type=float, default=5.0, help="seconds of the pure-Python SYSTEM walk")
    g.add_argument("--exchange-mb", type=int, default=64, help="MiB of HttpProxy logs")
    g.add_argument("--yara-pages", type=int, default=400, help="server pages for the YARA scan")
    g.add_argument("--yara-mb", type=int, default=4, help="MiB of each of the 6 large files of the YARA scan")
    g.add_argument("--yara-webroot", type=int, default=6000, help="small files of the YARA whole-command web root")
    g.add_argument("--yara-big", type=int, default=300, help="bigger files of the second YARA web root")
    g.add_argument("--memory-mb", type=int, default=512, help="MiB of the raw memory image")
    g.add_argument("--findings", type=int, default=100_000, help="findings of the report benchmark")
    g.add_argument("--collect-mib", type=int, default=256, help="MiB of the big-files collection")
    g.add_argument("--collect-small", type=int, default=6000, help="files of the small-files collection")
    g.add_argument("--image-mb", type=int, default=32, help="MiB of padding on the disk image's C: volume")
    g.add_argument("--image-formats", default="raw,e01", help="image formats: raw,e01,vhdx,vmdk")
    g.add_argument("--hosts", type=int, default=20, help="hosts of the synthetic fleet")
    g.add_argument("--units", type=int, default=100, help="no-op units of the overhead section")
    g.add_argument("--timeline-events", type=int, default=1_000_000, help="EVTX records of the timeline section")
    return ap


def bench_startup(s: Suite, args: argparse.Namespace, work: Path) -> None:
    import startup as m

    res = m.measure(work, max(3, args.repeat))
    rows = (
        ("help", "triage --help", "python -c pass", "< 0.15 s"),
        ("version", "triage --version", "python -c pass", "< 0.15 s"),
        ("run", "triage run, 4-event EVTX", "evtx parse-only", "< 1 s"),
    )
    for key, what, base, goal in rows:
        r = res[key]
        s.add(
            Row(
                "startup",
                what,
                r["seconds"],
                "s",
                base,
                r["baseline_seconds"],
                1 / r["ratio"],
                f"{goal}: {r['seconds']:.2f} s",
                f"whole processes, alternating rounds; triage takes {r['ratio']:.1f}x its baseline (median)",
            )
        )


BENCHES: dict[str, Callable[[Suite, argparse.Namespace, Path], None]] = {
    "evtx": bench_evtx,
    "registry": bench_registry,
    "exchange": bench_exchange,
    "yara": bench_yara,
    "memory": bench_memory,
    "report": bench_report,
    "collect": bench_collect,
    "image": bench_image,
    "fleet": bench_fleet,
    "overhead": bench_overhead,
    "startup": bench_startup,
    "timeline": bench_timeline,
}


def run(argv: list[str] | None = None) -> tuple[list[Row], dict[str, Any]]:
    """Run the selected sections; returns the rows and the run's metadata (also written per the flags)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 2:
        parser.error("--workers: the N-worker runs are compared with 1 worker, so N must be 2 or more")
    only = parse_sections(args.only) or list(SECTIONS)
    skip = set(parse_sections(args.skip))
    chosen = [x for x in SECTIONS if x in only and x not in skip]
    s = Suite(quiet=args.quiet)
    # dask worker processes read this at import: no shutdown chatter from them on stderr
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    load_start = os.getloadavg()[0]
    loads: dict[str, float] = {}  # at the start of each section: other work on the machine skews times
    for noisy in ("distributed", "regipy", "pyarrow"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # an installed copy has its modules byte-compiled; a checkout run with PYTHONDONTWRITEBYTECODE set would
    # otherwise compile every module in every timed command (about 0.7 s each)
    from startup import compile_project

    compile_project()
    with tempfile.TemporaryDirectory(prefix="triage-suite-", dir=os.environ.get("TMPDIR")) as tmp:
        for i, name in enumerate(chosen, 1):
            loads[name] = round(os.getloadavg()[0], 2)
            s.log(f"[bold]\\[{i}/{len(chosen)}] {name}[/bold] (load average {loads[name]:.2f})")
            work = Path(tmp) / name
            work.mkdir()
            try:
                BENCHES[name](s, args, work)
            except Exception as exc:  # one broken section must not cost the others
                s.skipped[name] = f"failed: {type(exc).__name__}: {exc}"
                s.log(f"[red]{name} failed: {type(exc).__name__}: {exc}[/red]")
                if os.environ.get("TRIAGE_BENCH_RAISE"):
                    raise
            finally:
                _make_writable(work)
                shutil.rmtree(work, ignore_errors=True)
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
        "seconds": time.perf_counter() - s.t0,
        "sections": chosen,
        "load_by_section": loads,
        "skipped": s.skipped,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in s.rows]}, indent=1))
    if args.markdown:
        args.markdown.write_text(markdown(s.rows, meta))
    return s.rows, meta


def _make_writable(root: Path) -> None:
    """Collected evidence is read-only: open it up so the scratch folder can go."""
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(dirpath, name), 0o755)


def main(argv: list[str] | None = None) -> int:
    rows, meta = run(argv)
    print_table(rows, meta)
    return 0 if rows and not any(v.startswith("failed") for v in meta["skipped"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
