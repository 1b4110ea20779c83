"""Golden corpus results for the ED 21-02 Sigma pack.

Every attack EVTX in ../shared/corpus (credential_access, persistence, webshell_exchange, powershell,
defense_evasion) must yield exactly the findings listed below (rule file stem -> EventRecordIDs), which
follow the file's MANIFEST.md description; the benign baseline logs must yield no high or critical match
and only the low/medium review rules listed; the OTRF JSON export (no record numbers there, so match
counts) must show the comsvcs MiniDump and the lsass access. Refresh the tables deliberately when a rule
changes.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analyzers.eventlog.reader import iter_json_events
from triage.formats.evtx import ReadStats, iter_evtx
from triage.sigma import RuleSet, load_rules
from triage.sigma.correlation import Correlator

REPO = Path(__file__).resolve().parents[3]
PACK = REPO / "signatures" / "sigma" / "ed2102"
BREADTH_SAMPLES = REPO / "signatures" / "sigma" / "samples" / "breadth.yaml"
CORPUS = REPO.parent / "shared" / "corpus"
ATTACK_FOLDERS = ("credential_access", "persistence", "webshell_exchange", "powershell", "defense_evasion")

pytestmark = pytest.mark.skipif(
    not (CORPUS / "evtx").is_dir(), reason=f"shared corpus not present at {CORPUS} (golden corpus tests need it)"
)

# fmt: off
# file (relative to the corpus) -> rule file stem -> EventRecordIDs that rule must match (exactly).
EXPECTED: dict[str, dict[str, tuple[int, ...]]] = {
    # ---------------------------------------------------------------- credential access (ED 21-02 step 9)
    "evtx/credential_access/DBC_mimikatz-privesc-hashdump.evtx": {  # mimikatz lsadump::sam, 4673 by mimikatz.exe
        "cred_mimikatz_in_security_events": (8935, 8936, 8937, 8938),
        "evasion_security_log_cleared": (8934,),
    },
    "evtx/credential_access/EAS_CA_Mimikatz_Memssp_Default_Logs_Sysmon_11.evtx": {  # lsass writes mimilsa.log
        "cred_mimikatz_memssp_log_written": (385052,),
    },
    "evtx/credential_access/EAS_CA_hashdump_4663_4656_lsass_access.evtx": {  # 4656/4663 on lsass by cscript
        "cred_lsass_handle_audit_read_access": (314461, 314462),
    },
    "evtx/credential_access/EAS_Powershell_4104_MiniDumpWriteDump_Lsass.evtx": {  # 4104 MiniDumpWriteDump
        "cred_lsass_dump_powershell_script": (971,),
        "cred_powershell_lsass_minidump": (971,),
    },
    "evtx/credential_access/EAS_sysmon_10_11_lsass_memdump.evtx": {  # procdump + Task Manager: 10 and 11
        "cred_lsass_dump_file_created": (4433, 4441),
        "cred_lsass_opened_with_dump_rights": (4434, 4442),
    },
    "evtx/credential_access/EAS_sysmon_10_lsass_mimikatz_sekurlsa_logonpasswords.evtx": {  # 0x1010
        "cred_lsass_opened_with_dump_rights": (4807,),
    },
    "evtx/credential_access/MTR_ID1-12-13-Wdigest_authentication_activation.evtx": {  # reg add + Sysmon 13
        "cred_wdigest_uselogoncredential_cmdline": (57278,),
        "cred_wdigest_uselogoncredential_registry": (57280,),
    },
    "evtx/credential_access/MTR_ID1-LSASS_dump_with_LSASSY_SYSMON.evtx": {  # comsvcs MiniDump via WMI/PS
        "cred_comsvcs_minidump": (71668,),  # the PowerShell command names lsass
        "cred_comsvcs_minidump_process": (71671,),  # rundll32 itself gets only the PID
        "cred_lsass_dump_file_created": (71672,),
        "cred_lsass_opened_with_dump_rights": (71673,),
    },
    "evtx/credential_access/MTR_ID4656-4663-4658_Mimikatz_sekurlsa_password_dump.evtx": {  # 4656/4663 by mimikatz
        "cred_lsass_handle_audit_read_access": (9217076, 9217077),
        "cred_mimikatz_in_security_events": (9217075, 9217076, 9217077),
        "evasion_security_log_cleared": (9217073,),
    },
    # ---------------------------------------------------------------- defense evasion
    "evtx/defense_evasion/DBC_sliver-sysmon.evtx": {  # powershell runs wevtutil cl security/system/...
        "evasion_clear_log_cmdline": (23866, 23867, 23868, 23869, 23870),
    },
    "evtx/defense_evasion/EAS_DE_1102_security_log_cleared.evtx": {  # 1102
        "evasion_security_log_cleared": (452811,),
    },
    # ---------------------------------------------------------------- persistence (ED 21-02 step 10)
    "evtx/persistence/DBC_new-user-security.evtx": {  # 4720 + 4732 Administrators
        "persist_account_created_or_enabled": (112,),
        "persist_member_added_local_privileged_group": (116,),
    },
    "evtx/persistence/EAS_LM_Remote_Service02_7045.evtx": {  # services with ImagePath cmd.exe / calc.exe
        "persist_service_installed_system": (4480, 4482, 6045),
        "persist_service_suspicious_image_system": (4480, 4482),
    },
    "evtx/persistence/EAS_evasion_persis_hidden_run_keyvalue_sysmon_13.evtx": {  # hidden HKLM Run value
        "persist_run_key_suspicious_value": (306346,),
        "persist_run_key_written": (306346,),
    },
    "evtx/persistence/EAS_persistence_SilentProcessExit_ImageHijack_sysmon_13_1.evtx": {  # IFEO/SilentProcessExit
        "persist_ifeo_debugger_or_silent_exit_monitor": (8034, 8038),
        "persist_ifeo_hijack_cmdline": (8033, 8035, 8037),
        "persist_silent_exit_monitor_launched": (8040, 8045),
    },
    "evtx/persistence/EAS_persistence_accessibility_features_osk_sysmon1.evtx": {  # osk.exe = cmd, whoami
        "persist_accessibility_feature_abuse": (18917, 18918),
    },
    "evtx/persistence/EAS_sysmon_20_21_1_CommandLineEventConsumer.evtx": {  # WMI CommandLineEventConsumer
        "cred_lsass_opened_with_dump_rights": (16118,),  # WinPwnage's python.exe opens lsass with 0x1410
        "persist_wmi_commandline_consumer": (16111, 16112),
        "persist_wmi_consumer_cmdline": (16110, 16113),
        "persist_wmi_subscription_created": (16111, 16112, 16115),
    },
    "evtx/persistence/EAS_sysmon_local_account_creation_and_added_admingroup_12_13.evtx": {  # SAM writes by lsass
        "persist_local_account_sam_registry": (
            2134364, 2134365, 2134384, 2134385, 2134398, 2134399, 2134403,
            2134404, 2134405, 2134407, 2134408, 2134410, 2134411, 2134412,
        ),
    },
    "evtx/persistence/EAS_temp_scheduled_task_4698_4699.evtx": {  # 4698 cmd.exe /C tasklist > %windir%\Temp
        "persist_scheduled_task_created": (566836,),
        "persist_scheduled_task_suspicious_action": (566836,),
    },
    "evtx/persistence/MTR_ID4697-New_service_for_Mimikatz.evtx": {  # 4697 mimidrv
        "evasion_security_log_cleared": (9213076,),
        "persist_mimikatz_driver_service_security": (9213077,),
        "persist_service_installed_security": (9213077,),
    },
    "evtx/persistence/MTR_ID7045-7036_PSexec_service_installation.evtx": {  # PSEXESVC 7045 (+ 104 clear)
        "evasion_eventlog_cleared_system": (471479,),
        "persist_psexec_service_installed": (471480,),
        "persist_service_installed_system": (471480,),
    },
    # ---------------------------------------------------------------- PowerShell
    "evtx/powershell/DBC_Powershell-Invoke-Obfuscation-encoding-menu.evtx": {  # encoded IEX(Net.WebClient) cradle
        "ps_obfuscated_char_encoding": (
            631706, 636579, 636580, 641483, 641484, 646409, 646410, 651139,
            655085, 656012, 656607, 656608, 661160, 661161, 665864, 665865,
        ),
    },
    "evtx/powershell/EAS_phish_windows_credentials_powershell_scriptblockLog_4104.evtx": {  # gzip stager + prompt
        "ps_compressed_base64_stager": (1122,),
        "ps_nishang_functions": (1123,),
    },
    # ---------------------------------------------------------------- web shell / Exchange (steps 8 and 10)
    "evtx/webshell_exchange/EAS_LM_typical_IIS_webshell_sysmon_1_10_traces.evtx": {  # w3wp -> cmd /c net user
        "webshell_exchange_worker_spawns_shell": (1044,),
    },
    "evtx/webshell_exchange/EAS_privexchange_dirkjan.evtx": {  # EXCHANGE$ 4662 WRITE_DAC + 5136 ACL change
        "exchange_domain_acl_replication_rights": (65970, 65973),
    },
    "evtx/webshell_exchange/MTR_ID4756-Exchange_admin_group_change.evtx": {  # 4756 into Exchange role groups
        "exchange_member_added_to_exchange_group": (102653314,),  # Organization Management: high
        "exchange_member_added_to_exchange_role_group": (  # the delegated role and server groups: medium
            102653291, 102653294, 102653302, 102653305, 102653308, 102653311, 102653317,
            102653320, 102653323, 102653326, 102653329, 102653332, 102653335, 102653338,
        ),
    },
    "evtx/webshell_exchange/OMB_MSExchange_Management_wec.evtx": {  # Set-Mailbox -ForwardingSmtpAddress
        "exchange_mailbox_forwarding_configured": (3229,),
    },
}

# Benign logs: only these low/medium review rules may fire, on exactly these records.
BASELINE: dict[str, dict[str, tuple[int, ...]]] = {
    "evtx/baseline/DBC_many-events-application.evtx": {},
    "evtx/baseline/OMB_sample_with_a_bad_chunk_magic.evtx": {},
    "evtx/baseline/PYE_issue_43_sysmon.evtx": {},
    "evtx/baseline/PYE_security.evtx": {
        "persist_account_created_or_enabled": (51, 52, 182, 183),
        "persist_member_added_local_privileged_group": (58, 752, 821),
        "privesc_domain_policy_changed_by_account": (131, 132),  # 4739 by the local admin: a policy edit, medium
    },
    "evtx/baseline/PYE_system.evtx": {
        "evasion_eventlog_service_interrupted_system": (12148, 12363, 12501),  # 7036 stops: medium, for review
        "persist_psexec_service_installed": (13304, 13307, 13311, 13510),
        "persist_service_installed_system": (
            12331, 12332, 12333, 12892, 12894, 13304, 13307, 13311, 13334, 13335, 13510, 13629,
        ),
    },
}

# fmt: on

# OTRF JSON export (Security + Sysmon, no EventRecordID): rule stem -> number of matching events.
OTRF_COMSVCS = "events_json/OTR_psh_lsass_memory_dump_comsvcs.json.xz"
OTRF_EXPECTED = {
    "cred_comsvcs_minidump": 2,  # Sysmon 1 and Security 4688 of rundll32 comsvcs.dll MiniDump
    "cred_lsass_opened_with_dump_rights": 2,  # Sysmon 10 rundll32 -> lsass 0x1fffff and 0x1410
    "cred_lsass_handle_audit_read_access": 4,  # 4656 (0x1fffff, 0x1410) and 4663 (0x10) by rundll32
    "cred_lsass_dump_file_created": 1,  # lsass-comsvcs.dmp written by rundll32
    "evasion_security_log_cleared": 1,  # the dataset starts with a 1102
}


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    # the golden tables pin the ED 21-02 pack; the breadth rules have their own corpus checks (test_breadth_pack.py)
    breadth = {spec["rule"] for spec in yaml.safe_load(BREADTH_SAMPLES.read_text(encoding="utf-8"))["rules"].values()}
    rs = load_rules(sorted(p for p in PACK.glob("*.yml") if p.stem not in breadth))
    assert rs.skipped == []
    return rs


@cache
def _events(rel: str) -> pd.DataFrame:
    path = CORPUS / rel
    stats = ReadStats()
    reader = iter_json_events if path.name.endswith((".json", ".json.xz", ".jsonl")) else iter_evtx
    frames = list(reader(path, stats))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _findings(ruleset: RuleSet, rel: str) -> tuple[dict[str, tuple], pd.DataFrame]:
    """rule stem -> sorted EventRecordIDs (or match count when the source has no record numbers)."""
    df = _events(rel)
    # what the analyzer reports: building blocks of correlation rules (generate: false) stay silent
    matches = Correlator(ruleset).visible(ruleset.evaluate(df))
    assert ruleset.runtime_errors == []
    stems = {r.id: Path(r.path).stem for r in ruleset.loaded}
    out: dict[str, tuple] = {}
    for rule_id, group in matches.groupby("rule_id"):
        records = df["EventRecordID"].iloc[group["row"].to_numpy()]
        out[stems[rule_id]] = tuple(sorted(int(r) for r in records.dropna()))
    return out, matches


def test_table_covers_every_attack_evtx():
    present = {
        p.relative_to(CORPUS).as_posix() for folder in ATTACK_FOLDERS for p in (CORPUS / "evtx" / folder).glob("*.evtx")
    }
    assert present, "no attack EVTX found"
    assert present - set(EXPECTED) == set(), "attack EVTX without an expectation in EXPECTED"
    baseline = {p.relative_to(CORPUS).as_posix() for p in (CORPUS / "evtx" / "baseline").glob("*.evtx")}
    assert baseline - set(BASELINE) == set(), "baseline EVTX without an entry in BASELINE"


def test_expected_rules_exist(ruleset: RuleSet):
    stems = {Path(r.path).stem for r in ruleset.loaded}
    named = {s for table in (*EXPECTED.values(), *BASELINE.values()) for s in table} | set(OTRF_EXPECTED)
    assert named <= stems, sorted(named - stems)


@pytest.mark.parametrize("rel", sorted(EXPECTED), ids=lambda r: Path(r).name)
def test_attack_evtx_findings(ruleset: RuleSet, rel: str):
    if not (CORPUS / rel).is_file():
        pytest.skip(f"{rel} not in this corpus")
    found, _ = _findings(ruleset, rel)
    assert found == EXPECTED[rel]


@pytest.mark.parametrize("rel", sorted(BASELINE), ids=lambda r: Path(r).name)
def test_baseline_has_no_high_or_critical(ruleset: RuleSet, rel: str):
    if not (CORPUS / rel).is_file():
        pytest.skip(f"{rel} not in this corpus")
    found, matches = _findings(ruleset, rel)
    loud = matches[matches["level"].isin(["high", "critical"])]
    assert loud.empty, loud[["rule_title", "level", "row"]].to_string()
    assert found == BASELINE[rel]


def test_otrf_comsvcs_json(ruleset: RuleSet):
    if not (CORPUS / OTRF_COMSVCS).is_file():
        pytest.skip(f"{OTRF_COMSVCS} not in this corpus")
    _, matches = _findings(ruleset, OTRF_COMSVCS)
    stems = {r.id: Path(r.path).stem for r in ruleset.loaded}
    counts = matches["rule_id"].map(stems).value_counts().to_dict()
    assert counts == OTRF_EXPECTED
