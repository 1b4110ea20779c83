"""YARA over a raw file of any size, symbol-free: fixed-size chunks with an overlap, absolute offsets.

Each read is ``chunk_size + overlap`` bytes starting at a multiple of ``chunk_size``. A chunk *owns* the matches
that start inside its first ``chunk_size`` bytes (the last chunk owns all of its bytes). A match starting in
the overlap tail is held back: the next chunk sees it whole and reports it; only if the next chunk does not
report it (its rule needed strings from before the boundary to fire) is the held-back match reported. So every
match up to ``overlap`` bytes long is reported exactly once, at its absolute offset, boundaries included, and
memory use is one buffer per worker whatever the image size.

Chunks of zeros are skipped when no rule can fire on zeros. Chunks can be scanned by several forked workers
(yara-x holds the GIL while it scans, so threads would not help); results are merged in file order, so the
output is the same for any number of workers.

Conditions are evaluated per chunk: ``filesize`` is the chunk's length and a rule needing strings further apart
than a chunk does not fire. That is the nature of scanning memory, where a file's pages are scattered anyway.
"""

from __future__ import annotations

import multiprocessing
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
CHUNKS_PER_TASK = 4  # chunks one worker scans per task: progress granularity vs. task overhead


@dataclass(frozen=True, slots=True)
class RawMatch:
    """One pattern match at an absolute file offset."""

    rule: str  # namespace.identifier
    pattern: str  # $a
    offset: int
    length: int
    data: bytes  # the first SNIPPET bytes of the match


ChunkResult = tuple[list[RawMatch], list[RawMatch]]  # (owned matches, matches held back from the overlap tail)


def _open(path: Path | str) -> int:
    # O_NOATIME where allowed (it is refused on files we do not own): reading evidence must not change it
    if hasattr(os, "O_NOATIME"):
        try:
            return os.open(path, os.O_RDONLY | os.O_NOATIME)
        except PermissionError:
            pass
    return os.open(path, os.O_RDONLY)


class _ChunkScanner:
    """Scans one chunk at a time and splits its matches into owned and held back."""

    def __init__(self, rules: Any, chunk_size: int, overlap: int, max_matches: int) -> None:
        import yara_x

        self.scanner = yara_x.Scanner(rules)
        self.scanner.max_matches_per_pattern(max_matches)
        self.chunk_size, self.overlap = chunk_size, overlap
        # memory images hold long runs of zero pages; when no rule fires on a chunk of zeros (checked once,
        # with the chunk's own length, so filesize conditions agree) such chunks need no scan. calloc'd:
        # the buffer costs no RSS
        self._zeros = bytes(chunk_size + overlap)
        self.zero_safe = not self.scanner.scan(self._zeros).matching_rules

    def scan(self, fd: int, pos: int, size: int) -> ChunkResult:
        data = os.pread(fd, min(self.chunk_size + self.overlap, size - pos), pos)
        if self.zero_safe and len(data) == len(self._zeros) and not data[0] and not data[-1] and data == self._zeros:
            return [], []
        last = pos + self.chunk_size >= size
        owned_end = pos + len(data) if last else pos + self.chunk_size
        owned: list[RawMatch] = []
        held: list[RawMatch] = []
        for rule in self.scanner.scan(data).matching_rules:
            name = f"{rule.namespace}.{rule.identifier}"
            for pattern in rule.patterns:
                for m in pattern.matches:
                    hit = RawMatch(
                        name,
                        pattern.identifier,
                        pos + m.offset,
                        m.length,
                        data[m.offset : m.offset + min(m.length, SNIPPET)],
                    )
                    (owned if hit.offset < owned_end else held).append(hit)
        return owned, held


_WORKER: dict[str, Any] = {}


def _worker_init(path: str, rules: Any, chunk_size: int, overlap: int, max_matches: int, size: int) -> None:
    # fork: the compiled rules are inherited, not pickled
    _WORKER.update(fd=_open(path), size=size, scanner=_ChunkScanner(rules, chunk_size, overlap, max_matches))


def _worker_task(positions: list[int]) -> list[ChunkResult]:
    return [_WORKER["scanner"].scan(_WORKER["fd"], pos, _WORKER["size"]) for pos in positions]


def _key(m: RawMatch) -> tuple[str, str, int]:
    return (m.rule, m.pattern, m.offset)


def _merge(results: Iterator[ChunkResult]) -> Iterator[RawMatch]:
    """Chunk results in file order -> each match once, in offset order."""
    pending: dict[tuple[str, str, int], RawMatch] = {}
    for owned, held in results:
        seen = {_key(m) for m in owned}
        out = owned + [m for k, m in pending.items() if k not in seen]  # held back, and not found again
        out.sort(key=lambda m: (m.offset, m.rule, m.pattern))
        yield from out
        pending = {_key(m): m for m in held}
    yield from sorted(pending.values(), key=lambda m: (m.offset, m.rule, m.pattern))


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
    workers: int = 1,
) -> Iterator[RawMatch]:
    """Scan ``path`` (bytes ``start`` to ``end``) with compiled yara-x ``rules``; yield matches in file order.

    ``progress(n)`` is called with the number of new bytes covered; ``workers`` > 1 scans chunks in that many
    forked processes (same output).
    """
    if chunk_size <= 0 or overlap < 0 or overlap > chunk_size:
        raise ValueError("chunk_size must be positive and overlap between 0 and chunk_size")
    fd = _open(path)
    try:
        size = os.fstat(fd).st_size if end is None else min(end, os.fstat(fd).st_size)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        positions = list(range(start, size, chunk_size))

        def advance(pos: int) -> None:
            if progress:
                progress(min(chunk_size, size - pos))

        if workers <= 1 or len(positions) <= 1:
            scanner = _ChunkScanner(rules, chunk_size, overlap, max_matches_per_pattern)

            def sequential() -> Iterator[ChunkResult]:
                for pos in positions:
                    result = scanner.scan(fd, pos, size)
                    advance(pos)
                    yield result

            yield from _merge(sequential())
            return
        tasks = [positions[i : i + CHUNKS_PER_TASK] for i in range(0, len(positions), CHUNKS_PER_TASK)]
        ctx = multiprocessing.get_context("fork")
        init = (str(path), rules, chunk_size, overlap, max_matches_per_pattern, size)
        with ctx.Pool(min(workers, len(tasks)), initializer=_worker_init, initargs=init) as pool:

            def parallel() -> Iterator[ChunkResult]:
                for task, results in zip(tasks, pool.imap(_worker_task, tasks), strict=True):
                    for pos, result in zip(task, results, strict=True):
                        advance(pos)
                        yield result

            yield from _merge(parallel())
    finally:
        os.close(fd)


def default_workers() -> int:
    """Scan workers when not told: the CPUs this process may use, at most 4 (reading becomes the limit)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(4, n))


def read_at(path: Path | str, offset: int, length: int) -> bytes:
    """``length`` bytes of ``path`` from ``offset`` (fewer at the end of the file)."""
    fd = _open(path)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)
