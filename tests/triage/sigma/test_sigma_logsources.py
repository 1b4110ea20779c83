"""The logsource map: shipped data, validation errors, row pre-filtering and field aliases per source."""

from __future__ import annotations

import textwrap

import pytest
from sigma_support import SYSMON, frame, rule_text

from triage.sigma import LogsourceError, LogsourceMap, load_logsources

PS = "Microsoft-Windows-PowerShell/Operational"


def test_shipped_map_covers_windows_services_and_categories():
    lmap = load_logsources()
    services = [
        "security", "system", "application", "sysmon", "powershell", "powershell-classic", "msexchange-management",
        "taskscheduler", "wmi", "windefend", "printservice", "dns-server", "bits-client", "codeintegrity-operational",
        "firewall-as", "applocker", "ntlm", "security-mitigations", "diagnosis-scripted", "driver-framework",
        "ldap_debug", "openssh", "shell-core", "smbclient-security", "terminalservices-localsessionmanager",
        "appxdeployment-server",
    ]  # fmt: skip
    for service in services:
        assert lmap.resolve("windows", None, service) is not None, service
    assert lmap.resolve("windows", None, "msexchange-management").sources[0].channels == ("msexchange management",)

    def ids(category: str) -> list[tuple[str, tuple[int, ...]]]:
        entry = lmap.resolve("windows", category, None)
        assert entry is not None, category
        return [(v.channels[0], v.event_ids) for v in entry.sources]

    sysmon = SYSMON.lower()
    assert ids("process_creation") == [(sysmon, (1,)), ("security", (4688,))]
    assert ids("network_connection") == [(sysmon, (3,))]
    assert ids("process_access") == [(sysmon, (10,))]
    assert ids("image_load") == [(sysmon, (7,))]
    assert ids("file_event") == [(sysmon, (11,))]
    assert ids("registry_event") == [(sysmon, (12, 13, 14))]
    assert ids("registry_set") == [(sysmon, (13,))]
    assert ids("create_remote_thread") == [(sysmon, (8,))]
    assert ids("driver_load") == [(sysmon, (6,))]
    assert ids("dns_query") == [(sysmon, (22,))]
    assert ids("pipe_created") == [(sysmon, (17, 18))]
    assert ids("wmi_event") == [(sysmon, (19, 20, 21))]
    assert ids("file_delete") == [(sysmon, (23, 26))]
    assert ids("process_tampering") == [(sysmon, (25,))]
    assert ids("raw_access_thread") == [(sysmon, (9,))]
    assert ids("create_stream_hash") == [(sysmon, (15,))]
    assert ids("clipboard_capture") == [(sysmon, (24,))]
    assert ids("sysmon_status") == [(sysmon, (4, 16))]
    assert ids("sysmon_error") == [(sysmon, (255,))]
    assert ids("ps_script") == [(PS.lower(), (4104,))]
    assert ids("ps_module") == [(PS.lower(), (4103,))]
    assert ids("ps_classic_start") == [("windows powershell", (400,))]
    assert ids("ps_classic_provider_start") == [("windows powershell", (600,))]
    assert lmap.resolve("WINDOWS", "Process_Creation", None) is not None  # case-insensitive lookup
    assert lmap.resolve("linux", "process_creation", None) is None
    security_4688 = lmap.resolve("windows", "process_creation", None).sources[1]
    assert security_4688.alias_map["Image"] == "NewProcessName"
    assert security_4688.alias_map["ParentImage"] == "ParentProcessName"
    assert security_4688.alias_map["User"] == "SubjectUserName"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("logsources: [\n  {product: windows\n", "YAML error at line 3"),
        ("logsources: []\n", "non-empty list"),
        ("logsources:\n  - {product: windows, service: x}\n", "'sources' must be a non-empty list"),
        ("logsources:\n  - {product: windows, service: x, sources: [{event_ids: [1]}]}\n", "needs a 'channel'"),
        ("logsources:\n  - {product: windows, service: x, sources: [{channel: A, event_ids: [one]}]}\n", "integers"),
        ("logsources:\n  - {product: windows, service: x, colour: red, sources: [{channel: A}]}\n", "colour"),
        ("logsources:\n  - {sources: [{channel: A}]}\n", "at least one of product"),
        (
            "logsources:\n  - {product: windows, service: x, sources: [{channel: A}]}\n"
            "  - {product: Windows, service: X, sources: [{channel: B}]}\n",
            "defined twice",
        ),
        ("logsources:\n  - {product: windows, service: x, sources: [{channel: A, fields: {Image: 3}}]}\n", "fields"),
        ("version: 2\nlogsources: []\n", "unsupported version"),
    ],
    ids=["yaml", "empty", "no-sources", "no-channel", "bad-id", "unknown-key", "no-match", "dup", "fields", "version"],
)
def test_invalid_mapping_files_raise_clear_errors(tmp_path, text, message):
    path = tmp_path / "logsources.yaml"
    path.write_text(text)
    with pytest.raises(LogsourceError) as info:
        load_logsources(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_mapping_file(tmp_path):
    with pytest.raises(LogsourceError, match="cannot read"):
        load_logsources(tmp_path / "nope.yaml")


def test_sysmon_rule_never_matches_security_rows(load_texts):
    ruleset = load_texts(rule_text("sel:\n  CommandLine|contains: whoami\ncondition: sel"))
    df = frame(
        [
            {"Channel": SYSMON, "EventID": 1, "CommandLine": "whoami"},
            {"Channel": SYSMON, "EventID": 3, "CommandLine": "whoami"},  # Sysmon, but not process creation
            {"Channel": "Security", "EventID": 1, "CommandLine": "whoami"},  # EventID 1 in the wrong channel
            {"Channel": "Security", "EventID": 4624, "CommandLine": "whoami"},
            {"Channel": "microsoft-windows-sysmon/operational", "EventID": 1, "CommandLine": "WHOAMI"},
            {"Channel": SYSMON, "EventID": None, "CommandLine": "whoami"},
        ]
    )
    assert ruleset.evaluate(df)["row"].tolist() == [0, 4]


def test_security_4688_field_aliases_for_process_creation(load_texts):
    detection = r"""
    sel:
      Image|endswith: '\cmd.exe'
      ParentImage|endswith: '\w3wp.exe'
      User|contains: 'IUSR'
    condition: sel
    """
    ruleset = load_texts(rule_text(detection))
    df = frame(
        [
            {
                "Channel": SYSMON,
                "EventID": 1,
                "Image": r"C:\w\cmd.exe",
                "ParentImage": r"C:\i\w3wp.exe",
                "User": "IUSR",
            },
            {
                "Channel": "Security",
                "EventID": 4688,
                "NewProcessName": r"C:\w\cmd.exe",
                "ParentProcessName": r"C:\i\w3wp.exe",
                "SubjectUserName": "IUSR_X",
            },
            {
                "Channel": "Security",
                "EventID": 4688,
                "NewProcessName": r"C:\w\notepad.exe",
                "ParentProcessName": r"C:\i\w3wp.exe",
                "SubjectUserName": "IUSR_X",
            },
            {"Channel": "Security", "EventID": 4624, "NewProcessName": r"C:\w\cmd.exe"},
        ]
    )
    assert ruleset.evaluate(df)["row"].tolist() == [0, 1]


def test_service_rules_filter_on_channel_and_aliases_apply(load_texts):
    system_rule = rule_text(
        "sel:\n  Provider_Name: Service Control Manager\n  EventID: 7045\n  ImagePath|contains: '\\\\temp\\\\'\n"
        "condition: sel",
        logsource="product: windows\n  service: system",
        rule_id="22222222-2222-4222-8222-222222222222",
    )
    ps_rule = rule_text(
        "sel:\n  ScriptBlockText|contains: 'Invoke-Mimikatz'\ncondition: sel",
        logsource="product: windows\n  category: ps_script",
        rule_id="33333333-3333-4333-8333-333333333333",
    )
    exchange_rule = rule_text(
        "sel:\n  - 'Set-OabVirtualDirectory'\ncondition: sel",
        logsource="product: windows\n  service: msexchange-management",
        rule_id="44444444-4444-4444-8444-444444444444",
    )
    ruleset = load_texts(system_rule, ps_rule, exchange_rule)
    assert not ruleset.skipped
    df = frame(
        [
            {
                "Channel": "System",
                "Provider": "Service Control Manager",
                "EventID": 7045,
                "ImagePath": r"C:\Temp\x.exe",
            },
            {"Channel": "System", "Provider": "Other", "EventID": 7045, "ImagePath": r"C:\Temp\x.exe"},
            {"Channel": "Application", "Provider": "Service Control Manager", "EventID": 7045, "ImagePath": r"\temp\\"},
            {"Channel": PS, "EventID": 4104, "ScriptBlockText": "Invoke-Mimikatz -DumpCreds"},
            {"Channel": "PowerShellCore/Operational", "EventID": 4104, "ScriptBlockText": "invoke-mimikatz"},
            {"Channel": PS, "EventID": 4103, "ScriptBlockText": "Invoke-Mimikatz"},
            {"Channel": "MSExchange Management", "EventID": 1, "Data": "Set-OabVirtualDirectory -ExternalUrl x"},
        ]
    )
    got = ruleset.evaluate(df)[["rule_id", "row"]].values.tolist()
    assert sorted((rid[:2], row) for rid, row in got) == [("22", 0), ("33", 3), ("33", 4), ("44", 6)]


def test_custom_map_and_provider_filter(tmp_path, load_texts):
    custom = textwrap.dedent(
        """\
        logsources:
          - product: windows
            service: exchange-custom
            sources:
              - provider: MSExchange CmdletLogs
                event_ids: [1]
                fields: {Cmdlet: Data}
        """
    )
    path = tmp_path / "custom.yaml"
    path.write_text(custom)
    lmap = load_logsources(path)
    assert isinstance(lmap, LogsourceMap) and len(lmap) == 1
    rule = rule_text(
        "sel:\n  Cmdlet|contains: New-MailboxExportRequest\ncondition: sel",
        logsource="product: windows\n  service: exchange-custom",
    )
    ruleset = load_texts(rule, rule_text("sel:\n  Image: x\ncondition: sel"), logsources=lmap)
    assert len(ruleset) == 1
    assert "unknown logsource" in ruleset.skipped[0].reason
    df = frame(
        [
            {
                "Channel": "Application",
                "Provider": "MSExchange CmdletLogs",
                "EventID": 1,
                "Data": "New-MailboxExportRequest",
            },
            {"Channel": "Application", "Provider": "Other", "EventID": 1, "Data": "New-MailboxExportRequest"},
        ]
    )
    assert ruleset.evaluate(df)["row"].tolist() == [0]


def test_eventid_given_as_strings(load_texts):
    rule = rule_text(
        "sel:\n  EventID: 4625\n  LogonType: 3\ncondition: sel", logsource="product: windows\n  service: security"
    )
    ruleset = load_texts(rule, rule_text("sel:\n  CommandLine|contains: x\ncondition: sel"))
    df = frame(
        [
            {"Channel": "Security", "EventID": "4625", "LogonType": "3", "CommandLine": None},
            {"Channel": "Security", "EventID": "4624", "LogonType": "3", "CommandLine": None},
            {"Channel": SYSMON, "EventID": "1", "LogonType": None, "CommandLine": "x"},
        ]
    )
    df["EventID"] = df["EventID"].astype("str")
    assert sorted(ruleset.evaluate(df)["row"].tolist()) == [0, 2]
