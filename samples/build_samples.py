"""Rebuild the bundled demo evidence: ``python samples/build_samples.py [OUT_DIR]``.

exchange-compromised/EXCH01-volume.zip: Exchange 2016 CU19 installed at a non-default path
(C:\\Apps\\Exchange\\V15, found only through MsiInstallPath in the SOFTWARE hive), a CVE-2021-27065-style web shell
in aspnet_client, a ProxyLogon SSRF request in the HttpProxy ECP log, an lsass minidump in Windows\\Temp and a
staging archive in ProgramData, with all hives; event logs telling the intrusion (triage.testing.eventlogs).
exchange-compromised/memory/EXCH01-memory.raw: a synthetic Windows Server 2019 x64 memory image Volatility 3
parses (triage.testing.winmem: w3wp.exe running cmd.exe and powershell.exe, procdump64 dumping lsass, a hidden
process) with the intrusion's strings in free pages for the symbol-free scan; its made-up kernel's symbol table
is exchange-compromised/memory/symbols (pass it with --symbols).
exchange-clean/EXCH02-volume.zip: the same server without the intrusion, at the default install path.

The volumes are shipped as zips of the volume (as ``zip -r`` makes them from a mounted copy) because a zip member
records its file's modification time: the evidence carries its own 2021 file times (``FILE_TIMES``) wherever it is
checked out, and the collector reads them from there (``source_mtime`` in the manifest). A plain folder in a git
checkout would carry the checkout's times instead.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from triage.testing.collections import zip_tree
from triage.testing.volume import DEFAULT_INSTALL, VolumeSpec, build_volume, memory_image_bytes
from triage.testing.winmem import build_image
from triage.testing.winmem.image import iter_pages

SAMPLES = {
    "exchange-compromised": VolumeSpec(
        hostname="EXCH01", install_path=r"C:\Apps\Exchange\V15", compromised=True, event_logs=True, all_hives=True
    ),
    "exchange-clean": VolumeSpec(
        hostname="EXCH02", install_path=DEFAULT_INSTALL, compromised=False, event_logs=True, all_hives=True
    ),
}
INSTALLED = datetime(2020, 12, 16, 9, 12, 0, tzinfo=UTC)  # Exchange 2016 CU19 set up; everything not named below
ACQUIRED = datetime(2021, 3, 4, 9, 56, 0, tzinfo=UTC)  # last written while the server ran, just before acquisition
# relative path (or folder prefix ending in "/") -> its modification time; even seconds, as a zip stores them
FILE_TIMES = {
    "inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx": datetime(2021, 3, 3, 2, 14, 42, tzinfo=UTC),  # Reset-VDir
    "Windows/Temp/lsass.dmp": datetime(2021, 3, 3, 2, 33, 44, tzinfo=UTC),  # procdump, per Sysmon
    "ProgramData/it.zip": datetime(2021, 3, 3, 2, 40, 12, tzinfo=UTC),  # the archive tool's run, per Sysmon
    "Windows/System32/config/": ACQUIRED,
    "Windows/System32/winevt/": ACQUIRED,
    "Windows/AppCompat/": ACQUIRED,
    "Users/": ACQUIRED,
    "inetpub/logs/": ACQUIRED,
    "Apps/Exchange/V15/Logging/": ACQUIRED,
    "Program Files/Microsoft/Exchange Server/V15/Logging/": ACQUIRED,
}


def file_time(rel: str) -> datetime:
    """The recorded modification time of one file of a sample volume."""
    best = ""
    for key in FILE_TIMES:
        if (rel == key or (key.endswith("/") and rel.startswith(key))) and len(key) > len(best):
            best = key
    return FILE_TIMES[best] if best else INSTALLED


def build_zip(spec: VolumeSpec, out: Path) -> Path:
    """The sample volume of ``spec`` as a zip whose members carry ``FILE_TIMES``."""
    with tempfile.TemporaryDirectory(prefix="triage-sample-") as tmp:
        root = build_volume(Path(tmp) / "volume", spec)
        for path in root.rglob("*"):
            if path.is_file():
                stamp = file_time(path.relative_to(root).as_posix()).timestamp()
                os.utime(path, (stamp, stamp))
        if out.exists():
            out.unlink()
        return zip_tree(root, out, date_time=None)


def build(out: Path) -> list[Path]:
    made = []
    for name, spec in SAMPLES.items():
        old = out / name / "volume"  # the folder layout of earlier versions, with checkout file times
        if old.exists():
            shutil.rmtree(old)
        made.append(build_zip(spec, out / name / f"{spec.hostname}-volume.zip"))
    memory = out / "exchange-compromised" / "memory"
    if (memory / "symbols").exists():
        shutil.rmtree(memory / "symbols")
    strings = memory_image_bytes()
    plants = {off: strings[off : off + 0x1000] for off in iter_pages(strings)}
    built = build_image(memory / "EXCH01-memory.raw", memory / "symbols", plants=plants)
    made += [built.image, built.isf]
    return made


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    for path in build(out):
        print(path)
