"""The memory YARA rules, compiled as the memory analyzer compiles them: each positive sample fires its rule,
each negative sample (a benign look-alike) does not."""

from __future__ import annotations

from pathlib import Path

import pytest
import yara_x
from memory_yara_samples import MEMORY_SAMPLES

from analyzers.memory import yararules
from triage.registry import signature_path


@pytest.fixture(scope="module")
def ruleset() -> yararules.MemoryRules:
    compiled = yararules.compile_rules(yararules.rule_files())
    assert compiled.problems == []
    return compiled


def _hits(ruleset: yararules.MemoryRules, data: bytes) -> set[str]:
    """``id`` meta of every rule that matches ``data``."""
    matched = yara_x.Scanner(ruleset.rules).scan(data).matching_rules
    return {str(ruleset.meta[f"{r.namespace}.{r.identifier}"].get("id")) for r in matched}


def test_every_memory_rule_has_samples(ruleset: yararules.MemoryRules) -> None:
    memory_dir = signature_path(yararules.MEMORY_DIR).resolve()
    ids = [str(m.get("id")) for m in ruleset.meta.values() if Path(str(m.get("_file"))).resolve().parent == memory_dir]
    assert len(ids) == len(set(ids)) == 9
    assert set(ids) == set(MEMORY_SAMPLES)
    for rule_id, s in MEMORY_SAMPLES.items():
        assert s["positive"] and s["negative"], rule_id


@pytest.mark.parametrize("rule_id", sorted(MEMORY_SAMPLES))
def test_memory_samples(rule_id: str, ruleset: yararules.MemoryRules) -> None:
    for i, data in enumerate(MEMORY_SAMPLES[rule_id]["positive"]):
        assert rule_id in _hits(ruleset, data), f"positive sample {i} of {rule_id} did not match"
    for i, data in enumerate(MEMORY_SAMPLES[rule_id]["negative"]):
        assert rule_id not in _hits(ruleset, data), f"negative sample {i} of {rule_id} matched"
