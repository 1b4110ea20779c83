"""Runs (analyzer x evidence) units resumably, in a local process pool or on a dask cluster.

Units are sized to the work: small artifacts of one analyzer run together as a batch (:class:`BatchLimits`),
big ones and host-scope units alone. A single unit (:mod:`triage.unitrun`) writes
``results/<analyzer>/<evidence_id>.parquet`` (when it has findings) and then ``.run.json``; a batch writes one
``<batch_id>.parquet`` and a ``<batch_id>.batch.json`` with a row per artifact (layout: :mod:`triage.results`).
Every file goes through a temporary file and an atomic rename, so a run killed half way leaves only whole
results, and the next run skips every artifact whose row is done. Units reach the executors as typed
:class:`triage.tasks.UnitTask` records. A crashing analyzer, or a worker that dies, becomes an ``error`` row
with its traceback for that artifact only; the findings it had yielded before are kept.
"""

from __future__ import annotations

import _thread
import contextlib
import hashlib
import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from triage.case import Case, ManifestRow
from triage.custody import load_json, utcnow
from triage.executors import IN_PROCESS_UNITS, Executor, LocalPoolExecutor, UnitLimits
from triage.finding import storable_value
from triage.hashing import hash_file, sha256_bytes
from triage.registry import Analyzer, Declared, analyzers, declarations, iter_selected, load
from triage.results import BATCH_FORMAT, BATCH_SUFFIX, UNIT_SUFFIX, unit_records
from triage.tasks import UnitSpec, UnitTask
from triage.unitrun import (
    _atomic_write,
    _died_record,
    _instance,
    batch_paths,
    drop_instances,
    record_rows,
    result_paths,
    rewrite_batch,
    run_unit,
)

__all__ = [
    "AnalyzeSummary",
    "analyze_case",
    "analyze_cases",
    "analyzers",
    "drop_instances",
    "host_group",
    "result_paths",
    "run_unit",
    "warm_pool",
]

log = logging.getLogger(__name__)
DONE = ("success", "no_findings", "skipped")
# a unit's own progress as the caller sees it: (analyzer, evidence_id, done, total, text)
UnitProgress = Callable[[str, str, float, float, str], None]
# a unit's end as the caller sees it (any status, also one not run now): (analyzer, evidence_id)
UnitDone = Callable[[str, str], None]


@dataclass
class AnalyzeSummary:
    """The outcome of one ``triage analyze``."""

    run_id: str
    started: str
    finished: str = ""
    planned: int = 0
    reused: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    findings: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C: the units not run are left for the next run
    limits: dict[str, Any] = field(default_factory=dict)  # the per-unit bounds the units ran under

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["statuses"] = dict(self.statuses)
        return d


def _finished(
    case_dir: Path,
    analyzer: Analyzer,
    row: ManifestRow,
    why: dict[str, str] | None = None,
    run_id: str = "",
    rec: dict[str, Any] | None = None,
    hashes: dict[str, str] | None = None,
) -> bool:
    """Whether the unit's result on disk may be reused: a finished record of this analyzer, rules and evidence,
    and a result file whose hash is the one the record holds. ``why`` gets the reason a result is not
    trusted (replaced or deleted), for the custody log. ``rec``: the artifact's record (single or batch row),
    else its single-unit record is read; ``hashes`` caches the hash of each result file (a batch's parquet is
    shared by its rows)."""
    parquet, run = result_paths(case_dir, analyzer.name, row.artifact_id)
    if rec is None:
        try:
            rec = load_json(run.read_text())
        except (OSError, ValueError):
            return False
    if not isinstance(rec, dict) or not (
        rec.get("status") in DONE
        and rec.get("analyzer_version") == analyzer.version
        and rec.get("fingerprint") == analyzer.run_fingerprint(run_id)
        and rec.get("evidence_sha256") == row.sha256
    ):
        return False
    want = rec.get("result_sha256") or ""
    if not want:  # nothing was written (no findings, skipped), or a record of an older version
        if rec.get("status") == "skipped" or (rec.get("status") == "no_findings" and not rec.get("findings")):
            return _outputs_intact(case_dir, rec, why)
        return not rec.get("result_path") and parquet.exists()
    rel = str(rec.get("result_path") or parquet.relative_to(case_dir).as_posix())
    hashes = hashes if hashes is not None else {}
    if rel not in hashes:
        try:
            hashes[rel] = hash_file(case_dir / rel, ("sha256",))[1]["sha256"]
        except OSError:
            hashes[rel] = ""
    got = hashes[rel]
    if got != want:
        if why is not None:
            why["problem"] = "deleted" if not got else f"sha256 {got} != recorded {want}"
        return False
    return _outputs_intact(case_dir, rec, why)


def _outputs_intact(case_dir: Path, rec: dict[str, Any], why: dict[str, str] | None) -> bool:
    """The unit's side outputs (tables it stored) are all there with the hashes its record lists."""
    for out in rec.get("outputs") or []:
        try:
            got = hash_file(case_dir / str(out["path"]), ("sha256",))[1]["sha256"]
        except (OSError, KeyError, TypeError):
            got = ""
        if got != out.get("sha256"):
            if why is not None:
                why["problem"] = f"side output {out.get('path')} " + ("deleted" if not got else f"sha256 {got} changed")
            return False
    return True


def host_group(analyzer: str, host: str, members: list[ManifestRow], upstream: str = "") -> ManifestRow:
    """The stand-in evidence row of a host-scope unit: its hash covers every member's hash, and ``upstream`` (the
    digest of the results it reads, for an analyzer that declares ``after``)."""
    digest = hashlib.sha256()
    for m in sorted(members, key=lambda r: r.artifact_id):
        digest.update(f"{m.artifact_id}:{m.sha256}\n".encode())
    if upstream:
        digest.update(f"after:{upstream}\n".encode())
    return ManifestRow(
        artifact_id="H" + hashlib.sha256(f"{analyzer}\x00{host}".encode()).hexdigest()[:15],
        kind="host",
        outcome="success",
        source_host=host,
        source_path=f"{len(members)} artifacts of {host}",
        collector="triage.runner",
        collector_version="1",
        collected_at="",
        relpath="",
        sha256=digest.hexdigest(),
    )


@dataclass(frozen=True)
class BatchLimits:
    """How the runner sizes units: small artifacts of one analyzer (and case) run together as one batch.

    A batch holds at most ``count`` artifacts and ``bytes`` of evidence; an artifact of ``alone_bytes`` or more
    runs as a unit of its own (its bookkeeping is small beside its analysis), as does every artifact of an
    analyzer that declares ``batch = False`` and every host-scope unit. Batches are also kept small enough that
    each worker gets about ``per_worker`` of them, so a short list still spreads over the pool. ``count=1``
    turns batching off.
    """

    count: int = 256
    bytes: int = 64 << 20
    alone_bytes: int = 16 << 20
    per_worker: int = 4


# the sizing every analyze uses unless told otherwise (tests and the benchmark set their own)
DEFAULT_BATCHING = BatchLimits()


def _batches(rows: list[ManifestRow], limits: BatchLimits, workers: int) -> list[list[ManifestRow]]:
    """``rows`` in units: big artifacts alone, the small ones grouped in manifest order by count and bytes."""
    small = [r for r in rows if (r.size or 0) < limits.alone_bytes]
    units: list[list[ManifestRow]] = [[r] for r in rows if (r.size or 0) >= limits.alone_bytes]
    if limits.count <= 1:
        return units + [[r] for r in small]
    # about per_worker batches per worker when there are few artifacts, full batches when there are many
    count = max(1, min(limits.count, -(-len(small) // max(1, workers * limits.per_worker))))
    group: list[ManifestRow] = []
    size = 0
    for r in small:
        if group and (len(group) >= count or size + (r.size or 0) > limits.bytes):
            units.append(group)
            group, size = [], 0
        group.append(r)
        size += r.size or 0
    if group:
        units.append(group)
    # the biggest first (by bytes): the pool's last tasks are then its smallest, and no worker idles while
    # another finishes a big straggler (sorted is stable: equal sizes keep manifest order)
    return sorted(units, key=lambda g: -sum(r.size or 0 for r in g))


def _batch_id(analyzer: str, run_id: str, rows: list[ManifestRow]) -> str:
    digest = hashlib.sha256(f"{analyzer}\x00{run_id}\x00".encode())
    for r in rows:
        digest.update(f"{r.artifact_id}\n".encode())
    return "B" + digest.hexdigest()[:15]


class _Old(dict[str, tuple[Path, dict[str, Any]]]):
    """The record of each artifact that has one in an analyzer's folder, by evidence id; ``held``: the artifacts
    each record file holds a row of."""

    held: dict[Path, set[str]]


def _records_of(case_dir: Path, analyzer: str) -> _Old:
    """The record of each artifact that has one in the analyzer's folder (single or batch), by evidence id."""
    out = _Old()
    out.held = {}
    for path, rec in unit_records(case_dir, [analyzer]):
        eid = str(rec.get("evidence_id"))
        out[eid] = (path, rec)
        out.held.setdefault(path, set()).add(eid)
    return out


def _drop_old(case: Case, analyzer: str, old: _Old, ids: set[str]) -> None:
    """Before artifacts run again: their rows leave the batch files that hold them, so each artifact keeps one
    record (a batch whose rows all go is removed; the others are rewritten without them, atomically). A single
    unit's files are replaced by the unit itself, or removed here when it now runs in a batch. Removed files are
    moved aside at once and deleted in the background (:func:`_discard`)."""
    by_file: dict[Path, set[str]] = {}
    held = old.held
    for eid in ids:
        if eid in old:
            by_file.setdefault(old[eid][0], set()).add(eid)
    gone_files: list[Path] = []
    for path, gone in sorted(by_file.items()):
        rel = path.relative_to(case.path).as_posix()
        if path.name.endswith(BATCH_SUFFIX) and held[path] <= gone:  # every row goes (--force): no need to read it
            parquet = path.with_name(path.name[: -len(BATCH_SUFFIX)] + ".parquet")
            # the record first: a findings file without one is never read as a result
            gone_files += _discard([path, parquet])
            case.custody.append("result_superseded", analyzer=analyzer, record=rel, units=len(gone), kept=0)
        elif path.name.endswith(BATCH_SUFFIX):
            kept = rewrite_batch(case.path, path, gone)
            case.custody.append("result_superseded", analyzer=analyzer, record=rel, units=len(gone), kept=kept)
        else:  # a single unit's record (and findings) of an artifact that now runs in a batch
            parquet = path.with_name(path.name[: -len(UNIT_SUFFIX)] + ".parquet")
            gone_files += _discard([parquet, path])
            case.custody.append("result_superseded", analyzer=analyzer, record=rel, units=1, kept=0)
    _delete_later(gone_files)


def _discard(paths: list[Path]) -> list[Path]:
    """Move these result files aside, in order, under the temporary names every reader skips (a leading dot:
    ``results`` listings, the run's result hashes, ``verify``) and the next command's recovery removes if this
    one is killed first; returns the new names, for :func:`_delete_later`. A rename is a directory entry; the
    unlink of a just-written file cost about a millisecond of kernel time here, 50 ms for the 48 files of a
    re-run over 6,000 pages, serial before the first batch could start."""
    out = []
    for path in paths:
        # ".old": never the temporary name a writer uses for a new file of the same name (_atomic_write)
        aside = path.with_name(f".{path.name}.old.tmp-{os.getpid()}")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            continue
        out.append(aside)
    return out


_DELETING: list[Any] = []  # the locks of deletions running in the background (held until each is over)


def _delete_later(paths: list[Path]) -> None:
    """Delete these files in a bare background thread (an unlink releases the GIL: it overlaps the planning and
    the workers' start); :func:`_deleted` waits for it. Without a thread to be had, deleted here."""
    if not paths:
        return
    lock = _thread.allocate_lock()
    lock.acquire()

    def delete() -> None:
        try:
            for p in paths:
                with contextlib.suppress(OSError):
                    os.unlink(p)
        finally:
            lock.release()

    _DELETING.append(lock)
    try:
        _thread.start_new_thread(delete, ())
    except RuntimeError:
        delete()


def _deleted() -> None:
    """Wait until the background deletions are over (before the run record, and before a fork: no child starts
    while a thread it does not have is in the middle of one)."""
    while _DELETING:
        with _DELETING.pop():
            pass


os.register_at_fork(before=_deleted)


def stages(selected: Sequence[Declared]) -> list[list[Declared]]:
    """The selected analyzers in the order their ``after`` declarations ask for: each stage runs when the ones
    before it are done. An ``after`` name that is not selected is not waited for (its results on disk are read
    as they are); a ring of declarations is broken where it closes."""
    by_name = {c.name: c for c in selected}
    level: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str]) -> int:
        if name in level:
            return level[name]
        deps = [d for d in by_name[name].after if d in by_name and d not in seen]
        level[name] = 1 + max((depth(d, seen | {name}) for d in deps), default=-1)
        return level[name]

    for c in selected:
        depth(c.name, frozenset())
    out: list[list[Declared]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for c in selected:
        out[level[c.name]].append(c)
    return out


# the fields of an upstream unit's record that decide its results: not its times, worker or file layout (a batch
# or a single file), so the same analysis gives the same digest on any executor
_UPSTREAM_FIELDS = ("analyzer", "analyzer_version", "evidence_id", "evidence_sha256", "fingerprint", "status")


def _upstream(case: Case, cls: Declared | type[Analyzer]) -> dict[str, str]:
    """Per host, a digest of what the analyzers ``cls`` runs after have done for that host (empty when it declares
    none): per unit record, which evidence it analysed, with which rules and options, how it ended and the sha256 of
    each side table. Per host, so that adding another host to the case changes nothing of this one's units."""
    if not cls.after:
        return {}
    rows: dict[str, list[str]] = {}
    for _p, rec in unit_records(case.path, sorted(cls.after)):
        rows.setdefault(str(rec.get("host") or ""), []).append(
            json.dumps(
                [rec.get(k) for k in _UPSTREAM_FIELDS]
                + sorted(str(o.get("sha256")) for o in rec.get("outputs") or [] if isinstance(o, dict)),
                default=str,
            )
        )
    return {host: hashlib.sha256("\n".join(sorted(r)).encode()).hexdigest() for host, r in rows.items()}


@dataclass
class _Planned:
    """One case's share of an analyze_cases call."""

    case: Case
    summary: AnalyzeSummary
    selected: list[Declared]
    tasks: list[UnitTask]
    units: list[dict[str, Any]] = field(default_factory=list)  # per unit run now: who ran it
    # the rows of each batch record this run wrote, by its path: the run's result hashes need not parse them again
    written: dict[Path, list[dict[str, Any]]] = field(default_factory=dict)


def _plan(
    case: Case,
    selected: list[Declared],
    *,
    force: bool,
    plugins: tuple[str, ...],
    options: dict[str, dict[str, Any]],
    limits: UnitLimits,
    batching: BatchLimits,
    workers: int,
    summary: AnalyzeSummary | None = None,
) -> _Planned:
    summary = summary or AnalyzeSummary(
        run_id=f"run-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}",
        started=utcnow(),
        limits=limits.as_dict(),
    )
    rows = case.evidence()
    tasks: list[UnitTask] = []
    for decl in selected:
        units: list[tuple[ManifestRow, list[ManifestRow] | None]] = [(r, None) for r in rows if r.kind in decl.consumes]
        if decl.scope == "host":
            units = []
            upstream = _upstream(case, decl)
            for host in sorted({r.source_host for r in rows}):
                group = [r for r in rows if r.source_host == host and r.kind in decl.consumes]
                if group:
                    after = upstream.get(host, "none") if decl.after else ""
                    units.append((host_group(decl.name, host, group, after), group))
        if not units:  # nothing it consumes: its module is not even imported
            continue
        try:
            cls = load(decl.name, plugins)
        except KeyError as exc:  # its module failed to import (recorded in import_failures), as before
            log.warning("analyzer %s not run: %s", decl.name, exc)
            continue
        planner = _instance(cls, options.get(cls.name, {}))
        old = _records_of(case.path, cls.name)
        hashes: dict[str, str] = {}
        todo: list[tuple[ManifestRow, list[ManifestRow] | None]] = list(units) if force else []
        summary.planned += len(units) if force else 0
        for row, members in [] if force else units:  # --force: every unit runs, none is checked
            summary.planned += 1
            why: dict[str, str] = {}
            found = old.get(row.artifact_id)
            if not force and _finished(
                case.path, planner, row, why, summary.run_id, rec=found[1] if found else {}, hashes=hashes
            ):
                summary.reused += 1
                continue
            if why:  # a result on disk that is not the one recorded: say so before redoing it
                log.warning(
                    "%s on %s: %s; running the unit again",
                    cls.name,
                    row.artifact_id,
                    why["problem"]
                    if why["problem"].startswith("side output")
                    else f"the result file was {'deleted' if why['problem'] == 'deleted' else 'replaced'}",
                )
                case.custody.append(
                    "result_redo",
                    analyzer=cls.name,
                    evidence_id=row.artifact_id,
                    result_path=str(found[1].get("result_path") or "")
                    if found
                    else result_paths(case.path, cls.name, row.artifact_id)[0].relative_to(case.path).as_posix(),
                    problem=why["problem"],
                )
            todo.append((row, members))

        def spec(row: ManifestRow, members: list[ManifestRow] | None, cls: type[Analyzer] = cls) -> UnitSpec:
            return UnitSpec(
                case_dir=str(case.path.absolute()),  # dask workers run elsewhere, with another cwd
                case_id=case.case_id,
                analyzer=cls.name,
                evidence=row.as_dict(),
                plugins=plugins,
                options=options.get(cls.name, {}),
                members=[m.as_dict() for m in members] if members is not None else None,
                run_id=summary.run_id,
            )

        groups: list[list[ManifestRow]]
        if cls.scope == "host" or not cls.batch:
            groups = [[row] for row, _ in todo]
        else:
            sizing = batching
            if cls.batch_per_worker and batching is DEFAULT_BATCHING:  # explicit sizings are kept as given
                sizing = replace(batching, per_worker=cls.batch_per_worker)
            groups = _batches([row for row, _ in todo], sizing, workers)
        members_of = {row.artifact_id: members for row, members in todo}
        batched = {r.artifact_id for g in groups if len(g) > 1 for r in g}
        # an artifact that runs again leaves the batch file that holds its old row (a single unit overwrites its own)
        drop = {
            r.artifact_id
            for r, _ in todo
            if r.artifact_id in old and (r.artifact_id in batched or old[r.artifact_id][0].name.endswith(BATCH_SUFFIX))
        }
        _drop_old(case, cls.name, old, drop)
        time_limit = limits.time_for(getattr(cls, "unit_time_limit", None))
        for group in groups:
            first = spec(group[0], members_of[group[0].artifact_id])
            if len(group) == 1:
                key = f"triage-{cls.name}-{group[0].artifact_id}-{summary.run_id}"
                tasks.append(UnitTask(key=key, spec=first, time_limit=time_limit))
                continue
            bid = _batch_id(cls.name, summary.run_id, group)
            batch_spec = replace(first, batch=[r.as_dict() for r in group], batch_id=bid)
            key = f"triage-{cls.name}-{bid}-{summary.run_id}"
            tasks.append(UnitTask(key=key, spec=batch_spec, time_limit=time_limit))
    return _Planned(case, summary, selected, tasks)


def warm_pool(
    executor: Executor,
    cases: Sequence[Case],
    *,
    only: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
    plugins: tuple[str, ...] = (),
    options: dict[str, dict[str, Any]] | None = None,
) -> list[str]:
    """Start the executor's workers before planning, each preparing the first stage's analyzers that have
    evidence in these cases (module, rules, findings writer), so that work overlaps recovery and planning here
    instead of delaying each worker's first unit. Not when the run may stay in this process (a handful of small
    units). Returns the analyzers warmed (none: the executor starts its workers when it runs)."""
    if type(executor).warm is Executor.warm:  # it cannot start workers early (dask: they run elsewhere)
        return []
    plugins = tuple(os.path.abspath(p) if p.endswith(".py") and os.path.isfile(p) else p for p in plugins)
    first = (stages(list(iter_selected(only, skip, declarations(plugins)))) or [[]])[0]
    kinds = Counter(r.kind for case in cases for r in case.evidence())
    counts = {d.name: sum(kinds[k] for k in d.consumes) for d in first}
    if getattr(executor, "in_process_small", False) and sum(counts.values()) <= IN_PROCESS_UNITS:
        return []
    # the workers prepare an analyzer only when each of them will surely run some of its units (a batch per
    # worker and more); the parent imports every analyzer with units (planning would import it anyway)
    workers = max(1, int(getattr(executor, "jobs", 1) or 1))
    names = [name for name, n in counts.items() if n >= workers * DEFAULT_BATCHING.per_worker]
    options = options or {}
    for name in [name for name, n in counts.items() if n]:  # before the fork: the workers share the modules
        try:
            cls = load(name, plugins)
            # and the rules, loaded once here (from the cache) instead of once per worker
            if getattr(cls, "rules_fork_safe", False):
                _ = _instance(cls, options.get(name, {})).ruleset
        except Exception:  # the units meet the same failure and record it on their own rows
            log.debug("preparing analyzer %s before the fork failed", name, exc_info=True)
    return names if executor.warm(names, plugins, options) else []


def analyze_cases(
    cases: Sequence[Case],
    *,
    executor: Executor | None = None,
    jobs: int = 1,
    only: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
    force: bool = False,
    plugins: tuple[str, ...] = (),
    options: dict[str, dict[str, Any]] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    limits: UnitLimits | None = None,
    on_unit_progress: UnitProgress | None = None,
    on_unit_done: UnitDone | None = None,
    batching: BatchLimits | None = None,
) -> dict[str, AnalyzeSummary]:
    """Plan the units of several cases and run them all on one executor.

    Returns one summary per case, keyed by ``str(case.path)`` (case ids need not be unique). Each
    case gets its own ``runs/<run_id>.json`` and ``analyze`` custody event, as with
    :func:`analyze_case`. ``executor`` defaults to ``LocalPoolExecutor(jobs)`` (opened and closed
    here); a given executor is used as is and left open. ``on_progress(done, total)`` counts the
    artifacts (units) run now, over all cases. ``limits``: the per-unit time and memory bounds (default: the
    executor's, else :class:`UnitLimits`'s defaults); every unit runs in a child process under them.
    ``on_unit_progress(analyzer, evidence_id, done, total, text)`` gets what long units report of their own
    progress (:meth:`triage.registry.Unit.progress`, e.g. the memory analyzer's scan and plugins);
    ``on_unit_done(analyzer, evidence_id)`` is told when each unit is over (its result is counted), so a
    display can drop that unit's own line (a batch reports under its batch id, and ends its line too).
    ``batching``: how small artifacts are grouped into batch units (default :class:`BatchLimits` on executors
    that run batches, the local pool; none on dask).

    Ctrl-C (KeyboardInterrupt) stops the run at once: units in flight and queued are left for the next
    run, each case still gets its run record (``interrupted``) and custody event, and the interrupt
    is raised again.
    """
    options = options or {}
    limits = limits or getattr(executor, "limits", None) or UnitLimits()
    # batches where the executor runs them (the local pool); dask counts a worker's death against a whole task
    if batching is None:
        batching = DEFAULT_BATCHING if getattr(executor, "batches", executor is None) else BatchLimits(count=1)
    workers = int((executor.describe().get("workers") if executor is not None else jobs) or jobs or 1)
    # plugin files by absolute path: dask workers import them with another working directory
    plugins = tuple(os.path.abspath(p) if p.endswith(".py") and os.path.isfile(p) else p for p in plugins)
    # declarations from the analyzer index: a module is imported only for an analyzer that has units
    selected = list(iter_selected(only, skip, declarations(plugins)))
    plans: list[_Planned] = []
    by_case: dict[str, _Planned] = {}

    def plan_stage(stage: list[Declared]) -> list[UnitTask]:
        """Plan one stage for every case (a later stage after the earlier ones ran: it reads their results)."""
        new: list[UnitTask] = []
        for case in cases:
            key = str(case.path.absolute())
            earlier = by_case.get(key)
            plan = _plan(
                case,
                stage,
                force=force,
                plugins=plugins,
                options=options,
                limits=limits,
                batching=batching,
                workers=workers,
                summary=earlier.summary if earlier else None,
            )
            if earlier is None:
                plan.selected = selected
                plans.append(plan)
                by_case[key] = plan
            else:
                earlier.tasks.extend(plan.tasks)
            new.extend(plan.tasks)
        return new

    ordered = stages(selected) or [[]]
    tasks = plan_stage(ordered[0])
    # progress counts artifacts (a batch reports all of its own); later stages add theirs when planned
    total, done = sum(len(t.spec.artifacts) for t in tasks), 0

    def classes(name: str) -> type[Analyzer]:
        return load(name, plugins)

    def on_result(task: UnitTask, rec: dict[str, Any]) -> None:
        nonlocal done
        plan = by_case[task.case_dir]
        summary = plan.summary
        units = rec.get("units")
        # the body written to this batch's record (by the worker or here): kept for the run's result hashes
        written = rec.get("format") == BATCH_FORMAT and rec.get("run_id") == summary.run_id
        if task.spec.batch is not None and written and isinstance(units, list):
            plan.written[batch_paths(plan.case.path, task.analyzer, task.spec.batch_id)[1]] = units
        for row in record_rows(rec):
            done += 1
            summary.statuses[row["status"]] += 1
            summary.findings += row.get("findings", 0)
            plan.units.append(
                {
                    "analyzer": row["analyzer"],
                    "evidence_id": row["evidence_id"],
                    "status": row["status"],
                    "worker": row.get("worker", ""),
                }
            )
            if row["status"] == "error":
                summary.errors.append(
                    {
                        "analyzer": row["analyzer"],
                        "evidence_id": row["evidence_id"],
                        "message": row.get("message", ""),
                    }
                )
            if on_unit_done is not None:
                on_unit_done(row["analyzer"], row["evidence_id"])
            if on_progress:
                on_progress(done, total)
        if task.spec.batch is not None and on_unit_done is not None:
            on_unit_done(task.analyzer, task.evidence_id)  # the batch's own progress line

    def on_failed(task: UnitTask, why: str) -> None:
        plan, cls = by_case[task.case_dir], classes(task.analyzer)
        rows = [
            _died_record(plan.case.path, cls, ManifestRow(**r), why, plan.summary.run_id) for r in task.spec.artifacts
        ]
        on_result(task, rows[0] if task.spec.batch is None else {"units": rows})

    def finished(task: UnitTask) -> dict[str, Any] | None:
        """The unit's (or batch's) record if this run already wrote it (any status), or it is reusable."""
        plan, cls = by_case[task.case_dir], classes(task.analyzer)
        if task.spec.batch is not None:
            try:
                body = load_json(batch_paths(plan.case.path, cls.name, task.spec.batch_id)[1].read_text())
            except (OSError, ValueError):
                return None
            return dict(body) if isinstance(body, dict) and body.get("run_id") == plan.summary.run_id else None
        row = ManifestRow(**task.spec.evidence)
        try:
            rec = load_json(result_paths(plan.case.path, cls.name, row.artifact_id)[1].read_text())
        except (OSError, ValueError):
            return None
        if rec.get("run_id") == plan.summary.run_id or _finished(
            plan.case.path, _instance(cls, options.get(cls.name, {})), row, run_id=plan.summary.run_id
        ):
            return dict(rec)
        return None

    def forward(task: UnitTask, done_: float, total_: float, text: str) -> None:
        if on_unit_progress is not None:
            on_unit_progress(task.analyzer, task.evidence_id, done_, total_, text)

    own = executor is None
    ex = executor if executor is not None else LocalPoolExecutor(jobs, limits)
    interrupted = False
    try:
        checked = False
        for number in range(len(ordered)):
            if number:  # the next stage, planned now that the results it reads are written
                tasks = plan_stage(ordered[number])
                total += sum(len(t.spec.artifacts) for t in tasks)
            if not tasks:
                continue
            if not checked:
                ex.preflight(
                    [
                        (str(p.case.path.absolute()), sha256_bytes((p.case.path / "case.json").read_bytes()))
                        for p in plans
                    ],
                    plugins,
                )
                checked = True
            try:
                ex.run(
                    tasks,
                    on_result=on_result,
                    on_failed=on_failed,
                    finished=finished,
                    on_progress=forward if on_unit_progress is not None else None,
                )
            except KeyboardInterrupt:
                interrupted = True
                break
        described = ex.describe()
    finally:
        if own:
            ex.close()
    _deleted()  # the superseded files are gone before the run record lists what results/ holds
    for plan in plans:
        plan.summary.interrupted = interrupted
        _write_run(plan, described, jobs=jobs, force=force, options=options)
    if interrupted:
        raise KeyboardInterrupt
    return {str(p.case.path): p.summary for p in plans}


def _write_run(
    plan: _Planned, executor: dict[str, Any], *, jobs: int, force: bool, options: dict[str, dict[str, Any]]
) -> None:
    """The case's runs/<run_id>.json and its custody event."""
    case, summary = plan.case, plan.summary
    summary.finished = utcnow()
    run_file = case.path / "runs" / f"{summary.run_id}.json"
    run_file.parent.mkdir(exist_ok=True)
    analyzers_run = {c.name: c.version for c in plan.selected}
    by_worker = Counter(u["worker"] or "unknown" for u in plan.units)
    body = summary.as_dict() | {
        "analyzers": analyzers_run,
        "jobs": jobs,
        "force": force,
        "options": options,  # e.g. extra --sigma/--yara folders, for the report's provenance
        "executor": executor,
        "units": sorted(plan.units, key=lambda u: (u["analyzer"], u["evidence_id"])),
        "results": case.result_hashes(sorted(analyzers_run), plan.written),  # verify checks results/ against these
    }
    # error messages and options may quote evidence names: made storable here; the unit rows and result names
    # come from records the workers made storable already (a pass over thousands of them costs more than the rest)
    rows = {k: body.pop(k) for k in ("units", "results")}
    body = storable_value(json.loads(json.dumps(body, default=str))) | rows
    # compact: an indent makes json use its pure-Python encoder, several times slower on thousands of rows
    data = json.dumps(body, ensure_ascii=False, default=str).encode()
    _atomic_write(run_file, data)
    case.custody.append(
        "analyze",
        run_id=summary.run_id,
        planned=summary.planned,
        reused=summary.reused,
        statuses=dict(summary.statuses),
        findings=summary.findings,
        interrupted=summary.interrupted,
        limits=summary.limits,
        analyzers=analyzers_run,
        executor={k: executor.get(k) for k in ("kind", "address", "workers")},
        units_by_worker=dict(sorted(by_worker.items())),
        run_record=run_file.relative_to(case.path).as_posix(),
        run_record_sha256=sha256_bytes(data),  # of the bytes written (read back, they would be the same)
    )


def analyze_case(
    case: Case,
    *,
    executor: Executor | None = None,
    jobs: int = 1,
    only: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
    force: bool = False,
    plugins: tuple[str, ...] = (),
    options: dict[str, dict[str, Any]] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    limits: UnitLimits | None = None,
    on_unit_progress: UnitProgress | None = None,
    on_unit_done: UnitDone | None = None,
    batching: BatchLimits | None = None,
) -> AnalyzeSummary:
    """Plan and run all units of the selected analyzers over the case's evidence.

    ``options`` maps an analyzer name to its options (e.g. ``{"eventlog": {"sigma": [DIR]}}``).
    ``executor``: where units run (default: a local pool of ``jobs`` processes).
    """
    return analyze_cases(
        [case],
        executor=executor,
        jobs=jobs,
        only=only,
        skip=skip,
        force=force,
        plugins=plugins,
        options=options,
        on_progress=on_progress,
        limits=limits,
        on_unit_progress=on_unit_progress,
        on_unit_done=on_unit_done,
        batching=batching,
    )[str(case.path)]
