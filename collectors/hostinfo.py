"""Facts a collection needs before it starts: the computer name and the Exchange install root.

Both come from hives in the source, read by the one hive reader (:mod:`triage.formats.hive`) with their
transaction logs applied. The hive and its logs are read through the source's read-only handles into a
private temporary folder (regipy wants a path), so the source itself is never opened by regipy.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from collectors.vfs import DIR, FILE, VNode, glob, resolve
from triage.formats.hive import Hive
from triage.hashing import copy_hashing

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


def hive_logs(folder: VNode | None, name: str) -> list[VNode]:
    """The transaction logs (``NAME.LOG1``, ``NAME.LOG2``) next to hive ``name`` in ``folder``."""
    if folder is None or folder.kind != DIR:
        return []
    logs = []
    for suffix in (".LOG1", ".LOG2"):
        node = folder.child(name + suffix)
        if node is not None and node.kind == FILE:
            logs.append(node)
    return logs


def _safe_name(name: str, default: str) -> str:
    # the copies keep the evidence's names for the reader's messages, never a path
    return re.sub(r"[^\w.-]", "_", name)[:100].lstrip(".") or default


def _copy(node: VNode, dst: str) -> None:
    with open(dst, "wb") as out, node.open() as src:
        copy_hashing(src, out, ())


@contextmanager
def open_hive(node: VNode, logs: Sequence[VNode] = ()) -> Iterator[Hive | None]:
    """The hive ``node`` opened through :class:`~triage.formats.hive.Hive`, its transaction logs applied.

    The hive and its logs are read through the source's read-only handles into a private temporary folder
    (regipy wants paths), so the source is never opened by regipy. Yields None, with a logged warning,
    when the hive cannot be copied or parsed; a log that cannot be copied is left out (the reader then
    says the hive is read without it).
    """
    tmp = tempfile.mkdtemp(prefix="triage-hive-")
    hive: Hive | None = None
    try:
        try:
            path = os.path.join(tmp, _safe_name(node.name, "hive"))
            _copy(node, path)  # inside the try: an unreadable hive is a warning too
            log_paths = []
            for i, lnode in enumerate(logs):
                dst = os.path.join(tmp, f"{i}-{_safe_name(lnode.name, 'log')}")
                try:
                    _copy(lnode, dst)
                except OSError as exc:
                    log.warning("cannot read transaction log %s: %s", lnode.source_path, exc)
                    continue
                log_paths.append(Path(dst))
            hive = Hive(path, logs=log_paths, label=node.source_path, workdir=tmp)
        except Exception as exc:  # a corrupt hive is a warning, never a crash
            log.warning("cannot read hive %s: %s", node.source_path, exc)
            hive = None
        if hive is not None and not hive.ok:
            log.warning("cannot read hive %s: %s", node.source_path, "; ".join(hive.warnings))
            hive.close()
            hive = None
        elif hive is not None:
            for note in hive.warnings:
                log.info("%s", note)
        yield hive
    finally:
        if hive is not None:
            hive.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _first_value(hive: Hive, key_paths: Sequence[str], value: str) -> tuple[str | None, str | None]:
    for kp in key_paths:
        try:
            val = hive.value(kp, value)
        except Exception:  # damaged cells: try the next key, as a missing key would
            continue
        if val is not None:
            return str(val), kp
    return None, None


def read_hive_value(
    node: VNode, key_paths: tuple[str, ...], value: str, *, logs: Sequence[VNode] = ()
) -> tuple[str | None, str | None]:
    """Return (value, key path where found) from the first key that has it; (None, None) otherwise."""
    with open_hive(node, logs) as hive:
        return (None, None) if hive is None else _first_value(hive, key_paths, value)


def _control_sets(hive: Hive) -> list[str]:
    sel, _ = _first_value(hive, (r"\Select",), "Current")
    sets = []
    if sel and sel.isdigit():
        sets.append(f"ControlSet{int(sel):03d}")
    sets += ["ControlSet001", "ControlSet002", "CurrentControlSet"]
    return list(dict.fromkeys(sets))


def computer_name(root: VNode) -> str | None:
    """ComputerName from the SYSTEM hive of the volume, its transaction logs applied, if it can be read."""
    config = resolve(root, ("Windows", "System32", "config"))
    system = config.child("SYSTEM") if config is not None and config.kind == DIR else None
    if system is None or system.kind != FILE:
        return None
    with open_hive(system, hive_logs(config, system.name)) as hive:
        if hive is None:
            return None
        keys = tuple(rf"\{cs}\Control\ComputerName\ComputerName" for cs in _control_sets(hive))
        name, _ = _first_value(hive, keys, "ComputerName")
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
    config = resolve(root, ("Windows", "System32", "config"))
    software = config.child("SOFTWARE") if config is not None and config.kind == DIR else None
    notes = []
    if software is not None and software.kind == FILE:
        logs = hive_logs(config, software.name)
        value, key = read_hive_value(software, EXCHANGE_SETUP_KEYS, "MsiInstallPath", logs=logs)
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
