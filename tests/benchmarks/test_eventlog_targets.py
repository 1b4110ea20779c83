"""The event-log target benchmark: its ratio arithmetic, and a tiny whole-process run (never absolute times)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def targets() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("triage_bench_eventlog_targets", BENCH / "eventlog_targets.py")
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up there
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop("triage_bench_eventlog_targets", None)
        sys.path.remove(str(BENCH))


def test_ratios_are_per_round_pairs_and_their_median(targets: ModuleType) -> None:
    times = {"parse": [1.0, 2.0, 4.0], "own": [1.5, 5.0, 6.0], "sigma": [3.0, 5.0, 12.0]}
    assert targets.pair_ratios(times["own"], times["parse"]) == [1.5, 2.5, 1.5]
    s = targets.summarise(times)
    # the median of per-round ratios (1.5), not the ratio of medians (5.0 / 2.0 = 2.5)
    assert s["own/parse"] == pytest.approx(1.5)
    assert s["sigma/own"] == pytest.approx(2.0)  # ratios 2.0, 1.0, 2.0
    assert s["parse"] == 2.0 and s["own"] == 5.0
    assert targets.verdict("own/parse", 1.5) == "ok" and targets.verdict("sigma/own", 1.51) == "MISSED"
    with pytest.raises(ValueError):
        targets.pair_ratios([1.0], [1.0, 2.0])
    assert "sigma/own" not in targets.summarise({"parse": [1.0], "own": [2.0]})


def test_sigmahq_folder_from_env(targets: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIAGE_SIGMAHQ", raising=False)
    assert targets.sigmahq_windows() is None
    (tmp_path / "rules" / "windows").mkdir(parents=True)
    monkeypatch.setenv("TRIAGE_SIGMAHQ", str(tmp_path))
    assert targets.sigmahq_windows() == tmp_path / "rules" / "windows"
    assert targets.sigmahq_windows(tmp_path / "rules" / "windows") == tmp_path / "rules" / "windows"


@pytest.mark.slow
def test_tiny_big_log_run_prints_own_over_parse(
    targets: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TRIAGE_SIGMAHQ", raising=False)
    monkeypatch.setenv("TRIAGE_EXAMINER", "bench-test")
    argv = ["--shape", "big", "--records", "300", "--rounds", "1", "--no-warm-up", "--work", str(tmp_path)]
    assert targets.main(argv) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "own/parse" in ln)
    assert line.split()[:3] == ["big", "1", "300"]  # one log, every one of its 300 events parsed
    ratio = float(re.search(r"own/parse\s+([\d.]+)x", line).group(1))  # type: ignore[union-attr]
    assert ratio > 0
    assert "sigma/own" not in out
    assert (tmp_path / "case-big" / "results" / "eventlog").is_dir()  # the analyze really ran on the case


def test_sqlite_baseline_ratio_is_a_speed_up_to_reach(targets: ModuleType) -> None:
    times = {"parse": [1.0, 1.0], "own": [2.0, 2.0], "sigma": [4.0, 2.0], "sqlite": [16.0, 4.0]}
    s = targets.summarise(times)
    assert s["sqlite/sigma"] == pytest.approx(3.0)  # per-round 4.0 and 2.0: the baseline over triage, median
    assert targets.verdict("sqlite/sigma", 3.0) == "ok" and targets.verdict("sqlite/sigma", 2.9) == "MISSED"
