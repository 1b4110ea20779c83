"""Where analysis units run: a local process pool (the default) or a dask.distributed cluster.

The runner plans (analyzer x evidence) units and hands them to an :class:`Executor` as
:class:`triage.tasks.UnitTask` records. Every unit runs :func:`triage.unitrun.run_unit`, which writes its result
files into the case *before* it returns, so an executor only moves small run records around: a
lost worker or a failed cluster never loses a finished result, and a rerun resumes.

``LocalPoolExecutor(jobs)``
    a pool of forked worker processes (one even when ``jobs <= 1``). A unit whose worker dies is tried once more
    on a fresh worker, then recorded as an ``error``. It also runs batch units (several small artifacts in one
    task): the worker marks each artifact as it starts in a few bytes of memory it shares with this process, and
    appends each finished row to a spool file, so when it dies (or passes a bound) the finished rows are written
    as their own batch, the artifact in flight becomes a single unit and the rest run on as a new batch. Nothing
    per artifact crosses the pipe: a batch sends one message when it starts and one with its record.

    With ``in_process_small`` (what the command line opens), a handful of small units runs in this process
    instead: at most ``IN_PROCESS_UNITS`` units of built-in analyzers that declare ``in_process`` (pure Python or
    Rust parsers; not YARA, registry hives, memory images or plugins), holding
    at most ``IN_PROCESS_BYTES`` of evidence in all, no batch unit, on the main thread. Starting workers and
    importing the analyzers again in each costs more than such a run. The bounds are the same: each unit's time
    limit is a timer (SIGALRM) that ends the unit with an ``error`` record, its memory bound the same
    RLIMIT_DATA a worker sets (MemoryError: an ``error`` record, and the units left go to the pool). What
    differs is a crash: a unit that kills its process (a native parser's segfault) ends the command instead of
    only its unit; the rerun resumes, with that unit then run in a worker (a rerun has no record of it but
    the crash; use ``--jobs`` with a dask cluster or the API's pool for full isolation of every unit). Ctrl-C
    stops at once as with the pool: the unit in flight is recorded as an error and runs again on the rerun.

``DaskExecutor(address)`` / ``DaskExecutor(local_workers=N)``
    a ``distributed.Client`` on a running scheduler (``tcp://HOST:PORT``) or on a
    ``LocalCluster`` of N single-threaded worker processes. Workers must see the case folder at the
    same path as the client (shared filesystem, NFS/SMB mounted at the same mount point); a
    preflight task on every worker checks this before anything is submitted. Dask reschedules the
    units of a lost worker; a unit that was running on more than
    ``distributed.scheduler.allowed-failures`` workers that died ends as ``KilledWorker`` and is
    recorded as an ``error`` unit, like the local pool does. At most one unit per worker thread is
    in flight, so a dying worker counts against its own unit only. A watchdog replaces local
    workers whose nanny gave up and ends the run (units not finished become errors, a rerun
    resumes) when no worker has been seen for ``no_workers_timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import mmap
import multiprocessing
import os
import pickle
import re
import signal
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from triage.custody import load_json
from triage.errors import UsageError
from triage.tasks import ProgressSink, UnitSpec, UnitTask, set_worker, worker_id
from triage.unitrun import (
    _died_record,
    batch_paths,
    drop_instances,
    preload_writer,
    record_rows,
    result_paths,
    run_unit,
    write_batch,
    write_deferred,
    write_single,
    writes_own_findings,
)
from triage.unitrun import warm as warm_analyzers

log = logging.getLogger(__name__)

WORKER_DIED = "the worker process died while running this unit"
# what every dask run uses unless told otherwise: a unit may take down 2 workers and is retried,
# the third death marks it failed (dask's own default is 3)
ALLOWED_FAILURES = 2


PROGRESS_INTERVAL = 0.2  # seconds between progress reports a pool worker sends for one unit
OnResult = Callable[[UnitTask, dict[str, Any]], None]
OnProgress = Callable[[UnitTask, float, float, str], None]
OnFailed = Callable[[UnitTask, str], None]
Finished = Callable[[UnitTask], "dict[str, Any] | None"]


class UnitKilled(Exception):
    """A unit's child process was killed (time or memory limit) or died; the message says which."""


def _recorded(spec: UnitSpec) -> dict[str, Any] | None:
    """The unit's (or batch's) record if this run already wrote it (dask recomputing a unit this run finished)."""
    case_dir = Path(spec.case_dir)
    path = (
        batch_paths(case_dir, spec.analyzer, spec.batch_id)[1]
        if spec.batch is not None
        else result_paths(case_dir, spec.analyzer, spec.evidence_id)[1]
    )
    try:
        rec = load_json(path.read_text())
    except (OSError, ValueError):
        return None
    return dict(rec) if isinstance(rec, dict) and spec.run_id and rec.get("run_id") == spec.run_id else None


def _run_unit_once(spec: UnitSpec) -> dict[str, Any]:
    """``run_unit``, unless this run already wrote the unit's record.

    Dask recomputes a finished task whose result was still held by a worker that died; the unit's
    files are on disk already, so hand back the record the first attempt wrote instead.
    """
    return _recorded(spec) or run_unit(spec)


def _run_unit_bounded(spec: UnitSpec, limits: tuple[float, int] = (0.0, 0), time_limit: float = -1.0) -> dict[str, Any]:
    """On a dask worker: the unit in a child process under the run's bounds (as in the local pool).

    A daemonic worker cannot start children: there the unit runs in the worker process, as before.
    A child killed past a bound, or dying twice, gives the unit's ``error`` record (as in the local pool).
    """
    if multiprocessing.current_process().daemon:
        return _run_unit_once(spec)
    rec = _recorded(spec)
    if rec is not None:
        return rec
    task = UnitTask(key="unit", spec=spec, time_limit=time_limit)
    got: list[dict[str, Any]] = []

    def failed(t: UnitTask, why: str) -> None:  # the unit's error records, as the local pool writes them
        from triage.case import ManifestRow
        from triage.registry import load

        cls = load(spec.analyzer, spec.plugins)
        for row in t.spec.artifacts:
            got.append(_died_record(Path(spec.case_dir), cls, ManifestRow(**row), why, spec.run_id, worker_id()))

    pool = LocalPoolExecutor(1, UnitLimits(time_s=limits[0], memory_bytes=limits[1]), label=worker_id())
    pool.run([task], on_result=lambda t, r: got.append(r), on_failed=failed, finished=lambda t: None)
    if not got:
        raise UnitKilled(WORKER_DIED)
    if spec.batch is None and len(got) == 1:
        return got[0]
    # a batch (split when an artifact killed the child): every row written, under one answer for the client
    return {"analyzer": spec.analyzer, "batch_id": spec.batch_id, "units": [u for r in got for u in record_rows(r)]}


class Executor:
    """Runs unit tasks and reports each one exactly once through ``on_result`` or ``on_failed``."""

    kind = "base"
    batches = False  # whether the runner may hand it batch units (several small artifacts in one task)

    def preflight(self, cases: Sequence[tuple[str, str]], plugins: Sequence[str] = ()) -> None:
        """Check the workers can read every ``(case_dir, case.json sha256)``; raise UsageError if not.

        Workers also import the analyzers (and ``plugins``) here, so the first units do not pay for it.
        """

    def run(
        self,
        tasks: Sequence[UnitTask],
        *,
        on_result: OnResult,
        on_failed: OnFailed,
        finished: Finished,
        on_progress: OnProgress | None = None,
    ) -> None:
        """Run ``tasks``; ``finished(task)`` returns the unit's record if it already finished on disk.

        ``on_progress(task, done, total, text)`` gets the progress a running unit reports, where the executor
        can carry it (the local pool does; dask units report only their end).
        """
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Executor kind, scheduler address and worker count, for the run record and custody log."""
        return {"kind": self.kind, "address": "", "workers": 0}

    def warm(self, analyzers: Sequence[str], plugins: Sequence[str], options: dict[str, dict[str, Any]]) -> bool:
        """Start the workers now and have each prepare these analyzers (module, rules, the findings writer) while
        the caller still plans; True when it did. Executors that cannot (dask) do nothing."""
        return False

    def close(self) -> None:
        """Release the pool or cluster connection (idempotent)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# -- per-unit bounds ------------------------------------------------------------------------------------
DEFAULT_UNIT_TIME = 3600.0  # seconds; an analyzer class may declare a longer unit_time_limit (memory images)
DEFAULT_UNIT_MEMORY = 8 << 30  # bytes a unit may add to its worker; 2 workers x 8 GiB fit a 24 GiB machine
MAX_JOBS_PER_CPU = 4
TASKS_PER_WORKER = 500  # then the worker is replaced (caches and leaks of native parsers stay bounded)
WORKER_RETRIES = 1  # a unit whose worker dies (signal, exit) is tried once more on a fresh worker
PIPELINE = 2  # units queued at a worker: it starts the next without waiting for this process
_POLL = 0.2  # seconds between checks of the running units' time and memory
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str | int | float) -> int:
    """Bytes from ``8GiB``, ``512M``, ``1.5g``, ``1000000`` (binary units); UsageError if malformed."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise UsageError(f"a memory limit cannot be negative: {text}")
        return int(text)
    m = _SIZE.match(str(text))
    if not m:
        raise UsageError(f"{text!r} is not a size like 8GiB, 512M or a number of bytes")
    scale = 1024 ** " kmgt".index((m.group(2) or " ").lower())
    return int(float(m.group(1)) * scale)


@dataclass(frozen=True)
class UnitLimits:
    """The bounds every unit runs under: wall time (seconds) and memory it may add (bytes); 0 means none."""

    time_s: float = DEFAULT_UNIT_TIME
    memory_bytes: int = DEFAULT_UNIT_MEMORY
    time_from_user: bool = False  # an explicit limit applies to every analyzer, a default may be raised by one

    def time_for(self, declared: float | None) -> float:
        """The time limit of one analyzer's units (its declared ``unit_time_limit`` raises the default)."""
        if self.time_from_user or not declared or not self.time_s:
            return self.time_s
        return max(self.time_s, float(declared))

    def as_dict(self) -> dict[str, Any]:
        return {"unit_time_limit_s": self.time_s, "unit_memory_limit_bytes": self.memory_bytes}


def config_file() -> Path:
    """The user's config file, ``$XDG_CONFIG_HOME/triage/config.toml`` (it need not exist)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "triage" / "config.toml"


def resolve_limits(time_s: float | None = None, memory: str | int | None = None) -> UnitLimits:
    """Limits from the command line, else the config file (``unit_time_limit``, ``unit_memory_limit``), else
    the defaults."""
    import tomllib

    cfg: dict[str, Any] = {}
    path = config_file()
    try:
        with open(path, "rb") as fh:
            cfg = tomllib.load(fh)
    except FileNotFoundError:
        pass
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the config file: {exc}") from None
    user_time = time_s if time_s is not None else cfg.get("unit_time_limit")
    mem = memory if memory is not None else cfg.get("unit_memory_limit")
    try:
        t = float(user_time) if user_time is not None else DEFAULT_UNIT_TIME
    except (TypeError, ValueError):
        raise UsageError(f"unit time limit {user_time!r} is not a number of seconds") from None
    if t < 0:
        raise UsageError(f"unit time limit {t:g} cannot be negative (0 means none)")
    return UnitLimits(
        time_s=t,
        memory_bytes=parse_size(mem) if mem is not None else DEFAULT_UNIT_MEMORY,
        time_from_user=user_time is not None,
    )


def clamp_jobs(jobs: int) -> int:
    """``jobs`` within 1 .. cpu count x 4 (with a warning when it was more)."""
    top = (os.cpu_count() or 1) * MAX_JOBS_PER_CPU
    jobs = max(1, int(jobs))
    if jobs > top:
        log.warning("--jobs %d is more than %d (%d per CPU); using %d", jobs, top, MAX_JOBS_PER_CPU, top)
        return top
    return jobs


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent ends (Linux); exit now if it already has."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the pool's own cleanup is all there is
        pass
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _anon_rss(pid: int) -> int | None:
    """Resident memory of a process that is not file-backed (resident - shared pages), in bytes."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            fields = fh.read().split()
        return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _progress_sender(conn: Any, key: str) -> ProgressSink:
    """A unit's progress sink in a pool worker: reports go to the parent, at most a few per second."""
    last = [0.0]

    def send(done: float, total: float, text: str) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_INTERVAL and not (total and done >= total):
            return
        last[0] = now
        conn.send(("progress", key, float(done), float(total), str(text)[:200]))

    return send


class _Cell:
    """What a pool worker shares with its parent about the batch it runs, without a message per artifact.

    ``mem``: a few bytes of shared memory, the artifact running now and since when, written by the worker as each
    artifact starts and ends (no system call) and read by the parent when it checks the bounds or the worker died;
    the start time is written before the index, each an aligned 8-byte store, so an index read is never newer than
    its start time. ``fd``: an anonymous file (memfd, else an unlinked temporary file) the worker appends each
    finished row to and the parent reads back only when the worker died. Both are made before the fork and have no
    name, so nothing is left in the case or anywhere else when the whole command is killed."""

    def __init__(self) -> None:
        self.mem = mmap.mmap(-1, 16)  # anonymous and shared: the forked worker sees the same page
        memfd = getattr(os, "memfd_create", None)
        if memfd is not None:
            self.fd = memfd("triage-rows", getattr(os, "MFD_CLOEXEC", 0))
        else:  # pragma: no cover - Linux has memfd_create
            import tempfile

            self.fd, name = tempfile.mkstemp(prefix="triage-rows-")
            os.unlink(name)
        self.pos = 0  # the worker's write position in ``fd``

    def begin(self, index: int) -> None:
        struct.pack_into("<d", self.mem, 8, time.monotonic())
        struct.pack_into("<q", self.mem, 0, index + 1)

    def end(self) -> None:
        struct.pack_into("<q", self.mem, 0, 0)

    def read(self) -> tuple[int, float]:
        """(index of the running artifact or -1 between artifacts, its start on the monotonic clock)."""
        index = struct.unpack_from("<q", self.mem, 0)[0] - 1
        return index, struct.unpack_from("<d", self.mem, 8)[0]

    def clear(self) -> None:
        """No rows and no artifact: the parent, before it sends a batch to the (idle) worker; the worker too."""
        os.ftruncate(self.fd, 0)
        self.pos = 0
        self.end()

    def append(self, row: tuple[dict[str, Any], list[Any]]) -> None:
        """One finished row, length-prefixed pickle, in one ``pwrite``: a worker that dies right after has lost
        none of the rows it finished (the file outlives the process; the parent holds it open)."""
        data = pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(len(data).to_bytes(8, "little") + data)
        while view:
            n = os.pwrite(self.fd, view, self.pos)
            self.pos += n
            view = view[n:]

    def rows(self) -> list[tuple[dict[str, Any], list[Any]]]:
        """The whole rows written since the last :meth:`clear` (a row cut short by a death is not one)."""
        try:
            data = os.pread(self.fd, os.fstat(self.fd).st_size, 0)
        except OSError:
            return []
        out, pos = [], 0
        while pos + 8 <= len(data):
            size = int.from_bytes(data[pos : pos + 8], "little")
            if pos + 8 + size > len(data):
                break
            try:
                out.append(pickle.loads(data[pos + 8 : pos + 8 + size]))
            except Exception:  # a damaged row ends what can be trusted
                break
            pos += 8 + size
        return out

    def __del__(self) -> None:  # the slot is dropped when its worker is gone: its descriptor goes with it
        with contextlib.suppress(OSError, AttributeError):
            os.close(self.fd)


class _Spool:
    """A worker's hooks for one batch: each artifact marked in the cell as it starts, each finished row appended."""

    def __init__(self, spec: UnitSpec, cell: _Cell, on_findings: Callable[[], None] | None = None) -> None:
        self.index = {str(ev["artifact_id"]): i for i, ev in enumerate(spec.batch or [])}
        self.cell = cell
        self.on_findings = on_findings  # told once, at the batch's first artifact with findings
        cell.clear()

    def item(self, evidence_id: str) -> None:
        self.cell.begin(self.index.get(evidence_id, -1))

    def row(self, rec: dict[str, Any], found: list[Any]) -> None:
        self.cell.append((rec, found))
        self.cell.end()
        if found and self.on_findings is not None:
            self.on_findings()
            self.on_findings = None


# a worker's note to the pool's parent: a batch of it has findings, which the parent will write (write_deferred)
_FINDINGS = "findings"
_TOLD: list[bool] = []  # in a worker: the parent was told once (it prepares its writer on the first note)


def _tell_findings(conn: Any, key: str) -> Callable[[], None] | None:
    """The hook that tells the parent, once per worker, that findings will come back to be written."""
    if _TOLD:
        return None

    def tell() -> None:
        if not _TOLD:
            _TOLD.append(True)
            with contextlib.suppress(OSError):
                conn.send((_FINDINGS, key))

    return tell


_WARM = "warm"  # the first element of the message that starts a worker's preparation (unit keys start "triage-")


def _warm_findings_writer() -> None:
    """After the analyzers are warmed: when this worker will write its findings, load the parquet writer now
    (an empty findings file, thrown away), while the parent still plans."""
    if writes_own_findings():
        from triage.results import findings_parquet

        findings_parquet([])


def _worker_main(conn: Any, parent_pid: int, memory: int, label: str = "", cell: _Cell | None = None) -> None:
    """A pool worker: run units sent over ``conn`` until told to stop, one at a time (``cell``: shared with the
    parent, the artifact of a batch running now)."""
    die_with_parent(parent_pid)
    set_worker(label=label)
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # its own group: a timeout kills the worker and anything it started
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    set_worker(memory=memory)

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        if msg[0] == _WARM:  # before the first unit: load what the units will need (LocalPoolExecutor.warm)
            warm_analyzers(*msg[1:])
            with contextlib.suppress(Exception):  # a unit that needs it meets the same failure on its own row
                _warm_findings_writer()
            continue
        key, spec = msg
        conn.send(("start", key))  # from here on, a death or a limit is this unit's
        spool = None
        try:
            # a batch: the parent can tell which artifact runs (a death or a limit is that one's) and read the
            # finished rows back, so a death costs only the artifact in flight
            progress = _progress_sender(conn, key)
            if spec.batch is not None and cell is not None:
                # a batch with findings comes back unwritten unless this worker has pyarrow (run_unit decides): the
                # parent writes it, told at the first finding so it prepares its writer meanwhile
                tell = None if writes_own_findings() else _tell_findings(conn, key)
                spool = _Spool(spec, cell, tell)
                rec = run_unit(spec, on_progress=progress, on_item=spool.item, on_row=spool.row, write_findings=False)
            else:
                rec = run_unit(spec, on_progress=progress)
        except BaseException as exc:  # run_unit records analyzer errors; this is its own failure
            conn.send(("failed", key, f"{type(exc).__name__}: {exc}", True))
            return
        finally:
            if spool is not None:
                spool.cell.end()
        retire = any("MemoryError" in str(r.get("message", "")) for r in record_rows(rec))
        conn.send(("done", key, rec, retire))
        if retire:  # its heap may be fragmented or half-freed: the pool starts a fresh worker
            return


class _Duplex:
    """Two one-way pipes used as one connection (plain pipes: no socket is opened, not even a socketpair)."""

    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader, self.writer = reader, writer

    def send(self, obj: Any) -> None:
        self.writer.send(obj)

    def recv(self) -> Any:
        return self.reader.recv()

    def poll(self, timeout: float = 0.0) -> bool:
        return bool(self.reader.poll(timeout))

    def fileno(self) -> int:
        return int(self.reader.fileno())

    def close(self) -> None:
        self.reader.close()
        self.writer.close()

    @classmethod
    def pair(cls, ctx: Any) -> tuple[_Duplex, _Duplex]:
        down_r, down_w = ctx.Pipe(duplex=False)
        up_r, up_w = ctx.Pipe(duplex=False)
        for end in (down_w, up_w):
            _widen(end.fileno())
        return cls(up_r, down_w), cls(down_r, up_w)


_PIPE_BYTES = 1 << 20


def _widen(fd: int) -> None:
    """A pipe that holds a whole batch message (a 256-artifact batch pickles to about 125 KiB): with the default
    64 KiB the parent's send waited for the worker to read it, and the other workers' results waited with it."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setsize is not None:
        with contextlib.suppress(OSError):  # over the system's pipe-max-size: the default size, as before
            fcntl.fcntl(fd, setsize, _PIPE_BYTES)


@dataclass
class _Slot:
    """One pool worker, the units sent to it (the first is running once started) and its bounds' state."""

    proc: Any
    conn: Any
    cell: _Cell = field(default_factory=_Cell)
    queue: deque[UnitTask] = field(default_factory=deque)
    running: bool = False  # the first unit of the queue has started
    started: float = 0.0
    baseline: int = 0  # anonymous memory when the unit started
    time_limit: float = 0.0
    sent: int = 0
    item: int = -1  # a batch: the index of the artifact whose bounds are being watched (-1: none yet)


def _signal_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "?"
        return f"killed by signal {-code} ({name})"
    return f"exited with status {code}"


IN_PROCESS_UNITS = 8  # a run of at most this many units ...
IN_PROCESS_BYTES = 4 << 20  # ... and this much evidence runs in the command's own process (in_process_small)


class UnitTimeLimit(BaseException):
    """Raised in a unit run in-process when it passes its time limit (BaseException: analyzer code that catches
    Exception does not swallow it)."""


def _small_run(tasks: Sequence[UnitTask]) -> bool:
    """Whether ``tasks`` are a handful of small units of built-in analyzers that may run in-process."""
    if not tasks or len(tasks) > IN_PROCESS_UNITS or any(t.spec.batch is not None or t.spec.plugins for t in tasks):
        return False
    from triage.registry import read_index

    index = read_index() or {}
    size = 0
    for t in tasks:
        decl = index.get(t.analyzer)
        if decl is None or not decl.in_process:  # a plugin, or an analyzer that drives a C engine
            return False
        size += sum(int(r.get("size") or 0) for r in (t.spec.members or [t.spec.evidence]))
    return size <= IN_PROCESS_BYTES


class LocalPoolExecutor(Executor):
    """Every unit in a child process, whatever ``jobs`` is: a persistent pool of forked workers.

    Each worker runs one unit at a time under the pool's :class:`UnitLimits`: past its time limit the
    worker (and everything it started) is killed; its memory is bounded in the worker (RLIMIT_DATA,
    MemoryError) and watched from here. A worker that dies (segfault, OOM kill, ``os._exit``) costs only
    its unit, which is tried once more on a fresh worker and then recorded as an error. Ctrl-C kills
    the workers at once and leaves the queued units for the next run. Workers die with this process.
    """

    kind = "local"
    batches = True  # a batch's worker death is split here: only the artifact in flight pays for it

    def __init__(
        self, jobs: int = 1, limits: UnitLimits | None = None, *, label: str = "", in_process_small: bool = False
    ) -> None:
        self.jobs = clamp_jobs(jobs)
        self.limits = limits or UnitLimits()
        self.label = label  # the worker name run records give (a dask worker's, for its units' children)
        self.workers_started = 0
        self.in_process_small = in_process_small  # a handful of small units runs here (see the module doc)
        self.units_in_process = 0
        self._warm: list[_Slot] = []  # workers started by warm() that no run has taken yet

    def warm(self, analyzers: Sequence[str], plugins: Sequence[str], options: dict[str, dict[str, Any]]) -> bool:
        """Fork the pool's workers now; each imports ``analyzers``, loads their rules (from the compiled-rule
        cache, or the objects this process already holds, inherited by the fork) and the findings writer, while
        this process recovers and plans. The next :meth:`run` takes them instead of starting its own."""
        if self._warm or not analyzers:
            return False
        for _ in range(self.jobs):
            slot = self._start()
            try:
                slot.conn.send((_WARM, tuple(analyzers), tuple(plugins), dict(options)))
            except OSError:  # it died at once: run() starts another
                self._kill(slot)
                continue
            self._warm.append(slot)
        return bool(self._warm)

    def close(self) -> None:
        """Stop the warmed workers no run took (idempotent)."""
        while self._warm:
            self._stop(self._warm.pop())

    def describe(self) -> dict[str, Any]:
        here = {"units_in_process": self.units_in_process} if self.units_in_process else {}
        return {
            "kind": self.kind,
            "address": "",
            "workers": self.jobs,
            "isolated": not self.units_in_process,  # False: some units ran in the command's own process
            **here,
            **self.limits.as_dict(),
        }

    # -- a handful of small units, in this process -------------------------------------------------------
    def _run_here(
        self, tasks: Sequence[UnitTask], on_result: OnResult, on_failed: OnFailed, on_progress: OnProgress | None
    ) -> list[UnitTask]:
        """Run ``tasks`` one by one in this process under the pool's bounds; return those left for the pool
        (after a MemoryError the heap may be fragmented: the rest run in workers)."""
        from triage import tasks as unit_tasks

        pending = deque(tasks)
        interrupted: list[bool] = []

        def on_alarm(_signum: int, _frame: Any) -> None:
            raise UnitTimeLimit(f"exceeded the {limit:g} s time limit")

        def on_int(_signum: int, _frame: Any) -> None:
            interrupted.append(True)  # run_unit records the unit in flight as an error; the run stops after it
            raise KeyboardInterrupt

        old_alarm = signal.signal(signal.SIGALRM, on_alarm)
        old_int = signal.signal(signal.SIGINT, on_int)
        saved_memory = unit_tasks._UNIT_MEMORY
        unit_tasks.set_worker(memory=self.limits.memory_bytes)  # run_unit's MemoryBound, as in a worker
        try:
            while pending:
                t = pending.popleft()
                limit = t.time_limit if t.time_limit >= 0 else self.limits.time_s
                progress = None
                if on_progress is not None:
                    progress = lambda d, n, text, t=t: on_progress(t, d, n, text)  # noqa: E731
                self.units_in_process += 1
                try:
                    if limit:
                        signal.setitimer(signal.ITIMER_REAL, limit)
                    rec = run_unit(t.spec, on_progress=progress)
                except UnitTimeLimit as exc:  # outside the analyzer's own code (writing its files)
                    self._clean(t, os.getpid())
                    on_failed(t, str(exc))
                    continue
                except KeyboardInterrupt:
                    self._clean(t, os.getpid())
                    raise
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                if interrupted:
                    raise KeyboardInterrupt
                on_result(t, rec)
                if any("MemoryError" in str(r.get("message", "")) for r in record_rows(rec)):
                    break
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_alarm)
            signal.signal(signal.SIGINT, old_int)
            unit_tasks.set_worker(memory=saved_memory)
        return list(pending)

    # -- workers ---------------------------------------------------------------------------------------
    def _start(self) -> _Slot:
        ctx = multiprocessing.get_context("fork")
        ours, theirs = _Duplex.pair(ctx)
        cell = _Cell()
        # not a daemon: a unit may start children of its own (the memory analyzer isolates plugins)
        proc = ctx.Process(
            target=_worker_main,
            args=(theirs, os.getpid(), self.limits.memory_bytes, self.label, cell),
            name="triage-worker",
        )
        proc.start()
        theirs.close()
        if proc.pid is not None:  # always set after start()
            with contextlib.suppress(OSError):
                os.setpgid(proc.pid, proc.pid)  # also here: no race with a kill right after the start
        self.workers_started += 1
        return _Slot(proc, ours, cell)

    @staticmethod
    def _kill(slot: _Slot) -> None:
        pid = slot.proc.pid
        if pid and slot.proc.exitcode is None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        slot.proc.join(5)
        slot.conn.close()

    @staticmethod
    def _stop(slot: _Slot) -> None:
        with contextlib.suppress(OSError, ValueError):
            slot.conn.send(None)
        slot.proc.join(2)
        if slot.proc.exitcode is None:
            LocalPoolExecutor._kill(slot)
        else:
            slot.conn.close()

    @staticmethod
    def _clean(task: UnitTask, pid: int) -> None:
        """Remove the temporary files a killed worker left for its unit (whole results are never partial)."""
        folder = Path(task.case_dir) / "results" / task.analyzer
        for tmp in folder.glob(f".{task.evidence_id}.*.tmp-{pid}"):
            with contextlib.suppress(OSError):
                tmp.unlink()

    # -- the loop --------------------------------------------------------------------------------------
    def run(
        self,
        tasks: Sequence[UnitTask],
        *,
        on_result: OnResult,
        on_failed: OnFailed,
        finished: Finished,
        on_progress: OnProgress | None = None,
    ) -> None:
        from multiprocessing.connection import wait

        if self.in_process_small and threading.current_thread() is threading.main_thread() and _small_run(tasks):
            tasks = self._run_here(tasks, on_result, on_failed, on_progress)
        pending = deque(tasks)
        tries: dict[str, int] = {}
        slots: list[_Slot] = []
        want = min(self.jobs, len(pending))

        def feed(slot: _Slot) -> None:
            """Keep PIPELINE units queued at the worker, so it never waits for this process between units."""
            while pending and len(slot.queue) < PIPELINE and slot.sent < TASKS_PER_WORKER:
                # a big message (a batch, a host group) goes only to an idle worker, and nothing queues behind a
                # batch: sent to a busy worker it can fill the pipe while the worker fills ours with its rows,
                # and each would wait for the other
                head, last = pending[0].spec, slot.queue[-1].spec if slot.queue else None
                if last is not None and (head.batch is not None or head.members is not None or last.batch is not None):
                    return
                t = pending.popleft()
                if tries.get(t.key):  # a retry: the dead worker may have written the unit's files first
                    rec = finished(t)
                    if rec is not None:
                        on_result(t, rec)
                        continue
                if t.spec.batch is not None:  # the worker is idle (see above): its rows start empty
                    slot.cell.clear()
                try:
                    slot.conn.send((t.key, t.spec))
                except OSError:  # the worker is gone; the unit waits for the next one
                    pending.appendleft(t)
                    return
                slot.queue.append(t)
                slot.sent += 1

        def refill() -> None:
            while pending and len(slots) < want:
                slot = self._warm.pop(0) if self._warm else self._start()
                slots.append(slot)
                feed(slot)

        def retire(slot: _Slot, kill: bool) -> None:
            """Take the worker out; units queued but not started go back to the front of the queue."""
            slots.remove(slot)
            for t in reversed(list(slot.queue)[1 if slot.running else 0 :]):
                pending.appendleft(t)
            if kill:
                self._kill(slot)
            else:
                self._stop(slot)

        def lost(slot: _Slot, why: str, retry: bool) -> None:
            """The worker died, or is killed here past a bound: record or retry its running unit."""
            t = slot.queue[0] if slot.running else None
            retire(slot, kill=True)
            if t is None:  # it died between units: nothing to blame, the queued units run elsewhere
                log.warning("a worker ended between units (%s)", why)
                return
            item, rows = "", []
            if t.spec.batch is not None:  # which artifact ran, and the rows finished before it
                index = slot.cell.read()[0]
                item = str(t.spec.batch[index]["artifact_id"]) if 0 <= index < len(t.spec.batch) else ""
                by_id = {str(r["artifact_id"]) for r in t.spec.batch}
                rows = [r for r in slot.cell.rows() if str(r[0].get("evidence_id")) in by_id]
            self._clean(t, slot.proc.pid)
            if t.spec.batch is not None and (item or rows):
                whole = _recorded(t.spec)  # it died after writing the whole batch
                if whole is not None:
                    on_result(t, whole)
                else:
                    with contextlib.suppress(OSError):  # a findings file whose record was never written
                        batch_paths(Path(t.case_dir), t.analyzer, t.spec.batch_id)[0].unlink()
                    split(t, item, rows, why, retry)
                return
            n = tries[t.key] = tries.get(t.key, 0) + 1
            if retry and n <= WORKER_RETRIES:
                log.warning("%s on %s: %s; trying once more", t.analyzer, t.evidence_id, why)
                pending.appendleft(t)
                return
            rec = finished(t) if retry else None
            if rec is not None:
                on_result(t, rec)
            else:
                on_failed(t, why + (f" ({n} times)" if n > 1 else ""))

        def split(t: UnitTask, item: str, rows: list[tuple[dict[str, Any], list[Any]]], why: str, retry: bool) -> None:
            """A batch's worker died (or was killed past a bound) in artifact ``item``: the rows it finished are
            written here as a batch of their own, ``item`` becomes a single unit (tried once more after a death,
            an error past a bound), the artifacts not started run on as a new batch."""
            by_id = {str(r["artifact_id"]): r for r in t.spec.artifacts}
            done = [str(rec["evidence_id"]) for rec, _ in rows]
            if item in done:  # it died after spooling the row, before marking the artifact over
                item = ""
            rest = [r for eid, r in by_id.items() if eid not in done and eid != item]
            if rest:
                pending.appendleft(t.part(rest, "r"))
            if item in by_id:
                culprit = t.part([by_id[item]], "c")
                n = tries[culprit.key] = 1
                if retry and n <= WORKER_RETRIES:
                    log.warning("%s on %s: %s; trying once more", t.analyzer, item, why)
                    pending.appendleft(culprit)
                else:
                    on_failed(culprit, why)
            if rows:
                part = t.part([by_id[eid] for eid in done], "d")
                if part.spec.batch is None:  # one finished row: a single unit's files
                    rec = write_single(Path(t.case_dir), dict(rows[0][0]), list(rows[0][1]))
                else:
                    rec = write_batch(part.spec, rows)
                on_result(part, rec)

        def receive(slot: _Slot) -> None:
            """Handle what the worker said; notice when it is gone."""
            while slot in slots:
                try:
                    if not slot.conn.poll():
                        break
                    msg = slot.conn.recv()
                except (EOFError, OSError):
                    break
                if msg[0] == "progress":  # the running unit's own report (Unit.progress)
                    if on_progress is not None and slot.queue:
                        on_progress(slot.queue[0], msg[2], msg[3], msg[4])
                    continue
                if msg[0] == _FINDINGS:  # its batch will come back with findings: the writer is imported meanwhile
                    preload_writer()
                    continue
                if msg[0] == "start":
                    head = slot.queue[0]
                    slot.running, slot.started = True, time.monotonic()
                    slot.time_limit = head.time_limit if head.time_limit >= 0 else self.limits.time_s
                    slot.baseline = _anon_rss(slot.proc.pid) or 0
                    slot.item = -1
                    continue
                t = slot.queue.popleft()
                slot.running, slot.item = False, -1
                if msg[0] == "done":
                    try:
                        rec = write_deferred(t.spec, msg[2])  # a batch with findings: its files are written here
                    except Exception as exc:  # as a worker's failure to write: this batch's rows only
                        log.warning("%s: writing batch %s failed: %s", t.analyzer, t.spec.batch_id, exc)
                        on_failed(t, f"the batch's results could not be written: {type(exc).__name__}: {exc}")
                    else:
                        on_result(t, rec)
                else:
                    on_failed(t, f"the unit failed in its worker: {msg[2]}")
                if msg[3]:  # the worker retires after this unit
                    retire(slot, kill=False)
            if slot not in slots:
                return
            if slot.proc.exitcode is not None or not slot.proc.is_alive():
                slot.proc.join(1)
                lost(slot, f"{WORKER_DIED}: {_signal_text(slot.proc.exitcode)}", retry=True)
                return
            feed(slot)
            if not slot.queue:  # nothing more for it (no work left, or it ran its share): stop it
                retire(slot, kill=False)

        def check_bounds(slot: _Slot) -> None:
            if not slot.running:
                return
            if slot.queue[0].spec.batch is not None:  # the bounds are per artifact: the one the worker marked
                index, started = slot.cell.read()
                if index < 0:  # between artifacts
                    return
                if index != slot.item:  # a new artifact since the last check: its memory is measured from here
                    slot.item, slot.started = index, started
                    slot.baseline = _anon_rss(slot.proc.pid) or 0
            if slot.time_limit and time.monotonic() - slot.started > slot.time_limit:
                lost(slot, f"exceeded the {slot.time_limit:g} s time limit", retry=False)
                return
            mem = self.limits.memory_bytes
            rss = _anon_rss(slot.proc.pid) if mem else None
            # the worker's own bound (RLIMIT_DATA) acts first; this catches what it cannot see
            if rss is not None and rss - slot.baseline > mem + (64 << 20):
                lost(slot, f"exceeded memory limit ({mem / (1 << 20):,.0f} MiB per unit)", retry=False)

        try:
            refill()
            while slots:
                busy = {s.conn: s for s in slots}
                ready = set(wait([*busy, *(s.proc.sentinel for s in busy.values())], timeout=_POLL))
                for conn, slot in busy.items():
                    if slot not in slots:
                        continue
                    if conn in ready or slot.proc.sentinel in ready:
                        receive(slot)
                    else:
                        check_bounds(slot)
                refill()
        finally:  # normal end, Ctrl-C or an error in a callback: no worker outlives the run
            for slot in slots:
                if slot.running:
                    self._kill(slot)
                    self._clean(slot.queue[0], slot.proc.pid)
                elif slot.queue:
                    self._kill(slot)
                else:
                    self._stop(slot)


_ADDRESS = re.compile(r"^(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def parse_scheduler(address: str) -> str:
    """Check a ``tcp://HOST:PORT`` (or ``tls://``) scheduler address; UsageError if malformed."""
    m = _ADDRESS.match(address.strip())
    if not m or not 0 < int(m.group(3)) < 65536:
        raise UsageError(f"--scheduler: {address!r} is not a scheduler address like tcp://HOST:PORT (port 1-65535)")
    return address.strip()


def parse_cluster(spec: str) -> int:
    """Parse ``local:N`` (N >= 1 worker processes); UsageError otherwise."""
    m = re.fullmatch(r"local:(\d+)", spec.strip())
    if not m or int(m.group(1)) < 1:
        raise UsageError(f"--cluster: {spec!r} is not local:N with N >= 1 worker processes (e.g. local:4)")
    return int(m.group(1))


def check_worker(cases: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Runs on each dask worker: can it read every case folder, with the same case.json bytes?"""
    problems = []
    for case_dir, sha in cases:
        p = Path(case_dir) / "case.json"
        try:
            got = hashlib.sha256(p.read_bytes()).hexdigest()
        except OSError as exc:
            problems.append(f"cannot read {p}: {exc.strerror or exc}")
            continue
        if got != sha:
            problems.append(f"{p} differs from the client's copy (sha256 {got[:12]}... != {sha[:12]}...)")
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "daemon": multiprocessing.current_process().daemon,
        "problems": problems,
    }


def warm_worker(plugins: Sequence[str]) -> int:
    """Import the analyzers (and plugins) in a worker, once, rather than inside its first unit."""
    from triage.registry import discover

    return len(discover(plugins))


def _allowed_failures(dask_scheduler: Any) -> int:
    return int(dask_scheduler.allowed_failures)


class DaskExecutor(Executor):
    """Units on a dask.distributed cluster: an external scheduler, or a LocalCluster of N processes.

    ``address``: ``tcp://HOST:PORT`` of a running ``dask scheduler``. ``local_workers``: start a
    LocalCluster with that many single-threaded worker processes on loopback instead. At most as
    many units are in flight as the cluster has worker threads, so a worker that dies takes only
    the unit it was running with it (dask counts a death against every unit queued on that worker).
    """

    kind = "dask"

    def __init__(
        self,
        address: str | None = None,
        *,
        local_workers: int | None = None,
        allowed_failures: int = ALLOWED_FAILURES,
        timeout: float = 30.0,
        no_workers_timeout: float = 300.0,
    ) -> None:
        if (address is None) == (local_workers is None):
            raise UsageError("DaskExecutor needs exactly one of a scheduler address or local_workers")
        import dask
        import distributed

        self._cluster: Any = None
        self._client: Any = None
        self._config: Any = None
        self.timeout = timeout
        self.no_workers_timeout = no_workers_timeout
        self.local_workers = local_workers
        self.allowed_failures: int | None = allowed_failures
        self._workers: dict[str, dict[str, Any]] = {}
        self.limits = UnitLimits()  # open_executor sets the command's bounds
        self._threads = (0.0, 1)  # (when measured, worker threads)
        # the client's own chatter (connection notices, restarts) only from WARNING up
        logging.getLogger("distributed").setLevel(logging.WARNING)
        if address is not None:
            address = parse_scheduler(address)
            try:
                self._client = distributed.Client(address, timeout=timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise UsageError(f"cannot reach the dask scheduler at {address}: {exc}") from None
            # an external scheduler keeps its own setting; record what it is
            try:
                self.allowed_failures = int(self._client.run_on_scheduler(_allowed_failures))
            except Exception:  # an older or locked-down scheduler: unknown
                self.allowed_failures = None
        else:
            n = int(local_workers or 0)
            if n < 1:
                raise UsageError(f"a local cluster needs at least 1 worker, not {local_workers}")
            # kept for the cluster's lifetime: the nanny reads 'daemon' again when it restarts a worker;
            # non-daemonic workers may start child processes (the memory analyzer isolates plugins so)
            self._config = dask.config.set(
                {
                    "distributed.scheduler.allowed-failures": allowed_failures,
                    "distributed.worker.daemon": False,
                }
            )
            try:
                self._cluster = distributed.LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    # the scheduler's health/metrics HTTP server would take port 8787 (or warn): any free port
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                    silence_logs=logging.WARNING,
                )
                self._client = distributed.Client(self._cluster, timeout=timeout, set_as_default=False)
            except Exception as exc:
                self.close()
                raise UsageError(f"could not start a local dask cluster of {n} workers: {exc}") from exc

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (for tests and benchmarks)."""
        return self._client

    @property
    def address(self) -> str:
        # a client that gave up reconnecting (the scheduler died) has no scheduler left
        return str(getattr(getattr(self._client, "scheduler", None), "address", "") or "")

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "address": self.address,
            "workers": len(self._workers),
            "local_cluster": self._cluster is not None,
            "allowed_failures": self.allowed_failures,
            "worker_processes": sorted(f"{w['host']}:{w['pid']}" for w in self._workers.values()),
            **self.limits.as_dict(),
        }

    def preflight(self, cases: Sequence[tuple[str, str]], plugins: Sequence[str] = ()) -> None:
        want = self.local_workers or 1
        self._repair()
        try:
            self._client.wait_for_workers(want, timeout=self.timeout)
        except TimeoutError:
            # a local worker still restarting after a crash is no reason to stop: the others can start
            have = len(self._client.scheduler_info().get("workers", {}))
            if not have:
                raise UsageError(
                    f"the dask scheduler at {self.address} has no workers after {self.timeout:g} s; "
                    f"start workers with: dask worker {self.address}"
                ) from None
            log.warning("%d of %d dask workers are up after %g s; starting with those", have, want, self.timeout)
        replies = self._client.run(check_worker, list(cases), on_error="return")
        bad = []
        self._workers = {}
        for addr, rep in sorted(replies.items()):
            if isinstance(rep, BaseException):
                bad.append(f"{addr}: the check failed: {type(rep).__name__}: {rep}")
                continue
            self._workers[addr] = rep
            bad.extend(f"{addr} ({rep['host']}): {p}" for p in rep["problems"])
            if rep.get("daemon"):
                log.warning(
                    "dask worker %s runs as a daemon process and cannot start children (memory analyzer); "
                    "start workers with DASK_DISTRIBUTED__WORKER__DAEMON=False",
                    addr,
                )
        if bad:
            raise UsageError(
                "dask workers must see the case folder at the same path as this machine (a shared "
                "filesystem, or an NFS/SMB share mounted at the same mount point):\n  " + "\n  ".join(bad)
            )
        # as tasks, not client.run: a long import must not block a worker's event loop
        futs = [
            self._client.submit(warm_worker, list(plugins), pure=False, workers=[a], allow_other_workers=True)
            for a in self._workers
        ]
        for f in futs:
            try:
                f.result(timeout=self.timeout)
            except Exception as exc:  # a slow or lost worker: its first unit imports instead
                log.debug("warming a dask worker: %s", exc)

    def _slots(self) -> int:
        """Worker threads of the cluster, refreshed at most once a second."""
        when, n = self._threads
        if time.monotonic() - when > 1.0:
            try:
                info = self._client.scheduler_info()
                n = sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values())
            except Exception:  # the scheduler is going away: the result loop reports it
                pass
            self._threads = (time.monotonic(), max(1, n))
        return self._threads[1]

    def _repair(self) -> None:
        """Bring a local cluster back to its size.

        A nanny whose freshly started worker dies at once (a unit that kills every worker it lands on)
        may give up and close; the cluster would then shrink for good, and with no worker left a
        run would wait forever. Closed nannies are dropped and replaced (on the cluster's loop).
        """
        cluster = self._cluster
        if cluster is None:
            return
        from distributed.core import Status

        gone = [name for name, w in list(cluster.workers.items()) if w.status in (Status.closed, Status.failed)]
        if not gone and len(cluster.workers) >= (self.local_workers or 0):
            return
        log.warning("restarting %d lost local dask worker(s)", max(len(gone), 1))

        def fix() -> None:
            for name in gone:
                cluster.workers.pop(name, None)
            cluster.scale(self.local_workers)

        cluster.loop.add_callback(fix)

    def _watch(self, running: dict[Any, UnitTask], stop: threading.Event, stalled: list[str]) -> None:
        """Keep a local cluster at size; give up when no worker has been seen for ``no_workers_timeout``."""
        seen = time.monotonic()
        while not stop.wait(2.0):
            try:
                self._repair()
                if self._client.scheduler_info().get("workers"):
                    seen = time.monotonic()
            except Exception:  # the scheduler is going away: the result loop reports it
                continue
            if time.monotonic() - seen > self.no_workers_timeout:
                stalled.append(f"no dask worker for {self.no_workers_timeout:g} s")
                while True:
                    try:
                        futs = list(running)
                        break
                    except RuntimeError:  # changed size while copied
                        continue
                self._client.cancel(futs)
                return

    def run(
        self,
        tasks: Sequence[UnitTask],
        *,
        on_result: OnResult,
        on_failed: OnFailed,
        finished: Finished,
        on_progress: OnProgress | None = None,
    ) -> None:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        pending = deque(tasks)
        running: dict[Any, UnitTask] = {}
        # results are fetched as part of completion (no extra round trip after the yield)
        ac = as_completed(loop=self._client.loop, with_results=True, raise_errors=False)
        failure = ""
        stop, stalled = threading.Event(), []  # type: ignore[var-annotated]
        watchdog = threading.Thread(target=self._watch, args=(running, stop, stalled), daemon=True)
        watchdog.start()

        def top_up() -> None:
            while pending and len(running) < self._slots():
                t = pending.popleft()
                fut = self._client.submit(
                    _run_unit_bounded,
                    t.spec,
                    limits=(self.limits.time_s, self.limits.memory_bytes),
                    time_limit=t.time_limit,
                    key=t.key,
                    pure=False,
                )
                running[fut] = t
                ac.add(fut)

        try:
            top_up()
            for fut, result in ac:
                t = running.pop(fut)
                if fut.status == "finished":
                    on_result(t, result)
                elif fut.status == "cancelled":  # the client lost the scheduler, or the watchdog gave up
                    failure = stalled[0] if stalled else "the scheduler connection was lost"
                    running[fut] = t
                    break
                else:
                    exc = fut.exception()
                    if isinstance(exc, UnitKilled):  # the unit's own child was killed past a bound, or died
                        on_failed(t, str(exc))
                    elif isinstance(exc, KilledWorker):
                        on_failed(
                            t,
                            f"{WORKER_DIED} (dask: {exc.allowed_failures + 1} workers died running it; "
                            f"last on {getattr(getattr(exc, 'last_worker', None), 'address', '?')})",
                        )
                    else:  # run_unit itself failed (an analyzer's errors are records, not exceptions)
                        on_failed(t, f"the unit failed on the dask worker: {type(exc).__name__}: {exc}")
                del fut
                top_up()
        except (OSError, TimeoutError) as exc:  # CommClosedError is an OSError
            failure = f"{type(exc).__name__}: {exc}"
        finally:
            stop.set()
            watchdog.join()
        if failure:
            log.error("dask cluster failure: %s", failure)
            for t in [*running.values(), *pending]:
                rec = finished(t)
                if rec is not None:
                    on_result(t, rec)
                else:
                    on_failed(
                        t,
                        f"the dask cluster failed before this unit finished ({failure}); rerun the same "
                        "command to resume",
                    )
            for fut in running:
                with contextlib.suppress(Exception):  # the client may be closed already (the scheduler died)
                    fut.cancel()

    def _drop_instances(self) -> None:
        """Free cached analyzers in the worker threads that made them (yara-x objects must not cross threads)."""
        try:
            addrs = list(self._client.scheduler_info().get("workers", {}))
            futs = [
                self._client.submit(drop_instances, pure=False, workers=[a], allow_other_workers=False) for a in addrs
            ]
            deadline = time.monotonic() + 5  # a worker restarting right now may never answer
            for f in futs:
                f.result(timeout=max(0.1, deadline - time.monotonic()))
        except Exception as exc:  # best effort: the cluster may be gone already
            log.debug("could not clear worker caches: %s", exc)

    def close(self) -> None:
        if self._client is not None and self._cluster is not None:
            self._drop_instances()
        for obj in (self._client, self._cluster):
            if obj is not None:
                try:
                    obj.close()
                except Exception as exc:  # closing a broken cluster must not hide the run's outcome
                    log.debug("closing %s: %s", type(obj).__name__, exc)
        self._client = self._cluster = None
        if self._config is not None:
            self._config.__exit__(None, None, None)
            self._config = None


def open_executor(
    *, jobs: int = 1, scheduler: str | None = None, cluster: str | None = None, limits: UnitLimits | None = None
) -> Executor:
    """The executor of a command line: ``--scheduler``, ``--cluster local:N`` or the local pool."""
    if scheduler and cluster:
        raise UsageError("--scheduler and --cluster are mutually exclusive")
    ex: Executor
    if scheduler:
        ex = DaskExecutor(parse_scheduler(scheduler))
    elif cluster:
        ex = DaskExecutor(local_workers=clamp_jobs(parse_cluster(cluster)))
    else:
        # a command's pool: a handful of small units runs in the command's process (see LocalPoolExecutor)
        return LocalPoolExecutor(jobs, limits, in_process_small=True)
    ex.limits = limits or UnitLimits()  # each unit runs in a child of its dask worker under these
    return ex
