"""The benchmark suite at its tiniest sizes: it runs, and its table has the rows it promises (so it cannot rot).

Times are never asserted: only that every row has a measured baseline and a positive ratio.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def suite():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("triage_bench_suite", BENCH / "suite.py")
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up there
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop("triage_bench_suite", None)
        sys.path.remove(str(BENCH))


def test_suite_tiny_run(suite, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("TRIAGE_BENCH_RAISE", "1")  # a failing section fails the test, with its traceback
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    argv = ["--only", "exchange,overhead", "--exchange-mb", "2", "--units", "8", "--quiet"]
    rows, meta = suite.run([*argv, "--json", str(out_json), "--markdown", str(out_md)])

    assert meta["sections"] == ["exchange", "overhead"]
    assert meta["skipped"] == {}
    got = [(r.section, r.measure, r.baseline) for r in rows]
    assert got == [
        ("exchange", "Test-ProxyLogon checks", "python line count"),
        ("exchange", "web log rules", "python line count"),
        ("overhead", "local pool --jobs 2", "direct call (jobs=1)"),
        ("overhead", "dask local:2", "direct call (jobs=1)"),
    ]
    for r in rows:
        assert r.value > 0 and r.baseline_value and r.baseline_value > 0, r
        assert r.ratio is not None and r.ratio > 0, r
    # the log set is 6 files with at least one planted SSRF row each: all are found
    assert rows[0].note.endswith(", 6/6 planted SSRF rows found")

    data = json.loads(out_json.read_text())
    assert [r["measure"] for r in data["rows"]] == [r.measure for r in rows]
    assert data["meta"]["args"]["units"] == 8
    md = out_md.read_text().splitlines()
    assert md[1].startswith("Load average at each section's start: exchange ")
    assert md[3] == "| section | measure | triage | baseline | ratio | target | note |"
    assert len([line for line in md if line.startswith("| ")]) == 1 + len(rows)
    assert list(tmp_path.glob("triage-suite-*")) == []  # the scratch folder is gone


def test_sections_parse(suite):
    assert suite.parse_sections(["analyzers"]) == list(suite.ANALYZER_SECTIONS)
    assert suite.parse_sections(["fleet,overhead", "fleet"]) == ["fleet", "overhead"]
    with pytest.raises(SystemExit, match="unknown section 'nope'"):
        suite.parse_sections(["nope"])
