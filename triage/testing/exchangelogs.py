"""Builders of realistic Exchange and IIS logs holding a complete ProxyLogon intrusion, or none.

:func:`proxylogon_story` returns the files (volume-relative path -> bytes, ready for
``VolumeSpec(extra_files=...)``) of one Exchange 2016 server: HttpProxy logs in ten protocol
folders with the full modern ``#Fields`` list, ECP Server logs, OAB generator logs, IIS front-end
(W3SVC1) and back-end (W3SVC2) logs, and ``Application.evtx`` / ``MSExchange Management.evtx``.
The intrusion follows the sequence public write-ups describe (AA21-062A, helsecert's case notes):

* 06:40 a crawler-agent POST to an OWA theme resource; 06:45 a UM worker InvalidCastException;
* 06:49 SSRF through ``/ecp/y.js`` with the ``X-BEResource`` cookie: autodiscover, ``/mapi/emsmdb``,
  ``/ecp/proxyLogon.ecp`` (241), DDI ``GetObject``/``SetObject`` on ``OABVirtualDirectory`` with an
  ``msExchEcpCanary``, ``Set-OabVirtualDirectory -ExternalUrl`` set to a China-Chopper-style script
  (ECP log), ``ResetOABVirtualDirectory`` (200), then clean-up (``ExternalUrl $null``,
  ``Remove-``/``New-OABVirtualDirectory``);
* 06:50 probes for and use of the written page under ``aspnet_client`` (antSword, 200);
  06:52 an OAB download failure writing into ``inetpub\\wwwroot\\aspnet_client``;
* 06:59 a second session (proxyLogon, GetObject, SetObject, a failed and a successful reset);
* 07:15 another client's SSRF to EWS through ``/owa/auth/x.js``; 08:01 a scanner's autodiscover and
  localhost probes (both excluded by Test-ProxyLogon);
* 2021-03-05 a second actor using the shells (``RedirSuiteServerProxy.aspx``, a ``proxy&port=``
  tunnel request).

Benign traffic (OWA, EWS, EAS, MAPI, OAB, autodiscover, PowerShell, admin ECP, health probes whose
``AnchorMailbox`` holds ``ServerInfo~`` but which Test-ProxyLogon excludes) runs from 2020-12-28, so
some folders reach back before 2021-01-01 and others do not; ``RpcHttp`` has no logs at all.
``attack=False`` gives the same server with benign traffic only. ``hostile=True`` damages the files
the way real collections do (BOM, latin-1 bytes, LF-only lines, repeated headers, a file whose
header is a plain CSV line, a file with no header, truncated, garbage and over-long lines) without
touching any planted row. Every value is made up; the script in the OAB URL is inert (it names a
request field no one sends). :data:`PLANTED` lists what a correct analysis must find.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from triage.testing.evtx import Event, evtx_bytes
from triage.testing.volume import DEFAULT_INSTALL, HTTPPROXY_FIELDS

FIELDS = tuple(HTTPPROXY_FIELDS.split(","))
IIS_FIELDS = [
    "date",
    "time",
    "s-ip",
    "cs-method",
    "cs-uri-stem",
    "cs-uri-query",
    "s-port",
    "cs-username",
    "c-ip",
    "cs(User-Agent)",
    "cs(Referer)",
    "sc-status",
    "sc-substatus",
    "sc-win32-status",
    "time-taken",
]
ECP_FIELDS = ("TimeStamp", "ServerName", "EventId", "EventData")

SERVER = "EXCH01"
FQDN = "EXCH01.corp.example"
PUBLIC = "mail.corp.example"
SERVER_IP = "10.0.0.5"
DOMAIN = "CORP"
ATTACKER_IP = "157.230.221.198"  # in the AA21-062A list
SECOND_CLIENT_IP = "45.77.204.11"  # another SSRF client, not in the list
SCANNER_IP = "192.241.220.9"  # probes that Test-ProxyLogon excludes
SHELL_USER_IP = "139.162.202.236"  # uses the shells two days later
CANARY_1 = "M1xSq0nDuwEy7Tb2kQ4GcZ8a.Ux1"
CANARY_2 = "8BeqP3mWYd1L8vH5fR2sN6.Jk4"
SHELL_NAME = "Dk2jQ8ab.aspx"
SHELL_URL = f"/aspnet_client/system_web/{SHELL_NAME}"
SHELL_PATH = rf"C:\inetpub\wwwroot\aspnet_client\system_web\{SHELL_NAME}"
OAB_ID_1 = "982d48c8-8bfa-4b6b-b431-53fd7ea4e9b3"
OAB_ID_2 = "ecd24641-d37f-4974-89f5-2e85ef7fb8d4"
SCRIPT_URL = (
    'http://f/<script language="JScript" runat="server">function Page_Load()'
    '{eval(Request["triage_demo_inert"],"unsafe");}</script>'
)
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/88.0.4324.182 Safari/537.36"  # noqa: E501
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.13801; Pro)"
DUCKDUCKBOT = "DuckDuckBot/1.0; (+http://duckduckgo.com/duckduckbot.html)"
NMAP = "Mozilla/5.0 (compatible; Nmap Scripting Engine)"
OAB_FAILED = "Download failed and temporary file {} needs to be removed."


def rid(tag: str, n: int) -> str:
    """A deterministic RequestId: ``a0000003-...`` for the attacker's third request."""
    prefix = {"a": "a", "d": "d", "s": "5", "b": "b", "n": "0"}[tag]
    return f"{prefix}{n:07d}-5c1e-4b7a-9d3f-0a1b2c3d4e5f"


@dataclass(frozen=True)
class Planted:
    """What the intrusion left that a correct Test-ProxyLogon run reports (the benign variant: nothing)."""

    cve26855: tuple[tuple[str, str, str, str], ...]  # (RequestId, ClientIpAddress, DateTime, folder)
    reset: tuple[tuple[str, str, str], ...]  # (RequestId, ClientIpAddress, DateTime)
    set_vdir_file: str  # path relative to the install root (the line is LogSet.set_vdir_line)
    set_vdir_first_ts: str
    set_vdir_count: int
    cve26858: tuple[tuple[str, str], ...]  # (download path as logged, time)
    cve26857: tuple[str, ...]  # TimeCreated


PLANTED = Planted(
    cve26855=(
        (rid("a", 2), ATTACKER_IP, "2021-03-03T06:49:43.699Z", "Ecp"),
        (rid("a", 3), ATTACKER_IP, "2021-03-03T06:49:46.210Z", "Ecp"),
        (rid("a", 4), ATTACKER_IP, "2021-03-03T06:49:51.543Z", "Ecp"),
        (rid("a", 5), ATTACKER_IP, "2021-03-03T06:49:53.801Z", "Ecp"),
        (rid("a", 6), ATTACKER_IP, "2021-03-03T06:49:56.120Z", "Ecp"),
        (rid("a", 7), ATTACKER_IP, "2021-03-03T06:50:00.760Z", "Ecp"),
        (rid("a", 16), ATTACKER_IP, "2021-03-03T06:59:13.030Z", "Ecp"),
        (rid("a", 17), ATTACKER_IP, "2021-03-03T06:59:14.588Z", "Ecp"),
        (rid("a", 18), ATTACKER_IP, "2021-03-03T06:59:18.042Z", "Ecp"),
        (rid("a", 19), ATTACKER_IP, "2021-03-03T06:59:19.101Z", "Ecp"),
        (rid("a", 20), ATTACKER_IP, "2021-03-03T06:59:20.359Z", "Ecp"),
        (rid("a", 21), ATTACKER_IP, "2021-03-03T06:59:23.288Z", "Ecp"),
        (rid("d", 1), SECOND_CLIENT_IP, "2021-03-03T07:15:20.005Z", "Owa"),
    ),
    reset=(
        (rid("a", 6), ATTACKER_IP, "2021-03-03T06:49:56.120Z"),
        (rid("a", 20), ATTACKER_IP, "2021-03-03T06:59:20.359Z"),
    ),
    set_vdir_file="Logging/ECP/Server/ECPServer20210303-1.LOG",
    set_vdir_first_ts="2021-03-03T06:49:53.772Z",
    set_vdir_count=2,
    cve26858=((f"'{SHELL_PATH}'", "2021-03-03T06:52:30.412Z"),),
    cve26857=("2021-03-03T06:45:12.000Z",),
)


# -- writers --------------------------------------------------------------------------------------
def _csv_line(values: Iterable[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(list(values))
    return buf.getvalue()


def httpproxy_file(rows: list[dict[str, str]], date: str, fields: tuple[str, ...] = FIELDS) -> str:
    """An HttpProxy log: the five header lines and one CSV line per row (quoted where needed)."""
    lines = [
        "#Software: Microsoft Exchange Server",
        "#Version: 15.01.2176.002",
        "#Log-type: HttpProxy Logs",
        f"#Date: {date}",
        "#Fields: " + ",".join(fields),
    ]
    lines += [_csv_line(r.get(f, "") for f in fields) for r in rows]
    return "\r\n".join(lines) + "\r\n"


def ecp_file(rows: list[tuple[str, str]], date: str) -> str:
    """An ECP Server log from ``(TimeStamp, EventData)`` rows."""
    lines = [
        "#Software: Microsoft Exchange Server",
        "#Version: 15.0.0.0",
        "#Log-type: ECP Server Log",
        f"#Date: {date}",
        "#Fields: " + ",".join(ECP_FIELDS),
    ]
    lines += [_csv_line((ts, SERVER, "ECP.Request", data)) for ts, data in rows]
    return "\r\n".join(lines) + "\r\n"


def oab_file(rows: list[tuple[str, str, str]], date: str) -> str:
    """An OAB generator log from ``(time, level, message)`` rows.

    The field layout is illustrative; the checks read raw lines, as Test-ProxyLogon does, and take a
    line's time from its first field.
    """
    lines = [
        "#Software: Microsoft Exchange Server",
        "#Version: 15.01.2176.002",
        "#Log-type: OAB Generator Log",
        f"#Date: {date}",
        "#Fields: DateTime,ThreadId,Level,Component,Message",
    ]
    lines += [_csv_line((ts, "17", level, "OABGenerator", msg)) for ts, level, msg in rows]
    return "\r\n".join(lines) + "\r\n"


def iis_header(date: str, fields: Iterable[str] = IIS_FIELDS) -> list[str]:
    """The four header lines IIS writes at the top of a log and after each restart."""
    return [
        "#Software: Microsoft Internet Information Services 10.0",
        "#Version: 1.0",
        f"#Date: {date}",
        "#Fields: " + " ".join(fields),
    ]


def iis_line(r: dict[str, str], fields: Iterable[str] = IIS_FIELDS) -> str:
    """One W3C line: spaces in values written as ``+`` (as IIS does), empty values as ``-``."""
    return " ".join((r.get(f) or "-").replace(" ", "+") for f in fields)


def ecp_data(
    cmd: str, url: str, actid: str, *, sid: str = "S-1-5-21-1111-2222-3333-500", time: int = 12, ex: str = ""
) -> str:
    """ECP EventData: ``S:`` items; a value with a quote or semicolon is single-quoted, quotes doubled."""

    def item(key: str, value: str) -> str:
        if "'" in value or ";" in value:
            return "'S:" + key + "=" + value.replace("'", "''") + "'"
        return f"S:{key}={value}"

    parts = [
        item("TIME", str(time)),
        item("SID", sid),
        item("CMD", cmd),
        item("REQID", ""),
        item("URL", url),
        item("REFERRER", ""),
        item("EX", ex),
        item("ACTID", actid),
        item("RS", "0"),
        item("BLD", "15.1.2176.2"),
    ]
    return ";".join(parts)


def _hp(ts: str, request_id: str, **kw: str) -> dict[str, str]:
    row = {
        "DateTime": ts,
        "RequestId": request_id,
        "MajorVersion": "15",
        "MinorVersion": "1",
        "BuildVersion": "2176",
        "RevisionVersion": "2",
        "ClientRequestId": "",
        "UrlHost": PUBLIC,
        "ServerHostName": SERVER,
        "TargetServer": FQDN,
        "TargetServerVersion": "Version 15.1 (Build 2176.2)",
        "ProxyAction": "Proxy",
        "HttpStatus": "200",
        "BackEndStatus": "200",
        "Method": "GET",
        "IsAuthenticated": "True",
        "AuthenticationType": "Negotiate",
        "RoutingType": "DatabaseGuid",
        "RequestBytes": "512",
        "ResponseBytes": "2048",
        "GenericInfo": "OnBeginRequest=0;OnAuthenticateRequest=1;OnPostAuthorizeRequest=1;ProxyState-Run=4;",
        "TotalRequestTime": "46",
    }
    row.update(kw)
    if row.get("HttpStatus") != "200" and "BackEndStatus" not in kw:
        row["BackEndStatus"] = row["HttpStatus"]
    return row


def _ssrf(
    ts: str, request_id: str, target: str, ua: str, status: str = "200", stem: str = "/ecp/y.js"
) -> dict[str, str]:
    return _hp(
        ts,
        request_id,
        Protocol="Ecp",
        UrlStem=stem,
        Method="POST",
        IsAuthenticated="False",
        AuthenticationType="",
        AuthenticatedUser="",
        RoutingType="ServerInfo",
        RoutingHint="X-BEResource-Cookie",
        AnchorMailbox=f"ServerInfo~a]@{FQDN}:444{target}",
        UserAgent=ua,
        ClientIpAddress=ATTACKER_IP,
        HttpStatus=status,
        TargetServer=f"{FQDN}:444",
    )


# -- benign traffic -------------------------------------------------------------------------------
USERS = ("alice", "bob", "carol", "dave", "erin")


def _benign_rows(
    protocol: str, start: datetime, n: int, rng: random.Random, seq: list[int], probe_every: int = 7
) -> list[dict[str, str]]:
    rows = []
    for i in range(n):
        t = start + timedelta(seconds=37 * i + rng.randint(0, 30), milliseconds=rng.randint(0, 999))
        ts = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
        seq[0] += 1
        user = rng.choice(USERS)
        ip = f"10.0.{rng.randint(1, 3)}.{rng.randint(20, 200)}"
        upn = f"{user}@corp.example"
        base = {"ClientIpAddress": ip, "AuthenticatedUser": upn, "AnchorMailbox": f"SMTP:{upn}", "Protocol": protocol}
        if protocol == "Owa":
            kw = dict(Method="POST", UrlStem="/owa/service.svc", UrlQuery="?action=GetItem&app=Mail", UserAgent=CHROME)
        elif protocol == "Ecp":
            kw = dict(
                Method="POST",
                UrlStem="/ecp/DDI/DDIService.svc/GetList",
                UrlQuery="?schema=Mailboxes&msExchEcpCanary=adm1nCanary000",
                UserAgent=CHROME,
                AuthenticatedUser="administrator@corp.example",
                AnchorMailbox="Sid~S-1-5-21-1111-2222-3333-500",
            )
        elif protocol == "Ews":
            kw = dict(Method="POST", UrlStem="/EWS/Exchange.asmx", UserAgent=OUTLOOK)
        elif protocol == "Eas":
            kw = dict(
                Method="POST",
                UrlStem="/Microsoft-Server-ActiveSync/default.eas",
                UrlQuery=f"?Cmd=Ping&User={user}&DeviceId=Appl{i:06d}&DeviceType=iPhone",
                UserAgent="Apple-iPhone12C1/1805.228",
            )
        elif protocol == "Mapi":
            kw = dict(
                Method="POST", UrlStem="/mapi/emsmdb/", UrlQuery=f"?MailboxId={user}@corp.example", UserAgent=OUTLOOK
            )
        elif protocol == "Oab":
            kw = dict(UrlStem="/OAB/6c7d8e9f-0a1b-4c2d-8e3f-4a5b6c7d8e9f/oab.xml", UserAgent=OUTLOOK)
        elif protocol == "OwaCalendar":
            kw = dict(UrlStem=f"/owa/calendar/{user}@corp.example/Calendar/calendar.html", UserAgent=CHROME)
        elif protocol == "PowerShell":
            kw = dict(
                Method="POST",
                UrlStem="/powershell",
                UrlQuery="?serializationLevel=Full;ExchClientVer=15.1.2176.2;clientApplication=ManagementShell",
                UserAgent="Microsoft WinRM Client",
                AuthenticationType="Kerberos",
                AuthenticatedUser="administrator@corp.example",
                AnchorMailbox="UserPrincipalName~administrator@corp.example",
            )
        else:  # Autodiscover
            kw = dict(Method="POST", UrlStem="/Autodiscover/Autodiscover.xml", UserAgent=OUTLOOK)
        if probe_every and i % probe_every == 3:  # a health probe: ServerInfo~ the exclusions drop
            kw.update(
                ClientIpAddress="127.0.0.1",
                UserAgent="AMProbe/Local/ClientAccess",
                AuthenticatedUser="",
                AnchorMailbox=f"ServerInfo~localhost:444/{protocol.lower()}/"
                if i % 2
                else f"ServerInfo~{FQDN}/autodiscover/autodiscover.xml",
            )
        if i % 11 == 5:  # an error text with commas, written quoted
            kw["GenericErrors"] = "Proxy failed, backend slow, retried"
            kw["HttpStatus"] = "500"
        rows.append(_hp(ts, rid("n", seq[0]), **base | kw))
    return rows


# -- the story ------------------------------------------------------------------------------------
def _attack_ecp_rows() -> list[dict[str, str]]:
    ua_py = "python-requests/2.25.1"
    c1, c2 = CANARY_1, CANARY_2
    ddi = "/ecp/DDI/DDIService.svc"
    rows = [
        _ssrf(
            "2021-03-03T06:49:42.162Z",
            rid("a", 1),
            "/autodiscover/autodiscover.xml?#",
            "ExchangeServicesClient/0.0.0.0",
        ),
        _ssrf("2021-03-03T06:49:43.699Z", rid("a", 2), "/mapi/emsmdb/?#", ua_py),
        _ssrf("2021-03-03T06:49:46.210Z", rid("a", 3), "/ecp/proxyLogon.ecp?#", ua_py, "241"),
        _ssrf(
            "2021-03-03T06:49:51.543Z",
            rid("a", 4),
            f"{ddi}/GetObject?msExchEcpCanary={c1}&schema=OABVirtualDirectory#",
            ua_py,
        ),
        _ssrf(
            "2021-03-03T06:49:53.801Z",
            rid("a", 5),
            f"{ddi}/SetObject?msExchEcpCanary={c1}&schema=OABVirtualDirectory#",
            ua_py,
        ),
        _ssrf(
            "2021-03-03T06:49:56.120Z",
            rid("a", 6),
            f"{ddi}/SetObject?msExchEcpCanary={c1}&schema=ResetOABVirtualDirectory#",
            ua_py,
        ),
        _ssrf(
            "2021-03-03T06:50:00.760Z",
            rid("a", 7),
            f"{ddi}/SetObject?msExchEcpCanary={c1}&schema=OABVirtualDirectory#",
            ua_py,
        ),
        _ssrf("2021-03-03T06:59:13.030Z", rid("a", 16), "/ecp/proxyLogon.ecp?#", ua_py, "241"),
        _ssrf(
            "2021-03-03T06:59:14.588Z",
            rid("a", 17),
            f"{ddi}/GetObject?msExchEcpCanary={c2}&schema=OABVirtualDirectory#",
            ua_py,
        ),
        _ssrf(
            "2021-03-03T06:59:18.042Z",
            rid("a", 18),
            f"{ddi}/SetObject?msExchEcpCanary={c2}&schema=OABVirtualDirectory#",
            ua_py,
        ),
        _ssrf(
            "2021-03-03T06:59:19.101Z",
            rid("a", 19),
            f"{ddi}/SetObject?msExchEcpCanary={c2}&schema=ResetOABVirtualDirectory#",
            ua_py,
            "500",
        ),
        _ssrf(
            "2021-03-03T06:59:20.359Z",
            rid("a", 20),
            f"{ddi}/SetObject?msExchEcpCanary={c2}&schema=ResetOABVirtualDirectory#",
            ua_py,
        ),
        _ssrf(
            "2021-03-03T06:59:23.288Z",
            rid("a", 21),
            f"{ddi}/SetObject?msExchEcpCanary={c2}&schema=OABVirtualDirectory#",
            ua_py,
        ),
        # the scanner: an autodiscover-only probe and a localhost probe, both excluded by Test-ProxyLogon
        _ssrf(
            "2021-03-03T08:01:11.500Z",
            rid("s", 1),
            "/autodiscover/autodiscover.xml?#",
            "Mozilla/5.0 zgrab/0.x",
            stem="/ecp/x.js",
        )
        | {"ClientIpAddress": SCANNER_IP},
        _hp(
            "2021-03-03T08:01:12.250Z",
            rid("s", 2),
            Protocol="Ecp",
            UrlStem="/ecp/x.js",
            Method="GET",
            IsAuthenticated="False",
            AuthenticationType="",
            RoutingHint="X-BEResource-Cookie",
            AnchorMailbox="ServerInfo~localhost:444/ecp/DDI/DDIService.svc/GetList#",
            UserAgent="Mozilla/5.0 zgrab/0.x",
            ClientIpAddress=SCANNER_IP,
            HttpStatus="500",
        ),
    ]
    return rows


def _ecp_server_rows(attack: bool) -> list[tuple[str, str]]:
    adm = "S-1-5-21-1111-2222-3333-500"
    ddi = "/ecp/DDI/DDIService.svc"
    admin_canary = "msExchEcpCanary=adm1nCanary000"
    owa_vd = f"{SERVER}\\owa (Default Web Site)"
    table = [
        ("2021-03-03T05:10:01.100Z", "Get-Mailbox.ResultSize=500", f"{ddi}/GetList?schema=Mailboxes&{admin_canary}",
         rid("n", 9001)),
        ("2021-03-03T05:12:44.020Z", f"Set-OwaVirtualDirectory.ExternalUrl='https://{PUBLIC}/owa'.Identity='{owa_vd}'",
         f"{ddi}/SetObject?schema=OWAVirtualDirectory&{admin_canary}", rid("n", 9002)),
        ("2021-03-03T09:30:00.000Z", f"Get-ExchangeServer.Identity='{SERVER}'",
         f"{ddi}/GetObject?schema=ExchangeServer&{admin_canary}", rid("n", 9003)),
    ]  # fmt: skip
    if attack:
        s1 = f"{ddi}/SetObject?msExchEcpCanary={CANARY_1}&schema=OABVirtualDirectory"
        s2 = f"{ddi}/SetObject?msExchEcpCanary={CANARY_2}&schema=OABVirtualDirectory"
        g1 = f"{ddi}/GetObject?msExchEcpCanary={CANARY_1}&schema=OABVirtualDirectory"
        g2 = f"{ddi}/GetObject?msExchEcpCanary={CANARY_2}&schema=OABVirtualDirectory"
        vd = f"{SERVER}\\OAB (Default Web Site)"
        get = "Get-OabVirtualDirectory.ADPropertiesOnly=$true.Identity=$null"
        oab_dir = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\OAB"
        new_vd = (
            f"New-OABVirtualDirectory.WebSiteName='Default Web Site'.Server='{SERVER}'.Role='ClientAccess'."
            f"InternalURL='https://{FQDN}/OAB'.Path='{oab_dir}'"
        )
        table += [
            ("2021-03-03T06:49:51.389Z", get, g1, rid("a", 4)),
            ("2021-03-03T06:49:53.772Z", f"Set-OabVirtualDirectory.ExternalUrl='{SCRIPT_URL}'.Identity='{OAB_ID_1}'",
             s1, rid("a", 5)),
            ("2021-03-03T06:50:00.717Z", f"Set-OabVirtualDirectory.ExternalUrl=$null.Identity='{OAB_ID_1}'", s1,
             rid("a", 7)),
            ("2021-03-03T06:50:00.934Z", f"Remove-OABVirtualDirectory.Force=$true.Identity='{vd}'", s1, rid("a", 8)),
            ("2021-03-03T06:50:08.396Z", new_vd, s1, rid("a", 9)),
            ("2021-03-03T06:59:14.518Z", get, g2, rid("a", 17)),
            ("2021-03-03T06:59:17.960Z", f"Set-OabVirtualDirectory.ExternalUrl='{SCRIPT_URL}'.Identity='{OAB_ID_2}'",
             s2, rid("a", 18)),
            ("2021-03-03T06:59:23.212Z", f"Set-OabVirtualDirectory.ExternalUrl=$null.Identity='{OAB_ID_2}'", s2,
             rid("a", 21)),
        ]  # fmt: skip
    rows = [(ts, ecp_data(cmd, url, actid, sid=adm)) for ts, cmd, url, actid in table]
    rows.sort()
    return rows


def _iis_w3svc1(attack: bool, rng: random.Random) -> list[str]:
    """Front-end IIS lines of 2021-03-03: the attacker's requests (cafeReqId = HttpProxy RequestId)."""

    def q(request_id: str, extra: str = "") -> str:
        return f"{extra}&CorrelationID=<empty>;&cafeReqId={request_id};"

    base = {"s-ip": SERVER_IP, "s-port": "443", "sc-substatus": "0", "sc-win32-status": "0", "time-taken": "31"}
    lines: list[tuple[str, dict[str, str]]] = []
    for i in range(40):
        t = datetime(2021, 3, 3, 5, 0, tzinfo=UTC) + timedelta(seconds=181 * i + rng.randint(0, 60))
        user = rng.choice(USERS)
        lines.append(
            (
                t.strftime("%Y-%m-%d %H:%M:%S"),
                {
                    "cs-method": "POST" if i % 3 else "GET",
                    "cs-uri-stem": "/owa/service.svc" if i % 3 else "/owa/auth/logon.aspx",
                    "cs-uri-query": q(rid("n", 5000 + i), "action=GetItem") if i % 3 else "replaceCurrent=1",
                    "cs-username": f"{DOMAIN}\\{user}" if i % 3 else "",
                    "c-ip": f"10.0.{rng.randint(1, 3)}.{rng.randint(20, 200)}",
                    "cs(User-Agent)": CHROME,
                    "sc-status": "200",
                },
            )
        )
    if attack:
        a = ATTACKER_IP
        py = "python-requests/2.25.1"
        events = [
            ("2021-03-03 06:40:03", "POST", "/owa/auth/Current/themes/resources/logon.css", "", DUCKDUCKBOT, "200", a),
            ("2021-03-03 06:49:42", "POST", "/ecp/y.js", q(rid("a", 1)), "ExchangeServicesClient/0.0.0.0", "200", a),
            ("2021-03-03 06:49:43", "POST", "/ecp/y.js", q(rid("a", 2)), py, "200", a),
            ("2021-03-03 06:49:46", "POST", "/ecp/y.js", q(rid("a", 3)), py, "241", a),
            ("2021-03-03 06:49:51", "POST", "/ecp/y.js", q(rid("a", 4)), py, "200", a),
            ("2021-03-03 06:49:53", "POST", "/ecp/y.js", q(rid("a", 5)), py, "200", a),
            ("2021-03-03 06:49:56", "POST", "/ecp/y.js", q(rid("a", 6)), py, "200", a),
            ("2021-03-03 06:50:00", "POST", "/ecp/y.js", q(rid("a", 7)), py, "200", a),
            ("2021-03-03 06:50:30", "GET", "/aspnet_client/discover.aspx", "", py, "404", a),
            ("2021-03-03 06:51:02", "POST", SHELL_URL, "", "antSword/v2.1", "200", a),
            ("2021-03-03 06:59:13", "POST", "/ecp/y.js", q(rid("a", 16)), py, "241", a),
            ("2021-03-03 06:59:14", "POST", "/ecp/y.js", q(rid("a", 17)), py, "200", a),
            ("2021-03-03 06:59:18", "POST", "/ecp/y.js", q(rid("a", 18)), py, "200", a),
            ("2021-03-03 06:59:19", "POST", "/ecp/y.js", q(rid("a", 19)), py, "500", a),
            ("2021-03-03 06:59:20", "POST", "/ecp/y.js", q(rid("a", 20)), py, "200", a),
            ("2021-03-03 06:59:23", "POST", "/ecp/y.js", q(rid("a", 21)), py, "200", a),
            ("2021-03-03 07:15:20", "GET", "/owa/auth/x.js", q(rid("d", 1)), NMAP, "500", SECOND_CLIENT_IP),
            ("2021-03-03 08:01:11", "POST", "/ecp/x.js", q(rid("s", 1)), "Mozilla/5.0 zgrab/0.x", "200", SCANNER_IP),
            ("2021-03-03 08:01:12", "GET", "/ecp/x.js", q(rid("s", 2)), "Mozilla/5.0 zgrab/0.x", "500", SCANNER_IP),
        ]  # fmt: skip
        for ts, method, stem, query, ua, status, ip in events:
            lines.append(
                (
                    ts,
                    {
                        "cs-method": method,
                        "cs-uri-stem": stem,
                        "cs-uri-query": query,
                        "c-ip": ip,
                        "cs(User-Agent)": ua,
                        "sc-status": status,
                    },
                )
            )
    lines.sort(key=lambda x: x[0])
    out = []
    for ts, r in lines:
        date, time = ts.split(" ")
        out.append(iis_line(base | r | {"date": date, "time": time}))
    return out


def _iis_w3svc2(attack: bool) -> str:
    """Back-end IIS (port 444) of 2021-03-03: the SSRF requests as the front end forwarded them."""
    lines = iis_header("2021-03-03 05:00:00")
    base = {"s-ip": SERVER_IP, "s-port": "444", "c-ip": SERVER_IP, "sc-substatus": "0", "sc-win32-status": "0",
            "time-taken": "15"}  # fmt: skip
    rows = [
        (
            "2021-03-03 05:00:01",
            "GET",
            "/owa/service.svc",
            "action=GetItem&CorrelationID=<empty>;&cafeReqId=" + rid("n", 5001) + ";",
            f"{DOMAIN}\\alice",
            CHROME,
            "200",
        ),
    ]
    if attack:
        ddi = "/ecp/DDI/DDIService.svc"
        adm = f"{DOMAIN}\\administrator"
        py = "python-requests/2.25.1"

        def q(r: str, extra: str = "") -> str:
            return f"{extra}&CorrelationID=<empty>;&cafeReqId={r};"

        rows += [
            (
                "2021-03-03 06:49:42",
                "POST",
                "/autodiscover/autodiscover.xml",
                q(rid("a", 1)),
                "",
                "ExchangeServicesClient/0.0.0.0",
                "200",
            ),
            ("2021-03-03 06:49:43", "POST", "/mapi/emsmdb/", q(rid("a", 2)), adm, py, "200"),
            ("2021-03-03 06:49:46", "POST", "/ecp/proxyLogon.ecp", q(rid("a", 3)), adm, py, "241"),
            (
                "2021-03-03 06:49:51",
                "POST",
                f"{ddi}/GetObject",
                q(rid("a", 4), f"msExchEcpCanary={CANARY_1}&schema=OABVirtualDirectory"),
                adm,
                py,
                "200",
            ),
            (
                "2021-03-03 06:49:53",
                "POST",
                f"{ddi}/SetObject",
                q(rid("a", 5), f"msExchEcpCanary={CANARY_1}&schema=OABVirtualDirectory"),
                adm,
                py,
                "200",
            ),
            (
                "2021-03-03 06:49:56",
                "POST",
                f"{ddi}/SetObject",
                q(rid("a", 6), f"msExchEcpCanary={CANARY_1}&schema=ResetOABVirtualDirectory"),
                adm,
                py,
                "200",
            ),
            (
                "2021-03-03 06:50:00",
                "POST",
                f"{ddi}/SetObject",
                q(rid("a", 7), f"msExchEcpCanary={CANARY_1}&schema=OABVirtualDirectory"),
                adm,
                py,
                "200",
            ),
        ]
    lines += [
        iis_line(base | {"date": d[:10], "time": d[11:], "cs-method": m, "cs-uri-stem": s, "cs-uri-query": qq,
                         "cs-username": u, "cs(User-Agent)": ua, "sc-status": st})
        for d, m, s, qq, u, ua, st in rows
    ]  # fmt: skip
    return "\r\n".join(lines) + "\r\n"


def _iis_shell_day(attack: bool) -> str:
    """Front-end IIS of 2021-03-05: a second actor using the shells (helsecert's pattern)."""
    base = {"s-ip": SERVER_IP, "s-port": "443", "sc-substatus": "0", "sc-win32-status": "0", "time-taken": "133"}
    rows = [("2021-03-05 02:59:58", "GET", "/owa/", "", "10.0.1.44", CHROME, "302")]
    if attack:
        ua65 = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/65.0.2345 Safari/537.36"  # noqa: E501
        rows += [
            ("2021-03-05 03:06:27", "GET", "/owa/auth/RedirSuiteServerProxy.aspx",
             f"&CorrelationID=<empty>;&cafeReqId={rid('b', 1)};&encoding=;", SHELL_USER_IP, ua65, "200"),
            ("2021-03-05 03:10:00", "POST", SHELL_URL, "proxy&port=3389", SHELL_USER_IP, ua65, "200"),
            ("2021-03-05 03:11:40", "GET", "/owa/auth/OutlookEN.aspx",
             f"&CorrelationID=<empty>;&cafeReqId={rid('b', 2)};&encoding=;", SHELL_USER_IP, ua65, "302"),
        ]  # fmt: skip
    lines = iis_header("2021-03-05 02:59:58")
    lines += [
        iis_line(base | {"date": d[:10], "time": d[11:], "cs-method": m, "cs-uri-stem": s, "cs-uri-query": qq,
                         "c-ip": ip, "cs(User-Agent)": ua, "sc-status": st})
        for d, m, s, qq, ip, ua, st in rows
    ]  # fmt: skip
    return "\r\n".join(lines) + "\r\n"


def application_evtx(attack: bool = True) -> bytes:
    """Application.evtx: UM errors (one with InvalidCastException when ``attack``) and look-alikes."""
    um = "MSExchange Unified Messaging"
    t = datetime(2021, 3, 3, 6, 0, tzinfo=UTC)

    def ev(minutes: float, provider: str, level: int, data: list[str | int | None], eid: int = 1001) -> Event:
        return Event(eid, provider, "Application", computer=FQDN, time_created=t + timedelta(minutes=minutes),
                     level=level, qualifiers=49152, data=data)  # fmt: skip

    events = [
        ev(1, um, 2, ["UM worker process exited", "System.NullReferenceException: Object reference not set"]),
        ev(2, um, 3, ["Retrying after System.InvalidCastException in a warning"]),
        ev(3, "MSExchange Common", 2, ["System.InvalidCastException: unrelated component"], 4999),
        ev(30, "MSExchangeTransport", 4, ["Transport service started"], 7010),
    ]
    if attack:
        events.append(
            ev(45.2, um, 2, [
                "UM worker process",
                "System.InvalidCastException: Unable to cast object of type 'System.Web.UI.ObjectStateFormatter' "
                "to type 'Microsoft.Exchange.UM.UMCommon.UMCallInfo'.",
            ])
        )  # fmt: skip
    events.sort(key=lambda e: e.time_created)
    return evtx_bytes(events)


def management_evtx(attack: bool = True) -> bytes:
    """MSExchange Management.evtx: cmdlet logging, with the attacker's Set-OabVirtualDirectory."""
    t = datetime(2021, 3, 3, 5, 12, 44, tzinfo=UTC)
    ch = "MSExchange Management"
    events = [
        Event(1, "MSExchange CmdletLogs", ch, computer=FQDN, time_created=t,
              data=["Set-OwaVirtualDirectory", f"-ExternalUrl 'https://{PUBLIC}/owa'", "CORP\\administrator"]),
    ]  # fmt: skip
    if attack:
        events.append(
            Event(
                1,
                "MSExchange CmdletLogs",
                ch,
                computer=FQDN,
                time_created=datetime(2021, 3, 3, 6, 49, 53, 900000, tzinfo=UTC),
                data=[
                    "Set-OabVirtualDirectory",
                    f"-ExternalUrl '{SCRIPT_URL}' -Identity '{OAB_ID_1}'",
                    "NT AUTHORITY\\SYSTEM",
                ],
            )
        )
    return evtx_bytes(events)


@dataclass
class LogSet:
    """The files of one server and where the Exchange install is inside them."""

    files: dict[str, bytes]
    install: str  # '/'-separated, relative to the volume root (e.g. Program Files/Microsoft/...)
    attack: bool
    hostile: bool
    malformed: dict[str, int] = field(default_factory=dict)  # relative path -> malformed lines planted
    set_vdir_line: int = 0

    def under_install(self, rel: str) -> str:
        """A volume-relative path under the Exchange install folder."""
        return f"{self.install}/{rel}"


def _install_rel(install_path: str) -> str:
    rest = install_path.split(":", 1)[-1]
    return "/".join(p for p in rest.replace("\\", "/").split("/") if p)


def proxylogon_story(
    install_path: str = DEFAULT_INSTALL, *, attack: bool = True, hostile: bool = False, seed: int = 21
) -> LogSet:
    """All log files of the server (see the module docstring); paths are relative to the volume root."""
    rng = random.Random(seed)
    seq = [0]
    ex = _install_rel(install_path)
    hp = f"{ex}/Logging/HttpProxy"
    files: dict[str, str | bytes] = {}
    start = {
        "Autodiscover": datetime(2021, 1, 15, 8, tzinfo=UTC),
        "Eas": datetime(2021, 2, 1, 7, tzinfo=UTC),
        "Ecp": datetime(2021, 2, 20, 10, tzinfo=UTC),
        "Ews": datetime(2021, 2, 10, 9, tzinfo=UTC),
        "Mapi": datetime(2021, 2, 15, 9, tzinfo=UTC),
        "Oab": datetime(2021, 2, 15, 11, tzinfo=UTC),
        "Owa": datetime(2020, 12, 28, 9, tzinfo=UTC),
        "OwaCalendar": datetime(2021, 3, 1, 12, tzinfo=UTC),
        "PowerShell": datetime(2021, 2, 25, 16, tzinfo=UTC),
    }
    for proto, t0 in start.items():
        name = f"HttpProxy_{t0:%Y%m%d%H}-1.LOG"
        files[f"{hp}/{proto}/{name}"] = httpproxy_file(
            _benign_rows(proto, t0 + timedelta(seconds=2), 24, rng, seq), t0.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        )
    # the day of the intrusion: Ecp and Owa
    day = datetime(2021, 3, 3, 6, tzinfo=UTC)
    ecp_rows = _benign_rows("Ecp", day + timedelta(seconds=5), 12, rng, seq)
    owa_rows = _benign_rows("Owa", day + timedelta(seconds=9), 30, rng, seq)
    if attack:
        ecp_rows += _attack_ecp_rows()
        owa_rows.append(
            _hp(
                "2021-03-03T07:15:20.005Z",
                rid("d", 1),
                Protocol="Owa",
                UrlStem="/owa/auth/x.js",
                IsAuthenticated="False",
                AuthenticationType="",
                RoutingHint="X-BEResource-Cookie",
                AnchorMailbox=f"ServerInfo~a]@{FQDN}:444/ews/exchange.asmx?#",
                UserAgent=NMAP,
                ClientIpAddress=SECOND_CLIENT_IP,
                HttpStatus="500",
            )
        )
    ecp_rows.sort(key=lambda r: r["DateTime"])
    owa_rows.sort(key=lambda r: r["DateTime"])
    files[f"{hp}/Ecp/HttpProxy_2021030306-1.LOG"] = httpproxy_file(ecp_rows, "2021-03-03T06:00:00.000Z")
    files[f"{hp}/Owa/HttpProxy_2021030306-1.LOG"] = httpproxy_file(owa_rows, "2021-03-03T06:00:00.000Z")
    shell_day = _benign_rows("Owa", datetime(2021, 3, 5, 3, tzinfo=UTC), 6, rng, seq)
    if attack:
        shell_day.append(
            _hp(
                "2021-03-05T03:06:27.696Z",
                rid("b", 1),
                Protocol="Owa",
                UrlStem="/owa/auth/RedirSuiteServerProxy.aspx",
                ProxyAction="",
                IsAuthenticated="False",
                AuthenticationType="",
                UserAgent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/65.0.2345 Safari/537.36",
                ClientIpAddress=SHELL_USER_IP,
            )
        )
    shell_day.sort(key=lambda r: r["DateTime"])
    files[f"{hp}/Owa/HttpProxy_2021030503-1.LOG"] = httpproxy_file(shell_day, "2021-03-05T03:00:00.000Z")
    # ECP Server logs
    files[f"{ex}/Logging/ECP/Server/ECPServer20210220-1.LOG"] = ecp_file(
        [("2021-02-20T10:05:00.000Z", ecp_data("Get-Mailbox", "/ecp/DDI/DDIService.svc/GetList", rid("n", 9000)))],
        "2021-02-20T10:04:59.000Z",
    )  # fmt: skip
    ecp_text = ecp_file(_ecp_server_rows(attack), "2021-03-03T05:10:00.000Z")
    files[f"{ex}/Logging/ECP/Server/ECPServer20210303-1.LOG"] = ecp_text
    set_line = next((i for i, ln in enumerate(ecp_text.split("\r\n"), 1) if "<script" in ln), 0)
    # OAB generator logs
    oab_ok = f"'{install_path.rstrip(chr(92))}\\ClientAccess\\OAB\\Temp\\b1f0c9a2.tmp'"
    files[f"{ex}/Logging/OABGeneratorLog/OABGeneratorLog_20210201-1.LOG"] = oab_file(
        [
            ("2021-02-01T02:00:01.120Z", "Info", "OAB generation started for \\Default Offline Address Book"),
            ("2021-02-01T02:00:09.871Z", "Warning", OAB_FAILED.format(oab_ok)),
            ("2021-02-01T02:00:12.004Z", "Info", "OAB generation completed"),
        ],
        "2021-02-01T02:00:00.000Z",
    )  # fmt: skip
    oab_rows = [
        ("2021-03-03T02:00:01.120Z", "Info", "OAB generation started for \\Default Offline Address Book"),
        ("2021-03-03T02:00:08.003Z", "Warning", OAB_FAILED.format(oab_ok.upper())),
        ("2021-03-03T02:00:12.004Z", "Info", "OAB generation completed"),
    ]  # fmt: skip
    if attack:
        oab_rows.append(
            ("2021-03-03T06:52:30.412Z", "Error", OAB_FAILED.format(f"'{SHELL_PATH}'"))
        )  # fmt: skip
    files[f"{ex}/Logging/OABGeneratorLog/OABGeneratorLog_20210303-1.LOG"] = oab_file(
        oab_rows, "2021-03-03T02:00:00.000Z"
    )
    # IIS: the day of the intrusion (with a restart: a new header block mid-file), the back end, the shell day
    w1 = _iis_w3svc1(attack, rng)
    cut = len(w1) // 2
    iis_text = iis_header("2021-03-03 05:00:00") + w1[:cut] + iis_header("2021-03-03 06:30:00") + w1[cut:]
    files["inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"] = "\r\n".join(iis_text) + "\r\n"
    files["inetpub/logs/LogFiles/W3SVC1/u_ex210228.log"] = (
        "\r\n".join(iis_header("2021-02-28 00:00:07") + [
            iis_line({"date": "2021-02-28", "time": f"0{h}:1{h}:0{h}", "s-ip": SERVER_IP, "cs-method": "GET",
                      "cs-uri-stem": "/owa/", "s-port": "443", "cs-username": f"{DOMAIN}\\bob",
                      "c-ip": "10.0.2.31", "cs(User-Agent)": CHROME, "sc-status": "200", "sc-substatus": "0",
                      "sc-win32-status": "0", "time-taken": "12"})
            for h in range(1, 6)
        ]) + "\r\n"
    )  # fmt: skip
    files["inetpub/logs/LogFiles/W3SVC2/u_ex210303.log"] = _iis_w3svc2(attack)
    files["inetpub/logs/LogFiles/W3SVC1/u_ex210305.log"] = _iis_shell_day(attack)
    files["Windows/System32/winevt/Logs/Application.evtx"] = application_evtx(attack)
    files["Windows/System32/winevt/Logs/MSExchange Management.evtx"] = management_evtx(attack)
    out: dict[str, bytes] = {k: v.encode("utf-8") if isinstance(v, str) else v for k, v in files.items()}
    logset = LogSet(out, ex, attack, hostile, set_vdir_line=set_line)
    if hostile:
        _damage(logset)
    return logset


def _insert_after_line(text: bytes, line_no: int, extra: bytes) -> bytes:
    """Insert ``extra`` (whole lines) after line ``line_no`` (1-based)."""
    pos = 0
    for _ in range(line_no):
        pos = text.index(b"\n", pos) + 1
    return text[:pos] + extra + text[pos:]


def _damage(ls: LogSet) -> None:
    """Hostile variant: the planted rows survive, everything around them gets worse."""
    hp = f"{ls.install}/Logging/HttpProxy"
    ecp_path = f"{hp}/Ecp/HttpProxy_2021030306-1.LOG"
    text = ls.files[ecp_path]
    header = b"\r\n".join(text.split(b"\r\n")[:5]) + b"\r\n"
    # after line 10: a service restart repeats the header block, and three broken lines follow
    junk = (
        header
        + b"2021-03-03T06:10:00.000Z,n9999999-5c1e-4b7a-9d3f-0a1b2c3d4e5f,15,1,2176\r\n"  # truncated mid-write
        + b"\x00\x00\x00\x00\x00\x00\x00\x00\r\n"  # zeroed sectors after a crash
        + b'2021-03-03T06:10:01.000Z,"unterminated,15,1\r\n'  # an opened quote
    )
    ls.files[ecp_path] = b"\xef\xbb\xbf" + _insert_after_line(text, 10, junk)
    ls.malformed[ecp_path] = 3
    # Owa: LF-only lines and a latin-1 user agent
    owa_path = f"{hp}/Owa/HttpProxy_2021030306-1.LOG"
    owa = ls.files[owa_path].replace(b"\r\n", b"\n")
    owa = _insert_after_line(
        owa,
        7,
        _csv_line(_hp("2021-03-03T06:00:30.000Z", rid("n", 8888), Protocol="Owa", UrlStem="/owa/",
                      UserAgent="Gr\u00e9bot/1.0", ClientIpAddress="10.0.3.9").get(f, "") for f in FIELDS)
        .encode("latin-1") + b"\n",
    )  # fmt: skip
    ls.files[owa_path] = owa
    # Autodiscover: the header is a plain CSV line (what Import-Csv expects), no '#' lines at all
    ad = next(p for p in ls.files if p.startswith(f"{hp}/Autodiscover/"))
    lines = ls.files[ad].split(b"\r\n")
    ls.files[ad] = b"\r\n".join([lines[4][len(b"#Fields: ") :], *lines[5:]])
    # Eas: no header at all, data from the first line
    eas = next(p for p in ls.files if p.startswith(f"{hp}/Eas/"))
    ls.files[eas] = b"\r\n".join(ls.files[eas].split(b"\r\n")[5:])
    # IIS: an extra field on one line and a UTF-8 BOM
    iis = "inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"
    ls.files[iis] = b"\xef\xbb\xbf" + _insert_after_line(
        ls.files[iis],
        6,
        b"2021-03-03 05:00:05 10.0.0.5 GET /owa/ - 443 - 10.0.1.7 Mozilla/5.0 - 200 0 0 15 EXTRA-FIELD\r\n",
    )
    ls.malformed[iis] = 1
    # ECP Server log: a latin-1 byte in a benign command
    ecp_log = f"{ls.install}/Logging/ECP/Server/ECPServer20210303-1.LOG"
    ls.files[ecp_log] = ls.files[ecp_log].replace(b"Get-ExchangeServer", b"Get-ExchangeServer\xe9", 1)


def write_files(root: str | Path, files: dict[str, bytes]) -> Path:
    """Write volume-relative files under ``root``."""
    root = Path(root)
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def bulk_httpproxy(
    path: str | Path, target_bytes: int, *, protocol: str = "Owa", seed: int = 7, block_rows: int = 1000,
    planted_every_blocks: int = 50, probe_every: int = 250,
) -> int:  # fmt: skip
    """Write one large HttpProxy log of about ``target_bytes`` for benchmarks; returns the planted row count.

    A block of benign rows (one in ``probe_every`` a health probe with an excluded ``ServerInfo~``
    anchor; none with 0) is made once and written over and over; the first block and every
    ``planted_every_blocks``-th after it are followed by one CVE-2021-26855 SSRF row (to
    proxyLogon.ecp), so the checks have something to find.
    """
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = datetime(2021, 3, 3, 0, tzinfo=UTC)
    rows = _benign_rows(protocol, t0, block_rows, rng, [0], probe_every)
    block = ("\r\n".join(_csv_line(r.get(f, "") for f in FIELDS) for r in rows) + "\r\n").encode()
    planted = 0
    with open(path, "wb") as fh:
        fh.write(httpproxy_file([], t0.strftime("%Y-%m-%dT%H:%M:%S.000Z")).encode())
        written, blocks = fh.tell(), 0
        while written < target_bytes:
            fh.write(block)
            written += len(block)
            blocks += 1
            if blocks % planted_every_blocks == 1:
                planted += 1
                r = _ssrf("2021-03-03T06:49:46.210Z", rid("a", 1_000_000 + planted), "/ecp/proxyLogon.ecp?#",
                          "python-requests/2.25.1", "241")  # fmt: skip
                line = (_csv_line(r.get(f, "") for f in FIELDS) + "\r\n").encode()
                fh.write(line)
                written += len(line)
    return planted


__all__ = [
    "ATTACKER_IP",
    "CANARY_1",
    "CANARY_2",
    "PLANTED",
    "SCANNER_IP",
    "SECOND_CLIENT_IP",
    "SHELL_NAME",
    "SHELL_PATH",
    "SHELL_URL",
    "SHELL_USER_IP",
    "LogSet",
    "Planted",
    "application_evtx",
    "bulk_httpproxy",
    "ecp_data",
    "ecp_file",
    "httpproxy_file",
    "iis_header",
    "iis_line",
    "management_evtx",
    "oab_file",
    "proxylogon_story",
    "rid",
    "write_files",
]
