"""Layer detection and symbol lookup once per image: the memory analyzer's plugin runs against the ``vol`` CLI.

An analyst without triage runs ``vol -f IMAGE -s SYMBOLS --offline windows.X`` once per plugin; each run lists
the symbol folders into Volatility's identifier cache, scans the image for the DTB and searches it for the
kernel's PDB before the plugin starts. triage's memory analyzer indexes the symbols once in the parent and keeps
what the first plugin's automagic found (``vol.LayerCache``), so the other plugin children skip those steps.

The image is the tests' x64 image (page tables the DTB scan finds, an RSDS record naming ntkrnlmp.pdb; until
``triage.testing.winmem`` lands), ``--size-mib`` big, with the DTB placed in the last window the stacker scans
("very large memory"), as on a server with much RAM; the symbol folder is a ``windows.zip`` pack of the kernel's
ISF and ``--pack`` filler ISFs. The kernel's table has no types, so every plugin stops right after automagic:
what is timed is exactly the per-plugin set-up both contenders pay. Per round (alternating):

  vol CLI   one ``vol`` process per plugin (its identifier cache warmed before the first round)
  triage    one process: ``configure`` + ``update_symbol_cache``, then each plugin in a forked child through
            ``isolate.run_with_timeout`` as the analyzer does it, the layer cache emptied before each round
            (a new image: the first plugin scans, the others reuse it)

The ratio (vol / triage, above 1: triage is faster) is taken per round; the median is printed.
Usage: python benchmarks/memory_layers.py [--rounds 5] [--size-mib 256] [--pack 2000]
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "analyzers" / "memory"))  # the tests' image builder

PLUGINS = ("windows.info.Info", "windows.pslist.PsList", "windows.psscan.PsScan", "windows.netscan.NetScan")
HIGH_DTB = 0xA00000 + 0x3000000  # inside the stacker's last ("very large memory") window

TRIAGE = """
import sys, json
from pathlib import Path
from analyzers.memory import isolate, settings, vol
image, syms, cache, plugins = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")

def job(image, plugin, syms, cache, key, progress=None):
    try:
        return vol.run_plugin(image, plugin, symbols=[syms], cache_dir=cache, layer_key=key).layer_cache
    except vol.VolatilityError as exc:
        return exc.layer_cache
vol.configure([syms], cache)
vol.update_symbol_cache()
key = vol.LayerKey("benchmark-image", settings.tree_signature([Path(syms)]))
out = [isolate.run_with_timeout(job, image, p, syms, cache, key, timeout=600).value for p in plugins]
print(json.dumps([o.get("status") if o else None for o in out]))
"""


def build(root: Path, size_mib: int, pack: int) -> tuple[Path, Path]:
    """The image and a symbol folder holding a windows.zip pack."""
    import struct

    import memory_support as ms

    img = bytearray(size_mib << 20)
    pt = ms.PageTables(img, dtb=HIGH_DTB, alloc=HIGH_DTB + 0x6000)  # as ms.x64_image, with the DTB high
    pt.map(0xFFFFF780_00000000, ms.KUSER_PHYS)
    pt.map(0x7FFE0000, ms.KUSER_PHYS)
    struct.pack_into("<I", img, ms.KUSER_PHYS + 0x26C, 10)
    img[ms.KERNEL_PHYS : ms.KERNEL_PHYS + 2] = b"MZ"
    record = ms.rsds()
    img[ms.KERNEL_PHYS + 0x800 : ms.KERNEL_PHYS + 0x800 + len(record)] = record
    for i in range(4):
        pt.map(ms.KERNEL_VA + i * ms.PAGE, ms.KERNEL_PHYS + i * ms.PAGE)
    image = root / "EXCH01.raw"
    image.write_bytes(img)
    syms = root / "symbols"
    syms.mkdir()
    with zipfile.ZipFile(syms / "windows.zip", "w") as zf:
        kernel = ms.fake_kernel_isf()
        zf.writestr(
            f"windows/ntkrnlmp.pdb/{ms.KERNEL_GUID_VOL}-{ms.KERNEL_AGE}.json.xz",
            lzma.compress(json.dumps(kernel).encode()),
        )
        for i in range(pack):
            guid = f"{i:032X}"
            filler = ms.fake_kernel_isf(guid=guid)
            zf.writestr(f"windows/ntkrnlmp.pdb/{guid}-1.json.xz", lzma.compress(json.dumps(filler).encode()))
    return image, syms


def run_vol(image: Path, syms: Path, cache: Path) -> float:
    t0 = time.perf_counter()
    for plugin in PLUGINS:
        subprocess.run(
            [
                str(Path(sys.executable).parent / "vol"),
                "-q",
                "-f",
                str(image),
                "-s",
                str(syms),
                "--offline",
                "--cache-path",
                str(cache),
                plugin,
            ],
            capture_output=True,
            check=False,
        )
    return time.perf_counter() - t0


def run_triage(image: Path, syms: Path, cache: Path) -> tuple[float, list[str]]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", TRIAGE, str(image), str(syms), str(cache), ",".join(PLUGINS)],
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - t0, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--pack", type=int, default=2000, help="filler ISFs in the windows.zip pack")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="triage-bench-layers-") as tmp:
        root = Path(tmp)
        image, syms = build(root, args.size_mib, args.pack)
        vol_cache, triage_cache = root / "vol-cache", root / "triage-cache"
        vol_cache.mkdir()
        # warm both identifier caches (the first index of a pack is paid once by either tool)
        run_vol(image, syms, vol_cache)
        _, first = run_triage(image, syms, triage_cache)
        print(f"image {args.size_mib} MiB, pack of {args.pack + 1} ISFs, plugins: {', '.join(PLUGINS)}")
        print(f"triage layer cache per plugin, first run: {first}")
        ratios, vol_s, tri_s = [], [], []
        for _ in range(args.rounds):
            v = run_vol(image, syms, vol_cache)
            shutil.rmtree(triage_cache / "layers")  # a new image: the first plugin pays the scans once
            t, statuses = run_triage(image, syms, triage_cache)
            assert statuses == ["miss"] + ["hit"] * (len(PLUGINS) - 1), statuses
            vol_s.append(v)
            tri_s.append(t)
            ratios.append(v / t)
        print(
            f"vol CLI {statistics.median(vol_s):.2f} s, triage {statistics.median(tri_s):.2f} s for "
            f"{len(PLUGINS)} plugins; ratio (vol/triage) median {statistics.median(ratios):.2f}x "
            f"over {args.rounds} rounds ({', '.join(f'{r:.2f}' for r in ratios)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
