"""Collection throughput: the ``triage collect`` command against ``cp -a`` + ``hashdeep -c md5,sha256 -r``.

Two shapes of a synthetic Exchange volume, each timed in alternating rounds of whole processes: ``small``, a
web root of many small files (default 6,000 of 1-16 KiB) beside a few IIS/HttpProxy logs, and ``big``, a few
64 MiB logs. The baseline is ``cp -a`` of the tree, then ``hashdeep -c md5,sha256 -r`` over the copy (without
hashdeep, ``md5sum`` and ``sha256sum``: the same two hashes); triage is ``triage collect VOL --case C`` (walk,
copy, both hashes, manifest, custody log, read-only, and at its end a ``syncfs`` of the case's file system: the
copies are on disk when it returns). So a second baseline row adds ``sync -f`` of the copy (the same flush) to
the first, timed right after it; the issue's row stays the one without. Per round the ratio baseline / triage is
taken (above 1: triage is faster); the median is printed with the MB/s of each, and the CPU seconds (user +
system, children included; the system part in brackets) beside the wall times, since wall ratios scatter on a
shared machine, and a high system part means the kernel's inode allocator stalled (see the README). The page
cache is warm for both alike. Python byte code is compiled first (as an installed package has it), so no run
pays for compiling ``triage`` (with ``PYTHONDONTWRITEBYTECODE`` set, every run would).
Usage: python benchmarks/collect_throughput.py [--shape small|big|both] [--small 6000] [--mib 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from triage.testing.volume import VolumeSpec, build_volume


def pad_volume(vol: Path, mib: int, small: int, seed: int = 7) -> int:
    """Add ``small`` web files of 1-16 KiB, then 64 MiB logs up to ``mib`` MiB in all; returns the bytes added."""
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
    big = max(0, (mib << 20) - total)
    per = 64 << 20
    i = 0
    while big > 0:  # 64 MiB log files
        n = min(per, big)
        (logs / f"HttpProxy_2021030{i % 10}{i:02d}-1.LOG").write_bytes(os.urandom(n))
        big -= n
        total += n
        i += 1
    return total


def shape_volume(vol: Path, shape: str, small: int = 6000, mib: int = 256) -> int:
    """``small``: a web root of ``small`` files plus 8 IIS logs of 1 MiB; ``big``: ``mib`` MiB of 64 MiB logs."""
    if shape == "big":
        return pad_volume(vol, mib, 0)
    total = pad_volume(vol, 0, small)
    iis = vol / "inetpub/logs/LogFiles/W3SVC1"
    iis.mkdir(parents=True, exist_ok=True)
    for day in range(1, 9):
        data = os.urandom(1 << 20)
        (iis / f"u_ex21030{day}.log").write_bytes(data)
        total += len(data)
    return total


def baseline_command(vol: Path, dst: Path) -> tuple[str, str]:
    """(shell command, label) of the two-hash copy a user would run instead."""
    if shutil.which("hashdeep"):
        return f"cp -a '{vol}' '{dst}' && hashdeep -c md5,sha256 -r '{dst}' > /dev/null", "cp -a + hashdeep"
    each = "find '{d}' -type f -print0 | xargs -0 {tool} > /dev/null"
    hashes = " && ".join(each.format(d=dst, tool=t) for t in ("md5sum", "sha256sum"))
    return f"cp -a '{vol}' '{dst}' && {hashes}", "cp -a + md5sum + sha256sum (no hashdeep)"


def _triage() -> list[str]:
    exe = Path(sys.executable).with_name("triage")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from triage.cli import main; sys.exit(main())"]


def _timed_run(cmd: list[str] | str, shell: bool = False, ok: tuple[int, ...] = (0,)) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds: user + system of the process and the children it waited for, and the system
    part alone: on ext4 without a journal, creating files beside recently deleted ones shows there)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()  # small: a failing command's message
    _pid, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if proc.returncode not in ok:
        raise RuntimeError(f"{cmd} exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
    return took, usage.ru_utime + usage.ru_stime, usage.ru_stime


def compile_bytecode() -> None:
    """Byte code for triage's packages, as an installed package has it (a run would compile them otherwise)."""
    root = Path(__file__).resolve().parent.parent
    dirs = [str(root / d) for d in ("triage", "collectors", "analyzers") if (root / d).is_dir()]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", *dirs], env=env, stdout=subprocess.DEVNULL, check=False)


def _rm_case(case_dir: Path) -> None:
    for dirpath, _d, files in os.walk(case_dir):  # evidence is read-only
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    shutil.rmtree(case_dir)


def measure(vol: Path, work: Path, rounds: int = 3) -> dict[str, Any]:
    """Seconds of the baseline (with and without a final ``sync -f``) and of ``triage collect`` per round, the
    per-round ratios and their medians, and the CPU seconds of each.

    Each run writes into a fresh folder and nothing is deleted until every round is done, and the page cache is
    synced before each run, so neither contender pays for deleting or flushing the other's copy (measured on ext4
    here: ``cp -a`` of 6,000 files took 2.4 s once and 5.4 s right after a deletion). The order alternates per round."""
    keys = ("baseline", "baseline+sync", "triage collect", "ratio", "ratio_sync")
    times: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {"baseline": [], "triage collect": []}
    system: dict[str, list[float]] = {"baseline": [], "triage collect": []}
    label = ""
    made: list[Path] = []
    try:
        for r in range(rounds):
            dst, case_dir = work / f"cp{r}", work / f"case{r}"
            cmd, label = baseline_command(vol, dst)
            # exit 4 would mean nothing examinable: the built volume always holds evidence, so 0 is expected
            tri = [
                *_triage(),
                "collect",
                str(vol),
                "--case",
                str(case_dir),
                "--host",
                "BENCH",
                "-q",
                "--examiner",
                "bench",
            ]
            made += [dst, case_dir]
            got: dict[str, tuple[float, float, float]] = {}
            for name in ("baseline", "triage") if r % 2 == 0 else ("triage", "baseline"):
                os.sync()  # the other contender's pending writes are not this one's cost
                if name == "baseline":
                    got["baseline"] = _timed_run(cmd, shell=True)
                    got["sync"] = _timed_run(["sync", "-f", str(dst)])  # the flush triage does at its end
                else:
                    got["triage"] = _timed_run(tri)
            base, flushed, tri_s = got["baseline"][0], got["baseline"][0] + got["sync"][0], got["triage"][0]
            times["baseline"].append(base)
            times["baseline+sync"].append(flushed)
            times["triage collect"].append(tri_s)
            times["ratio"].append(base / tri_s)
            times["ratio_sync"].append(flushed / tri_s)
            cpu["baseline"].append(got["baseline"][1])
            cpu["triage collect"].append(got["triage"][1])
            system["baseline"].append(got["baseline"][2])
            system["triage collect"].append(got["triage"][2])
    finally:
        for path in made:
            if path.exists():
                _rm_case(path)
    return {
        "baseline_label": label,
        "baseline_s": statistics.median(times["baseline"]),
        "baseline_sync_s": statistics.median(times["baseline+sync"]),
        "triage_s": statistics.median(times["triage collect"]),
        "ratio": statistics.median(times["ratio"]),
        "ratio_sync": statistics.median(times["ratio_sync"]),
        "cpu_baseline_s": statistics.median(cpu["baseline"]),
        "cpu_triage_s": statistics.median(cpu["triage collect"]),
        "sys_baseline_s": statistics.median(system["baseline"]),
        "sys_triage_s": statistics.median(system["triage collect"]),
        "rounds": times,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=("small", "big", "both"), default="both")
    ap.add_argument("--small", type=int, default=6000, help="files of the small shape")
    ap.add_argument("--mib", type=int, default=256, help="MiB of the big shape")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    compile_bytecode()
    for shape in ("small", "big") if args.shape == "both" else (args.shape,):
        with tempfile.TemporaryDirectory(prefix="triage-bench-", dir=os.environ.get("TMPDIR")) as tmp:
            work = Path(tmp)
            vol = build_volume(work / "vol", VolumeSpec(compromised=True))
            shape_volume(vol, shape, args.small, args.mib)
            nfiles = sum(len(f) for _, _, f in os.walk(vol))
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(vol) for f in fs)
            m = measure(vol, work, args.rounds)
            mb = size / 1e6
            load = os.getloadavg()[0]
            print(f"{shape}: {nfiles} files, {mb:,.1f} MB; {args.rounds} alternating rounds; load {load:.2f} after")
            base_cpu = f"CPU {m['cpu_baseline_s']:.2f} s (system {m['sys_baseline_s']:.2f})"
            tri_cpu = f"CPU {m['cpu_triage_s']:.2f} s (system {m['sys_triage_s']:.2f})"
            rows = (
                (m["baseline_label"], m["baseline_s"], base_cpu),
                (m["baseline_label"] + " + sync", m["baseline_sync_s"], ""),
                ("triage collect", m["triage_s"], tri_cpu),
            )
            for name, secs, extra in rows:
                print(f"  {name:<36} {secs:8.2f} s {mb / secs:9.1f} MB/s  {extra}")
            for key, what in (("ratio", "baseline"), ("ratio_sync", "baseline + sync")):
                per = ", ".join(f"{x:.2f}" for x in m["rounds"][key])
                print(f"  ratio {what} / triage (median of per-round ratios): {m[key]:.2f}x ({per}); target 0.9x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
