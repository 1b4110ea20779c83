"""The case folder: ``case.json``, read-only evidence, ``manifest.jsonl`` and the custody log.

The only way evidence enters a case is :meth:`Case.store`, which copies while hashing into a
temporary file, places it without overwriting anything, writes the manifest row and the custody
event, and makes the copy read-only. Writers hold the case lock (:meth:`CustodyLog.hold`) for a whole
command; :meth:`Case.recover` cleans up after one that was killed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import operator
import os
import re
import stat
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from triage import TOOL_NAME, __version__
from triage.copyhelper import CopyError, CopyHelper
from triage.custody import KILL_ENV, MAX_BATCH, CustodyLog, canonical, canonical_fast, kill_point, strict_json, utcnow
from triage.errors import CollectionFailed, IntegrityError, UsageError
from triage.hashing import DEFAULT_ALGOS, copy_hashing, hash_file, sha256_bytes
from triage.results import unit_records

log = logging.getLogger(__name__)

OUTCOMES = ("success", "missing", "empty", "failure", "duplicate")  # duplicate: same bytes already stored
NAME_MAX = 240  # bytes per stored path component; leaves room for a collision suffix under 255
CASE_FILES = ("case.json", "manifest.jsonl", "custody.jsonl", "custody.head", ".lock")
CASE_DIRS = ("evidence", "results", "report", "runs")
WRITE_ERROR = "write error: "  # prefix of a failure row's details when the case, not the source, failed
_CREATING = re.compile(r"^(\.lock|\.case\.json\.tmp-\d+)$")  # what a case being created holds at first
_PART = re.compile(r"^\..*\.part-\d+$")
READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
# exclusive: never over an existing name, nor through a symlink planted there
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
BATCH_ROWS = MAX_BATCH  # rows (and custody events) held before a batch is written
BATCH_BYTES = 1 << 20  # manifest bytes held before a batch is written
BATCH_SECONDS = 1.0  # a batch is never older than this when the next row comes
BIG_FILE = 16 << 20  # a copy this large first writes the batch held so far (its rows would wait for it)


def _being_created(entry: Path) -> bool:
    """What another command creating the same case holds before its case.json: the lock, a temp file, the
    (still empty) case sub-folders."""
    if _CREATING.match(entry.name):
        return True
    try:
        return entry.name in CASE_DIRS and entry.is_dir() and not any(entry.iterdir())
    except OSError:
        return False


class _CaseWriter:
    """Writes the evidence copy to its descriptor, telling an error writing to the case apart from a read error."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes | memoryview, /) -> object:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            raise _WriteFailed(exc) from exc
        return len(data)


class _WriteFailed(Exception):
    def __init__(self, exc: OSError) -> None:
        super().__init__(str(exc))
        self.exc = exc


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
        # shallow and fast: rows are flat but for the small 'extra' mapping; the instance's own dict holds exactly
        # the fields, in their order (a dataclass without slots), unless something set another attribute on it
        d = self.__dict__.copy()
        return d if len(d) == len(_ROW_FIELDS) else {name: getattr(self, name) for name in _ROW_FIELDS}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, sort_keys=True)

    @property
    def digest(self) -> str:
        """Hash of the row as written, recorded in the custody event so manifest edits show."""
        return row_digest(self.as_dict())


_ROW_FIELDS = tuple(f.name for f in fields(ManifestRow))
_ROW_FIELD_SET = frozenset(_ROW_FIELDS)
_row_values = operator.itemgetter(*_ROW_FIELDS)  # a row's values in field order
_new_row = object.__new__
_ROW_REQUIRED = frozenset(f.name for f in fields(ManifestRow) if f.default is MISSING and f.default_factory is MISSING)


def row_digest(row: dict[str, Any]) -> str:
    return sha256_bytes(canonical(row))


def row_line(row: ManifestRow) -> tuple[bytes, str]:
    """The manifest line of a row and the row's digest (:func:`row_digest`).

    The line is the row's canonical form itself, so its digest is the hash of the bytes written (one encoding
    instead of two); a row whose canonical form needs json's own text (a lone surrogate from an undecodable name,
    a float in ``extra``) is written as before, its escapes readable, and hashed through :func:`canonical`.
    Readers parse the JSON either way."""
    d = row.__dict__  # the fields in their order (a dataclass without slots): as_dict() without the copy
    fast = canonical_fast(d)
    if fast is not None:
        return fast + b"\n", sha256_bytes(fast)
    line = json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n"
    return line.encode("utf-8", "backslashreplace"), row_digest(d)


_DAYS: dict[int, str] = {}  # days since 1970 -> "YYYY-MM-DD" (a collection's files share few days)
_SECONDS: dict[float, str] = {}  # whole second -> its text up to the dot (a file's atime and mtime often share one)
_FAST_EPOCH = (-30610224000, 253402300800)  # 1000-01-01 .. 10000-01-01: four-digit years


def ts_from_epoch(value: float | None) -> str | None:
    """A POSIX time as ISO 8601 UTC with microseconds and a Z: the text of ``datetime.fromtimestamp(value, UTC)``.

    Computed here for four-digit years: the fraction rounded to microseconds half to even, as datetime does
    (compared with datetime over random and edge values in the tests), the date formatted once per day."""
    if value is None:
        return None
    if type(value) is float and _FAST_EPOCH[0] <= value < _FAST_EPOCH[1]:
        frac, whole = math.modf(value)
        us = round(frac * 1e6)
        if us >= 1_000_000:
            us -= 1_000_000
            whole += 1.0
        elif us < 0:
            us += 1_000_000
            whole -= 1.0
        second = _SECONDS.get(whole)
        if second is None:
            days, secs = divmod(int(whole), 86400)
            day = _DAYS.get(days)
            if day is None:
                day = _DAYS[days] = datetime.fromtimestamp(days * 86400, UTC).strftime("%Y-%m-%d")
            hours, secs = divmod(secs, 3600)
            minutes, secs = divmod(secs, 60)
            if len(_SECONDS) >= 4096:
                _SECONDS.clear()
            second = _SECONDS[whole] = f"{day}T{hours:02d}:{minutes:02d}:{secs:02d}."
        return f"{second}{us:06d}Z"
    when = datetime.fromtimestamp(value, UTC)
    if when.year < 1000:  # strftime does not pad the year to four digits: the text stays as it always was
        return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return when.isoformat(timespec="microseconds")[:-6] + "Z"  # the same text at a third of the cost


_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")
# ASCII names made of these characters only come out of safe_component unchanged (no %, no special, <= NAME_MAX)
_SAFE_AS_IS = re.compile(r"[A-Za-z0-9 ._~+,;=!@#$&'()\[\]{}^-]{1,240}")  # 240: NAME_MAX


def escapes_folder(component: str) -> bool:
    """Whether a sanitised path component could name something outside its folder (empty, ``.``, ``..``, a
    separator or a NUL): :meth:`Case._components` refuses such a path."""
    return component in ("", ".", "..") or "/" in component or "\0" in component


@functools.lru_cache(maxsize=1 << 14)  # pure; a collection names the same folders thousands of times
def safe_component(name: str) -> str:
    """Make one path component safe to create on the examiner's file system.

    Undecodable bytes and characters that are special on Windows or POSIX are percent-encoded; a
    ``%`` is encoded only where two hex digits follow it, so the mapping stays reversible while the
    common Windows names keep their look (``Microsoft-Windows-Sysmon%4Operational.evtx``);
    ``.``/``..`` never survive; over-long names keep a hash.
    """
    if _SAFE_AS_IS.fullmatch(name) and name not in (".", ".."):  # most names: nothing to encode (same result)
        return name
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


@functools.lru_cache(maxsize=256)  # pure; called several times per collected file with the same host
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
        self._manifest_parsed: tuple[tuple[int, int, int], list[tuple[int, ManifestRow | None, str]]] | None = None
        self._manifest_fd: int | None = None
        self.write_failures: list[str] = []  # files this command could not write into the case
        self._folders: set[str] = set()  # evidence folders this process made (or found) already
        self._root = os.fspath(path)
        # rows written in batches inside batch(): (row, manifest line, row digest); flushed before any other event
        self._pending: list[tuple[ManifestRow, bytes, str]] = []
        self._pending_bytes = 0
        self._pending_since = 0.0
        self._batching = 0
        self.custody.before_append = self.flush_rows
        # set by a caller copying in several threads: store() calls it once the bytes are copied, before the row
        # (it waits there for the thread's turn, so rows, events and counts keep the order of the plan)
        self.row_gate: Callable[[], None] | None = None
        # set by a collection that copies small files in a helper process (triage.copyhelper): store() takes the
        # helper's copy of a source asked for there instead of copying it
        self.copier: CopyHelper | None = None
        self._kill_at = os.environ.get(KILL_ENV)  # tests only (kill_point): read once, not twice per copy

    def sync(self, *, files: bool = True) -> None:
        """Make what this command wrote durable: evidence copies and other case files, manifest, custody log, head.

        Copies are not fsynced one by one (that was a flush per file); one ``syncfs`` of the case's file system
        at the end of the command writes them all, and ``verify`` catches anything a crash before it lost. It
        waits for that file system only, where ``os.sync()`` waited for every mounted one (and for every other
        program's writes to them). ``files=False``: only the manifest and the custody log and head are fsynced,
        for a caller that fsynced every other file it wrote itself.
        """
        self.flush_rows()
        if files:
            _syncfs(self.path)
        if self._manifest_fd is not None:
            os.fsync(self._manifest_fd)
        self.custody.sync()

    def __del__(self) -> None:
        # a Case dropped without close() (tests, library use) still releases its handles; rows held in a
        # batch are written, only the final fsync is skipped
        if getattr(self, "_pending", None):
            with contextlib.suppress(Exception):
                self.flush_rows()
        fd = getattr(self, "_manifest_fd", None)
        if fd is not None:
            os.close(fd)
            self._manifest_fd = None
        custody = getattr(self, "custody", None)
        if custody is not None:
            custody.abandon()

    def close(self, *, files: bool = True) -> None:
        """Sync (:meth:`sync`, ``files`` as there) and release the case's handles."""
        try:
            self.sync(files=files)
        finally:
            if self._manifest_fd is not None:
                os.close(self._manifest_fd)
                self._manifest_fd = None
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
        try:
            if (p / "case.json").exists() or (p / "custody.jsonl").exists():
                return cls.open(p)
            if p.exists() and not p.is_dir():
                raise UsageError(f"{p} is not a folder: --case names a case folder")
            if p.exists() and any(not _being_created(c) for c in p.iterdir()):
                raise UsageError(f"{p} exists, is not empty and is not a case folder (no case.json)")
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the case folder {p}: {exc.strerror or exc}") from None
        actor = examiner or os.environ.get("TRIAGE_EXAMINER") or CustodyLog(p).actor
        info = {
            "case_id": case_id or f"CASE-{datetime.now(UTC):%Y%m%d}-{uuid.uuid4().hex[:8]}",
            "examiner": actor,
            "created": utcnow(),
            "tool": TOOL_NAME,
            "tool_version": __version__,
            "description": description,
        }
        case = cls(p, info)
        try:
            with case.writer():  # two commands creating one case at once: the second opens the first's
                if (p / "case.json").exists():
                    case.custody.close()
                    return cls.open(p)
                for sub in CASE_DIRS:
                    (p / sub).mkdir(exist_ok=True)
                data = (json.dumps(info, indent=2, ensure_ascii=False) + "\n").encode()
                tmp = p / f".case.json.tmp-{os.getpid()}"
                for stale in p.glob(".case.json.tmp-*"):
                    stale.unlink()
                tmp.write_bytes(data)
                os.replace(tmp, p / "case.json")  # whole or absent for a concurrent reader
                case.custody.append("create", case_id=info["case_id"], case_json_sha256=sha256_bytes(data))
        except OSError as exc:
            case.custody.close()
            raise UsageError(f"cannot create the case folder {p}: {exc.strerror or exc}") from None
        return case

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Case:
        p = Path(path)
        try:
            if not p.is_dir():
                what = "does not exist" if not p.exists() else "is not a folder"
                raise UsageError(f"{p} {what}: a case folder is expected")
            raw = (p / "case.json").read_bytes()
        except FileNotFoundError:
            if (p / "custody.jsonl").exists():
                raise IntegrityError(f"{p}/case.json is missing (the custody log says this was a case)") from None
            raise UsageError(f"{p} is not a case folder: case.json is missing") from None
        except OSError as exc:
            raise UsageError(f"{p}/case.json cannot be read: {exc.strerror or exc}") from None
        return cls(p, parse_case_json(raw, p))

    # -- writing commands -------------------------------------------------------------------------
    def writer(self, wait: float | None = None) -> AbstractContextManager[None]:
        """Hold the case lock for a whole writing command (a second writer waits, then fails clearly)."""
        return self.custody.hold(wait)

    def recover(self) -> list[dict[str, Any]]:
        """Clean up after a command that was killed or ran out of space; each action is a custody event.

        Call with the writer lock held (nothing else writes). A partial last manifest line is cut off
        (its custody event was never written); temporary copies (``.NAME.part-PID``) are removed;
        a placed copy without a manifest row is removed (its hash recorded) so that the resumed
        collect stores it again under the same name; a manifest row whose custody event is missing
        (killed between the two) is recorded now if the copy matches it.
        """
        assert self.custody.is_held, "recover() needs the writer lock"
        actions: list[dict[str, Any]] = []
        if next(self.custody.events(), None) is None and self.custody.head()[0] == 0:
            # killed between writing case.json and the create event: record the creation now
            digest = sha256_bytes((self.path / "case.json").read_bytes())
            self.custody.append("create", case_id=self.case_id, case_json_sha256=digest, recovered=True)
        tail = _partial_tail(self.manifest_path)
        if tail:
            size = self.manifest_path.stat().st_size
            os.truncate(self.manifest_path, size - tail)
            actions.append({"what": "partial last manifest line removed", "file": "manifest.jsonl", "bytes": tail})
        recorded: set[Any] = set()
        recorded_files: set[str] = set()
        for ev in self.custody.events():  # one pass over the log (it holds an event per collected file)
            details = ev.get("details")
            if not isinstance(details, dict):
                continue
            if ev.get("action") == "collect":
                recorded.add(details.get("artifact_id"))
            recorded_files.update(v for k in ("run_record", "record", "file") if isinstance(v := details.get(k), str))
        listed: set[str] = set()
        for _lineno, row, _err in self.manifest_lines():
            if row is None:
                continue
            if row.relpath and row.outcome in ("success", "empty"):
                listed.add(row.relpath)
            if row.artifact_id in recorded:
                continue
            path = self.path / row.relpath if row.relpath else None
            matches = row.outcome in ("missing", "failure") or (
                path is not None and path.is_file() and hash_file(path, ("sha256",))[1]["sha256"] == row.sha256
            )
            if matches:
                self.custody.append("collect", **_collect_event(row), recovered=True)
                actions.append({"what": "manifest row without custody event recorded", "artifact_id": row.artifact_id})
        evidence = self.path / "evidence"
        for dirpath, _dirs, files in os.walk(evidence):
            # per folder, not per file: a Path per stored file costs more than the rest of this check
            folder = os.path.relpath(dirpath, self.path).replace(os.sep, "/") + "/"
            for name in files:
                if folder + name in listed:
                    continue
                full = Path(dirpath, name)
                rel = full.relative_to(self.path).as_posix()
                if _PART.match(name):
                    what = "temporary copy of an interrupted collect removed"
                elif name.endswith(".ref.json"):
                    what = "reference pointer without a manifest row removed"
                else:
                    what = "copy without a manifest row (interrupted collect) removed"
                try:
                    digest = hash_file(full, ("sha256",))[1]["sha256"] if full.is_file() else ""
                    size = full.lstat().st_size
                    full.unlink()
                except OSError as exc:
                    log.warning("%s: could not remove (%s)", rel, exc)
                    continue
                self._prune_empty(full.parent)
                actions.append({"what": what, "file": rel, "size": size, "sha256": digest})
        actions += self._recover_outputs(recorded_files=recorded_files)
        for action in actions:
            log.warning("recovered: %s%s", action["what"], f" ({action['file']})" if "file" in action else "")
            self.custody.append("recover", **action)
        if actions:
            self._manifest_index = None
        return actions

    def _recover_outputs(self, recorded_files: set[str]) -> list[dict[str, Any]]:
        """Temporary files a killed analyze or report left are removed; a run record written just before
        the kill (its ``analyze`` event never was) is kept and its hash recorded now."""
        actions: list[dict[str, Any]] = []
        for sub in ("results", "runs", "report"):
            for dirpath, _dirs, files in os.walk(self.path / sub):
                for name in files:
                    full = Path(dirpath, name)
                    rel = full.relative_to(self.path).as_posix()
                    if re.match(r"^\..*\.(tmp|part)-\d+$", name) and not full.is_symlink():
                        with contextlib.suppress(OSError):
                            full.unlink()
                            actions.append({"what": "temporary file of an interrupted command removed", "file": rel})
                    elif sub == "runs" and name.endswith(".json") and rel not in recorded_files and full.is_file():
                        digest = hash_file(full, ("sha256",))[1]["sha256"]
                        what = "record of an interrupted command kept"
                        actions.append({"what": what, "file": rel, "sha256": digest, "kept": True})
        return actions

    def result_hashes(
        self, analyzers: list[str], written: Mapping[Path, list[dict[str, Any]]] | None = None
    ) -> dict[str, str]:
        """sha256 of every result file of these analyzers, for the run record (which custody hashes).

        A unit's (or batch's) parquet is listed with the hash its record gives (the worker hashed it while
        writing), so a file replaced since its unit ran is never blessed by a later run, and thousands of results
        are not read again; other files (the records themselves, side tables) are hashed. Temporary files are
        left out. ``written``: the rows of record files this command wrote and still holds (by path), used
        instead of parsing those files again (megabytes for a run over thousands of small files); a record
        file not on disk any more is not listed, whatever ``written`` says.
        """
        out: dict[str, str] = {}
        written = written or {}
        for name in analyzers:
            root = self.path / "results" / name
            recorded: dict[str, str] = {}
            for _path, rec in unit_records(self.path, [name], known=written):
                rel, digest = rec.get("result_path"), rec.get("result_sha256")
                if isinstance(rel, str) and isinstance(digest, str) and rel and digest:
                    recorded[rel] = digest
            for dirpath, _dirs, files in os.walk(root):
                for fname in sorted(files):
                    full = Path(dirpath, fname)
                    if fname.startswith(".") or full.is_symlink():
                        continue
                    rel = full.relative_to(self.path).as_posix()
                    if rel in recorded:
                        out[rel] = recorded[rel]
                        continue
                    try:
                        out[rel] = hash_file(full, ("sha256",))[1]["sha256"]
                    except OSError:
                        continue
        return out

    @property
    def case_id(self) -> str:
        return str(self.info["case_id"])

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.jsonl"

    # -- manifest ------------------------------------------------------------------------------
    def manifest_lines(self) -> Iterator[tuple[int, ManifestRow | None, str]]:
        """Every manifest line: (line number, row or None, why it is not a row). Strict: duplicated keys,
        unknown or missing fields, wrong types and a partial last line are errors.

        While this process holds the writer lock, the parsed lines are kept for as long as the file is the same
        (inode, size, modification time): a command reads the manifest several times (recover, planning)."""
        self.flush_rows()
        try:
            fh = open(self.manifest_path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return
        with fh:
            st = os.fstat(fh.fileno())
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            cached = self._manifest_parsed
            if cached is not None and cached[0] == key and self.custody.is_held:
                yield from cached[1]
                return
            lines = list(self._parse_manifest(fh))
            self._manifest_parsed = (key, lines) if self.custody.is_held else None
        yield from lines

    @staticmethod
    def _parse_manifest(fh: BinaryIO) -> Iterator[tuple[int, ManifestRow | None, str]]:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                yield lineno, None, "blank line"
                continue
            if not raw.endswith(b"\n"):
                yield lineno, None, "partial last line (a write was cut short)"
                continue
            try:
                yield lineno, parse_row(raw), ""
            except ValueError as exc:
                yield lineno, None, str(exc)

    def manifest(self) -> Iterator[ManifestRow]:
        """The manifest rows; IntegrityError on the first line that is not one."""
        for lineno, row, err in self.manifest_lines():
            if row is None:
                raise IntegrityError(f"{self.manifest_path} line {lineno}: {err}; run 'triage verify'")
            yield row

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

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Write manifest rows and their custody events in batches while inside (a collection).

        Each row keeps its own chained custody event; a batch costs one manifest write, one custody write and
        one head update. Rows are written before their events, and every batch before any other custody event,
        so a kill at any point leaves what :meth:`recover` repairs and ``verify`` reports as incomplete: copies
        without rows (removed and collected again on resume), rows without events (recorded then).
        """
        self._batching += 1
        try:
            yield
        finally:
            self._batching -= 1
            if not self._batching:
                self.flush_rows()

    def _write_row(self, row: ManifestRow) -> None:
        """Queue the row (manifest line, then its custody event); written now unless inside :meth:`batch`.

        A failure writing means the case cannot be written (full disk): CollectionFailed, counted.
        """
        data, digest = row_line(row)
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append((row, data, digest))
        self._pending_bytes += len(data)
        if self._manifest_index is not None and row.outcome in ("success", "empty"):
            self._manifest_index[(row.source_host, row.source_path)] = row
        if (
            not self._batching
            or len(self._pending) >= BATCH_ROWS
            or self._pending_bytes >= BATCH_BYTES
            or time.monotonic() - self._pending_since >= BATCH_SECONDS
        ):
            self.flush_rows()

    def flush_rows(self) -> None:
        """Write the queued rows: one append to the manifest, then their custody events in one append."""
        if not self._pending:
            return
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        try:
            with self.custody.locked():
                if self._manifest_fd is None:
                    if _partial_tail(self.manifest_path):  # never append after a cut line
                        self.recover()
                    self._manifest_fd = os.open(
                        self.manifest_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
                    )
                view = memoryview(b"".join(data for _, data, _ in pending))
                try:
                    while view:
                        view = view[os.write(self._manifest_fd, view) :]
                except OSError:
                    os.close(self._manifest_fd)  # reopened (and the cut line removed) on the next row
                    self._manifest_fd = None
                    raise
                if os.environ.get(KILL_ENV):  # tests only; read once per batch
                    for _ in pending:
                        kill_point("row")
                self.custody.append_many("collect", [_collect_event(row, digest) for row, _, digest in pending])
        except OSError as exc:
            self.write_failures.extend(f"{row.source_path}: {exc.strerror or exc}" for row, _, _ in pending)
            raise CollectionFailed(
                f"cannot write to the case {self.path} ({exc.strerror or exc}) while recording "
                f"{pending[0][0].source_path}" + (f" and {len(pending) - 1} more" if len(pending) > 1 else "")
            ) from exc

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

    def _prune_empty(self, folder: Path) -> None:
        """Remove ``folder`` and its parents up to ``evidence/`` while they are empty."""
        root = self.path / "evidence"
        self._folders.clear()
        while folder != root and root in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (or gone): stop
                return
            folder = folder.parent

    def _components(self, host: str, kind: str, logical_parts: list[str]) -> list[str]:
        """The stored path of an artifact as components under the case: ``evidence``, host, kind, then the
        sanitised logical path (the last one the file name, before any collision suffix)."""
        parts = [safe_component(p) for p in logical_parts if p not in ("", ".")]
        if not parts:
            raise ValueError("empty logical path")
        # the components are sanitised (no separator, never . or ..): prove the result stays inside the case anyway
        if any(map(escapes_folder, parts)):
            raise ValueError(f"refusing path outside the case: {logical_parts!r}")
        return ["evidence", safe_host(host), safe_component(kind), *parts]

    def _dest(self, host: str, kind: str, logical_parts: list[str], *, probe: bool = True) -> Path:
        """Where an artifact goes; ``probe``: the first free name (``name~2.ext`` ...), else the name itself
        (:meth:`_create` then finds a free one by creating it)."""
        dest = self.path.joinpath(*self._components(host, kind, logical_parts))
        if not probe:
            return dest
        n = 1
        stem, suffix = dest.stem, dest.suffix
        while os.path.lexists(dest):  # a dangling symlink counts as taken
            n += 1
            dest = dest.with_name(f"{stem}~{n}{suffix}")
        return dest

    def _spread_evidence(self) -> None:
        """Make ``evidence/`` a top of folder trees for ext4's inode allocator (``chattr +T``), once per process.

        Each host folder made under it then goes to a block group with free room of its own instead of the
        group of the case folder. On ext4 without a journal (this project's machines) an inode freed in the last
        60 s (360 s while its table block is unwritten) is never reused, and every new inode of the group is
        found by stepping over all of them: after 6,000 files were deleted next to it, creating 6,000 files took
        7-17 s (2.4-3.8 s of it in the kernel) beside the deleted ones and 0.8-1.4 s under a ``+T`` folder,
        measured in both orders. Best effort: other file systems have no such flag and lose nothing."""
        evidence = self.path / "evidence"
        evidence.mkdir(exist_ok=True)
        _mark_topdir(evidence)

    def ensure_folder(self, where: str) -> None:
        """Make the evidence folder ``where`` (absolute, as text) once per collection, not once per file."""
        if where not in self._folders:
            if not self._folders:
                self._spread_evidence()
            os.makedirs(where, exist_ok=True)
            self._folders.add(where)

    def _create_in(self, folder: str, name: str) -> tuple[int, str]:
        """Create ``folder/name`` exclusively, read-only; (descriptor, name created): the common case as text,
        a name already taken through :meth:`_create` (``name~2.ext`` ...)."""
        try:
            return os.open(f"{folder}/{name}", CREATE_FLAGS, READ_ONLY), name
        except (FileExistsError, FileNotFoundError):
            fd, dest = self._create(Path(folder, name))
            return fd, dest.name

    def _create(self, dest: Path) -> tuple[int, Path]:
        """Create ``dest`` (or ``name~2.ext`` ... when taken) exclusively, read-only; (descriptor, path)."""
        n, stem, suffix, cand = 1, dest.stem, dest.suffix, dest
        while True:
            try:
                return os.open(cand, CREATE_FLAGS, READ_ONLY), cand
            except FileExistsError:  # a file, a folder or a dangling symlink: never written through
                n += 1
                cand = dest.with_name(f"{stem}~{n}{suffix}")
            except FileNotFoundError:  # the folder went away since it was made here: make it again
                cand.parent.mkdir(parents=True, exist_ok=True)
                return os.open(cand, CREATE_FLAGS, READ_ONLY), cand

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
        returned, never raised: one unreadable file never stops a collection. A failure to write the
        copy into the case is such a row too (details ``write error: ...``, counted in
        :attr:`write_failures`); only when the manifest or custody log itself cannot be written does
        this raise :class:`CollectionFailed`.
        """
        host = safe_host(host)
        collected_at = utcnow()
        art_id = self.new_id(host, source_path, collected_at)
        base: dict[str, Any] = dict(  # the row's fields common to every outcome (ManifestRow keywords)
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
        tmp: str | None = None
        folder: Path | None = None
        where: str | None = None  # the copy's folder, as text
        case_side = True  # until the source is opened, an OSError is the case's (mkdir, temp file)
        try:
            if storage == "copy":
                if expected_size is not None and expected_size >= BIG_FILE:
                    self.flush_rows()  # the rows held so far are not kept waiting for a long copy
                if self.copier is not None and source_path in self.copier:
                    # copied by the helper process while earlier rows were written (the same copy, see copyhelper),
                    # into the folder of its components, made when it was asked for
                    where = self.copier.folder(source_path)
                    rel_folder = where[len(self._root) + 1 :]
                    _where, name, size, digests = self.copier.take(source_path)
                    if progress is not None and size:
                        progress(size)
                    if self._kill_at:
                        kill_point("copy")
                else:
                    # paths as text: pathlib cost more per file than the copy of a small one
                    comps = self._components(host, kind, logical_parts)
                    rel_folder = "/".join(comps[:-1])
                    where = f"{self._root}/{rel_folder}"
                    self.ensure_folder(where)
                    # written under its final name, created exclusively (never over another file) and read-only
                    # from the start; a kill before its row leaves a copy that recover() removes and the resumed
                    # collect stores again under the same name
                    fd, name = self._create_in(where, comps[-1])
                    tmp = f"{where}/{name}"
                    try:
                        case_side = False
                        with opener() as src:
                            size, digests = copy_hashing(src, _CaseWriter(fd), algos, progress, expected_size)
                        case_side = True
                        if self._kill_at:
                            kill_point("copy")
                        os.fchmod(fd, READ_ONLY)  # exact, whatever the umask
                        if mtime is not None:
                            os.utime(fd, (atime if atime is not None else mtime, mtime))
                    finally:
                        os.close(fd)
                    tmp = None
                if self._kill_at:
                    kill_point("placed")
                relpath = f"{rel_folder}/{name}"
            elif storage in ("reference", "hardlink"):
                assert reference_path is not None
                dest = self._dest(host, kind, logical_parts)
                folder = dest.parent
                if str(folder) not in self._folders:
                    folder.mkdir(parents=True, exist_ok=True)
                    self._folders.add(str(folder))
                if storage == "hardlink":
                    case_side = False  # EXDEV and friends say the mode does not fit, not that the case is full
                    os.link(reference_path, dest, follow_symlinks=False)
                    case_side = True
                    relpath = dest.relative_to(self.path).as_posix()
                else:
                    # a small pointer file in the case tree; the bytes stay where they are
                    pointer_dest = self._dest(host, kind, [*logical_parts[:-1], f"{logical_parts[-1]}.ref.json"])
                    relpath = pointer_dest.relative_to(self.path).as_posix()
                case_side = False
                with opener() as src:
                    size, digests = copy_hashing(src, None, algos, progress, expected_size)
                case_side = True
                if storage == "reference":
                    pointer = self.path / relpath
                    pointer.write_text(
                        json.dumps(
                            {"reference_path": reference_path, "sha256": digests.get("sha256"), "size": size},
                            indent=2,
                        )
                        + "\n"
                    )
                    os.chmod(pointer, READ_ONLY)
                    base["extra"]["reference_path"] = reference_path
            else:
                raise ValueError(f"unknown storage mode {storage!r}")
        except (OSError, ValueError, _WriteFailed, CopyError) as exc:
            if tmp is not None:  # the copy this call created, never another file
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            if self.row_gate is not None:
                self.row_gate()
            if folder is None and where is not None:
                folder = Path(where)  # as a Path only when a copy failed
            if folder is not None:
                self._prune_empty(folder)  # folders made for this copy alone: verify flags empty ones
            if isinstance(exc, CopyError):  # the helper's copy failed (and was removed): the same words
                details = f"{exc.type_name}: {exc.text}"
                if exc.case_side:
                    details = f"{WRITE_ERROR}{details}"
                    self.write_failures.append(f"{source_path}: {exc.strerror or exc.text}")
                    log.error("cannot write %s into the case: %s", source_path, exc.strerror or exc.text)
                row = ManifestRow(outcome="failure", details=details, **base)
                self._write_row(row)
                return row
            details = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, _WriteFailed) or (isinstance(exc, OSError) and case_side):
                cause = exc.exc if isinstance(exc, _WriteFailed) else exc
                details = f"{WRITE_ERROR}{type(cause).__name__}: {cause}"
                self.write_failures.append(f"{source_path}: {cause.strerror or cause}")
                log.error("cannot write %s into the case: %s", source_path, cause.strerror or cause)
            row = ManifestRow(outcome="failure", details=details, **base)
            self._write_row(row)
            return row
        if self.row_gate is not None:
            self.row_gate()
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


_FS_IOC_GETFLAGS, _FS_IOC_SETFLAGS, _FS_TOPDIR_FL = 0x80086601, 0x40086602, 0x00020000  # linux/fs.h


def _mark_topdir(folder: Path) -> bool:
    """Set the 'top of directory hierarchy' flag on ``folder`` (ext2/3/4, Linux); False where it cannot be set."""
    if os.uname().sysname != "Linux":
        return False
    import fcntl
    import struct

    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        flags = struct.unpack_from("<I", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, bytes(8)))[0]
        if not flags & _FS_TOPDIR_FL:
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("<Q", flags | _FS_TOPDIR_FL))
        return True
    except OSError:  # ENOTTY, EOPNOTSUPP (not ext4), EPERM: the folder is used as it is
        return False
    finally:
        os.close(fd)


@functools.cache
def _libc_syncfs() -> Callable[[int], int] | None:
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # not Linux (or no syncfs): os.sync() instead
        return None
    fn.argtypes = [ctypes.c_int]
    return fn


def _syncfs(folder: Path) -> None:
    """Write the dirty data of the file system holding ``folder`` (Linux ``syncfs``); ``os.sync()`` elsewhere."""
    fn = _libc_syncfs()
    if fn is None:
        os.sync()
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if fn(fd) != 0:
            import ctypes

            err = ctypes.get_errno()
            raise OSError(err, f"syncfs: {os.strerror(err)}", str(folder))
    finally:
        os.close(fd)


def _partial_tail(path: Path) -> int:
    """Bytes after the last newline of a line file (a write cut short), 0 when it ends cleanly."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            pos = size
            while pos > 0:
                start = max(0, pos - (1 << 16))
                fh.seek(start)
                nl = fh.read(pos - start).rfind(b"\n")
                if nl >= 0:
                    return size - (start + nl + 1)
                pos = start
            return size
    except FileNotFoundError:
        return 0


def _collect_event(row: ManifestRow, digest: str | None = None) -> dict[str, Any]:
    """The details of the custody event that records one manifest row (``digest``: the row's, when known)."""
    event: dict[str, Any] = {
        "artifact_id": row.artifact_id,
        "kind": row.kind,
        "outcome": row.outcome,
        "source_path": row.source_path,
        "relpath": row.relpath,
        "sha256": row.sha256,
        "size": row.size,
        "collector": row.collector,
        "manifest_row_sha256": digest or row.digest,
    }
    if row.details:
        event["details"] = row.details
    return event


_ROW_TYPES: dict[str, tuple[type, ...]] = {
    "size": (int, type(None)),
    "extra": (dict,),
    **{n: (str, type(None)) for n in ("relpath", "sha256", "md5", "sha1", "source_mtime", "source_atime")},
}
_ROW_TYPE_PAIRS = frozenset((n, t) for n in _ROW_FIELDS for t in _ROW_TYPES.get(n, (str,)))


def _row_json(line: str | bytes) -> Any:
    """The JSON value of a manifest line; ValueError for text that is not JSON or repeats a key.

    A line triage wrote is compact JSON (:func:`row_line`): when orjson's parse of it, written back by orjson,
    gives the line's own bytes, no key can be repeated (the parse keeps one of them: the bytes of the other would
    be missing) and the value is the one the strict parser gives, at a fraction of its cost (it runs a Python
    hook per object). Any other line (spacing, escapes orjson writes otherwise, numbers beyond 64 bits, bytes
    that are not UTF-8) goes to the strict parser, as before."""
    raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
    body = raw[:-1] if raw.endswith(b"\n") else raw
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    else:
        if orjson.dumps(data) == body:
            return data
    text = line if isinstance(line, str) else line.decode("utf-8", "surrogateescape")
    return strict_json(text)


def parse_row(line: str | bytes) -> ManifestRow:
    """One manifest line as a row; ValueError (with the reason) for anything triage would not write."""
    try:
        data = _row_json(line)
    except ValueError as exc:
        raise ValueError(f"not a manifest row ({str(exc)[:80]})") from None
    if not isinstance(data, dict):
        raise ValueError("not a manifest row (not a JSON object)")
    unknown = data.keys() - _ROW_FIELD_SET
    missing = _ROW_REQUIRED - data.keys()
    if unknown or missing:
        raise ValueError(f"not a manifest row (unknown fields {sorted(unknown)}, missing {sorted(missing)})")
    # every (field, exact type) pair allowed, in one set operation (a JSON value's type is exact: bool is no int)
    if not _ROW_TYPE_PAIRS.issuperset(zip(data, map(type, data.values()), strict=True)):
        for name, value in data.items():
            allowed = _ROW_TYPES.get(name, (str,))
            if not isinstance(value, allowed) or (isinstance(value, bool) and name == "size"):
                raise ValueError(f"not a manifest row (field {name!r} has type {type(value).__name__})")
    if data["outcome"] not in OUTCOMES:
        raise ValueError(f"not a manifest row (outcome {data['outcome']!r})")
    relpath = data.get("relpath")
    if relpath and (relpath.startswith("/") or ".." in relpath.split("/") or not relpath.startswith("evidence/")):
        raise ValueError(f"not a manifest row (relpath {relpath!r} outside evidence/)")
    if len(data) == len(_ROW_FIELDS):  # every field (as triage writes rows): what __init__ sets, in its order
        row = _new_row(ManifestRow)
        row.__dict__.update(zip(_ROW_FIELDS, _row_values(data), strict=True))
        return row
    return ManifestRow(**data)


def parse_case_json(raw: bytes, where: Path) -> dict[str, Any]:
    """``case.json`` as a dict with a case id; IntegrityError (one line) otherwise."""
    try:
        info = strict_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError(f"{where}/case.json is not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(info, dict) or not isinstance(info.get("case_id"), str) or not info["case_id"]:
        raise IntegrityError(f"{where}/case.json is not a case record (no case_id): it was damaged or replaced")
    return info
