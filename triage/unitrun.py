"""Running one unit in a worker: the analyzer over its evidence, results written atomically into the case.

Each unit writes ``results/<analyzer>/<evidence_id>.parquet`` and then ``.run.json`` (both via a temporary file
and an atomic rename), so a unit killed half way leaves only whole results. Executors call :func:`run_unit`
with a :class:`triage.tasks.UnitSpec`; the runner plans the specs and reads the records back.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from triage.case import Case, ManifestRow
from triage.custody import utcnow
from triage.errors import Skip
from triage.finding import Finding, RunRecord, findings_frame
from triage.hashing import hash_file
from triage.registry import Analyzer, Unit, analyzers, discover
from triage.tasks import MemoryBound, ProgressSink, UnitSpec, memory_limit_text, worker_id

log = logging.getLogger(__name__)


def result_paths(case_dir: Path, analyzer: str, evidence_id: str) -> tuple[Path, Path]:
    base = case_dir / "results" / analyzer
    return base / f"{evidence_id}.parquet", base / f"{evidence_id}.run.json"


def _atomic_write(path: Path, data: bytes) -> None:
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


def run_unit(spec: UnitSpec, on_progress: ProgressSink | None = None) -> dict[str, Any]:
    """Run one unit and write its results; never raises for analyzer errors. Picklable entry point.

    ``on_progress(done, total, text)`` receives the unit's own progress reports (:meth:`Unit.progress`).
    """
    case_dir, case_id, analyzer_name, row = spec.case_dir, spec.case_id, spec.analyzer, spec.evidence
    plugins, options, members, run_id = spec.plugins, spec.options, spec.members, spec.run_id
    started, t0 = utcnow(), time.perf_counter()
    evidence = ManifestRow(**row)
    registry = analyzers()
    if analyzer_name not in registry:
        registry = discover(plugins)
    cls = registry[analyzer_name]
    analyzer = _instance(cls, options or {})
    fingerprint = analyzer.run_fingerprint(run_id)
    # a long-lived worker (dask) keeps its analyzer objects between commands: reload rules that changed
    if analyzer.__dict__.setdefault("_triage_fingerprint", fingerprint) != fingerprint:
        _drop_instance(cls, options or {})
        analyzer = _instance(cls, options or {})
        analyzer.__dict__["_triage_fingerprint"] = fingerprint
    cdir = Path(case_dir)
    path = cdir if members is not None else Case(cdir, {"case_id": case_id}).artifact_path(evidence)
    unit = Unit(
        case_id=case_id,
        case_dir=cdir,
        host=evidence.source_host,
        evidence=evidence,
        path=path,
        analyzer=analyzer,
        members=[ManifestRow(**r) for r in members or []],
        on_progress=on_progress,
    )
    found: list[Finding] = []
    status, message, tb = "success", "", ""
    try:
        with MemoryBound():  # in a pool worker: the private memory this unit may add
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
    parquet, run = result_paths(cdir, cls.name, evidence.artifact_id)
    parquet.parent.mkdir(parents=True, exist_ok=True)
    result_sha = ""
    if status != "skipped" or found:
        tmp = parquet.with_name(f".{parquet.name}.tmp-{os.getpid()}")
        findings_frame(found).to_parquet(tmp, index=False)
        os.replace(tmp, parquet)
        result_sha = hash_file(parquet, ("sha256",))[1]["sha256"]
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
        findings=len(found),
        warnings=unit.warnings,
        message=message,
        traceback=tb,
        result_path=parquet.relative_to(cdir).as_posix() if result_sha else "",
        result_sha256=result_sha,
        fingerprint=fingerprint,
        worker=worker_id(),
        run_id=run_id,
        outputs=[{"path": k, "sha256": v} for k, v in sorted(unit.outputs.items())],
    )
    _atomic_write(run, json.dumps(record.to_dict(), indent=1, ensure_ascii=False, default=str).encode())
    return record.to_dict()


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
