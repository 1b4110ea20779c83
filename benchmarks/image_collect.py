"""Collection throughput from disk images: ``triage collect`` of raw, E01, VHDX and VMDK images of one tree,
against ``cp -a`` and ``triage collect`` of the same tree as a folder, in one run.

Builds the synthetic Exchange server (C:, padded with ``--size-mb`` MiB of Exchange/IIS logs and web files,
mostly compressible text as real logs are) plus a small D: data volume, lays both on one GPT disk with
:mod:`triage.testing.diskimage` (mkntfs, ntfs-3g, qemu-img, ewfacquire) and times, best of ``--repeat``:

- ``cp -a``: plain copy of the C: folder (the baseline; the page cache is warm for every contender alike);
- ``triage collect folder``: the folder collector (copy + sha256 + md5 + manifest + custody + sync);
- ``triage collect FMT``: the same collection from each image format, read without mounting (libyal), which
  includes hashing the whole media stream to verify it (``--no-verify-image`` rows show the collection alone);
- ``libyal read FMT``: only reading and hashing every file of both volumes through pyewf/pyvhdi/pyvmdk and
  pyfsntfs (the floor under the image collector);
- ``dissect read FMT`` (when dissect.target is importable; never a dependency): the same reads through
  dissect.target, to record how the reader we chose compares.

MB/s counts the bytes each contender moved (collected artifacts for triage, all files for the readers,
the C: tree for cp); ``x cp`` is how many times slower per byte than ``cp -a``. Machines here are noisy:
compare ratios. Usage: python benchmarks/image_collect.py [--size-mb 64] [--repeat 2] [--formats raw,e01]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from triage.testing import diskimage as di
from triage.testing.volume import T0, VolumeSpec, build_volume

IMAGE_FORMATS = ("raw", "e01", "vhdx", "vmdk")


def pad_tree(root: Path, mib: int, seed: int = 7) -> int:
    """Add ``mib`` MiB of logs and web files where triage collects them; returns the bytes added."""
    rng = random.Random(seed)
    ex = root / "Program Files/Microsoft/Exchange Server/V15/Logging"
    folders = [ex / "HttpProxy/Owa", ex / "HttpProxy/Ecp", ex / "ECP/Server", root / "inetpub/logs/LogFiles/W3SVC1"]
    web = root / "inetpub/wwwroot/aspnet_client/system_web/4_0_30319"
    for f in [*folders, web]:
        f.mkdir(parents=True, exist_ok=True)
    budget, total, i = mib << 20, 0, 0
    ips = [f"10.0.{rng.randint(0, 9)}.{rng.randint(1, 254)}" for _ in range(50)]
    while total < budget * 0.9:  # logs of 256 KiB - 4 MiB: text, compressible like the real ones
        size = min(rng.choice((256 << 10, 1 << 20, 4 << 20)), budget - total)
        line = "2021-03-03T{:02d}:{:02d}:{:02d}.000Z,{},GET,/owa/auth/logon.aspx,200,Mozilla/5.0 (Windows NT 10.0)\r\n"
        rows, n = [], 0
        while n < size:
            row = line.format(rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), rng.choice(ips))
            rows.append(row)
            n += len(row)
        data = "".join(rows).encode()[:size]
        path = folders[i % len(folders)] / f"HttpProxy_20210303{i:04d}-1.LOG"
        path.write_bytes(data)
        total += len(data)
        i += 1
    j = 0
    while total < budget:  # small binary web files
        data = rng.randbytes(min(rng.randint(1024, 16384), budget - total))
        (web / f"f{j:05d}.js").write_bytes(data)
        total += len(data)
        j += 1
    for p in root.rglob("*"):
        os.utime(p, (T0.timestamp(), T0.timestamp()))
    return total


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _rm(path: Path) -> None:
    for dirpath, _d, files in os.walk(path):  # evidence is read-only
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    shutil.rmtree(path, ignore_errors=True)


def triage_collect(source: Path, case_dir: Path, verify_image: bool = True) -> int:
    """``triage collect SOURCE --case DIR`` in process (through the app layer); returns the bytes collected."""
    from triage.app import CollectRequest, NullProgress, collect

    request = CollectRequest((str(source),), case_dir, examiner="bench", verify_image=verify_image)
    summary = collect(request, NullProgress())
    if summary.exit_code != 0:
        raise RuntimeError(f"triage collect {source.name} exited {int(summary.exit_code)}")
    return summary.stats.bytes


class _Window:
    """A file-like window (offset, size) over a libyal handle or a raw file: what pyfsntfs reads through."""

    def __init__(self, handle: object, offset: int, size: int) -> None:
        self.handle, self.offset, self.size, self.pos = handle, offset, size, 0
        self.positional = hasattr(handle, "read_buffer_at_offset")

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n is None or n < 0 else min(n, self.size - self.pos)
        if self.positional:
            data = self.handle.read_buffer_at_offset(n, self.offset + self.pos)  # type: ignore[attr-defined]
        else:
            data = os.pread(self.handle.fileno(), n, self.offset + self.pos)  # type: ignore[attr-defined]
        self.pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else (self.pos + pos if whence == 1 else self.size + pos)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def get_size(self) -> int:
        return self.size


def _hash_reader(read_at: Callable[[int, int], bytes], size: int) -> int:
    h, m = hashlib.sha256(), hashlib.md5()
    offset = 0
    while offset < size:
        chunk = read_at(min(1 << 20, size - offset), offset)
        if not chunk:
            break
        h.update(chunk)
        m.update(chunk)
        offset += len(chunk)
    return offset


def libyal_read(fmt: str, paths: list[Path], layout: di.DiskLayout, files: dict[str, list[str]]) -> int:
    """Open the container and every NTFS partition with libyal, walk each volume once (as the collector
    does: path lookups per file would re-read the directory indexes) and read + hash the tree's files."""
    import pyewf
    import pyfsntfs
    import pyvhdi
    import pyvmdk

    if fmt == "raw":
        handle: object = open(paths[0], "rb")  # noqa: SIM115 - closed in the finally below
    elif fmt == "e01":
        handle = pyewf.handle()
        handle.open([str(p) for p in paths])
    elif fmt == "vhdx":
        handle = pyvhdi.file()
        handle.open(str(paths[0]))
    else:
        handle = pyvmdk.handle()
        handle.open(str(paths[0]))
        handle.open_extent_data_files()
    total = 0

    def walk(entry: object, prefix: str, wanted: set[str]) -> int:
        n = 0
        for i in range(entry.number_of_sub_file_entries):  # type: ignore[attr-defined]
            sub = entry.get_sub_file_entry(i)  # type: ignore[attr-defined]
            rel = prefix + sub.name
            if sub.has_directory_entries_index():
                if any(w.startswith(rel + "/") for w in wanted):
                    n += walk(sub, rel + "/", wanted)
            elif rel in wanted:
                n += _hash_reader(sub.read_buffer_at_offset, sub.size)
        return n

    try:
        for letter, part in zip("CD", layout.partitions, strict=False):
            vol = pyfsntfs.volume()
            vol.open_file_object(_Window(handle, part.offset, part.size))
            try:
                total += walk(vol.get_root_directory(), "", set(files[letter]))
            finally:
                vol.close()
    finally:
        handle.close()  # type: ignore[attr-defined]
    return total


def dissect_read(paths: list[Path], files: dict[str, list[str]]) -> int:
    """Open the image with dissect.target (drive letters from MountedDevices), walk each drive once and
    read + hash the same files."""
    from dissect.target import Target

    target = Target.open(str(paths[0]))
    total = 0

    def walk(path: Any, prefix: str, wanted: set[str]) -> int:
        n = 0
        for child in path.iterdir():
            rel = prefix + child.name
            if child.is_dir():
                if any(w.startswith(rel + "/") for w in wanted):
                    n += walk(child, rel + "/", wanted)
            elif rel in wanted:
                with child.open("rb") as fh:
                    n += _hash_reader(lambda size, _off, fh=fh: fh.read(size), child.stat().st_size)
        return n

    for letter, rels in files.items():
        total += walk(target.fs.path(f"{letter.lower()}:/"), "", set(rels))
    return total


def _tree_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=64, help="MiB of padding on C: (default 64)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--formats", default=",".join(IMAGE_FORMATS), help="comma-separated: raw,e01,vhdx,vmdk")
    ap.add_argument("--no-dissect", action="store_true", help="skip the dissect.target contender")
    args = ap.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    reason = di.tools_missing()
    if reason:
        print(f"cannot build images here: {reason}", file=sys.stderr)
        return 2
    try:
        import dissect.target  # noqa: F401

        with_dissect = not args.no_dissect
    except ImportError:
        with_dissect = False
    with tempfile.TemporaryDirectory(prefix="triage-imgbench-", dir=os.environ.get("TMPDIR")) as tmp:
        work = Path(tmp)
        t_build = time.perf_counter()
        c_tree = build_volume(work / "trees/C", VolumeSpec())
        guids = [uuid.UUID(int=0xC0 << 120 | 0xC), uuid.UUID(int=0xD0 << 120 | 0xD)]
        hive = c_tree / "Windows/System32/config/SYSTEM"  # MountedDevices: C: and D: by partition GUID
        hive.write_bytes(di.system_hive_with_mounts("EXCH01", {"C": guids[0], "D": guids[1]}))
        pad_tree(c_tree, args.size_mb)
        d_tree = di.write_tree(work / "trees/D", di.data_volume_files(4 << 20), T0)
        vols = [
            di.build_ntfs_volume(c_tree, work / "C.ntfs", label="System"),
            di.build_ntfs_volume(d_tree, work / "D.ntfs", label="Data"),
        ]
        layout = di.build_disk(vols, work / "disk.raw", scheme="gpt", partition_guids=guids)
        for v in vols:
            v.unlink()
        images = {
            fmt: di.to_format(
                layout.path, fmt, work / fmt, name="bench", segment_size=64 << 20 if fmt == "e01" else None
            )  # type: ignore[arg-type]
            for fmt in formats
        }
        files = {"C": _tree_files(c_tree), "D": _tree_files(d_tree)}
        tree_bytes = sum((c_tree / r).stat().st_size for r in files["C"])
        all_bytes = tree_bytes + sum((d_tree / r).stat().st_size for r in files["D"])
        sizes = ", ".join(f"{f} {sum(p.stat().st_size for p in ps) / 1e6:,.1f} MB" for f, ps in images.items())
        print(
            f"tree C: {len(files['C'])} files {tree_bytes / 1e6:,.1f} MB, D: {len(files['D'])} files; disk "
            f"{layout.size / 1e6:,.1f} MB; images built in {time.perf_counter() - t_build:.1f} s: {sizes}",
            file=sys.stderr,
        )
        contenders: list[tuple[str, Callable[[Path], int]]] = [
            ("cp -a folder", lambda d: (subprocess.run(["cp", "-a", str(c_tree), str(d)], check=True), tree_bytes)[1]),
            ("triage collect folder", lambda d: triage_collect(c_tree, d)),
        ]
        for fmt, paths in images.items():
            contenders.append((f"triage collect {fmt}", lambda d, p=paths: triage_collect(p[0], d)))
        for fmt in ("raw", "e01"):  # what the whole-media verification hash costs
            if fmt in images:
                contenders.append(
                    (
                        f"  ... {fmt} --no-verify-image",
                        lambda d, p=images[fmt]: triage_collect(p[0], d, verify_image=False),
                    )
                )
        for fmt, paths in images.items():
            contenders.append((f"libyal read {fmt}", lambda _d, f=fmt, p=paths: libyal_read(f, p, layout, files)))
        if with_dissect:
            for _fmt, paths in images.items():
                contenders.append((f"dissect read {_fmt}", lambda _d, p=paths: dissect_read(p, files)))
        triage_collect(c_tree, work / "warm")  # the first collect in a process pays for imports
        _rm(work / "warm")
        rows: list[tuple[str, float | None, int, str]] = []
        for name, fn in contenders:
            best, moved, error = None, 0, ""
            for r in range(args.repeat):
                dest = work / f"out{r}"
                try:
                    secs, moved = timed(lambda fn=fn, dest=dest: fn(dest))  # type: ignore[misc]
                    best = secs if best is None else min(best, secs)
                except Exception as exc:  # a contender that fails is reported, the others still run
                    error = f"{type(exc).__name__}: {str(exc)[:90]}"
                    break
                finally:
                    _rm(dest)
            rows.append((name, best, int(moved or 0), error))
            print(f"  {name}: {'failed' if best is None else f'{best:.2f} s'}", file=sys.stderr, flush=True)
        base = next(r for r in rows if r[0] == "cp -a folder")
        base_rate = base[2] / base[1] if base[1] else 0.0
        print(f"all files on both volumes: {all_bytes / 1e6:,.1f} MB; best of {args.repeat}", file=sys.stderr)
        print(f"{'contender':<30} {'best s':>8} {'MB':>8} {'MB/s':>8} {'x cp':>6}")
        for name, best, moved, error in rows:
            if best is None:
                print(f"{name:<30} {'failed':>8}  {error}")
                continue
            rate = moved / best
            print(f"{name:<30} {best:8.3f} {moved / 1e6:8.1f} {rate / 1e6:8.1f} {base_rate / rate:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
