"""The own correlation rules (signatures/sigma/ed2102/corr_*.yml) against their burst samples.

Every scenario of signatures/sigma/samples/correlation.yaml is written into a real EVTX file with the project's
EVTX writer, read back with the reader the analyzer uses, matched by the rules and correlated: a positive
scenario gives exactly one hit of its rule (one finding per burst, not per event), a benign one none.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
import yaml

from triage.formats.evtx import ReadStats, iter_evtx
from triage.sigma import RuleSet, load_rules
from triage.sigma.correlation import CorrelationHit, Correlator
from triage.sigma.coverage import load_coverage
from triage.testing.corrsamples import expand, to_events
from triage.testing.evtx import evtx_bytes

REPO = Path(__file__).resolve().parents[3]
PACK = REPO / "signatures" / "sigma" / "ed2102"
SAMPLES = REPO / "signatures" / "sigma" / "samples" / "correlation.yaml"
COVERAGE = REPO / "signatures" / "coverage" / "correlation.yaml"
START = datetime(2021, 3, 2, 23, 55, tzinfo=UTC)


@cache
def _samples() -> dict:
    return yaml.safe_load(SAMPLES.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pack() -> RuleSet:
    return load_rules(sorted(PACK.glob("corr_*.yml")))


def _scenarios() -> list[tuple[str, str, bool, int]]:
    out = []
    for rid, spec in _samples()["correlations"].items():
        for positive in (True, False):
            for n, _ in enumerate(spec["positive" if positive else "negative"]):
                out.append((rid, spec["rule"], positive, n))
    return out


def _run(ruleset: RuleSet, rows: list[dict], tmp_path: Path) -> tuple[list[CorrelationHit], pd.DataFrame]:
    path = tmp_path / "scenario.evtx"
    path.write_bytes(evtx_bytes(to_events(rows)))
    corr = Correlator(ruleset)
    visible = []
    frames = list(iter_evtx(path, ReadStats()))
    for df in frames:
        matches = ruleset.evaluate(df)
        corr.add(df, matches)
        visible.append(corr.visible(matches))
    return corr.finish(), pd.concat(visible) if visible else pd.DataFrame()


def test_pack_correlations_load_and_resolve(pack: RuleSet):
    assert pack.skipped == []
    corr_files = [p for p in PACK.glob("corr_*.yml") if "correlation:" in p.read_text(encoding="utf-8")]
    assert len(pack.correlations) == len(corr_files) >= 12
    loaded = {r.id for r in pack.loaded} | {c.id for c in pack.correlations}  # a correlation may name one
    for corr in pack.correlations:
        assert corr.rule_ids and set(corr.rule_ids) <= loaded
        assert corr.level in ("medium", "high")  # SEVERITY.md: a burst of failures is medium
        assert corr.mitre and corr.ed2102_steps


def test_every_correlation_has_burst_and_benign_samples(pack: RuleSet):
    samples = _samples()["correlations"]
    assert set(samples) == {c.id for c in pack.correlations}
    for corr in pack.correlations:
        spec = samples[corr.id]
        assert spec["rule"] == Path(corr.path).stem
        assert spec["positive"] and spec["negative"], spec["rule"]


@pytest.mark.parametrize(("rule_id", "stem", "positive", "n"), _scenarios(), ids=lambda v: str(v)[:40])
def test_scenario_through_real_evtx(pack: RuleSet, tmp_path: Path, rule_id: str, stem: str, positive: bool, n: int):
    scenario = _samples()["correlations"][rule_id]["positive" if positive else "negative"][n]
    rows = expand(scenario, START)
    hits, visible = _run(pack, rows, tmp_path)
    mine = [h for h in hits if h.rule.id == rule_id]
    if positive:
        assert len(mine) == 1, f"{stem}: {scenario['name']}: {len(mine)} hits"
        hit = mine[0]
        times = sorted(r["TimeCreated"] for r in rows)
        assert times[0] <= hit.first <= hit.last <= times[-1]
        assert hit.events >= hit.rule.count and hit.record_ids
    else:
        assert mine == [], f"{stem}: benign scenario {scenario['name']!r} raised {[h.group for h in mine]}"
    # building blocks say generate: false (the default): their single matches never reach findings
    base = set(pack.correlations[0].rule_ids).union(*(c.rule_ids for c in pack.correlations))
    assert not set(visible.get("rule_id", pd.Series(dtype=str))) & base


def test_coverage_file_names_every_correlation(pack: RuleSet):
    cov = load_coverage(REPO / "signatures" / "coverage")
    techniques = [t for t in cov.techniques if t.file == COVERAGE.name]
    named = {ref for t in techniques for refs in t.cells.values() for ref in refs}
    by_id = {c.id: c for c in pack.correlations}
    assert named == set(by_id), {"not in coverage": sorted(set(by_id) - named), "unknown": sorted(named - set(by_id))}
    for tech in techniques:
        for refs in tech.cells.values():
            for ref in refs:
                tags = {t.removeprefix("attack.").upper() for t in by_id[ref].tags}
                assert any(a.upper() in tags or a.upper().split(".")[0] in tags for a in tech.attack), (tech.id, ref)


# ------------------------------------------------------------------------------------------ benign baseline
BASELINE = REPO.parent / "shared" / "corpus" / "evtx" / "baseline"


def test_built_benign_server_raises_no_correlation(pack: RuleSet, tmp_path: Path):
    from triage.testing.benign_server import benign_server_events
    from triage.testing.evtx import write_evtx

    path = write_evtx(tmp_path / "benign.evtx", benign_server_events())
    corr = Correlator(pack)
    for df in iter_evtx(path, ReadStats()):
        corr.add(df, pack.evaluate(df))
    assert [(Path(h.rule.path).stem, h.group) for h in corr.finish()] == []


@pytest.mark.skipif(not BASELINE.is_dir(), reason=f"shared corpus baseline not present at {BASELINE}")
@pytest.mark.parametrize("name", sorted(p.name for p in BASELINE.glob("*.evtx")) if BASELINE.is_dir() else [])
def test_corpus_baseline_logs_raise_no_correlation(pack: RuleSet, name: str):
    corr = Correlator(pack)
    for df in iter_evtx(BASELINE / name, ReadStats()):
        corr.add(df, pack.evaluate(df))
    assert [(Path(h.rule.path).stem, h.group) for h in corr.finish()] == []
