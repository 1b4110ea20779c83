"""The streaming log readers: headers anywhere, damaged lines counted, exact line numbers, any size."""

from __future__ import annotations

import codecs
from pathlib import Path

import pandas as pd
import pytest

from analyzers.exchange.logs import (
    ECP,
    HTTPPROXY,
    HTTPPROXY_FIELDS,
    IIS,
    LogReader,
    install_root,
    like,
    log_type,
    normalize,
    time_span,
)
from triage.testing.volume import HTTPPROXY_FIELDS as BUILDER_FIELDS

HEADER = (
    "#Software: Microsoft Exchange Server\r\n#Version: 15.01.2176.002\r\n#Log-type: HttpProxy Logs\r\n"
    "#Date: 2021-03-03T00:00:00.000Z\r\n#Fields: DateTime,RequestId,UserAgent,AnchorMailbox,HttpStatus\r\n"
)


def _read(path: Path, logtype: str = HTTPPROXY, **kw: object) -> tuple[pd.DataFrame, LogReader]:
    reader = LogReader(path, logtype, **kw)  # type: ignore[arg-type]
    frames = list(reader.frames())
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return df, reader


def _hostile_bytes() -> bytes:
    return (
        codecs.BOM_UTF8
        + HEADER.encode()
        + b'2021-03-03T01:00:00.000Z,r1,"Mozilla/5.0 (X11, Linux)",SMTP:a@corp.example,200\r\n'
        + b"\r\n"
        + b"2021-03-03T01:00:01.000Z,r2,Gr\xe9bot/1.0,ServerInfo~a]@ex:444/ecp/y#,241\r\n"
        + b"2021-03-03T01:00:02.000Z,r3,truncated\r\n"
        + b"\x00\x00\x00\x00\r\n"
        + b'2021-03-03T01:00:03.000Z,r4,"unterminated,ua,ServerInfo~b/c,200\r\n'
        + b"2021-03-03T01:00:04.000Z,r5,ua,SMTP:b@corp.example,200,extra\r\n"
        + HEADER.replace("UserAgent,", "").encode()  # a restart with one field fewer
        + b"2021-03-03T01:00:05.000Z,r6,serverinfo~q/z,500"  # the last line has no newline
    )


def test_hostile_file_rows_lines_and_counts(tmp_path: Path) -> None:
    p = tmp_path / "HttpProxy_2021030301-1.LOG"
    p.write_bytes(_hostile_bytes())
    df, r = _read(p)
    assert list(df["RequestId"]) == ["r1", "r2", "r3", "r4", "r5", "r6"]
    assert list(df["_line"]) == [6, 8, 9, 11, 12, 18]  # BOM and header: data starts on line 6; line 10 dropped
    assert df.loc[0, "UserAgent"] == "Mozilla/5.0 (X11, Linux)"  # quoted comma
    assert df.loc[1, "UserAgent"] == "Gr\ufffdbot/1.0"  # latin-1 byte replaced, not fatal
    assert df.loc[2, "AnchorMailbox"] == "" and df.loc[2, "HttpStatus"] == ""  # padded
    assert df.loc[4, "HttpStatus"] == "200"  # extra field cut
    assert df.loc[5, "AnchorMailbox"] == "serverinfo~q/z" and pd.isna(df.loc[5, "UserAgent"])  # new field list
    st = r.stats
    assert (st.malformed_lines, st.ragged_rows, st.dropped_lines) == (4, 3, 1)
    assert (st.bom, st.replaced_chars, st.empty_lines, st.header_lines, st.lines) == (True, 1, 1, 10, 18)
    assert st.header_source == "#Fields" and len(st.field_sets) == 2
    assert any("line 10: no field separator" in w for w in st.warnings)
    assert any("field list changes (5 -> 4 fields)" in w for w in st.warnings)


def test_small_blocks_give_the_same_rows(tmp_path: Path) -> None:
    """Lines cut by block boundaries are stitched back; every block size reads the same."""
    p = tmp_path / "x.LOG"
    p.write_bytes(_hostile_bytes())
    want, _ = _read(p)
    for size in (7, 64, 100, 4096):
        got, r = _read(p, block_size=size)
        pd.testing.assert_frame_equal(got, want)
        assert r.stats.malformed_lines == 4
        reader = LogReader(p, HTTPPROXY, block_size=size)  # blocks without a match are skipped whole
        assert [n for n, _ in reader.matching_lines([b"serverinfo~"])] == [8, 11, 18]
        assert reader.stats.lines == 18


def test_prefiltered_rows_equal_the_full_parse(tmp_path: Path) -> None:
    p = tmp_path / "x.LOG"
    p.write_bytes(_hostile_bytes())
    full, _ = _read(p)
    reader = LogReader(p, HTTPPROXY)
    got = pd.concat(list(reader.matching_frames([b"ServerInfo~"])), ignore_index=True)
    assert list(got["_line"]) == [8, 11, 18]  # case-insensitive: 'serverinfo~' on line 18 too
    want = full[full["_line"].isin([8, 11, 18])].reset_index(drop=True)
    pd.testing.assert_frame_equal(got[want.columns], want)
    assert reader.stats.malformed_lines == 1  # only lines read are judged: the unterminated quote


def test_missing_header_first_line_is_the_header(tmp_path: Path) -> None:
    p = tmp_path / "a.LOG"
    p.write_text("DateTime,RequestId,AnchorMailbox\r\n2021-03-03T01:00:00Z,r1,ServerInfo~a/b\r\n")
    df, r = _read(p)
    assert list(df.columns) == ["DateTime", "RequestId", "AnchorMailbox", "_line"]
    assert df["_line"].tolist() == [2] and r.stats.header_source == "first line"


def test_no_header_at_all_assumes_the_default_fields(tmp_path: Path) -> None:
    row = dict.fromkeys(HTTPPROXY_FIELDS, "") | {"DateTime": "2021-03-03T01:00:00Z", "AnchorMailbox": "ServerInfo~x/y"}
    p = tmp_path / "b.LOG"
    p.write_text(",".join(row[f] for f in HTTPPROXY_FIELDS) + "\n")
    df, r = _read(p)
    assert df.loc[0, "AnchorMailbox"] == "ServerInfo~x/y" and df.loc[0, "_line"] == 1
    assert r.stats.header_source == "assumed default"
    assert "Test-ProxyLogon would have read line 1 as the header" in r.stats.warnings[0]


def test_utf16_and_lf_only(tmp_path: Path) -> None:
    text = HEADER.replace("\r\n", "\n") + "2021-03-03T01:00:00.000Z,r1,ua,ServerInfo~a/b,200\n"
    p = tmp_path / "u16.LOG"
    p.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    df, r = _read(p)
    assert df["RequestId"].tolist() == ["r1"] and df["_line"].tolist() == [6]
    assert r.stats.encoding == "utf-16-le"
    assert [n for n, _ in LogReader(p, HTTPPROXY).matching_lines([b"serverinfo~"])] == [6]


def test_overlong_line_is_dropped_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import analyzers.exchange.logs as logs

    monkeypatch.setattr(logs, "MAX_LINE", 100)
    p = tmp_path / "long.LOG"
    p.write_bytes(
        HEADER.encode() + b"2021-03-03T01:00:00Z," + b"x" * 500 + b"\r\n" + b"2021-03-03T01:00:01Z,r2,u,a,200\r\n"
    )
    df, r = _read(p, block_size=32)
    assert df["RequestId"].tolist() == ["r2"] and df["_line"].tolist() == [7]
    assert r.stats.dropped_lines == 1


def test_iis_w3c(tmp_path: Path) -> None:
    p = tmp_path / "u_ex210303.log"
    p.write_bytes(
        b"#Software: Microsoft Internet Information Services 10.0\r\n#Version: 1.0\r\n#Date: 2021-03-03 00:00:00\r\n"
        b"#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) "
        b"sc-status\r\n"
        b"2021-03-03 06:40:03 10.0.0.5 POST /owa/auth/Current/themes/resources/logon.css - 443 - 157.230.221.198 "
        b"DuckDuckBot/1.0;+(+http://duckduckgo.com/duckduckbot.html) 200\r\n"
        b"#Software: Microsoft Internet Information Services 10.0\r\n#Version: 1.0\r\n#Date: 2021-03-03 07:00:00\r\n"
        b"#Fields: time cs-method cs-uri-stem cs-uri-query cs-username c-ip cs(User-Agent) sc-status\r\n"
        b"07:00:01 GET /owa/ &CorrelationID=<empty>;&cafeReqId=0000bad0-5c1e-4b7a-9d3f-0a1b2c3d4e5f; CORP\\alice "
        b"10.0.0.20 Mozilla/5.0+(Windows+NT+10.0) 200 extra\r\n"
    )
    reader = LogReader(p, IIS)
    frames = list(reader.frames())
    # short runs under different field lists come out together; a field a run lacks is missing in its rows
    assert len(frames) == 1 and frames[0]["date"].isna().tolist() == [False, True]
    norm = pd.concat(
        [normalize(f, IIS, "C:/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log", "2021-03-03 07:00:00") for f in frames],
        ignore_index=True,
    )
    assert norm["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S").tolist() == ["2021-03-03T06:40:03", "2021-03-03T07:00:01"]
    assert norm["user_agent"].tolist() == ["DuckDuckBot/1.0; ( http://duckduckgo.com/duckduckbot.html)",
                                           "Mozilla/5.0 (Windows NT 10.0)"]  # fmt: skip
    assert norm["username"].tolist() == ["", "CORP\\alice"]
    assert norm["request_id"].tolist() == ["", "0000bad0-5c1e-4b7a-9d3f-0a1b2c3d4e5f"]
    assert norm["protocol"].tolist() == ["W3SVC1", "W3SVC1"]
    assert norm["uri_query"].tolist() == ["", "&CorrelationID=<empty>;&cafeReqId=0000bad0-5c1e-4b7a-9d3f-0a1b2c3d4e5f;"]
    assert reader.stats.malformed_lines == 1  # the extra field


def test_ecp_eventdata_items(tmp_path: Path) -> None:
    p = tmp_path / "ECPServer20210303-1.LOG"
    p.write_text(
        "#Fields: TimeStamp,ServerName,EventId,EventData\r\n"
        "2021-03-03T06:49:53.772Z,EXCH01,ECP.Request,\"S:TIME=12;'S:CMD=Set-OabVirtualDirectory.ExternalUrl="
        "''http://f/<script language=\"\"JScript\"\">x</script>''.Identity=''1''';S:REQID=;"
        'S:URL=/ecp/DDI/DDIService.svc/SetObject?msExchEcpCanary=c1&schema=OABVirtualDirectory;S:ACTID=a1"\r\n'
    )
    (df,) = list(LogReader(p, ECP).frames())
    n = normalize(df, ECP, "C:/x/Logging/ECP/Server/ECPServer20210303-1.LOG")
    row = n.iloc[0]
    assert (
        row["cmd"]
        == "Set-OabVirtualDirectory.ExternalUrl='http://f/<script language=\"JScript\">x</script>'.Identity='1'"
    )
    assert (row["uri_stem"], row["uri_query"]) == (
        "/ecp/DDI/DDIService.svc/SetObject",
        "msExchEcpCanary=c1&schema=OABVirtualDirectory",
    )
    assert row["request_id"] == "a1" and row["ts"] == pd.Timestamp("2021-03-03T06:49:53.772Z")


@pytest.mark.parametrize(
    ("value", "pattern", "expected"),
    [
        ("ServerInfo~a]@EXCH01:444/mapi/emsmdb/?#", "ServerInfo~*/*", True),
        ("serverinfo~A]@x:444/ECP/proxyLogon.ecp", "ServerInfo~*/*", True),  # -like ignores case
        ("ServerInfo~EXCH01", "ServerInfo~*/*", False),
        ("xServerInfo~a/b", "ServerInfo~*/*", False),  # anchored at the start
        ("ServerInfo~a]@x:444/autodiscover/autodiscover.xml?#", "ServerInfo~*/autodiscover*", True),
        ("ServerInfo~localhost:444/owa/", "ServerInfo~localhost*/*", True),
        ("ServerInfo~a/ecp/DDI/x?schema=ResetOABVirtualDirectory#", "ServerInfo~*/*Reset*VirtualDirectory#", True),
        ("ServerInfo~a/ecp/DDI/x?schema=ResetOABVirtualDirectory", "ServerInfo~*/*Reset*VirtualDirectory#", False),
        ("a.b", "a?b", True),
        ("a[b", "a[[]b", True),
        ("ab", "a[bc]", True),
        ("a*b", "a`*b", True),
        ("axb", "a`*b", False),
    ],
)
def test_like_semantics(value: str, pattern: str, expected: bool) -> None:
    assert like(pd.Series([value], dtype="str"), pattern).tolist() == [expected]
    assert like(pd.Series([None], dtype="str"), pattern).tolist() == [False]


def test_paths_and_field_lists() -> None:
    logical = "D:/Apps/Exchange/V15/Logging/OABGeneratorLog/OABGeneratorLog_20210303-1.LOG"
    assert install_root(logical) == "D:\\Apps\\Exchange\\V15\\"
    assert log_type(logical) == "oab"
    assert log_type("C:/Program Files/Microsoft/Exchange Server/V15/Logging/HttpProxy/Ecp/x.LOG") == "httpproxy"
    assert log_type("C:/Program Files/Microsoft/Exchange Server/V15/Logging/ECP/Server/x.LOG") == "ecp"
    assert log_type("C:/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log", "iis_log") == "iis"
    assert log_type("C:/Windows/System32/winevt/Logs/Application.evtx", "evtx") == "unknown"
    assert ",".join(HTTPPROXY_FIELDS) == BUILDER_FIELDS  # the reader's default is the builder's layout


def test_time_span_head_and_tail(tmp_path: Path) -> None:
    p = tmp_path / "t.LOG"
    body = "".join(f"2021-03-03T{h:02d}:00:00.000Z,r{h},u,a,200\r\n" for h in range(1, 23))
    p.write_text(HEADER + body * 400)  # larger than the probe: head and tail read separately
    span = time_span(p, HTTPPROXY, probe=4096)
    assert (span.first, span.first_source) == (pd.Timestamp("2021-03-03T00:00:00Z"), "#Date header")
    assert span.last == pd.Timestamp("2021-03-03T22:00:00Z")
    p.write_text(body)
    span = time_span(p, HTTPPROXY)
    assert (span.first, span.first_source, span.date_header) == (
        pd.Timestamp("2021-03-03T01:00:00Z"),
        "first record",
        None,
    )


def test_sniffing_the_log_type(tmp_path: Path) -> None:
    from analyzers.exchange.logs import sniff_log_type

    cases = {
        "a.log": (HEADER, "httpproxy"),
        "b.log": ("#Software: Microsoft Exchange Server\r\n#Log-type: ECP Server Log\r\n", "ecp"),
        "c.log": ("#Log-type: OAB Generator Log\r\n", "oab"),
        "d.log": ("#Software: Microsoft Internet Information Services 10.0\r\n", "iis"),
        "e.log": ("hello\r\n", "unknown"),
    }
    for name, (text, want) in cases.items():
        (tmp_path / name).write_text(text)
        assert sniff_log_type(tmp_path / name) == want, name


def test_overlong_line_keeps_later_line_numbers_in_matching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import analyzers.exchange.logs as logs

    monkeypatch.setattr(logs, "MAX_LINE", 100)
    p = tmp_path / "long.LOG"
    body = b"2021-03-03T01:00:00Z,r1,u,ServerInfo~a/b,200\r\n" + b"y" * 500 + b"\r\n"
    p.write_bytes(HEADER.encode() + body * 3)
    reader = LogReader(p, HTTPPROXY, block_size=64)
    assert [n for n, _ in reader.matching_lines([b"serverinfo~"])] == [6, 8, 10]
    assert reader.stats.dropped_lines == 3 and reader.stats.lines == 11
    full, r = _read(p, block_size=64)
    assert full["_line"].tolist() == [6, 8, 10] and r.stats.lines == 11


def test_normalize_keeps_times_of_a_frame_not_starting_at_row_zero() -> None:
    """A chunk of a log (index 5, 6 ...) keeps its times: the time column is aligned by position, not by label."""
    df = pd.DataFrame(
        {"date": ["2021-03-03", "2021-03-03"], "time": ["01:02:03", "01:02:04"], "cs-uri-stem": ["/a", "/b"]},
        index=[5, 6],
    )
    out = normalize(df, IIS, "W3SVC1/u_ex210303.log")
    assert list(out.index) == [5, 6]
    assert [t.isoformat() for t in out["ts"]] == ["2021-03-03T01:02:03+00:00", "2021-03-03T01:02:04+00:00"]
    assert list(out["uri_stem"]) == ["/a", "/b"]
