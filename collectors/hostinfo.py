"""Facts a collection needs before it starts: the computer name and the Exchange install root.

Both come from hives in the source. The hive is read through the source's read-only handle into a
private temporary copy (regipy wants a path), so the source itself is never opened by regipy.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass

from collectors.vfs import DIR, FILE, VNode, glob, resolve

log = logging.getLogger(__name__)

EXCHANGE_SETUP_KEYS = (r"\Microsoft\ExchangeServer\v15\Setup", r"\Microsoft\ExchangeServer\v14\Setup")
EXCHANGE_SEARCH = (
    "%ProgramFiles%/Microsoft/Exchange Server/V1[45]",
    "%ProgramFiles%/Exchange Server/V1[45]",
    "*/Exchange Server/V1[45]",
    "*/*/Exchange Server/V1[45]",
    "Exchange Server/V1[45]",
)


@dataclass
class ExchangeRoot:
    """Where Exchange is installed on the source volume, and how we know."""

    parts: tuple[str, ...] | None
    how: str  # 'registry', 'search' or 'none'
    drive: str = "C"
    msi_install_path: str | None = None
    detail: str = ""


def _hive_copy(node: VNode) -> str:
    fd, tmp = tempfile.mkstemp(prefix="triage-hive-")
    try:
        with os.fdopen(fd, "wb") as out, node.open() as src:
            shutil.copyfileobj(src, out, 1 << 20)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def read_hive_value(node: VNode, key_paths: tuple[str, ...], value: str) -> tuple[str | None, str | None]:
    """Return (value, key path where found) from the first key that has it; (None, None) otherwise."""
    try:
        from regipy.registry import RegistryHive
    except ImportError:  # pragma: no cover - regipy is a hard dependency
        return None, None
    tmp = None
    try:
        tmp = _hive_copy(node)  # inside the try: an unreadable hive is a warning too
        hive = RegistryHive(tmp)
        for kp in key_paths:
            try:
                key = hive.get_key(kp)
                val = key.get_value(value)
            except Exception:  # regipy raises several types for absent keys and bad cells
                continue
            if val is not None:
                return str(val), kp
        return None, None
    except Exception as exc:  # a corrupt hive is a warning, never a crash
        log.warning("cannot read hive %s: %s", node.source_path, exc)
        return None, None
    finally:
        if tmp is not None:
            os.unlink(tmp)


def _current_control_set(system: VNode) -> list[str]:
    sel, _ = read_hive_value(system, (r"\Select",), "Current")
    sets = []
    if sel and sel.isdigit():
        sets.append(f"ControlSet{int(sel):03d}")
    sets += ["ControlSet001", "ControlSet002", "CurrentControlSet"]
    return list(dict.fromkeys(sets))


def computer_name(root: VNode) -> str | None:
    """ComputerName from the SYSTEM hive of the volume, if it can be read."""
    system = resolve(root, ("Windows", "System32", "config", "SYSTEM"))
    if system is None or system.kind != FILE:
        return None
    keys = tuple(rf"\{cs}\Control\ComputerName\ComputerName" for cs in _current_control_set(system))
    name, _ = read_hive_value(system, keys, "ComputerName")
    return name


def windows_path_parts(path: str) -> tuple[str | None, tuple[str, ...]]:
    """Split ``C:\\Program Files\\X\\`` into ('C', ('Program Files', 'X'))."""
    m = re.match(r"^\s*(?:\\\\\?\\)?([A-Za-z]):[\\/]*(.*)$", path)
    drive, rest = (m.group(1).upper(), m.group(2)) if m else (None, path)
    parts = tuple(p for p in re.split(r"[\\/]+", rest) if p and p != ".")
    return drive, parts


def exchange_root(drives: dict[str, VNode], sysdrive: str, expand: dict[str, str]) -> ExchangeRoot:
    """Find the Exchange install root: MsiInstallPath from SOFTWARE first, then a search."""
    root = drives[sysdrive]
    software = resolve(root, ("Windows", "System32", "config", "SOFTWARE"))
    notes = []
    if software is not None and software.kind == FILE:
        value, key = read_hive_value(software, EXCHANGE_SETUP_KEYS, "MsiInstallPath")
        if value:
            drive, parts = windows_path_parts(value)
            # the named drive when the source has it (KAPE, Velociraptor), else this volume
            for d in dict.fromkeys([drive or sysdrive, sysdrive]):
                node = resolve(drives[d], parts) if d in drives else None
                if node is not None and node.kind == DIR:
                    return ExchangeRoot(parts, "registry", d, value, f"MsiInstallPath from SOFTWARE{key}")
            notes.append(
                f"MsiInstallPath '{value}' (SOFTWARE{key}) is not present on this volume"
                + (f" (drive {drive}: may be another volume)" if drive and drive != "C" else "")
            )
        else:
            notes.append("SOFTWARE hive has no Exchange Setup key")
    else:
        notes.append("no SOFTWARE hive in the source")
    for pattern in EXCHANGE_SEARCH:
        for var, val in expand.items():
            pattern = pattern.replace(var, val)
        hits = sorted((m for m in glob(root, pattern) if m.node.kind == DIR), key=lambda m: m.parts)
        if hits:
            hit = hits[-1]  # V15 sorts after V14
            return ExchangeRoot(
                hit.parts, "search", sysdrive, None, "; ".join([*notes, f"found by search for {pattern}"])
            )
    return ExchangeRoot(None, "none", sysdrive, None, "; ".join([*notes, "no Exchange Server folder found by search"]))
