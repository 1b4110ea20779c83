"""Symbol-free YARA over a raw memory image: the memory analyzer's chunked scan against the ``yara`` tool.

Writes a synthetic image of ``--size`` bytes (default 2 GiB), sparse-ish: ``--fill`` of it is data (pseudo-random
blocks with text, UTF-16 strings and PE-like headers, as memory has), the rest holes, with indicators planted at
known offsets, several exactly across the 16 MiB chunk boundaries. Both contenders get the same file and the
same rule files (the project's ``signatures/yara/*.yar`` and ``signatures/yara/memory/*.yar``, one namespace per
file) and each runs in its own process, timed wall clock with its peak RSS from ``wait4``:

  yara CLI      ``yara -s -w -d <externals>= ns:rules... image`` (one file: one scanning thread; it mmaps the file)
  triage        ``rawscan.scan_file`` (yara-x, 16 MiB chunks + 64 KiB overlap), compile included

It checks both find every planted indicator at the same offsets, prints the ratio (above 1: triage is faster)
and the peak RSS of each, and the same at a quarter of the size to show whether memory grows with the image.
If the ``yara`` tool is missing (``apt-get install -y yara``) it says so and times triage alone. Usage:

  python benchmarks/memory_scan.py [--size-gib 2] [--fill 0.25] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from analyzers.memory import rawscan, yararules

MIB = 1 << 20
EXTERNALS = ("filename", "filepath", "extension", "filetype", "owner")


def wide(s: str) -> bytes:
    return s.encode("utf-16-le")


PLANTS = [
    wide(r"C:\ProgramData\procdump64.exe -accepteula -ma lsass.exe C:\windows\temp\lsass.dmp"),
    wide(r"rundll32.exe C:\Windows\System32\comsvcs.dll, MiniDump 644 C:\temp\lsass.dmp full"),
    b'<script language="JScript" runat="server">function Page_Load(){eval(Request["klk123456"],"unsafe");}</script>',
    wide('Set-OabVirtualDirectory -ExternalUrl \'http://f/<script language="JScript" runat="server">\''),
    b"mimikatz(commandline) # sekurlsa::logonpasswords",
    wide(r"C:\ProgramData\7z.exe a -tzip C:\ProgramData\pst.zip C:\ProgramData\pst"),
]


def filler(rng: random.Random, n: int) -> bytes:
    """Memory-like bytes: random data interleaved with ASCII and UTF-16 text and PE headers."""
    words = [b"System32", b"Microsoft.Exchange", b"GetProcAddress", b"w3wp.exe", b"HTTP/1.1 200 OK", b"Request"]
    out = bytearray(rng.randbytes(n))
    for _ in range(n // 4096):
        at = rng.randrange(0, n - 64)
        w = rng.choice(words)
        piece = w.decode().encode("utf-16-le") if rng.random() < 0.5 else w
        out[at : at + len(piece)] = piece
    for _ in range(n // (256 * 1024)):
        at = rng.randrange(0, n - 0x200) & ~0xFFF
        out[at : at + 2] = b"MZ"
    return bytes(out)


def write_image(path: Path, size: int, fill: float, seed: int = 2102) -> dict[int, bytes]:
    """The image with data blocks, holes and plants; returns {offset: planted bytes}."""
    rng = random.Random(seed)
    block = 4 * MIB
    plants: dict[int, bytes] = {}
    with open(path, "wb") as fh:
        fh.truncate(size)
        for start in range(0, size, block):
            if rng.random() < fill:
                fh.seek(start)
                fh.write(filler(rng, min(block, size - start)))
        chunk = rawscan.DEFAULT_CHUNK
        k = 0
        for boundary in range(chunk, size - chunk, max(chunk, size // 8)):
            p = PLANTS[k % len(PLANTS)]
            k += 1
            plants[boundary - len(p) // 2] = p  # straddles a chunk boundary
            q = PLANTS[k % len(PLANTS)]
            k += 1
            plants[boundary + chunk // 3] = q  # inside a chunk
        for off, data in plants.items():
            fh.seek(off)
            fh.write(data)
    return plants


TRIAGE_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from analyzers.memory import rawscan, yararules
from pathlib import Path
rules = yararules.compile_rules([Path(p) for p in json.loads(sys.argv[2])])
t1 = time.perf_counter()
hits = [(m.rule, m.offset) for m in rawscan.scan_file(sys.argv[1], rules.rules, workers=int(sys.argv[3]))]
t2 = time.perf_counter()
import resource
hwm = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
workers_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest forked scan worker
print(json.dumps({"compile_s": t1 - t0, "scan_s": t2 - t1, "self_rss_kib": hwm, "worker_rss_kib": workers_kib,
                  "hits": hits}))
"""


def _hwm_kib(pid: int, name: str) -> int | None:
    """VmHWM of ``pid`` once it runs ``name`` (per address space: unlike ru_maxrss it does not carry over the
    benchmark's own memory from before exec)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
    except OSError:
        return None
    if fields.get("Name", "").strip() != name[:15]:
        return None
    return int(fields.get("VmHWM", "0 kB").split()[0])


def run_timed(cmd: list[str], name: str) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in KiB sampled every 5 ms, stdout) of one child process."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _hwm_kib(proc.pid, name) or 0)
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {err[-2000:]}")
        out.seek(0)
        return wall, peak, out.read().decode(errors="replace")


def yara_hits(stdout: str) -> list[tuple[str, int]]:
    """(rule, offset) from ``yara -s`` output (``0x1234:$a: ...`` lines under ``rule file`` lines)."""
    hits, rule = [], ""
    for line in stdout.splitlines():
        if line.startswith("0x") and rule:
            hits.append((rule, int(line.split(":", 1)[0], 16)))
        elif line and not line.startswith("0x"):
            rule = line.split(" ", 1)[0]
    return hits  # the CLI prints identifiers without namespaces; triage's are cut to match


def measure(image: Path, files: list[Path], repeat: int, use_yara: bool, workers: list[int]) -> dict[str, object]:
    res: dict[str, object] = {}
    for n in workers:
        cmd = [sys.executable, "-c", TRIAGE_CHILD, str(image), json.dumps([str(f) for f in files]), str(n)]
        best = None
        for _ in range(repeat):
            wall, rss, out = run_timed(cmd, Path(sys.executable).name)
            if best is None or wall < best[0]:
                best = (wall, rss, json.loads(out))
        assert best is not None
        res[f"triage-{n}"] = {
            "wall_s": best[0],
            "rss_kib": best[1],
            **{k: v for k, v in best[2].items() if k != "hits"},
        }
        res[f"triage-{n}_hits"] = sorted((r.rsplit(".", 1)[-1], o) for r, o in best[2]["hits"])
    if use_yara:
        args = ["yara", "-s", "-w", *[a for e in EXTERNALS for a in ("-d", f"{e}=")]]
        for f in files:
            args.append(f"{yararules._namespace(f)}:{f}")
        args.append(str(image))
        best_y = None
        for _ in range(repeat):
            wall, rss, out = run_timed(args, "yara")
            if best_y is None or wall < best_y[0]:
                best_y = (wall, rss, out)
        assert best_y is not None
        res["yara"] = {"wall_s": best_y[0], "rss_kib": best_y[1]}
        res["yara_hits"] = sorted(yara_hits(best_y[2]))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--fill", type=float, default=0.25, help="share of the image that is data, not holes")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="write the images here and keep them")
    args = ap.parse_args()

    use_yara = shutil.which("yara") is not None
    if not use_yara:
        print("yara command-line tool not found (apt-get install -y yara): timing triage alone")
    else:
        print(subprocess.run(["yara", "--version"], capture_output=True, text=True).stdout.strip(), "(yara CLI)")
    import yara_x  # noqa: F401  (fail early with a clear error when missing)

    files = yararules.rule_files()
    rules = yararules.compile_rules(files)
    if rules.problems:
        print("rule files left out (yara-x):", *rules.problems, sep="\n  ")
    files = rules.files
    print(f"rules: {len(rules.meta)} in {len(files)} files")

    workers = sorted({1, rawscan.default_workers()})
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="triage-memscan-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    try:
        for label, size in (("full", int(args.size_gib * 1024 * MIB)), ("quarter", int(args.size_gib * 256 * MIB))):
            image = workdir / f"image-{label}.raw"
            t0 = time.perf_counter()
            plants = write_image(image, size, args.fill)
            with open(image, "rb") as fh:  # into the page cache, so both read from memory
                while fh.read(64 * MIB):
                    pass
            print(
                f"\n{label}: {size / 2**30:.2f} GiB image ({args.fill:.0%} data), {len(plants)} planted indicators, "
                f"written in {time.perf_counter() - t0:.1f} s; best of {args.repeat}"
            )
            r = results[label] = measure(image, files, args.repeat, use_yara, workers)

            def missed(hits: list[tuple[str, int]], plants: dict[int, bytes] = plants) -> list[str]:
                got = {o for _, o in hits}
                return [hex(o) for o in plants if not any(o <= g < o + len(plants[o]) for g in got)]

            for n in workers:
                t = r[f"triage-{n}"]
                rss = f"{t['rss_kib'] / 1024:.0f} MiB" + (
                    f" (+ {n} workers of {t['worker_rss_kib'] / 1024:.0f} MiB each)" if n > 1 else ""
                )
                print(
                    f"  triage, {n} worker(s) {t['wall_s']:6.2f} s wall (start-up and compile {t['compile_s']:.2f} s, "
                    f"scan {t['scan_s']:.2f} s = {size / MIB / t['scan_s']:.0f} MiB/s), peak RSS {rss}, "
                    f"{len(r[f'triage-{n}_hits'])} matches, planted missed: "
                    f"{missed(r[f'triage-{n}_hits']) or 'none'}"
                )
            if use_yara:
                y = r["yara"]
                print(
                    f"  yara CLI             {y['wall_s']:6.2f} s wall, peak RSS {y['rss_kib'] / 1024:.0f} MiB, "
                    f"{len(r['yara_hits'])} matches, planted missed: {missed(r['yara_hits']) or 'none'}"
                )
                base = set(r["triage-1_hits"])
                print(f"  same (rule, offset) pairs as the CLI: {base == set(r['yara_hits'])}")
                if base != set(r["yara_hits"]):
                    print(f"    only triage: {sorted(base - set(r['yara_hits']))[:5]}")
                    print(f"    only yara:   {sorted(set(r['yara_hits']) - base)[:5]}")
                for n in workers:
                    t = r[f"triage-{n}"]
                    print(
                        f"  ratio yara CLI / triage ({n} worker(s)) wall time: {y['wall_s'] / t['wall_s']:.2f}x "
                        f"({'triage faster' if y['wall_s'] > t['wall_s'] else 'yara faster'})"
                    )
            if not args.keep:
                image.unlink()
        q, f = results["quarter"], results["full"]
        print("\npeak RSS at 1/4 size -> full size (MiB):")
        for n in workers:
            a, b = q[f"triage-{n}"], f[f"triage-{n}"]
            line = f"  triage, {n} worker(s): {a['rss_kib'] / 1024:.0f} -> {b['rss_kib'] / 1024:.0f}"
            if n > 1:
                line += f" (each worker {a['worker_rss_kib'] / 1024:.0f} -> {b['worker_rss_kib'] / 1024:.0f})"
            print(line)
        if use_yara:
            print(
                f"  yara CLI: {q['yara']['rss_kib'] / 1024:.0f} -> {f['yara']['rss_kib'] / 1024:.0f} "
                "(it maps the whole file)"
            )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
