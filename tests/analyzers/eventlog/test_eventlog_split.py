"""A big EVTX log read in two halves at once (this process and a forked helper) gives exactly one pass's findings."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml

import analyzers.eventlog as eventlog
from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.case import Case
from triage.formats.evtx import (
    CHUNK_SIZE,
    FILE_HEADER,
    ReadStats,
    iter_evtx,
    iter_evtx_range,
    table_to_frame,
    whole_chunks,
)
from triage.report import load_findings
from triage.runner import BatchLimits, analyze_case
from triage.testing.corrsamples import expand, to_events
from triage.testing.eventlogs import LOGS
from triage.testing.evtx import evtx_bytes
from triage.testing.volume import VolumeSpec, build_volume

REPO = Path(__file__).resolve().parents[3]
MERGE = eventlog._merge_stats
LDAP_BURST = "40de74c7-e024-4528-9cc4-47258d61389a"  # 300 directory reads in 30 s: an event_count correlation


def _mix(n: int, seed: int) -> list:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import evtx_throughput
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return evtx_throughput.make_events(n, seed=seed)


@pytest.fixture(scope="module")
def big_log() -> tuple[bytes, range]:
    """A Sysmon mix with a correlation burst in its middle (record numbers in order); the burst's record numbers."""
    samples = yaml.safe_load((REPO / "signatures" / "sigma" / "samples" / "correlation.yaml").read_text())
    burst = to_events(expand(samples["correlations"][LDAP_BURST]["positive"][0], datetime(2021, 3, 2, tzinfo=UTC)))
    mix = _mix(2000, seed=5)
    events = [replace(e, record_id=i + 1) for i, e in enumerate([*mix[:1000], *burst, *mix[1000:]])]
    return evtx_bytes(events), range(1001, 1001 + len(burst))


def _rows(tables: list[pa.Table]) -> pd.DataFrame:
    return pd.concat([table_to_frame(t) for t in tables], ignore_index=True)


def test_chunk_ranges_give_the_records_of_the_whole_log(tmp_path: Path, big_log: tuple[bytes, range]) -> None:
    path = tmp_path / "big.evtx"
    path.write_bytes(big_log[0])
    chunks = whole_chunks(path)
    assert chunks is not None and chunks >= 8
    whole = pd.concat(list(iter_evtx(path, ReadStats())), ignore_index=True)
    stats = [ReadStats(), ReadStats(), ReadStats()]
    cuts = [0, chunks // 3, chunks // 2, chunks]
    parts = [list(iter_evtx_range(path, s, a, b, batch=700)) for s, a, b in zip(stats, cuts, cuts[1:], strict=False)]
    joined = _rows([t for p in parts for t in p])
    pd.testing.assert_frame_equal(joined[list(whole.columns)], whole)
    assert sum(s.records for s in stats) == len(whole) and not any(s.warnings for s in stats)
    # a file that is not header + whole chunks is never read in ranges
    (tmp_path / "cut.evtx").write_bytes(big_log[0][: FILE_HEADER + 3 * CHUNK_SIZE + 100])
    assert whole_chunks(tmp_path / "cut.evtx") is None


def test_the_burst_straddles_the_split(tmp_path: Path, big_log: tuple[bytes, range]) -> None:
    """The fixture's correlation burst lies across the two halves (what the findings test below relies on)."""
    path = tmp_path / "big.evtx"
    path.write_bytes(big_log[0])
    half = whole_chunks(path) // 2  # type: ignore[operator]
    first = _rows(list(iter_evtx_range(path, ReadStats(), 0, half)))
    last = int(first["EventRecordID"].max())
    assert big_log[1].start < last < big_log[1].stop - 1


def test_split_read_halves_are_clean_and_complete(tmp_path: Path, big_log: tuple[bytes, range]) -> None:
    path = tmp_path / "big.evtx"
    path.write_bytes(big_log[0])
    analyzer = eventlog.EventLogs()
    parts = analyzer._split_read(str(path), whole_chunks(path))  # type: ignore[arg-type]
    assert parts is not None  # read by this process and a helper
    halves, batches = parts
    assert [h.records > 0 for h in halves] == [True, True]
    assert sum(h.records for h in halves) == len(big_log[1]) + 2000
    covered = sorted(int(i) for _, _, (_, ids) in batches for i in ids)
    assert covered == list(range(1, 2001 + len(big_log[1])))
    # a log whose second half holds a damaged chunk is read in one pass (its warnings as a whole read words them)
    data = bytearray(big_log[0])
    bad = FILE_HEADER + (whole_chunks(path) - 2) * CHUNK_SIZE  # type: ignore[operator]
    data[bad : bad + 8] = b"\0" * 8
    (tmp_path / "bad.evtx").write_bytes(bytes(data))
    assert analyzer._split_read(str(tmp_path / "bad.evtx"), whole_chunks(path)) is None  # type: ignore[arg-type]


def _findings(tmp_path: Path, data: bytes, name: str, split: int, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    monkeypatch.setattr(eventlog, "SPLIT_CHUNKS", split)  # workers are forked: they see it too
    def merged(into: ReadStats, parts: list[ReadStats]) -> None:  # leaves a mark when a log was read in halves
        (tmp_path / f"halves-{name}").write_text(str(len(parts)))
        MERGE(into, parts)

    monkeypatch.setattr(eventlog, "_merge_stats", merged)
    vol = build_volume(tmp_path / f"vol-{name}", VolumeSpec(compromised=False, extra_files={f"{LOGS}/big.evtx": data}))
    case = Case.create_or_open(tmp_path / f"case-{name}", examiner="t", case_id="CASE-SPLIT")
    collect_volume(case, open_source_path(str(vol)), host=None)
    s = analyze_case(case, only=("eventlog",), batching=BatchLimits(count=1))
    assert s.statuses == {"success": len(case.evidence(kinds={"evtx"}))}
    df = load_findings(case)
    where = {r.artifact_id: r.relpath for r in case.evidence()}
    df["evidence_id"] = df["evidence_id"].map(where)
    cols = ["evidence_id", "rule_id", "severity", "title", "message", "location", "ts", "attributes"]
    return df[cols].astype(str).sort_values(cols).reset_index(drop=True)


@pytest.mark.slow  # two volumes collected and analyzed
def test_a_split_log_gives_the_findings_of_one_pass(
    tmp_path: Path, big_log: tuple[bytes, range], monkeypatch: pytest.MonkeyPatch
) -> None:
    one_pass = _findings(tmp_path, big_log[0], "one", 1 << 30, monkeypatch)
    split = _findings(tmp_path, big_log[0], "split", 4, monkeypatch)
    assert not (tmp_path / "halves-one").exists() and (tmp_path / "halves-split").read_text() == "2"
    assert LDAP_BURST in set(one_pass["rule_id"])  # the correlation across the halves fired, once
    assert (one_pass["rule_id"] == LDAP_BURST).sum() == 1
    assert one_pass["location"].str.contains("coverage").any() and len(one_pass) > 50
    pd.testing.assert_frame_equal(split, one_pass)
