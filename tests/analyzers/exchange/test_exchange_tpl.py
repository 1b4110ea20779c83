"""Test-ProxyLogon parity: each check finds exactly the planted hits, and nothing in benign logs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from exchange_support import EXPECTED_26855, EXPECTED_RESET, SHELL, SUFFIX, kind_of, story_files

from analyzers.exchange.common import LogFile
from analyzers.exchange.logs import log_type
from analyzers.exchange.proxylogon import TPL_COLUMNS, TplResult, check_26857, test_proxylogon
from triage.testing.evtx import Event, evtx_bytes
from triage.testing.exchangelogs import PLANTED, httpproxy_file, proxylogon_story, write_files

ECP_LOG = "C:/Program Files/Microsoft/Exchange Server/V15/Logging/ECP/Server/ECPServer20210303-1.LOG"


@pytest.fixture(scope="module", params=["clean-files", "hostile-files"])
def result(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TplResult:
    hostile = request.param == "hostile-files"
    _, files = story_files(tmp_path_factory.mktemp(request.param), hostile=hostile)
    return test_proxylogon(files)


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> TplResult:
    _, files = story_files(tmp_path_factory.mktemp("benign"), attack=False)
    return test_proxylogon(files)


def test_planted_table_matches_the_builder() -> None:
    assert set(PLANTED.cve26855) == EXPECTED_26855
    assert set(PLANTED.reset) == EXPECTED_RESET


def test_cve_2021_26855(result: TplResult) -> None:
    hits = result.http.hits_26855
    got = set(zip(hits["RequestId"], hits["ClientIpAddress"], hits["DateTime"], hits["folder"], strict=True))
    assert got == EXPECTED_26855
    assert list(hits.columns[: len(TPL_COLUMNS)]) == list(TPL_COLUMNS)
    # excluded by the script: autodiscover-only SSRF (a0000001, scanner), localhost, health probes
    assert not {"a0000001" + SUFFIX, "5000001" + SUFFIX, "5000002" + SUFFIX} & set(hits["RequestId"])
    row = hits[hits["RequestId"] == "a0000003" + SUFFIX].iloc[0]
    assert row["AnchorMailbox"] == "ServerInfo~a]@EXCH01.corp.example:444/ecp/proxyLogon.ecp?#"
    assert (row["UrlStem"], row["RoutingHint"], row["HttpStatus"]) == ("/ecp/y.js", "X-BEResource-Cookie", "241")
    assert row["UserAgent"] == "python-requests/2.25.1"
    assert row["file"].endswith("/Logging/HttpProxy/Ecp/HttpProxy_2021030306-1.LOG")


def test_cve_2021_27065_reset_vdir(result: TplResult) -> None:
    hits = result.http.hits_reset
    assert set(zip(hits["RequestId"], hits["ClientIpAddress"], hits["DateTime"], strict=True)) == EXPECTED_RESET
    assert "a0000019" + SUFFIX not in set(hits["RequestId"])  # the same reset answered 500
    assert [f.rsplit("/", 2)[-2:] for f in result.http.files_reset] == [["Ecp", "HttpProxy_2021030306-1.LOG"]]


def test_cve_2021_27065_set_vdir(result: TplResult) -> None:
    (hit,) = result.set_vdir
    assert hit.file == ECP_LOG
    assert (hit.first_line, hit.match_count) == (9, 2)
    assert hit.first_ts == pd.Timestamp(PLANTED.set_vdir_first_ts)
    assert hit.captured == 'function Page_Load(){eval(Request[""triage_demo_inert""],""unsafe"");}'
    assert "Set-OabVirtualDirectory.ExternalUrl=''http://f/<script" in hit.first_text


def test_cve_2021_26858(result: TplResult) -> None:
    (hit,) = result.cve26858  # the two download failures into ClientAccess\OAB (one in capitals) are not hits
    assert (hit.download_path, hit.ts) == (SHELL, pd.Timestamp("2021-03-03T06:52:30.412Z"))
    assert hit.install_root == "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\"
    assert hit.file.endswith("/OABGeneratorLog/OABGeneratorLog_20210303-1.LOG") and hit.line == 9


def test_cve_2021_26857(result: TplResult) -> None:
    ev = result.cve26857
    assert len(ev) == 1  # the NullReference error, the warning and the other provider's error are not hits
    assert ev.iloc[0]["TimeCreated"] == pd.Timestamp(PLANTED.cve26857[0])
    assert (ev.iloc[0]["MachineName"], ev.iloc[0]["Provider"]) == (
        "EXCH01.corp.example",
        "MSExchange Unified Messaging",
    )
    assert "System.InvalidCastException: Unable to cast" in ev.iloc[0]["Message"]


def test_script_result_shape(result: TplResult) -> None:
    res = result.as_script_result("EXCH01")
    assert res["IssuesFound"] is True
    assert (res["Cve26855"]["Hits"], res["Cve26857"], res["Cve27065"]["resetVDirHits"]) == (13, 1, 2)
    assert res["Cve26858"]["downloadPaths"] == [SHELL]
    assert res["Cve27065"]["setVDirMaliciousUrlLogs"] == [ECP_LOG]
    assert list(res["LogAgeDays"]) == [
        "OabGen", "Ecp", "AutoDProxy", "EasProxy", "EcpProxy", "EwsProxy", "MapiProxy", "OabProxy", "OwaProxy",
        "OwaCalendarProxy", "PowershellProxy", "RpcHttpProxy",
    ]  # fmt: skip


def test_benign_logs_have_no_hits(benign: TplResult) -> None:
    assert not len(benign.http.hits_26855) and not len(benign.http.hits_reset)
    assert benign.set_vdir == [] and benign.cve26858 == [] and not len(benign.cve26857)
    assert benign.issues_found is False
    # the pre-filter did see ServerInfo~ (health probes), the exclusions dropped them
    assert len(benign.http.files_26855) >= 9


def test_prefilter_changes_nothing_but_speed(tmp_path: Path) -> None:
    _, files = story_files(tmp_path, hostile=True)
    fast = test_proxylogon(files, prefilter=True)
    slow = test_proxylogon(files, prefilter=False)
    for a, b in ((fast.http.hits_26855, slow.http.hits_26855), (fast.http.hits_reset, slow.http.hits_reset)):
        cols = [*TPL_COLUMNS, "file", "line"]
        pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True))


def test_log_age(result: TplResult) -> None:
    ages = result.ages
    got = {k: (a.earliest.isoformat() if a.earliest is not None else None, len(a.files)) for k, a in ages.items()}
    want = {
        "OabGen": ("2021-02-01T02:00:00+00:00", 2),
        "Ecp": ("2021-02-20T10:04:59+00:00", 2),
        "EasProxy": ("2021-02-01T07:00:00+00:00", 1),
        "EcpProxy": ("2021-02-20T10:00:00+00:00", 2),
        "EwsProxy": ("2021-02-10T09:00:00+00:00", 1),
        "MapiProxy": ("2021-02-15T09:00:00+00:00", 1),
        "OabProxy": ("2021-02-15T11:00:00+00:00", 1),
        "OwaProxy": ("2020-12-28T09:00:00+00:00", 3),
        "OwaCalendarProxy": ("2021-03-01T12:00:00+00:00", 1),
        "PowershellProxy": ("2021-02-25T16:00:00+00:00", 1),
        "RpcHttpProxy": (None, 0),
    }
    auto = got.pop("AutoDProxy")
    eas = got.pop("EasProxy")
    assert got == {k: v for k, v in want.items() if k != "EasProxy"}
    assert {k for k, a in ages.items() if a.reaches_window_start} == {"OwaProxy"}
    assert ages["OwaProxy"].latest == pd.Timestamp("2021-03-05T03:06:27.696Z")
    if ages["AutoDProxy"].earliest_source == "#Date header":
        assert (auto, eas) == (("2021-01-15T08:00:00+00:00", 1), want["EasProxy"])
    else:  # the hostile files lost their headers: the first record stands in
        assert auto[0].startswith("2021-01-15T08:00:") and eas[0].startswith("2021-02-01T07:00:")
        assert ages["EasProxy"].earliest_source == "first record"


def test_cve_2021_26858_honours_the_install_root(tmp_path: Path) -> None:
    _, files = story_files(tmp_path, drive="D", install_path=r"D:\Apps\Exchange\V15")
    res = test_proxylogon(files)
    assert [h.download_path for h in res.cve26858] == [SHELL]
    assert res.cve26858[0].install_root == "D:\\Apps\\Exchange\\V15\\"
    # the same logs read as if the install were elsewhere: the OAB temp files now count, as in the script
    _, moved = story_files(tmp_path / "moved", drive="E", install_path=r"D:\Apps\Exchange\V15")
    assert len(test_proxylogon(moved).cve26858) == 3  # two OAB temp files and the shell


def _proxy_file(root: Path, rel: str, anchor: str, status: str = "200") -> LogFile:
    row = {"DateTime": "2021-03-03T01:00:00.000Z", "RequestId": "r1", "ClientIpAddress": "1.2.3.4",
           "AnchorMailbox": anchor, "HttpStatus": status}  # fmt: skip
    write_files(root, {rel: httpproxy_file([row], "2021-03-03T01:00:00.000Z").encode()})
    logical = "C:/" + rel
    return LogFile(root / rel, logical, log_type(logical, kind_of(rel)), kind_of(rel))


def test_reset_only_in_ecp_and_only_log_files(tmp_path: Path) -> None:
    ex = "Program Files/Microsoft/Exchange Server/V15/Logging/HttpProxy"
    reset = "ServerInfo~a]@x:444/ecp/DDI/DDIService.svc/SetObject?schema=ResetOABVirtualDirectory#"
    owa = _proxy_file(tmp_path, f"{ex}/Owa/HttpProxy_1.LOG", reset)
    txt = _proxy_file(tmp_path, f"{ex}/Ecp/HttpProxy_1.txt", reset)
    ecp = _proxy_file(tmp_path, f"{ex}/Ecp/sub/HttpProxy_2.log", reset)
    res = test_proxylogon([owa, txt, ecp])
    assert sorted(res.http.hits_26855["file"]) == [ecp.logical, owa.logical]  # 26855 reads every folder
    assert list(res.http.hits_reset["file"]) == [ecp.logical]  # Reset-VDir only HttpProxy/Ecp
    assert res.http.skipped == [txt.logical]  # the script filters on *.log


def test_cve_2021_26857_filters(tmp_path: Path) -> None:
    um = "MSExchange Unified Messaging"
    t = datetime(2021, 3, 3, 6, 0, tzinfo=UTC)
    events = [
        Event(1, um, "Application", time_created=t, level=2, data=["at system.invalidcastexception: x"]),
        Event(2, "msexchange unified messaging", "Application", time_created=t, level=2, data={"m": "InvalidCast"}),
        Event(3, um, "Application", time_created=t, level=1, data=["System.InvalidCastException"]),
        Event(4, um, "Application", time_created=t, level=2, data={"Detail": "System.InvalidCastException"}),
    ]
    p = tmp_path / "Application.evtx"
    p.write_bytes(evtx_bytes(events))
    other = tmp_path / "System.evtx"
    other.write_bytes(evtx_bytes(events))
    files = [
        LogFile(p, "C:/Windows/System32/winevt/Logs/Application.evtx", "unknown", "evtx"),
        LogFile(other, "C:/Windows/System32/winevt/Logs/System.evtx", "unknown", "evtx"),
    ]
    hits = check_26857(files)
    # -like '*System.InvalidCastException*' ignores case; named data counts as message text too
    assert sorted(hits["EventID"].tolist()) == [1, 4]
    assert set(hits["file"]) == {"C:/Windows/System32/winevt/Logs/Application.evtx"}


def test_story_is_deterministic() -> None:
    assert proxylogon_story().files == proxylogon_story().files
    assert proxylogon_story(hostile=True).files == proxylogon_story(hostile=True).files
