"""The ``yara`` and ``webshell_heuristics`` analyzers end to end: volume -> case -> analyze -> findings, and the CLI."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from yara_support import APPWEB_SHELL, MINIDUMP_LSASS, OBFUSCATED_PAGE, STOCK_PAGE

from analyzers.yara.heuristics import in_window, measure
from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage import registry
from triage.case import Case
from triage.cli import main
from triage.errors import ExitCode
from triage.report import load_findings
from triage.results import unit_records
from triage.runner import analyze_case
from triage.testing.volume import VolumeSpec, build_volume

OURS = ("yara", "webshell_heuristics")
TEMP_ASPNET = "Windows/Microsoft.NET/Framework64/v4.0.30319/Temporary ASP.NET Files/owa/3a1b2c3d/5e6f7a8b"
EXTRA = {
    "inetpub/wwwroot/aspnet_client/system_web/4_0_30319/errorFF.aspx": OBFUSCATED_PAGE,
    f"{TEMP_ASPNET}/App_Web_x1y2z3ab.dll": APPWEB_SHELL,
    "root/dbg.bin": MINIDUMP_LSASS,
    "inetpub/wwwroot/portal/default.aspx": STOCK_PAGE,
}
OLD = datetime(2020, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Case, object]:
    """A compromised volume with extra planted files, collected and analyzed by our two analyzers (2 workers)."""
    root = tmp_path_factory.mktemp("e2e")
    vol = build_volume(root / "vol", VolumeSpec(extra_files=EXTRA))
    stamp = OLD.timestamp()
    os.utime(vol / "inetpub/wwwroot/portal/default.aspx", (stamp, stamp))  # a page from before the window
    case = Case.create_or_open(root / "case", examiner="tester", case_id="CASE-YARA")
    collect_volume(case, open_source_path(str(vol)), host=None)
    summary = analyze_case(case, jobs=2, only=OURS)
    return case, summary


_FRAMES: dict[str, object] = {}


def _rows(case: Case):
    """The case's findings with a file-name column (read once per module: the analysis does not change)."""
    if str(case.path) not in _FRAMES:
        df = load_findings(case)
        df["name"] = [json.loads(a).get("path", "").rsplit("/", 1)[-1] for a in df["attributes"]]
        _FRAMES[str(case.path)] = df
    return _FRAMES[str(case.path)].copy()


def test_units_ran_without_errors(analyzed) -> None:
    case, summary = analyzed
    assert summary.errors == [] and summary.planned > 0
    assert set(summary.statuses) <= {"success", "no_findings"}
    for _, rec in unit_records(case.path, ["yara"]):  # single and batch records
        assert rec["warnings"] == [], rec  # no skipped rule files, no scan timeouts
    kinds = {r.kind for r in case.evidence()}
    assert "memory_image" not in registry.analyzers()["yara"].consumes
    assert {"web_file", "suspicious_file", "exchange_log", "iis_log"} <= kinds


def test_oab_shell_found_by_yara(analyzed) -> None:
    case, _ = analyzed
    df = _rows(case)
    oab = df[(df["analyzer"] == "yara") & (df["name"] == "Dk2jQ8ab.aspx")]
    assert set(oab["rule_id"]) == {"TRIAGE-YARA-001", "TRIAGE-YARA-004", "TRIAGE-YARA-010"}
    assert set(oab["severity"].astype(str)) == {"critical"}
    row = oab[oab["rule_id"] == "TRIAGE-YARA-010"].iloc[0]
    attrs = json.loads(row["attributes"])
    assert attrs["rule_file"] == "webshells_aspx.yar" and attrs["namespace"] == "triage/webshells_aspx"
    assert attrs["rule"] == "TRIAGE_WEBSHELL_OAB_Export_Script" and attrs["engine"] == "yara-x"
    assert len(attrs["rule_sha256"]) == 64 and attrs["externals"]["extension"] == ".aspx"
    assert attrs["strings"] and all({"id", "offset", "length", "data"} <= set(s) for s in attrs["strings"])
    first = min(attrs["strings"], key=lambda s: s["offset"])
    assert row["location"] == f"offset {first['offset']}"
    assert "CVE-2021-27065" in row["cve"] and row["ed2102_steps"] == "8,10" and row["mitre"].startswith("T1505.003")
    assert row["ts"] == datetime(2021, 3, 3, 2, 14, 7, tzinfo=UTC)


def test_planted_binaries_found_by_yara(analyzed) -> None:
    case, _ = analyzed
    df = _rows(case)
    yara = df[df["analyzer"] == "yara"]
    by_name = {n: set(g["rule_id"]) for n, g in yara.groupby("name")}
    assert by_name["dbg.bin"] == {"TRIAGE-YARA-040"}
    assert by_name["App_Web_x1y2z3ab.dll"] == {"TRIAGE-YARA-070"}
    # the volume's own procdump-style minidump names lsass.exe and lsasrv.dll in its module list; the zip
    # holds one too, but compressed, so its bytes match nothing
    assert by_name["lsass.dmp"] == {"TRIAGE-YARA-040"} and "it.zip" not in by_name
    assert {"iisstart.htm", "logon.aspx", "default.aspx"}.isdisjoint(by_name)


def test_heuristics_findings(analyzed) -> None:
    case, _ = analyzed
    df = _rows(case)
    h = df[df["analyzer"] == "webshell_heuristics"]
    by_name = {n: set(g["rule_id"]) for n, g in h.groupby("name")}
    assert by_name["errorFF.aspx"] == {
        "TRIAGE-WSH-001",
        "TRIAGE-WSH-010",
        "TRIAGE-WSH-011",  # the blob is one 4000-character line
        "TRIAGE-WSH-012",
        "TRIAGE-WSH-013",
        "TRIAGE-WSH-020",
    }
    combo = h[(h["name"] == "errorFF.aspx") & (h["rule_id"] == "TRIAGE-WSH-020")].iloc[0]
    assert str(combo["severity"]) == "high"
    # the OAB export carries a JScript eval of request input: the behaviour rule, and the window pointer
    assert by_name["Dk2jQ8ab.aspx"] == {"TRIAGE-WSH-001", "TRIAGE-WSH-030"}
    oab = h[(h["name"] == "Dk2jQ8ab.aspx") & (h["rule_id"] == "TRIAGE-WSH-030")].iloc[0]
    assert str(oab["severity"]) == "critical" and "eval(" in oab["message"]
    assert json.loads(oab["attributes"])["flows"][0]["class"] == "eval"
    # written in the window, nothing else: a low pointer for the timeline (stock owa pages included)
    assert by_name["logon.aspx"] == {"TRIAGE-WSH-001"}
    assert "default.aspx" not in by_name  # modified 2020-06-01, plain page
    assert "iisstart.htm" not in by_name
    assert set(h[h["rule_id"] == "TRIAGE-WSH-001"]["severity"].astype(str)) == {"low"}


def test_rerun_reuses_finished_units(analyzed) -> None:
    case, _ = analyzed
    again = analyze_case(case, jobs=1, only=OURS)
    assert again.reused == again.planned and again.findings == 0


def test_window_bounds() -> None:
    assert not in_window("2020-12-31T23:59:59Z")
    assert in_window("2021-01-01T00:00:00Z") and in_window("2021-04-30T23:59:59.999999Z")
    assert not in_window("2021-05-01T00:00:00Z") and not in_window(None) and not in_window("garbage")


def test_obfuscation_measures() -> None:
    s = measure(OBFUSCATED_PAGE, ".aspx")
    assert s.entropy >= 5.7 and s.base64_longest >= 4000 and s.charcodes == len("cmd.exe /c whoami")
    plain = measure(STOCK_PAGE, ".aspx")
    assert plain.hits == [] and 0 < plain.entropy < 5.0
    # client-side script and inline images are not server code
    page = (
        b'<%@ Page %><script>var s = "'
        + b"QUJD" * 200
        + b'";</script><img src="data:image/png;base64,'
        + (b"iVBORw0KGgo" * 40)
        + b'" />'
    )
    assert measure(page, ".aspx").hits == []
    handler = b'<%@ WebHandler Language="C#" Class="H" %>\n' + b"x" * 2000 + b"\n"
    assert measure(handler, ".ashx").hits == ["TRIAGE-WSH-011"]


# -- the command line ---------------------------------------------------------------------------------------
THIRD_PARTY_RULE = b"""
rule TP_Script_Page_In_AspnetClient : webshell
{
    meta:
        description = "third-party style rule: a script page with a random 8-character name in aspnet_client"
        author = "someone else"
        score = 85
    strings:
        $script = "<script" nocase
    condition:
        $script and extension == ".aspx" and filepath contains "\\\\aspnet_client\\\\"
        and filename matches /^[A-Za-z0-9]{8}\\.aspx$/ and filetype == "UNKNOWN"
}

rule TP_Exe_Named_Aspx
{
    meta:
        description = "never matches here: needs an executable"
    strings:
        $script = "<script" nocase
    condition:
        $script and filetype == "EXE"
}
"""
LEGACY_RULE = b"rule TP_Legacy_Regex { strings: $v = /\\${\\$[0-9a-zA-z]+}/ condition: $v }\n"
BROKEN_RULE = b"rule TP_Broken { condition: not_defined_anywhere }\n"


def test_cli_yara_dir_with_externals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vol = build_volume(tmp_path / "vol", VolumeSpec())
    rules = tmp_path / "signature-base" / "yara"
    rules.mkdir(parents=True)
    (rules / "tp_webshells.yar").write_bytes(THIRD_PARTY_RULE)
    (rules / "tp_legacy.yar").write_bytes(LEGACY_RULE)
    (rules / "tp_broken.yar").write_bytes(BROKEN_RULE)
    case_dir = tmp_path / "case"
    assert main(["collect", str(vol), "--case", str(case_dir), "-q"]) == 0
    capsys.readouterr()
    code = main(["analyze", str(case_dir), "--only", "yara", "--yara", str(rules), "-j", "1", "-q", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["yara"]["loaded"] == 7 and out["yara"]["skipped"] == 1  # 5 own files + 2 of the 3 third-party
    assert out["yara"]["skipped_files"] == ["tp_broken.yar"]
    assert out["yara"]["by_engine"]["yara-x-relaxed"] == 1  # the default fallback: yara-x in libyara regex mode
    loaded = json.loads((case_dir / "runs" / "yara-rules.json").read_text())
    by_file = {Path(f["path"]).name: f for f in loaded["files"]}
    assert by_file["tp_legacy.yar"]["engine"] == "yara-x-relaxed" and "E014" in by_file["tp_legacy.yar"]["message"]
    assert by_file["tp_broken.yar"]["status"] == "skipped"
    assert "not_defined_anywhere" in by_file["tp_broken.yar"]["message"]
    custody = [json.loads(line) for line in (case_dir / "custody.jsonl").read_text().splitlines()]
    loads = [e for e in custody if e["action"] == "rules_loaded" and e["details"].get("engine") == "yara"]
    assert loads and loads[-1]["details"]["skipped_files"] == ["tp_broken.yar"]

    df = load_findings(Case.open(case_dir))
    tp = df[df["rule_id"].astype(str).str.startswith("TP_")]
    assert list(tp["rule_id"]) == ["TP_Script_Page_In_AspnetClient"]
    row = tp.iloc[0]
    attrs = json.loads(row["attributes"])
    assert attrs["path"].endswith("aspnet_client/system_web/Dk2jQ8ab.aspx")
    assert str(row["severity"]) == "high"  # score 85
    assert attrs["meta"] == {
        "description": "third-party style rule: a script page with a random 8-character name in aspnet_client",
        "author": "someone else",
        "score": 85,
    }
    assert attrs["rule_origin"] == "third_party" and attrs["namespace"] == "yara/tp_webshells"
    assert "third_party" in row["tags"] and "webshell" in row["tags"] and row["ed2102_steps"] == "8,13"
    # every unit says which rule file did not load
    run = next(rec for _, rec in unit_records(case_dir, ["yara"]))
    assert any("tp_broken.yar" in w for w in run["warnings"])


def test_cli_yara_missing_dir_is_a_usage_error(tmp_path: Path) -> None:
    case_dir = tmp_path / "case"
    Case.create_or_open(case_dir, examiner="t", case_id="C").close()
    code = main(["analyze", str(case_dir), "--only", "yara", "--yara", str(tmp_path / "nope"), "-q"])
    assert code == int(ExitCode.USAGE)
