"""Typed unit tasks passed from the runner to the executors, and the state of the process running a unit.

The runner plans :class:`UnitTask` records; an executor sends each task's :class:`UnitSpec` to a worker, which
runs :func:`triage.unitrun.run_unit` on it. Both sides import this module, neither imports the other's.
The worker state (its label in run records, the memory one unit may add) is set once per worker process.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

log = logging.getLogger(__name__)

# progress of one unit: (done, total, text); total 0 means unknown
ProgressSink = Callable[[float, float, str], None]


@dataclass(frozen=True)
class UnitSpec:
    """What a worker needs to run one unit: plain, picklable values (dask workers run on other machines)."""

    case_dir: str  # absolute: workers run with another cwd
    case_id: str
    analyzer: str
    evidence: dict[str, Any]  # the manifest row (a host group's stand-in row for host-scope analyzers)
    plugins: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    members: list[dict[str, Any]] | None = None  # host scope: every consumed artifact of the host
    run_id: str = ""
    # a batch: the manifest rows of several small artifacts run in turn by one worker (``evidence`` is the first);
    # their records and findings go to one file named by ``batch_id`` (triage.results)
    batch: list[dict[str, Any]] | None = None
    batch_id: str = ""

    @property
    def evidence_id(self) -> str:
        """The artifact's id; a batch's id for a batch (its files are named by it)."""
        return self.batch_id if self.batch is not None else str(self.evidence["artifact_id"])

    @property
    def artifacts(self) -> list[dict[str, Any]]:
        """The manifest rows this spec runs: the batch's, or the one evidence row."""
        return list(self.batch) if self.batch is not None else [self.evidence]

    def part(self, rows: list[dict[str, Any]], tag: str) -> UnitSpec:
        """The same work over a subset of a batch's rows (a single unit when one row is left); ``tag`` makes the
        new batch id (a batch split after its worker died)."""
        if len(rows) == 1:
            return replace(self, evidence=rows[0], batch=None, batch_id="")
        return replace(self, evidence=rows[0], batch=list(rows), batch_id=self.batch_id + tag)


@dataclass(frozen=True)
class UnitTask:
    """One planned unit: its spec, a stable key and its time limit."""

    key: str  # triage-<analyzer>-<evidence_id>-<run_id>; the dask task key
    spec: UnitSpec
    time_limit: float = -1.0  # seconds for this unit, for each artifact of a batch (0: none); -1: the executor's

    @property
    def case_dir(self) -> str:
        return self.spec.case_dir

    def part(self, rows: list[dict[str, Any]], tag: str) -> UnitTask:
        """A task over a subset of this batch's rows (see :meth:`UnitSpec.part`), keyed apart from this one."""
        return replace(self, key=f"{self.key}-{tag}", spec=self.spec.part(rows, tag))

    @property
    def analyzer(self) -> str:
        return self.spec.analyzer

    @property
    def evidence_id(self) -> str:
        return self.spec.evidence_id


# -- the process running units ---------------------------------------------------------------------------
_WORKER_LABEL = ""  # set in a unit's child process started by a dask worker: the record names the dask worker


def worker_id() -> str:
    """``host:pid`` of the worker running this unit, as recorded in run records."""
    return _WORKER_LABEL or f"{socket.gethostname()}:{os.getpid()}"


def set_worker(label: str | None = None, memory: int | None = None) -> None:
    """Name this worker process in run records and bound the memory each unit may add (bytes, 0: none)."""
    global _WORKER_LABEL, _UNIT_MEMORY
    if label is not None:
        _WORKER_LABEL = label
    if memory is not None:
        _UNIT_MEMORY = memory


def _vm_data() -> int:
    """This process's private writable memory (VmData, bytes): what RLIMIT_DATA counts."""
    # one raw read (asked per artifact of a batch): no buffered file object, no per-line iteration
    try:
        fd = os.open("/proc/self/status", os.O_RDONLY)
        try:
            data = os.read(fd, 8192)
        finally:
            os.close(fd)
        start = data.index(b"VmData:") + 7
        return int(data[start : data.index(b"\n", start)].split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return 0


_UNIT_MEMORY = 0  # set in pool workers: the memory each unit may add


class MemoryBound:
    """Within the block, the process may add at most ``_UNIT_MEMORY`` bytes of private memory (RLIMIT_DATA).

    A Python allocation past it raises MemoryError; a native one fails its malloc. File mappings (a memory
    image read through mmap) do not count.
    """

    def __enter__(self) -> MemoryBound:
        self.saved: tuple[int, int] | None = None
        if _UNIT_MEMORY > 0:
            import resource

            try:
                self.saved = resource.getrlimit(resource.RLIMIT_DATA)
                soft = _vm_data() + _UNIT_MEMORY
                hard = self.saved[1]
                resource.setrlimit(resource.RLIMIT_DATA, (soft if hard < 0 else min(soft, hard), hard))
            except (OSError, ValueError) as exc:
                log.debug("cannot set RLIMIT_DATA: %s", exc)
                self.saved = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_DATA, self.saved)


def memory_limit_text() -> str:
    """The message of a unit that ran out of its memory bound."""
    return f"exceeded memory limit ({_UNIT_MEMORY / (1 << 20):,.0f} MiB per unit)" if _UNIT_MEMORY else "out of memory"


@contextmanager
def paused_gc() -> Iterator[None]:
    """Cyclic garbage collection paused for a bounded step that allocates many objects and makes no cycles
    (building a frame from a batch of records, loading a compiled rule set)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
