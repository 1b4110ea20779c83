"""The generic collector: executes the declared artifact families over a source's volumes."""

from __future__ import annotations

import collections
import functools
import logging
import os
import re
import stat
import tempfile
import threading
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from collectors.families import Family, load_families
from collectors.hostinfo import computer_name, exchange_root
from collectors.sources import Source, recognize_node
from collectors.vfs import DIR, FILE, UNSAFE, VNode, expand_braces, glob, resolve
from triage import copyhelper
from triage.case import Case, ManifestRow, escapes_folder, safe_component, safe_host
from triage.custody import utcnow
from triage.formats.recognize import (
    MEMORY_MIN,
    Recognition,
    kind_by_name,
    recognize_path,
)
from triage.hashing import DEFAULT_ALGOS, copy_hashing, open_source

if TYPE_CHECKING:
    from concurrent.futures import Future

    from triage.app.progress import Transfer

log = logging.getLogger(__name__)

COLLECTOR = "triage.collectors.volume"
COLLECTOR_VERSION = "1.0"
EXPAND = {
    "%SystemRoot%": "Windows",
    "%ProgramData%": "ProgramData",
    "%ProgramFiles(x86)%": "Program Files (x86)",
    "%ProgramFiles%": "Program Files",
    "%Users%": "Users",
}
ADS_KIND = "file"  # an alternate data stream can hide anything: the content analyzers (YARA) take 'file'


@dataclass
class CollectStats:
    """Counts of one collection, for the summary and the custody log."""

    outcomes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    files: int = 0
    skipped_duplicates: int = 0
    hosts: set[str] = field(default_factory=set)
    exchange: dict[str, str] = field(default_factory=dict)
    images: list[dict[str, object]] = field(default_factory=list)  # disk images: format and verification
    examinable: int = 0  # stored artifacts an analyzer reads as evidence (not unknown bytes or plain text)
    duplicates: int = 0  # identical files from another source of the same host, stored once
    containers: list[dict[str, object]] = field(default_factory=list)  # containers opened inside sources

    def add(self, row: ManifestRow) -> None:
        self.outcomes[row.outcome] += 1
        if row.outcome in ("success", "empty"):
            self.kinds[row.kind] += 1
            self.files += 1
            self.bytes += row.size or 0
        if row.outcome == "duplicate":
            self.duplicates += 1
        if row.outcome in ("success", "duplicate") and is_examinable(row):
            self.examinable += 1

    def already(self, row: ManifestRow) -> None:
        """An artifact an earlier run already stored (a rerun resumes): it still counts as examinable."""
        self.skipped_duplicates += 1
        if row.outcome == "success" and is_examinable(row):
            self.examinable += 1

    @property
    def failures(self) -> int:
        return self.outcomes.get("failure", 0)

    def as_dict(self) -> dict[str, object]:
        return (
            {
                "outcomes": dict(self.outcomes),
                "kinds": dict(self.kinds),
                "bytes": self.bytes,
                "files": self.files,
                "already_collected": self.skipped_duplicates,
                "examinable": self.examinable,
                "stored_once": self.duplicates,
                "hosts": sorted(self.hosts),
                "exchange": self.exchange,
            }
            | ({"images": self.images} if self.images else {})
            | ({"containers": self.containers} if self.containers else {})
        )


NOT_EXAMINABLE_KINDS = {"file", "collection", ADS_KIND}


def is_examinable(row: ManifestRow) -> bool:
    """A stored artifact an analyzer reads as evidence: a declared family's kind, or a recognised format."""
    fmt = (row.extra or {}).get("format")
    if fmt is not None:
        return fmt != "unknown" or (row.kind == "memory_image" and (row.size or 0) >= MEMORY_MIN)
    return row.kind not in NOT_EXAMINABLE_KINDS


PLAN_MAX = 100_000  # files planned at most before copying them: a huge tree is planned and copied in parts
# threads copying small files: 1 (one at a time) unless asked. Measured on 6,025 small files on 2 busy cores: two
# threads took 1.5-2x the CPU of one (user 4.0-5.3 s, sys 7.8-9.2 s against 2.2-2.5 and 1.6-1.8) and 1.6-4.8x its
# wall time, since each thread's many short system calls wait for the GIL the other holds (futex hand-offs)
COPY_THREADS = int(os.environ.get("TRIAGE_COPY_THREADS", "1"))
COPY_WINDOW = 256  # steps handed to the copy threads ahead of the one being finished
# small files of folders on disk are copied by a helper process (triage.copyhelper) when a plan holds this many;
# it is started as the walk finds the HELPER_MIN-th one and copies while the walk goes on
HELPER_MIN = int(os.environ.get("TRIAGE_COPY_HELPER_MIN", "256"))
HELPER_WINDOW = 2048  # copies asked for ahead of the step being run (or, during the walk, not yet run)
PARALLEL_MAX = 4 << 20  # larger files are copied one at a time (their own hashing already runs in threads)


def _advance(progress: Transfer | None) -> Callable[[int], None] | None:
    return progress.advance if progress is not None else None


def _done(progress: Transfer | None, skipped: int = 0) -> None:
    """One planned file is over (``skipped``: its bytes, when an earlier run already stored it)."""
    if progress is not None:
        if skipped:
            progress.advance(skipped)
        progress.file_done()


def _gate(case: Case) -> None:
    """Wait for this step's turn when copies run in threads (rows and counts keep the plan's order)."""
    if case.row_gate is not None:
        case.row_gate()


def _listed_size(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:  # gone since it was listed: its failure row says so when its turn comes
        return 0


def _store_node(
    case: Case,
    node: VNode,
    *,
    host: str,
    kind: str,
    family: str,
    drive: str,
    parts: tuple[str, ...],
    source: Source,
    stats: CollectStats,
    progress: Transfer | None,
) -> None:
    if node.kind == FILE:
        prior = case.already_collected(host, node.source_path, node.size, node.mtime)
        if prior is not None:
            _gate(case)
            stats.already(prior)
            _done(progress, node.size or 0)  # planned, found done by an earlier run
            return
        extra = _node_extra(node) or {}
        record = source.tool_records.get((drive, "/".join(parts).casefold())) if source.tool_records else None
        if record is not None:
            extra["tool_record"] = record
        row = store_once(
            case,
            node.open,
            host=host,
            kind=kind,
            logical_parts=[drive, *parts],
            source_path=node.source_path,
            collector=COLLECTOR,
            collector_version=COLLECTOR_VERSION,
            source_type=source.source_type,
            family=family,
            mtime=node.mtime,
            atime=node.atime,
            expected_size=node.size,
            extra=extra or None,
            algos=(*DEFAULT_ALGOS, "sha1") if record is not None and record.get("sha1") else DEFAULT_ALGOS,
            progress=_advance(progress),
        )
        _done(progress)
        if node.streams_fn is not None:
            # alternate data streams (images only): each one its own artifact, ``name:stream``, kind 'file'
            for stream in node.streams_fn():
                if progress is not None:  # found only now: the totals grow
                    progress.plan(1, stream.size or 0)
                _store_node(
                    case,
                    stream,
                    host=host,
                    kind=ADS_KIND,
                    family=family,
                    drive=drive,
                    parts=(*parts[:-1], stream.name),
                    source=source,
                    stats=stats,
                    progress=progress,
                )
    else:
        _done(progress)
        reason = node.detail or f"not a regular file ({node.kind})"
        if node.kind == UNSAFE:
            reason = node.detail
        row = case.record_attempt(
            host=host,
            kind=kind,
            outcome="failure",
            source_path=node.source_path,
            collector=COLLECTOR,
            collector_version=COLLECTOR_VERSION,
            details=reason,
            source_type=source.source_type,
            family=family,
        )
    stats.add(row)


def _node_extra(node: VNode) -> dict[str, object] | None:
    if node.extra_fn is None:
        return None
    try:
        return node.extra_fn()
    except Exception as exc:  # facts are a bonus: their absence never costs the artifact
        return {"extra_error": f"{type(exc).__name__}: {exc}"}


def record_source_failures(case: Case, source: Source, *, host: str, stats: CollectStats) -> None:
    """Failure rows for problems met while reading the source (corrupt MFT entries, unreadable volumes)."""
    while source.failures:
        path, details = source.failures.pop(0)
        stats.add(
            case.record_attempt(
                host=host,
                kind="collection",
                outcome="failure",
                source_path=path,
                collector=COLLECTOR,
                collector_version=COLLECTOR_VERSION,
                details=details,
                source_type=source.source_type,
            )
        )


def _pattern_base(pattern: str) -> list[str]:
    """The literal folder a pattern starts from (for telling 'missing' from 'empty')."""
    base = []
    for seg in pattern.split("/"):
        if any(ch in seg for ch in "*?[{"):
            break
        base.append(seg)
    return base


class _Turns:
    """Steps run by several threads, finished in plan order: a step's thread copies at once, then waits for its
    turn (:meth:`wait`, through ``Case.row_gate``) before it writes its row or counts anything. Each turn is
    handed to the next step alone (one event per ticket), never to every waiting thread at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: dict[int, threading.Event] = {}
        self.next = 0
        self.aborted = False
        self.local = threading.local()
        self._event(0).set()

    def _event(self, ticket: int) -> threading.Event:
        with self.lock:
            ev = self.events.get(ticket)
            if ev is None:
                ev = self.events[ticket] = threading.Event()
                if self.aborted:
                    ev.set()
            return ev

    def _turn(self, ticket: int) -> None:
        self._event(ticket).wait()
        if self.aborted:
            raise _Aborted

    def _advance(self) -> None:
        with self.lock:
            self.events.pop(self.next, None)
            self.next += 1
        self._event(self.next).set()

    def wait(self) -> None:
        ticket = getattr(self.local, "ticket", None)
        if ticket is None or self.local.holding:
            return
        self._turn(ticket)
        self.local.holding = True

    def run(self, ticket: int, fn: Callable[..., None], args: tuple[object, ...], kw: dict[str, object]) -> None:
        self.local.ticket, self.local.holding = ticket, False
        try:
            fn(*args, **kw)
            self.wait()  # a step that wrote no row (already collected) still ends in its turn
        finally:
            held = self.local.holding
            self.local.ticket = None
            if held or not self.aborted:
                if not held:  # it failed before its turn: the steps before it still finish first
                    self._event(ticket).wait()
                self._advance()

    def main_turn(self, ticket: int) -> None:
        self._turn(ticket)

    def main_done(self) -> None:
        self._advance()

    def abort(self) -> None:
        with self.lock:
            self.aborted = True
            events = list(self.events.values())
        for ev in events:
            ev.set()


class _Aborted(Exception):
    """The plan stopped (an error or Ctrl-C in another step): a waiting step writes nothing."""


class _Deferred:
    """The progress of a step run by a worker thread: bytes are counted here and passed on in the step's turn."""

    def __init__(self, progress: Transfer) -> None:
        self.progress, self.pending = progress, 0

    def plan(self, files: int, nbytes: int) -> None:
        self.progress.plan(files, nbytes)

    def advance(self, nbytes: int) -> None:
        self.pending += nbytes

    def file_done(self) -> None:
        self.progress.advance(self.pending)
        self.pending = 0
        self.progress.file_done()


class _Plan:
    """A collection's steps in their order, walked before any is run, so the progress knows the files and bytes
    to copy before the first copy (a tree of more than :data:`PLAN_MAX` files is planned and run in parts).

    Small files of folders on disk are copied by :data:`COPY_THREADS` threads (the copy, the hashes and the
    file system's create latency overlap); rows, custody events and counts are still written one by one in plan
    order, so the manifest is the same as a sequential run's."""

    def __init__(self, case: Case, stats: CollectStats, progress: Transfer | None) -> None:
        self.case, self.stats, self.progress = case, stats, progress
        self.steps: list[tuple[Callable[..., None], tuple[object, ...], dict[str, object], bool]] = []
        self.files = self.bytes = 0
        self.parallel = 0  # steps of self.steps that may be copied elsewhere (a thread, the helper process)
        self.helper: copyhelper.CopyHelper | None = None  # copying self.steps[:self.offered] that it was asked for
        self.offered = 0  # steps looked at for the helper (asked of it, or left to copy in this process)
        self.asked: set[str] = set()  # logical keys asked for: a second one may be a duplicate, not a copy
        self.folders: dict[tuple[str, str, str, tuple[str, ...]], str] = {}  # (host, kind, drive, folder) -> stored
        self.no_helper = COPY_THREADS >= 2 or not copyhelper.enabled()

    def copy(
        self, size: int | None, fn: Callable[..., None], *args: object, parallel: bool = False, **kw: object
    ) -> None:
        """A file to copy (``size``: as listed; the copy records what it read); ``parallel``: safe in a thread."""
        parallel = parallel and (size or 0) < PARALLEL_MAX
        self.steps.append((fn, args, kw, parallel))
        self.files += 1
        self.bytes += size or 0
        if parallel:
            self.parallel += 1
            if self.parallel >= HELPER_MIN and self.offered < HELPER_WINDOW and not self.no_helper:
                # copies start while the walk goes on; once the first window is asked for, no call per file
                self._offer(HELPER_WINDOW)
        if self.files >= PLAN_MAX:
            self.run()

    def _offer(self, upto: int) -> None:
        """Ask the helper (started now if need be) for the copies of the steps before ``upto`` not yet asked."""
        upto = min(upto, len(self.steps))
        if self.offered >= upto:
            return
        if self.helper is None:
            if self.no_helper:
                return
            try:
                self.helper = copyhelper.CopyHelper()
            except OSError as exc:  # no process could be started (limits): every copy in this process, as before
                log.warning("copy helper process not started (%s); copying in this process", exc)
                self.no_helper = True
                return
        steps, helper, case = self.steps, self.helper, self.case
        for fn, args, kw, parallel in steps[self.offered : upto]:
            if parallel and fn is _store_node:
                _ask_helper(case, helper, self.asked, self.folders, *args, **kw)  # type: ignore[arg-type]
        self.offered = upto

    def close(self) -> None:
        """Stop the helper, if one was started; copies it made and no step took are removed, as recover() would."""
        helper, self.helper = self.helper, None
        self.offered = 0
        self.asked = set()
        if helper is not None:
            self.case.copier = None
            for path in helper.close():
                self.case._prune_empty(Path(path).parent)

    def attempt(self, **kw: object) -> None:
        """A row that stores nothing (missing, empty, failure), in its place among the copies."""
        self.steps.append((self._attempt, (), kw, False))

    def _attempt(self, **kw: object) -> None:
        self.stats.add(self.case.record_attempt(**kw))  # type: ignore[arg-type]

    def run(self) -> None:
        if self.helper is not None:
            try:
                self._run_with_helper()
            finally:
                self.close()
            return
        steps, self.steps = self.steps, []
        if self.progress is not None and self.files:
            self.progress.plan(self.files, self.bytes)
        self.files = self.bytes = self.parallel = 0
        if COPY_THREADS < 2 or sum(1 for step in steps if step[3]) < 2:
            for fn, args, kw, _ in steps:
                fn(*args, **kw)
            return
        from concurrent.futures import ThreadPoolExecutor  # loaded by a threaded collection only

        self.case.already_collected("", "", None, None)  # the indexes are built here, not in a worker
        _stored_index(self.case)
        turns = _Turns()
        inflight: collections.deque[Future[None]] = collections.deque()
        pool = ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="triage-copy")
        self.case.row_gate = turns.wait
        try:
            for ticket, (fn, args, kw, parallel) in enumerate(steps):
                if parallel:
                    if self.progress is not None:
                        kw = {**kw, "progress": _Deferred(self.progress)}
                    inflight.append(pool.submit(turns.run, ticket, fn, args, kw))
                    while len(inflight) > COPY_WINDOW:
                        inflight.popleft().result()
                    continue
                turns.main_turn(ticket)
                while inflight:  # all done by now: their errors surface in order
                    inflight.popleft().result()
                try:
                    fn(*args, **kw)
                finally:
                    turns.main_done()
            while inflight:
                inflight.popleft().result()
        except BaseException:
            turns.abort()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.case.row_gate = None

    def _run_with_helper(self) -> None:
        """Run the steps in order while the helper process makes the copies of the next :data:`HELPER_WINDOW`
        small files (:mod:`triage.copyhelper`): its copies overlap the rows and custody events of the ones before."""
        steps = self.steps
        if self.progress is not None and self.files:
            self.progress.plan(self.files, self.bytes)
        self.files = self.bytes = self.parallel = 0
        self.case.copier = self.helper
        try:
            for i, (fn, args, kw, _parallel) in enumerate(steps):
                if self.offered <= i + HELPER_WINDOW // 2:  # asked in slices: each a few request frames
                    self._offer(i + HELPER_WINDOW)
                fn(*args, **kw)
        finally:
            self.steps = []


def _ask_helper(
    case: Case,
    helper: copyhelper.CopyHelper,
    asked: set[str],
    folders: dict[tuple[str, str, str, tuple[str, ...]], str],
    _case: Case,
    node: VNode,
    *,
    host: str,
    kind: str,
    drive: str,
    parts: tuple[str, ...],
    source: Source,
    **_kw: object,
) -> None:
    """Ask the helper for the copy :func:`_store_node` will store, when it is a plain copy (not already collected,
    not a possible duplicate of a stored file); else the step copies in this process as before."""
    if node.kind != FILE or case.already_collected(host, node.source_path, node.size, node.mtime) is not None:
        return
    # the folder's components are Case._components' for every file of one folder: sanitised once per folder
    last = parts[-1] if parts else ""
    held = folders.get((host, kind, drive, parts[:-1])) if last not in ("", ".") else None
    if held is not None:
        name = safe_component(last)
        if escapes_folder(name):  # as Case._components refuses it
            return
        folder = held
    else:
        try:
            comps = case._components(host, kind, [drive, *parts])
        except ValueError:  # the step meets the same error itself and records it
            return
        folder, name = "/".join(comps[:-1]), comps[-1]
        if last not in ("", "."):  # a dropped last part would make another component the name
            folders[(host, kind, drive, parts[:-1])] = folder
    key = f"{folder}/{name}".casefold()  # what _store_key gives, from the same sanitised components
    if key in asked or key in _stored_index(case):
        return
    where = f"{case._root}/{folder}"
    try:
        case.ensure_folder(where)
    except OSError:
        return
    asked.add(key)
    record = source.tool_records.get((drive, "/".join(parts).casefold())) if source.tool_records else None
    algos = (*DEFAULT_ALGOS, "sha1") if record is not None and record.get("sha1") else DEFAULT_ALGOS
    helper.ask(node.source_path, where, name, node.atime, node.mtime, node.size, algos, key=key)


def collect_volume(
    case: Case,
    source: Source,
    *,
    host: str | None,
    families: list[Family] | None = None,
    progress: Transfer | None = None,
    stats: CollectStats | None = None,
) -> CollectStats:
    """Collect every declared family from each drive of a volume-like source: the declared paths are walked
    first (the plan: files and bytes to copy, missing and unreadable paths), then copied in that order."""
    stats = stats or CollectStats()
    with case.batch():
        return _collect_volume(case, source, host=host, families=families, progress=progress, stats=stats)


def _collect_volume(
    case: Case,
    source: Source,
    *,
    host: str | None,
    families: list[Family] | None,
    progress: Transfer | None,
    stats: CollectStats,
) -> CollectStats:
    families = families if families is not None else load_families()
    if not source.drives:
        raise ValueError(f"{source.location}: no volume found in this source ({'; '.join(source.notes)})")
    sysdrive = next((d for d, r in source.drives.items() if r.child("Windows") is not None), next(iter(source.drives)))
    sysroot = source.drives[sysdrive]
    if not host:
        host = computer_name(sysroot) or source.host_hint
        if not host:
            host = "unknown-host"
            log.warning("%s: no host name given (--host) or found in the SYSTEM hive; using %r", source.location, host)
    host = safe_host(host)
    stats.hosts.add(host)
    for note in source.notes:
        case.custody.append("note", source=source.location, note=note)
    for letter, root in source.drives.items():
        # a volume whose root cannot be listed (corrupt root $I30, image cut short) costs only itself, loudly:
        # the families below would otherwise skip that drive as if it held nothing
        try:
            if not root.children() and source.image is not None:
                # an NTFS root always lists $MFT, $Boot ...: nothing at all means its index could not be read
                raise OSError("the NTFS root index lists nothing (corrupt root $I30 or MFT entry 5?)")
        except OSError as exc:
            log.warning("%s: drive %s: the root folder cannot be listed: %s", source.location, letter, exc)
            stats.add(
                case.record_attempt(
                    host=host,
                    kind="collection",
                    outcome="failure",
                    source_path=root.source_path,
                    collector=COLLECTOR,
                    collector_version=COLLECTOR_VERSION,
                    details=f"drive {letter}: the root folder cannot be listed, nothing on it was read: {exc}",
                    source_type=source.source_type,
                )
            )
    plan = _Plan(case, stats, progress)
    try:
        _plan_families(case, plan, source, families, host=host, sysdrive=sysdrive, stats=stats, progress=progress)
        plan.run()
    finally:
        plan.close()  # a walk or a run that stopped (an error, Ctrl-C) leaves no helper behind
    record_source_failures(case, source, host=host, stats=stats)
    return stats


def _plan_families(
    case: Case,
    plan: _Plan,
    source: Source,
    families: list[Family],
    *,
    host: str,
    sysdrive: str,
    stats: CollectStats,
    progress: Transfer | None,
) -> None:
    """Walk every declared family's paths on the source's drives into ``plan``: files to copy, missing paths,
    folders that cannot be listed."""
    sysroot = source.drives[sysdrive]
    ex = None
    claimed: set[str] = set()
    for fam in families:
        roots: list[tuple[str, VNode, str]] = []
        for pattern in fam.paths:
            for var, val in EXPAND.items():
                pattern = pattern.replace(var, val)
            if "%ExchangeInstallPath%" in pattern:
                if ex is None:
                    ex = exchange_root(source.drives, sysdrive, EXPAND)
                    stats.exchange = {"how": ex.how, "detail": ex.detail, "root": "/".join(ex.parts or ())}
                    case.custody.append(
                        "locate",
                        what="exchange_install_root",
                        host=host,
                        how=ex.how,
                        root="\\".join(ex.parts or ()),
                        detail=ex.detail,
                    )
                if ex.parts is None:
                    plan.attempt(
                        host=host,
                        kind=fam.kind,
                        outcome="missing",
                        source_path=f"{source.location}::{pattern}",
                        collector=COLLECTOR,
                        collector_version=COLLECTOR_VERSION,
                        source_type=source.source_type,
                        family=fam.name,
                        details=f"Exchange install root not found: {ex.detail}",
                    )
                    continue
                pattern = pattern.replace("%ExchangeInstallPath%", "/".join(ex.parts))
                roots.append((ex.drive, source.drives[ex.drive], pattern))
                continue
            roots.append((sysdrive, sysroot, pattern))
        # the source's other drives (an image's D:, a KAPE D/ folder): the same declarations, collected where
        # the declared folder exists there, without 'missing' rows for the drives that lack it
        others = [
            (d, r, pattern, True)
            for _drive, _root, pattern in roots
            for d, r in source.drives.items()
            if d != _drive and resolve(r, _pattern_base(pattern)) is not None
        ]
        for drive, root, pattern, optional in [*((d, r, p, False) for d, r, p in roots), *others]:
            alternatives = expand_braces(pattern)
            literal = all(not any(ch in a for ch in "*?[") for a in alternatives)
            groups = [[a] for a in alternatives] if literal else [[pattern]]
            for group in groups:
                errors: list[str] = []
                found = 0
                for pat in group:
                    for m in glob(root, pat, errors=errors):
                        if m.node.kind == DIR:
                            continue
                        found += 1
                        if m.node.source_path in claimed:
                            continue
                        claimed.add(m.node.source_path)
                        plan.copy(
                            m.node.size if m.node.kind == FILE else 0,
                            _store_node,
                            case,
                            m.node,
                            host=host,
                            kind=fam.kind,
                            family=fam.name,
                            drive=drive,
                            parts=m.parts,
                            source=source,
                            stats=stats,
                            progress=progress,
                            parallel=m.node.on_disk and m.node.streams_fn is None,
                        )
                for err in errors:
                    log.warning("%s", err)
                    plan.attempt(
                        host=host,
                        kind=fam.kind,
                        outcome="failure",
                        source_path=err.split(": cannot list")[0],
                        collector=COLLECTOR,
                        collector_version=COLLECTOR_VERSION,
                        details=err,
                        source_type=source.source_type,
                        family=fam.name,
                    )
                if not found and not errors and not optional:
                    base = _pattern_base(group[0])
                    node = resolve(root, base)
                    exists = node is not None and node.kind == DIR and group[0].endswith("**")
                    outcome = "empty" if exists else "missing"
                    details = "folder exists but holds no files" if exists else "no file matches this path"
                    plan.attempt(
                        host=host,
                        kind=fam.kind,
                        outcome=outcome,
                        source_path=f"{drive}:/{group[0]}",
                        collector=COLLECTOR,
                        collector_version=COLLECTOR_VERSION,
                        details=details,
                        source_type=source.source_type,
                        family=fam.name,
                    )


def guess_kind(path: str) -> str:
    """A loose file's kind from its name alone (the recogniser's fallback when the bytes say nothing)."""
    return kind_by_name(os.path.basename(path))


# -- one host, many sources: identical files stored once -------------------------------------------------------
_INDEXES: dict[int, tuple[Case, dict[str, ManifestRow]]] = {}


def _logical_key(relpath: str) -> str:
    # evidence/HOST/KIND/C/dir/name~2.ext -> the key without the collision suffix, casefolded as NTFS compares
    head, _, name = relpath.rpartition("/")
    stem, dot, ext = name.rpartition(".") if "." in name else (name, "", "")
    stem = re.sub(r"~\d+$", "", stem)
    return f"{head}/{stem}{dot}{ext}".casefold()


def _stored_index(case: Case) -> dict[str, ManifestRow]:
    held = _INDEXES.get(id(case))
    if held is None or held[0] is not case:
        index: dict[str, ManifestRow] = {}
        for row in case.manifest():
            if row.outcome in ("success", "empty") and row.relpath and row.storage == "copy":
                index.setdefault(_logical_key(row.relpath), row)
        held = (case, index)
        _INDEXES.clear()  # one case at a time in a process (fleet hosts are collected one after another)
        _INDEXES[id(case)] = held
    return held[1]


def _store_key(host: str, kind: str, logical_parts: list[str]) -> str:
    """The logical path of an artifact in the case, as :func:`_stored_index` keys it."""
    parts = "/".join(safe_component(str(p)) for p in logical_parts if p not in ("", "."))
    return f"evidence/{safe_host(host)}/{safe_component(kind)}/{parts}".casefold()


def store_once(case: Case, opener: Callable[[], object], **kw: object) -> ManifestRow:
    """``Case.store``, unless the same host already has identical bytes at the same logical path.

    The same file reached through two sources of one host (its volume and its Velociraptor zip) is stored
    once: the second source gets a ``duplicate`` row naming the stored artifact, so the manifest records both
    sources and the analyzers read (and report) the file once.
    """
    index = _stored_index(case)
    copier = case.copier
    if copier is not None and (key := copier.keys.get(str(kw["source_path"]))) is not None:
        # asked of the helper process: no stored file has this logical path (checked when asked)
        row = case.store(opener, **kw)  # type: ignore[arg-type]
        if row.outcome in ("success", "empty") and row.relpath:
            index.setdefault(key, row)
        return row
    key = _store_key(str(kw["host"]), str(kw["kind"]), kw["logical_parts"])  # type: ignore[arg-type]
    prior = index.get(key)
    size = kw.get("expected_size")
    if prior is not None and kw.get("storage", "copy") == "copy" and size is not None and prior.size == size:
        try:
            with opener() as fh:  # type: ignore[attr-defined]
                _, digests = copy_hashing(fh, None, ("sha256",), kw.get("progress"))  # type: ignore[arg-type]
        except OSError:
            digests = {}
        _gate(case)
        if digests.get("sha256") == prior.sha256:
            host, kind = safe_host(str(kw["host"])), str(kw["kind"])
            extra = dict(kw.get("extra") or {})  # type: ignore[call-overload]
            extra["duplicate_of"] = prior.artifact_id
            row = ManifestRow(
                artifact_id=case.new_id(host, str(kw["source_path"]), utcnow()),
                kind=kind,
                outcome="duplicate",
                source_host=host,
                source_path=str(kw["source_path"]),
                collector=str(kw["collector"]),
                collector_version=str(kw["collector_version"]),
                collected_at=utcnow(),
                relpath=prior.relpath,
                size=prior.size,
                sha256=prior.sha256,
                md5=prior.md5,
                sha1=prior.sha1,
                source_type=str(kw.get("source_type", "")),
                family=str(kw.get("family", "")),
                details=f"identical to {prior.artifact_id} from {prior.source_path}: stored once",
                extra=extra,
            )
            case._write_row(row)  # the same row writer as every attempt: manifest line + custody event
            return row
    row = case.store(opener, **kw)  # type: ignore[arg-type]
    if row.outcome in ("success", "empty") and row.relpath:
        index.setdefault(key, row)
    return row


# -- loose files and container members --------------------------------------------------------------------------
def _open_nested(
    case: Case,
    path: str | None,
    *,
    node: VNode | None,
    parent: Source,
    rec: Recognition,
) -> Source | str:
    """Open a container found among loose artifacts; the reason (a string) when it cannot be opened."""
    from collectors.sources import _zip_source, open_source_path
    from collectors.vfs import ContainerLimit, ZipLimits
    from triage.errors import TriageError

    limits = ZipLimits.from_env()
    if parent.depth + 1 > limits.depth:
        return f"container nested deeper than {limits.depth} levels (TRIAGE_MAX_DEPTH raises it); not opened"
    try:
        if path is not None:
            return open_source_path(path, "auto", depth=parent.depth + 1)
        assert node is not None
        if rec.format != "zip":
            # the image readers need random access to the file, which a compressed zip member does not give
            return (
                f"a {rec.format} disk image inside a zip is not opened (a zip member cannot be read at random "
                "offsets, as an image reader needs); it is stored as it is: extract it and give it as a source"
            )
        # spooled into an unnamed temporary file: a zip reader seeks back and forth, and every backward seek in
        # a compressed member stream would inflate it again from its start
        spool = tempfile.TemporaryFile(dir=os.environ.get("TRIAGE_TMPDIR") or None)  # noqa: SIM115 - closed below
        try:
            with node.open() as member:
                copy_hashing(member, spool, ())
            spool.seek(0)
            src = _zip_source(node.source_path, as_type="auto", fh=spool, depth=parent.depth + 1, limits=limits)
        except BaseException:
            spool.close()
            raise
        src._closers.append(spool.close)
        return src
    except ContainerLimit as exc:
        return str(exc)
    except TriageError as exc:
        return str(exc)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        return f"cannot be opened as a {rec.format}: {type(exc).__name__}: {str(exc)[:160]}"


def _collect_nested(
    case: Case,
    nested: Source,
    *,
    host: str | None,
    origin: str,
    link: str | None,
    progress: Transfer | None,
    stats: CollectStats,
) -> bool:
    """Collect a container found among loose artifacts; True when the container itself should be kept too.

    A collection (volume, KAPE, Velociraptor, disk image) is not stored twice; a zip that held loose files is
    also kept as itself, since an archive in a folder of evidence may be an intruder's staging.
    """
    segments = [os.path.basename(s) for s in nested.image.segments] if nested.image is not None else []
    case.custody.append(
        "container_open",
        source=origin,
        source_type=nested.source_type,
        depth=nested.depth,
        notes=nested.notes[:20],
        **({"segments": segments} if segments else {}),
    )
    stats.containers.append({"source": origin, "type": nested.source_type, "depth": nested.depth})
    try:
        collect_source(case, nested, host=host, link=link, progress=progress, stats=stats)
    finally:
        nested.close()
    return nested.source_type == "zip" and (nested.stored_loose > 0 or not nested.members)


def collect_source(
    case: Case,
    source: Source,
    *,
    host: str | None,
    kind: str | None = None,
    link: str | None = None,
    progress: Transfer | None = None,
    stats: CollectStats | None = None,
) -> CollectStats:
    """Collect whatever a source holds: drives (declared families), loose files, container members."""
    stats = stats or CollectStats()
    if source.drives:
        collect_volume(case, source, host=host, progress=progress, stats=stats)
        return stats
    if source.files or source.members:
        if not host and len(stats.hosts) == 1:
            host = next(iter(stats.hosts))
        collect_files(case, source, host=host, kind=kind, link=link, progress=progress, stats=stats)
        return stats
    why = "; ".join(source.notes) or "nothing to collect"
    stats.add(
        case.record_attempt(
            host=safe_host(host or source.host_hint or "unknown-host"),
            kind="collection",
            outcome="failure",
            source_path=source.location,
            collector=COLLECTOR,
            collector_version=COLLECTOR_VERSION,
            details=f"no Windows volume or loose artifact found: {why}",
            source_type=source.source_type,
        )
    )
    return stats


def collect_files(
    case: Case,
    source: Source,
    *,
    host: str | None,
    kind: str | None = None,
    link: str | None = None,
    progress: Transfer | None = None,
    stats: CollectStats | None = None,
) -> CollectStats:
    """Collect loose files, container members and memory images (``link``: None to copy, 'reference' or
    'hardlink'). Each file's kind comes from its bytes (``triage.formats.recognize``), its name breaking ties;
    containers among them (zips, disk images) are opened in place and collected like any source."""
    stats = stats or CollectStats()
    with case.batch():
        return _collect_files(case, source, host=host, kind=kind, link=link, progress=progress, stats=stats)


def _collect_files(
    case: Case,
    source: Source,
    *,
    host: str | None,
    kind: str | None,
    link: str | None,
    progress: Transfer | None,
    stats: CollectStats,
) -> CollectStats:
    # containers first: a volume or collection inside one names the host that the loose files then share
    given = host
    recs: dict[int, Recognition] = {}
    override: dict[int, str] = {}  # containers kept as themselves (suspicious_file)
    done: set[int] = set()  # containers fully collected through their content
    failed: list[tuple[str, Recognition, str]] = []
    # segments of a disk image opened from this folder (E02.., .002.., VMDK extents): read through the image,
    # so neither opened again as images of their own nor stored as loose files
    key_of = {os.path.abspath(p): id(p) for p in source.files}
    consumed: set[int] = set()
    if kind is None and source.source_type != "memory" and source.open_containers:
        for key, origin, opener_path, node in [
            *((id(p), p, p, None) for p in source.files),
            *((id(n), n.source_path, None, n) for _, n in source.members if n.kind == FILE),
        ]:
            if key in consumed:
                continue
            rec = source.recognized.get(origin) or (
                recognize_node(node) if node is not None else recognize_path(origin)
            )
            recs[key] = rec
            if not rec.container:
                continue
            nested = _open_nested(case, opener_path, node=node, parent=source, rec=rec)
            override[key] = "suspicious_file"
            if isinstance(nested, str):
                failed.append((origin, rec, nested))
                continue
            segments = [os.path.abspath(s) for s in nested.image.segments] if nested.image is not None else []
            if _collect_nested(case, nested, host=given, origin=origin, link=link, progress=progress, stats=stats):
                continue
            done.add(key)
            for seg in segments:
                if seg in key_of and key_of[seg] != key:
                    consumed.add(key_of[seg])
                    done.add(key_of[seg])
    if not given and len(stats.hosts) == 1:
        given = next(iter(stats.hosts))
    host = safe_host(given or "unknown-host")
    stats.hosts.add(host)
    for note in source.notes:
        case.custody.append("note", source=source.location, note=note)
    record_source_failures(case, source, host=host, stats=stats)
    for origin, rec, reason in failed:
        stats.add(_container_failure(case, host, origin, rec, reason, source))
    base = source.location if source.source_type == "files" and os.path.isdir(source.location) else None
    if progress is not None:  # the totals before the first copy (the sources listed these files already)
        files = [p for p in source.files if id(p) not in done]
        members = [n for _, n in source.members if id(n) not in done and n.kind == FILE]
        progress.plan(len(files) + len(members), sum(map(_listed_size, files)) + sum(n.size or 0 for n in members))
    for path in source.files:
        if id(path) in done:
            continue
        rel = os.path.relpath(path, base) if base else os.path.basename(path)
        try:
            st = os.lstat(path)
            problem = None if stat.S_ISREG(st.st_mode) else "not a regular file (link, device, fifo or socket)"
        except OSError as exc:  # gone since it was listed
            problem = f"{type(exc).__name__}: {exc}"
        loose_rec = (
            None if problem or kind else (recs.get(id(path)) or source.recognized.get(path) or recognize_path(path))
        )
        k = kind or override.get(id(path)) or ("memory_image" if source.source_type == "memory" else None)
        k = k or (loose_rec.kind if loose_rec else guess_kind(path))
        if k == "container":  # not opened (--as files): kept as it is
            k = "suspicious_file"
        if problem:  # reading a fifo would block forever; links are never followed
            _done(progress)
            row = case.record_attempt(
                host=host,
                kind=k,
                outcome="failure",
                source_path=path,
                collector="triage.collectors.files",
                collector_version=COLLECTOR_VERSION,
                details=problem,
                source_type=source.source_type,
                family="memory" if k == "memory_image" else "loose",
            )
            stats.add(row)
            continue
        prior = case.already_collected(host, path, st.st_size, st.st_mtime)
        if prior is not None:
            stats.already(prior)
            _done(progress, st.st_size)
            continue
        storage = link or "copy"
        parts = ["memory" if k == "memory_image" else "loose", *Path(rel).parts]
        row = store_once(
            case,
            functools.partial(open_source, path),
            host=host,
            kind=k,
            logical_parts=parts,
            source_path=path,
            collector="triage.collectors.files",
            collector_version=COLLECTOR_VERSION,
            source_type=source.source_type,
            family="memory" if k == "memory_image" else "loose",
            mtime=st.st_mtime,
            atime=st.st_atime,
            expected_size=st.st_size,
            storage=storage,
            reference_path=path if storage != "copy" else None,
            extra=loose_rec.as_extra() if loose_rec is not None else None,
            progress=_advance(progress),
        )
        _done(progress)
        stats.add(row)
        source.stored_loose += 1
    for parts_in, node in source.members:
        if id(node) in done:
            continue
        _collect_member(
            case,
            source,
            node,
            parts_in,
            host=host,
            kind=kind or override.get(id(node)),
            rec=recs.get(id(node)) or source.recognized.get(node.source_path) or recognize_node(node),
            progress=progress,
            stats=stats,
        )
    return stats


def _container_failure(case: Case, host: str, path: str, rec: Recognition, reason: str, source: Source) -> ManifestRow:
    log.warning("%s: %s", path, reason)
    return case.record_attempt(
        host=host,
        kind="collection",
        outcome="failure",
        source_path=path,
        collector=COLLECTOR,
        collector_version=COLLECTOR_VERSION,
        details=f"{rec.format} container not opened: {reason}",
        source_type=source.source_type,
    )


def _collect_member(
    case: Case,
    source: Source,
    node: VNode,
    parts_in: tuple[str, ...],
    *,
    host: str,
    kind: str | None,
    rec: Recognition | None,
    progress: Transfer | None,
    stats: CollectStats,
) -> None:
    """One loose member of a container (a zip of loose artifacts)."""
    if node.kind != FILE:
        stats.add(
            case.record_attempt(
                host=host,
                kind=kind or guess_kind(node.name),
                outcome="failure",
                source_path=node.source_path,
                collector="triage.collectors.files",
                collector_version=COLLECTOR_VERSION,
                details=node.detail or f"not a regular file ({node.kind})",
                source_type=source.source_type,
                family="loose",
            )
        )
        return
    prior = case.already_collected(host, node.source_path, node.size, node.mtime)
    if prior is not None:
        stats.already(prior)
        _done(progress, node.size or 0)
        return
    k = kind or (rec.kind if rec else guess_kind(node.name))
    if k == "container":
        k = "suspicious_file"
    row = store_once(
        case,
        node.open,
        host=host,
        kind=k,
        logical_parts=["memory" if k == "memory_image" else "loose", *parts_in],
        source_path=node.source_path,
        collector="triage.collectors.files",
        collector_version=COLLECTOR_VERSION,
        source_type=source.source_type,
        family="memory" if k == "memory_image" else "loose",
        mtime=node.mtime,
        atime=node.atime,
        expected_size=node.size,
        extra=rec.as_extra() if rec is not None else None,
        progress=_advance(progress),
    )
    _done(progress)
    stats.add(row)
    source.stored_loose += 1
