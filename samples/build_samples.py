"""Rebuild the bundled demo volumes: ``python samples/build_samples.py [OUT_DIR]``.

exchange-compromised/volume: Exchange 2016 CU19 installed at a non-default path (C:\\Apps\\Exchange\\V15,
found only through MsiInstallPath in the SOFTWARE hive), a CVE-2021-27065-style web shell in
aspnet_client, a ProxyLogon SSRF request in the HttpProxy ECP log, an lsass minidump in Windows\\Temp
and a staging archive in ProgramData, with all hives; event logs telling the intrusion (triage.testing.eventlogs).
exchange-compromised/memory/EXCH01-memory.raw: a synthetic Windows Server 2019 x64 memory image Volatility 3
parses (triage.testing.winmem: w3wp.exe running cmd.exe and powershell.exe, procdump64 dumping lsass, a hidden
process) with the intrusion's strings in free pages for the symbol-free scan; its made-up kernel's symbol table
is exchange-compromised/memory/symbols (pass it with --symbols).
exchange-clean/volume: the same server without the intrusion, at the default install path.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

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


def build(out: Path) -> list[Path]:
    made = []
    for name, spec in SAMPLES.items():
        target = out / name / "volume"
        if target.exists():
            shutil.rmtree(target)
        made.append(build_volume(target, spec))
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
