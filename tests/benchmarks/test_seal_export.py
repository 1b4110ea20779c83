"""The seal/export benchmark at its tiniest size: it runs and its table has both rows (never absolute times)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("triage_bench_seal_export", BENCH / "seal_export.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


@pytest.mark.slow
def test_seal_export_benchmark_tiny_run(bench: ModuleType, tmp_path: Path) -> None:
    missing = [t for t in bench.TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"baseline tools not installed: {', '.join(missing)}")
    rows = bench.measure(rounds=1, mb=1, work=tmp_path)
    assert [r.measure.split(" (")[0] for r in rows] == ["triage seal", "triage export"]
    for r in rows:
        assert r.triage_s > 0 and r.baseline_s > 0 and r.ratio > 0 and r.rounds == 1
    assert len(list(tmp_path.glob("pkg-0.zip"))) == 1 and len(list(tmp_path.glob("base-0.zip"))) == 1
