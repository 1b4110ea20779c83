"""Report generation at scale: ``build_report`` over N synthetic findings (default 1,000,000).

A child process writes a synthetic case (manifest, run records and result parquet files of several
analyzers and hosts, mixed severities, 5 % of findings without a time); this process then builds the
whole report and prints the time per stage, the peak resident memory of the report process
(``resource.getrusage``), and the size of every output, the HTML page in particular. Figures only,
no asserts. Usage: python benchmarks/report_scale.py [--findings 1000000] [--hosts 8] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ANALYZERS = {
    # analyzer: (share of findings, evidence kind, rule prefix, tags, steps)
    "eventlog": (0.55, "evtx", "SIGMA-", "sigma", "10"),
    "exchange_weblogs": (0.25, "exchange_log", "TRIAGE-EXW-", "weblog,httpproxy", "8"),
    "webshell_locations": (0.15, "web_file", "TRIAGE-WEB-", "webshell", "8,10"),
    "registry_persistence": (0.05, "registry_hive", "TRIAGE-REG-PER-", "registry,persistence", "10"),
}
SEVERITY_P = [0.55, 0.2, 0.15, 0.08, 0.02]  # info .. critical
CHUNK = 100_000


def generate(case_dir: str, n: int, hosts: int, seed: int) -> None:
    """Write the synthetic case (runs in a child so its memory does not count against the report)."""
    from triage.case import Case, ManifestRow
    from triage.finding import SEVERITIES, coerce_findings

    rng = np.random.default_rng(seed)
    case = Case.create_or_open(case_dir, examiner="bench", case_id="CASE-BENCH")
    names = [f"EXCH{i:02d}" for i in range(hosts)]
    arts: dict[tuple[str, str], list[tuple[str, str]]] = {}
    with open(case.manifest_path, "a", encoding="utf-8") as fh:
        for host in names:
            for _, kind, _, _, _ in ANALYZERS.values():
                for j in range(200):
                    aid = f"A{abs(hash((host, kind, j))) % 16**15:015x}"
                    sha = f"{abs(hash((aid, 'sha'))) % 16**16:016x}" * 4
                    row = ManifestRow(
                        artifact_id=aid,
                        kind=kind,
                        outcome="success",
                        source_host=host,
                        source_path=f"C:/data/{kind}/{j}.bin",
                        collector="bench",
                        collector_version="1",
                        collected_at="2021-03-05T00:00:00Z",
                        relpath=f"evidence/{host}/{kind}/{j}.bin",
                        size=4096,
                        sha256=sha,
                    )
                    fh.write(row.to_json() + "\n")
                    arts.setdefault((host, kind), []).append((aid, sha))
    t0 = np.datetime64("2020-12-01T00:00:00", "us").astype("int64")
    t1 = np.datetime64("2021-03-10T00:00:00", "us").astype("int64")
    done = 0
    for analyzer, (share, kind, prefix, tags, steps) in ANALYZERS.items():
        total = int(n * share) if analyzer != "registry_persistence" else n - done
        done += total
        out = Path(case_dir) / "results" / analyzer
        out.mkdir(parents=True, exist_ok=True)
        for c, start in enumerate(range(0, total, CHUNK)):
            m = min(CHUNK, total - start)
            host_idx = rng.integers(0, hosts, m)
            art_idx = rng.integers(0, 200, m)
            rule = rng.integers(0, 40, m)
            ts = rng.integers(t0, t1, m).astype("datetime64[us]")
            ts = pd.Series(ts).dt.tz_localize("UTC")
            ts[rng.random(m) < 0.05] = pd.NaT
            ev = [arts[(names[h], kind)][a] for h, a in zip(host_idx, art_idx, strict=True)]
            ids = pd.Series([f"{analyzer}:{start + i}" for i in range(m)])
            rec = pd.Series(np.arange(start, start + m)).astype(str)
            df = pd.DataFrame(
                {
                    "finding_id": ids.map(lambda s: f"{abs(hash(s)):032x}"[:32]),
                    "case_id": "CASE-BENCH",
                    "host": [names[h] for h in host_idx],
                    "analyzer": analyzer,
                    "analyzer_version": "1",
                    "rule_id": [f"{prefix}{r:03d}" for r in rule],
                    "rule_title": [f"Synthetic rule {r} of {analyzer}" for r in rule],
                    "severity": pd.Categorical.from_codes(rng.choice(5, m, p=SEVERITY_P), list(SEVERITIES)),
                    "confidence": "medium",
                    "title": "Synthetic finding " + rec,
                    "message": "Record " + rec + " matched a synthetic rule; details in attributes.",
                    "ts": ts,
                    "ts_desc": "Event logged",
                    "evidence_id": [e[0] for e in ev],
                    "evidence_path": [
                        f"evidence/{names[h]}/{kind}/{a}.bin" for h, a in zip(host_idx, art_idx, strict=True)
                    ],
                    "evidence_sha256": [e[1] for e in ev],
                    "location": ("C:/inetpub/wwwroot/aspnet_client/s" if kind == "web_file" else "rec#") + rec,
                    "mitre": "T1505.003",
                    "cve": np.where(rule % 7 == 0, "CVE-2021-26855", ""),
                    "ed2102_steps": steps,
                    "tags": tags,
                    "references": "",
                    "attributes": '{"record": ' + rec + ', "note": "synthetic"}',
                }
            )
            coerce_findings(df).to_parquet(out / f"chunk{c:04d}.parquet", index=False)
            run = {
                "analyzer": analyzer,
                "analyzer_version": "1",
                "evidence_id": f"chunk{c}",
                "evidence_sha256": "",
                "host": names[c % hosts],
                "status": "success",
                "started": "2021-03-05T00:00:00Z",
                "finished": "2021-03-05T00:00:01Z",
                "duration_s": 1.0,
                "findings": m,
                "warnings": [],
                "message": "",
            }
            (out / f"chunk{c:04d}.run.json").write_text(json.dumps(run))
    case.close()


def generate_case(case_dir: Path, n: int, hosts: int = 8, seed: int = 7) -> float:
    """Write the synthetic case in a spawned child; returns its wall seconds (raises if the child fails)."""
    t = time.perf_counter()
    child = multiprocessing.get_context("spawn").Process(target=generate, args=(str(case_dir), n, hosts, seed))
    child.start()
    child.join()
    if child.exitcode:
        raise RuntimeError(f"generator failed with exit code {child.exitcode}")
    return time.perf_counter() - t


def build(case_dir: Path) -> tuple[Any, float, float]:
    """``build_report`` over the case: (result, wall seconds, CPU seconds of this process)."""
    from triage.case import Case
    from triage.report import build_report

    t, cpu = time.perf_counter(), time.process_time()
    case = Case.open(case_dir)
    res = build_report(case)
    case.close()
    return res, time.perf_counter() - t, time.process_time() - cpu


def parquet_to_csv(case_dir: Path, out: Path) -> tuple[int, float]:
    """A floor for any report writer: read every result parquet with pandas and write one CSV.

    Returns (rows, wall seconds).
    """
    t = time.perf_counter()
    frames = [pd.read_parquet(f) for f in sorted((case_dir / "results").rglob("*.parquet"))]
    df = pd.concat(frames, ignore_index=True)
    df.to_csv(out, index=False)
    return len(df), time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--findings", type=int, default=1_000_000)
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", metavar="DIR", help="build the case here and keep it")
    args = ap.parse_args()
    tmp = None
    if args.keep:
        case_dir = Path(args.keep)
        shutil.rmtree(case_dir, ignore_errors=True)
    else:
        tmp = tempfile.mkdtemp(prefix="triage-report-bench-")
        case_dir = Path(tmp) / "case"
    try:
        try:
            gen_s = generate_case(case_dir, args.findings, args.hosts, args.seed)
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 1
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        res, total_s, cpu_s = build(case_dir)
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        print(f"synthetic case: {args.findings:,} findings, {args.hosts} hosts, generated in {gen_s:.1f} s")
        print(
            f"report: {res.findings:,} findings after dedupe in {total_s:.1f} s wall, {cpu_s:.1f} s CPU "
            f"({res.findings / max(total_s, 1e-9):,.0f} findings/s)"
        )
        print(f"peak RSS of the report process: {peak_kib / 1024:,.0f} MiB (before it: {rss_before / 1024:,.0f} MiB)")
        print("stages, wall s: " + ", ".join(f"{k} {v:.1f}" for k, v in res.timings.items()))
        for name, path in res.outputs.items():
            size = Path(path).stat().st_size
            print(f"  {name:22s} {size / 2**20:10.1f} MiB")
        print(
            f"HTML size: {Path(res.html).stat().st_size / 2**20:.2f} MiB (top findings embedded, aggregates over all)"
        )
        print(f"timesketch: {res.timesketch_skipped:,} undated findings left out; stix: {res.stix}")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
