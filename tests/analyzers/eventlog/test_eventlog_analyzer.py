from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.case import Case
from triage.report import load_findings
from triage.runner import analyze_case
from triage.testing.volume import VolumeSpec, build_volume


def _analyzed(tmp_path: Path, compromised: bool) -> pd.DataFrame:
    vol = build_volume(tmp_path / "vol", VolumeSpec(compromised=compromised, event_logs=True))
    case = Case.create_or_open(tmp_path / "case", examiner="t")
    collect_volume(case, open_source_path(str(vol)), host=None)
    s = analyze_case(case, only=("eventlog",))
    assert s.statuses == {"success": len(case.evidence(kinds={"evtx"}))}
    df = load_findings(case)
    df["rule_file"] = [json.loads(a).get("rule_file") for a in df["attributes"]]
    return df


def test_attack_story_is_told_by_the_sigma_pack(tmp_path: Path) -> None:
    df = _analyzed(tmp_path, compromised=True)
    hits = df[df["rule_file"].notna()]
    got = {(r.rule_file, r.location, str(r.severity)) for r in hits.itertuples()}
    assert got == {
        ("exchange_oab_vdir_url_holds_script.yml", "MSExchange Management#1", "critical"),
        ("exchange_um_invalid_cast_error.yml", "Application#2", "high"),
        ("webshell_exchange_worker_spawns_shell.yml", "Microsoft-Windows-Sysmon/Operational#2", "high"),
        ("cred_procdump_lsass.yml", "Microsoft-Windows-Sysmon/Operational#3", "high"),
        ("cred_lsass_opened_with_dump_rights.yml", "Microsoft-Windows-Sysmon/Operational#4", "high"),
        ("cred_lsass_dump_file_created.yml", "Microsoft-Windows-Sysmon/Operational#5", "high"),
        # breadth rules: the 7-Zip staging of lsass.dmp from C:\ProgramData
        ("coll_archive_sensitive_data.yml", "Microsoft-Windows-Sysmon/Operational#6", "medium"),
        ("exec_process_from_suspicious_folder.yml", "Microsoft-Windows-Sysmon/Operational#6", "medium"),
        ("persist_service_suspicious_image_system.yml", "System#2", "high"),
        ("persist_service_installed_system.yml", "System#2", "low"),
        ("ps_powercat.yml", "Microsoft-Windows-PowerShell/Operational#1", "high"),
        ("ps_download_cradle_script.yml", "Microsoft-Windows-PowerShell/Operational#1", "high"),
        ("evasion_security_log_cleared.yml", "Security#4", "high"),
        ("persist_member_added_local_privileged_group.yml", "Security#3", "medium"),
        ("persist_account_created_or_enabled.yml", "Security#2", "medium"),  # a new account: medium (SEVERITY.md)
        ("exchange_attack_cmdlet_mgmt.yml", "MSExchange Management#1", "medium"),  # Set-OabVirtualDirectory
        ("exchange_attack_cmdlet_mgmt.yml", "MSExchange Management#2", "medium"),
    }
    oab = hits[hits["rule_file"] == "exchange_oab_vdir_url_holds_script.yml"].iloc[0]
    assert oab["cve"] == "CVE-2021-27065" and str(oab["ts"]) == "2021-03-03 02:14:30+00:00"
    assert "Set-OabVirtualDirectory" in json.loads(oab["attributes"])["event"]["Data"]
    # every log starts 2021-03-01 or later: six coverage gaps against the directive window
    window = df[df["rule_id"] == "TRIAGE-EVT-COV-001"]
    assert len(window) == 6 and set(window["severity"].astype(str)) == {"medium"}
    cov = df[(df["rule_id"] == "TRIAGE-EVT-COV-000") & df["title"].str.contains("Security.evtx")].iloc[0]
    attrs = json.loads(cov["attributes"])
    assert (attrs["records"], attrs["first"], attrs["missing_record_ids"]) == (4, "2021-03-01T08:00:00+00:00", 0)


def test_benign_logs_give_no_high_finding(tmp_path: Path) -> None:
    df = _analyzed(tmp_path, compromised=False)
    assert not df["severity"].astype(str).isin(["high", "critical"]).any()
    # logs that reach back to December 2020 cover the window: no coverage finding
    assert (df["rule_id"] == "TRIAGE-EVT-COV-001").sum() == 0
    assert (df["rule_id"] == "TRIAGE-EVT-COV-000").sum() == 4


def test_cli_sigma_dir_loads_unmodified_rules_and_reports_skips(tmp_path: Path, capsys) -> None:
    from triage.cli import main

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "whoami.yml").write_text(
        "title: Whoami run\nid: 11111111-2222-4333-8444-555555555555\nstatus: test\n"
        "logsource: {product: windows, category: process_creation}\n"
        "detection:\n  sel: {CommandLine|contains: whoami}\n  condition: sel\nlevel: medium\n"
    )
    (rules / "bad.yml").write_text(
        "title: broken\nlogsource: {product: windows}\ndetection: {sel: {A|nonsense: x}, condition: sel}\n"
    )
    vol = build_volume(tmp_path / "vol", VolumeSpec(event_logs=True))
    case = tmp_path / "case"
    assert main(["collect", str(vol), "--case", str(case), "-q"]) == 0
    capsys.readouterr()
    assert main(["analyze", str(case), "--only", "eventlog", "--sigma", str(rules), "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sigma"]["skipped"] >= 1 and out["sigma"]["loaded"] >= 2
    skipped = json.loads((case / "runs" / "sigma-rules.json").read_text())["skipped_rules"]
    assert any(s["path"].endswith("bad.yml") and "nonsense" in s["reason"] for s in skipped)
    df = load_findings(Case.open(case))
    who = df[df["rule_id"] == "11111111-2222-4333-8444-555555555555"]
    assert list(who["location"]) == ["Microsoft-Windows-Sysmon/Operational#2"]
    assert main(["analyze", str(case), "--only", "eventlog", "--sigma", str(tmp_path / "nope")]) == 2


def test_value_beyond_int64_costs_only_that_value(tmp_path: Path) -> None:
    """One Sysmon record with an EventRecordID beyond int64: the log, its findings and the host units survive."""
    from triage.testing.eventlogs import FILES, LOGS, attack_events
    from triage.testing.evtx import evtx_bytes

    vol = build_volume(tmp_path / "vol", VolumeSpec(compromised=True, event_logs=True))
    events = sorted(attack_events()["Sysmon"], key=lambda e: e.time_created)
    for rid, event in zip([2**64 - 2, *range(2, len(events) + 1)], events, strict=True):
        event.record_id = rid  # record 1 (a benign svchost start) gets an identifier no int64 holds
    (vol / LOGS / FILES["Sysmon"]).write_bytes(evtx_bytes(events))
    case = Case.create_or_open(tmp_path / "case", examiner="t")
    collect_volume(case, open_source_path(str(vol)), host=None)
    s = analyze_case(case, only=("eventlog", "proxylogon", "proxylogon_narrative"))
    assert set(s.statuses) == {"success"}, s.statuses
    df = load_findings(case)
    sysmon = df[df["location"].str.startswith("Microsoft-Windows-Sysmon/Operational#")]
    # 6 is the 7-Zip staging of the dump (a breadth collection rule)
    assert set(sysmon["location"]) == {f"Microsoft-Windows-Sysmon/Operational#{i}" for i in (2, 3, 4, 5, 6)}
    cov = df[(df["rule_id"] == "TRIAGE-EVT-COV-002") & df["title"].str.contains("Sysmon")]
    assert len(cov) == 1 and "1 values dropped or repaired" in cov.iloc[0]["title"]
    attrs = json.loads(cov.iloc[0]["attributes"])
    assert attrs["bad_values"] == 1 and attrs["bad_records"] == 0 and "beyond int64" in attrs["warnings"][0]


def test_json_reading_limits_come_from_the_analyzer_options() -> None:
    from analyzers.eventlog import EventLogs
    from analyzers.eventlog.jsonexport import JsonLimits

    assert EventLogs()._json_limits() == JsonLimits()
    limits = EventLogs({"json_max_record_chars": 4096, "json_max_ratio": 50.0})._json_limits()
    assert (limits.max_record_chars, limits.max_ratio) == (4096, 50.0)


def test_each_sigma_rule_gets_its_finding_metadata_once() -> None:
    """One RuleMeta per loaded rule (built when first asked for: most rules of a big set never match) and
    correlation rule: confidence from the level, tags without the ATT&CK, CVE and ED 21-02 ones (fields of their
    own), at most five references."""
    from analyzers.eventlog import EventLogs

    analyzer = EventLogs()
    ruleset = analyzer.ruleset
    metas, corr_metas = analyzer._metas, analyzer._corr_metas
    assert len(metas) == 0 and len(corr_metas) == len(ruleset.correlations) > 0
    for rule in ruleset.loaded:
        meta = metas[rule.id]
        assert metas[rule.id] is meta  # built once
        assert (meta.id, meta.title, meta.severity) == (rule.id, rule.title, rule.severity)
        assert meta.confidence == ("high" if rule.level in ("high", "critical") else "medium")
        assert meta.tags[0] == "sigma" and len(meta.tags) <= 8
        assert not any(t.startswith(("attack.t", "cve.", "ed2102.")) for t in meta.tags)
        assert meta.steps == tuple(str(s) for s in rule.ed2102_steps) and meta.references == rule.references[:5]
    assert len(metas) == len({r.id for r in ruleset.loaded}) > 0
    for rule, meta in corr_metas.items():
        assert meta.id == rule.id and meta.tags == ("sigma", "correlation", rule.type)
    assert any(m.confidence == "high" for m in metas.values()) and any(m.mitre for m in metas.values())
