"""Collection throughput: ``triage collect`` against plain ``cp -a`` of the same tree, same run.

Builds a synthetic Exchange volume padded with N MiB of log and web files (many small files plus a
few large ones), then times ``cp -a`` (copy only), ``cp -a; sync`` (copy made durable),
``sha256sum`` over the tree (hash only) and triage's collector (copy + sha256 + md5 + manifest +
custody log + read-only + a final sync). The page cache is warm for every contender alike.
Prints MB/s for each and triage's time as a ratio of cp's. Machines here are noisy: compare ratios,
not absolute times. Usage: python benchmarks/collect_throughput.py [--mib 512] [--small 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.case import Case
from triage.testing.volume import VolumeSpec, build_volume


def pad_volume(vol: Path, mib: int, small: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    logs = vol / "Program Files/Microsoft/Exchange Server/V15/Logging/HttpProxy/Owa"
    web = vol / "inetpub/wwwroot/aspnet_client/system_web/4_0_30319"
    logs.mkdir(parents=True, exist_ok=True)
    web.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(small):  # 1-16 KiB files, like a web root
        data = rng.randbytes(rng.randint(1024, 16384))
        (web / f"f{i:05d}.js").write_bytes(data)
        total += len(data)
    big = max(1, (mib << 20) - total)
    per = 64 << 20
    i = 0
    while big > 0:  # 64 MiB log files
        n = min(per, big)
        (logs / f"HttpProxy_2021030{i % 10}{i:02d}-1.LOG").write_bytes(os.urandom(n))
        big -= n
        total += n
        i += 1
    return total


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _rm_case(case_dir: Path) -> None:
    for dirpath, _d, files in os.walk(case_dir):  # evidence is read-only
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    shutil.rmtree(case_dir)


def measure(vol: Path, work: Path, repeat: int = 3, extra: bool = True) -> dict[str, list[float]]:
    """Wall seconds of every contender over ``vol``, ``repeat`` runs each, scratch copies under ``work``.

    Keys: ``cp -a``, ``triage collect`` and, with ``extra``, ``cp -a; sync`` and ``sha256sum``.
    """
    results: dict[str, list[float]] = {"cp -a": [], "cp -a; sync": [], "sha256sum": [], "triage collect": []}
    if not extra:
        del results["cp -a; sync"], results["sha256sum"]
    for r in range(repeat):
        dst = work / f"cp{r}"
        results["cp -a"].append(timed(lambda d=dst: subprocess.run(["cp", "-a", str(vol), str(d)], check=True)))
        shutil.rmtree(dst)
        subprocess.run(["sync"], check=True)
        if extra:
            results["cp -a; sync"].append(
                timed(lambda d=dst: subprocess.run(f"cp -a '{vol}' '{d}' && sync", shell=True, check=True))
            )
            shutil.rmtree(dst)
            subprocess.run(["sync"], check=True)
            results["sha256sum"].append(
                timed(
                    lambda: subprocess.run(
                        f"find '{vol}' -type f -print0 | xargs -0 sha256sum > /dev/null", shell=True, check=True
                    )
                )
            )
        case_dir = work / f"case{r}"

        def run(c: Path = case_dir) -> None:
            case = Case.create_or_open(c, examiner="bench")
            src = open_source_path(str(vol))
            collect_volume(case, src, host="BENCH")
            case.close()  # includes the final sync of evidence, manifest and custody

        results["triage collect"].append(timed(run))
        _rm_case(case_dir)
    return results


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="triage-bench-", dir=os.environ.get("TMPDIR")) as tmp:
        work = Path(tmp)
        vol = build_volume(work / "vol", VolumeSpec(compromised=True))
        size = pad_volume(vol, args.mib, args.small)
        nfiles = sum(len(f) for _, _, f in os.walk(vol))
        results = measure(vol, work, args.repeat)
        mb = size / 1e6
        print(f"tree: {nfiles} files, {mb:,.1f} MB; best of {args.repeat} runs", file=sys.stderr)
        base = min(results["cp -a"])
        print(f"{'contender':<16} {'best s':>8} {'MB/s':>9} {'x cp -a':>8}")
        for name, times in results.items():
            best = min(times)
            print(f"{name:<16} {best:8.3f} {mb / best:9.1f} {best / base:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
