"""Round-2 rules of issue 14 (signatures/sigma/samples/round2.yaml, signatures/coverage/round2.yaml).

The generic pack tests already run every sample (test_ed2102_pack.py) and every coverage cell through a real EVTX
round trip (test_coverage_matrix.py). Here: the round-2 coverage file lists exactly the round-2 rules, each under
a technique whose ATT&CK ids the rule is tagged with, and none of them claims high/critical for a location or
name alone (the high ones are checked by name against the policy's behaviour list).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from triage.sigma import load_rules

REPO = Path(__file__).resolve().parents[3]
PACK = REPO / "signatures" / "sigma" / "ed2102"
SAMPLES = REPO / "signatures" / "sigma" / "samples" / "round2.yaml"
COVERAGE = REPO / "signatures" / "coverage" / "round2.yaml"
# Round-2 rules allowed above medium: each fires on the attack behaviour itself (SEVERITY.md).
HIGH_BY_BEHAVIOUR = {"persist_accessibility_binary_written"}


@cache
def _samples() -> dict[str, dict]:
    return yaml.safe_load(SAMPLES.read_text(encoding="utf-8"))["rules"]


@cache
def _coverage() -> list[dict]:
    return yaml.safe_load(COVERAGE.read_text(encoding="utf-8"))["techniques"]


def _rules() -> dict[str, object]:
    stems = {spec["rule"] for spec in _samples().values()}
    rs = load_rules(sorted(p for p in PACK.glob("*.yml") if p.stem in stems))
    assert not rs.skipped, rs.skipped
    return {r.id: r for r in rs.loaded}


def test_every_round2_rule_is_in_the_round2_matrix_and_nothing_else():
    rules = _rules()
    assert set(rules) == set(_samples())
    listed = {rid for tech in _coverage() for refs in tech["sources"].values() for rid in refs}
    assert listed == set(rules), {"unlisted": sorted(set(rules) - listed), "unknown": sorted(listed - set(rules))}


def test_matrix_rows_name_techniques_the_rules_are_tagged_with():
    rules = _rules()
    for tech in _coverage():
        attack = {t.lower() for t in tech["attack"]}
        for refs in tech["sources"].values():
            for rid in refs:
                tags = {t.removeprefix("attack.") for t in rules[rid].tags}
                assert attack & tags, f"{tech['id']}: {Path(rules[rid].path).stem} is not tagged {sorted(attack)}"


def test_round2_levels_follow_the_severity_policy():
    loud = {Path(r.path).stem for r in _rules().values() if r.level in ("high", "critical")}
    assert loud == HIGH_BY_BEHAVIOUR
