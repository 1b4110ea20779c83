"""Every registry rule against its own positive and negative examples, and the rule loader's errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzers.registry.checks import RULE_FILES
from analyzers.registry.rules import compile_condition, load_rule_files, looks_random
from triage.formats.hive import Hive
from triage.registry import signature_path
from triage.testing.hives import example_hive

RULESET = load_rule_files([signature_path(p) for p in RULE_FILES])
RULES = RULESET.rules


def _count(rule, example, tmp_path: Path, tag: str) -> int:
    from analyzers.registry.rules import evaluate

    path = example_hive(rule.hive, example).write(tmp_path / f"{rule.id}-{tag}")
    with Hive(path, hive_type=rule.hive) as hive:
        matches = [m for m in evaluate([rule], hive) if m.rule.id == rule.id]
        assert not [w for w in hive.warnings if "failed" in w], hive.warnings
    return len(matches)


def test_rule_files_load_cleanly() -> None:
    assert RULESET.problems == []
    assert len(RULES) >= 30
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    for r in RULES:
        assert r.description and r.steps and r.mitre, r.id


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_rule_examples(rule, tmp_path: Path) -> None:
    """Positive examples match exactly once (on a benign baseline hive); negative ones never."""
    assert rule.tests.get("positive"), f"{rule.id} has no positive example"
    assert rule.tests.get("negative"), f"{rule.id} has no negative example"
    for i, ex in enumerate(rule.tests["positive"]):
        assert _count(rule, ex, tmp_path, f"p{i}") == 1, f"{rule.id} positive example {i}: {ex}"
    for i, ex in enumerate(rule.tests["negative"]):
        assert _count(rule, ex, tmp_path, f"n{i}") == 0, f"{rule.id} negative example {i}: {ex}"


def test_bad_rules_are_reported_with_file_and_line_and_disable_only_themselves(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n"
        "  - id: X-1\n    title: ok\n    severity: low\n    hive: system\n    key: Select\n    value: Current\n"
        "    where: [{data: {eq: 1}}]\n"
        "  - id: X-2\n    title: bad op\n    severity: low\n    hive: system\n    key: Select\n"
        "    where: [{data: {greater: 1}}]\n"
        "  - id: X-3\n    title: bad key\n    severity: low\n    hive: system\n    keyz: Select\n"
        "  - id: X-4\n    title: bad regex\n    severity: low\n    hive: system\n    key: Select\n"
        "    where: [{data: {regex: '(('}}]\n"
    )
    rs = load_rule_files([bad])
    assert [r.id for r in rs.rules] == ["X-1"]
    assert len(rs.problems) == 3
    assert rs.problems[0].startswith("bad.yaml:9: rule X-2: ") and "unknown operator 'greater'" in rs.problems[0]
    assert rs.problems[1].startswith("bad.yaml:15: rule X-3: unknown keys ['keyz']")
    assert rs.problems[2].startswith("bad.yaml:20: rule X-4:") and "bad regex" in rs.problems[2]


def test_operators_on_lists_binary_dates_and_absence() -> None:
    rec = {"data": ["kerberos", "mimilib"], "values": {"loadappinit_dlls": 1}, "n": 5, "blob": "x"}
    assert compile_condition({"data": {"not_in": ["kerberos", "msv1_0"]}}, "t")(rec)
    assert not compile_condition({"data": {"not_in": ["kerberos", "mimilib"]}}, "t")(rec)
    assert compile_condition({"value:LoadAppInit_DLLs": {"eq": 1}}, "t")(rec)
    assert compile_condition({"value:Missing": {"absent": True}}, "t")(rec)
    assert not compile_condition({"value:Missing": {"not_equals": "x"}}, "t")(rec)  # absent never 'differs'
    assert compile_condition({"any": [{"n": {"gt": 9}}, {"n": {"lt": 6}}]}, "t")(rec)
    assert compile_condition({"not": {"n": {"eq": 4}}}, "t")(rec)
    blob = {"data": b"\x03\x00" + "C:\\ProgramData\\a.exe".encode("utf-16-le")}
    assert compile_condition({"data": {"regex": r"\\programdata\\"}}, "t")(blob)
    import datetime as dt

    when = {"created": dt.datetime(2021, 3, 3, tzinfo=dt.UTC)}
    assert compile_condition({"created": {"gt": dt.date(2021, 1, 1), "lt": "2021-07-01"}}, "t")(when)


@pytest.mark.parametrize(
    ("name", "random"),
    [
        ("xK7qZ2pLm9", True),
        ("a8f3e2d1c9b7", True),
        ("Ucx01000", False),
        ("Tcpip6", False),
        ("MSSQL$SQLEXPRESS", False),
        ("CDPUserSvc_3a5f1", False),
        ("WinUpdSvc", False),
        ("usbxhci", False),
        ("BTHUSB", False),
        ("vm3dmp", False),
    ],
)
def test_looks_random(name: str, random: bool) -> None:
    assert looks_random(name) is random
