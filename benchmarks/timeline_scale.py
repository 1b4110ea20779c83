"""The super-timeline at scale: ``triage timeline`` over a case of N EVTX records vs a plain EVTX-to-JSONL dump.

Builds one EVTX log of ``--per-file`` records with the project's writer (the realistic Sysmon/Security mix of
``evtx_throughput.py``), stores it ``N / per-file`` times under different names, collects them by reference
(hashed, not copied) into a case, then alternates, ``--rounds`` times, in fresh processes:

  triage     ``triage timeline CASE --format timesketch --out DIR``: every record read through the EVTX reader,
             file times from the manifest, findings matched, sorted in bounded memory, Timesketch JSONL written
  baseline   the plain way to the same file: read the same EVTX records with the same reader and write each
             batch as JSON lines (pandas ``to_json``), unsorted, untagged

and prints per round the wall time and peak RSS of each, and the ratio baseline time / triage time (above 1:
triage is faster); the median ratio is the figure. Usage:
  python benchmarks/timeline_scale.py [--events 1000000] [--per-file 100000] [--rounds 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

TRIAGE = """
import json, resource, sys
from triage.cli import main
code = main(["timeline", sys.argv[1], "--format", "timesketch", "--out", sys.argv[2], "-q", "--json"])
sys.stdout.flush()
print("\\n" + json.dumps({"code": code, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""
BASELINE = """
import json, resource, sys
from pathlib import Path
from triage.formats.evtx import ReadStats, iter_evtx
n = 0
with open(sys.argv[2], "w", encoding="utf-8") as out:
    for path in sorted(Path(sys.argv[1]).glob("*.evtx")):
        for df in iter_evtx(path, ReadStats()):
            out.write(df.to_json(orient="records", lines=True, date_format="iso", date_unit="us"))
            out.write("\\n")
            n += len(df)
print(json.dumps({"code": 0, "records": n, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def build(work: Path, events: int, per_file: int) -> tuple[Path, Path, int]:
    """The EVTX folder and the case collected from it; returns (folder, case, records)."""
    sys.path.insert(0, str(HERE))
    from evtx_throughput import make_events

    from triage.cli import main
    from triage.testing.evtx import evtx_bytes

    per_file = min(per_file, events)
    files = max(1, events // per_file)
    folder = work / "logs"
    case = work / "case"
    marker = work / "built.json"  # a kept --work folder of the same size: measure again, do not rebuild
    if marker.is_file() and json.loads(marker.read_text()) == {"events": events, "per_file": per_file}:
        return folder, case, files * per_file
    folder.mkdir(parents=True, exist_ok=True)
    data = evtx_bytes(make_events(per_file))
    for i in range(files):  # the same records under different names: each is collected and read on its own
        (folder / f"Log-{i:03d}.evtx").write_bytes(data)
    code = main(["collect", str(folder), "--case", str(case), "--host", "BENCH", "--link", "reference", "-q"])
    if code != 0:
        raise SystemExit(f"collect failed with exit {code}")
    marker.write_text(json.dumps({"events": events, "per_file": per_file}))
    return folder, case, files * per_file


def _child(code: str, *argv: str) -> tuple[float, dict[str, Any]]:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


def run(
    events: int = 1_000_000,
    per_file: int = 100_000,
    rounds: int = 3,
    work: Path | None = None,
    report: Any = None,
) -> dict[str, Any]:
    """Build the case, time both contenders alternately; the rows and the median ratio (``report(i, row)`` is
    called as each round ends)."""
    own = work is None
    root = Path(tempfile.mkdtemp(prefix="triage-tl-bench-")) if own else Path(work)  # type: ignore[arg-type]
    try:
        t = time.perf_counter()
        folder, case, records = build(root, events, per_file)
        setup = time.perf_counter() - t
        rounds_out = []
        for i in range(rounds):
            out_dir = root / f"out-{i}"
            tl_wall, tl = _child(TRIAGE, str(case), str(out_dir))
            base_wall, base = _child(BASELINE, str(folder), str(root / f"baseline-{i}.jsonl"))
            if tl["code"] != 0:
                raise RuntimeError(f"triage timeline exited {tl['code']}")
            with open(out_dir / "timeline.jsonl", "rb") as fh:
                lines = sum(1 for _ in fh)
            rounds_out.append(
                {
                    "triage_s": round(tl_wall, 2),
                    "triage_peak_mib": round(tl["peak"] / 2**20, 1),
                    "triage_events": lines,
                    "baseline_s": round(base_wall, 2),
                    "baseline_peak_mib": round(base["peak"] / 2**20, 1),
                    "baseline_records": base["records"],
                    "ratio": round(base_wall / tl_wall, 3),
                }
            )
            if report is not None:
                report(i + 1, rounds_out[-1])
            shutil.rmtree(out_dir, ignore_errors=True)
            (root / f"baseline-{i}.jsonl").unlink(missing_ok=True)
        return {
            "records": records,
            "setup_s": round(setup, 1),
            "rounds": rounds_out,
            "median_ratio": statistics.median(r["ratio"] for r in rounds_out),
            "median_triage_s": statistics.median(r["triage_s"] for r in rounds_out),
            "median_baseline_s": statistics.median(r["baseline_s"] for r in rounds_out),
            "max_triage_peak_mib": max(r["triage_peak_mib"] for r in rounds_out),
            "max_baseline_peak_mib": max(r["baseline_peak_mib"] for r in rounds_out),
        }
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--per-file", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="build here (kept) instead of a temporary folder")
    ap.add_argument("--json", type=Path, default=None, help="write the result there too")
    args = ap.parse_args(argv)

    def show(i: int, r: dict[str, Any]) -> None:
        print(
            f"round {i}: triage timeline {r['triage_s']:.1f} s, peak {r['triage_peak_mib']:.0f} MiB, "
            f"{r['triage_events']:,} events | baseline {r['baseline_s']:.1f} s, peak {r['baseline_peak_mib']:.0f} MiB, "
            f"{r['baseline_records']:,} records | ratio {r['ratio']:.2f}x",
            flush=True,
        )

    res = run(args.events, args.per_file, args.rounds, args.work, show)
    print(
        f"{res['records']:,} EVTX records: median ratio (baseline time / triage time) {res['median_ratio']:.2f}x; "
        f"peak RSS triage {res['max_triage_peak_mib']:.0f} MiB, baseline {res['max_baseline_peak_mib']:.0f} MiB"
    )
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
