"""Building the super-timeline of a case: read every source, tag, sort in bounded memory, write, record.

Events come from :func:`triage.timeline.events.case_events` in Arrow batches. Batches are tagged with the
findings they carry, filtered to the time window, and gathered into *runs* of at most ``run_rows`` events, each
sorted and spilled to a temporary Arrow IPC file. The runs are then merged in time order a slice at a time
(every run contributes the rows up to the smallest "last time" among the runs' current batches), so memory
holds about one batch per run whatever the case's size; the writers take each merged slice as it comes. The
files are written to temporary names, hashed while written, renamed when complete, and recorded in the custody
log as one ``timeline`` event (``triage verify`` checks them like report files).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from triage.case import Case
from triage.errors import UsageError
from triage.timeline.events import BATCH, SCHEMA, SourceStats, case_events, describe
from triage.timeline.tags import FindingIndex
from triage.timeline.writers import CsvOut, TimesketchOut

log = logging.getLogger(__name__)

RUN_ROWS = 200_000  # events per sorted run: the in-memory part of the sort
FAN_IN = 8  # runs merged at once (a batch of each is in memory)
FORMATS = ("timesketch", "csv")
OUTPUT_NAMES = {"timesketch": "timeline.jsonl", "csv": "timeline.csv"}
TIMELINE_DIR = "timeline"
_TEMP = re.compile(r"^\..*\.tmp-\d+$")


@dataclass(frozen=True)
class TimelineOptions:
    """What to build: the time window (inclusive, UTC), the formats and where they go."""

    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    formats: tuple[str, ...] = FORMATS
    out: Path | None = None  # default: CASE/timeline
    batch: int = BATCH
    run_rows: int = RUN_ROWS


@dataclass
class TimelineResult:
    """Where the timeline went and what it holds."""

    outputs: dict[str, str] = field(default_factory=dict)  # file name -> path
    hashes: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    events: int = 0  # events written (findings as events included)
    read: int = 0  # events read from the sources
    no_time: int = 0  # events whose time could not be read: counted, not written
    unreadable: int = 0  # artifacts that could not be read at all (their events are missing)
    outside_window: int = 0
    tagged_events: int = 0
    findings: int = 0
    findings_tagging: int = 0  # findings that tag at least one event
    findings_as_events: int = 0
    findings_undated: int = 0  # findings neither tagging an event nor carrying a time
    sources: dict[str, Any] = field(default_factory=dict)
    first: str | None = None
    last: str | None = None
    in_case: bool = False  # written to CASE/timeline (custody outputs, checked by verify); else exported
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class _Hashing:
    """A binary file that hashes what is written to it."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()

    closed = False

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


def _window(t: pa.Table, start: pd.Timestamp | None, end: pd.Timestamp | None) -> pa.Table:
    mask = None
    if start is not None:
        mask = pc.greater_equal(t["ts"], pa.scalar(start.to_pydatetime(), SCHEMA.field("ts").type))
    if end is not None:
        upper = pc.less_equal(t["ts"], pa.scalar(end.to_pydatetime(), SCHEMA.field("ts").type))
        mask = upper if mask is None else pc.and_(mask, upper)
    return t if mask is None else t.filter(mask)


class _Runs:
    """Sorted runs spilled to Arrow IPC files in a private temporary folder."""

    def __init__(self, folder: Path, run_rows: int, batch: int) -> None:
        self.folder = folder
        self.run_rows = run_rows
        self.batch = batch
        self.pending: list[pa.Table] = []
        self.rows = 0
        self.files: list[Path] = []

    def add(self, t: pa.Table) -> None:
        if not t.num_rows:
            return
        self.pending.append(t)
        self.rows += t.num_rows
        if self.rows >= self.run_rows:
            self.spill()

    def spill(self) -> None:
        if not self.rows:
            return
        run = pa.concat_tables(self.pending).sort_by([("ts", "ascending")])
        self.pending, self.rows = [], 0
        path = self.folder / f"run-{len(self.files):05d}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
            for b in run.to_batches(max_chunksize=self.batch):
                writer.write_batch(b)
        self.files.append(path)

    def merged(self) -> Iterator[pa.Table]:
        """All spilled events in time order, a slice at a time.

        At most ``FAN_IN`` runs are merged at once (one batch of each in memory): more runs are first merged in
        groups into longer runs, so memory stays bounded however many runs a large case gives.
        """
        self.spill()
        files = self.files
        level = 0
        while len(files) > FAN_IN:
            level += 1
            merged_files = []
            for g in range(0, len(files), FAN_IN):
                path = self.folder / f"merge-{level}-{g // FAN_IN:05d}.arrow"
                with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
                    for part in _merge(files[g : g + FAN_IN], self.batch):
                        for b in part.to_batches(max_chunksize=self.batch):
                            writer.write_batch(b)
                for done in files[g : g + FAN_IN]:
                    done.unlink()
                merged_files.append(path)
            files = merged_files
        yield from _merge(files, self.batch)


def _merge(files: list[Path], batch: int) -> Iterator[pa.Table]:
    """Sorted runs merged in time order: each round takes, from every run, the rows up to the smallest last time
    among the runs' current batches (the run giving that time is then used up), sorts them and hands them out."""
    # plain reads, not memory maps: mapped pages of every run would count as resident memory
    readers = [pa.ipc.open_file(pa.OSFile(str(p))) for p in files]
    nexts = [0] * len(readers)
    current: list[pa.Table | None] = [None] * len(readers)

    def load(i: int) -> pa.Table | None:
        while nexts[i] < readers[i].num_record_batches:
            b = readers[i].get_batch(nexts[i])
            nexts[i] += 1
            if b.num_rows:
                return pa.Table.from_batches([b])
        return None

    for i in range(len(readers)):
        current[i] = load(i)
    while True:
        active = [i for i, c in enumerate(current) if c is not None]
        if not active:
            return
        cutoff = min(_last_us(c) for c in current if c is not None)
        parts = []
        for i in active:
            cur = current[i]
            assert cur is not None
            k = int(np.searchsorted(_us(cur), cutoff, side="right"))
            if k:
                parts.append(cur.slice(0, k))
            rest = cur.slice(k)
            current[i] = rest if rest.num_rows else load(i)
        out = pa.concat_tables(parts).sort_by([("ts", "ascending")])
        for start in range(0, out.num_rows, batch):
            yield out.slice(start, batch)


def _us(t: pa.Table) -> np.ndarray:
    return t["ts"].cast(pa.int64()).to_numpy()


def _last_us(t: pa.Table) -> int:
    return int(_us(t)[-1])


def out_folder(case: Case, out: Path | None) -> tuple[Path, bool]:
    """Where the files go and whether that is the case's own ``timeline/`` (recorded and verified)."""
    inside = (case.path / TIMELINE_DIR).resolve()
    if out is None:
        return inside, True
    target = Path(out).resolve()
    if target == inside:
        return inside, True
    if target == case.path.resolve() or case.path.resolve() in target.parents:
        raise UsageError(f"--out {out}: inside the case only {inside} is allowed (verify accounts for it)")
    return target, False


def build_timeline(
    case: Case,
    options: TimelineOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TimelineResult:
    """Write the super-timeline of an open case (the caller holds its writer lock when writing into it).

    ``progress(done, total)`` counts the artifacts read."""
    from triage.report.build import load_findings

    opts = options or TimelineOptions()
    unknown = [f for f in opts.formats if f not in FORMATS]
    if unknown or not opts.formats:
        raise UsageError(f"unknown timeline format {', '.join(unknown) or '(none)'}: use {', '.join(FORMATS)}")
    if opts.start is not None and opts.end is not None and opts.start > opts.end:
        raise UsageError(f"--from {opts.start.isoformat()} is after --to {opts.end.isoformat()}")
    t0 = time.perf_counter()
    result = TimelineResult()
    folder, in_case = out_folder(case, opts.out)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():  # what a killed timeline left (verify calls it incomplete until removed)
        if _TEMP.match(stale.name) and stale.is_file():
            stale.unlink()
    findings = load_findings(case, result.warnings)
    index = FindingIndex(findings)
    result.findings = len(findings)
    stats: dict[str, SourceStats] = {}
    tmp_root = os.environ.get("TRIAGE_TMPDIR") or None
    with tempfile.TemporaryDirectory(prefix="triage-timeline-", dir=tmp_root) as work:
        runs = _Runs(Path(work), opts.run_rows, opts.batch)
        for source, t in case_events(case, stats, opts.batch, progress):
            st = stats[source]
            n = t.num_rows
            st.events += n
            result.read += n
            missing = t["ts"].null_count
            if missing:
                st.no_time += missing
                t = t.filter(pc.is_valid(t["ts"]))
            kept = _window(t, opts.start, opts.end)
            result.outside_window += t.num_rows - kept.num_rows
            runs.add(index.tag(kept))
        extra, undated = index.unmatched()
        kept = _window(extra, opts.start, opts.end)
        result.outside_window += extra.num_rows - kept.num_rows
        runs.add(kept)
        result.findings_as_events = kept.num_rows
        result.findings_undated = undated
        result.findings_tagging = int(index.matched.sum())
        result.tagged_events = index.tagged_events
        result.no_time = sum(s.no_time for s in stats.values())
        result.unreadable = sum(s.unreadable for s in stats.values())
        result.sources = describe(stats)
        result.events = _write(runs, folder, opts.formats, result)
    result.in_case = in_case
    # files in the case are ``outputs`` (verify checks them); files written elsewhere are ``exported`` (hashed and
    # on record, but outside what verify can vouch for)
    where = "outputs" if in_case else "exported"
    named = {
        (f"{TIMELINE_DIR}/{name}" if in_case else result.outputs[name]): digest
        for name, digest in result.hashes.items()
    }
    case.custody.append(
        "timeline",
        timeline_id=uuid.uuid4().hex,
        **{where: named},
        events=result.events,
        no_time=result.no_time,
        unreadable=result.unreadable,
        outside_window=result.outside_window,
        window={"from": _iso(opts.start), "to": _iso(opts.end)},
        findings_tagging=result.findings_tagging,
        findings_as_events=result.findings_as_events,
    )
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def _iso(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None else ts.isoformat()


def _write(runs: _Runs, folder: Path, formats: tuple[str, ...], result: TimelineResult) -> int:
    names = {f: OUTPUT_NAMES[f] for f in FORMATS if f in formats}
    temps = {f: folder / f".{name}.tmp-{os.getpid()}" for f, name in names.items()}
    handles = {f: open(p, "wb") for f, p in temps.items()}  # noqa: SIM115 - closed in finally
    hashing = {f: _Hashing(h) for f, h in handles.items()}
    writers: list[Any] = []
    if "timesketch" in hashing:
        writers.append(TimesketchOut(hashing["timesketch"]))
    if "csv" in hashing:
        writers.append(CsvOut(hashing["csv"]))
    written = 0
    first = last = None
    try:
        for part in runs.merged():
            if not part.num_rows:
                continue
            for w in writers:
                w.write(part)
            written += part.num_rows
            us = _us(part)
            first = int(us[0]) if first is None else first
            last = int(us[-1])
        for w in writers:
            w.close()
    except BaseException:
        for h in handles.values():
            h.close()
        for p in temps.values():
            p.unlink(missing_ok=True)
        raise
    for f, h in handles.items():
        h.flush()
        os.fsync(h.fileno())
        h.close()
        final = folder / names[f]
        os.replace(temps[f], final)
        result.outputs[names[f]] = str(final)
        result.hashes[names[f]] = hashing[f].sha.hexdigest()
    if first is not None and last is not None:
        result.first = pd.Timestamp(first, unit="us", tz="UTC").isoformat()
        result.last = pd.Timestamp(last, unit="us", tz="UTC").isoformat()
    return written
