"""The chain-of-custody log: append-only JSON lines, each event holding the hash of the one before.

Editing, removing or reordering a line breaks the chain at that line; cutting events off the end is
caught by ``custody.head``, which records the sequence number and hash of the newest event, and, when
the head is rewritten too, by a head kept outside the case (``triage verify --head``).

Appends go through one ``O_APPEND`` descriptor with no user-space buffer, so a failed write (a full
disk) leaves at most one partial last line; the next writer cuts it back to the last whole line and
records that in an event before it appends anything.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import hashlib
import io
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from triage import TOOL_NAME, __version__
from triage.errors import IntegrityError, UsageError
from triage.hashing import sha256_bytes

GENESIS = "0" * 64
HEAD_WIDTH = 128  # the head is rewritten in place, padded to a fixed width
LOCK_WAIT_ENV = "TRIAGE_LOCK_WAIT"  # seconds a writer waits for another one to finish (default below)
LOCK_WAIT_DEFAULT = 600.0
MAX_BATCH = 512  # events appended in one write at most (append_many)
HEAD_CATCHUP_WINDOW = 8 << 20  # bytes at the log's end searched for the head's event (batches are far smaller)
# events written as their canonical bytes plus the hash (one encoding, not two): the one per collected file. Other
# events keep json's spaced line (the attestation reader finds its events by their text)
COMPACT_ACTIONS = frozenset({"collect"})
KILL_ENV = "TRIAGE_TEST_KILL_AT"  # tests only: "<stage>:<n>" SIGKILLs this process at the n-th <stage>
_kill_counts: dict[str, int] = {}

log = logging.getLogger(__name__)


def kill_point(stage: str) -> None:
    """Crash here if the test suite asked for it (``TRIAGE_TEST_KILL_AT=stage:n``); a no-op otherwise.

    Lets the suite SIGKILL a real ``triage`` process at a chosen write (stages: ``copy``, ``placed``,
    ``row`` in :meth:`Case.store`; ``append`` before and ``head`` after a custody line is written).
    """
    want = os.environ.get(KILL_ENV)  # read each time: a forked worker sees what the test set after import
    if not want:
        return
    name, _, nth = want.partition(":")
    if name != stage:
        return
    _kill_counts[stage] = _kill_counts.get(stage, 0) + 1
    if _kill_counts[stage] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_SECOND: list[Any] = [None, ""]  # (whole second, its text up to the seconds): a collection asks thousands of times


def utcnow() -> str:
    """The current UTC time as ISO 8601 with microseconds and a Z."""
    # the text of datetime.now(UTC).isoformat(timespec="microseconds") with a Z (the clock read the same way:
    # nanoseconds floored to microseconds); the date and time of day are formatted once per second
    secs, ns = divmod(time.time_ns(), 1_000_000_000)
    if secs != _SECOND[0]:
        _SECOND[1] = datetime.fromtimestamp(secs, UTC).isoformat()[:-6]
        _SECOND[0] = secs
    return f"{_SECOND[1]}.{ns // 1000:06d}Z"


_PLAIN = frozenset((str, int, bool, type(None)))
_NESTED = frozenset((*_PLAIN, dict, list, tuple))
_STR = frozenset((str,))
_LINE = json.JSONEncoder(ensure_ascii=False, default=str, sort_keys=True)  # a custody line (json.dumps' own)


def _plain(obj: Any) -> bool:
    """Only exact str/int/bool/None, lists and str-keyed dicts: where orjson's bytes are json's, byte for byte."""
    t = type(obj)
    if t in _PLAIN:
        return True
    if t is dict:  # the common flat cases are answered by set operations, without a Python loop
        if not _STR.issuperset(map(type, obj)):
            return False
        values = obj.values()
    elif t is list or t is tuple:
        values = obj
    else:
        return False
    types = set(map(type, values))
    if _PLAIN.issuperset(types):
        return True
    # only the nested containers are looked into (a row's 'extra', an event's 'details'); an empty one is plain
    # (its truth is tested only once every type is known to be an exact plain one or container: no user hook)
    # floats (repr differs), enums, datetimes, subclasses: json's text, through default=str
    return _NESTED.issuperset(types) and all(_plain(v) for v in values if v and type(v) not in _PLAIN)


def canonical_fast(obj: Any) -> bytes | None:
    """:func:`canonical` through orjson (a tenth of the time), or None where its bytes could differ from json's.

    For plain values (:func:`_plain`) orjson with sorted keys writes what ``json.dumps(sort_keys=True,
    separators=(",", ":"), ensure_ascii=False)`` writes (the same escapes for every code point; tested); lone
    surrogates, integers beyond 64 bits and deep nesting make it raise, and json's text is used then."""
    if not _plain(obj):
        return None
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate, a huge integer, nesting too deep
        return None


def canonical(obj: Any) -> bytes:
    """The one byte form that event hashes are computed over."""
    fast = canonical_fast(obj)
    if fast is not None:
        return fast
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return text.encode("utf-8", "surrogatepass")  # undecodable source names travel as lone surrogates


def _frame(action: str, actor: str, tool: str, ts: str, workstation: str) -> tuple[bytes, bytes] | None:
    """The canonical bytes of an event before its details (``{"action":..,"actor":..,"details":``) and after its
    ``seq`` (``,"tool":..,"ts":..,"workstation":..}``), the same for a whole batch; None when one of them is not
    plain text (the events are then encoded whole, as before)."""
    try:
        if not all(type(v) is str for v in (action, actor, tool, ts, workstation)):
            return None
        enc = [orjson.dumps(v) for v in (action, actor, tool, ts, workstation)]
    except TypeError:  # a lone surrogate in a name
        return None
    return (
        b'{"action":%s,"actor":%s,"details":' % (enc[0], enc[1]),
        b',"tool":%s,"ts":%s,"workstation":%s}' % (enc[2], enc[3], enc[4]),
    )


def event_hash(event: dict[str, Any]) -> str:
    body = {k: v for k, v in event.items() if k != "hash"}
    return sha256_bytes(canonical(body))


def load_json(text: str | bytes) -> Any:
    """``json.loads`` of a case file's text. Nesting too deep for the parser is a ValueError like any other
    unreadable text (json raises RecursionError for it), so a crafted file costs only itself."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None


def strict_json(text: str) -> Any:
    """``json.loads`` that rejects an object with a repeated key (a reader would see one, a human the other)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise ValueError(f"duplicated key {k!r}")
            out[k] = v
        return out

    try:
        return json.loads(text, object_pairs_hook=pairs)
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None


# 19 digits in a row: a number orjson could read otherwise than json (beyond 64 bits it gives a float)
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19


def event_json(raw: bytes) -> Any:
    """``json.loads`` of a line's text (undecodable bytes as surrogates), through orjson where its value is the
    same (about twice as fast).

    orjson and json read every JSON text alike (the same value, the last of repeated keys, the same errors)
    except numbers: orjson refuses NaN, Infinity and numbers beyond a float (json reads them) and reads integers
    beyond 64 bits as floats. A line it refuses, and any line with 19 digits in a row (rare: a hash's hex digits
    can have them), is read by json. ValueError for what json refuses, as ``json.loads``."""
    if _LONG_NUMBER not in raw.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # json decides (its value or its error): NaN, bytes not UTF-8, lone surrogates, deep nesting
    return load_json(raw.decode("utf-8", "surrogateescape"))


def _text_lines(fh: BinaryIO) -> Iterator[bytes]:
    """The lines of a file as reading it as text splits them: a carriage return ends a line there too (and is
    read as a line feed); such lines are split as text splits them, every other line is its own bytes."""
    for raw in fh:
        if b"\r" in raw:
            for line in io.StringIO(raw.decode("utf-8", "surrogateescape"), newline=None):
                yield line.encode("utf-8", "surrogateescape")
        else:
            yield raw


def _events_of(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The events of whole lines (a blank or damaged one, or a cut last line, is skipped: verify reports it)."""
    for raw in lines:
        if not raw.endswith(b"\n") or not raw.strip():
            continue
        try:
            ev = event_json(raw)
        except ValueError:
            continue
        if isinstance(ev, dict):
            yield ev


def parse_head(raw: bytes) -> tuple[int, str]:
    """``custody.head`` content as (seq, hash); ValueError when it is not what triage writes."""
    raw = raw.strip()
    if not raw:
        return 0, GENESIS
    try:
        head = strict_json(raw.decode("utf-8"))
        seq, digest = head["seq"], head["hash"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"custody.head is not a head record ({exc})") from None
    if (
        not isinstance(seq, int)
        or isinstance(seq, bool)
        or seq < 0
        or not isinstance(digest, str)
        or len(digest) != 64
        or any(c not in "0123456789abcdef" for c in digest)
    ):
        raise ValueError("custody.head is not a head record (seq or hash malformed)")
    return seq, digest


@dataclass(frozen=True)
class ChainProblem:
    """One place where the custody chain does not hold."""

    line: int
    problem: str


def is_readonly_error(exc: OSError) -> bool:
    return exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)


class CustodyLog:
    """Append-only, hash-chained custody log of a case."""

    def __init__(self, case_dir: Path, actor: str | None = None) -> None:
        self.path = case_dir / "custody.jsonl"
        self.head_path = case_dir / "custody.head"
        self.lock_path = case_dir / ".lock"
        self.actor = actor or os.environ.get("TRIAGE_EXAMINER") or getpass.getuser()
        self._fd: int | None = None
        self._head_fd: int | None = None
        self._lock_fd: int | None = None
        self._held = 0  # depth of hold()/locked() in this process
        self._checked = False  # tail and head checked (and repaired) since this process took the lock
        self._clean_size: int | None = None  # log size after our last whole append
        self._last: tuple[int, str] | None = None  # (seq, hash) of our last whole append: the head while unchanged
        self._workstation = socket.gethostname()
        self.repairs: list[dict[str, Any]] = []
        # called before each append: a writer that batches its own events (Case) writes them first, in order
        self.before_append: Callable[[], None] | None = None

    # -- locking -------------------------------------------------------------------------------
    def _lock(self, wait: float | None) -> None:
        if self._lock_fd is None:
            try:
                self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                if exc.errno == errno.ENAMETOOLONG:
                    raise UsageError(f"{self.lock_path.parent}: path too long ({exc.strerror})") from None
                raise
        if wait is None:
            wait = float(os.environ.get(LOCK_WAIT_ENV, LOCK_WAIT_DEFAULT))
        deadline, told = time.monotonic() + wait, False
        while True:
            try:
                fcntl.lockf(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                holder = self.holder()
                if time.monotonic() >= deadline:
                    raise UsageError(
                        f"{self.path.parent} is in use by another triage command ({holder}); "
                        f"waited {wait:g} s (set {LOCK_WAIT_ENV} to wait longer)"
                    ) from None
                if not told:
                    log.warning("%s is in use by another triage command (%s); waiting", self.path.parent, holder)
                    told = True
                time.sleep(0.1)
        with contextlib.suppress(OSError):  # who holds it, for the next writer's message
            info = json.dumps({"pid": os.getpid(), "since": utcnow(), "command": " ".join(sys.argv[:3])})
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, info.encode(), 0)

    def _unlock(self) -> None:
        assert self._lock_fd is not None
        with contextlib.suppress(OSError):
            os.ftruncate(self._lock_fd, 0)
        fcntl.lockf(self._lock_fd, fcntl.LOCK_UN)
        self._checked = False  # another process may write before we hold it again

    def holder(self) -> str:
        """Who holds the case lock, as the holder wrote it (best effort)."""
        try:
            info = load_json(self.lock_path.read_text() or "{}")
            return f"pid {info.get('pid')}, {info.get('command')!s}, since {info.get('since')}"
        except (OSError, ValueError, AttributeError):
            return "unknown process"

    @contextlib.contextmanager
    def hold(self, wait: float | None = None) -> Iterator[None]:
        """Hold the case's writer lock for a whole command: a second writer waits (``$TRIAGE_LOCK_WAIT`` s).

        A POSIX record lock: released by the kernel when the holder dies (kill -9), and not inherited
        by worker processes forked meanwhile, so an orphaned worker never blocks the resumed command.
        """
        if self._held == 0:
            self._lock(wait)
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if self._held == 0:
                self._unlock()

    @contextlib.contextmanager
    def hold_for_parent(self) -> Iterator[None]:
        """Write as the helper of the parent process, which holds the case lock and waits for this one.

        POSIX record locks belong to a process: a forked helper (``triage run``'s report process) cannot share
        its parent's, and taking its own would wait for it. No lock is taken here; the log's tail and head are
        checked before the first append as after taking the lock. The helper must die with its parent.
        """
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1

    def others_wrote(self) -> None:
        """Another process (a helper under our lock) may have appended: check the tail and head again first."""
        self._checked = False
        self._last = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise writers (several triage processes may work on one case); reentrant."""
        with self.hold():
            yield

    @property
    def is_held(self) -> bool:
        return self._held > 0

    # -- the head and the tail -----------------------------------------------------------------
    def _head(self) -> tuple[int, str]:
        try:
            raw = self.head_path.read_bytes()
        except FileNotFoundError:
            return 0, GENESIS
        return parse_head(raw)

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest event as ``custody.head`` records it; IntegrityError when unreadable."""
        try:
            return self._head()
        except ValueError as exc:
            raise IntegrityError(f"{self.head_path}: {exc}; run 'triage verify'") from None
        except OSError as exc:
            raise IntegrityError(f"{self.head_path}: cannot read ({exc.strerror})") from None

    def partial_tail(self) -> int:
        """Bytes after the last newline of the log (an append cut short), 0 when it ends cleanly."""
        try:
            with open(self.path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                if size == 0:
                    return 0
                pos, block = size, 1 << 16
                while pos > 0:
                    start = max(0, pos - block)
                    fh.seek(start)
                    chunk = fh.read(pos - start)
                    nl = chunk.rfind(b"\n")
                    if nl >= 0:
                        return size - (start + nl + 1)
                    pos = start
                return size
        except FileNotFoundError:
            return 0

    def _caught_up(self, seq: int, prev: str) -> tuple[int, str] | None:
        """(seq, hash) of the last event when whole, valid events follow the head's event (a batch written, the
        head not yet updated); None when the head is current or what follows it does not chain from it."""
        try:
            with open(self.path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                start = max(0, size - HEAD_CATCHUP_WINDOW)
                fh.seek(start)
                lines = fh.read().splitlines()
        except FileNotFoundError:
            return None
        if start:
            lines = lines[1:]  # the window may start mid-line
        found: tuple[int, str] | None = None
        after: dict[str, Any] | None = None
        actions: set[object] = set()
        for raw in reversed(lines):  # back from the end to the head's event: each must link to the one after it
            try:
                ev = event_json(raw)
            except ValueError:
                return None
            if not isinstance(ev, dict) or ev.get("hash") != event_hash(ev) or not isinstance(ev.get("seq"), int):
                return None
            if after is not None and (after.get("prev") != ev["hash"] or after.get("seq") != ev["seq"] + 1):
                return None
            if ev["seq"] == seq and ev["hash"] == prev:
                return found
            if found is None:
                found = (ev["seq"], str(ev["hash"]))
            actions.add(ev.get("action"))
            lag = found[0] - seq
            if lag > 1 and (lag > MAX_BATCH or len(actions) > 1 or not self.head_path.exists()):
                return None  # more than one batch of one action behind (or no head at all): verify's to report
            if ev["seq"] == seq + 1 and ev.get("prev") == prev:
                return found
            after = ev
        return None

    def _repair(self) -> None:
        """Under the lock, before the first append: cut a partial last line, catch up a lagging head."""
        self._last = None  # the head is read again after any repair
        notes: list[dict[str, Any]] = []
        tail = self.partial_tail()
        if tail:
            size = self.path.stat().st_size
            with open(self.path, "rb") as fh:
                fh.seek(size - tail)
                fragment = fh.read(tail)
            os.truncate(self.path, size - tail)
            notes.append(
                {
                    "file": "custody.jsonl",
                    "what": "partial last line removed (an append was cut short, e.g. by a full disk)",
                    "removed_bytes": tail,
                    "removed_sha256": sha256_bytes(fragment),
                }
            )
        try:
            seq, prev = self._head()
        except ValueError:  # a damaged head is verify's to report, never to paper over
            seq, prev = -1, ""
        caught = self._caught_up(seq, prev) if seq >= 0 else None
        if caught is not None:
            # the lines were written, the head update was not (killed in between): catch the head up
            self._write_head(*caught)
            notes.append({"file": "custody.head", "what": "head caught up with the last whole event", "seq": caught[0]})
        self._checked = True
        for note in notes:
            log.warning("custody log repaired: %s", note["what"])
            self.repairs.append(note)
            self.append("repair", **note)

    def prepare(self) -> list[dict[str, Any]]:
        """Repair what an interrupted append left (recorded as ``repair`` events) before reading the log."""
        with self.locked():
            if not self._checked and not self._unchanged():
                self._repair()
            self._checked = True
        return self.repairs

    def _write_head(self, seq: int, digest: str) -> None:
        if self._head_fd is None:
            self._head_fd = os.open(self.head_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        os.pwrite(self._head_fd, json.dumps({"seq": seq, "hash": digest}).ljust(HEAD_WIDTH).encode(), 0)

    # -- appending -------------------------------------------------------------------------------
    def append(self, action: str, **details: Any) -> dict[str, Any]:
        """Append one event; returns it with its hash.

        The log and head stay open between events (one collection writes thousands); the head is
        rewritten in place with a fixed width. :meth:`sync` makes both durable. A write error leaves
        at most a partial last line, which the next append (in any process) cuts off first. Events a
        writer holds back (:attr:`before_append`, the case's batched manifest rows) go first.
        """
        if self.before_append is not None:
            self.before_append()
        return self.append_many(action, [details])[0]

    def append_many(self, action: str, many: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append one event per details mapping, chained one by one as :meth:`append` does, in one write.

        A batch costs one write and one head update instead of one each per event (a collection of thousands
        of small files); a kill between the write and the head update leaves the head behind by the batch,
        which the next writer catches up after checking each event's hash and link (:meth:`_repair`).
        """
        if len(many) > MAX_BATCH:  # a head left behind by more than one batch is not caught up
            chunks = (many[i : i + MAX_BATCH] for i in range(0, len(many), MAX_BATCH))
            return [ev for chunk in chunks for ev in self.append_many(action, chunk)]
        with self.locked():
            if not self._checked and not self._unchanged():
                self._repair()
            self._checked = True
            # our own last event while the log is as we left it; else re-read under the lock (another
            # process may have appended): a collection appends thousands, each re-read cost a file read
            last = self._last if self._last is not None and self._unchanged() else None
            seq, prev = last if last is not None else self.head()
            tool = f"{TOOL_NAME} {__version__}"
            now = utcnow()  # the events of one batch are written in one write: one time for all
            events: list[dict[str, Any]] = []
            lines: list[bytes] = []
            frame = _frame(action, self.actor, tool, now, self._workstation) if action in COMPACT_ACTIONS else None
            for details in many:
                seq += 1
                event = {
                    "seq": seq,
                    "ts": now,
                    "action": action,
                    "actor": self.actor,
                    "workstation": self._workstation,
                    "tool": tool,
                    "details": details,
                    "prev": prev,
                }
                inner = canonical_fast(details) if frame is not None else None
                if inner is not None and frame is not None:
                    # the canonical body put together around the details' canonical bytes (the same bytes as
                    # canonical(event), tested); the line is that body with the hash in its sorted place
                    head, tail = frame
                    after = b'","seq":%d%s' % (seq, tail)
                    digest = hashlib.sha256(b'%s%s,"prev":"%s%s' % (head, inner, prev.encode(), after)).hexdigest()
                    lines.append(
                        b'%s%s,"hash":"%s","prev":"%s%s\n' % (head, inner, digest.encode(), prev.encode(), after)
                    )
                    prev = event["hash"] = digest
                else:
                    prev = event["hash"] = sha256_bytes(canonical(event))  # the body: no "hash" key yet
                    # json's own line; a lone surrogate becomes its JSON escape
                    lines.append((_LINE.encode(event) + "\n").encode("utf-8", "backslashreplace"))
                events.append(event)
            data = b"".join(lines)
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            if os.environ.get(KILL_ENV):  # tests only; read once per batch, not twice per event
                for _ in events:
                    kill_point("append")
            try:
                view = memoryview(data)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
            except OSError:
                self._checked = False  # a partial line may be left: the next append cuts it first
                self._clean_size = None
                self._last = None
                raise
            if os.environ.get(KILL_ENV):
                for _ in events:
                    kill_point("head")
            self._last = None
            self._write_head(seq, prev)
            self._clean_size = os.fstat(self._fd).st_size
            self._last = (seq, prev)
            return events

    def _unchanged(self) -> bool:
        """The log is as our last whole append left it (no other writer since): nothing to check."""
        if self._clean_size is None:
            return False
        try:
            return os.stat(self.path).st_size == self._clean_size
        except OSError:
            return False

    def sync(self) -> None:
        """Make the log and its head durable (end of each command)."""
        for fd in (self._fd, self._head_fd):
            if fd is not None:
                os.fsync(fd)

    def close(self) -> None:
        try:
            self.sync()
        finally:
            for attr in ("_fd", "_head_fd", "_lock_fd"):
                fd = getattr(self, attr)
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                    setattr(self, attr, None)
            self._held = 0

    def abandon(self) -> None:
        """Release descriptors without syncing (an object dropped without close())."""
        for attr in ("_fd", "_head_fd", "_lock_fd"):
            fd = getattr(self, attr, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, attr, None)

    # -- reading and checking ----------------------------------------------------------------------
    def events(self) -> Iterator[dict[str, Any]]:
        """Every whole, parseable event in order (damaged lines are verify's to report)."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            yield from _events_of(_text_lines(fh))

    def verify(self, anchor: str | None = None) -> tuple[int, list[ChainProblem]]:
        """Walk the chain. Returns (events checked, problems).

        ``anchor``: a head hash kept outside the case; the chain must contain that event.
        """
        count, problems, _ = self.walk(anchor)
        return count, problems

    def walk(self, anchor: str | None = None) -> tuple[int, list[ChainProblem], dict[str, Any]]:
        """Walk the chain: (events checked, problems, facts: last seq/hash, anchor position, partial tail)."""
        problems: list[ChainProblem] = []
        prev, expect_seq, count = GENESIS, 1, 0
        facts: dict[str, Any] = {"last_seq": 0, "last_hash": GENESIS, "partial_tail": 0}
        anchor_seq: int | None = None
        if not self.path.exists():
            return 0, [ChainProblem(0, "custody.jsonl is missing")], facts
        with open(self.path, encoding="utf-8", errors="surrogateescape") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.endswith("\n"):
                    facts["partial_tail"] = len(line.encode("utf-8", "surrogateescape"))
                    why = "partial last line (an append was cut short); the next writing command repairs it"
                    problems.append(ChainProblem(lineno, why))
                    break
                if not line.strip():
                    problems.append(ChainProblem(lineno, "blank line in custody log"))
                    continue
                try:
                    event = strict_json(line)
                    if not isinstance(event, dict):
                        raise ValueError("not a JSON object")
                except ValueError as exc:
                    problems.append(ChainProblem(lineno, f"line is not valid JSON ({str(exc)[:80]})"))
                    prev = "?"
                    expect_seq += 1
                    continue
                count += 1
                if event.get("hash") != event_hash(event):
                    problems.append(ChainProblem(lineno, "event was edited: its hash does not match its content"))
                if prev != "?" and event.get("prev") != prev:
                    problems.append(ChainProblem(lineno, "chain broken: 'prev' is not the hash of the event before"))
                if event.get("seq") != expect_seq:
                    problems.append(
                        ChainProblem(lineno, f"sequence number {event.get('seq')} where {expect_seq} was expected")
                    )
                prev = str(event.get("hash"))
                seq = event.get("seq")
                expect_seq = (seq if isinstance(seq, int) else expect_seq) + 1
                if anchor is not None and prev == anchor:
                    anchor_seq = expect_seq - 1
        facts["last_seq"], facts["last_hash"] = expect_seq - 1, prev
        try:
            head_seq, head_hash = self._head()
        except ValueError as exc:
            problems.append(ChainProblem(count, str(exc)))
        except OSError as exc:
            problems.append(ChainProblem(count, f"custody.head cannot be read ({exc.strerror})"))
        else:
            if (head_seq, head_hash) != (expect_seq - 1, prev):
                problems.append(
                    ChainProblem(
                        count,
                        f"custody.head names event {head_seq} ({head_hash[:12]}) but the log ends at event "
                        f"{expect_seq - 1} ({prev[:12]}): events were removed or appended outside triage",
                    )
                )
        if anchor is not None:
            if anchor_seq is None:
                problems.append(
                    ChainProblem(
                        count,
                        f"the head kept elsewhere ({anchor[:12]}) is not in the chain: events were removed "
                        "or the log was rewritten",
                    )
                )
            else:
                facts["anchor_seq"] = anchor_seq
                facts["events_after_anchor"] = expect_seq - 1 - anchor_seq
        return count, problems, facts
