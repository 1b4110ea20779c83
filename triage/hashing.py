"""Reading evidence without touching it, and hashing while copying."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterable
from typing import BinaryIO, Protocol

CHUNK = 1 << 20  # 1 MiB: large enough for disk throughput, small enough for bounded memory
DEFAULT_ALGOS = ("sha256", "md5")


class _Writer(Protocol):
    def write(self, data: bytes, /) -> object: ...


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


def copy_hashing(
    src: BinaryIO,
    dst: _Writer | None,
    algos: Iterable[str] = DEFAULT_ALGOS,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, dict[str, str]]:
    """Stream ``src`` into ``dst`` (or nowhere), hashing in the same pass. Returns (size, hexdigests)."""
    hashers = {name: hashlib.new(name) for name in algos}
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    readinto = getattr(src, "readinto", None)
    while True:
        if readinto is not None:
            n = readinto(view)
            if not n:
                break
            chunk = view[:n]
        else:
            data = src.read(CHUNK)
            if not data:
                break
            chunk = memoryview(data)
            n = len(data)
        for h in hashers.values():
            h.update(chunk)
        if dst is not None:
            dst.write(chunk)
        size += n
        if progress is not None:
            progress(n)
    return size, {name: h.hexdigest() for name, h in hashers.items()}


def hash_file(
    path: str | os.PathLike[str], algos: Iterable[str] = DEFAULT_ALGOS
) -> tuple[int, dict[str, str]]:
    """Hash a file in place without modifying it (no atime update where possible)."""
    with open_source(path) as fh:
        return copy_hashing(fh, None, algos)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
