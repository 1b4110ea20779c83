"""Registry analysis against a full regipy walk of the same hives, measured in the same run.

The hives of a typical Exchange server: the corpus SYSTEM hive (regipy's 11 MB test hive, decompressed
to a temporary folder) when ``../shared/corpus`` is present, else a synthetic SYSTEM with many services;
plus synthetic SOFTWARE (Exchange, 400 programs), SAM, two NTUSER and an Amcache hive from
``triage.testing.hives``. Contenders:

* analysis: the three registry analyzers (host facts, Exchange verdict, YAML rules) over one host-scope
  unit, with the pure-Python reader and, when installed, with regipy-rs;
* baseline: ``RegistryHive.recurse_subkeys(as_json=True)`` over every hive, pure regipy (what a
  "parse everything, then query" tool does) and, when installed, regipy-rs.

The pure-Python walk of the SYSTEM hive takes a minute or more; ``--quick`` walks it for ``--budget``
seconds and extrapolates by key count (keys counted by a values-free walk), and says so in the output.
The extrapolation is low (the first keys walk faster: ~55-65 s estimated against ~105-118 s measured
here), so ``--quick`` understates the ratio.
Usage: python benchmarks/registry_hives.py [--quick] [--budget 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import lzma
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from analyzers.registry.checks import RegistryRules
from analyzers.registry.exchange import RegistryExchange
from analyzers.registry.hostinfo import RegistryHostInfo
from triage.case import ManifestRow
from triage.formats.hive import rust_available
from triage.registry import Analyzer, Unit
from triage.testing.hives import (
    STOCK_SERVICES,
    ExchangeInstall,
    ntuser_hive,
    planted_amcache,
    planted_ntuser,
    planted_sam,
    planted_software,
    system_hive,
)

CORPUS_SYSTEM = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "hives" / "RGP_SYSTEM.xz"
CFG = "C:/Windows/System32/config/"


def build_hives(folder: Path) -> tuple[dict[str, Path], str]:
    """Write the server's hives into ``folder``; returns logical path -> file, and where SYSTEM came from."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    if CORPUS_SYSTEM.exists():
        files[CFG + "SYSTEM"] = lzma.decompress(CORPUS_SYSTEM.read_bytes())
        origin = f"corpus {CORPUS_SYSTEM.name} (decompressed)"
    else:
        services = dict(STOCK_SERVICES)
        services.update({f"Svc{i:04d}": (rf"C:\Windows\System32\svc{i}.exe", 0x10) for i in range(600)})
        files[CFG + "SYSTEM"] = system_hive(services=services).to_bytes()
        origin = "synthetic (corpus absent)"
    sw = planted_software(ExchangeInstall((15, 1, 2176, 2), ("KB5000871",)))
    for i in range(400):
        key = rf"Microsoft\Windows\CurrentVersion\Uninstall\{{{i:08X}-0000-0000-0000-000000000000}}"
        sw.set_value(key, "DisplayName", f"Program {i}")
        sw.set_value(key, "DisplayVersion", f"1.{i}")
    files[CFG + "SOFTWARE"] = sw.to_bytes()
    files[CFG + "SAM"] = planted_sam().to_bytes()
    files["C:/Users/exadmin/NTUSER.DAT"] = planted_ntuser().to_bytes()
    files["C:/Users/svc_backup/NTUSER.DAT"] = ntuser_hive("svc_backup").to_bytes()
    amcache = planted_amcache()
    for i in range(1500):
        key = rf"Root\InventoryApplicationFile\app{i:05d}|{i:016x}"
        amcache.set_value(key, "LowerCaseLongPath", rf"c:\program files\vendor{i % 40}\app{i}.exe")
    files["C:/Windows/AppCompat/Programs/Amcache.hve"] = amcache.to_bytes()
    out = {}
    for logical, data in files.items():
        path = folder / logical.replace(":", "").replace("/", "_")
        path.write_bytes(data)
        out[logical] = path
    return out, origin


def make_unit(case_dir: Path, analyzer: Analyzer, hives: dict[str, Path]) -> Unit:
    rows = []
    for i, (logical, path) in enumerate(sorted(hives.items())):
        drive, rest = logical.split(":/", 1)
        relpath = f"evidence/BENCH/registry_hive/{drive}/{rest}"
        target = case_dir / relpath
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
        rows.append(
            ManifestRow(
                artifact_id=f"A{i:04d}",
                kind="registry_hive",
                outcome="success",
                source_host="BENCH",
                source_path=logical,
                collector="bench",
                collector_version="1",
                collected_at="",
                relpath=relpath,
                size=path.stat().st_size,
                sha256=hashlib.sha256(path.name.encode()).hexdigest(),
            )
        )
    group = ManifestRow(
        artifact_id="H",
        kind="host",
        outcome="success",
        source_host="BENCH",
        source_path="",
        collector="bench",
        collector_version="1",
        collected_at="",
        sha256="0" * 64,
    )
    return Unit(
        case_id="BENCH", case_dir=case_dir, host="BENCH", evidence=group, path=case_dir, analyzer=analyzer, members=rows
    )


def analysis(case_dir: Path, hives: dict[str, Path], backend: str) -> tuple[float, int]:
    """Seconds for the three analyzers over the host, and the number of findings."""
    analyzers = [cls({"backend": backend}) for cls in (RegistryHostInfo, RegistryExchange, RegistryRules)]
    for an in analyzers:
        _ = an.ruleset  # rules load once per process in real runs: not part of the per-host cost
    n = 0
    t0 = time.perf_counter()
    for an in analyzers:
        n += sum(1 for _ in an.analyze(make_unit(case_dir, an, hives)))
    return time.perf_counter() - t0, n


def walk(path: Path, backend: str, budget: float | None) -> tuple[float, int, bool]:
    """(seconds, keys, complete) of a full ``recurse_subkeys(as_json=True)`` walk, or of ``budget`` seconds."""
    if backend == "rust":
        from regipy.registry_rs import RegistryHive
    else:
        from regipy.registry import RegistryHive
    hive = RegistryHive(str(path))
    keys = 0
    t0 = time.perf_counter()
    for _ in hive.recurse_subkeys(as_json=True):
        keys += 1
        if budget is not None and keys % 50 == 0 and time.perf_counter() - t0 > budget:
            return time.perf_counter() - t0, keys, False
    return time.perf_counter() - t0, keys, True


def count_keys(path: Path) -> int:
    from regipy.registry import RegistryHive

    return sum(1 for _ in RegistryHive(str(path)).recurse_subkeys(fetch_values=False))


def best(fn: Callable[[], tuple[float, int]], repeat: int) -> tuple[float, int]:
    runs = [fn() for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), runs[0][1]


def measure(
    workdir: Path, hives: dict[str, Path], repeat: int = 3, budget: float | None = None, log: bool = True
) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Median seconds of the analysis (``analysis/<backend>``) and of the full walks (``walk/<backend>``).

    ``budget``: walk the pure-Python SYSTEM hive for that many seconds only and extrapolate by key count;
    the notes (per walk key) say so. Backends: ``python`` and, when regipy-rs is installed, ``rust``.
    """
    backends = ["python", *(["rust"] if rust_available() else [])]
    results: dict[str, float] = {}
    notes: dict[str, list[str]] = {}
    for b in backends:
        secs, n = best(lambda b=b: analysis(workdir / f"case-{b}", hives, b), repeat)
        results[f"analysis/{b}"] = secs
        if log:
            print(f"analysis ({b:6s})            {secs * 1000:9.1f} ms   {n} findings (median of {repeat})")
    for b in backends:
        total, why = 0.0, []
        for logical, path in hives.items():
            quick = budget is not None and b == "python" and logical.endswith("/SYSTEM")
            secs, keys, complete = walk(path, b, budget if quick else None)
            if not complete:
                all_keys = count_keys(path)
                est = secs * all_keys / keys
                why.append(f"SYSTEM EXTRAPOLATED: {keys} of {all_keys} keys in {secs:.1f} s -> ~{est:.0f} s (low)")
                secs = est
            total += secs
        results[f"walk/{b}"] = total
        notes[f"walk/{b}"] = why
        if log:
            label = "full walk (" + b + ")" + (" [partly extrapolated]" if why else "")
            print(f"{label:34s} {total * 1000:9.1f} ms" + "".join(f"\n    {n}" for n in why))
    return results, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="walk the pure-Python SYSTEM hive for --budget s, extrapolate")
    ap.add_argument("--budget", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # regipy logs each undecodable string on a full walk
    backends = ["python", *(["rust"] if rust_available() else [])]
    with tempfile.TemporaryDirectory(prefix="triage-bench-") as tmp:
        hives, origin = build_hives(Path(tmp) / "hives")
        sizes = {k: p.stat().st_size for k, p in hives.items()}
        print(
            f"hives: {len(hives)}, {sum(sizes.values()) / 2**20:.1f} MiB; SYSTEM: {origin}, "
            f"{sizes[CFG + 'SYSTEM'] / 2**20:.1f} MiB"
        )
        print(f"regipy-rs: {'installed' if rust_available() else 'not installed (pure Python only)'}\n")
        results, _ = measure(Path(tmp), hives, args.repeat, args.budget if args.quick else None)
        print()
        for b in backends:
            ratio = results["walk/python"] / results[f"analysis/{b}"]
            verdict = "OK" if ratio >= 20 else "BELOW TARGET"
            print(f"pure-Python full walk / analysis ({b}): {ratio:8.0f}x   (target >= 20x: {verdict})")
        if "walk/rust" in results:
            for b in backends:
                print(
                    f"regipy-rs full walk   / analysis ({b}): {results['walk/rust'] / results[f'analysis/{b}']:8.1f}x"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
