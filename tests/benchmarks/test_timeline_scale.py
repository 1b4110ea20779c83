"""The timeline benchmark at its tiniest size: it runs, both contenders are measured, and triage wrote every record."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_timeline_scale_tiny_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import timeline_scale

    try:
        res = timeline_scale.run(events=2_000, per_file=1_000, rounds=1, work=tmp_path)
    finally:
        sys.modules.pop("timeline_scale", None)
    assert res["records"] == 2_000
    (r,) = res["rounds"]
    assert r["baseline_records"] == 2_000
    assert r["triage_events"] == 2_000 + 2 * 2  # every record, plus each log file's two source times
    assert r["ratio"] > 0 and r["triage_peak_mib"] > 0 and r["baseline_peak_mib"] > 0
    assert res["median_ratio"] == r["ratio"]
