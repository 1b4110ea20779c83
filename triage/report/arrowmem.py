"""Arrow's memory pool for the report's processes (no pandas here: the export workers import it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def use_jemalloc() -> None:
    """Make Arrow's jemalloc pool this process's default (where the wheel has it).

    The default mimalloc pool kept the read buffers of a 1M-finding report resident (about 350 MiB over the
    findings themselves, measured); jemalloc hands them back.
    """
    import contextlib

    import pyarrow as pa

    with contextlib.suppress(NotImplementedError, pa.ArrowException):  # a build without jemalloc: the default
        pa.set_memory_pool(pa.jemalloc_memory_pool())


def release_columns(frame: Any, keep: Iterable[str]) -> None:
    """Drop every column of ``frame`` (in place) but ``keep``, and hand the memory they held back to the system at
    once.

    Meant for a forked copy of the report process: its pages are shared with the parent's, yet each counts in
    its own resident size until it lets go of them (the parent keeps its own).
    """
    import contextlib

    import pyarrow as pa

    kept = set(keep)
    for name in [c for c in frame.columns if c not in kept]:
        del frame[name]
    with contextlib.suppress(NotImplementedError, pa.ArrowException):
        pa.jemalloc_set_decay_ms(0)  # freed pages go back now, not after a second of decay
    pa.default_memory_pool().release_unused()
