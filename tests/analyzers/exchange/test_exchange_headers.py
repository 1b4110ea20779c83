"""Header-driven parsing: each block of a log uses its own #Fields line or header, whatever the order."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from analyzers.exchange.common import LogFile
from analyzers.exchange.logs import IIS, LogReader, normalize
from analyzers.exchange.proxylogon import scan_httpproxy

IIS_HEAD = "#Software: Microsoft Internet Information Services 10.0\n#Version: 1.0\n#Date: 2021-03-03 00:00:00\n"
STD = "date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status"
ODD = "c-ip sc-status cs-uri-stem date time cs-method"
HP = "C:/Program Files/Microsoft/Exchange Server/V15/Logging/HttpProxy/Ecp/HttpProxy_2021030306-1.LOG"


def _iis(tmp_path: Path, text: str) -> pd.DataFrame:
    p = tmp_path / "u_ex210303.log"
    p.write_text(text)
    frames = [normalize(f, IIS, "C:/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log") for f in LogReader(p, IIS).frames()]
    return pd.concat(frames, ignore_index=True)


def test_custom_order_and_a_change_mid_file(tmp_path: Path) -> None:
    df = _iis(
        tmp_path,
        f"{IIS_HEAD}#Fields: {STD}\n"
        "2021-03-03 06:51:02 10.0.0.5 POST /aspnet_client/discover.aspx - 443 - 157.230.221.198 Mozilla/5.0 200\n"
        f"#Fields: {ODD}\n"
        "139.162.202.236 404 /owa/auth/errorFS.aspx 2021-03-03 07:10:00 GET\n"
        f"#Fields: {STD}\n"
        "2021-03-03 07:11:00 10.0.0.5 GET /owa/ - 443 - 10.0.0.20 Mozilla/5.0 302\n",
    )
    assert df["client_ip"].tolist() == ["157.230.221.198", "139.162.202.236", "10.0.0.20"]
    assert df["status"].tolist() == ["200", "404", "302"]
    assert df["uri_stem"].tolist() == ["/aspnet_client/discover.aspx", "/owa/auth/errorFS.aspx", "/owa/"]
    assert df["method"].tolist() == ["POST", "GET", "GET"]
    assert df["ts"].dt.strftime("%H:%M:%S").tolist() == ["06:51:02", "07:10:00", "07:11:00"]
    assert df["_line"].tolist() == [5, 7, 9]


def test_two_thousand_repeated_blocks_parse_fast_with_exact_lines(tmp_path: Path) -> None:
    block = f"{IIS_HEAD}#Fields: {STD}\n2021-03-03 06:51:02 10.0.0.5 GET /owa/ - 443 - 10.0.0.20 Mozilla/5.0 200\n"
    p = tmp_path / "u_ex210303.log"
    p.write_text(block * 2000)
    t0 = time.perf_counter()
    reader = LogReader(p, IIS)
    df = pd.concat(list(reader.frames()), ignore_index=True)
    took = time.perf_counter() - t0
    assert len(df) == 2000 and took < 2.0, took  # 9 s before runs were merged across repeated headers
    assert df["_line"].tolist() == [5 + 5 * i for i in range(2000)]
    assert reader.stats.header_lines == 8000 and reader.stats.empty_lines == 0 and reader.stats.lines == 10000
    assert reader.stats.field_sets == [STD.split()]


def test_field_list_changing_at_every_block_stays_fast(tmp_path: Path) -> None:
    # a hostile log: 2,000 blocks whose #Fields alternate, one line each (7.6 s and 32 s pre-filtered before)
    short = "date time c-ip cs-uri-stem sc-status"
    text = "".join(
        f"#Fields: {STD}\n2021-03-03 06:51:02 10.0.0.5 GET /owa/a.aspx - 443 - 10.0.0.{i % 250} Mozilla/5.0 200\n"
        if i % 2 == 0
        else f"#Fields: {short}\n2021-03-03 06:51:03 10.1.0.{i % 250} /owa/a.aspx 404\n"
        for i in range(2000)
    )
    p = tmp_path / "u_ex210303.log"
    p.write_text(text)
    t0 = time.perf_counter()
    full = pd.concat(list(LogReader(p, IIS).frames(["c-ip", "sc-status", "cs-method"])), ignore_index=True)
    hits = pd.concat(list(LogReader(p, IIS).matching_frames([b"a.aspx"], ["c-ip", "sc-status"])), ignore_index=True)
    took = time.perf_counter() - t0
    assert took < 3.0, took
    for df in (full, hits):
        assert len(df) == 2000 and df["_line"].tolist() == [2 + 2 * i for i in range(2000)]
        assert df["c-ip"].tolist()[:2] == ["10.0.0.0", "10.1.0.1"]
        assert df["sc-status"].tolist()[:2] == ["200", "404"]
    assert full["cs-method"].iat[0] == "GET" and pd.isna(full["cs-method"].iat[1])  # not in the short list


def test_reduced_export_with_its_own_header(tmp_path: Path) -> None:
    # an analyst's Export-Csv of a few HttpProxy columns, in their own order and spelling (Test-ProxyLogon
    # writes "ClientIPAddress"), with PowerShell's #TYPE line
    p = tmp_path / "reduced.LOG"
    p.write_text(
        "#TYPE System.Management.Automation.PSCustomObject\n"
        '"ClientIPAddress","HttpStatus","AnchorMailbox","RequestId","DateTime","urlstem"\n'
        '"157.230.221.198","241","ServerInfo~a]@EXCH01.corp.example:444/ecp/proxyLogon.ecp?#","r-1",'
        '"2021-03-03T06:49:46.210Z","/ecp/y.js"\n'
        '"10.0.0.20","200","ServerInfo~a]@EXCH01.corp.example:444/autodiscover/autodiscover.xml?#","r-2",'
        '"2021-03-03T06:50:00.000Z","/ecp/y.js"\n'
    )
    scan = scan_httpproxy([LogFile(p, HP, "httpproxy", "exchange_log")])
    hits = scan.hits_26855
    assert hits[["RequestId", "ClientIpAddress", "HttpStatus", "DateTime", "UrlStem"]].values.tolist() == [
        ["r-1", "157.230.221.198", "241", "2021-03-03T06:49:46.210Z", "/ecp/y.js"]
    ]
    assert hits["line"].tolist() == [3] and hits["header_source"].tolist() == ["first line"]
    assert "no #Fields header; line 2 taken as the header" in scan.stats[HP].warnings[0]
