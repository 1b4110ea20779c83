"""Small logs of a batch read into one frame and evaluated once give exactly what each log gives alone."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.case import Case
from triage.formats.evtx import CHUNK_SIZE, ReadStats, iter_evtx, read_together, table_to_frame
from triage.report import load_findings
from triage.runner import BatchLimits, analyze_case
from triage.testing.eventlogs import LOGS, event_log_files
from triage.testing.evtx import evtx_bytes
from triage.testing.volume import VolumeSpec, build_volume

REPO = Path(__file__).resolve().parents[3]


def _mix(n: int, seed: int) -> bytes:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import evtx_throughput
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return evtx_bytes(evtx_throughput.make_events(n, seed=seed))


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The attack and benign logs of the demo volume, two Sysmon mixes, and a log cut inside its last chunk."""
    out = {f"{LOGS}/attack-{Path(k).name}": v for k, v in event_log_files(True).items()}
    out |= {f"{LOGS}/benign-{Path(k).name}": v for k, v in event_log_files(False).items()}
    out[f"{LOGS}/mix1.evtx"] = _mix(300, 1)
    big = _mix(1500, 2)
    assert len(big) > 4096 + CHUNK_SIZE
    out[f"{LOGS}/cut.evtx"] = big[: 4096 + CHUNK_SIZE + 20_000]
    return out


def test_read_together_gives_each_log_its_own_rows(tmp_path: Path, logs: dict[str, bytes]) -> None:
    paths = []
    for rel, data in logs.items():
        p = tmp_path / Path(rel).name
        p.write_bytes(data)
        paths.append(p)
    together = read_together(paths)
    assert together is not None
    by_name = dict(zip((p.name for p in paths), together.parts, strict=True))
    assert by_name["cut.evtx"] is None  # a truncated log is read alone (its partial chunk is recovered there)
    joined = 0
    shared = table_to_frame(together.frame)
    for p, part in zip(paths, together.parts, strict=True):
        if part is None:
            continue
        alone_stats = ReadStats()
        alone = pd.concat(list(iter_evtx(p, alone_stats)), ignore_index=True)
        arrow_stats = ReadStats()  # the analyzer's own read of a log alone: Arrow tables, the same rows and counts
        tables = list(iter_evtx(p, arrow_stats, arrow=True))
        arrow = pd.concat([table_to_frame(t) for t in tables], ignore_index=True)
        pd.testing.assert_frame_equal(arrow, alone, check_dtype=True)
        assert (arrow_stats.records, arrow_stats.first, arrow_stats.last, arrow_stats.channels) == (
            alone_stats.records, alone_stats.first, alone_stats.last, alone_stats.channels
        )
        mine = shared.iloc[part.start : part.stop].reset_index(drop=True)
        mine = mine.loc[:, mine.notna().any().to_numpy() | mine.columns.isin(alone.columns)]
        pd.testing.assert_frame_equal(mine[list(alone.columns)], alone, check_dtype=True)
        assert set(mine.columns) == set(alone.columns), p.name
        assert (part.stats.records, part.stats.first, part.stats.last, part.stats.channels) == (
            alone_stats.records, alone_stats.first, alone_stats.last, alone_stats.channels
        )
        joined += 1
    assert joined == len(paths) - 1


def _findings(tmp_path: Path, logs: dict[str, bytes], batching: BatchLimits, name: str) -> pd.DataFrame:
    vol = build_volume(tmp_path / f"vol-{name}", VolumeSpec(compromised=True, extra_files=logs))
    case = Case.create_or_open(tmp_path / f"case-{name}", examiner="t", case_id="CASE-TOGETHER")
    collect_volume(case, open_source_path(str(vol)), host=None)
    s = analyze_case(case, only=("eventlog",), batching=batching)
    assert s.statuses == {"success": len(case.evidence(kinds={"evtx"}))}
    df = load_findings(case)
    where = {r.artifact_id: r.relpath for r in case.evidence()}
    df["evidence_id"] = df["evidence_id"].map(where)  # ids differ between the two cases, paths do not
    cols = ["evidence_id", "rule_id", "severity", "title", "message", "location", "ts", "attributes"]
    return df[cols].astype(str).sort_values(cols).reset_index(drop=True)


@pytest.mark.slow  # two volumes collected and analyzed (5-15 s on a shared machine)
def test_a_batch_of_logs_gives_the_findings_of_each_log_alone(tmp_path: Path, logs: dict[str, bytes]) -> None:
    alone = _findings(tmp_path, logs, BatchLimits(count=1), "alone")
    together = _findings(tmp_path, logs, BatchLimits(count=64, per_worker=1), "together")
    assert len(alone) >= 40 and alone["rule_id"].nunique() >= 15  # attack rules, coverage, the mixes
    pd.testing.assert_frame_equal(together, alone)


@pytest.mark.slow  # one volume collected and analyzed twice (5-15 s on a shared machine)
def test_default_sizing_gives_two_batches_of_logs_per_worker(tmp_path: Path, logs: dict[str, bytes]) -> None:
    """Under the default sizing the event-log analyzer asks for two batches per worker (its rules run once per
    batch frame), not the default four; an explicit sizing is kept as given."""
    from triage.results import BATCH_SUFFIX

    vol = build_volume(tmp_path / "vol", VolumeSpec(compromised=True, extra_files=logs))
    case = Case.create_or_open(tmp_path / "case", examiner="t", case_id="CASE-SIZING")
    collect_volume(case, open_source_path(str(vol)), host=None)
    n = len(case.evidence(kinds={"evtx"}))
    assert n >= 8
    s = analyze_case(case, only=("eventlog",), jobs=2)
    assert s.statuses == {"success": n}
    batches = sorted((case.path / "results" / "eventlog").glob(f"*{BATCH_SUFFIX}"))
    assert len(batches) == -(-n // -(-n // 4)) < -(-n // -(-n // 8))  # two workers, two batches each
    s = analyze_case(case, only=("eventlog",), jobs=2, force=True, batching=BatchLimits(count=64, per_worker=4))
    assert s.statuses == {"success": n}
    per_batch = -(-n // 8)  # about four batches per worker of two, as asked
    assert len(list((case.path / "results" / "eventlog").glob(f"*{BATCH_SUFFIX}"))) == -(-n // per_batch) > 2
