"""Round-4 rules of issue 14: techniques that held-out attack recordings showed uncovered, written per technique and
per event source (signatures/sigma/samples/round4.yaml, signatures/coverage/round4.yaml).

The generic pack tests run every sample (test_ed2102_pack.py) and every coverage cell through a real EVTX round
trip (test_coverage_matrix.py). Here: the round-4 matrix lists exactly the round-4 rules under techniques they are
tagged with, every technique is covered on more than one event source where Windows records it on several, the
levels follow the severity policy, the same samples exported as JSON (Winlogbeat 6.x, OTRF/NXLog) give the EVTX
verdicts, and decisive boundaries hold on built events, including the administrative routines the rules could
confuse (Group Policy hardening NTLM, WMI's own helpers, services listening, configuration-manager scripts).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from analyzers.eventlog.reader import iter_json_events
from triage.formats.evtx import ReadStats, iter_evtx
from triage.sigma import load_rules
from triage.testing.eventjson import export_bytes, records
from triage.testing.evtx import DataValue, Event, write_evtx

REPO = Path(__file__).resolve().parents[3]
PACK = REPO / "signatures" / "sigma" / "ed2102"
SAMPLES = REPO / "signatures" / "sigma" / "samples" / "round4.yaml"
COVERAGE = REPO / "signatures" / "coverage" / "round4.yaml"
# Round-4 rules allowed above medium: each fires on the attack behaviour itself (SEVERITY.md).
HIGH_BY_BEHAVIOUR = {
    "r4_evasion_cmdline_audit_disabled_cmdline",  # command-line auditing switched off by hand
    "r4_cred_mimikatz_output_in_powershell",  # the tool's own output: it ran
}
# Techniques Windows records on several sources must be covered on several (issue 14: "every event source").
MULTI_SOURCE = {"r4_wmi_remote_execution", "r4_dcom_office_automation", "r4_ntlm_downgrade",
                "r4_cmdline_audit_disabled", "r4_script_host_listener", "r4_lateral_tool_admin_protocols"}  # fmt: skip
SYSTEM_KEYS = {"Channel", "Provider", "EventID", "Level", "EventSourceName", "Computer", "Task", "Opcode", "Version"}


@cache
def _samples() -> dict[str, dict]:
    return yaml.safe_load(SAMPLES.read_text(encoding="utf-8"))["rules"]


@cache
def _coverage() -> list[dict]:
    return yaml.safe_load(COVERAGE.read_text(encoding="utf-8"))["techniques"]


@cache
def _ruleset():
    stems = {spec["rule"] for spec in _samples().values()}
    rs = load_rules(sorted(p for p in PACK.glob("r4_*.yml")))
    assert not rs.skipped, rs.skipped
    assert {Path(r.path).stem for r in rs.loaded} == stems
    return rs


def _rules() -> dict[str, Any]:
    return {r.id: r for r in _ruleset().loaded}


def test_every_round4_rule_is_in_the_round4_matrix_and_nothing_else():
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


def test_techniques_recorded_by_several_sources_are_covered_on_several():
    for tech in _coverage():
        if tech["id"] in MULTI_SOURCE:
            assert len(tech["sources"]) >= 2, tech["id"]


def test_round4_levels_follow_the_severity_policy():
    levels = {Path(r.path).stem: r.level for r in _rules().values()}
    assert {s for s, lv in levels.items() if lv in ("high", "critical")} == HIGH_BY_BEHAVIOUR
    assert set(levels.values()) <= {"medium", "high"}  # every round-4 rule is at least worth a review


# ------------------------------------------------------------------------------------------ built events
def _event(row: dict[str, Any], record_id: int) -> Event:
    fields = {k: v for k, v in row.items() if k not in SYSTEM_KEYS}
    data: dict[str, DataValue] = {
        k: v if isinstance(v, int) and not isinstance(v, bool) else str(v) for k, v in fields.items()
    }
    return Event(
        event_id=int(row["EventID"]),
        provider=str(row["Provider"]),
        channel=str(row["Channel"]),
        level=int(row.get("Level", 4)),
        record_id=record_id,
        time_created=datetime(2021, 3, 4, 1, 0, tzinfo=UTC) + timedelta(seconds=record_id),
        computer="srv01.corp.example",
        data=data,
    )


def _verdicts(frames: list[pd.DataFrame], ruleset: Any = None) -> dict[int, set[str]]:
    """Stems of the round-4 rules (or of ``ruleset``) matching each record id."""
    out: dict[int, set[str]] = {}
    for df in frames:
        matches = (ruleset or _ruleset()).evaluate(df)
        records_ = df["EventRecordID"].astype("int64").to_numpy()
        for row, rule_path in zip(matches["row"], matches["rule_path"], strict=True):
            out.setdefault(int(records_[int(row)]), set()).add(Path(rule_path).stem)
    return out


def _evtx_verdicts(tmp_path: Path, events: list[Event], ruleset: Any = None) -> dict[int, set[str]]:
    path = write_evtx(tmp_path / "r4.evtx", events)
    stats = ReadStats()
    frames = list(iter_evtx(path, stats))
    assert stats.records == len(events) and not stats.warnings, stats.warnings
    return _verdicts(frames, ruleset)


def _sample_events() -> tuple[list[Event], dict[int, tuple[str, str]]]:
    events: list[Event] = []
    origin: dict[int, tuple[str, str]] = {}
    for spec in _samples().values():
        for kind in ("positive", "negative"):
            for row in spec.get(kind) or []:
                events.append(_event(row, len(events) + 1))
                origin[len(events)] = (spec["rule"], kind)
    return events, origin


def test_samples_give_their_verdicts_through_evtx(tmp_path: Path):
    events, origin = _sample_events()
    got = _evtx_verdicts(tmp_path, events)
    for rid, (stem, kind) in origin.items():
        hit = stem in got.get(rid, set())
        assert hit == (kind == "positive"), (stem, kind, rid, got.get(rid))


@pytest.mark.parametrize("flavour", ["winlogbeat6", "otrf", "winlogbeat"])
def test_json_exports_of_the_samples_give_the_evtx_verdicts(tmp_path: Path, flavour: str):
    """The held-out recordings are JSON exports: the rules must see there what they see in EVTX."""
    events, _ = _sample_events()
    want = _evtx_verdicts(tmp_path, events)
    path = tmp_path / f"r4.{flavour}.json"
    path.write_bytes(export_bytes(records(events, flavour), container="lines", compress="gz"))
    stats = ReadStats()
    frames = list(iter_json_events(path, stats))
    assert stats.records == len(events) and stats.bad_records == 0 and not stats.warnings, stats.warnings
    assert _verdicts(frames) == want
    assert sum(len(v) for v in want.values()) >= len(_samples())  # not a vacuous equality


SYSMON = ("Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon/Operational")
SEC = ("Microsoft-Windows-Security-Auditing", "Security")
PSH = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
WMI = r"C:\Windows\System32\wbem\WmiPrvSE.exe"
LSA = r"HKLM\System\CurrentControlSet\Control\Lsa"
VOL = r"\device\harddiskvolume2"


def _ev(src: tuple[str, str], eid: int, **data: str) -> dict[str, Any]:
    return {"Provider": src[0], "Channel": src[1], "EventID": eid, **data}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param(  # WMI: any program the provider host starts, but not WMI's own helpers nor shells (older rule)
            [
                _ev(SYSMON, 1, Image=r"C:\Windows\System32\svcupd.exe", ParentImage=WMI),
                _ev(SYSMON, 1, Image=r"C:\Windows\System32\wbem\WmiApSrv.exe", ParentImage=WMI),
                _ev(SYSMON, 1, Image=r"C:\Windows\System32\cmd.exe", ParentImage=WMI),
            ],
            [{"r4_lm_wmi_provider_host_starts_program"}, set(), set()],
            id="wmi-child",
        ),
        pytest.param(  # NTLM: a downgrade by PowerShell vs Group Policy hardening and a strict session setting
            [
                _ev(SYSMON, 13, Image=PSH, TargetObject=LSA + r"\LmCompatibilityLevel", Details="DWORD (0x00000001)"),
                _ev(SYSMON, 13, Image=r"C:\Windows\system32\svchost.exe",
                    TargetObject=LSA + r"\LmCompatibilityLevel", Details="DWORD (0x00000005)"),
                _ev(SYSMON, 13, Image=r"C:\Windows\system32\svchost.exe",
                    TargetObject=LSA + r"\MSV1_0\RestrictSendingNTLMTraffic",
                    Details="DWORD (0x00000002)"),
            ],
            [{"r4_cred_ntlm_downgrade_registry"}, set(), set()],
            id="ntlm-downgrade",
        ),
        pytest.param(  # listeners: PowerShell vs the services that listen for a living (SMB, SQL Server, IIS)
            [
                _ev(SEC, 5154, Application=VOL + r"\windows\system32\windowspowershell\v1.0\powershell.exe",
                    SourcePort="4444"),
                _ev(SEC, 5154, Application=VOL + r"\program files\microsoft sql server\mssql15\binn\sqlservr.exe",
                    SourcePort="1433"),
                _ev(SEC, 5154, Application="System", SourcePort="445"),
            ],
            [{"r4_c2_script_host_listens_security"}, set(), set()],
            id="listener",
        ),
        pytest.param(  # recon: a stager's encoded PowerShell vs a config manager's hidden, policy-bypassing script
            [
                _ev(SYSMON, 1, Image=r"C:\Windows\System32\whoami.exe", ParentImage=PSH,
                    ParentCommandLine="powershell -nop -w hidden -EncodedCommand JABzAD0ATgBlAHcA"),
                _ev(SYSMON, 1, Image=r"C:\Windows\System32\whoami.exe", ParentImage=PSH,
                    ParentCommandLine=r"powershell -ExecutionPolicy Bypass -WindowStyle Hidden -File C:\CCM\x.ps1"),
            ],
            [{"r4_disc_recon_by_encoded_powershell"}, set()],
            id="stager-recon",
        ),
        pytest.param(  # command-line auditing: switched off by hand (high) vs switched on; a GPO write is medium
            [
                _ev(SYSMON, 1, Image=r"C:\Windows\System32\reg.exe", ParentImage=r"C:\Windows\System32\cmd.exe",
                    CommandLine=r"reg add HKLM\Software\Microsoft\Windows\CurrentVersion\Policies\System\Audit"
                                r" /v ProcessCreationIncludeCmdLine_Enabled /t REG_DWORD /d 0 /f"),
                _ev(SYSMON, 1, Image=r"C:\Windows\System32\reg.exe", ParentImage=r"C:\Windows\System32\cmd.exe",
                    CommandLine=r"reg add HKLM\Software\Microsoft\Windows\CurrentVersion\Policies\System\Audit"
                                r" /v ProcessCreationIncludeCmdLine_Enabled /t REG_DWORD /d 1 /f"),
                _ev(SYSMON, 13, Image=r"C:\Windows\system32\svchost.exe", EventType="SetValue",
                    TargetObject=r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System\Audit"
                                 r"\ProcessCreationIncludeCmdLine_Enabled", Details="DWORD (0x00000000)"),
            ],
            [{"r4_evasion_cmdline_audit_disabled_cmdline"}, set(), {"r4_evasion_cmdline_audit_disabled_registry"}],
            id="cmdline-audit",
        ),
    ],
)  # fmt: skip
def test_technique_boundaries(tmp_path: Path, rows: list[dict[str, Any]], expected: list[set[str]]):
    events = [_event({"Level": 4, **row}, i) for i, row in enumerate(rows, 1)]
    got = _evtx_verdicts(tmp_path, events)
    assert [got.get(i, set()) for i in range(1, len(rows) + 1)] == expected


def test_widened_registry_rules_read_string_typed_values(tmp_path: Path):
    """Set-ItemProperty on a missing value writes REG_SZ: Sysmon 13 then shows "1", not "DWORD (0x00000001)"."""
    stems = ("cred_wdigest_uselogoncredential_registry", "cred_lsa_protection_or_credential_guard_disabled")
    ruleset = load_rules([PACK / f"{stem}.yml" for stem in stems])
    wdigest = r"HKLM\System\CurrentControlSet\Control\SecurityProviders\WDigest\UseLogonCredential"
    rows = [
        _ev(SYSMON, 13, Image=PSH, EventType="SetValue", TargetObject=wdigest, Details="1"),
        _ev(SYSMON, 13, Image=PSH, EventType="SetValue", TargetObject=wdigest, Details="DWORD (0x00000001)"),
        _ev(SYSMON, 13, Image=PSH, EventType="SetValue", TargetObject=wdigest, Details="0"),
        _ev(SYSMON, 13, Image=PSH, EventType="SetValue", TargetObject=LSA + r"\RunAsPPL", Details="0"),
        _ev(SYSMON, 13, Image=PSH, EventType="SetValue", TargetObject=LSA + r"\RunAsPPL", Details="DWORD (0x00000001)"),
    ]
    events = [_event({"Level": 4, **row}, i) for i, row in enumerate(rows, 1)]
    got = _evtx_verdicts(tmp_path, events, ruleset)
    assert [got.get(i, set()) for i in range(1, len(rows) + 1)] == [{stems[0]}, {stems[0]}, set(), {stems[1]}, set()]


@cache
def _whole_pack():
    return load_rules(sorted(PACK.glob("*.yml")))


def test_admin_routines_near_the_round4_techniques_raise_no_high(tmp_path: Path):
    """Routine work that looks like the round-4 techniques: the whole pack stays below high, and the round-4 rules
    either stay silent or ask for a review (medium)."""
    repl = "%%7688 {1131f6aa-9c07-11d1-f79f-00c04fc2dcd2} {19195a5b-6da0-11d0-afd3-00c04fd930c9}"
    rows = [
        # SCCM client push: the site server starts ccmsetup through WMI (a review, never an alarm)
        _ev(SYSMON, 1, Image=r"C:\Windows\ccmsetup\ccmsetup.exe", ParentImage=WMI,
            CommandLine=r"C:\Windows\ccmsetup\ccmsetup.exe /source:\\sccm01\SMS_P01\Client SMSSITECODE=P01"),
        # a monitoring agent's WMI host and its own script host (SCOM)
        _ev(SYSMON, 1, Image=WMI, ParentImage=r"C:\Windows\System32\svchost.exe",
            CommandLine=r"C:\Windows\system32\wbem\wmiprvse.exe -secured -Embedding"),
        _ev(SYSMON, 1, Image=r"C:\Windows\System32\cscript.exe",
            ParentImage=r"C:\Program Files\Microsoft Monitoring Agent\Agent\MonitoringHost.exe",
            CommandLine='"C:\\Windows\\system32\\cscript.exe" /nologo "MonitorKnowledgeDiscovery.vbs"'),
        # replication between domain controllers: DC02$ pulls changes from DC01
        _ev(SEC, 4662, SubjectUserName="DC02$", SubjectDomainName="CORP", ObjectServer="DS",
            ObjectType="%{19195a5b-6da0-11d0-afd3-00c04fd930c9}", AccessMask="0x100", Properties=repl),
        # a backup agent's snapshot (VSS) before the nightly job
        _ev(SYSMON, 1, Image=r"C:\Windows\System32\vssadmin.exe", CommandLine="vssadmin create shadow /for=C:",
            ParentImage=r"C:\Program Files\Backup\agent.exe"),
        # WSUS on IIS listening, Windows Update scanning
        _ev(SEC, 5154, Application=VOL + r"\windows\system32\inetsrv\w3wp.exe", SourcePort="8530"),
        _ev(SYSMON, 1, Image=r"C:\Windows\System32\usoclient.exe", CommandLine="usoclient.exe StartScan",
            ParentImage=r"C:\Windows\System32\svchost.exe"),
        # Group Policy hardening NTLM and command-line auditing turned on
        _ev(SYSMON, 13, Image=r"C:\Windows\system32\svchost.exe", EventType="SetValue",
            TargetObject=LSA + r"\LmCompatibilityLevel", Details="DWORD (0x00000005)"),
        _ev(SYSMON, 13, Image=r"C:\Windows\system32\svchost.exe", EventType="SetValue",
            TargetObject=r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System\Audit"
                         r"\ProcessCreationIncludeCmdLine_Enabled", Details="DWORD (0x00000001)"),
        # Windows servicing its own task as SYSTEM
        _ev(SEC, 4702, SubjectUserSid="S-1-5-18", SubjectUserName="SRV01$",
            TaskName=r"\Microsoft\Windows\UpdateOrchestrator\Reboot",
            TaskContentNew=r"<Task><Actions><Exec><Command>%systemroot%\system32\MusNotification.exe</Command>"
                           r"</Exec></Actions></Task>"),
    ]  # fmt: skip
    events = [_event({"Level": 4, **row}, i) for i, row in enumerate(rows, 1)]
    path = write_evtx(tmp_path / "routines.evtx", events)
    df = pd.concat(list(iter_evtx(path, ReadStats())), ignore_index=True)
    matches = _whole_pack().evaluate(df)
    stems = [Path(p).stem for p in matches["rule_path"]]
    loud = [s for s, level in zip(stems, matches["level"], strict=True) if level in ("high", "critical")]
    assert not loud, loud
    # the SCCM push is the one routine a round-4 rule asks to review; nothing else of round 4 fires
    assert {s for s in stems if s.startswith("r4_")} == {"r4_lm_wmi_provider_host_starts_program"}
