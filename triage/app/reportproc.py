"""A report process forked when ``triage run`` starts, so the report's imports cost no time on the run's path.

The report is pandas-backed: importing pandas, pyarrow and the report modules takes longer than collecting
and analyzing a small source. :meth:`ReportProcess.start` forks the command's process before it has any
thread; the child imports the report's modules while the parent collects and analyzes on the other core,
then waits. When the case is ready, :meth:`ReportProcess.report` hands it the case folder and the report
request; the child builds the report under the writer lock the parent holds and waits on (POSIX record locks
belong to a process, so the child writes as the parent's helper, see
:meth:`triage.custody.CustodyLog.hold_for_parent`) and sends back the summary, or the exception, which the
parent raises as its own: exit codes and ``--json`` output are those of an in-process report.

Falling back: no fork (not Linux, threads already running, ``TRIAGE_REPORT_PROCESS=0``), or a child that died
before it answered (killed, out of memory) costs only the time saved: the parent builds the report itself, as
before, after a warning when the child died. The child dies with its parent (``PR_SET_PDEATHSIG``), so a kill
of the command never leaves a helper writing into a case nobody holds; a kill of the child leaves what a kill
of a report leaves (a ``report_begin`` without its end, which the fallback's report then follows).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import pickle
import signal
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from triage.app.report import ReportRequest, ReportSummary
    from triage.case import Case

log = logging.getLogger(__name__)

ENV = "TRIAGE_REPORT_PROCESS"  # "0": never fork a report process (the report is built in the command's process)
# what a report loads, imported by the child ahead of time (each best effort: a missing one loads when used)
WARM_MODULES = (
    "triage.app.report",  # pandas, pyarrow and triage.report.build
    "pyarrow.parquet",
    "triage.report.directive",
    "triage.report.ledger",
    "triage.report.hosts",
    "triage.report.exports",
    "triage.report.html",
    "triage.report.provenance",
    "triage.report.cisa",
    "jinja2",
    "pyarrow.dataset",  # what reading the results imports on first use
)
_LEN = struct.Struct("<Q")
_PR_SET_PDEATHSIG = 1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(_LEN.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size > 0:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_all(fd: int) -> bytes | None:
    """One length-prefixed message, or None when the writer closed or died before a whole one.

    Read by its length, never to the end of the pipe: a process forked meanwhile (a pool worker, the report's
    own helpers) may hold a copy of the writing end.
    """
    head = _read_exactly(fd, _LEN.size)
    return None if head is None else _read_exactly(fd, _LEN.unpack(head)[0])


def _die_with_parent(parent: int) -> None:
    """Be killed when the parent dies (Linux), so no helper outlives the command holding the case lock."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os._exit(0)


def _warm_up() -> None:
    """Import the report's modules and do the first-use work of every report that depends on no case (each
    step best effort: whatever fails here is done, or fails, in the report as before)."""
    for name in WARM_MODULES:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    import platform

    from triage.registry import read_index
    from triage.report import build, html, provenance

    steps: tuple[Callable[[], object], ...] = (
        build.arrow_schema,  # derived from an empty pandas frame once per process
        read_index,  # the analyzers' declared host facts, read once per process
        html.template,  # the compiled template (jinja checks the file's time again when it is used)
        platform.platform,  # runs `uname -p` once per process
        provenance.library_versions,
    )
    for step in steps:
        with contextlib.suppress(Exception):
            step()


def _child(requests: int, replies: int, parent: int) -> None:
    """The forked process: warm up, wait for the case, report it, answer; never returns."""
    code = 0
    try:
        _die_with_parent(parent)
        # no cycle collection while importing (each pass walks every object the imports made so far: ~10% of
        # their time); what they made is then frozen out of later passes, the report's own garbage is collected
        gc.disable()
        _warm_up()
        gc.freeze()
        gc.enable()
        warm_cpu, idle_since = time.process_time(), time.perf_counter()
        message = _read_all(requests)
        if message is None:  # the parent needs no report (a fleet, an error before it): nothing to do
            os._exit(0)
        case_path, actor, request, setup = pickle.loads(message)
        if setup is not None:
            setup()
        log.debug(
            "report process: imports took %.2f CPU s, then it waited %.2f s for the case",
            warm_cpu,
            time.perf_counter() - idle_since,
        )
        started = time.process_time()
        try:
            answer: tuple[str, Any, str] = ("ok", _report(case_path, actor, request), "")
            log.debug("report process: report built in %.2f CPU s", time.process_time() - started)
        except BaseException as exc:
            answer = ("error", exc, traceback.format_exc())
        try:
            data = pickle.dumps(answer)
        except Exception:  # an exception that does not pickle: its type and text, as an internal error
            data = pickle.dumps(("error", RuntimeError(f"{type(answer[1]).__name__}: {answer[1]}"), answer[2]))
        _write_all(replies, data)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _report(case_path: str, actor: str, request: ReportRequest) -> ReportSummary:
    """Report the case under the parent's lock, as the parent would."""
    from triage.app.report import report_into
    from triage.case import Case

    case = Case.open(case_path)
    case.custody.actor = actor  # the parent's examiner, whatever case.json says
    with case.custody.hold_for_parent():
        summary = report_into(case, request)
    # written, not synced: the parent's close syncs the case's file system once, as after an in-process report
    # (a second syncfs here would wait for every other writer's data too)
    case.flush_rows()
    case.custody.abandon()
    return summary


class ReportProcess:
    """A forked process that has imported the report's modules and builds one report when asked."""

    def __init__(self, pid: int, requests: int, replies: int) -> None:
        self.pid = pid
        self._requests: int | None = requests
        self._replies: int | None = replies
        # a picklable callable the child runs before the report: set up after the fork (the command line's
        # logging), it is sent with the request
        self.setup: Callable[[], None] | None = None
        # what this process does while the child builds the report (the command line loads its renderer),
        # best effort: an error in it is ignored
        self.meanwhile: Callable[[], None] | None = None

    @classmethod
    def start(cls) -> ReportProcess | None:
        """Fork the report process; None (build the report in this process) when forking is not safe or off.

        The caller flushes what it buffered for stdout and stderr first (the child would hold a copy of it).
        """
        if os.environ.get(ENV, "1") == "0" or not sys.platform.startswith("linux") or not hasattr(os, "fork"):
            return None
        if threading.active_count() != 1:  # fork only a single-threaded process: a lock held by a thread stays held
            return None
        requests, to_child = os.pipe()
        from_child, replies = os.pipe()
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (requests, to_child, from_child, replies):
                os.close(fd)
            log.debug("no report process (%s): the report is built in this process", exc)
            return None
        if pid == 0:  # pragma: no cover  (the child; coverage cannot follow it)
            os.close(to_child)
            os.close(from_child)
            _child(requests, replies, parent)
        os.close(requests)
        os.close(replies)
        return cls(pid, to_child, from_child)

    def report(self, case: Case, request: ReportRequest) -> ReportSummary:
        """The report of ``case`` (open, its writer lock held by this process), built by the child if it lives."""
        log.debug("case ready for the report process after %.2f CPU s here", time.process_time())
        asked = time.perf_counter()
        answer = self._ask((os.fspath(case.path), case.custody.actor, request, self.setup))
        log.debug("report process answered in %.2f s", time.perf_counter() - asked)
        if answer is None:
            # the child died before it answered; it may have written part of a report (as a killed report does)
            case.custody.others_wrote()
            from triage.app.report import report_into

            return report_into(case, request)
        case.custody.others_wrote()
        kind, value, child_tb = answer
        if kind == "ok":
            return value
        if child_tb and isinstance(value, BaseException) and not isinstance(value, KeyboardInterrupt):
            value.add_note(f"in the report process:\n{child_tb.rstrip()}")
        raise value

    def _ask(self, message: tuple[Any, ...]) -> tuple[str, Any, str] | None:
        assert self._requests is not None and self._replies is not None, "one report per process"
        try:
            with contextlib.suppress(BrokenPipeError):  # the child is gone: its status says why
                _write_all(self._requests, pickle.dumps(message))
            os.close(self._requests)
            self._requests = None
            if self.meanwhile is not None:
                with contextlib.suppress(Exception):
                    self.meanwhile()
            data = _read_all(self._replies)
        except BaseException:  # Ctrl-C (or worse) here: the child stops too, before the lock is released
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)
            self._reap(kill=False)
            raise
        status = self._reap(kill=False)
        if data is not None:
            with contextlib.suppress(Exception):
                return pickle.loads(data)
        log.warning(
            "the report process %s before it answered; building the report in this process", _status_text(status)
        )
        return None

    def discard(self) -> None:
        """No report wanted (a fleet, an error before the report): end the child, which has written nothing."""
        if self._requests is not None or self._replies is not None:
            self._reap(kill=True)

    def _reap(self, kill: bool) -> int:
        for attr in ("_requests", "_replies"):
            fd = getattr(self, attr)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, attr, None)
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        while True:
            try:
                return os.waitpid(self.pid, 0)[1]
            except InterruptedError:
                continue
            except ChildProcessError:
                return 0


def _status_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(sig).name}"
        return f"was killed by signal {sig}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"
