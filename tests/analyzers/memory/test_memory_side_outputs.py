"""The memory tables are side outputs stored through the runner: atomic, hashed, listed, checked on reuse."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from memory_support import x64_image
from test_memory_analyzer import _collect, _fake_job

from analyzers.memory import analyzer as mem
from triage.case import Case
from triage.hashing import hash_file
from triage.runner import analyze_case, result_paths

NAMES = ["index.json", "info.parquet", "pslist.parquet", "yara_raw.parquet"]
OPTIONS = {"memory": {"plugins": ["info", "pslist"], "chunk_size": 4 << 20, "overlap": 4096}}


@pytest.fixture
def image_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Case, str]:
    monkeypatch.setattr(mem, "_plugin_job", _fake_job)  # the fake Volatility tables of the analyzer tests
    src = tmp_path / "EXCH01.raw"
    src.write_bytes(x64_image(16 << 20))
    case = Case.create_or_open(tmp_path / "case", examiner="pytest", case_id="MEM-S")
    _collect(case, src)
    return case, next(r.artifact_id for r in case.evidence() if r.kind == "memory_image")


def _record(case: Case, evidence_id: str) -> dict:
    return json.loads(result_paths(case.path, "memory", evidence_id)[1].read_text())


@pytest.mark.slow
def test_tables_are_listed_in_the_unit_record_and_checked_on_reuse(image_case: tuple[Case, str]) -> None:
    case, eid = image_case
    summary = analyze_case(case, only=("memory",), jobs=1, options=OPTIONS)
    assert dict(summary.statuses) == {"success": 1}
    rec = _record(case, eid)
    folder = f"results/memory/{eid}"
    listed = {o["path"]: o["sha256"] for o in rec["outputs"]}
    assert set(listed) == {f"{folder}/{n}" for n in NAMES}
    for rel, digest in listed.items():
        assert hash_file(case.path / rel, ("sha256",))[1]["sha256"] == digest
    assert not [p.name for p in (case.path / folder).iterdir() if p.name.startswith(".")]  # no temporary left
    index = json.loads((case.path / folder / "index.json").read_text())["tables"]
    assert index["pslist"]["sha256"] == listed[f"{folder}/pslist.parquet"]

    assert analyze_case(case, only=("memory",), jobs=1, options=OPTIONS).reused == 1
    table = case.path / folder / "pslist.parquet"
    table.write_bytes(table.read_bytes()[:-10])  # a table damaged after its unit ran: the unit runs again
    again = analyze_case(case, only=("memory",), jobs=1, options=OPTIONS)
    assert (again.reused, dict(again.statuses)) == (0, {"success": 1})
    redo = [e["details"] for e in case.custody.events() if e.get("action") == "result_redo"]
    assert redo and redo[-1]["problem"].startswith(f"side output {folder}/pslist.parquet sha256 ")
    pq.read_table(table)  # written whole again, and listed with its new hash
    rewritten = {o["path"]: o["sha256"] for o in _record(case, eid)["outputs"]}
    assert rewritten[f"{folder}/pslist.parquet"] == hash_file(table, ("sha256",))[1]["sha256"]


@pytest.mark.slow
def test_a_kill_between_temp_and_rename_leaves_no_partial_table(
    image_case: tuple[Case, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    case, eid = image_case
    folder = case.path / "results" / "memory" / eid
    monkeypatch.setenv("TRIAGE_TEST_KILL_AT", "side_output:2")  # the worker dies as info.parquet is moved in
    summary = analyze_case(case, only=("memory",), jobs=1, options=OPTIONS)
    assert dict(summary.statuses) == {"error": 1}
    assert "worker process died" in _record(case, eid)["message"]
    tables = sorted(p.name for p in folder.glob("*.parquet"))
    assert tables == ["yara_raw.parquet"]  # stored before the kill; info and pslist never half there
    for p in folder.glob("*.parquet"):
        pq.read_table(p)  # every table in place is whole
    assert any(p.name.startswith(".info.parquet.tmp-") for p in folder.iterdir())  # the write it interrupted

    monkeypatch.delenv("TRIAGE_TEST_KILL_AT")
    summary = analyze_case(case, only=("memory",), jobs=1, options=OPTIONS)
    assert dict(summary.statuses) == {"success": 1}
    assert sorted(p.name for p in folder.iterdir()) == NAMES
    assert len(_record(case, eid)["outputs"]) == 4
