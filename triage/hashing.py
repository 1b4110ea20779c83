"""Reading evidence without touching it, and hashing while copying."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

if TYPE_CHECKING:  # the pool is made (and concurrent.futures loaded) by the first large file only
    from concurrent.futures import ThreadPoolExecutor

CHUNK = 1 << 20  # 1 MiB: large enough for disk throughput, small enough for bounded memory
DEFAULT_ALGOS = ("sha256", "md5")


class _Writer(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...


def open_readonly(path: str | os.PathLike[str], *, directory: bool = False) -> int:
    """Open ``path`` read-only without following a final symlink and without updating its atime.

    ``O_NOATIME`` keeps the source's access time as it was (a read otherwise updates it on
    relatime mounts); it needs the file's owner or CAP_FOWNER, so fall back without it.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    if directory:
        flags |= getattr(os, "O_DIRECTORY", 0)
    noatime = getattr(os, "O_NOATIME", 0)
    if noatime:
        try:
            return os.open(path, flags | noatime)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EINVAL):
                raise
    return os.open(path, flags)


def open_source(path: str | os.PathLike[str]) -> BinaryIO:
    """A buffered binary reader over :func:`open_readonly`."""
    return os.fdopen(open_readonly(path), "rb", buffering=0)


SMALL_READ = 1 << 16  # the least a read asks for (a file grown since it was listed is read in such steps)
_CTORS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256}  # hashlib.new() costs more per file
_POOL: tuple[int, ThreadPoolExecutor] | None = None
PIPELINE_MIN = 4 * CHUNK  # below this, threads cost more than they save


def _hash_pool() -> ThreadPoolExecutor:
    # one pool per process: a pool inherited through fork has no threads behind it
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        from concurrent.futures import ThreadPoolExecutor

        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=3, thread_name_prefix="triage-hash"))
    return _POOL[1]


def copy_hashing(
    src: BinaryIO,
    dst: _Writer | None,
    algos: Iterable[str] = DEFAULT_ALGOS,
    progress: Callable[[int], None] | None = None,
    size_hint: int | None = None,
) -> tuple[int, dict[str, str]]:
    """Stream ``src`` into ``dst`` (or nowhere), hashing in the same pass. Returns (size, hexdigests).

    Large inputs run the digests in threads (hashlib releases the GIL) while the next chunk is read
    and the current one written, with two buffers alternating; small inputs go sequentially.
    """
    names = list(algos)
    hashers = [_CTORS[name]() if name in _CTORS else hashlib.new(name) for name in names]
    readinto = getattr(src, "readinto", None)
    threaded = readinto is not None and (size_hint is None or size_hint >= PIPELINE_MIN)
    size = 0
    if not threaded or readinto is None:  # (threaded implies readinto; the test tells the type checker)
        # a small file is read in one call of its own size (+1 to see the end), not into a fresh 1 MiB buffer
        want = CHUNK if size_hint is None else min(CHUNK, max(size_hint + 1, SMALL_READ))
        while True:
            data = src.read(want)
            if not data:
                break
            for h in hashers:
                h.update(data)
            if dst is not None:
                dst.write(data)
            size += len(data)
            if progress is not None:
                progress(len(data))
        return size, {n: h.hexdigest() for n, h in zip(names, hashers, strict=True)}
    pool = _hash_pool()
    views = [memoryview(bytearray(CHUNK)), memoryview(bytearray(CHUNK))]
    pending: list[Any] = []  # futures of the digests of the buffer before
    i = 0
    try:
        while True:
            view = views[i % 2]
            n = readinto(view)  # overlaps with the digests of the other buffer
            for f in pending:
                f.result()
            pending = []
            if not n:
                break
            chunk = view[:n]
            pending = [pool.submit(h.update, chunk) for h in hashers]
            if dst is not None:
                dst.write(chunk)
            size += n
            i += 1
            if progress is not None:
                progress(n)
    finally:
        for f in pending:
            f.result()
    return size, {n: h.hexdigest() for n, h in zip(names, hashers, strict=True)}


def hash_file(path: str | os.PathLike[str], algos: Iterable[str] = DEFAULT_ALGOS) -> tuple[int, dict[str, str]]:
    """Hash a file in place without modifying it (no atime update where possible)."""
    with open_source(path) as fh:
        # the size decides the path: small files skip the threaded pipeline and its two 1 MiB buffers
        return copy_hashing(fh, None, algos, size_hint=os.fstat(fh.fileno()).st_size)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
