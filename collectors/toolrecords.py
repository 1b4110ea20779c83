"""What the collection tool itself recorded about each file: KAPE ``*_CopyLog.csv``, Velociraptor ``uploads.json``.

Each record is keyed by drive letter and the casefolded path on that drive (``("C", "windows/system32/config/
system")``), so the generic collector can attach it to the manifest row of the file it stores (``extra.
tool_record``). The ``collection_records`` analyzer then compares the tool's size and hashes with what triage
hashed: a difference means the copy is not what the tool copied.
"""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

from collectors.vfs import VNode

MAX_RECORD_BYTES = 256 << 20  # a copy log or uploads.json bigger than this is not read (noted)
Key = tuple[str, str]


def _drive_and_rest(parts: list[str]) -> Key | None:
    for i, part in enumerate(parts):
        m = re.match(r"^(?:\\\\[.?]\\)?([A-Za-z]):$", part)
        if m:
            rest = [p for p in parts[i + 1 :] if p not in ("", ".")]
            return (m.group(1).upper(), "/".join(rest).casefold()) if rest else None
    return None


def split_windows_path(path: str) -> Key | None:
    """``C:\\Windows\\x`` (or ``\\\\.\\C:\\...``, ``C:/...``) -> ``("C", "windows/x")``."""
    path = path.strip().strip('"')
    m = re.match(r"^(?:\\\\[.?]\\)?([A-Za-z]):[\\/]+(.+)$", path)
    if not m:
        return None
    rest = [p for p in re.split(r"[\\/]+", m.group(2)) if p not in ("", ".")]
    return (m.group(1).upper(), "/".join(rest).casefold()) if rest else None


def _read_bounded(node: VNode) -> bytes | None:
    if node.size is not None and node.size > MAX_RECORD_BYTES:
        return None
    with node.open() as fh:
        return fh.read(MAX_RECORD_BYTES + 1)[:MAX_RECORD_BYTES]


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


# -- KAPE ----------------------------------------------------------------------------------------------------
KAPE_FIELDS = {  # our record field <- KAPE column (matched case-insensitively)
    "source_file": "sourcefile",
    "sha1": "sourcefilesha1",
    "size": "filesize",
    "copied": "copiedtimestamp",
    "created": "createdonutc",
    "modified": "modifiedonutc",
    "accessed": "lastaccessedonutc",
    "deferred": "deferredcopy",
}


def kape_copylog(text: str, log_name: str) -> tuple[dict[Key, dict[str, Any]], list[str]]:
    """Records of one KAPE copy log, and notes on rows it could not use."""
    out: dict[Key, dict[str, Any]] = {}
    notes: list[str] = []
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    bad = 0
    for row in reader:
        low = {str(k).strip().casefold(): (v or "").strip() for k, v in row.items() if k is not None}
        key = split_windows_path(low.get("sourcefile", ""))
        if key is None:
            bad += 1
            continue
        rec: dict[str, Any] = {"tool": "kape", "log": log_name}
        for ours, theirs in KAPE_FIELDS.items():
            if low.get(theirs):
                rec[ours] = low[theirs]
        if "size" in rec:
            rec["size"] = _int(rec["size"])
        if rec.get("sha1"):
            rec["sha1"] = rec["sha1"].lower()
        out[key] = rec
    if bad:
        notes.append(f"{log_name}: {bad} rows without a usable SourceFile path")
    return out, notes


def kape_records(root: VNode) -> tuple[dict[Key, dict[str, Any]], list[str]]:
    """Every ``*_CopyLog.csv`` in a KAPE tdest root."""
    records: dict[Key, dict[str, Any]] = {}
    notes: list[str] = []
    for child in root.children():
        if child.kind != "file" or not child.name.lower().endswith("_copylog.csv"):
            continue
        try:
            data = _read_bounded(child)
        except OSError as exc:
            notes.append(f"{child.name}: cannot be read ({exc}); KAPE's hashes not compared")
            continue
        if data is None:
            notes.append(f"{child.name}: over {MAX_RECORD_BYTES:,} bytes; KAPE's hashes not compared")
            continue
        try:
            recs, more = kape_copylog(data.decode("utf-8", "replace"), child.name)
        except (csv.Error, ValueError) as exc:  # a damaged log costs only the comparison, never the collection
            notes.append(f"{child.name}: not a readable CSV ({str(exc)[:120]}); KAPE's hashes not compared")
            continue
        records.update(recs)
        notes += more
    return records, notes


# -- Velociraptor ------------------------------------------------------------------------------------------------
def _json_records(data: bytes) -> Iterable[Any]:
    text = data.decode("utf-8", "replace").lstrip("\ufeff").strip()
    if text.startswith("["):
        try:
            yield from json.loads(text)
        except (ValueError, RecursionError):
            return
        return
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            yield json.loads(line)
        except (ValueError, RecursionError):
            continue


def _first(doc: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if doc.get(k) not in (None, ""):
            return doc[k]
    return None


def _upload_key(doc: dict[str, Any]) -> Key | None:
    comps = _first(doc, "_Components", "Components", "components")
    if isinstance(comps, list) and all(isinstance(c, str) for c in comps):
        return _drive_and_rest([urllib.parse.unquote(c) for c in comps])
    path = _first(doc, "vfs_path", "Path", "path", "file", "Filename", "_OSPath", "OSPath")
    if isinstance(path, str):
        direct = split_windows_path(path)
        if direct:
            return direct
        return _drive_and_rest([urllib.parse.unquote(p) for p in re.split(r"[\\/]+", path)])
    return None


def velociraptor_uploads(data: bytes, log_name: str = "uploads.json") -> tuple[dict[Key, dict[str, Any]], list[str]]:
    """Records of Velociraptor's upload list (JSON lines or an array)."""
    out: dict[Key, dict[str, Any]] = {}
    bad = 0
    for doc in _json_records(data):
        if not isinstance(doc, dict):
            bad += 1
            continue
        key = _upload_key(doc)
        if key is None:
            bad += 1
            continue
        rec: dict[str, Any] = {"tool": "velociraptor", "log": log_name}
        size = _int(_first(doc, "file_size", "Size", "size", "expected_size"))
        if size is not None:
            rec["size"] = size
        uploaded = _int(_first(doc, "uploaded_size", "StoredSize", "stored_size"))
        if uploaded is not None:
            rec["uploaded_size"] = uploaded
        for ours, names in (
            ("sha256", ("sha256", "Sha256", "SHA256")),
            ("md5", ("md5", "Md5", "MD5")),
            ("modified", ("mtime", "Mtime", "Modified", "modified")),
            ("created", ("btime", "Btime", "Created", "created")),
            ("source_file", ("_OSPath", "OSPath", "vfs_path", "Path", "path")),
        ):
            value = _first(doc, *names)
            if isinstance(value, str | int | float):
                rec[ours] = str(value).lower() if ours in ("sha256", "md5") else str(value)
        out[key] = rec
    notes = [f"{log_name}: {bad} records without a usable path"] if bad else []
    return out, notes


def velociraptor_log_notes(data: bytes, log_name: str = "log.json") -> list[str]:
    """Errors the collector itself logged (each a note in the custody log)."""
    notes = []
    for doc in _json_records(data):
        if not isinstance(doc, dict):
            continue
        level = str(doc.get("level", "")).upper()
        message = str(doc.get("message", doc.get("msg", "")))
        if level in ("ERROR", "WARN", "WARNING") or message.upper().startswith("ERROR"):
            notes.append(f"{log_name}: {level or 'ERROR'} {message[:300]}")
        if len(notes) >= 50:
            notes.append(f"{log_name}: more errors not listed")
            break
    return notes


def velociraptor_records(root: VNode) -> tuple[dict[Key, dict[str, Any]], list[str]]:
    """``uploads.json`` and ``log.json`` of a Velociraptor collection root."""
    records: dict[Key, dict[str, Any]] = {}
    notes: list[str] = []
    for name in ("uploads.json", "log.json"):
        node = root.child(name)
        if node is None or node.kind != "file":
            continue
        try:
            data = _read_bounded(node)
        except OSError as exc:
            notes.append(f"{name}: cannot be read ({exc})")
            continue
        if data is None:
            notes.append(f"{name}: over {MAX_RECORD_BYTES:,} bytes; not read")
            continue
        if name == "uploads.json":
            recs, more = velociraptor_uploads(data, name)
            records.update(recs)
            notes += more
        else:
            notes += velociraptor_log_notes(data, name)
    return records, notes
