"""What a healthy Exchange/IIS server really logs and stores: the benign baseline for the rule packs.

:func:`benign_server_events` gives EVTX events (for :func:`triage.testing.evtx.write_evtx`) of routine server
work that detection rules must not call an attack (no ``high``/``critical``): Defender definition updates
(driver services under ``ProgramData\\Microsoft\\Windows Defender\\Definition Updates``), Windows Update, stock
PowerShell modules loading (``.psd1`` manifests that list ``Clear-EventLog``), OpenSSH, a backup agent whose
service arguments name ProgramData, IIS app-pool recycling and first-request page compilation, the Exchange
Management Shell and Exchange's maintenance tasks. :func:`benign_server_hives` gives registry hives with the
same software installed. Written from how Windows and these products behave; no sample's literals.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from triage.testing.evtx import Event
from triage.testing.hives import STOCK_SERVICES, Account, sam_hive, software_hive, system_hive, task
from triage.testing.regf import HiveBuilder

__all__ = ["benign_routine_software_hive", "benign_server_events", "benign_server_hives", "benign_server_routines"]

SYSMON = ("Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon/Operational")
SECURITY = ("Microsoft-Windows-Security-Auditing", "Security")
SCM = ("Service Control Manager", "System")
PS = ("Microsoft-Windows-PowerShell", "Microsoft-Windows-PowerShell/Operational")
EXMGMT = ("MSExchange CmdletLogs", "MSExchange Management")
DEFENDER = ("Microsoft-Windows-Windows Defender", "Microsoft-Windows-Windows Defender/Operational")
TASKS = ("Microsoft-Windows-TaskScheduler", "Microsoft-Windows-TaskScheduler/Operational")
WAS = ("Microsoft-Windows-WAS", "System")
BITS = ("Microsoft-Windows-Bits-Client", "Microsoft-Windows-Bits-Client/Operational")
RCM = ("Microsoft-Windows-TerminalServices-RemoteConnectionManager",
       "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational")  # fmt: skip
RDPCORE = ("Microsoft-Windows-RemoteDesktopServices-RdpCoreTS",
           "Microsoft-Windows-RemoteDesktopServices-RdpCoreTS/Operational")  # fmt: skip
WINRM = ("Microsoft-Windows-WinRM", "Microsoft-Windows-WinRM/Operational")
DCOM = ("Microsoft-Windows-DistributedCOM", "System")

EXBIN = r"C:\Program Files\Microsoft\Exchange Server\V15\Bin"
PSEXE = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
DEFUPD = r"C:\ProgramData\Microsoft\Windows Defender\Definition Updates"
SXS = r"C:\Windows\WinSxS\amd64_microsoft-windows-servicingstack_31bf3856ad364e35_10.0.14393.4350_none_7f2a3b2c1d0e9f8a"
EMS = (
    f"{PSEXE} -noexit -command \". 'C:\\Program Files\\Microsoft\\Exchange Server\\V15\\bin\\RemoteExchange.ps1'; "
    'Connect-ExchangeServer -auto -ClientApplication:ManagementShell "'
)
# PowerShell logs a module manifest's text as a script block when the module is imported
MANAGEMENT_PSD1 = (
    '@{\nGUID="EEFCB906-B326-4E99-9F54-8B4BB6EF3C6D"\nAuthor="PowerShell"\nCompanyName="Microsoft Corporation"\n'
    'ModuleVersion="3.1.0.0"\nPowerShellVersion="3.0"\n'
    'NestedModules="Microsoft.PowerShell.Commands.Management.dll"\nHelpInfoURI = "https://go.microsoft.com/fwlink/?linkid=390785"\n'
    'AliasesToExport = @("gcb", "scb")\nFunctionsToExport = @()\n'
    'CmdletsToExport=@("Add-Content", "Clear-Content", "Clear-ItemProperty", "Join-Path", "Convert-Path",\n'
    '    "Copy-ItemProperty", "Get-EventLog", "Clear-EventLog", "Write-EventLog", "Limit-EventLog",\n'
    '    "Show-EventLog", "New-EventLog", "Remove-EventLog", "Get-ChildItem", "Get-Content", "Stop-Service")\n}'
)


def _proc(image: str, cmd: str, parent: str, user: str = r"NT AUTHORITY\SYSTEM") -> tuple[tuple[str, str], int, dict]:
    return (
        SYSMON,
        1,
        {
            "RuleName": "-",
            "UtcTime": "",
            "ProcessGuid": "{00000000-0000-0000-0000-000000000000}",
            "ProcessId": 4242,
            "Image": image,
            "CommandLine": cmd,
            "CurrentDirectory": "C:\\Windows\\system32\\",
            "User": user,
            "IntegrityLevel": "System",
            "ParentImage": parent,
            "ParentCommandLine": parent,
        },
    )


def _service(name: str, image: str, kind: str = "user mode service", account: str = "LocalSystem") -> tuple:
    return (
        SCM,
        7045,
        {
            "ServiceName": name,
            "ImagePath": image,
            "ServiceType": kind,
            "StartType": "demand start",
            "AccountName": account,
        },
    )


def benign_server_events(start: datetime = datetime(2021, 3, 1, 6, 0, tzinfo=UTC)) -> list[Event]:
    """Routine events of an Exchange 2016 server over one morning, in time order, with record ids."""
    specs: list[tuple] = []
    # -- Defender: a definition update installs a fresh kernel-mode scanner driver each time
    for n, guid in enumerate(("6B1F3C2E-8D4A-4F0B-9C7E-2A5D1E3F4B6C", "0A2B4C6D-8E0F-4A1B-9C2D-3E4F5A6B7C8D")):
        drv = f"MpKsl{'4e1c2a9b' if n == 0 else '77d0e3f1'}"
        specs.append(_service(drv, f"\\??\\{DEFUPD}\\{{{guid}}}\\MpKslDrv.sys", kind="kernel mode driver", account=""))
        specs.append(
            (
                SECURITY,
                4697,
                {
                    "SubjectUserName": "EXCH01$",
                    "ServiceName": drv,
                    "ServiceFileName": f"\\??\\{DEFUPD}\\{{{guid}}}\\MpKslDrv.sys",
                    "ServiceType": "0x1",
                    "ServiceStartType": "3",
                    "ServiceAccount": "",
                },
            )
        )
        specs.append(
            (DEFENDER, 2000, {"Current Signature Version": f"1.333.{n}.0", "Previous Signature Version": "1.331.2.0"})
        )
        specs.append(
            (
                SYSMON,
                11,
                {
                    "Image": r"C:\ProgramData\Microsoft\Windows Defender\Platform\4.18.2102.4-0\MsMpEng.exe",
                    "TargetFilename": f"{DEFUPD}\\{{{guid}}}\\mpasbase.vdm",
                },
            )
        )
    specs.append(
        _proc(
            r"C:\Program Files\Windows Defender\MpCmdRun.exe",
            '"C:\\Program Files\\Windows Defender\\MpCmdRun.exe" -wdenable',
            r"C:\Windows\System32\svchost.exe",
        )
    )
    # -- Windows Update servicing
    specs.append(
        _proc(
            SXS + r"\TiWorker.exe",
            SXS + r"\TiWorker.exe -Embedding",
            r"C:\Windows\System32\svchost.exe",
        )
    )
    specs.append(
        _proc(
            r"C:\Windows\System32\MoUsoCoreWorker.exe",
            r"C:\Windows\System32\mousocoreworker.exe -Embedding",
            r"C:\Windows\System32\svchost.exe",
        )
    )
    specs.append(_service("TrustedInstaller", r"C:\Windows\servicing\TrustedInstaller.exe"))
    # -- stock PowerShell modules load (manifests list Clear-EventLog); a routine health script runs
    specs.append(
        (
            PS,
            4104,
            {
                "MessageNumber": "1",
                "MessageTotal": "1",
                "ScriptBlockText": MANAGEMENT_PSD1,
                "ScriptBlockId": "5c2f1a7e-0d3b-4c9a-8e6f-1b2a3c4d5e6f",
                "Path": r"C:\Windows\system32\WindowsPowerShell\v1.0\Modules\Microsoft.PowerShell.Management"
                r"\Microsoft.PowerShell.Management.psd1",
            },
        )
    )
    specs.append(
        (
            PS,
            4104,
            {
                "MessageNumber": "1",
                "MessageTotal": "1",
                "ScriptBlockText": "Get-EventLog -LogName Application -Newest 50 | Where-Object EntryType -eq 'Error'",
                "Path": "",
            },
        )
    )
    # -- OpenSSH server installed as a Windows capability
    specs.append(_service("sshd", r"C:\Windows\System32\OpenSSH\sshd.exe", account="LocalSystem"))
    specs.append(_service("ssh-agent", r"C:\Windows\System32\OpenSSH\ssh-agent.exe"))
    specs.append(
        _proc(
            r"C:\Windows\System32\OpenSSH\sshd.exe",
            r'"C:\Windows\System32\OpenSSH\sshd.exe"',
            r"C:\Windows\System32\services.exe",
        )
    )
    # -- a backup agent: service arguments (not the binary) point into ProgramData; VSS snapshots
    specs.append(
        _service(
            "AcmeBackupAgent",
            r'"C:\Program Files\Acme Backup\agent.exe" --config "C:\ProgramData\Acme Backup\agent.conf"',
        )
    )
    specs.append(
        _proc(r"C:\Windows\System32\vssadmin.exe", "vssadmin list shadows", r"C:\Program Files\Acme Backup\agent.exe")
    )
    specs.append(
        _proc(
            r"C:\Windows\System32\cmd.exe",
            r'cmd.exe /c "C:\Program Files\Acme Backup\scripts\pre-freeze.cmd"',
            r"C:\Program Files\Acme Backup\agent.exe",
        )
    )
    # -- IIS: app pools recycle, the front end talks to the back end on loopback, a page compiles on first request
    specs.append((WAS, 5074, {"AppPoolID": "MSExchangeOWAAppPool", "ProcessID": "7812"}))
    specs.append(
        _proc(
            r"C:\Windows\System32\inetsrv\w3wp.exe",
            r'c:\windows\system32\inetsrv\w3wp.exe -ap "MSExchangeOWAAppPool" -v "v4.0" -c '
            r'"C:\Program Files\Microsoft\Exchange Server\V15\bin\GenericAppPoolConfigWithGCServerEnabledFalse.config" '
            r'-a \\.\pipe\iisipm1 -h "C:\inetpub\temp\apppools\MSExchangeOWAAppPool\MSExchangeOWAAppPool.config" '
            r'-w "" -m 0',
            r"C:\Windows\System32\svchost.exe",
            user=r"NT AUTHORITY\SYSTEM",
        )
    )
    for port in ("444", "80", "443", "6001"):
        specs.append(
            (
                SYSMON,
                3,
                {
                    "Image": r"C:\Windows\System32\inetsrv\w3wp.exe",
                    "Initiated": "true",
                    "Protocol": "tcp",
                    "DestinationIp": "127.0.0.1",
                    "DestinationPort": port,
                },
            )
        )
    specs.append(
        (
            SYSMON,
            3,
            {
                "Image": r"C:\Windows\System32\inetsrv\w3wp.exe",
                "Initiated": "true",
                "Protocol": "tcp",
                "DestinationIp": "10.0.0.5",
                "DestinationPort": "389",
            },
        )
    )
    specs.append(
        _proc(
            r"C:\Windows\System32\WerFault.exe",
            r"C:\Windows\system32\WerFault.exe -u -p 7812 -s 2204",
            r"C:\Windows\System32\inetsrv\w3wp.exe",
        )
    )
    # -- the Exchange Management Shell and Exchange's own cmdlets (read-only administration)
    specs.append(_proc(PSEXE, EMS, r"C:\Windows\explorer.exe", user=r"CORP\exadmin"))
    for cmdlet, params in (
        ("Get-ExchangeServer", '-Identity "EXCH01"'),
        ("Get-Mailbox", '-ResultSize "Unlimited"'),
        ("Get-OabVirtualDirectory", '-Server "EXCH01"'),
        ("Get-MailboxExportRequest", ""),
        ("Get-TransportAgent", ""),
        ("Test-ServiceHealth", ""),
    ):
        specs.append(
            (
                EXMGMT,
                1,
                [
                    cmdlet,
                    params,
                    "corp.example/Users/exadmin",
                    "S-1-5-21-1-2-3-1105",
                    "6120 w3wp#MSExchangePowerShellAppPool",
                ],
            )
        )
    # -- scheduled maintenance: Exchange's tasks and a monitoring script run by the task scheduler
    specs.append(
        (
            TASKS,
            106,
            {"TaskName": r"\Microsoft\Windows\Exchange\MailboxDatabaseMaintenance", "UserContext": r"CORP\exadmin"},
        )
    )
    specs.append(
        (
            TASKS,
            200,
            {
                "TaskName": r"\Microsoft\Windows\Exchange\MailboxDatabaseMaintenance",
                "ActionName": r"C:\Program Files\Microsoft\Exchange Server\V15\Bin\ExchangeMaintenance.exe",
            },
        )
    )
    specs.append((TASKS, 200, {"TaskName": r"\Monitoring\QueueReport", "ActionName": PSEXE}))
    specs.append(
        _proc(
            PSEXE,
            f"{PSEXE} -NoProfile -File C:\\Scripts\\QueueReport.ps1",
            r"C:\Windows\System32\svchost.exe",
            user=r"CORP\svc_monitor",
        )
    )
    specs.append(
        (
            SECURITY,
            4624,
            {"TargetUserName": "svc_monitor", "LogonType": "4", "ProcessName": r"C:\Windows\System32\svchost.exe"},
        )
    )
    specs.extend(_domain_and_remote_access())
    events: list[Event] = []
    for i, (src, eid, data) in enumerate(specs, start=1):
        provider, channel = src
        events.append(
            Event(
                event_id=eid,
                provider=provider,
                channel=channel,
                record_id=i,
                event_source_name=provider if channel in ("System", "Application") else None,
                time_created=start + timedelta(seconds=30 * i),
                data=data,
            )
        )
    return events


def _domain_and_remote_access() -> list[tuple]:
    """Routine Kerberos, directory and remote-administration events of a domain member server (round 3 sources)."""
    realm, sid, dn = "CORP.EXAMPLE", "S-1-5-21-1004336348-1177238915-682003330", "DC=corp,DC=example"
    specs: list[tuple] = [
        # the server's own machine account asks for service tickets (AES, upper-case realm, trailing $)
        (SECURITY, 4769, {"TargetUserName": f"EXCH01$@{realm}", "TargetDomainName": realm, "ServiceName": "DC01$",
                          "TicketEncryptionType": "0x12", "TicketOptions": "0x40810000", "Status": "0x0",
                          "IpAddress": "::ffff:10.0.0.21"}),
        # Windows' own null session (NT AUTHORITY) and a Kerberos logon of an administrator
        (SECURITY, 4624, {"TargetUserName": "ANONYMOUS LOGON", "TargetUserSid": "S-1-5-7",
                          "TargetDomainName": "NT AUTHORITY", "LogonType": "3", "AuthenticationPackageName": "NTLM",
                          "IpAddress": "10.0.0.5"}),
        (SECURITY, 4624, {"TargetUserName": "exadmin", "TargetUserSid": f"{sid}-1108", "TargetDomainName": "CORP",
                          "LogonType": "3", "AuthenticationPackageName": "Kerberos", "IpAddress": "10.0.0.30"}),
        # an administrator edits a GPO (review-level: medium) and servicing hard-links a WinSxS component
        (SECURITY, 5136, {"SubjectUserName": "exadmin", "ObjectClass": "groupPolicyContainer",
                          "ObjectDN": f"CN={{31B2F340-016D-11D2-945F-00C04FB984F9}},CN=Policies,CN=System,{dn}",
                          "AttributeLDAPDisplayName": "versionNumber", "AttributeValue": "7",
                          "OperationType": "%%14674"}),
        (SECURITY, 4664, {"SubjectUserSid": "S-1-5-18", "SubjectUserName": "EXCH01$",
                          "FileName": f"{SXS}\\wuaueng.dll", "LinkName": r"C:\Windows\System32\wuaueng.dll"}),
        # Windows Update through BITS
        (BITS, 59, {"name": "Windows Update", "url": "http://au.download.windowsupdate.com/c/msdownload/update/x.cab"}),
        (BITS, 60, {"name": "Windows Update", "url": "http://au.download.windowsupdate.com/c/msdownload/update/x.cab",
                    "hr": "0"}),
        # an administrator's Remote Desktop session (review-level) and Exchange remote PowerShell over Kerberos
        (RCM, 1149, {"Param1": "exadmin", "Param2": "CORP", "Param3": "10.0.0.30"}),
        (RDPCORE, 131, {"ConnType": "TCP", "ClientIP": "10.0.0.30:50512"}),
        (WINRM, 169, {"username": r"CORP\exadmin", "authenticationMechanism": "Kerberos"}),
        # the DCOM permission warning every server logs for a local shell component
        (DCOM, 10016, {"param1": "application-specific", "param2": "Local", "param3": "Activation",
                       "param4": "{D63B10C5-BB46-4990-A94F-E40B9D520160}",
                       "param5": "{9CA88EE3-ACB7-47C8-AFC4-AB702511C276}",
                       "param6": "EXCH01", "param7": "SYSTEM", "param8": "S-1-5-18", "param9": "Unavailable"}),
    ]  # fmt: skip
    return specs


def benign_server_hives() -> dict[str, HiveBuilder]:
    """SYSTEM, SOFTWARE and SAM of the same server: Defender drivers, OpenSSH (its LSA package), a backup agent,
    Sysinternals tools run by administrators, Process Explorer replacing Task Manager, an enabled Guest account
    on a lab image, Exchange's scheduled tasks."""
    t = datetime(2021, 2, 20, 9, 0, tzinfo=UTC)
    services = dict(STOCK_SERVICES)
    services["MpKsl4e1c2a9b"] = (f"\\??\\{DEFUPD}\\{{6B1F3C2E-8D4A-4F0B-9C7E-2A5D1E3F4B6C}}\\MpKslDrv.sys", 1)
    services["sshd"] = (r"C:\Windows\System32\OpenSSH\sshd.exe", 0x10)
    services["AcmeBackupAgent"] = (
        r'"C:\Program Files\Acme Backup\agent.exe" --config "C:\ProgramData\Acme Backup\agent.conf"',
        0x10,
    )
    system = system_hive(
        services=services,
        shimcache=[
            (r"C:\Tools\Sysinternals\procexp64.exe", t),
            (r"C:\Tools\Sysinternals\PsExec64.exe", t),
            (r"C:\Windows\System32\OpenSSH\sshd.exe", t),
        ],
    )
    system.set_value(r"ControlSet001\Control\Lsa", "Authentication Packages", ["msv1_0", "ssh-lsa"])
    software = software_hive()
    ifeo = r"Microsoft\Windows NT\CurrentVersion\Image File Execution Options\taskmgr.exe"
    software.set_value(ifeo, "Debugger", r'"C:\Tools\Sysinternals\procexp64.exe"')
    software.set_value(
        r"Microsoft\Windows\CurrentVersion\Run",
        "VMware User Process",
        r'"C:\Program Files\VMware\VMware Tools\vmtoolsd.exe" -n vmusr',
    )
    task(
        "{3C1F5E7A-9B2D-4F6A-8C0E-1D3B5F7A9C2E}",
        r"\Microsoft\Windows\Exchange\MailboxDatabaseMaintenance",
        r"C:\Program Files\Microsoft\Exchange Server\V15\Bin\ExchangeMaintenance.exe",
        hb=software,
    )
    task(
        "{7A9C2E4B-6D8F-4A1C-9E3B-5F7D9B1C3E5A}",
        r"\Monitoring\QueueReport",
        PSEXE,
        r"-NoProfile -File C:\Scripts\QueueReport.ps1",
        hb=software,
    )
    sam = sam_hive(
        [
            Account(name="Administrator", rid=500),
            Account(name="Guest", rid=501, disabled=False),
            Account(name="DefaultAccount", rid=503),
            Account(name="svc_monitor", rid=1001),
        ]
    )
    return {"SYSTEM": system, "SOFTWARE": software, "SAM": sam}


# ------------------------------------------------------------------------------------------ severity audit
# Routine work of the products named in signatures/SEVERITY.md ("Benign readings"): each block is what one
# product or Windows component really does, and each exercised a rule that called it high before the audit.
REGSET = ("Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon/Operational")
MSMPENG = r"C:\ProgramData\Microsoft\Windows Defender\Platform\4.18.2102.4-0\MsMpEng.exe"
SVCHOST = r"C:\Windows\System32\svchost.exe"
HTTPPROXY = r"C:\Program Files\Microsoft\Exchange Server\V15\FrontEnd\HttpProxy"


def _regset(image: str, key: str, details: str) -> tuple[tuple[str, str], int, dict]:
    return (REGSET, 13, {"EventType": "SetValue", "Image": image, "TargetObject": key, "Details": details})


def _file(image: str, target: str) -> tuple[tuple[str, str], int, dict]:
    return (SYSMON, 11, {"Image": image, "TargetFilename": target})


def _lsass_read(image: str, access: str = "0x1410") -> tuple[tuple[str, str], int, dict]:
    return (
        SYSMON,
        10,
        {
            "SourceImage": image,
            "TargetImage": r"C:\Windows\system32\lsass.exe",
            "GrantedAccess": access,
            "CallTrace": r"C:\Windows\SYSTEM32\ntdll.dll+9d4c4|C:\Windows\System32\KERNELBASE.dll+2c13e",
        },
    )


def _routine_specs() -> list[tuple]:
    specs: list[tuple] = []
    # -- Defender: the platform and Group Policy write protection values; 0 means "not disabled"
    for key in (
        r"HKLM\SOFTWARE\Microsoft\Windows Defender\Real-Time Protection\DisableRealtimeMonitoring",
        r"HKLM\SOFTWARE\Microsoft\Windows Defender\Real-Time Protection\DisableBehaviorMonitoring",
        r"HKLM\SOFTWARE\Microsoft\Windows Defender\Spynet\DisableBlockAtFirstSeen",
    ):
        specs.append(_regset(MSMPENG, key, "DWORD (0x00000000)"))
    specs.append(
        _regset(
            SVCHOST,
            r"HKLM\SOFTWARE\Policies\Microsoft\Windows Defender\Real-Time Protection\DisableRealtimeMonitoring",
            "DWORD (0x00000000)",
        )
    )
    specs.append(
        _regset(MSMPENG, r"HKLM\SOFTWARE\Microsoft\Windows Defender\Features\TamperProtection", "DWORD (0x00000005)")
    )
    # -- backups: Windows Server Backup prunes old system-state backups; a backup agent drops its own snapshot
    # and keeps shadow storage bounded
    wbadmin = r"C:\Windows\System32\wbadmin.exe"
    specs.append(_proc(wbadmin, "wbadmin start systemstatebackup -backupTarget:E: -quiet", SVCHOST))
    specs.append(_proc(wbadmin, "wbadmin delete systemstatebackup -keepVersions:3 -quiet", SVCHOST))
    vss = r"C:\Windows\System32\vssadmin.exe"
    veeam = r"C:\Program Files\Veeam\Endpoint Backup\Veeam.EndPoint.Service.exe"
    specs.append(_proc(vss, "vssadmin delete shadows /shadow={4b1c7a2e-9d3f-4e8a-b6c5-1f2e3d4c5b6a} /quiet", veeam))
    specs.append(_proc(vss, "vssadmin resize shadowstorage /for=D: /on=D: /maxsize=20%", veeam))
    # -- Exchange cumulative update: setup runs UpdateCas.ps1, which copies the OWA pages into the front end
    exsetup = r"C:\Program Files\Microsoft\Exchange Server\V15\Bin\ExSetup.exe"
    specs.append(
        _proc(
            PSEXE,
            f'{PSEXE} -NonInteractive -ExecutionPolicy Unrestricted -File "{EXBIN}\\UpdateCas.ps1"',
            exsetup,
        )
    )
    for page in (r"owa\auth\logon.aspx", r"owa\auth\expiredpassword.aspx", r"ecp\auth\TimeoutLogout.aspx"):
        specs.append(_file(PSEXE, f"{HTTPPROXY}\\{page}"))
    specs.append(_proc(PSEXE, f'{PSEXE} -NonInteractive -File "{EXBIN}\\UpdateConfigFiles.ps1"', exsetup))
    specs.append(_file(PSEXE, f"{HTTPPROXY}\\owa\\web.config"))
    # -- monitoring agents read process data from every process, lsass included
    for agent in (
        r"C:\Program Files\Microsoft Monitoring Agent\Agent\MonitoringHost.exe",
        r"C:\Program Files\Datadog\Datadog Agent\bin\agent\process-agent.exe",
        r"C:\Program Files\SplunkUniversalForwarder\bin\splunkd.exe",
        r"C:\Program Files\Zabbix Agent\zabbix_agentd.exe",
    ):
        specs.append(_lsass_read(agent))
    specs.append(_lsass_read(r"C:\Program Files\NSClient++\nscp.exe", "0x1000"))
    # the same read seen by object-access auditing (4656) when a SACL on lsass is set
    specs.append(
        (
            SECURITY,
            4656,
            {
                "ObjectServer": "Security",
                "ObjectType": "Process",
                "ObjectName": r"\Device\HarddiskVolume2\Windows\System32\lsass.exe",
                "AccessMask": "0x1410",
                "ProcessName": r"C:\Program Files\Microsoft Monitoring Agent\Agent\MonitoringHost.exe",
            },
        )
    )
    # -- a role install through DISM: DISM runs its host from a per-run folder in Temp
    specs.append(
        _proc(
            r"C:\Windows\Temp\8C2D7E41-3B5A-4F9C-A1D2-6E7F8A9B0C1D\DismHost.exe",
            r"C:\Windows\Temp\8C2D7E41-3B5A-4F9C-A1D2-6E7F8A9B0C1D\DismHost.exe {5A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D}",
            r"C:\Windows\System32\Dism.exe",
        )
    )
    # -- a deployment agent: an installer grants its service account local rights; a script run as SYSTEM
    # unpacks a helper library into the SYSTEM profile's temp folder
    ccm = r"C:\Windows\CCM\CcmExec.exe"
    specs.append(_proc(r"C:\Windows\System32\net.exe", r"net localgroup administrators CORP\svc_veeam /add", ccm))
    specs.append(
        _proc(
            PSEXE,
            f"{PSEXE} -NoProfile -ExecutionPolicy Bypass -File C:\\Windows\\CCM\\SystemTemp\\Install-Agent.ps1",
            ccm,
        )
    )
    specs.append(_file(PSEXE, r"C:\Windows\System32\config\systemprofile\AppData\Local\Temp\pkg1f3a\AgentHelper.dll"))
    # -- Exchange administration: forwarding for a leaver's mailbox, asked for by the manager
    specs.append(
        (
            EXMGMT,
            1,
            [
                "Set-Mailbox",
                '-Identity "j.doe" -ForwardingSmtpAddress "smtp:m.smith@corp.example" '
                '-DeliverToMailboxAndForward "True"',
                "corp.example/Users/exadmin",
                "S-1-5-21-1-2-3-1105",
                "6120 w3wp#MSExchangePowerShellAppPool",
            ],
        )
    )
    # -- certificate autoenrolment and an administrator checking a chain
    certutil = r"C:\Windows\System32\certutil.exe"
    specs.append(_proc(certutil, "certutil -pulse", r"C:\Windows\System32\taskhostw.exe"))
    specs.append(_proc(certutil, r"certutil -verify -urlfetch C:\Certs\mail.cer", PSEXE, user=r"CORP\exadmin"))
    # -- SQL Server Agent job step, Group Policy refresh, WSUS maintenance, an RDP admin logon
    specs.append(
        _proc(
            r"C:\Program Files\Microsoft SQL Server\Client SDK\ODBC\170\Tools\Binn\SQLCMD.EXE",
            "SQLCMD.EXE -E -S . -Q \"EXEC dbo.IndexOptimize @Databases = 'USER_DATABASES'\"",
            r"C:\Program Files\Microsoft SQL Server\MSSQL15.MSSQLSERVER\MSSQL\Binn\SQLAGENT.EXE",
            user=r"NT SERVICE\SQLSERVERAGENT",
        )
    )
    specs.append(_proc(r"C:\Windows\System32\gpupdate.exe", "gpupdate /target:computer", SVCHOST))
    specs.append(
        _proc(
            r"C:\Program Files\Update Services\Tools\WsusUtil.exe",
            "WsusUtil.exe checkhealth",
            r"C:\Windows\System32\taskhostw.exe",
        )
    )
    specs.append(
        (
            SECURITY,
            4624,
            {
                "TargetUserName": "exadmin",
                "TargetDomainName": "CORP",
                "LogonType": "10",
                "IpAddress": "10.0.0.20",
                "AuthenticationPackageName": "Negotiate",
                "ProcessName": r"C:\Windows\System32\svchost.exe",
            },
        )
    )
    # -- hardening policy turns telemetry sessions off; an installer resumes after a reboot through RunOnce
    specs.append(
        _regset(
            SVCHOST,
            r"HKLM\System\CurrentControlSet\Control\WMI\Autologger\Diagtrack-Listener\Start",
            "DWORD (0x00000000)",
        )
    )
    cache = r"C:\ProgramData\Package Cache\{3C1F5E7A-9B2D-4F6A-8C0E-1D3B5F7A9C2E}\VC_redist.x64.exe"
    specs.append(
        _regset(
            cache,
            r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\RunOnce\{3C1F5E7A-9B2D-4F6A-8C0E-1D3B5F7A9C2E}",
            f'"{cache}" /burn.runonce',
        )
    )
    # -- an administrator downloads an agent installer; a SQL diagnostic trace is stopped
    specs.append(
        _proc(
            PSEXE,
            f"{PSEXE} -c \"(New-Object Net.WebClient).DownloadFile('https://download.example.com/agent.msi', "
            "'C:\\Temp\\agent.msi')\"",
            r"C:\Windows\explorer.exe",
            user=r"CORP\exadmin",
        )
    )
    specs.append(_proc(r"C:\Windows\System32\logman.exe", 'logman stop "SQLDiagTrace" -ets', PSEXE))
    # -- a management tool's run-as-user helper declares the token APIs it needs
    specs.append(
        (
            PS,
            4104,
            {
                "MessageNumber": "1",
                "MessageTotal": "1",
                "ScriptBlockText": "$src = @'\nusing System; using System.Runtime.InteropServices;\n"
                "public static class SessionLauncher {\n"
                '  [DllImport("advapi32.dll", SetLastError = true)]\n'
                "  public static extern bool DuplicateTokenEx(IntPtr existing, uint access, IntPtr attrs, int level,"
                " int type, out IntPtr dup);\n}\n'@\nAdd-Type -TypeDefinition $src",
                "Path": r"C:\Program Files\WindowsPowerShell\Modules\SessionLauncher\1.2.0\SessionLauncher.psm1",
            },
        )
    )
    # -- a second Exchange server joins: setup adds it to the server groups; the help desk gets recipient rights
    for group, member in (
        ("Exchange Servers", "CN=EXCH02,OU=Servers,DC=corp,DC=example"),
        ("Managed Availability Servers", "CN=EXCH02,OU=Servers,DC=corp,DC=example"),
        ("Recipient Management", "CN=Help Desk Staff,OU=Groups,DC=corp,DC=example"),
    ):
        specs.append(
            (
                SECURITY,
                4756,
                {
                    "MemberName": member,
                    "SubjectUserName": "exadmin",
                    "TargetUserName": group,
                    "TargetDomainName": "CORP",
                },
            )
        )
    # -- a storage driver installed from its INF, an installer registering a shell extension from its temp folder,
    # and an administrator setting Process Explorer to replace Task Manager
    rundll = r"C:\Windows\System32\rundll32.exe"
    specs.append(
        _proc(
            rundll,
            r"rundll32.exe setupapi.dll,InstallHinfSection DefaultInstall 132 C:\Program Files\Vendor\drv\vdisk.inf",
            r"C:\Windows\System32\msiexec.exe",
        )
    )
    specs.append(
        _proc(
            r"C:\Windows\System32\regsvr32.exe",
            r'regsvr32.exe /s "C:\Windows\Temp\is-4KQ2M.tmp\vendorshell.dll"',
            r"C:\Windows\Temp\is-4KQ2M.tmp\setup.tmp",
        )
    )
    specs.append(
        _regset(
            r"C:\Tools\Sysinternals\procexp64.exe",
            r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Image File Execution Options\taskmgr.exe\Debugger",
            r'"C:\Tools\Sysinternals\procexp64.exe"',
        )
    )
    # -- Windows' own null session (NT AUTHORITY), seen on every domain member
    specs.append(
        (
            SECURITY,
            4624,
            {
                "TargetUserName": "ANONYMOUS LOGON",
                "TargetDomainName": "NT AUTHORITY",
                "LogonType": "3",
                "IpAddress": "10.0.0.5",
                "AuthenticationPackageName": "NTLM",
            },
        )
    )
    return specs


def benign_server_routines(start: datetime = datetime(2021, 3, 2, 6, 0, tzinfo=UTC)) -> list[Event]:
    """Routine events of the severity audit (signatures/SEVERITY.md): Defender and Group Policy writing
    protection values, backup retention (wbadmin, a backup agent's own snapshot), an Exchange cumulative update
    (UpdateCas.ps1 copying OWA pages), monitoring agents reading process data from lsass, a deployment agent
    granting a service account local rights, mailbox forwarding set by an administrator, certificate
    autoenrolment, SQL Server Agent, Group Policy, WSUS and an RDP admin logon. None is an attack: no rule may
    call any of them high or critical."""
    events: list[Event] = []
    for i, (src, eid, data) in enumerate(_routine_specs(), start=1):
        provider, channel = src
        events.append(
            Event(
                event_id=eid,
                provider=provider,
                channel=channel,
                record_id=i,
                event_source_name=provider if channel in ("System", "Application") else None,
                time_created=start + timedelta(seconds=30 * i),
                data=data,
            )
        )
    return events


def benign_routine_software_hive() -> HiveBuilder:
    """A SOFTWARE hive with the tasks management agents register: a hidden, policy-bypassing PowerShell
    compliance check and a cmd /c log cleanup (medium for review, never high)."""
    software = software_hive()
    task(
        "{5E7A9C1B-3D5F-4A7C-9E1B-3D5F7A9C1B3D}",
        r"\Microsoft\Intune\ComplianceCheck",
        PSEXE,
        r'-NoProfile -WindowStyle Hidden -ExecutionPolicy Bypass -File "C:\Program Files\Microsoft Intune '
        r'Management Extension\check.ps1"',
        hb=software,
    )
    task(
        "{9C1B3D5F-7A9C-4B3D-8F7A-9C1B3D5F7A9C}",
        r"\Acme Backup\LogCleanup",
        r"C:\Windows\System32\cmd.exe",
        r'/c forfiles /p "C:\Program Files\Acme Backup\logs" /d -30 /c "cmd /c del @path"',
        hb=software,
    )
    return software
