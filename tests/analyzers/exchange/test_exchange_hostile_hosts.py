"""Host-scope units over hostile evidence: attacker strings of any bytes, one bad log among many."""

from __future__ import annotations

from pathlib import Path

from exchange_support import EXPECTED_26855, EXPECTED_RESET, story_files

from analyzers.exchange.common import LogFile
from analyzers.exchange.logs import HTTPPROXY, IIS, OAB, LogReader, needle_pattern
from analyzers.exchange.narrative import build_narratives
from analyzers.exchange.proxylogon import test_proxylogon
from analyzers.exchange.rules import load_rules

SHELL = "Dk2jQ8ab.aspx"
WIDE_IP = "45.77.204.\uff11\uff11"  # full-width digits: what a forged address header can put in a log


def _rewrite(root: Path, old: str, new_for: dict[str, str]) -> None:
    """Replace ``old`` in every story file; ``new_for`` maps a path fragment to its replacement."""
    for p in root.rglob("*"):
        if not p.is_file() or p.suffix.lower() == ".evtx":
            continue
        data = p.read_bytes()
        if old.encode() not in data:
            continue
        new = next((v for k, v in new_for.items() if k in p.as_posix()), new_for[""])
        p.write_bytes(data.replace(old.encode(), new.encode("utf-8")))


def test_needle_pattern_takes_any_bytes(tmp_path: Path) -> None:
    pattern = needle_pattern([b"sh\xc3\xa9ll.aspx", b"\xff\xfe", b"1.2.3.4"])
    assert "sh\\xc3\\xa9ll\\.aspx" in pattern and "SH\\xc3\\x89LL\\.ASPX" in pattern and "\\xff\\xfe" in pattern
    log = tmp_path / "u_ex210303.log"
    log.write_bytes(
        b"#Fields: date time c-ip cs-uri-stem sc-status\n"
        b"2021-03-03 06:51:02 1.2.3.4 /aspnet_client/SH\xc3\x89LL.aspx 200\n"
        b"2021-03-03 06:51:03 5.6.7.8 /owa/\xff\xfe.aspx 404\n"
        b"2021-03-03 06:51:04 5.6.7.8 /owa/ok.aspx 200\n"
    )
    got = list(LogReader(log, IIS).matching_lines([b"sh\xc3\xa9ll.aspx", b"\xff\xfe"]))
    assert [n for n, _ in got] == [2, 3]
    assert got[0][1].endswith("/aspnet_client/SH\u00c9LL.aspx 200")


def test_non_ascii_shell_name_and_client_ip_keep_the_narrative(tmp_path: Path) -> None:
    _, files = story_files(tmp_path)
    # the OAB generator wrote shéll.aspx; IIS logged it in capitals; the second attacker's address is garbage
    _rewrite(tmp_path, SHELL, {"OABGeneratorLog": "sh\u00e9ll.aspx", "": "SH\u00c9LL.aspx"})
    _rewrite(tmp_path, "45.77.204.11", {"": WIDE_IP})
    found, _ = build_narratives(files, load_rules())
    by_ip = {n.client_ip: n for n in found}
    assert sorted(by_ip) == ["157.230.221.198", WIDE_IP]
    n = by_ip["157.230.221.198"]
    assert n.shell_names == ["sh\u00e9ll.aspx"]
    assert [(r["ts"], r["client_ip"], r["uri_stem"], r["status"]) for r in n.related] == [
        ("2021-03-05T03:10:00.000Z", "139.162.202.236", "/aspnet_client/system_web/SH\u00c9LL.aspx", "200")
    ]
    wide = by_ip[WIDE_IP]
    assert [(s["ts"], s["sources"], s["status"]) for s in wide.steps] == [
        ("2021-03-03T07:15:20.005Z", ["HttpProxy/Owa", "IIS/W3SVC1"], "500")
    ]


def test_one_unreadable_log_costs_only_itself(tmp_path: Path) -> None:
    _, files = story_files(tmp_path)
    ecp = next(f for f in files if f.logtype == HTTPPROXY and "/Ecp/HttpProxy_20210303" in f.logical)
    oab = next(f for f in files if f.logtype == OAB)
    # unreadable logs (a folder where the file should be) among the intact ones, sorted before them
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = [
        LogFile(bad_dir, ecp.logical.replace("HttpProxy_2021", "HttpProxy_2020"), HTTPPROXY, "exchange_log"),
        LogFile(bad_dir, oab.logical.replace("_2021", "_2020"), OAB, "exchange_log"),
    ]
    result = test_proxylogon(bad + files)
    hits, resets = result.http.hits_26855, result.http.hits_reset
    cols = ["RequestId", "ClientIpAddress", "DateTime"]
    assert set(zip(*(hits[c] for c in [*cols, "folder"]), strict=True)) == EXPECTED_26855
    assert set(zip(*(resets[c] for c in cols), strict=True)) == EXPECTED_RESET
    assert [h.download_path for h in result.cve26858] == [
        "'C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\Dk2jQ8ab.aspx'"
    ]
    failed = [w for w in result.warnings if "reading stopped at an error (IsADirectoryError" in w]
    assert len(failed) >= 2 and {w.split(": reading")[0] for w in failed} >= {b.logical for b in bad}
    found, _ = build_narratives(bad + files, load_rules(), warnings := [])
    assert sorted(n.client_ip for n in found) == ["157.230.221.198", "45.77.204.11"]
    assert any("IsADirectoryError" in w for w in warnings)
