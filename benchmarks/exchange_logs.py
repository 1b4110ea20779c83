"""Exchange HttpProxy log throughput: Test-ProxyLogon checks with and without the ServerInfo~ pre-filter.

Writes a synthetic HttpProxy log set of ``--mb`` MB (split over protocol folders, full modern field
list, benign traffic with one excluded ``ServerInfo~`` health probe in 250 rows and a planted
CVE-2021-26855 row every 50,000 rows), then measures, in the same run and with the page cache warm for every contender:

* baseline: a plain Python line count (``for line in file``), the floor of any per-line reader;
* the CVE-2021-26855 + Reset-VDir checks with the per-line ``ServerInfo~`` pre-filter (the default);
* the same checks parsing every row (``prefilter=False``), as a plain CSV import would;
* the web log rules (``exchange_weblogs``: full parse, normalisation and all YAML rules).

Prints MB/s for each and ratios against the baseline; both check variants must find the same hits.
Machines here are noisy: compare ratios, not absolute numbers.
Usage: python benchmarks/exchange_logs.py [--mb 300] [--files 6] [--repeat 1] [--probe-every 250] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from analyzers.exchange.common import LogFile
from analyzers.exchange.logs import HTTPPROXY
from analyzers.exchange.proxylogon import scan_httpproxy
from analyzers.exchange.rules import load_rules
from analyzers.exchange.weblogs import scan_log
from triage.testing.exchangelogs import bulk_httpproxy

FOLDERS = ("Ecp", "Owa", "Ews", "Mapi", "Autodiscover", "Eas")
ROOT = "Program Files/Microsoft/Exchange Server/V15/Logging/HttpProxy"


def build(where: Path, mb: int, files: int, probe_every: int = 250) -> tuple[list[LogFile], int]:
    """Write the log set; returns its files and the number of planted SSRF rows."""
    per_file = (mb << 20) // files
    out, planted = [], 0
    for i in range(files):
        folder = FOLDERS[i % len(FOLDERS)]
        rel = f"{ROOT}/{folder}/HttpProxy_20210303{i:02d}-1.LOG"
        planted += bulk_httpproxy(where / rel, per_file, protocol=folder, seed=i, probe_every=probe_every)
        out.append(LogFile(where / rel, "C:/" + rel, HTTPPROXY, "exchange_log"))
    return out, planted


def line_count(files: list[LogFile]) -> int:
    """The baseline: lines counted by iterating the files in Python."""
    n = 0
    for f in files:
        with open(f.path, "rb") as fh:
            for _ in fh:
                n += 1
    return n


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def measure(
    files: list[LogFile], repeat: int = 1, rules: bool = True
) -> tuple[list[tuple[str, float]], object, object]:
    """Seconds per contender (baseline first), and the scan results with and without the pre-filter.

    The page cache is warmed first so every contender reads from memory.
    """
    line_count(files)  # warm the page cache for everyone
    results: list[tuple[str, float]] = []
    base_t, _ = timed(lambda: line_count(files), repeat)
    results.append(("python line count (baseline)", base_t))
    pre_t, pre = timed(lambda: scan_httpproxy(files, prefilter=True), repeat)
    results.append(("TPL checks, ServerInfo~ pre-filter", pre_t))
    full_t, full = timed(lambda: scan_httpproxy(files, prefilter=False), repeat)
    results.append(("TPL checks, every row parsed", full_t))
    if rules:
        ruleset = load_rules()
        rule_t, _ = timed(lambda: [scan_log(f, ruleset) for f in files], repeat)
        results.append(("web log rules (full parse)", rule_t))
    return results, pre, full


def main(argv: list[str] | None = None) -> int:
    """Build the log set, time every contender, print the table; non-zero if the hits disagree."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=300, help="size of the log set in MB (MiB)")
    ap.add_argument("--files", type=int, default=6, help="number of log files (spread over protocol folders)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender (the best is reported)")
    ap.add_argument("--keep", type=Path, help="write the logs here and keep them (default: a temp folder)")
    ap.add_argument("--skip-rules", action="store_true", help="do not time the web log rules")
    ap.add_argument(
        "--probe-every",
        type=int,
        default=250,
        help="one ServerInfo~ health probe per N rows (0: only the planted rows)",
    )
    args = ap.parse_args(argv)

    where = args.keep or Path(tempfile.mkdtemp(prefix="triage-exlogs-"))
    try:
        t0 = time.perf_counter()
        files, planted = build(where, args.mb, args.files, args.probe_every)
        size = sum(f.path.stat().st_size for f in files)
        mb = size / 1e6
        print(
            f"wrote {mb:,.0f} MB in {len(files)} files ({planted} planted SSRF rows) in {time.perf_counter() - t0:.1f}s"
        )
        results, pre, full = measure(files, args.repeat, not args.skip_rules)
        base_t, lines = results[0][1], line_count(files)
        hits_pre, hits_full = len(pre.hits_26855), len(full.hits_26855)  # type: ignore[attr-defined]
        print(f"{lines:,} lines; CVE-2021-26855 hits: {hits_pre} with the pre-filter, {hits_full} without")
        print(f"{'contender':40s} {'seconds':>8s} {'MB/s':>9s} {'vs baseline':>12s}")
        for name, secs in results:
            print(f"{name:40s} {secs:8.2f} {mb / secs:9.1f} {base_t / secs:11.2f}x")
        secs = dict(results)
        speedup = secs["TPL checks, every row parsed"] / secs["TPL checks, ServerInfo~ pre-filter"]
        print(f"pre-filter speed-up over parsing every row: {speedup:.1f}x")
        ok = hits_pre == hits_full == planted
        if not ok:
            print(f"MISMATCH: planted {planted}, found {hits_pre} / {hits_full}", file=sys.stderr)
        return 0 if ok else 1
    finally:
        if args.keep is None:
            shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
