"""Repeating text columns held as shared Python strings, and a forked STIX writer that lets go of the columns it
never reads: the report is the one the plain Arrow-backed frame gives, file for file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from triage.case import Case
from triage.report import build as build_mod
from triage.report import exports
from triage.report.arrowmem import release_columns
from triage.report.build import SHARED_TEXT, findings_frame_of, load_findings, load_findings_table, report_context
from triage.report.stix import STIX_COLUMNS, build_bundle

SAME_BYTES = (
    "findings.parquet",
    "findings.csv",
    "findings.jsonl",
    "timesketch.jsonl",
    "ledger.csv",
    "cisa_template.csv",
)


def _cells(s: pd.Series) -> list[object]:
    return s.to_numpy(dtype=object, na_value=None).tolist()


def test_shared_columns_hold_the_plain_values_once_per_distinct_value(hostile_report) -> None:
    case, _ = hostile_report
    plain = load_findings(case)
    shared = findings_frame_of(load_findings_table(case, shared=True))
    assert list(shared.columns) == list(plain.columns) and len(shared) == len(plain) > 10
    for name in plain.columns:
        assert _cells(shared[name]) == _cells(plain[name]), name
        if name in SHARED_TEXT:
            assert shared[name].dtype == pd.StringDtype("python"), name
            values = [v for v in shared[name].array if isinstance(v, str)]
            assert len({id(v) for v in values}) == len(set(values)), name  # one object per distinct value
        else:
            assert shared[name].dtype == plain[name].dtype, name
    assert shared["host"].isna().sum() == plain["host"].isna().sum()


def _without_run(obj: object, run: set[str]) -> object:
    """A JSON value with the run's own strings (its time, ids, custody head) left out."""
    if isinstance(obj, dict):
        return {k: _without_run(v, run) for k, v in obj.items() if k not in ("custody_head", "generated")}
    if isinstance(obj, list):
        return [_without_run(v, run) for v in obj]
    return "<run>" if isinstance(obj, str) and obj in run else obj


def test_shared_report_with_forked_stix_writes_the_plain_report(hostile_report, tmp_path, monkeypatch) -> None:
    src, _ = hostile_report
    shutil.copytree(src.path, tmp_path / "case")
    case = Case.open(tmp_path / "case")
    out = case.path / "report"
    with monkeypatch.context() as m:  # the frame as before: every text column Arrow-backed, all in this process
        m.setattr(build_mod, "SHARED_TEXT", ())
        build_mod.build_report(case, html=False, xlsx=False)
    before = {name: (out / name).read_bytes() for name in (*SAME_BYTES, "findings.stix.json", "ledger.json")}
    monkeypatch.setattr(exports, "PARALLEL_ROWS", 1)  # export workers and a forked STIX writer
    build_mod.build_report(case, html=False, xlsx=False)
    for name in SAME_BYTES:
        assert (out / name).read_bytes() == before[name], name
    old, new = (json.loads(before["ledger.json"]), json.loads((out / "ledger.json").read_bytes()))
    assert _without_run(new, set()) == _without_run(old, set())
    old_stix = json.loads(before["findings.stix.json"])["objects"]
    new_stix = json.loads((out / "findings.stix.json").read_bytes())["objects"]
    times = {o.get("created") for o in old_stix + new_stix} - {None}
    assert len(new_stix) == len(old_stix) > 5
    assert [_without_run(o, times) for o in new_stix] == [_without_run(o, times) for o in old_stix]
    case.close()


def test_stix_columns_are_all_the_bundle_reads(hostile_report) -> None:
    case, _ = hostile_report
    full = report_context(case)
    bundle, counts = build_bundle(full, [])
    slim = report_context(case)
    slim.generated = full.generated
    release_columns(slim.findings, keep=STIX_COLUMNS)
    assert set(slim.findings.columns) == set(STIX_COLUMNS)
    released, released_counts = build_bundle(slim, [])
    assert released_counts == counts and counts["sightings"] > 0
    objects = json.loads(bundle.serialize(pretty=False))["objects"]  # the bundle's own id is random
    assert json.loads(released.serialize(pretty=False))["objects"] == objects


@pytest.mark.parametrize("keep", [("host",), ()])
def test_release_columns_drops_the_rest_in_place(keep: tuple[str, ...]) -> None:
    frame = pd.DataFrame({"host": ["a"], "title": ["t"]}, dtype="string")
    same = frame
    release_columns(frame, keep)
    assert same is frame and list(frame.columns) == list(keep)


def test_findings_parquet_written_by_groups_is_the_frames_file(hostile_report, tmp_path) -> None:
    case, _ = hostile_report
    table = load_findings_table(case, shared=True)
    build_mod.write_findings_parquet(table, tmp_path / "groups.parquet", 4)
    load_findings(case).to_parquet(tmp_path / "frame.parquet", index=False, row_group_size=4)
    assert (tmp_path / "groups.parquet").read_bytes() == (tmp_path / "frame.parquet").read_bytes()
    assert Path(tmp_path / "groups.parquet").stat().st_size > 0
