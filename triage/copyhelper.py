"""Copies of small files made by helper processes while this one writes the rows of the copies before them.

Profiled on 6,000 small files, a collect spent most of its time in the kernel creating, writing and closing the
copies and the rest in Python writing their rows and custody events, one after the other on one core. A thread
could not overlap them (its many short system calls wait for the lock the Python side holds); a process can. The
helpers (:mod:`triage._copy_child`, standard library only; two on a machine of two cores or more, taking request
frames in turn, so the copies and their hashes use both cores while this process writes rows) are asked for copies
as the walk finds the files, ahead of the one whose row is being written; :meth:`Case.store` then takes the answer
of its own copy instead of copying, and writes its row as before.
What a copy is does not change: created exclusively and read-only under the name ``store`` would give it, hashed
while copied, the source's times set on its descriptor; a failure is the row ``store`` would write. Answers are
matched by ticket, whichever helper made them. Copies asked for and never taken (the plan stopped) are removed when
the helpers close; a kill leaves copies without rows, which ``recover`` removes on the next collect, as it always
did.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import select
import subprocess
import sys
from typing import Any

from triage.errors import CollectionFailed

_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_copy_child.py")
BATCH = 32  # requests sent in one frame (one write, one answer frame)
PIPE_SIZE = 1 << 20  # the most an unprivileged process may ask for (/proc/sys/fs/pipe-max-size)
HELPER_ENV = "TRIAGE_COPY_HELPER"  # "0": every copy in this process, as before
HELPERS_ENV = "TRIAGE_COPY_HELPERS"  # how many helper processes


def enabled() -> bool:
    """Whether collections may use the helper process (``TRIAGE_COPY_HELPER=0`` turns it off)."""
    # POSIX only: select() on pipes, PR_SET_PDEATHSIG; an interpreter to start is needed too (not embedded)
    return os.environ.get(HELPER_ENV, "1") != "0" and os.name == "posix" and bool(sys.executable)


class CopyError(Exception):
    """A copy the helper could not make, with what :meth:`Case.store` needs to write its failure row."""

    def __init__(self, case_side: bool, type_name: str, text: str, strerror: str | None) -> None:
        super().__init__(text)
        self.case_side, self.type_name, self.text, self.strerror = case_side, type_name, text, strerror


class _Child:
    """One helper process and the bytes on their way to and from it."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.out = self.proc.stdin.fileno()
        self.inp = self.proc.stdout.fileno()
        os.set_blocking(self.out, False)  # a request frame is written while answers are read: never a deadlock
        with contextlib.suppress(OSError, AttributeError, ImportError):  # Linux only; 64 KiB pipes work, in step
            import fcntl

            for fd in (self.out, self.inp):  # room for many frames each way: neither side waits on a full pipe
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self.inbuf = bytearray()
        self.outbuf = bytearray()

    def end(self) -> None:
        """Close its request pipe: it ends at once (every answer is in, or it is gone)."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]

    def reap(self) -> None:
        self.proc.wait()
        with contextlib.suppress(OSError):
            self.proc.stdout.close()  # type: ignore[union-attr]


def _default_helpers() -> int:
    # the command's own process is the critical path of a small-file collection and needs a core of its own: on 2
    # cores a second helper made it ~6% slower (tmpfs, 10 alternating rounds); with more cores, two
    return max(1, min(2, (os.cpu_count() or 1) - 1))


def helpers() -> int:
    """How many helper processes a collection starts (``TRIAGE_COPY_HELPERS``; default: one per core beside the
    command's own, at least 1, at most 2)."""
    try:
        return max(1, int(os.environ.get(HELPERS_ENV) or _default_helpers()))
    except ValueError:  # not a number: the default
        return _default_helpers()


class CopyHelper:
    """Helper processes (``count``, default :func:`helpers`); :meth:`ask` queues a copy, :meth:`take` returns its
    answer. Request frames go to the processes in turn; answers are matched to their copies by ticket."""

    def __init__(self, count: int | None = None) -> None:
        self._children: list[_Child] = []
        try:
            for _ in range(count or helpers()):
                self._children.append(_Child())
        except OSError:
            if not self._children:
                raise
        self.proc = self._children[0].proc  # the first process (tests stop it)
        self._by_in = {c.inp: c for c in self._children}
        self._by_out = {c.out: c for c in self._children}
        self._turn = 0  # the child the next frame goes to
        self._queued: list[tuple[Any, ...]] = []  # asked, not yet sent
        self._asked: dict[int, tuple[str, str]] = {}  # ticket -> (source, folder), until taken
        self._tickets: dict[str, int] = {}  # source path -> ticket, asked and not yet taken
        self.keys: dict[str, str] = {}  # source path -> the caller's key of its copy, asked and not yet taken
        self._answers: dict[int, tuple[Any, ...]] = {}  # ticket -> answer, received and not yet taken
        self._next = 0
        self._received = 0

    def __contains__(self, source: str) -> bool:
        return source in self._tickets

    def ask(
        self,
        source: str,
        folder: str,
        name: str,
        atime: float | None,
        mtime: float | None,
        size: int | None,
        algos: tuple[str, ...],
        *,
        key: str = "",
    ) -> None:
        """Queue the copy of ``source`` into ``folder`` (which exists) as ``name``, hashed with ``algos``;
        ``key``: the caller's name for the copy (:attr:`keys` maps each source asked for and not taken to it)."""
        ticket = self._next
        self._next += 1
        self._tickets[source] = ticket
        self.keys[source] = key
        self._asked[ticket] = (source, folder)
        self._queued.append((ticket, source, folder, name, atime, mtime, size, algos))
        if len(self._queued) >= BATCH:
            self._send()
            self._pump(0)  # what the pipes take now, and the answers already in: the caller goes on at once

    def folder(self, source: str) -> str:
        """The folder the copy of ``source`` (asked for, not yet taken) goes to."""
        return self._asked[self._tickets[source]][1]

    def take(self, source: str) -> tuple[str, str, int, dict[str, str]]:
        """(folder, name created, size, hex digests) of the copy of ``source``; :class:`CopyError` if it failed."""
        ticket = self._tickets.pop(source)
        self.keys.pop(source, None)
        if self._queued and self._queued[0][0] <= ticket:
            self._send()
        while ticket not in self._answers:
            self._pump(None)
        _ticket, name, size, digests, error = self._answers.pop(ticket)
        _source, folder = self._asked.pop(ticket)
        if error is not None:
            raise CopyError(*error)
        return folder, name, size, digests

    def _send(self) -> None:
        """Frame the queued requests for the next child; written as its pipe takes them (:meth:`_pump`)."""
        body = marshal.dumps(self._queued)
        self._queued = []
        child = self._children[self._turn]
        self._turn = (self._turn + 1) % len(self._children)
        child.outbuf += len(body).to_bytes(4, "little") + body

    def _pump(self, timeout: float | None) -> None:
        """Write what is pending and read what has come, waiting up to ``timeout`` seconds (None: until either
        can be done; a dead helper ends the wait)."""
        readable, writable, _ = select.select(
            list(self._by_in), [c.out for c in self._children if c.outbuf], [], timeout
        )
        for fd in writable:
            child = self._by_out[fd]
            try:
                n = os.write(fd, child.outbuf)
            except BlockingIOError:
                n = 0
            except BrokenPipeError:
                self._dead(child)
            del child.outbuf[:n]
        for fd in readable:
            child = self._by_in[fd]
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                self._dead(child)
            child.inbuf += chunk
            self._parse(child.inbuf)

    def _parse(self, inbuf: bytearray) -> None:
        while len(inbuf) >= 4:
            n = int.from_bytes(inbuf[:4], "little")
            if len(inbuf) < 4 + n:
                return
            answers = marshal.loads(bytes(inbuf[4 : 4 + n]))
            del inbuf[: 4 + n]
            for answer in answers:
                self._answers[answer[0]] = answer
            self._received += len(answers)

    @staticmethod
    def _dead(child: _Child) -> None:
        code = child.proc.poll()
        raise CollectionFailed(
            f"the copy helper process ended unexpectedly (exit {code}); rerun the same collect to resume "
            "(copies without rows are removed first)"
        )

    def close(self) -> list[str]:
        """Stop the helpers; copies they made that were never taken are removed. Returns their paths."""
        removed: list[str] = []
        with contextlib.suppress(CollectionFailed, OSError):
            if self._queued:
                self._send()
            while self._received < self._next:
                self._pump(None)
        for ticket, (_ticket, name, _size, _digests, error) in self._answers.items():
            folder = self._asked[ticket][1]
            if error is None:
                with contextlib.suppress(OSError):
                    os.unlink(f"{folder}/{name}")
                    removed.append(f"{folder}/{name}")
        self._answers.clear()
        self._asked.clear()
        self._tickets.clear()
        self.keys.clear()
        for child in self._children:  # all told first, then waited for: they end side by side
            child.end()
        for child in self._children:
            child.reap()
        return removed
