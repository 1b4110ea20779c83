"""Loading rule sets: directories, skipped rules with reasons, rule metadata and the matches frame."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sigma_support import SYSMON, frame, rule_text

from triage.sigma import MATCH_COLUMNS, RuleSet, load_rules, parse_tags

GOOD = r"""
sel:
  Image|endswith: '\whoami.exe'
condition: sel
"""
GOOD_ID = "6a0c5b1e-6a7e-4a59-9a43-3b5b0a9e1d01"
EVENTS = [{"Image": r"C:\w\whoami.exe"}, {"Image": r"C:\w\cmd.exe"}]


def _reasons(ruleset: RuleSet) -> dict[str, str]:
    return {Path(s.path).name: s.reason for s in ruleset.skipped}


def test_directory_load_counts_and_bad_rules_do_not_stop_others(tmp_path):
    root = tmp_path / "rules"
    (root / "windows" / "process_creation").mkdir(parents=True)
    (root / "windows" / "builtin").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "windows" / "process_creation" / "good.yml").write_text(rule_text(GOOD, rule_id=GOOD_ID, title="Good"))
    (root / "windows" / "builtin" / "also_good.yaml").write_text(
        rule_text("sel:\n  EventID: 4625\ncondition: sel", logsource="product: windows\n  service: security")
    )
    (root / "windows" / "broken_yaml.yml").write_text("title: Broken\ndetection:\n  sel: [unclosed\n  condition: sel\n")
    (root / "windows" / "expand.yml").write_text(
        rule_text("sel:\n  User|expand: '%admins%'\ncondition: sel", title="Uses expand")
    )
    (root / "windows" / "linux.yml").write_text(
        rule_text("sel:\n  Image: x\ncondition: sel", logsource="product: linux\n  category: process_creation")
    )
    (root / "windows" / "notes.txt").write_text("not a rule")
    (root / ".git" / "hidden.yml").write_text("title: should not be read")

    ruleset = load_rules([root])
    assert ruleset.counts == {"files": 5, "loaded": 2, "skipped": 3}
    reasons = _reasons(ruleset)
    assert reasons["broken_yaml.yml"].startswith("YAML error at line 4")
    assert "unsupported" in reasons["expand.yml"] and "|expand" in reasons["expand.yml"]
    assert "(line 10)" in reasons["expand.yml"]
    assert reasons["linux.yml"].startswith("unknown logsource: product=linux category=process_creation")
    skipped = {Path(s.path).name: s for s in ruleset.skipped}
    assert skipped["expand.yml"].title == "Uses expand"
    assert skipped["broken_yaml.yml"].title == "Broken"
    assert ruleset.summary() == "2 Sigma rules loaded, 3 skipped, from 5 files"

    security_rule = next(r for r in ruleset.loaded if r.id != GOOD_ID)
    matches = ruleset.evaluate(frame([*EVENTS, {"Channel": "Security", "EventID": 4625}]))
    assert sorted(map(tuple, matches[["rule_id", "row"]].values.tolist())) == sorted(
        [(GOOD_ID, 0), (security_rule.id, 2)]
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("title: Dup\nlogsource: {product: windows}\nlogsource: {product: windows}\n", "duplicate key 'logsource'"),
        ("title: Tab\n\tdetection: x\n", "YAML error at line 2"),
        ("- just\n- a list\n", "not a rule mapping"),
        ("", "empty file"),
    ],
    ids=["duplicate-key", "tab", "list", "empty"],
)
def test_malformed_files_are_skipped_with_reason(write_rules, text, expected):
    folder = write_rules(text, rule_text(GOOD))
    ruleset = load_rules([folder])
    assert len(ruleset) == 1
    assert len(ruleset.skipped) == 1
    assert expected in ruleset.skipped[0].reason


def test_duplicate_key_reports_its_line(write_rules):
    text = rule_text("sel:\n  Image: a\n  Image: b\ncondition: sel")
    ruleset = load_rules([write_rules(text)])
    assert ruleset.skipped[0].reason.startswith("YAML error at line 11")


@pytest.mark.parametrize(
    ("detection", "logsource", "expected"),
    [
        ("sel:\n  Image|foo: x\ncondition: sel", None, "Unknown modifier 'foo' (line 10)"),
        ("sel:\n  Image: x\ncondition: sel | count() > 5", None, "pipe syntax"),
        ("sel:\n  Image: x\ncondition: sel and missing", None, "missing"),
        ("sel:\n  Image|re: '(unclosed'\ncondition: sel", None, "Regular expression"),
        ("sel:\n  Image: x\ncondition: sel", "product: windows\n  service: nosuchservice", "unknown logsource"),
        ("sel:\n  Image|hour: 3\ncondition: sel", None, "timestamp part modifier |hour"),
        ("sel:\n  Image|cidr: 'not-a-network'\ncondition: sel", None, "Invalid CIDR"),
    ],
    ids=["unknown-modifier", "aggregation", "undefined-detection", "bad-regex", "unknown-service", "hour", "cidr"],
)
def test_unusable_rules_are_skipped_with_reason(load_texts, detection, logsource, expected):
    kwargs = {"logsource": logsource} if logsource else {}
    ruleset = load_texts(rule_text(detection, title="Bad one", **kwargs), rule_text(GOOD, rule_id=GOOD_ID))
    assert [r.id for r in ruleset.loaded] == [GOOD_ID]
    (skip,) = ruleset.skipped
    assert expected in skip.reason, skip.reason
    assert skip.title == "Bad one"
    assert skip.rule_id
    assert ruleset.evaluate(frame(EVENTS))["row"].tolist() == [0]


def test_correlation_rules_load_and_filter_rules_are_skipped(load_texts):
    correlation = textwrap.dedent(
        f"""\
        title: Many whoami
        id: 0e95725d-7320-415d-80f7-004da920fc11
        correlation:
          type: event_count
          rules:
            - {GOOD_ID}
          group-by: [Computer]
          timespan: 5m
          condition:
            gte: 10
        """
    )
    sigma_filter = textwrap.dedent(
        f"""\
        title: Not on admin hosts
        id: 9a0f3c1d-0c7b-4b6e-8d1a-2f3e4a5b6c7d
        logsource:
          product: windows
          category: process_creation
        filter:
          rules:
            - {GOOD_ID}
          selection:
            Computer: adminhost
          condition: not selection
        """
    )
    ruleset = load_texts(correlation, sigma_filter, rule_text(GOOD, rule_id=GOOD_ID))
    assert len(ruleset) == 1
    assert [c.id for c in ruleset.correlations] == ["0e95725d-7320-415d-80f7-004da920fc11"]
    assert ruleset.correlations[0].rule_ids == (GOOD_ID,)
    assert [s.reason for s in ruleset.skipped] == ["Sigma filter rules are not supported"]


def test_duplicate_rule_id_is_skipped(load_texts):
    ruleset = load_texts(rule_text(GOOD, rule_id=GOOD_ID), rule_text(GOOD, rule_id=GOOD_ID))
    assert len(ruleset) == 1
    assert ruleset.skipped[0].reason.startswith("duplicate rule id")


def test_multi_document_file_with_global_action(write_rules):
    text = textwrap.dedent(
        r"""
        action: global
        title: Two variants
        status: test
        logsource:
          product: windows
          category: process_creation
        detection:
          condition: sel
        ---
        id: 11111111-2222-4333-8444-555555555555
        detection:
          sel:
            Image|endswith: '\whoami.exe'
        ---
        id: 11111111-2222-4333-8444-666666666666
        detection:
          sel:
            Image|endswith: '\cmd.exe'
        """
    )
    ruleset = load_rules([write_rules(text)])
    assert not ruleset.skipped
    assert [r.id[-2:] for r in ruleset.loaded] == ["55", "66"]
    assert ruleset.evaluate(frame(EVENTS))["row"].tolist() == [0, 1]


def test_compiled_rule_metadata(write_rules):
    extra = textwrap.dedent(
        """\
        description: Whoami from anywhere
        author: triage tests
        date: 2021-03-03
        references:
          - https://example.invalid/whoami
        falsepositives:
          - admins
        tags:
          - attack.discovery
          - attack.t1033
          - attack.t1003.001
          - cve.2021-26857
          - cve.2021-27065
          - ed2102.step3
          - ed2102.7
          - detection.emerging-threats
        """
    )
    folder = write_rules(rule_text(GOOD, rule_id=GOOD_ID, title="Whoami", extra=extra))
    ruleset = load_rules([folder])
    (rule,) = ruleset.loaded
    path = folder / "r0.yml"
    assert rule.id == GOOD_ID
    assert rule.title == "Whoami"
    assert (rule.level, rule.severity, rule.status) == ("high", "high", "test")
    assert rule.description == "Whoami from anywhere"
    assert rule.references == ("https://example.invalid/whoami",)
    assert rule.falsepositives == ("admins",)
    assert rule.logsource == {"product": "windows", "category": "process_creation"}
    assert rule.path == str(path)
    assert rule.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ruleset.files == {str(path): rule.sha256}
    assert rule.mitre == ("T1033", "T1003.001")
    assert rule.tactics == ("discovery",)
    assert rule.cve == ("CVE-2021-26857", "CVE-2021-27065")
    assert rule.ed2102_steps == (3, 7)
    assert rule.date == "2021-03-03"
    assert "detection.emerging-threats" in rule.tags
    assert rule.conditions == ("sel",)
    assert len(ruleset.fingerprint()) == 64


def test_rule_without_id_and_with_bad_metadata_still_loads(write_rules):
    text = rule_text(GOOD).replace("level: high", "level: severe")
    text = "\n".join(line for line in text.splitlines() if not line.startswith("id:")) + "\n"
    ruleset = load_rules([write_rules(text)])
    (rule,) = ruleset.loaded
    assert rule.id.startswith("nosigmaid-")
    assert rule.level == "" and rule.severity == "medium"
    assert any("severe" in w.message for w in ruleset.warnings)


def test_parse_tags():
    tags = parse_tags(["attack.T1505.003", "attack.persistence", "attack.g0125", "cve.2021-26855", "ed2102.step-4"])
    assert tags.mitre == ("T1505.003",)
    assert tags.tactics == ("persistence",)
    assert tags.cve == ("CVE-2021-26855",)
    assert tags.ed2102_steps == (4,)


def test_matches_frame_shape_and_dtypes(load_texts):
    ruleset = load_texts(rule_text(GOOD, rule_id=GOOD_ID, extra="tags: [attack.t1033, ed2102.3]\n"))
    df = frame(EVENTS * 3)
    matches = ruleset.evaluate(df)
    assert list(matches.columns) == list(MATCH_COLUMNS)
    assert matches["row"].tolist() == [0, 2, 4]
    assert matches["row"].dtype == np.int64
    assert matches["tags"].iloc[0] == "attack.t1033,ed2102.3"
    assert matches["level"].iloc[0] == "high"
    assert pd.api.types.is_string_dtype(matches["rule_id"].dtype)
    empty = ruleset.evaluate(frame([{"Image": "nothing"}]))
    assert list(empty.columns) == list(MATCH_COLUMNS) and len(empty) == 0
    assert empty["row"].dtype == np.int64
    pairs = [(rule.id, rows.tolist()) for rule, rows in ruleset.iter_matches(df)]
    assert pairs == [(GOOD_ID, [0, 2, 4])]
    assert ruleset.loaded[0].match(df).tolist() == [0, 2, 4]


def test_row_is_position_not_index_label(load_texts):
    ruleset = load_texts(rule_text(GOOD))
    df = frame(EVENTS * 2)
    df.index = [100, 50, 7, 3]
    assert ruleset.evaluate(df)["row"].tolist() == [0, 2]


def test_frame_without_rows_or_columns(load_texts):
    ruleset = load_texts(rule_text(GOOD))
    assert len(ruleset.evaluate(pd.DataFrame({"Channel": pd.Series([], dtype="str")}))) == 0
    assert len(ruleset.evaluate(pd.DataFrame({"Image": [r"C:\whoami.exe"]}))) == 0  # no Channel: nothing selected
    assert len(ruleset.evaluate(frame([{"Channel": SYSMON, "EventID": 1}]))) == 0  # no Image column


def test_files_and_directories_mixed_are_loaded_once(write_rules):
    folder = write_rules(rule_text(GOOD), rule_text(GOOD))
    ruleset = load_rules([folder / "r0.yml", folder, str(folder / "r1.yml")])
    assert ruleset.counts == {"files": 2, "loaded": 2, "skipped": 0}
    missing = load_rules([folder / "nope.yml"])
    assert missing.skipped[0].reason == "file not found"


def test_a_rule_failing_at_evaluation_does_not_stop_the_others(load_texts):
    ruleset = load_texts(rule_text(GOOD, rule_id=GOOD_ID), rule_text(GOOD))
    broken = next(r for r in ruleset.loaded if r.id != GOOD_ID)

    class Boom:
        def eval(self, ctx, sel):
            raise RuntimeError("boom")

        def leaves(self):
            return iter(())

    broken.matcher = Boom()  # type: ignore[assignment]
    matches = ruleset.evaluate(frame(EVENTS))
    assert matches["rule_id"].tolist() == [GOOD_ID]
    assert [(f.rule_id, f.error) for f in ruleset.runtime_errors] == [(broken.id, "RuntimeError: boom")]


def test_yaml_anchors_and_merge_keys_are_fine(write_rules):
    text = textwrap.dedent(
        r"""
        title: Anchors
        id: 7b4e9f0a-1c2d-4e5f-8a9b-0c1d2e3f4a5b
        logsource: {product: windows, category: process_creation}
        detection:
          base: &base
            Image|endswith: '\whoami.exe'
          sel:
            <<: *base
            CommandLine|contains: 'all'
          condition: sel
        """
    )
    ruleset = load_rules([write_rules(text)])
    assert not ruleset.skipped, ruleset.skipped
    rows = [{"Image": r"C:\w\whoami.exe", "CommandLine": "whoami /all"}, {"Image": r"C:\w\whoami.exe"}]
    assert ruleset.evaluate(frame(rows))["row"].tolist() == [0]


def test_yaml_that_is_not_a_rule_is_skipped_with_reason(load_texts):
    ruleset = load_texts("title: Positive samples\nsamples:\n  - {rule: x, count: 1}\n", rule_text(GOOD))
    assert len(ruleset) == 1
    (skip,) = ruleset.skipped
    assert skip.title == "Positive samples"
    assert "is not a Sigma rule" in skip.reason
