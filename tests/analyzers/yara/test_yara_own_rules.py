"""The project's own YARA rules: a complete meta block, compiling in both engines, samples that behave."""

from __future__ import annotations

import re

import pytest
from yara_support import SAMPLES

from analyzers.yara.content import OWN_META_KEYS, own_rule_paths
from analyzers.yara.engine import YARA_PYTHON, YARA_X, compile_rules, find_rule_files
from triage.finding import SEVERITIES

ENGINES = (YARA_X, YARA_PYTHON)
FILES = find_rule_files(own_rule_paths(), "triage")


def _rules_with_meta() -> list[tuple[str, str, dict[str, object]]]:
    """(file, rule, meta) of every own rule, read with yara-python (its compiled rules list their meta)."""
    import yara

    out = []
    for f in FILES:
        compiled = yara.compile(source=f.data.decode(), externals=dict.fromkeys(("filename", "filepath"), ""))
        out.extend((f.path.name, r.identifier, dict(r.meta)) for r in compiled)
    return out


RULES = _rules_with_meta()


def test_own_rules_exist_and_are_counted() -> None:
    assert [f.path.name for f in FILES] == sorted(f.path.name for f in FILES)
    assert len(RULES) == len(SAMPLES) == 20
    assert sum(f.rule_count for f in FILES) == len(RULES)  # no commented-out rules in ours


@pytest.mark.parametrize(("rule_file", "rule", "meta"), RULES, ids=[r[1] for r in RULES])
def test_meta_block_is_complete(rule_file: str, rule: str, meta: dict[str, object]) -> None:
    """Every rule carries the fixed meta block, with values the finding schema accepts."""
    assert set(OWN_META_KEYS) <= set(meta), f"{rule_file}:{rule} lacks {set(OWN_META_KEYS) - set(meta)}"
    assert re.fullmatch(r"TRIAGE-YARA-\d{3}", str(meta["id"]))
    assert meta["severity"] in SEVERITIES
    assert meta["confidence"] in ("low", "medium", "high")
    assert meta["author"] == "triage project"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(meta["date"]))
    assert str(meta["reference"]).startswith("https://")
    assert all(re.fullmatch(r"T\d{4}(\.\d{3})?", t) for t in str(meta["mitre"]).split(","))
    assert meta["cve"] == "" or all(re.fullmatch(r"CVE-\d{4}-\d{4,}", c) for c in str(meta["cve"]).split(","))
    assert all(s.isdigit() and 1 <= int(s) <= 35 for s in str(meta["ed2102_steps"]).split(","))
    assert len(str(meta["title"])) <= 100 and len(str(meta["description"])) >= 60


def test_rule_ids_unique_and_every_rule_has_samples() -> None:
    ids = [str(m["id"]) for _, _, m in RULES]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(SAMPLES)
    for rid, s in SAMPLES.items():
        assert s["positive"] and s["negative"], rid


@pytest.mark.parametrize("engine", ENGINES)
def test_each_own_rule_file_compiles_in_each_engine(engine: str) -> None:
    """Both engines compile every file first time (no fallback needed), without warnings."""
    for f in FILES:
        compiled = compile_rules([f], engine=engine)
        (status,) = compiled.files
        assert status.status == "compiled" and status.engine == engine, status.message
        assert status.message == "" and status.warnings == []


@pytest.fixture(scope="module", params=ENGINES)
def compiled_own(request: pytest.FixtureRequest):
    return compile_rules(FILES, engine=request.param)


@pytest.mark.parametrize("rule_id", sorted(SAMPLES))
def test_samples(rule_id: str, compiled_own) -> None:
    """Positive samples fire the rule; negative ones (near misses) do not, in both engines."""
    engine = compiled_own.parts[0].engine
    for i, data in enumerate(SAMPLES[rule_id]["positive"]):
        hits = {m.meta["id"] for m in compiled_own.scan(data)}
        assert rule_id in hits, f"{engine}: positive sample {i} of {rule_id} did not match"
    for i, data in enumerate(SAMPLES[rule_id]["negative"]):
        hits = {m.meta["id"] for m in compiled_own.scan(data)}
        assert rule_id not in hits, f"{engine}: negative sample {i} of {rule_id} matched"


def test_engines_agree_on_strings(compiled_own) -> None:
    """Matched string identifiers and offsets are the same whichever engine ran."""
    other = compile_rules(FILES, engine=YARA_PYTHON if compiled_own.parts[0].engine == YARA_X else YARA_X)
    for s in SAMPLES.values():
        for data in s["positive"]:
            mine = {(m.rule, tuple((h.identifier, h.offset) for h in m.strings)) for m in compiled_own.scan(data)}
            theirs = {(m.rule, tuple((h.identifier, h.offset) for h in m.strings)) for m in other.scan(data)}
            assert mine == theirs


def test_every_engine_choice_gives_the_same_matches_on_samples() -> None:
    """The default engine (yara-x, relaxed-first), yara-python first and yara-x alone report the same (sample,
    rule) pairs over the web shell family samples, their variants, the benign look-alikes and the rule samples,
    with file externals set, so choosing the engine by speed never changes a verdict."""
    from analyzers.yara.engine import OTHER_ENGINE, RELAXED_FIRST, YARA_X_RELAXED, file_externals
    from triage.testing.webshells import benign_samples, family_samples, variants

    items = [(f"family/{s.name}", s.data) for s in (*family_samples(), *variants(2), *benign_samples())]
    items += [(f"{rid}/{i}", data) for rid, s in SAMPLES.items() for i, data in enumerate(s["positive"])]
    results = {}
    for label, engine, fallback in (
        ("default", YARA_X, RELAXED_FIRST),
        ("yara-python", YARA_PYTHON, OTHER_ENGINE),
        ("yara-x relaxed only", YARA_X_RELAXED, RELAXED_FIRST),
    ):
        compiled = compile_rules(FILES, engine=engine, fallback=fallback)
        assert not compiled.skipped
        found = set()
        for name, data in items:
            ext = file_externals(f"C:/inetpub/wwwroot/aspnet_client/{name.rsplit('/', 1)[-1]}", data[:16])
            found |= {(name, m.rule, m.string_count) for m in compiled.scan(data, ext)}
        results[label] = found
    assert len(results["default"]) > 40  # the samples really match (a vacuous agreement proves nothing)
    assert results["default"] == results["yara-python"] == results["yara-x relaxed only"]
