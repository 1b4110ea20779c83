"""YARA over a raw file of any size, symbol-free: fixed-size chunks with an overlap, absolute offsets.

Each read is ``chunk_size + overlap`` bytes starting at a multiple of ``chunk_size``. A chunk *owns* the matches
that start inside its first ``chunk_size`` bytes (the last chunk owns all of its bytes); a match starting in the
overlap belongs to the next chunk, which sees it whole. So every match up to ``overlap`` bytes long is reported
exactly once, boundaries included, and memory use is one buffer whatever the image size.

Conditions are evaluated per chunk: ``filesize`` is the chunk's length and a rule needing strings further apart
than a chunk does not fire. That is the nature of scanning memory, where a file's pages are scattered anyway.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
DEFAULT_CHUNK = 16 * MIB
DEFAULT_OVERLAP = 64 * 1024  # the longest match we promise to find across a boundary
MAX_MATCHES_PER_PATTERN = 1000  # per chunk: bounds memory when a short string is everywhere
SNIPPET = 96  # bytes of the match kept for the report


@dataclass(frozen=True, slots=True)
class RawMatch:
    """One pattern match at an absolute file offset."""

    rule: str  # namespace.identifier
    pattern: str  # $a
    offset: int
    length: int
    data: bytes  # the first SNIPPET bytes of the match


def scan_file(
    path: Path | str,
    rules: Any,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    overlap: int = DEFAULT_OVERLAP,
    start: int = 0,
    end: int | None = None,
    progress: Callable[[int], None] | None = None,
    max_matches_per_pattern: int = MAX_MATCHES_PER_PATTERN,
) -> Iterator[RawMatch]:
    """Scan ``path`` (bytes ``start`` to ``end``) with compiled yara-x ``rules``; yield matches in chunk order.

    ``progress(n)`` is called with the number of new bytes covered after each chunk.
    """
    import yara_x

    if chunk_size <= 0 or overlap < 0:
        raise ValueError("chunk_size must be positive and overlap not negative")
    scanner = yara_x.Scanner(rules)
    scanner.max_matches_per_pattern(max_matches_per_pattern)
    flags = os.O_RDONLY | (os.O_NOATIME if _may_noatime(path) else 0)
    fd = os.open(path, flags)
    try:
        size = os.fstat(fd).st_size if end is None else min(end, os.fstat(fd).st_size)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        pos = start
        while pos < size:
            want = min(chunk_size + overlap, size - pos)
            data = os.pread(fd, want, pos)
            if not data:
                break
            last = pos + chunk_size >= size
            owned_end = pos + len(data) if last else pos + chunk_size
            for rule in scanner.scan(data).matching_rules:
                name = f"{rule.namespace}.{rule.identifier}"
                for pattern in rule.patterns:
                    for m in pattern.matches:
                        absolute = pos + m.offset
                        if absolute < owned_end:
                            snippet = data[m.offset : m.offset + min(m.length, SNIPPET)]
                            yield RawMatch(name, pattern.identifier, absolute, m.length, snippet)
            if progress:
                progress(min(chunk_size, size - pos))
            pos += chunk_size
    finally:
        os.close(fd)


def _may_noatime(path: Path | str) -> bool:
    # O_NOATIME is refused (EPERM) on files we do not own; evidence is usually ours, but test first
    if not hasattr(os, "O_NOATIME"):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOATIME)
    except OSError:
        return False
    os.close(fd)
    return True


def read_at(path: Path | str, offset: int, length: int) -> bytes:
    """``length`` bytes of ``path`` from ``offset`` (fewer at the end of the file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)
