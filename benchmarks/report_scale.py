"""Report generation at scale: the ``triage report`` command over N synthetic findings (default 1,000,000).

A child process writes a synthetic case (manifest, run records and result parquet files of several
analyzers and hosts, mixed severities, 5 % of findings without a time). Then, in alternating rounds, two
whole processes run over it: the baseline (pandas reads every result parquet and writes one CSV, the
floor of any report writer) and ``triage report CASE``. Per round the ratio baseline / triage is taken;
the median is printed with the peak resident memory of each command (``wait4``: the largest process of
its tree) and the size of every output. Figures only, no asserts.
Usage: python benchmarks/report_scale.py [--findings 1000000] [--hosts 8] [--rounds 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
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


BASELINE = """
import sys
from pathlib import Path
import pandas as pd
frames = [pd.read_parquet(f) for f in sorted((Path(sys.argv[1]) / "results").rglob("*.parquet"))]
pd.concat(frames, ignore_index=True).to_csv(sys.argv[2], index=False)
"""


def _triage() -> list[str]:
    exe = Path(sys.executable).with_name("triage")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from triage.cli import main; sys.exit(main())"]


def run_process(cmd: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, float, float]:
    """Wall seconds, peak RSS in MiB (the largest process of the command's tree) and CPU seconds (user + system
    of the whole tree: on a shared machine the wall time follows the CPU share, the CPU time does not)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()  # drained while it runs: a full pipe would stall the command
    _pid, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
    return took, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def measure(case_dir: Path, work: Path, rounds: int = 3) -> dict[str, Any]:
    """``triage report`` against the parquet-to-CSV baseline, alternating; medians and per-round ratios."""
    report = [*_triage(), "report", str(case_dir), "-q", "--examiner", "bench"]
    base = [sys.executable, "-c", BASELINE, str(case_dir), str(work / "floor.csv")]
    rows: dict[str, list[float]] = {
        k: [] for k in ("triage", "triage_rss", "triage_cpu", "baseline", "baseline_rss", "baseline_cpu", "ratio")
    }
    for _ in range(rounds):
        b, b_rss, b_cpu = run_process(base)
        # exit 4: the synthetic case lacks evidence for a verdict; the report is written all the same
        t, t_rss, t_cpu = run_process(report, (0, 1, 4))
        rows["baseline_cpu"].append(b_cpu)
        rows["triage_cpu"].append(t_cpu)
        rows["baseline"].append(b)
        rows["baseline_rss"].append(b_rss)
        rows["triage"].append(t)
        rows["triage_rss"].append(t_rss)
        rows["ratio"].append(b / t)
    return {
        "triage_s": statistics.median(rows["triage"]),
        "baseline_s": statistics.median(rows["baseline"]),
        "ratio": statistics.median(rows["ratio"]),
        "triage_rss_mib": max(rows["triage_rss"]),
        "triage_cpu_s": statistics.median(rows["triage_cpu"]),
        "baseline_cpu_s": statistics.median(rows["baseline_cpu"]),
        "baseline_rss_mib": max(rows["baseline_rss"]),
        "rounds": rows,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--findings", type=int, default=1_000_000)
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", metavar="DIR", help="build the case here and keep it (an existing case is reused)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="triage-report-bench-")
    case_dir = Path(args.keep) if args.keep else Path(tmp) / "case"
    try:
        if not (case_dir / "results").is_dir():
            try:
                gen_s = generate_case(case_dir, args.findings, args.hosts, args.seed)
            except RuntimeError as exc:
                print(exc, file=sys.stderr)
                return 1
            print(f"synthetic case: {args.findings:,} findings, {args.hosts} hosts, generated in {gen_s:.1f} s")
        m = measure(case_dir, Path(tmp), args.rounds)
        print(
            f"triage report: {m['triage_s']:.1f} s, peak RSS {m['triage_rss_mib']:,.0f} MiB; "
            f"baseline (pandas parquet -> one CSV): {m['baseline_s']:.1f} s, peak RSS {m['baseline_rss_mib']:,.0f} MiB"
        )
        cpu = f"triage {m['triage_cpu_s']:.1f}, baseline {m['baseline_cpu_s']:.1f}"
        print(f"CPU seconds (whole process tree, median): {cpu}")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        ratios = ", ".join(f"{r:.2f}" for r in m["rounds"]["ratio"])
        print(f"ratio baseline / triage, median of {args.rounds} alternating rounds: {m['ratio']:.2f} ({ratios})")
        out = case_dir / "report"
        for path in sorted(out.iterdir()):
            print(f"  {path.name:22s} {path.stat().st_size / 2**20:10.1f} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
