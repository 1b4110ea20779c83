"""The chain-of-custody log: append-only JSON lines, each event holding the hash of the one before.

Editing, removing or reordering a line breaks the chain at that line; cutting events off the end is
caught by ``custody.head``, which records the sequence number and hash of the newest event.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from triage import TOOL_NAME, __version__
from triage.hashing import sha256_bytes

GENESIS = "0" * 64
HEAD_WIDTH = 128  # the head is rewritten in place, padded to a fixed width


def utcnow() -> str:
    """The current UTC time as ISO 8601 with microseconds and a Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(obj: Any) -> bytes:
    """The one byte form that event hashes are computed over."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return text.encode("utf-8", "surrogatepass")  # undecodable source names travel as lone surrogates


def event_hash(event: dict[str, Any]) -> str:
    body = {k: v for k, v in event.items() if k != "hash"}
    return sha256_bytes(canonical(body))


@dataclass(frozen=True)
class ChainProblem:
    """One place where the custody chain does not hold."""

    line: int
    problem: str


class CustodyLog:
    """Append-only, hash-chained custody log of a case."""

    def __init__(self, case_dir: Path, actor: str | None = None) -> None:
        self.path = case_dir / "custody.jsonl"
        self.head_path = case_dir / "custody.head"
        self.lock_path = case_dir / ".lock"
        self.actor = actor or os.environ.get("TRIAGE_EXAMINER") or getpass.getuser()
        self._fh: TextIO | None = None
        self._head_fd: int | None = None
        self._lock_fd: int | None = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise writers (several triage processes may work on one case)."""
        if self._lock_fd is None:
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _head(self) -> tuple[int, str]:
        try:
            raw = self.head_path.read_bytes().strip()
        except FileNotFoundError:
            return 0, GENESIS
        if not raw:
            return 0, GENESIS
        head = json.loads(raw)
        return int(head["seq"]), str(head["hash"])

    def append(self, action: str, **details: Any) -> dict[str, Any]:
        """Append one event; returns it with its hash.

        The log and head stay open between events (one collection writes thousands); the head is
        rewritten in place with a fixed width. :meth:`sync` makes both durable.
        """
        with self.locked():
            seq, prev = self._head()  # re-read under the lock: another process may have appended
            event = {
                "seq": seq + 1,
                "ts": utcnow(),
                "action": action,
                "actor": self.actor,
                "workstation": socket.gethostname(),
                "tool": f"{TOOL_NAME} {__version__}",
                "details": details,
                "prev": prev,
            }
            event["hash"] = event_hash(event)
            line = json.dumps(event, ensure_ascii=False, default=str, sort_keys=True)
            if self._fh is None:
                self._fh = open(self.path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
            self._fh.write(line + "\n")
            self._fh.flush()
            if self._head_fd is None:
                self._head_fd = os.open(self.head_path, os.O_RDWR | os.O_CREAT, 0o644)
            head = json.dumps({"seq": event["seq"], "hash": event["hash"]}).ljust(HEAD_WIDTH).encode()
            os.pwrite(self._head_fd, head, 0)
            return event

    def sync(self) -> None:
        """Make the log and its head durable (end of each command)."""
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        if self._head_fd is not None:
            os.fsync(self._head_fd)

    def close(self) -> None:
        self.sync()
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        for attr in ("_head_fd", "_lock_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                os.close(fd)
                setattr(self, attr, None)

    def events(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)

    def verify(self) -> tuple[int, list[ChainProblem]]:
        """Walk the chain. Returns (events checked, problems)."""
        problems: list[ChainProblem] = []
        prev, expect_seq, count = GENESIS, 1, 0
        if not self.path.exists():
            return 0, [ChainProblem(0, "custody.jsonl is missing")]
        with open(self.path, encoding="utf-8", errors="surrogateescape") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    problems.append(ChainProblem(lineno, "blank line in custody log"))
                    continue
                try:
                    event = json.loads(line)
                except json.JSONDecodeError as exc:
                    problems.append(ChainProblem(lineno, f"line is not valid JSON ({exc.msg})"))
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
                expect_seq = int(event.get("seq", expect_seq)) + 1
        head_seq, head_hash = self._head()
        if (head_seq, head_hash) != (expect_seq - 1, prev):
            problems.append(
                ChainProblem(
                    count,
                    f"custody.head names event {head_seq} ({head_hash[:12]}) but the log ends at event "
                    f"{expect_seq - 1} ({prev[:12]}): events were removed or appended outside triage",
                )
            )
        return count, problems
