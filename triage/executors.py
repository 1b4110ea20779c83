"""Where analysis units run: a local process pool (the default) or a dask.distributed cluster.

The runner plans (analyzer x evidence) units and hands them to an :class:`Executor` as
:class:`UnitTask` objects. Every unit runs :func:`triage.runner.run_unit`, which writes its result
files into the case *before* it returns, so an executor only moves small run records around: a
lost worker or a failed cluster never loses a finished result, and a rerun resumes.

``LocalPoolExecutor(jobs)``
    serial when ``jobs <= 1``, else a fork process pool. A worker that dies breaks the pool; the
    units not reported yet are then rerun one by one in fresh single-worker pools, so only a unit
    that kills its own process ends as an ``error`` record.

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

import hashlib
import json
import logging
import multiprocessing
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from triage.errors import UsageError

log = logging.getLogger(__name__)

WORKER_DIED = "the worker process died while running this unit"
# what every dask run uses unless told otherwise: a unit may take down 2 workers and is retried,
# the third death marks it failed (dask's own default is 3)
ALLOWED_FAILURES = 2


@dataclass(frozen=True)
class UnitTask:
    """One planned unit: the arguments of :func:`triage.runner.run_unit` and a stable key."""

    key: str  # triage-<analyzer>-<evidence_id>-<run_id>; the dask task key
    args: tuple[Any, ...]
    case_dir: str
    analyzer: str
    evidence_id: str


OnResult = Callable[[UnitTask, dict[str, Any]], None]
OnFailed = Callable[[UnitTask, str], None]
Finished = Callable[[UnitTask], "dict[str, Any] | None"]


def worker_id() -> str:
    """``host:pid`` of this process, as recorded in run records."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _run_unit(*args: Any) -> dict[str, Any]:
    from triage.runner import run_unit  # the runner imports this module

    return run_unit(*args)


def _run_unit_once(*args: Any) -> dict[str, Any]:
    """``run_unit``, unless this run already wrote the unit's record.

    Dask recomputes a finished task whose result was still held by a worker that died; the unit's
    files are on disk already, so hand back the record the first attempt wrote instead.
    """
    from triage.runner import result_paths, run_unit

    case_dir, analyzer, row, run_id = args[0], args[2], args[3], args[7]
    try:
        rec = json.loads(result_paths(Path(case_dir), analyzer, row["artifact_id"])[1].read_text())
    except (OSError, ValueError):
        rec = {}
    if run_id and rec.get("run_id") == run_id:
        return dict(rec)
    return run_unit(*args)


class Executor:
    """Runs unit tasks and reports each one exactly once through ``on_result`` or ``on_failed``."""

    kind = "base"

    def preflight(self, cases: Sequence[tuple[str, str]], plugins: Sequence[str] = ()) -> None:
        """Check the workers can read every ``(case_dir, case.json sha256)``; raise UsageError if not.

        Workers also import the analyzers (and ``plugins``) here, so the first units do not pay for it.
        """

    def run(self, tasks: Sequence[UnitTask], *, on_result: OnResult, on_failed: OnFailed, finished: Finished) -> None:
        """Run ``tasks``; ``finished(task)`` returns the unit's record if it already finished on disk."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Executor kind, scheduler address and worker count, for the run record and custody log."""
        return {"kind": self.kind, "address": "", "workers": 0}

    def close(self) -> None:
        """Release the pool or cluster connection (idempotent)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class LocalPoolExecutor(Executor):
    """Serial for ``jobs <= 1``, else a fork process pool with one-by-one reruns after a dying worker."""

    kind = "local"

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = max(1, int(jobs))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "address": "", "workers": self.jobs}

    def run(self, tasks: Sequence[UnitTask], *, on_result: OnResult, on_failed: OnFailed, finished: Finished) -> None:
        if self.jobs <= 1 or len(tasks) <= 1:
            for t in tasks:
                on_result(t, _run_unit(*t.args))
            return
        retry: list[UnitTask] = []
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx) as pool:
            futures = [pool.submit(_run_unit, *t.args) for t in tasks]
            for t, fut in zip(tasks, futures, strict=True):
                try:
                    on_result(t, fut.result())
                except BrokenProcessPool:
                    retry.append(t)
        # a worker died (segfault in a native parser, os._exit, OOM kill): run the rest one by one
        # in fresh single-worker pools so only the unit that kills its process is lost
        for t in retry:
            rec = finished(t)
            if rec is not None:
                on_result(t, rec)
                continue
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as solo:
                try:
                    on_result(t, solo.submit(_run_unit, *t.args).result())
                except BrokenProcessPool:
                    on_failed(t, WORKER_DIED)


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
        return str(self._client.scheduler.address) if self._client is not None else ""

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "address": self.address,
            "workers": len(self._workers),
            "local_cluster": self._cluster is not None,
            "allowed_failures": self.allowed_failures,
            "worker_processes": sorted(f"{w['host']}:{w['pid']}" for w in self._workers.values()),
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

    def run(self, tasks: Sequence[UnitTask], *, on_result: OnResult, on_failed: OnFailed, finished: Finished) -> None:
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
                fut = self._client.submit(_run_unit_once, *t.args, key=t.key, pure=False)
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
                    if isinstance(exc, KilledWorker):
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
                fut.cancel()

    def _drop_instances(self) -> None:
        """Free cached analyzers in the worker threads that made them (yara-x objects must not cross threads)."""
        from triage.runner import drop_instances

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


def open_executor(*, jobs: int = 1, scheduler: str | None = None, cluster: str | None = None) -> Executor:
    """The executor of a command line: ``--scheduler``, ``--cluster local:N`` or the local pool."""
    if scheduler and cluster:
        raise UsageError("--scheduler and --cluster are mutually exclusive")
    if scheduler:
        return DaskExecutor(parse_scheduler(scheduler))
    if cluster:
        return DaskExecutor(local_workers=parse_cluster(cluster))
    return LocalPoolExecutor(jobs)
