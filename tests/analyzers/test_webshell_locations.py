from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from analyzers.webshell import glob_regex, load_rules, match_all
from triage.case import Case
from triage.registry import signature_path
from triage.report import load_findings
from triage.runner import analyze_case

RULES = load_rules()


def _head_for(rule_magic: bytes, positive: bool) -> bytes:
    return rule_magic + b"\x00" * 12 if positive and rule_magic else b"hello world!"


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_rule_examples(rule) -> None:
    """Every rule carries positive and negative examples, and they behave as declared."""
    assert rule.tests.get("positive"), f"{rule.id} has no positive example"
    assert rule.tests.get("negative"), f"{rule.id} has no negative example"
    kind = next(iter(rule.kinds))
    for path in rule.tests["positive"]:
        assert rule.matches(path, kind, _head_for(rule.magic, True)), f"{rule.id} should match {path}"
    for path in rule.tests["negative"]:
        assert not rule.matches(path, kind, _head_for(rule.magic, False)), f"{rule.id} should not match {path}"


def test_rule_ids_unique_and_metadata_complete() -> None:
    doc = yaml.safe_load(signature_path("webshell/locations.yaml").read_text())
    ids = [r["id"] for r in doc["rules"]]
    assert len(ids) == len(set(ids)) == 10
    for r in RULES:
        assert r.severity in ("info", "low", "medium", "high", "critical")
        # a place or a name alone is at most medium; only a file's own bytes (a minidump header, an lsass dump
        # by its name where Test-ProxyLogon looks) may say more
        if not r.magic and r.id != "TRIAGE-SUS-001":
            assert r.severity in ("info", "low", "medium"), r.id
        assert r.mitre and r.steps and r.description


def test_glob_regex_semantics() -> None:
    rx = glob_regex("**/inetpub/wwwroot/aspnet_client/**")
    assert rx.match("C:/inetpub/wwwroot/aspnet_client/a/b/c.aspx")
    assert rx.match("C:/INETPUB/WWWROOT/Aspnet_Client/x.aspx")
    assert not rx.match("C:/inetpub/wwwroot/other/x.aspx")
    one = glob_regex("?:/ProgramData/*")
    assert one.match("C:/ProgramData/it.zip") and not one.match("C:/ProgramData/a/it.zip")


def test_stock_owa_page_vs_lookalike() -> None:
    base = "C:/Program Files/Microsoft/Exchange Server/V15/FrontEnd/HttpProxy/owa/auth/"
    assert [r.id for r in match_all(RULES, base + "RedirSuiteServiceProxy.aspx", "web_file", b"")] == []
    assert [r.id for r in match_all(RULES, base + "RedirSuiteServerProxy.aspx", "web_file", b"")] == [
        "TRIAGE-WEB-003",
        "TRIAGE-WEB-005",
    ]


def test_bad_rule_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("rules:\n  - id: X-1\n    title: t\n    severity: high\n    pathz: ['**']\n")
    with pytest.raises(ValueError, match=r"rule X-1: unknown keys \['pathz'\]"):
        load_rules(bad)
    bad.write_text("rules:\n  - id: X-2\n    title: t\n    severity: high\n")
    with pytest.raises(ValueError, match="rule X-2: no selector"):
        load_rules(bad)


def test_findings_on_the_compromised_volume(case: Case) -> None:
    analyze_case(case, only=("webshell_locations",))
    df = load_findings(case)
    got = sorted(zip(df["rule_id"], df["location"], df["severity"].astype(str), strict=True))
    assert got == [
        ("TRIAGE-SUS-001", "C:/Windows/Temp/lsass.dmp", "critical"),
        ("TRIAGE-SUS-002", "C:/Windows/Temp/lsass.dmp", "high"),
        ("TRIAGE-SUS-003", "C:/ProgramData/it.zip", "medium"),
        ("TRIAGE-SUS-004", "C:/ProgramData/it.zip", "medium"),
        ("TRIAGE-WEB-001", "C:/inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx", "medium"),
    ]
    lsass = df[df["rule_id"] == "TRIAGE-SUS-001"].iloc[0]
    row = next(r for r in case.evidence() if r.relpath.endswith("lsass.dmp"))
    assert lsass["evidence_sha256"] == row.sha256
    assert lsass["mitre"] == "T1003.001" and lsass["ed2102_steps"] == "9"
    assert str(lsass["ts"]) == "2021-03-03 02:14:07+00:00"
    web = df[df["rule_id"] == "TRIAGE-WEB-001"].iloc[0]
    assert web["cve"] == "CVE-2021-27065,CVE-2021-26858"
