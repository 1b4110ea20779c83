"""Running one unit in a worker: the analyzer over its evidence, results written atomically into the case.

A single unit writes ``results/<analyzer>/<evidence_id>.parquet`` (only when it has findings) and then
``.run.json``; a batch of small artifacts writes ``<batch_id>.parquet`` (all its findings, if any) and then
``<batch_id>.batch.json`` with a row per artifact (layout: :mod:`triage.results`). Every file goes through a
temporary file, one fsync and an atomic rename, so a unit killed half way leaves only whole results. Executors call
:func:`run_unit` with a :class:`triage.tasks.UnitSpec`; the runner plans the specs and reads the records back.
"""

from __future__ import annotations

import _thread
import contextlib
import gc
import hashlib
import io
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from triage.case import Case, ManifestRow
from triage.custody import load_json, utcnow
from triage.errors import Skip
from triage.finding import Finding, RunRecord
from triage.registry import Analyzer, Unit, load
from triage.results import BATCH_FORMAT, BATCH_SUFFIX, count_findings, findings_parquet, parse_records
from triage.tasks import MemoryBound, ProgressSink, UnitSpec, memory_limit_text, worker_id

log = logging.getLogger(__name__)


def result_paths(case_dir: Path, analyzer: str, evidence_id: str) -> tuple[Path, Path]:
    base = case_dir / "results" / analyzer
    return base / f"{evidence_id}.parquet", base / f"{evidence_id}.run.json"


def _atomic_write(path: Path, data: bytes | memoryview) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


_INSTANCES: dict[tuple[str, str, int], Analyzer] = {}


def _instance(cls: type[Analyzer], options: dict[str, Any]) -> Analyzer:
    """One analyzer object per process, thread and options (its rules load once).

    Per thread because a dask worker may run units in several threads, and compiled rule objects
    (yara-x scanners) must not cross threads.
    """
    key = (cls.name, json.dumps(options, sort_keys=True, default=str), threading.get_ident())
    inst = _INSTANCES.get(key)
    if inst is None:
        inst = _INSTANCES[key] = cls(options)
    return inst


def _drop_instance(cls: type[Analyzer], options: dict[str, Any]) -> None:
    _INSTANCES.pop((cls.name, json.dumps(options, sort_keys=True, default=str), threading.get_ident()), None)


def drop_instances() -> int:
    """Forget this thread's analyzer objects (so they are freed in the thread that made them)."""
    mine = [k for k in _INSTANCES if k[2] == threading.get_ident()]
    for k in mine:
        del _INSTANCES[k]
    gc.collect()
    return len(mine)


def warm(analyzers: Sequence[str], plugins: Sequence[str], options: dict[str, dict[str, Any]]) -> list[str]:
    """In a pool worker before its first unit: import these analyzers (already imported when the parent did it
    before the fork), make this process's object of each (with the options its units will carry) and load its
    rules, so that the work is done while the parent still plans (the first unit would do it otherwise). A
    failure is left for that unit to meet and record; returns the analyzers that could not be prepared."""
    failed = []
    for name in analyzers:
        try:
            analyzer = _instance(load(name, tuple(plugins)), dict(options.get(name) or {}))
            _ = analyzer.ruleset  # compiled rules come from the cache (or the parent's object, inherited)
            prepare = getattr(analyzer, "warm", None)
            if prepare is not None:
                prepare()
            # the rule files' digests (the fingerprint's inputs; their cache file is read once per process) are
            # read now, not in the first unit
            analyzer.fingerprint()
        except Exception:  # the unit that needs it fails with the real error, on its own row
            log.debug("warming analyzer %s failed", name, exc_info=True)
            failed.append(name)
    # what the worker holds now (inherited from the parent, and the rules) lives as long as it does: its garbage
    # collections skip it instead of scanning it again and again while thousands of rows are made, and leave
    # the pages it shares with the parent unwritten
    gc.freeze()
    return failed


# a worker's per-artifact hooks: an artifact of a batch starts (its id); one finished (its record and findings)
ItemSink = Callable[[str], None]
RowSink = Callable[[dict[str, Any], list[Finding]], None]


# the key of what a pool worker returns for a batch with findings when the pool's parent writes its files
DEFERRED = "deferred_batch"

_WRITER_IMPORT = _thread.allocate_lock()  # held while the findings writer is imported in the background
_WRITER_STARTED: list[bool] = []


def _import_writer() -> None:
    try:
        import pyarrow.parquet  # noqa: F401

        from triage.arrowlite import arrow_without_pandas
        from triage.results import _pandas_metadata

        arrow_without_pandas()  # findings are written from Arrow arrays: no pandas import (0.3 CPU s) for them

        _pandas_metadata()  # its package-version look-up too (tens of ms, paid by the first findings file)
    except Exception:  # a broken install fails where the writer is used, with its real error
        pass
    finally:
        _WRITER_IMPORT.release()


def preload_writer() -> None:
    """In a pool's parent when a worker says a batch has findings (they come back to be written here): import the
    findings writer (pyarrow, about 0.2 CPU s) in a background thread while this process waits for results.
    Imported when that batch came back instead, it held up the loop that hands the workers their next batch
    (they sat idle for the whole import). A bare thread: ``threading.Thread.start`` waits until the new thread
    runs, which on a loaded machine held the loop up too."""
    if _WRITER_STARTED or "pyarrow.parquet" in sys.modules:
        return
    _WRITER_STARTED.append(True)
    _WRITER_IMPORT.acquire()
    try:
        _thread.start_new_thread(_import_writer, ())
    except RuntimeError:  # no thread to be had: the first batch with findings imports it
        _WRITER_IMPORT.release()


def _writer_imported() -> None:
    """Before a fork: the background import is over, so no child starts with an import lock held by a thread
    it does not have."""
    if _WRITER_STARTED:
        with _WRITER_IMPORT:
            pass


os.register_at_fork(before=_writer_imported)


def writes_own_findings() -> bool:
    """Whether a pool worker writes the findings file of its batches itself: yes once pyarrow is imported in it
    (an analyzer that works in Arrow, the event logs), where sending them back would pickle them both ways and
    make the parent write every batch one after the other; no otherwise (YARA), so no worker pays the pyarrow
    import for a few findings."""
    return "pyarrow" in sys.modules


def run_unit(
    spec: UnitSpec,
    on_progress: ProgressSink | None = None,
    on_item: ItemSink | None = None,
    on_row: RowSink | None = None,
    *,
    write_findings: bool = True,
) -> dict[str, Any]:
    """Run one unit (or a batch) and write its results; never raises for analyzer errors. Picklable entry point.

    ``on_progress(done, total, text)`` receives the unit's own progress reports (:meth:`Unit.progress`). For a
    batch, ``on_item(evidence_id)`` is told as each artifact starts and ``on_row(record, findings)`` as each one
    ends, so a pool can keep the finished rows of a batch whose worker dies; the return value is then the batch
    record (:mod:`triage.results`). ``write_findings=False`` (a pool worker): a batch that has findings is not
    written here but returned as ``{DEFERRED: ...}`` for :func:`write_deferred` in the pool's parent, so the
    workers never import the parquet writer (pyarrow and numpy, more CPU than a worker's share of a small scan);
    a batch without findings, or one whose worker has pyarrow loaded already (its analyzer reads with it), is
    written here: sending its findings to the parent would cost a pickle each way and the parent's serial time.
    """
    cls, analyzer, fingerprint = _prepare(spec)
    # one Case object per unit or batch (it opens the custody log's settings): only artifact paths are asked of it
    case = Case(Path(spec.case_dir), {"case_id": spec.case_id})
    if spec.batch is None:
        started = utcnow()
        rec, found = _analyze_one(spec, cls, analyzer, fingerprint, spec.evidence, spec.members, on_progress, case)
        return write_single(Path(spec.case_dir), rec, found, started=started)
    started, t0 = utcnow(), time.perf_counter()
    rows: list[tuple[dict[str, Any], list[Finding]]] = []
    units = [_unit(spec, analyzer, ev, None, on_progress, case) for ev in spec.batch]
    worker = worker_id()  # asked once per batch: it is the same for every row
    _begin_batch(analyzer, units)
    try:
        # the memory bound is set once for the batch (a system call and a /proc read per artifact cost more than
        # a small file's scan): each artifact may add the unit bound over what the worker held when the batch
        # began; a MemoryError still fails only the artifact that raised it (caught in _analyze_one)
        with MemoryBound():
            for ev, unit in zip(spec.batch, units, strict=True):
                if on_item is not None:
                    on_item(str(ev["artifact_id"]))
                rec, found = _analyze_one(
                    spec, cls, analyzer, fingerprint, ev, None, on_progress, case, unit, bounded=False, worker=worker
                )
                if on_row is not None:
                    on_row(rec, found)
                rows.append((rec, found))
    finally:
        if hasattr(analyzer, "end_batch"):
            analyzer.end_batch()
    duration = time.perf_counter() - t0
    if not write_findings and not writes_own_findings() and any(found for _, found in rows):
        return {DEFERRED: {"rows": rows, "started": started, "duration": duration, "worker": worker}}
    return write_batch(spec, rows, started=started, duration=duration, worker=worker)


def write_deferred(spec: UnitSpec, rec: dict[str, Any]) -> dict[str, Any]:
    """The batch record of what :func:`run_unit` returned: a deferred batch's files written now (parquet, then its
    record, as the worker would have), anything else as it is."""
    deferred = rec.get(DEFERRED)
    if deferred is None:
        return rec
    return write_batch(
        spec, deferred["rows"], started=deferred["started"], duration=deferred["duration"], worker=deferred["worker"]
    )


def _begin_batch(analyzer: Analyzer, units: list[Unit]) -> None:
    """An analyzer's optional batch-wide step (``begin_batch(units)``: work shared by the batch's artifacts, such
    as evaluating rules once over many small logs); if it fails, each artifact simply runs on its own."""
    begin = getattr(analyzer, "begin_batch", None)
    if begin is None:
        return
    try:
        with MemoryBound():
            begin(units)
    except Exception:  # the artifacts still run one by one, each reporting its own problems
        log.exception("batch step of %s", analyzer.name)
        if hasattr(analyzer, "end_batch"):
            analyzer.end_batch()


def _unit(
    spec: UnitSpec,
    analyzer: Analyzer,
    row: dict[str, Any],
    members: list[dict[str, Any]] | None,
    on_progress: ProgressSink | None,
    case: Case,
) -> Unit:
    """The unit of one artifact (or host group, with ``members``) of a spec (``case``: one per unit or batch)."""
    evidence = ManifestRow(**row)
    cdir = case.path
    path = cdir if members is not None else case.artifact_path(evidence)
    return Unit(
        case_id=spec.case_id,
        case_dir=cdir,
        host=evidence.source_host,
        evidence=evidence,
        path=path,
        analyzer=analyzer,
        members=[ManifestRow(**r) for r in members or []],
        on_progress=on_progress,
    )


def _prepare(spec: UnitSpec) -> tuple[type[Analyzer], Analyzer, str]:
    """The analyzer class, this process's object of it (rules loaded once) and the run's fingerprint."""
    cls = load(spec.analyzer, spec.plugins)  # only this analyzer's module is imported
    options = spec.options or {}
    analyzer = _instance(cls, options)
    fingerprint = analyzer.run_fingerprint(spec.run_id)
    # a long-lived worker (dask) keeps its analyzer objects between commands: reload rules that changed
    if analyzer.__dict__.setdefault("_triage_fingerprint", fingerprint) != fingerprint:
        _drop_instance(cls, options)
        analyzer = _instance(cls, options)
        analyzer.__dict__["_triage_fingerprint"] = fingerprint
    return cls, analyzer, fingerprint


def _analyze_one(
    spec: UnitSpec,
    cls: type[Analyzer],
    analyzer: Analyzer,
    fingerprint: str,
    row: dict[str, Any],
    members: list[dict[str, Any]] | None,
    on_progress: ProgressSink | None,
    case: Case,
    unit: Unit | None = None,
    *,
    bounded: bool = True,
    worker: str = "",
) -> tuple[dict[str, Any], list[Finding]]:
    """The analyzer over one artifact (or host group): its run record (no result file yet) and findings.
    ``bounded``: set the memory bound here (a batch sets it once around all its artifacts)."""
    started, t0 = utcnow(), time.perf_counter()
    unit = unit or _unit(spec, analyzer, row, members, on_progress, case)
    evidence = unit.evidence
    found: list[Finding] = []
    status, message, tb = "success", "", ""
    try:
        with MemoryBound() if bounded else contextlib.nullcontext():  # the private memory this unit may add
            for f in analyzer.analyze(unit):
                found.append(f)
    except Skip as exc:
        status, message = "skipped", str(exc) or "skipped"
    except MemoryError as exc:
        found = []  # whatever it yielded may be half-built; free it first
        gc.collect()
        status, message, tb = "error", f"{memory_limit_text()}: MemoryError {exc}".strip(), traceback.format_exc()
    except BaseException as exc:  # SystemExit, KeyboardInterrupt from analyzer code end only this unit
        status, message, tb = "error", f"{type(exc).__name__}: {exc}", traceback.format_exc()
    if status == "success" and not found:
        status = "no_findings"
    record = RunRecord(
        analyzer=cls.name,
        analyzer_version=cls.version,
        evidence_id=evidence.artifact_id,
        evidence_sha256=evidence.sha256 or "",
        host=evidence.source_host,
        status=status,
        started=started,
        finished=utcnow(),
        duration_s=round(time.perf_counter() - t0, 6),
        findings=count_findings(found),
        warnings=unit.warnings,
        message=message,
        traceback=tb,
        fingerprint=fingerprint,
        worker=worker or worker_id(),
        run_id=spec.run_id,
        outputs=[{"path": k, "sha256": v} for k, v in sorted(unit.outputs.items())],
    )
    return record.to_dict(), found


def _write_findings(path: Path, found: list[Finding]) -> str:
    """The findings as one parquet file (temp, fsync, rename); its sha256, of the bytes written. Built in Arrow:
    the same file ``findings_frame(found).to_parquet`` gives, without pandas in the worker."""
    data = findings_parquet(found)
    digest = hashlib.sha256(data).hexdigest()
    _atomic_write(path, data)
    return digest


def write_single(case_dir: Path, rec: dict[str, Any], found: list[Finding], *, started: str = "") -> dict[str, Any]:
    """A single unit's files: ``<evidence_id>.parquet`` (only with findings) then ``<evidence_id>.run.json``."""
    parquet, run = result_paths(case_dir, rec["analyzer"], rec["evidence_id"])
    parquet.parent.mkdir(parents=True, exist_ok=True)
    if found:
        rec["result_sha256"] = _write_findings(parquet, found)
        rec["result_path"] = parquet.relative_to(case_dir).as_posix()
    else:  # a parquet an older run left for this unit is not this run's result
        with contextlib.suppress(FileNotFoundError):
            parquet.unlink()
    if started:
        rec["started"] = started
    _atomic_write(run, json.dumps(rec, indent=1, ensure_ascii=False, default=str).encode())
    return rec


def batch_paths(case_dir: Path, analyzer: str, batch_id: str) -> tuple[Path, Path]:
    """A batch's findings file and record (``results/<analyzer>/<batch_id>.parquet`` / ``.batch.json``)."""
    base = case_dir / "results" / analyzer
    return base / f"{batch_id}.parquet", base / f"{batch_id}{BATCH_SUFFIX}"


def write_batch(
    spec: UnitSpec,
    rows: list[tuple[dict[str, Any], list[Finding]]],
    *,
    started: str = "",
    duration: float = 0.0,
    worker: str = "",
) -> dict[str, Any]:
    """One batch's files: all its findings in ``<batch_id>.parquet`` (none: no file), then its record with a row
    per artifact (``<batch_id>.batch.json``). Each is written to a temporary file, fsync'd once, renamed."""
    case_dir = Path(spec.case_dir)
    parquet, record = batch_paths(case_dir, spec.analyzer, spec.batch_id)
    parquet.parent.mkdir(parents=True, exist_ok=True)
    found = [f for _, fs in rows for f in fs]
    rel, digest = "", ""
    if found:
        digest = _write_findings(parquet, found)
        rel = parquet.relative_to(case_dir).as_posix()
    units = []
    for rec, fs in rows:
        rec = dict(rec)
        rec["result_path"], rec["result_sha256"] = (rel, digest) if fs else ("", "")
        units.append(rec)
    first = units[0] if units else {}
    body = {
        "format": BATCH_FORMAT,
        "batch_id": spec.batch_id,
        "analyzer": spec.analyzer,
        "analyzer_version": first.get("analyzer_version", ""),
        "run_id": spec.run_id,
        "worker": worker or worker_id(),
        "started": started or first.get("started", ""),
        "finished": utcnow(),
        "duration_s": round(duration, 6),
        "findings": count_findings(found),
        "result_path": rel,
        "result_sha256": digest,
        "units": units,
    }
    # compact: an indent makes json use its pure-Python encoder, several times slower on a batch of rows
    _atomic_write(record, json.dumps(body, ensure_ascii=False, default=str).encode())
    return body


def rewrite_batch(case_dir: Path, record: Path, drop: set[str]) -> int:
    """A batch without the rows (and findings) of the artifacts in ``drop``, rewritten in place atomically (removed
    when no row is left); the number of rows kept. Used before those artifacts run again."""
    body = load_json(record.read_text(encoding="utf-8"))
    rows = parse_records(record, body)
    kept = [r for r in rows if str(r.get("evidence_id")) not in drop]
    parquet = record.with_name(record.name[: -len(BATCH_SUFFIX)] + ".parquet")
    if not kept:
        for f in (record, parquet):  # the record first: a findings file without one is never read as a result
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
        return 0
    rel, digest = "", ""
    if any(r.get("findings") for r in kept) and parquet.exists():
        import pandas as pd

        frame = pd.read_parquet(parquet)
        frame = frame[~frame["evidence_id"].astype(str).isin(drop)]
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        digest = hashlib.sha256(buf.getbuffer()).hexdigest()
        _atomic_write(parquet, buf.getbuffer())
        rel = parquet.relative_to(case_dir).as_posix()
    else:
        with contextlib.suppress(FileNotFoundError):
            parquet.unlink()
    for r in kept:
        r["result_path"], r["result_sha256"] = (rel, digest) if r.get("findings") else ("", "")
    body.update(units=kept, findings=sum(int(r.get("findings") or 0) for r in kept), result_path=rel,
                result_sha256=digest)
    _atomic_write(record, json.dumps(body, indent=1, ensure_ascii=False, default=str).encode())
    return len(kept)


def record_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-artifact rows of what a unit returned: a batch record's rows, or the single unit's record."""
    if DEFERRED in rec:  # not written yet (run_unit with write_findings=False): its rows as they will be written
        return [row for row, _ in rec[DEFERRED]["rows"]]
    units = rec.get("units")
    return list(units) if isinstance(units, list) else [rec]


def _died_record(
    case_dir: Path, cls: type[Analyzer], row: ManifestRow, why: str, run_id: str, worker: str = ""
) -> dict[str, Any]:
    now = utcnow()
    rec = RunRecord(
        analyzer=cls.name,
        analyzer_version=cls.version,
        evidence_id=row.artifact_id,
        evidence_sha256=row.sha256 or "",
        host=row.source_host,
        status="error",
        started=now,
        finished=now,
        duration_s=0.0,
        message=why,
        run_id=run_id,
        worker=worker,
    )
    _, run = result_paths(case_dir, cls.name, row.artifact_id)
    run.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(run, json.dumps(rec.to_dict(), indent=1, ensure_ascii=False).encode())
    return rec.to_dict()
