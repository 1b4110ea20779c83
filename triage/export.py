"""The submission package of a case: one zip (or folder) to hand to CISA, counsel or an auditor.

It holds the report files (HTML, findings, ledger, CISA rows, STIX, Timesketch), ``case.json``, the manifest with
every artifact's hashes, the custody log and the seal, plus its own ``MANIFEST.json`` (what each file is, the
custody head it runs to, the seal's state) and ``SHA256SUMS`` (``sha256sum -c`` checks the package).

The same case gives the same bytes: entries sorted, fixed zip times and permissions, and no time of the export in
the package. The custody log is cut after its last event that changed the case: the ``verify`` and ``export``
events that only read it would otherwise make every export differ from the one before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from triage import TOOL_NAME, __version__
from triage.custody import load_json
from triage.errors import IntegrityError, UsageError
from triage.seal import READ_ONLY_ACTIONS, SEAL_DIR

EXPORT_FORMAT = "triage-export/1"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold: no clock in the bytes
FILE_MODE = 0o444
DIR_MODE = 0o755
_CHUNK = 1 << 20
_WHAT = {
    "case.json": "case id, examiner, creation time, tool version",
    "manifest.jsonl": "every collection attempt with the artifact's size, sha256 and md5",
    "custody.jsonl": "the hash-chained custody log",
    "report/report.html": "the report (one offline file)",
    "report/findings.parquet": "findings (canonical table)",
    "report/findings.csv": "findings",
    "report/findings.jsonl": "findings",
    "report/findings.xlsx": "findings workbook",
    "report/findings.stix.json": "STIX 2.1 bundle",
    "report/timesketch.jsonl": "Timesketch import",
    "report/ledger.csv": "ED 21-02 ledger",
    "report/ledger.json": "ED 21-02 ledger",
    "report/cisa_template.csv": "CISA reporting template rows",
    "report/cisa_template.xlsx": "CISA reporting template rows",
    "seal/seal.json": "the seal: hashes of the case as sealed, who, when",
    "seal/seal.json.p7s": "detached CMS signature of seal.json",
    "seal/seal.json.sig": "detached Ed25519 signature of seal.json",
    "seal/seal.pub.pem": "public key of the Ed25519 seal",
}


@dataclass(frozen=True)
class Entry:
    """One file of the package: its name in the package, where its bytes come from, how many."""

    name: str
    source: Path
    size: int  # bytes taken from the start of source (the custody log is cut)


def custody_cut(log: Path) -> tuple[int, dict[str, Any] | None]:
    """Bytes of the custody log up to its last event that changed the case, and that event."""
    keep, last = 0, None
    pos = 0
    with open(log, "rb") as fh:
        for line in fh:
            pos += len(line)
            if not line.endswith(b"\n"):
                break
            try:
                ev = load_json(line)
            except ValueError:
                keep = pos  # a damaged line is never silently dropped (verify refuses such a case anyway)
                continue
            if isinstance(ev, dict) and ev.get("action") not in READ_ONLY_ACTIONS:
                keep, last = pos, ev
    return keep, last


def package_entries(case_path: Path) -> tuple[list[Entry], dict[str, Any] | None]:
    """The case files that go into the package (sorted by name) and the last custody event exported."""
    entries: list[Entry] = []
    for name in ("case.json", "manifest.jsonl"):
        if (case_path / name).is_file():
            entries.append(Entry(name, case_path / name, (case_path / name).stat().st_size))
    cut, last = custody_cut(case_path / "custody.jsonl")
    entries.append(Entry("custody.jsonl", case_path / "custody.jsonl", cut))
    for sub in ("report", SEAL_DIR):
        root = case_path / sub
        for dirpath, _dirs, files in os.walk(root):
            for fname in files:
                full = Path(dirpath, fname)
                if fname.startswith(".") or full.is_symlink() or not full.is_file():
                    continue
                entries.append(Entry(full.relative_to(case_path).as_posix(), full, full.stat().st_size))
    return sorted(entries, key=lambda e: e.name), last


def _chunks(entry: Entry) -> Iterator[bytes]:
    left = entry.size
    with open(entry.source, "rb") as fh:
        while left:
            chunk = fh.read(min(left, _CHUNK))
            if not chunk:
                raise IntegrityError(f"{entry.source} became shorter while it was exported")
            left -= len(chunk)
            yield chunk


def _digest(entry: Entry) -> str:
    h = hashlib.sha256()
    for chunk in _chunks(entry):
        h.update(chunk)
    return h.hexdigest()


def manifest_document(
    case_id: str, entries: list[Entry], digests: dict[str, str], last: dict[str, Any] | None, state: dict[str, Any]
) -> dict[str, Any]:
    """MANIFEST.json: the package's files and what they are, the custody head it runs to, the case's state."""
    return {
        "format": EXPORT_FORMAT,
        "case_id": case_id,
        "tool": f"{TOOL_NAME} {__version__}",
        "custody_through": {"seq": last.get("seq"), "hash": last.get("hash")} if last else None,
        "custody_note": "the custody log runs to the last event that changed the case; later verify and export "
        "events only read it ('triage verify --head HASH' on the case shows them)",
        "state": state,
        "files": [
            {"path": e.name, "size": e.size, "sha256": digests[e.name], "what": _WHAT.get(e.name, "report file")}
            for e in entries
        ],
    }


def _dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _sums(digests: dict[str, str]) -> bytes:
    return "".join(f"{h}  {name}\n" for name, h in sorted(digests.items())).encode("utf-8")


def write_package(out: Path, root_name: str, entries: list[Entry], extra: dict[str, bytes]) -> dict[str, str]:
    """Write the package to ``out`` (a ``.zip`` file, else a folder) without ever replacing anything there.

    ``extra``: generated files (MANIFEST.json, SHA256SUMS). Each case file is re-hashed while it is written and
    must match ``extra``'s SHA256SUMS. Returns the sha256 of every file by package name.
    """
    tmp = out.with_name(f".{out.name}.part-{os.getpid()}")
    _remove(tmp)
    written: dict[str, str] = {}
    try:
        if out.suffix.lower() == ".zip":
            _write_zip(tmp, root_name, entries, extra, written)
            os.chmod(tmp, FILE_MODE)
            os.link(tmp, out)  # fails rather than replaces if something appeared at out meanwhile
            tmp.unlink()
        else:
            _write_folder(tmp, entries, extra, written)
            if out.exists():
                raise UsageError(f"--to {out} exists: export never overwrites")
            os.rename(tmp, out)
    except FileExistsError:
        raise UsageError(f"--to {out} exists: export never overwrites") from None
    finally:
        _remove(tmp)
    return written


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirs, _files in os.walk(path):
            for d in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(Path(dirpath, d), DIR_MODE)
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _ordered(entries: list[Entry], extra: dict[str, bytes]) -> list[tuple[str, Entry | bytes]]:
    items: list[tuple[str, Entry | bytes]] = [(e.name, e) for e in entries]
    items += list(extra.items())
    return sorted(items, key=lambda kv: kv[0])


def _copy(item: Entry | bytes, fh: BinaryIO) -> str:
    h = hashlib.sha256()
    for chunk in [item] if isinstance(item, bytes) else _chunks(item):
        h.update(chunk)
        fh.write(chunk)
    return h.hexdigest()


def _write_zip(
    path: Path, root_name: str, entries: list[Entry], extra: dict[str, bytes], written: dict[str, str]
) -> None:
    with zipfile.ZipFile(path, "x", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, item in _ordered(entries, extra):
            info = zipfile.ZipInfo(f"{root_name}/{name}", date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix: the permission bits below are read by unzip
            info.external_attr = (0o100000 | FILE_MODE) << 16
            size = len(item) if isinstance(item, bytes) else item.size
            with zf.open(info, "w", force_zip64=size > 0x7FFFFFFF) as fh:
                written[name] = _copy(item, fh)  # type: ignore[arg-type]


def _write_folder(path: Path, entries: list[Entry], extra: dict[str, bytes], written: dict[str, str]) -> None:
    path.mkdir(mode=DIR_MODE)
    for name, item in _ordered(entries, extra):
        dest = path / name
        dest.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "wb") as fh:
            written[name] = _copy(item, fh)
        os.chmod(dest, FILE_MODE)


def build_package(case_path: Path, case_id: str, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    """Write the package of the case to ``out``; returns what the custody event and the summary record."""
    entries, last = package_entries(case_path)
    digests = {e.name: _digest(e) for e in entries}
    manifest = _dump(manifest_document(case_id, entries, digests, last, state))
    sums = _sums(digests | {"MANIFEST.json": hashlib.sha256(manifest).hexdigest()})
    written = write_package(out, _root_name(case_id), entries, {"MANIFEST.json": manifest, "SHA256SUMS": sums})
    changed = sorted(n for n, h in written.items() if n in digests and h != digests[n])
    if changed:
        _remove(out)
        raise IntegrityError(f"case files changed while they were exported: {', '.join(changed)}")
    digest = _digest(Entry(out.name, out, out.stat().st_size)) if out.is_file() else hashlib.sha256(sums).hexdigest()
    return {
        "to": str(out.absolute()),
        "format": "zip" if out.is_file() else "folder",
        "sha256": digest,  # the zip's, or a folder's SHA256SUMS
        "files": len(written),
        "custody_through": {"seq": last.get("seq"), "hash": last.get("hash")} if last else None,
    }


def _root_name(case_id: str) -> str:
    """The zip's top folder: the case id, made safe as one path component."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in case_id).strip(".")
    return cleaned or "case"
