"""Where a batch's findings are written, and that a batch of event logs counts what its file holds.

A pool worker runs ``run_unit(..., write_findings=False)``: without pyarrow loaded it hands a batch with findings
to the parent (``test_pool_warm``); with pyarrow loaded (the event-log workers: their analyzer reads with it) it
writes the batch itself. The event-log analyzer gives a batch's rule matches as one block of rows
(:class:`triage.results.FindingColumns`): each artifact's record counts its rows, and the file holds them all.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.case import Case
from triage.tasks import UnitSpec
from triage.testing.volume import VolumeSpec, build_volume
from triage.unitrun import DEFERRED, run_unit, write_deferred


def test_a_worker_with_pyarrow_writes_its_batch_and_counts_each_log(tmp_path: Path) -> None:
    vol = build_volume(tmp_path / "vol", VolumeSpec(compromised=True, event_logs=True))
    case = Case.create_or_open(tmp_path / "case", examiner="t", case_id="CASE-UNITRUN")
    collect_volume(case, open_source_path(str(vol)), host=None)
    rows = [r.as_dict() for r in case.evidence(kinds={"evtx"})]
    assert len(rows) >= 3
    spec = UnitSpec(
        case_dir=str(case.path),
        case_id=case.case_id,
        analyzer="eventlog",
        evidence=rows[0],
        batch=rows,
        batch_id="B-unitrun-test",
        run_id="run-test",
    )
    spooled: list[tuple[dict, list]] = []
    assert "pyarrow" in sys.modules
    rec = run_unit(spec, on_row=lambda r, f: spooled.append((r, f)), write_findings=False)
    assert DEFERRED not in rec  # written here, not handed to the parent
    assert write_deferred(spec, rec) is rec
    parquet = case.path / rec["result_path"]
    assert hashlib.sha256(parquet.read_bytes()).hexdigest() == rec["result_sha256"]
    table = pq.read_table(parquet)
    per_log = {r["evidence_id"]: r["findings"] for r in rec["units"]}
    assert rec["findings"] == sum(per_log.values()) == table.num_rows
    ids = table.column("evidence_id").to_pylist()
    assert per_log == {eid: ids.count(eid) for eid in per_log}
    assert all(r["status"] == "success" for r in rec["units"])  # coverage findings at least, for every log
    # the attack log's rule matches came as one block: rows as a Finding stores them (ids, joined lists, JSON)
    matched = [r for r in table.to_pylist() if r["rule_id"] and not r["rule_id"].startswith("TRIAGE-EVT-COV")]
    assert matched and all(len(r["finding_id"]) == 32 and r["tags"].startswith("sigma") for r in matched)
    assert all(isinstance(json.loads(r["attributes"])["event"], dict) for r in matched)
    # what a worker spools for the parent (a dying worker's finished rows) counts the same
    assert sum(r["findings"] for r, _ in spooled) == table.num_rows
    case.close()
