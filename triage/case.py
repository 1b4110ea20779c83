"""The case folder: ``case.json``, read-only evidence, ``manifest.jsonl`` and the custody log.

The only way evidence enters a case is :meth:`Case.store`, which copies while hashing, writes the
manifest row and the custody event, and makes the copy read-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from triage import TOOL_NAME, __version__
from triage.custody import CustodyLog, canonical, utcnow
from triage.errors import UsageError
from triage.hashing import DEFAULT_ALGOS, copy_hashing, sha256_bytes

OUTCOMES = ("success", "missing", "empty", "failure", "duplicate")  # duplicate: same bytes already stored
NAME_MAX = 240  # bytes per stored path component; leaves room for a collision suffix under 255


@dataclass
class ManifestRow:
    """One collection attempt: an artifact stored in the case, or why it could not be."""

    artifact_id: str
    kind: str
    outcome: str
    source_host: str
    source_path: str
    collector: str
    collector_version: str
    collected_at: str
    relpath: str | None = None
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    sha1: str | None = None
    source_type: str = ""
    family: str = ""
    storage: str = "copy"  # copy | reference | hardlink
    source_mtime: str | None = None
    source_atime: str | None = None
    details: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        # shallow and fast: rows are flat but for the small 'extra' mapping
        return {name: getattr(self, name) for name in _ROW_FIELDS}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, sort_keys=True)

    @property
    def digest(self) -> str:
        """Hash of the row as written, recorded in the custody event so manifest edits show."""
        return row_digest(self.as_dict())


_ROW_FIELDS = tuple(f.name for f in fields(ManifestRow))


def row_digest(row: dict[str, Any]) -> str:
    return sha256_bytes(canonical(row))


def ts_from_epoch(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")


def safe_component(name: str) -> str:
    """Make one path component safe to create on the examiner's file system.

    Undecodable bytes and characters that are special on Windows or POSIX are percent-encoded; a
    ``%`` is encoded only where two hex digits follow it, so the mapping stays reversible while the
    common Windows names keep their look (``Microsoft-Windows-Sysmon%4Operational.evtx``);
    ``.``/``..`` never survive; over-long names keep a hash.
    """
    raw = os.fsencode(name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="surrogateescape")
    out = []
    for i, ch in enumerate(text):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte carried by surrogateescape
            out.append(f"%{code - 0xDC00:02X}")
        elif ch == "%":
            out.append("%25" if _HEX2.match(text, i + 1) else "%")
        elif ch in '/\\:*?"<>|' or code < 0x20 or code == 0x7F:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    result = "".join(out)
    if result in ("", ".", ".."):
        result = result.replace(".", "%2E") or "%00"
    encoded = result.encode("utf-8")
    if len(encoded) > NAME_MAX:
        digest = hashlib.sha256(encoded).hexdigest()[:16]
        stem = encoded[: NAME_MAX - 18].decode("utf-8", errors="ignore")
        result = f"{stem}~{digest}"
    return result


def safe_host(host: str) -> str:
    host = unicodedata.normalize("NFC", host).strip()
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", host).strip(".") or "unknown-host"
    return cleaned[:64]


class Case:
    """A case folder on disk."""

    def __init__(self, path: Path, info: dict[str, Any]) -> None:
        self.path = path
        self.info = info
        self.custody = CustodyLog(path, actor=info.get("examiner"))
        self._manifest_index: dict[tuple[str, str], ManifestRow] | None = None
        self._manifest_fh: TextIO | None = None

    def sync(self) -> None:
        """Make everything written so far durable: evidence copies, manifest and custody log.

        Copies are not fsynced one by one (that halves collection speed); one sync at the end of
        a command covers them, and ``verify`` catches anything a crash before it lost.
        """
        if self._manifest_fh is not None:
            self._manifest_fh.flush()
            os.fsync(self._manifest_fh.fileno())
        os.sync()
        self.custody.sync()

    def __del__(self) -> None:
        # a Case dropped without close() (tests, library use) still releases its handles; the data
        # was flushed line by line, only the final fsync is skipped
        fh = getattr(self, "_manifest_fh", None)
        if fh is not None:
            fh.close()
        custody = getattr(self, "custody", None)
        if custody is not None and custody._fh is not None:
            custody._fh.close()
            custody._fh = None

    def close(self) -> None:
        self.sync()
        if self._manifest_fh is not None:
            self._manifest_fh.close()
            self._manifest_fh = None
        self.custody.close()

    # -- creating and opening ---------------------------------------------------------------
    @classmethod
    def create_or_open(
        cls,
        path: str | os.PathLike[str],
        *,
        examiner: str | None = None,
        case_id: str | None = None,
        description: str = "",
    ) -> Case:
        p = Path(path)
        if (p / "case.json").exists():
            return cls.open(p)
        if p.exists() and any(p.iterdir()):
            raise UsageError(f"{p} exists, is not empty and is not a case folder (no case.json)")
        p.mkdir(parents=True, exist_ok=True)
        for sub in ("evidence", "results", "report", "runs"):
            (p / sub).mkdir(exist_ok=True)
        actor = examiner or os.environ.get("TRIAGE_EXAMINER") or CustodyLog(p).actor
        info = {
            "case_id": case_id or f"CASE-{datetime.now(UTC):%Y%m%d}-{uuid.uuid4().hex[:8]}",
            "examiner": actor,
            "created": utcnow(),
            "tool": TOOL_NAME,
            "tool_version": __version__,
            "description": description,
        }
        (p / "case.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
        case = cls(p, info)
        case.custody.append(
            "create", case_id=info["case_id"], case_json_sha256=sha256_bytes((p / "case.json").read_bytes())
        )
        return case

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Case:
        p = Path(path)
        try:
            info = json.loads((p / "case.json").read_text())
        except FileNotFoundError:
            raise UsageError(f"{p} is not a case folder: case.json is missing") from None
        except json.JSONDecodeError as exc:
            raise UsageError(f"{p}/case.json is not valid JSON: {exc}") from None
        return cls(p, info)

    @property
    def case_id(self) -> str:
        return str(self.info["case_id"])

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.jsonl"

    # -- manifest ------------------------------------------------------------------------------
    def manifest(self) -> Iterator[ManifestRow]:
        if not self.manifest_path.exists():
            return
        with open(self.manifest_path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield ManifestRow(**json.loads(line))

    def evidence(self, *, kinds: set[str] | None = None) -> list[ManifestRow]:
        """Artifacts stored successfully (or as empty files), optionally of some kinds only."""
        return [
            r
            for r in self.manifest()
            if r.outcome in ("success", "empty") and r.relpath and (kinds is None or r.kind in kinds)
        ]

    def artifact_path(self, row: ManifestRow) -> Path:
        """Where the bytes of an artifact are: in the case, or at the referenced source."""
        if row.storage == "reference":
            return Path(os.fsdecode(row.extra.get("reference_path", row.source_path)))
        assert row.relpath is not None
        return self.path / row.relpath

    def _index(self) -> dict[tuple[str, str], ManifestRow]:
        if self._manifest_index is None:
            self._manifest_index = {
                (r.source_host, r.source_path): r for r in self.manifest() if r.outcome in ("success", "empty")
            }
        return self._manifest_index

    def _write_row(self, row: ManifestRow) -> None:
        as_dict = row.as_dict()
        if self._manifest_fh is None:
            self._manifest_fh = open(  # noqa: SIM115 - kept open across rows, closed by close()
                self.manifest_path, "a", encoding="utf-8", errors="backslashreplace"
            )
        self._manifest_fh.write(json.dumps(as_dict, ensure_ascii=False, sort_keys=True) + "\n")
        self._manifest_fh.flush()
        event = {
            "artifact_id": row.artifact_id,
            "kind": row.kind,
            "outcome": row.outcome,
            "source_path": row.source_path,
            "relpath": row.relpath,
            "sha256": row.sha256,
            "size": row.size,
            "collector": row.collector,
            "manifest_row_sha256": row_digest(as_dict),
        }
        if row.details:
            event["details"] = row.details
        self.custody.append("collect", **event)
        if self._manifest_index is not None and row.outcome in ("success", "empty"):
            self._manifest_index[(row.source_host, row.source_path)] = row

    @staticmethod
    def new_id(host: str, source_path: str, salt: str = "") -> str:
        return (
            "A"
            + hashlib.sha256(f"{host}\x00{source_path}\x00{salt}".encode("utf-8", "surrogateescape")).hexdigest()[:15]
        )

    def record_attempt(
        self,
        *,
        host: str,
        kind: str,
        outcome: str,
        source_path: str,
        collector: str,
        collector_version: str,
        details: str,
        source_type: str = "",
        family: str = "",
    ) -> ManifestRow:
        """Record an attempt that stored nothing (missing, failure)."""
        assert outcome in OUTCOMES
        row = ManifestRow(
            artifact_id=self.new_id(host, source_path, utcnow()),
            kind=kind,
            outcome=outcome,
            source_host=host,
            source_path=source_path,
            collector=collector,
            collector_version=collector_version,
            collected_at=utcnow(),
            details=details,
            source_type=source_type,
            family=family,
        )
        self._write_row(row)
        return row

    def already_collected(
        self, host: str, source_path: str, size: int | None, mtime: float | None
    ) -> ManifestRow | None:
        row = self._index().get((host, source_path))
        if row is None:
            return None
        if size is not None and row.size != size:
            return None
        if mtime is not None and row.source_mtime != ts_from_epoch(mtime):
            return None
        return row

    def _dest(self, host: str, kind: str, logical_parts: list[str]) -> Path:
        parts = [safe_component(p) for p in logical_parts if p not in ("", ".")]
        if not parts:
            raise ValueError("empty logical path")
        base = self.path / "evidence" / safe_host(host) / safe_component(kind)
        dest = base.joinpath(*parts)
        # the components are sanitised, but prove the result stays inside the case anyway
        if os.path.commonpath([os.path.abspath(dest), os.path.abspath(base)]) != os.path.abspath(base):
            raise ValueError(f"refusing path outside the case: {logical_parts!r}")
        n = 1
        stem, suffix = dest.stem, dest.suffix
        while dest.exists() or dest.is_symlink():
            n += 1
            dest = dest.with_name(f"{stem}~{n}{suffix}")
        return dest

    def store(
        self,
        opener: Callable[[], AbstractContextManager[BinaryIO]],
        *,
        host: str,
        kind: str,
        logical_parts: list[str],
        source_path: str,
        collector: str,
        collector_version: str,
        source_type: str = "",
        family: str = "",
        mtime: float | None = None,
        atime: float | None = None,
        expected_size: int | None = None,
        storage: str = "copy",
        reference_path: str | None = None,
        algos: tuple[str, ...] = DEFAULT_ALGOS,
        extra: dict[str, Any] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ManifestRow:
        """Copy (or reference) one artifact into the case, hashing in the same pass.

        ``opener`` opens the source for reading. Failures are recorded as a ``failure`` row and
        returned, never raised: one unreadable file never stops a collection.
        """
        host = safe_host(host)
        collected_at = utcnow()
        art_id = self.new_id(host, source_path, collected_at)
        base = dict(
            artifact_id=art_id,
            kind=kind,
            source_host=host,
            source_path=source_path,
            collector=collector,
            collector_version=collector_version,
            collected_at=collected_at,
            source_type=source_type,
            family=family,
            storage=storage,
            source_mtime=ts_from_epoch(mtime),
            source_atime=ts_from_epoch(atime),
            extra=dict(extra or {}),
        )
        tmp: Path | None = None
        try:
            dest = self._dest(host, kind, logical_parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if storage == "copy":
                tmp = dest.with_name(f".{dest.name[:200]}.part-{os.getpid()}")
                with opener() as src, open(tmp, "xb") as out:
                    size, digests = copy_hashing(src, out, algos, progress, expected_size)
                os.chmod(tmp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
                if mtime is not None:
                    os.utime(tmp, (atime if atime is not None else mtime, mtime))
                os.replace(tmp, dest)
                tmp = None
                relpath = dest.relative_to(self.path).as_posix()
            elif storage in ("reference", "hardlink"):
                assert reference_path is not None
                if storage == "hardlink":
                    os.link(reference_path, dest, follow_symlinks=False)
                    relpath = dest.relative_to(self.path).as_posix()
                else:
                    # a small pointer file in the case tree; the bytes stay where they are
                    pointer_dest = self._dest(host, kind, [*logical_parts[:-1], f"{logical_parts[-1]}.ref.json"])
                    relpath = pointer_dest.relative_to(self.path).as_posix()
                with opener() as src:
                    size, digests = copy_hashing(src, None, algos, progress, expected_size)
                if storage == "reference":
                    pointer = self.path / relpath
                    pointer.write_text(
                        json.dumps(
                            {"reference_path": reference_path, "sha256": digests.get("sha256"), "size": size},
                            indent=2,
                        )
                        + "\n"
                    )
                    os.chmod(pointer, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
                    base["extra"]["reference_path"] = reference_path
            else:
                raise ValueError(f"unknown storage mode {storage!r}")
        except (OSError, ValueError) as exc:
            if tmp is not None:
                try:
                    os.chmod(tmp, stat.S_IWUSR | stat.S_IRUSR)
                    tmp.unlink()
                except OSError:
                    pass
            row = ManifestRow(outcome="failure", details=f"{type(exc).__name__}: {exc}", **base)
            self._write_row(row)
            return row
        details = ""
        outcome = "success" if size else "empty"
        if expected_size is not None and size != expected_size:
            details = f"size changed while reading: {expected_size} bytes listed, {size} read"
        row = ManifestRow(
            outcome=outcome,
            relpath=relpath,
            size=size,
            sha256=digests.get("sha256"),
            md5=digests.get("md5"),
            sha1=digests.get("sha1"),
            details=details,
            **base,
        )
        self._write_row(row)
        return row
