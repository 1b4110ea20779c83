"""The layout of ``results/``: where unit and batch records live, and reading them back as one record per artifact.

Two kinds of record file sit in ``results/<analyzer>/``:

``<evidence_id>.run.json`` (a *single* unit, also every file of cases made before batches)
    one :class:`triage.finding.RunRecord`; its findings in ``<evidence_id>.parquet`` (only when it has any;
    older versions also wrote empty ones).
``<batch_id>.batch.json`` (a *batch*: small artifacts of one analyzer run together in one worker)
    ``{"format": BATCH_FORMAT, "batch_id", "analyzer", "run_id", "result_path", "result_sha256", "units": [...]}``
    with one run record per artifact (status, findings, warnings, message, traceback, duration, evidence hash,
    fingerprint, outputs); the findings of all its artifacts in ``<batch_id>.parquet`` (no file when none).
    A row with findings names the batch's parquet and its hash, as a single unit's record names its own.

An artifact has at most one record in an analyzer's folder: the runner drops a row from its old file before the
artifact runs again (:func:`triage.runner`). Readers (resume, verify, the report, the run's result hashes) go
through :func:`unit_records`, so both layouts read the same.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

UNIT_SUFFIX = ".run.json"
BATCH_SUFFIX = ".batch.json"
BATCH_FORMAT = "triage-batch/1"


def is_record_name(name: str) -> bool:
    """Whether a file name is a unit or batch record."""
    return name.endswith((UNIT_SUFFIX, BATCH_SUFFIX)) and not name.startswith(".")


def record_files(case_dir: Path, analyzers: Iterable[str] | None = None) -> list[Path]:
    """Every record file under ``results/`` (of these analyzers), sorted."""
    root = case_dir / "results"
    if analyzers is None:
        folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    else:
        folders = [root / a for a in analyzers]
    out = [p for f in folders for suffix in (UNIT_SUFFIX, BATCH_SUFFIX) for p in f.glob(f"*{suffix}")]
    return sorted(p for p in out if not p.name.startswith("."))


def parse_records(path: Path, body: Any) -> list[dict[str, Any]]:
    """The per-artifact records of one record file's parsed JSON; ValueError when it is not a record."""
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    if path.name.endswith(BATCH_SUFFIX):
        units = body.get("units")
        if body.get("format") != BATCH_FORMAT or not isinstance(units, list):
            raise ValueError(f"not a batch record of format {BATCH_FORMAT}")
        if not all(isinstance(u, dict) for u in units):
            raise ValueError("not a batch record: a row is not a JSON object")
        return [dict(u) for u in units]
    return [body]


def read_records(path: Path) -> list[dict[str, Any]]:
    """The per-artifact records of one record file; OSError or ValueError when unreadable."""
    return parse_records(path, json.loads(path.read_text(encoding="utf-8")))


def unit_records(
    case_dir: Path, analyzers: Iterable[str] | None = None, problems: list[tuple[Path, str]] | None = None
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``(record file, per-artifact record)`` for every artifact with a record, single and batch layouts alike.

    Unreadable record files are skipped (logged, and listed in ``problems`` when given)."""
    for path in record_files(case_dir, analyzers):
        try:
            recs = read_records(path)
        except (OSError, ValueError) as exc:
            log.warning("unreadable run record %s: %s", path, exc)
            if problems is not None:
                problems.append((path, str(exc)))
            continue
        for rec in recs:
            yield path, rec


def record_run_id(path: Path) -> str | None:
    """The analyze run that wrote a record file ("" for records of older versions; None when unreadable)."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(body.get("run_id") or "") if isinstance(body, dict) else None


def unit_record(case_dir: Path, analyzer: str, evidence_id: str) -> dict[str, Any] | None:
    """The record of one artifact under one analyzer (its single-unit file, else its row in a batch), or None."""
    single = case_dir / "results" / analyzer / f"{evidence_id}{UNIT_SUFFIX}"
    try:
        return read_records(single)[0]
    except (OSError, ValueError, IndexError):
        pass
    for _path, rec in unit_records(case_dir, [analyzer]):
        if rec.get("evidence_id") == evidence_id:
            return rec
    return None
