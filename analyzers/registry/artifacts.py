"""Decoders for registry artifacts whose meaning is inside binary values or encoded names.

Each function takes an opened :class:`~triage.formats.hive.Hive`, reads only the keys it
needs and returns flat records (dicts of scalars) that the YAML rules match on:

* :func:`sam_accounts` - local accounts from SAM ``Users\\<RID>`` ``F``/``V`` values and ``Users\\Names``;
* :func:`execution_records` - executables seen run or present, from Amcache, ShimCache (AppCompatCache),
  BAM and UserAssist, all with the same fields (``path``, ``name``, ``source``, ``ts`` ...).
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from triage.formats.hive import Hive
from triage.formats.times import filetime_to_dt

ACB_DISABLED = 0x0001
SAM_USERS = r"SAM\Domains\Account\Users"
USERASSIST = r"Software\Microsoft\Windows\CurrentVersion\Explorer\UserAssist"
# Known-folder GUIDs that start UserAssist paths
KNOWN_FOLDERS = {
    "{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}": r"C:\Windows\System32",
    "{6D809377-6AF0-444B-8957-A3773F02200E}": r"C:\Program Files",
    "{7C5A40EF-A0FB-4BFC-874A-C0F2E0B9FA8E}": r"C:\Program Files (x86)",
    "{F38BF404-1D43-42F2-9305-67DE0B28FC23}": r"C:\Windows",
    "{D65231B0-B2F1-4857-A4CE-A8E7C6EA7D27}": r"C:\Windows\SysWOW64",
    "{0139D44E-6AFE-49F2-8690-3DAFCAE6FFB8}": r"C:\ProgramData\Microsoft\Windows\Start Menu\Programs",
}


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str):  # some regipy paths return hex text for binary data
        try:
            return bytes.fromhex(data)
        except ValueError:
            return b""
    return b""


def _utf16_field(v: bytes, index: int) -> str:
    """String ``index`` of a SAM ``V`` value (offset/length pairs at 12-byte steps, data after 0xCC)."""
    at = index * 12
    if len(v) < at + 8:
        return ""
    off, length = struct.unpack_from("<II", v, at)
    start = 0xCC + off
    if length == 0 or start + length > len(v):
        return ""
    return v[start : start + length].decode("utf-16-le", errors="replace")


def sam_accounts(hive: Hive) -> list[dict[str, Any]]:
    """Local accounts with creation (``Names\\<user>`` key write time), last logon, flags and counters."""
    created: dict[int, tuple[str, datetime | None]] = {}
    for k in hive.subkeys(SAM_USERS + r"\Names"):
        default = k.values.get("(default)")
        rid = None
        if default is not None:
            try:
                rid = int(default.type)  # the default value's type field carries the RID
            except ValueError:
                rid = None
        if rid is not None:
            created[rid] = (k.name, k.ts)
    out: list[dict[str, Any]] = []
    for k in hive.subkeys(SAM_USERS):
        try:
            rid = int(k.name, 16)
        except ValueError:
            continue  # the Names subkey
        f, v = _as_bytes(k.get("F")), _as_bytes(k.get("V"))
        rec: dict[str, Any] = {
            "rid": rid,
            "key_path": k.path,
            "key_ts": k.ts,
            "username": _utf16_field(v, 1) or created.get(rid, ("", None))[0],
            "full_name": _utf16_field(v, 2),
            "comment": _utf16_field(v, 3),
            "created": created.get(rid, ("", None))[1],
        }
        if len(f) >= 68:
            flags = struct.unpack_from("<H", f, 56)[0]
            rec.update(
                last_login=filetime_to_dt(struct.unpack_from("<Q", f, 8)[0]),
                password_last_set=filetime_to_dt(struct.unpack_from("<Q", f, 24)[0]),
                account_flags=flags,
                disabled=bool(flags & ACB_DISABLED),
                failed_logins=struct.unpack_from("<H", f, 64)[0],
                login_count=struct.unpack_from("<H", f, 66)[0],
            )
        else:
            rec.update(last_login=None, password_last_set=None, account_flags=None, disabled=None)
        rec["ts"] = rec["created"] or k.ts
        out.append(rec)
    return out


def _name(path: str) -> str:
    return path.replace("/", "\\").rsplit("\\", 1)[-1]


def _record(source: str, path: str, ts: datetime | None, key_path: str, **extra: Any) -> dict[str, Any]:
    return {"source": source, "path": path, "name": _name(path), "ts": ts, "key_path": key_path, **extra}


def amcache_records(hive: Hive) -> Iterator[dict[str, Any]]:
    """Amcache entries: ``Root\\InventoryApplicationFile`` (Windows 10/2016+) and ``Root\\File`` (8.1/2012 R2)."""
    for k in hive.subkeys(r"Root\InventoryApplicationFile"):
        path = k.get("LowerCaseLongPath")
        if isinstance(path, str) and path:
            sha1 = k.get("FileId")
            yield _record("amcache", path, k.ts, k.path, sha1=sha1[4:] if isinstance(sha1, str) else None)
    for vol in hive.subkey_names(r"Root\File"):
        for k in hive.subkeys(rf"Root\File\{vol}"):
            path = k.get("15")
            if isinstance(path, str) and path:
                sha1 = k.get("101")
                yield _record("amcache", path, k.ts, k.path, sha1=sha1[4:] if isinstance(sha1, str) else None)


def parse_appcompatcache(data: bytes) -> Iterator[tuple[str, datetime | None]]:
    """(path, last-modified) pairs of AppCompatCache data; Windows 8.1/10 layouts decoded here, older ones
    by regipy's ShimCacheParser."""
    if len(data) < 0x38:
        return
    header = struct.unpack_from("<I", data, 0)[0]
    if header in (0x30, 0x34) and data[header : header + 4] == b"10ts":
        pos = header
        while pos + 12 <= len(data) and data[pos : pos + 4] == b"10ts":
            size = struct.unpack_from("<I", data, pos + 8)[0]
            entry = data[pos + 12 : pos + 12 + size]
            pos += 12 + size
            if len(entry) < 2:
                break
            n = struct.unpack_from("<H", entry, 0)[0]
            path = entry[2 : 2 + n].decode("utf-16-le", errors="replace")
            ts = struct.unpack_from("<Q", entry, 2 + n)[0] if len(entry) >= 10 + n else 0
            yield path, filetime_to_dt(ts)
        return
    from regipy.plugins.system.external.ShimCacheParser import get_shimcache_entries

    for e in get_shimcache_entries(data) or ():
        ts = e.get("last_mod_date")
        yield e.get("path", ""), ts if isinstance(ts, datetime) else None


def shimcache_records(hive: Hive) -> Iterator[dict[str, Any]]:
    """ShimCache entries of the current control set."""
    path = hive.resolve(r"CurrentControlSet\Control\Session Manager\AppCompatCache")
    k = hive.key(path)
    if k is None:
        return
    data = _as_bytes(k.get("AppCompatCache"))
    if not data:
        return
    try:
        for i, (p, ts) in enumerate(parse_appcompatcache(data)):
            yield _record("shimcache", p, ts, path, position=i)
    except Exception as exc:  # an unknown layout is a warning, not a crash
        hive.warnings.append(f"{hive.label}: AppCompatCache not decoded: {type(exc).__name__}: {exc}")


def bam_records(hive: Hive) -> Iterator[dict[str, Any]]:
    """BAM/DAM last-run times per user SID."""
    for base in (r"Services\bam\State\UserSettings", r"Services\bam\UserSettings", r"Services\dam\State\UserSettings"):
        root = hive.resolve("CurrentControlSet\\" + base)
        for k in hive.subkeys(root):
            for v in k.values.values():
                raw = _as_bytes(v.data)
                if v.name in ("Version", "SequenceNumber") or len(raw) < 8:
                    continue
                yield _record("bam", v.name, filetime_to_dt(struct.unpack_from("<Q", raw, 0)[0]), k.path, user=k.name)


def userassist_records(hive: Hive, user: str = "") -> Iterator[dict[str, Any]]:
    """UserAssist entries (ROT13 names; run count and last run from the 72-byte Windows 7+ data)."""
    for guid in hive.subkey_names(USERASSIST):
        k = hive.key(rf"{USERASSIST}\{guid}\Count")
        if k is None:
            continue
        for v in k.values.values():
            name = codecs.decode(v.name, "rot13")
            if name.startswith("UEME_"):
                continue
            head, sep, rest = name.partition("\\")
            path = KNOWN_FOLDERS.get(head.upper(), head) + sep + rest
            raw = _as_bytes(v.data)
            runs = struct.unpack_from("<I", raw, 4)[0] if len(raw) >= 8 else None
            last = filetime_to_dt(struct.unpack_from("<Q", raw, 60)[0]) if len(raw) >= 68 else None
            yield _record("userassist", path, last, k.path, run_count=runs, user=user)


def _raw_execution_records(hive: Hive, user: str) -> Iterator[dict[str, Any]]:
    if hive.hive_type == "amcache":
        yield from amcache_records(hive)
    elif hive.hive_type == "system":
        yield from shimcache_records(hive)
        yield from bam_records(hive)
    elif hive.hive_type == "ntuser":
        yield from userassist_records(hive, user)


def execution_records(hive: Hive, user: str = "") -> list[dict[str, Any]]:
    """Every execution record a hive of this type holds, one per (source, user, path).

    The same path can appear many times (ShimCache keeps an entry per file version, Amcache per volume
    file id): they are merged, keeping the latest time as ``ts``, the earliest as ``first_ts`` and the
    number of entries as ``entries``.
    """
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for rec in _raw_execution_records(hive, user):
        key = (rec["source"], str(rec.get("user") or ""), rec["path"].lower())
        have = merged.get(key)
        if have is None:
            merged[key] = {**rec, "first_ts": rec["ts"], "entries": 1}
            continue
        have["entries"] += 1
        times = [t for t in (have["ts"], rec["ts"]) if t is not None]
        firsts = [t for t in (have["first_ts"], rec["ts"]) if t is not None]
        have["ts"] = max(times) if times else None
        have["first_ts"] = min(firsts) if firsts else None
    return list(merged.values())
