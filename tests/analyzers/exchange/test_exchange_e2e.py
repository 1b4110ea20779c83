"""End to end: a synthetic server volume with the story's logs, collected, analysed by the runner."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from exchange_support import (
    CORPUS_LOGS,
    EXPECTED_26855,
    EXPECTED_RESET,
    MY_ANALYZERS,
    SHELL,
    STORY_TOTALS,
    attrs,
    collected_case,
    run_records,
)

from analyzers.exchange.common import LogFile
from analyzers.exchange.logs import IIS, LogReader
from analyzers.exchange.rules import load_rules
from analyzers.exchange.weblogs import scan_log
from triage.case import Case
from triage.registry import logical_path
from triage.report import load_findings
from triage.runner import analyze_case
from triage.testing.exchangelogs import proxylogon_story

SUMMARY_KEYS = {
    "ComputerName", "Cve26855", "Cve26857", "Cve26858", "Cve27065", "LogAgeDays", "IssuesFound", "Suspicious",
}  # fmt: skip


@pytest.fixture(scope="module")
def compromised(tmp_path_factory: pytest.TempPathFactory) -> tuple[Case, pd.DataFrame, dict[str, int]]:
    case = collected_case(tmp_path_factory.mktemp("e2e"), proxylogon_story(hostile=True))
    summary = analyze_case(case, only=MY_ANALYZERS)
    return case, load_findings(case), dict(summary.statuses)


def test_runs_cleanly(compromised) -> None:
    case, _, statuses = compromised
    n_logs = len(case.evidence(kinds={"exchange_log", "iis_log"}))
    assert statuses == {"success": n_logs + 2}  # one unit per log, plus two host units
    assert all(r["status"] == "success" for a in MY_ANALYZERS for r in run_records(case, a))


def test_test_proxylogon_findings(compromised) -> None:
    _, df, _ = compromised
    tpl = df[df["analyzer"] == "proxylogon"]
    assert Counter(tpl["rule_id"]) == {
        "TPL-CVE-2021-26855": 13,
        "TPL-CVE-2021-27065-RESET": 2,
        "TPL-CVE-2021-27065-SET": 1,
        "TPL-CVE-2021-26858": 1,
        "TPL-CVE-2021-26857": 1,
        "TPL-LOGAGE": 12,
        "TPL-SUMMARY": 1,
    }
    hits = tpl[tpl["rule_id"] == "TPL-CVE-2021-26855"]
    got = {(a["RequestId"], a["ClientIpAddress"], a["DateTime"], a["folder"]) for a in attrs(hits)}
    assert got == EXPECTED_26855
    assert set(hits["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:23] + "Z") == {e[2] for e in EXPECTED_26855}
    assert set(hits["severity"].astype(str)) == {"high"}
    assert set(hits["mitre"]) == {"T1190"} and set(hits["cve"]) == {"CVE-2021-26855"}
    assert set(hits["ed2102_steps"]) == {"8"}
    assert all(loc.endswith(f":{a['line']}") for loc, a in zip(hits["location"], attrs(hits), strict=True))
    assert set(attrs(hits)[0]) >= {"DateTime", "RequestId", "ClientIpAddress", "UrlHost", "UrlStem", "RoutingHint",
                                   "UserAgent", "AnchorMailbox", "HttpStatus"}  # fmt: skip
    resets = tpl[tpl["rule_id"] == "TPL-CVE-2021-27065-RESET"]
    assert {(a["RequestId"], a["ClientIpAddress"], a["DateTime"]) for a in attrs(resets)} == EXPECTED_RESET
    assert set(resets["severity"].astype(str)) == {"critical"}
    (oab,) = attrs(tpl[tpl["rule_id"] == "TPL-CVE-2021-26858"])
    assert (oab["downloadPath"], oab["ts"]) == (SHELL, "2021-03-03T06:52:30.412Z")
    (setv,) = attrs(tpl[tpl["rule_id"] == "TPL-CVE-2021-27065-SET"])
    assert (setv["first_line"], setv["first_ts"], setv["match_count"]) == (9, "2021-03-03T06:49:53.772Z", 2)
    (um,) = attrs(tpl[tpl["rule_id"] == "TPL-CVE-2021-26857"])
    assert (um["TimeCreated"], um["MachineName"]) == ("2021-03-03T06:45:12.000Z", "EXCH01.corp.example")
    (summary,) = attrs(tpl[tpl["rule_id"] == "TPL-SUMMARY"])
    assert set(summary) == SUMMARY_KEYS and summary["IssuesFound"] is True
    # every hit points at the collected file it came from
    assert (hits["evidence_path"].str.contains("/exchange_log/")).all() and (hits["evidence_sha256"] != "").all()


def test_log_age_findings(compromised) -> None:
    case, df, _ = compromised
    ages = df[df["rule_id"] == "TPL-LOGAGE"]
    by = {a["column"]: a for a in attrs(ages)}
    assert {k for k, a in by.items() if a["reaches_window_start"]} == {"OwaProxy"}
    assert by["RpcHttpProxy"]["files"] == 0 and by["RpcHttpProxy"]["log_age_days"] is None
    assert by["OwaProxy"]["earliest"] == "2020-12-28T09:00:00.000Z" and by["OwaProxy"]["files"] == 4
    assert by["Ecp"]["earliest"] == "2021-02-20T10:04:59.000Z"
    collected = {logical_path(r): pd.Timestamp(r.collected_at) for r in case.evidence(kinds={"exchange_log"})}
    ref = max(collected.values())
    want = round((ref - pd.Timestamp("2020-12-28T09:00:00Z")).total_seconds() / 86400, 1)
    assert by["OwaProxy"]["log_age_days"] == want
    assert set(ages["severity"].astype(str)) == {"info"} and set(ages["ed2102_steps"]) == {"4"}
    msg = ages[ages["location"] == "logage:EcpProxy"]["message"].iloc[0]
    assert "creation times" in msg and "after 2021-01-01" in msg
    # the headerless hostile files fall back to their first records
    assert by["EasProxy"]["earliest_source"] == "first record"


def test_weblog_findings_and_coverage(compromised) -> None:
    case, df, _ = compromised
    web = df[df["analyzer"] == "exchange_weblogs"]
    counts = Counter(web.loc[web["rule_id"] != "TRIAGE-EXLOG-COV", "rule_id"])
    assert counts == STORY_TOTALS
    cov = web[web["rule_id"] == "TRIAGE-EXLOG-COV"]
    assert len(cov) == len(case.evidence(kinds={"exchange_log", "iis_log"}))
    malformed = {a["file"].rsplit("/", 2)[-2] + "/" + a["file"].rsplit("/", 1)[-1]: a["malformed_lines"]
                 for a in attrs(cov) if a["malformed_lines"]}  # fmt: skip
    assert malformed == {"Ecp/HttpProxy_2021030306-1.LOG": 3, "W3SVC1/u_ex210303.log": 1}
    heads = {a["header_source"] for a in attrs(cov)}
    assert heads == {"#Fields", "first line", "assumed default"}
    # malformed lines are in the unit warnings too
    warned = [w for r in run_records(case, "exchange_weblogs") for w in r["warnings"] if "malformed lines" in w]
    assert any("HttpProxy_2021030306-1.LOG: 3 malformed lines (2 kept" in w for w in warned)
    y = web[web["rule_id"] == "TRIAGE-EXW-013"]
    assert set(y["severity"].astype(str)) == {"critical"} and len(y) == 2


def test_narrative_findings(compromised) -> None:
    _, df, _ = compromised
    nar = df[df["analyzer"] == "proxylogon_narrative"].sort_values("location")
    assert list(nar["location"]) == ["narrative:157.230.221.198", "narrative:45.77.204.11"]
    assert list(nar["severity"].astype(str)) == ["critical", "high"]
    a = json.loads(nar["attributes"].iloc[0])
    assert (
        len(a["steps"]) == 18 and a["first"] == "2021-03-03T06:40:03.000Z" and a["last"] == "2021-03-03T06:59:23.212Z"
    )
    assert [s["ts"] for s in a["steps"]] == sorted(s["ts"] for s in a["steps"])
    msg = nar["message"].iloc[0]
    assert msg.splitlines()[1].startswith("1. 2021-03-03T06:40:03.000Z [IIS/W3SVC1] POST /owa/auth/Current/themes")
    assert "6. 2021-03-03T06:49:53.772Z [ECP, HttpProxy/Ecp, IIS/W3SVC1, IIS/W3SVC2]" in msg
    assert nar["cve"].iloc[0] == "CVE-2021-26855,CVE-2021-27065"


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Case, pd.DataFrame]:
    case = collected_case(tmp_path_factory.mktemp("e2e-benign"), proxylogon_story(attack=False))
    analyze_case(case, only=MY_ANALYZERS)
    return case, load_findings(case)


def test_benign_server_gets_only_info(benign) -> None:
    _, df = benign
    assert set(df["severity"].astype(str)) == {"info"}
    assert set(df["rule_id"]) == {"TPL-LOGAGE", "TPL-SUMMARY", "TRIAGE-EXLOG-COV"}
    (summary,) = attrs(df[df["rule_id"] == "TPL-SUMMARY"])
    assert summary["IssuesFound"] is False
    assert "nothing suspicious detected" in df.loc[df["rule_id"] == "TPL-SUMMARY", "title"].iloc[0]


def test_rerun_reuses_every_unit(benign) -> None:
    case, _ = benign
    again = analyze_case(case, only=MY_ANALYZERS)
    assert again.reused == again.planned and not again.statuses


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["PLS_iis7_owa.log", "PLS_iis10.log"])
def test_plaso_iis_logs(name: str) -> None:
    path = CORPUS_LOGS / name
    if not path.exists():
        pytest.skip(f"corpus file {path} is not present")
    f = LogFile(path, f"C:/inetpub/logs/LogFiles/W3SVC1/{name}", IIS, "iis_log")
    hits, counts, span, reader = scan_log(f, load_rules())
    assert reader.stats.malformed_lines == 0 and reader.stats.dropped_lines == 0
    assert reader.stats.rows == {"PLS_iis7_owa.log": 3, "PLS_iis10.log": 1}[name]
    assert span["first"] is not None and span["first"].year in (2015, 2021)
    assert not [r for r, _ in hits if r.severity in ("high", "critical")]
    assert counts == Counter()
    frames = list(LogReader(path, IIS).frames())
    assert sum(len(x) for x in frames) == reader.stats.rows


@pytest.mark.corpus
def test_plaso_iis_logs_through_the_runner(tmp_path: Path) -> None:
    files = {n: CORPUS_LOGS / n for n in ("PLS_iis7_owa.log", "PLS_iis10.log")}
    if not all(p.exists() for p in files.values()):
        pytest.skip(f"corpus logs not present under {CORPUS_LOGS}")
    ls = proxylogon_story(attack=False)
    ls.files = {f"inetpub/logs/LogFiles/W3SVC3/{n}": p.read_bytes() for n, p in files.items()}
    case = collected_case(tmp_path, ls)
    analyze_case(case, only=("exchange_weblogs",))
    df = load_findings(case)
    mine = df[df["evidence_path"].str.contains("W3SVC3")]
    assert len(mine) == 2 and set(mine["rule_id"]) == {"TRIAGE-EXLOG-COV"}
    assert all(a["malformed_lines"] == 0 for a in attrs(mine))


def test_damaged_hit_row_does_not_break_the_unit(tmp_path: Path) -> None:
    """A hit whose DateTime is garbage still becomes a finding (without a time); the unit succeeds."""
    ls = proxylogon_story(attack=False)
    ex = ls.install + "/Logging/HttpProxy/Ecp/HttpProxy_2021030399-1.LOG"
    ls.files = {
        ex: (
            b"#Fields: DateTime,RequestId,ClientIpAddress,AnchorMailbox,HttpStatus\r\n"
            b"2021-03-0\x00T??,r-bad,1.2.3.4,ServerInfo~a]@x:444/ecp/proxyLogon.ecp#,241,extra\r\n"
        )
    }
    case = collected_case(tmp_path, ls)
    summary = analyze_case(case, only=("proxylogon",))
    assert dict(summary.statuses) == {"success": 1}
    df = load_findings(case)
    hit = df[df["rule_id"] == "TPL-CVE-2021-26855"]
    assert len(hit) == 1 and pd.isna(hit["ts"].iloc[0])
    assert attrs(hit)[0]["RequestId"] == "r-bad"
    (rec,) = run_records(case, "proxylogon")
    assert any("1 malformed lines" in w for w in rec["warnings"])


def test_hits_beyond_the_listed_ones_are_counted_under_the_checks_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_PER_CHECK a check's hits become one overflow finding: its rule id and level, a short title, step 8."""
    from analyzers.exchange import proxylogon

    monkeypatch.setattr(proxylogon, "MAX_PER_CHECK", 5)
    case = collected_case(tmp_path, proxylogon_story(hostile=True))
    analyze_case(case, only=("proxylogon",))
    df = load_findings(case)
    over = df[df["location"] == "overflow"]
    assert sorted(over["rule_id"]) == ["TPL-CVE-2021-26855"]
    row = over.iloc[0]
    assert (row["rule_title"], str(row["severity"]), row["confidence"], row["ed2102_steps"]) == (
        "CVE-2021-26855 SSRF (Test-ProxyLogon)",
        "high",
        "medium",
        "8",
    )
    assert (row["mitre"], row["cve"], row["tags"], row["references"]) == ("", "", "", "")
    assert json.loads(row["attributes"]) == {"total_hits": 13, "listed": 5}
    assert (df["rule_id"] == "TPL-CVE-2021-26855").sum() == 6  # five listed, one count
