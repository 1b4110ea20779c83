"""Test-ProxyLogon.ps1's own CSV/log outputs in the evidence: the script ran, and what it found."""

from __future__ import annotations

import codecs
import json

import pandas as pd
import pytest

from analyzers.exchange.tploutput import identify, read_table
from collectors.collect import collect_files
from collectors.sources import open_source_path
from triage.case import Case
from triage.results import unit_records
from triage.runner import analyze_case

H26855 = (
    '"DateTime","RequestId","ClientIPAddress","UrlHost","UrlStem","RoutingHint","UserAgent","AnchorMailbox",'
    '"HttpStatus"'
)
ROW1 = (
    '"2021-03-03T06:49:46.210Z","a0000003-5c1e","157.230.221.198","10.0.0.5","/ecp/y.js","X-BEResource-Cookie",'
    '"python-requests/2.25.1","ServerInfo~a]@EXCH01.corp.example:444/ecp/proxyLogon.ecp?#","241"'
)
# the same columns in another order (a re-export), so only the header can place them
REORDERED = (
    '"HttpStatus","AnchorMailbox","ClientIPAddress","DateTime","RequestId","UrlStem"\n'
    '"200","ServerInfo~a]@EXCH01.corp.example:444/ecp/DDI/DDIService.svc/SetObject?#","45.77.204.11",'
    '"2021-03-03T07:15:20.005Z","d0000001-5c1e","/ecp/y.js"\n'
)
TPL_SET = {
    "EXCH01-Cve-2021-26855.csv": "#TYPE System.Management.Automation.PSCustomObject\n" + H26855 + "\n" + ROW1 + "\n",
    "EXCH01-Cve-2021-26857.csv": '"TimeCreated","MachineName","Message"\n',
    "EXCH01-Cve-2021-26858-DownloadPaths.log": "'C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\Dk2jQ8ab.aspx'\n",
    "EXCH01-LogAgeDays.csv": '"OabGen","Ecp","AutoDProxy","EasProxy","EcpProxy"\n"120.5","98.1","130","130","130"\n',
    "reexport.csv": REORDERED,
}


def test_identify_by_name_or_header() -> None:
    assert identify("EXCH01-Cve-2021-26855.csv", [])[0] == "EXCH01"
    assert identify("EX-2-Cve-2021-27065-ResetVDir.csv", [])[1].rule_id == "TPL-OUT-CVE-2021-27065-RESET"
    header, rows = read_table(REORDERED)
    assert identify("reexport.csv", header)[1].rule_id == "TPL-OUT-CVE-2021-26855"
    assert rows[0]["ClientIPAddress"] == "45.77.204.11" and rows[0]["HttpStatus"] == "200"
    assert identify("notes.csv", ["a", "b"]) == ("", None)
    utf16 = codecs.BOM_UTF16_LE + (H26855 + "\n" + ROW1 + "\n").encode("utf-16-le")
    from analyzers.exchange.tploutput import _text

    assert read_table(_text(utf16))[1][0]["RequestId"] == "a0000003-5c1e"


@pytest.fixture(scope="module")
def tpl_case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    root = tmp_path_factory.mktemp("tpl")
    src = root / "Test-ProxyLogonLogs"
    src.mkdir()
    for name, text in TPL_SET.items():
        (src / name).write_text(text, encoding="utf-8")
    (src / "readme.csv").write_text("a,b\n1,2\n")
    (src / "EXCH01-other.csv").write_text('"Type","Path"\n"x","' + "A" * 200_000 + '"\n')  # over csv's field limit
    case = Case.create_or_open(root / "case", examiner="pytest", case_id="CASE-TPL")
    collect_files(case, open_source_path(str(src), "files"), host="EXCH01", kind="testproxylogon_csv")
    analyze_case(case, only=("testproxylogon_output",))
    return case


def _findings(case: Case) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in sorted((case.path / "results" / "testproxylogon_output").glob("*.parquet"))]
    return pd.concat(frames, ignore_index=True)


def test_script_outputs_become_findings(tpl_case: Case) -> None:
    df = _findings(tpl_case)
    files = df[df["rule_id"] == "TPL-OUT-FILE"]
    assert sorted(json.loads(a)["script_output"] for a in files["attributes"]) == sorted(TPL_SET)
    assert {json.loads(a)["computer"] for a in files["attributes"]} == {"EXCH01", ""}
    hits = df[df["rule_id"] == "TPL-OUT-CVE-2021-26855"].sort_values("ts")
    attrs = [json.loads(a) for a in hits["attributes"]]
    assert [(a["ClientIPAddress"], a["HttpStatus"], a["RequestId"]) for a in attrs] == [
        ("157.230.221.198", "241", "a0000003-5c1e"),
        ("45.77.204.11", "200", "d0000001-5c1e"),
    ]
    assert hits["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:23].tolist() == [
        "2021-03-03T06:49:46.210",
        "2021-03-03T07:15:20.005",
    ]
    assert set(hits["severity"]) == {"high"} and set(hits["cve"]) == {"CVE-2021-26855"}
    path = df[df["rule_id"] == "TPL-OUT-CVE-2021-26858-PATH"]
    assert path["severity"].tolist() == ["critical"]  # into a web folder
    assert json.loads(path["attributes"].iat[0])["Path"].endswith("Dk2jQ8ab.aspx'")
    assert df[df["rule_id"] == "TPL-OUT-CVE-2021-26857"].empty  # header only: the script found nothing
    age = df[df["rule_id"] == "TPL-OUT-LOGAGE"]
    assert age["severity"].tolist() == ["info"] and json.loads(age["attributes"].iat[0])["OabGen"] == "120.5"


def test_unknown_csv_is_skipped_with_the_reason(tpl_case: Case) -> None:
    recs = [rec for _, rec in unit_records(tpl_case.path, ["testproxylogon_output"])]
    skipped = [r for r in recs if r["status"] == "skipped"]
    why = sorted(r["message"] for r in skipped)
    assert len(why) == 2 and why[0].startswith("EXCH01-other.csv: not a readable CSV (field larger than field limit")
    assert "readme.csv: neither the name nor the header" in why[1]
    assert sum(r["status"] == "success" for r in recs) == len(TPL_SET)
