"""Arrow's memory pool for the report's processes (no pandas here: the export workers import it)."""

from __future__ import annotations


def use_jemalloc() -> None:
    """Make Arrow's jemalloc pool this process's default (where the wheel has it).

    The default mimalloc pool kept the read buffers of a 1M-finding report resident (about 350 MiB over the
    findings themselves, measured); jemalloc hands them back.
    """
    import contextlib

    import pyarrow as pa

    with contextlib.suppress(NotImplementedError, pa.ArrowException):  # a build without jemalloc: the default
        pa.set_memory_pool(pa.jemalloc_memory_pool())
