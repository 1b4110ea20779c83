"""Volume selection and drive letters: the NTFS volumes of an image, lettered as the SYSTEM hive's
MountedDevices says, else by the system volume and partition order.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from collectors.hostinfo import hive_logs, open_hive
from collectors.images.container import DiskImage
from collectors.images.ntfs import Failure, NtfsVolume
from collectors.partitions import BITLOCKER_OEM, Partition, PartitionTable, boot_oem, is_ntfs_boot, read_partitions
from collectors.vfs import FILE, VNode, resolve
from triage.errors import UsageError

log = logging.getLogger(__name__)


def mounted_devices(system: VNode, logs: Sequence[VNode] = ()) -> dict[str, bytes]:
    """``\\DosDevices\\X:`` values of the SYSTEM hive's MountedDevices key: letter -> raw value."""
    out_map: dict[str, bytes] = {}
    with open_hive(system, logs) as hive:
        key = hive.key("MountedDevices") if hive is not None else None
        if key is None:  # an unreadable hive or no MountedDevices key: fall back to partition order
            log.info("MountedDevices not readable from %s", system.source_path)
            return {}
        for value in key.values.values():
            m = re.match(r"^\\DosDevices\\([A-Za-z]):$", str(value.name))
            if not m:
                continue
            raw = value.data
            if isinstance(raw, str):
                try:
                    raw = bytes.fromhex(raw)
                except ValueError:
                    continue
            if isinstance(raw, bytes | bytearray):
                out_map[m.group(1).upper()] = bytes(raw)
    return out_map


def _matches(value: bytes, part: Partition, table: PartitionTable) -> bool:
    if value.startswith(b"DMIO:ID:") and len(value) >= 24:
        return bool(part.guid) and value[8:24] == part.guid
    if len(value) == 12 and table.disk_signature:
        return value[:4] == table.disk_signature and struct.unpack_from("<Q", value, 4)[0] == part.offset
    return False


@dataclass
class ImageVolumes:
    """The volumes of an image by drive letter, with what the analyst should know about them."""

    drives: dict[str, VNode]
    notes: list[str]
    volumes: list[NtfsVolume]
    table: PartitionTable
    listing: list[dict[str, Any]]


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def open_volumes(image: DiskImage, failures: list[Failure]) -> ImageVolumes:
    """Find the partitions and NTFS volumes of an image and give each a drive letter."""
    try:
        image.disk.read_at(0, 512)
    except OSError as exc:
        raise UsageError(
            f"{image.path}: the first sector of this {image.format_name} cannot be read ({exc}); the image is "
            "truncated or corrupt: check it (ewfverify, qemu-img check) or acquire it again"
        ) from None
    table = read_partitions(image.disk.read_at, image.disk.size)
    name = os.path.basename(image.path)
    notes = [f"{name}: {w}" for w in table.warnings]
    for w in table.warnings:  # a repaired or guessed partition table is worth the analyst's eye, not only the log
        log.warning("%s: %s", name, w)
    volumes: list[NtfsVolume] = []
    listing: list[dict[str, Any]] = []
    for part in table.partitions:
        kind = part.type_name or "volume"
        desc = f"{name}#p{part.index} ({part.scheme} {kind} at offset {part.offset}, {_mib(part.size)})"
        row: dict[str, Any] = {"partition": part.index, "scheme": part.scheme, "offset": part.offset, "size": part.size}
        row.update({"type": part.type_name, "guid": part.guid_text, "name": part.name})
        listing.append(row)
        try:
            boot = image.disk.read_at(part.offset, 512)
        except OSError as exc:
            notes.append(f"{desc}: boot sector unreadable ({exc}); not collected")
            row["filesystem"] = "unreadable"
            continue
        if boot_oem(boot) == BITLOCKER_OEM:
            notes.append(f"{desc}: BitLocker-encrypted; decrypt the image first (not collected)")
            row["filesystem"] = "bitlocker"
            continue
        if not is_ntfs_boot(boot):
            row["filesystem"] = "other"
            notes.append(f"{desc}: not NTFS; not collected")
            continue
        row["filesystem"] = "ntfs"
        try:
            vol = NtfsVolume(image.disk, part, image.path, failures)
        except OSError as exc:
            notes.append(f"{desc}: NTFS volume cannot be opened ({exc}); not collected")
            failures.append((f"{image.path}#p{part.index}:/", f"NTFS volume cannot be opened: {exc}"))
            row["filesystem"] = "ntfs (unreadable)"
            continue
        row["label"] = vol.label
        volumes.append(vol)
    if not volumes:
        raise UsageError(
            f"{image.path}: no readable NTFS volume in this {image.format_name} "
            f"({'; '.join([*image.notes, *notes]) or 'partition table: ' + table.scheme}); is it a Windows disk?"
        )
    roots = {id(v): v.root() for v in volumes}
    system = None
    for v in volumes:
        node = resolve(roots[id(v)], ("Windows", "System32", "config", "SYSTEM"))
        if node is not None and node.kind == FILE:
            if system is None:
                system = (v, node)
            else:
                notes.append(f"{name}#p{v.part.index}: a second Windows installation; collected as a data volume")
    letters: dict[int, str] = {}
    how: dict[int, str] = {}
    mounted = {}
    if system:
        config = resolve(roots[id(system[0])], ("Windows", "System32", "config"))
        mounted = mounted_devices(system[1], hive_logs(config, system[1].name))
    for letter, value in sorted(mounted.items()):
        for v in volumes:
            if id(v) not in letters and letter not in letters.values() and _matches(value, v.part, table):
                letters[id(v)] = letter
                how[id(v)] = "MountedDevices"
    if system and id(system[0]) not in letters and "C" not in letters.values():
        letters[id(system[0])] = "C"
        how[id(system[0])] = "Windows system volume"
    free = (chr(c) for c in range(ord("C"), ord("Z") + 1))
    for v in volumes:
        if id(v) in letters:
            continue
        letter = next(ch for ch in free if ch not in letters.values())
        letters[id(v)] = letter
        how[id(v)] = "partition order (no MountedDevices entry matched)"
    if not system:
        notes.append(f"{name}: no Windows system volume (no Windows/System32/config/SYSTEM) found")
    drives: dict[str, VNode] = {}
    for v in volumes:
        letter = letters[id(v)]
        root = roots[id(v)]
        root.name = f"{letter}:"
        drives[letter] = root
        label = f", label {v.label!r}" if v.label else ""
        role = "system volume" if system and v is system[0] else "data volume"
        notes.append(
            f"{name}#p{v.part.index} -> {letter}: ({role}, NTFS{label}, offset {v.part.offset}, "
            f"{_mib(v.part.size)}; letter from {how[id(v)]})"
        )
        for row in listing:
            if row["partition"] == v.part.index:
                row.update({"drive": letter, "letter_from": how[id(v)], "role": role})
    drives = dict(sorted(drives.items()))
    return ImageVolumes(drives, notes, volumes, table, listing)
