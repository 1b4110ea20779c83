"""Web log indicator rules: every rule's examples, the loader's error handling, hits over the story."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from exchange_support import STORY_TOTALS, story_files

from analyzers.exchange.rules import (
    RuleSet,
    SequenceState,
    example_frame,
    example_hits,
    load_rule_file,
    load_rules,
    match_frame,
)
from analyzers.exchange.weblogs import scan_log
from triage.indicators import indicator_path
from triage.registry import signature_path

RULES = load_rules()
IDS = [r.id for r in RULES.rules]


def test_rule_file_loads_cleanly() -> None:
    assert RULES.errors == []
    assert [f"TRIAGE-EXW-{i:03d}" for i in range(1, 19)] == IDS
    for r in RULES.rules:
        assert r.description and r.mitre and r.steps == ("8",) and r.logs, r.id
        assert r.line > 0 and r.file == "weblog_indicators.yaml"
    assert len(RULES.lists["hafnium_ips"]) == 15


@pytest.mark.parametrize("rule", RULES.rules, ids=IDS)
def test_rule_examples(rule) -> None:
    """Each rule matches its positive example rows and none of its negative ones."""
    assert rule.tests["positive"] and rule.tests["negative"]
    for example in rule.tests["positive"]:
        hits, expect = example_hits(rule, example, RULES)
        assert hits == expect if expect is not None else hits > 0, (rule.id, example)
    for example in rule.tests["negative"]:
        hits, expect = example_hits(rule, example, RULES)
        assert hits == 0 and expect in (None, 0), (rule.id, example)


def test_bad_rules_are_reported_with_file_and_line_and_disabled(tmp_path: Path) -> None:
    good = {
        "id": "X-OK", "title": "t", "description": "d", "severity": "low", "logs": ["iis"],
        "all": [{"field": "method", "equals": "POST"}],
        "tests": {"positive": [{"method": "POST"}], "negative": [{"method": "GET"}]},
    }  # fmt: skip
    bad = [
        good | {"id": "X-1", "all": [{"field": "nope", "equals": "x"}]},
        good | {"id": "X-2", "all": [{"field": "method", "equals": "x", "contains": "y"}]},
        good | {"id": "X-3", "all": [{"field": "uri_stem", "regex": "(?=lookahead)"}]},  # not RE2
        good | {"id": "X-4", "severity": "urgent"},
        good | {"id": "X-5", "tests": {"positive": [{"method": "POST"}]}},
        good | {"id": "X-6", "all": [{"field": "client_ip", "in": "@nolist"}]},
        good | {"id": "X-7", "after": {"rule": "X-404"}},
        good | {"id": "X-OK"},
    ]
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"rules": [good, *bad]}, sort_keys=False))
    rs = load_rule_file(p)
    assert [r.id for r in rs.rules] == ["X-OK"]
    assert len(rs.errors) == 8
    lines = [int(e.split(":")[1]) for e in rs.errors]
    assert all(e.startswith("bad.yaml:") for e in rs.errors) and len(set(lines)) == 8 and min(lines) > 1
    joined = "\n".join(rs.errors)
    for needle in (
        "unknown field 'nope'",
        "exactly one operator",
        "bad regex",
        "severity 'urgent'",
        "tests.positive and tests.negative",
        "unknown list @nolist",
        "unknown rule X-404",
        "id used twice",
    ):
        assert needle in joined  # fmt: skip


def test_after_carries_across_frames() -> None:
    rule_set = RULES.by_id()
    pair = [rule_set["TRIAGE-EXW-017"], rule_set["TRIAGE-EXW-018"]]
    state = SequenceState()
    first = example_frame(
        [{"ts": "2021-03-03T06:49:53Z", "cmd": "Set-OabVirtualDirectory.ExternalUrl='<script>x'"}], "ecp"
    )
    second = example_frame(
        [
            {"ts": "2021-03-03T07:00:00Z", "cmd": "Remove-OABVirtualDirectory.Force=$true"},
            {"ts": "2021-03-05T07:00:00Z", "cmd": "New-OABVirtualDirectory.Server='x'"},  # more than 24 h later
        ],
        "ecp",
    )
    assert [r.id for r, _ in match_frame(pair, first, "ecp", state)] == ["TRIAGE-EXW-017"]
    got = {r.id: m.tolist() for r, m in match_frame(pair, second, "ecp", state)}
    assert got == {"TRIAGE-EXW-018": [True, False]}
    assert not list(match_frame(pair, second, "ecp", SequenceState()))  # no Set seen: no clean-up


def test_matching_is_columnar_over_a_large_frame() -> None:
    """50k rows in one call: the engine works on columns, not per row."""
    rows = [{"method": "GET", "uri_stem": "/owa/", "client_ip": "10.0.0.1", "status": "200"}] * 50_000
    df = example_frame([*rows, {"method": "POST", "uri_stem": "/ecp/y.js", "client_ip": "5.2.69.14"}], "iis")
    hits = {r.id: int(m.sum()) for r, m in match_frame(RULES.rules, df, "iis")}
    assert hits == {"TRIAGE-EXW-003": 1, "TRIAGE-EXW-009": 1}


def _totals(files, ruleset: RuleSet) -> tuple[Counter[str], dict[str, int]]:
    totals: Counter[str] = Counter()
    malformed = {}
    for f in files:
        if f.logtype in ("httpproxy", "iis", "ecp"):
            _, counts, _, reader = scan_log(f, ruleset)
            totals.update(counts)
            malformed[f.logical] = reader.stats.malformed_lines
    return totals, malformed


@pytest.mark.parametrize("hostile", [False, True], ids=["clean-files", "hostile-files"])
def test_rule_hits_over_the_story(tmp_path: Path, hostile: bool) -> None:
    _, files = story_files(tmp_path, hostile=hostile)
    totals, malformed = _totals(files, RULES)
    assert dict(totals) == STORY_TOTALS
    bad = {"/".join(k.split("/")[-2:]): v for k, v in malformed.items() if v}
    assert bad == ({"Ecp/HttpProxy_2021030306-1.LOG": 3, "W3SVC1/u_ex210303.log": 1} if hostile else {})


def test_no_rule_fires_on_benign_traffic(tmp_path: Path) -> None:
    _, files = story_files(tmp_path, attack=False, hostile=True)
    totals, _ = _totals(files, RULES)
    assert totals == Counter()


def test_rule_yaml_documents_its_lists() -> None:
    # the lists moved to the shared indicator files (signatures/indicators/actors.yaml)
    doc = yaml.safe_load(indicator_path("actors.yaml").read_text())
    assert set(doc["lists"]) == {"hafnium_ips", "crawler_ua_parts", "ecp_tool_ua_parts", "shell_names", "dump_tools"}
    assert pd.Series(doc["lists"]["hafnium_ips"]).is_unique
    assert "lists" not in yaml.safe_load(signature_path("exchange/weblog_indicators.yaml").read_text())
