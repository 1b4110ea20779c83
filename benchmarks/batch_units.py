"""Units sized to the work: `triage analyze` over thousands of small files, one unit per file vs batches.

Builds a web root of small server pages (1-128 KiB, three planted shells) and a folder of small EVTX logs (the
project's EVTX writer), collects each into a case, copies the case once per variant, and times whole processes in
alternating rounds (the order flips each round; ratios are taken per round, the median is reported):

  yara      ``triage analyze --only yara -j N --force`` with batches (the default now) and with one unit per file
            (the layout before batches), against ``yara -r -p N`` with the same own rules (``signatures/yara``)
            over the whole volume folder (a clean synthetic server volume plus the pages)
  eventlog  the same for ``--only eventlog`` over the EVTX files, against a parse-only pass (the ``evtx`` parser,
            records_json + json.loads, one process per file list split over N processes)

It prints wall times, the number of files each variant leaves in ``results/<analyzer>/`` and the ratios, and checks
that both layouts give the same findings. The "one unit per file" variant is the same code with batching turned
off (``triage.runner.DEFAULT_BATCHING``), so the difference is the per-unit bookkeeping alone. Usage:

  python benchmarks/batch_units.py [--pages 6000] [--logs 400] [--rounds 3] [--jobs 2] [--only yara|eventlog]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from yara_scan import PLANTED  # noqa: E402  (the same three shells as the YARA benchmark)

WORDS = ("the", "page", "load", "request", "server", "script", "div", "span", "table", "form", "owa", "ecp", "mail")
# a child that runs the CLI with batching off: the layout and bookkeeping of one unit per artifact
UNBATCHED = (
    "import sys, triage.runner as r; r.DEFAULT_BATCHING = r.BatchLimits(count=1); "
    "from triage.cli import main; sys.exit(main(sys.argv[1:]))"
)


def make_webroot(root: Path, pages: int, seed: int = 7) -> Path:
    """``pages`` pages of 1-128 KiB under ``inetpub/wwwroot`` plus three planted shells; the web folder."""
    rng = random.Random(seed)
    web = root / "inetpub" / "wwwroot" / "app"
    for i in range(pages):
        sub = web / f"d{i // 500:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        n = rng.choice((1, 4, 16, 64, 128)) * 1024
        body = " ".join(rng.choice(WORDS) for _ in range(n // 5)).encode()[:n]
        (sub / f"page{i:05d}.aspx").write_bytes(b'<%@ Page Language="C#" %>\r\n<html><body>' + body + b"</body></html>")
    for name, data in PLANTED.items():
        (web / name).write_bytes(data)
    return web


def make_logs(folder: Path, logs: int, records: int = 250) -> list[Path]:
    """``logs`` small EVTX files of ``records`` events each (the mix of benchmarks/evtx_throughput.py)."""
    from evtx_throughput import make_events

    from triage.testing.evtx import write_evtx

    folder.mkdir(parents=True)
    out = []
    for i in range(logs):
        p = folder / f"Security-{i:04d}.evtx"
        write_evtx(p, make_events(records, seed=i))
        out.append(p)
    return out


def _parse_only(paths: list[str]) -> int:
    from evtx import PyEvtxParser

    return sum(
        1 for p in paths for r in PyEvtxParser(p, number_of_threads=1).records_json() if json.loads(r["data"])
    )


def parse_only(paths: list[Path], jobs: int) -> int:
    """Every record of every log parsed (records_json + json.loads), the files split over ``jobs`` processes."""
    parts = [[str(p) for p in paths[i::jobs]] for i in range(jobs)]
    with ProcessPoolExecutor(jobs) as pool:
        return sum(pool.map(_parse_only, parts))


def run(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    if proc.returncode not in (0, 1, 4):  # findings (1) or insufficient evidence (4) are answers, not failures
        raise SystemExit(f"{' '.join(cmd[:4])}... exited {proc.returncode}: {proc.stderr[-2000:]}")
    return took


def result_files(case: Path, analyzer: str) -> int:
    return sum(1 for p in (case / "results" / analyzer).rglob("*") if p.is_file())


def findings_of(case: Path, analyzer: str) -> list[str]:
    from triage.case import Case
    from triage.report import load_findings

    df = load_findings(Case.open(case))
    return sorted(df.loc[df["analyzer"] == analyzer, "finding_id"])


def compare(
    label: str,
    cases: dict[str, Path],
    analyzer: str,
    jobs: int,
    rounds: int,
    baseline: tuple[str, Any] | None,
) -> dict[str, Any]:
    """Alternating rounds of the batched and unbatched analyze (and the baseline); per-round ratios, medians."""
    env = {**os.environ, "TRIAGE_EXAMINER": "bench"}
    cli = [sys.executable, "-m", "triage", "analyze"]
    old = [sys.executable, "-c", UNBATCHED, "analyze"]
    args = ["--only", analyzer, "-j", str(jobs), "--force", "-q"]
    contenders = {
        "batched": lambda: run([*cli, str(cases["batched"]), *args], env),
        "one unit per file": lambda: run([*old, str(cases["one unit per file"]), *args], env),
    }
    if baseline is not None:
        contenders[baseline[0]] = baseline[1]
    for fn in contenders.values():  # warm-up: rule caches, page cache, results in place for --force
        fn()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(rounds):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for name in order:
            times[name].append(contenders[name]())
    out: dict[str, Any] = {"label": label, "rounds": rounds}
    for name, ts in times.items():
        out[f"{name} s"] = round(statistics.median(ts), 3)
    out["speedup batched vs one unit per file"] = round(
        statistics.median(a / b for a, b in zip(times["one unit per file"], times["batched"], strict=True)), 2
    )
    if baseline is not None:
        for name in ("batched", "one unit per file"):
            out[f"{name} / {baseline[0]}"] = round(
                statistics.median(a / b for a, b in zip(times[name], times[baseline[0]], strict=True)), 2
            )
    out["result files batched"] = result_files(cases["batched"], analyzer)
    out["result files one unit per file"] = result_files(cases["one unit per file"], analyzer)
    same = findings_of(cases["batched"], analyzer) == findings_of(cases["one unit per file"], analyzer)
    out["same findings"] = same
    out["findings"] = len(findings_of(cases["batched"], analyzer))
    return out


def collect(case: Path, source: Path, kind: str | None = None) -> None:
    from collectors.collect import collect_files, collect_volume
    from collectors.sources import open_source_path
    from triage.case import Case

    c = Case.create_or_open(case, examiner="bench", case_id=case.name)
    if kind:
        collect_files(c, open_source_path(str(source), "files"), host="HOST", kind=kind)
    else:
        collect_volume(c, open_source_path(str(source)), host=None)
    c.close()


def bench_yara(work: Path, pages: int, jobs: int, rounds: int) -> dict[str, Any]:
    from analyzers.yara.content import own_rule_paths
    from triage.testing.volume import VolumeSpec, build_volume

    root = build_volume(work / "vol", VolumeSpec(compromised=False))  # a Windows volume, then the pages
    make_webroot(root, pages)
    collect(work / "case-yara", root)
    cases = {"batched": work / "case-yara", "one unit per file": work / "case-yara-units"}
    shutil.copytree(cases["batched"], cases["one unit per file"], symlinks=True)
    baseline = None
    yara = shutil.which("yara")
    if yara:
        names = ("filename", "filepath", "extension", "filetype", "owner", "md5")
        defines = [a for n in names for a in ("-d", f"{n}=")]
        cmd = [yara, "-r", "-w", "-p", str(jobs), *defines, *map(str, own_rule_paths()), str(root)]
        baseline = (f"yara -r -p {jobs}", lambda: run(cmd, dict(os.environ)))
    else:
        print("yara is not installed: the baseline row is skipped (apt-get install -y yara)")
    out = compare(f"yara over {pages + len(PLANTED)} pages", cases, "yara", jobs, rounds, baseline)
    if yara:
        hits = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()
        out[f"yara -r -p {jobs} matches"] = len(hits)
    return out


def bench_eventlog(work: Path, logs: int, jobs: int, rounds: int) -> dict[str, Any]:
    paths = make_logs(work / "logs", logs)
    collect(work / "case-evtx", work / "logs", kind="evtx")
    cases = {"batched": work / "case-evtx", "one unit per file": work / "case-evtx-units"}
    shutil.copytree(cases["batched"], cases["one unit per file"], symlinks=True)

    def parse() -> float:
        t = time.perf_counter()
        parse_only(paths, jobs)
        return time.perf_counter() - t

    return compare(f"eventlog over {logs} EVTX files", cases, "eventlog", jobs, rounds, ("parse-only", parse))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--pages", type=int, default=6000)
    ap.add_argument("--logs", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", choices=("yara", "eventlog"))
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="triage-batch-bench-") as tmp:
        work = Path(tmp)
        if args.only in (None, "yara"):
            (work / "y").mkdir()
            rows.append(bench_yara(work / "y", args.pages, args.jobs, args.rounds))
        if args.only in (None, "eventlog"):
            (work / "e").mkdir()
            rows.append(bench_eventlog(work / "e", args.logs, args.jobs, args.rounds))
        # the collected cases are read-only evidence: make them removable
        for dirpath, dirs, _files in os.walk(work):
            for d in dirs:
                os.chmod(os.path.join(dirpath, d), 0o755)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for row in rows:
            print(row["label"])
            for k, v in row.items():
                if k != "label":
                    print(f"  {k:<40} {v}")
    return 0 if all(r["same findings"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
