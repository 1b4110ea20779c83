"""The project's ED 21-02 Sigma pack (signatures/sigma/ed2102): rule metadata, pySigma parsing, loading in
our engine with nothing skipped, and every rule against its positive and negative samples (samples.yaml).
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sigma.collection import SigmaCollection

from triage.formats.evtx import to_frame
from triage.sigma import RuleSet, load_rules

REPO = Path(__file__).resolve().parents[3]
PACK = REPO / "signatures" / "sigma" / "ed2102"
RULE_FILES = sorted(PACK.glob("*.yml"))
SAMPLES_DIR = REPO / "signatures" / "sigma" / "samples"  # kept out of the rule folder
SAMPLES_FILE = SAMPLES_DIR / "ed2102.yaml"
SAMPLE_FILES = sorted(SAMPLES_DIR.glob("*.yaml"))  # ed2102.yaml plus any other set (breadth.yaml ...)

# File name prefixes: one per tactic family, so a rule's purpose shows in its name.
PREFIXES = (
    "exchange_", "cred_", "persist_", "evasion_", "ps_", "webshell_",
    "lateral_", "discovery_", "privesc_", "execution_", "lolbin_", "c2_", "collection_", "exfil_", "impact_",
    "lm_", "disc_", "exec_", "coll_", "corr_",
    "r4_",  # round 4 of issue 14: r4_<tactic>_<what>
)  # fmt: skip
LEVELS = {"low", "medium", "high", "critical"}
ED2102_STEPS = {8, 9, 10}
# fmt: off
REQUIRED_KEYS = (
    "title", "id", "status", "description", "author", "date", "references",
    "logsource", "detection", "falsepositives", "level", "tags",
)
# fmt: on
SAMPLE_ENVELOPE = ("Channel", "Provider", "EventID")
# Correlation rules (corr_*, issue 14) have a correlation section instead of logsource and detection.
CORRELATION_KEYS = (*(k for k in REQUIRED_KEYS if k not in ("logsource", "detection")), "correlation")


def _doc(path: Path) -> dict:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert len(docs) == 1, f"{path.name}: one rule per file"
    return docs[0]


@lru_cache(maxsize=1)
def _samples() -> dict[str, dict]:
    """Every samples file merged: rule id -> spec. A rule id in two files is an error."""
    merged: dict[str, dict] = {}
    for path in SAMPLE_FILES:
        rules = yaml.safe_load(path.read_text(encoding="utf-8"))["rules"] or {}
        clash = set(rules) & set(merged)
        assert not clash, f"{path.name}: samples for rule ids already given elsewhere: {sorted(clash)}"
        merged.update(rules)
    return merged


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_rules(RULE_FILES)


def test_pack_is_not_empty():
    assert len(RULE_FILES) >= 60
    assert SAMPLES_FILE.is_file()


# ------------------------------------------------------------------------------------------ metadata
@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.stem)
def test_rule_metadata(path: Path):
    doc = _doc(path)
    missing = [k for k in (CORRELATION_KEYS if "correlation" in doc else REQUIRED_KEYS) if not doc.get(k)]
    assert not missing, f"{path.name}: missing {missing}"
    assert path.stem.startswith(PREFIXES), f"{path.name}: file name must start with one of {PREFIXES}"
    assert re.fullmatch(r"[a-z0-9_]+", path.stem), path.name
    assert uuid.UUID(doc["id"]).version == 4 and str(uuid.UUID(doc["id"])) == doc["id"]
    assert doc["status"] == "experimental"
    assert doc["author"] == "triage project"
    assert doc["level"] in LEVELS
    date.fromisoformat(str(doc["date"]))
    assert "correlation" in doc or doc["logsource"].get("product") == "windows"
    assert all(str(r).startswith("https://") for r in doc["references"])
    assert isinstance(doc["falsepositives"], list)

    tags = [str(t) for t in doc["tags"]]
    assert len(tags) == len(set(tags)), f"{path.name}: duplicate tags"
    assert any(re.fullmatch(r"attack\.t\d{4}(\.\d{3})?", t) for t in tags), f"{path.name}: no ATT&CK technique"
    steps = {int(m.group(1)) for t in tags if (m := re.fullmatch(r"ed2102\.step(\d+)", t))}
    assert steps and steps <= ED2102_STEPS, f"{path.name}: ED 21-02 step tags {steps}"
    for tag in tags:
        assert re.fullmatch(r"(attack\.[a-z0-9.\-]+|cve\.\d{4}-\d{4,}|ed2102\.step\d+)", tag), f"{path.name}: {tag}"


def test_rule_ids_and_titles_are_unique():
    docs = [_doc(p) for p in RULE_FILES]
    ids = [d["id"] for d in docs]
    titles = [d["title"] for d in docs]
    assert len(set(ids)) == len(ids)
    assert len(set(titles)) == len(titles)


# ------------------------------------------------------------------------------------------ parsers
@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.stem)
def test_pysigma_parses_rule(path: Path):
    # raises on any error; a correlation's base rules live in other files of the pack
    collection = SigmaCollection.from_yaml(path.read_text(encoding="utf-8"), resolve_references=False)
    assert len(collection.rules) == 1
    rule = collection.rules[0]
    assert not rule.errors
    assert str(rule.id) == _doc(path)["id"]


def test_engine_loads_every_rule(ruleset: RuleSet):
    assert ruleset.skipped == [], ruleset.skipped
    assert ruleset.warnings == [], ruleset.warnings
    assert len(ruleset.loaded) + len(ruleset.correlations) == len(RULE_FILES)
    for rule in ruleset.loaded:
        assert rule.ed2102_steps, f"{rule.path}: engine found no ED 21-02 step"
        assert rule.mitre, f"{rule.path}: engine found no ATT&CK technique"


# ------------------------------------------------------------------------------------------ samples
def test_samples_cover_every_rule(ruleset: RuleSet):
    samples = _samples()
    by_id = {r.id: Path(r.path).stem for r in ruleset.loaded}
    assert set(samples) == set(by_id), {
        "rules without samples": sorted(by_id[i] for i in set(by_id) - set(samples)),
        "samples for unknown ids": sorted(set(samples) - set(by_id)),
    }
    for rid, spec in samples.items():
        assert spec["rule"] == by_id[rid], f"{rid}: samples name {spec['rule']}, rule file is {by_id[rid]}"
        assert spec.get("positive"), f"{spec['rule']}: no positive sample"
        assert spec.get("negative"), f"{spec['rule']}: no negative sample"
        for row in [*spec["positive"], *spec["negative"]]:
            missing = [c for c in SAMPLE_ENVELOPE if c not in row]
            assert not missing, f"{spec['rule']}: sample row lacks {missing}"


@pytest.mark.parametrize("rule_id", sorted(_samples()), ids=lambda i: _samples()[i]["rule"])
def test_rule_matches_its_samples(ruleset: RuleSet, rule_id: str):
    spec = _samples()[rule_id]
    positives, negatives = spec["positive"], spec["negative"]
    frame = to_frame([dict(r) for r in [*positives, *negatives]])
    matches = ruleset.evaluate(frame)
    hit = set(matches.loc[matches["rule_id"] == rule_id, "row"].tolist())
    missed = [i for i in range(len(positives)) if i not in hit]
    false_hits = [i - len(positives) for i in sorted(hit) if i >= len(positives)]
    assert not missed, f"{spec['rule']}: positive samples {missed} did not match"
    assert not false_hits, f"{spec['rule']}: negative samples {false_hits} matched"
    assert ruleset.runtime_errors == []


def test_samples_frame_keeps_reader_dtypes():
    """Sample rows go through the reader's own typing, so EventID/Level are integers as on real logs."""
    frame = to_frame([{"Channel": "Security", "Provider": "p", "EventID": 4688, "Level": 0}])
    assert str(frame["EventID"].dtype) == "Int64"
    assert isinstance(frame, pd.DataFrame)
