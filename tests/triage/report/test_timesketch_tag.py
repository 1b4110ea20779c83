"""The findings' Timesketch export writes ``tag`` as a JSON list (shown as tags), not a ``tags`` string."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from triage.finding import Finding, findings_frame
from triage.report.exports import timesketch_frame, write_timesketch


def _finding(rule: str, severity: str, tags: tuple[str, ...], ts: datetime | None) -> Finding:
    return Finding(
        analyzer="a", analyzer_version="1", rule_id=rule, rule_title="r", severity=severity, title="t", message="m",
        evidence_id="E1", evidence_path="evidence/x", evidence_sha256="0" * 64, host="H", case_id="C", ts=ts,
        tags=tags, location="L",
    )  # fmt: skip


def test_tag_is_a_list_of_triage_rule_severity_and_own_tags(tmp_path: Path) -> None:
    when = datetime(2021, 3, 3, 2, 13, 51, tzinfo=UTC)
    df = findings_frame(
        [
            _finding("TRIAGE-EXW-003", "high", ("proxylogon", "ssrf"), when),
            _finding("R2", "low", (), when),
            _finding("R3", "info", ("x",), None),  # no time: left out and counted
        ]
    )
    rows, skipped = timesketch_frame(df)
    assert skipped == 1 and "tags" not in rows.columns
    assert sorted(map(list, rows["tag"])) == [
        ["triage", "R2", "low"],
        ["triage", "TRIAGE-EXW-003", "high", "proxylogon", "ssrf"],
    ]
    path = tmp_path / "timesketch.jsonl"
    assert write_timesketch(df, path) == 1
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert {tuple(x["tag"]) for x in lines} == {
        ("triage", "R2", "low"),
        ("triage", "TRIAGE-EXW-003", "high", "proxylogon", "ssrf"),
    }
    assert all(isinstance(x["tag"], list) and "tags" not in x for x in lines)
