"""SigmaHQ-style webserver and proxy rules over IIS and HttpProxy logs (analyzers/weblog_sigma.py).

Own rules written in SigmaHQ's field vocabulary run over IIS logs built with triage.testing.exchangelogs; the
real SigmaHQ set runs too when TRIAGE_SIGMAHQ names a checkout (never committed here).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import pytest

from analyzers.weblog_sigma import CHANNEL, WebLogSigma, sigma_frame
from triage.case import ManifestRow
from triage.errors import Skip
from triage.registry import Unit
from triage.sigma import load_rules
from triage.testing.exchangelogs import iis_header, iis_line

IIS_LOGICAL = r"C:\inetpub\logs\LogFiles\W3SVC1\u_ex210303.log"

WEB_RULE = """
title: Test ECP Script Request
id: 5b0d5a8e-3c1f-4c57-9a0b-2f1e3d4c5b6a
status: test
logsource:
  category: webserver
detection:
  selection:
    cs-method: POST
    cs-uri-query|contains: '/ecp/'
    cs-uri-query|endswith: '.js'
    sc-status: 200
  condition: selection
level: high
"""
PROXY_RULE = """
title: Test Web Shell Client Agent
id: 0c7e2b4a-9d1f-4e3a-8b5c-6a7d8e9f0a1b
status: test
logsource:
  category: proxy
detection:
  selection:
    c-useragent|contains: 'antSword'
    c-uri-extension: 'aspx'
  condition: selection
level: medium
"""
WINDOWS_RULE = """
title: Not A Web Rule
id: 7f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0
status: test
logsource:
  product: windows
  category: process_creation
detection:
  selection:
    Image|endswith: '\\cmd.exe'
  condition: selection
level: high
"""


def _iis_log(path: Path) -> Path:
    rows = [
        {"date": "2021-03-03", "time": "02:41:12", "s-ip": "10.0.0.5", "cs-method": "POST", "cs-uri-stem": "/ecp/y.js",
         "cs-uri-query": "", "s-port": "443", "c-ip": "203.0.113.9", "cs(User-Agent)": "ExchangeServicesClient/0.0.0.0",
         "sc-status": "200"},
        {"date": "2021-03-03", "time": "02:43:05", "s-ip": "10.0.0.5", "cs-method": "POST",
         "cs-uri-stem": "/aspnet_client/system_web/log.aspx", "cs-uri-query": "x=1", "s-port": "443",
         "c-ip": "203.0.113.9", "cs(User-Agent)": "antSword/v2.1", "sc-status": "200"},
        {"date": "2021-03-03", "time": "08:00:00", "s-ip": "10.0.0.5", "cs-method": "GET", "cs-uri-stem": "/owa/",
         "cs-uri-query": "", "s-port": "443", "c-ip": "10.0.0.40", "cs(User-Agent)": "Mozilla/5.0 (Windows NT 10.0)",
         "sc-status": "200"},
        {"date": "2021-03-03", "time": "08:00:01", "s-ip": "10.0.0.5", "cs-method": "GET", "cs-uri-stem": "/ecp/a.js",
         "cs-uri-query": "", "s-port": "443", "c-ip": "10.0.0.40", "cs(User-Agent)": "Mozilla/5.0", "sc-status": "200"},
    ]  # fmt: skip
    lines = iis_header("2021-03-03 00:00:00") + [iis_line(r) for r in rows]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


def _unit(tmp_path: Path, analyzer: WebLogSigma, log: Path) -> Unit:
    data = log.read_bytes()
    row = ManifestRow(
        artifact_id="A00001", kind="iis_log", outcome="success", source_host="EXCH01", source_path=IIS_LOGICAL,
        collector="test", collector_version="1", collected_at="2021-03-04T10:00:00Z",
        relpath="evidence/EXCH01/iis_log/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log", size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )  # fmt: skip
    return Unit(case_id="CASE-T", case_dir=tmp_path, host="EXCH01", evidence=row, path=log, analyzer=analyzer)


@pytest.fixture
def rule_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "web_ecp_js.yml").write_text(WEB_RULE)
    (d / "proxy_antsword.yml").write_text(PROXY_RULE)
    (d / "proc_cmd.yml").write_text(WINDOWS_RULE)
    return d


def test_webserver_and_proxy_rules_run_over_an_iis_log(tmp_path: Path, rule_dir: Path):
    analyzer = WebLogSigma({"sigma": [str(rule_dir)]})
    assert {p.name for p in analyzer.rule_paths()} == {"web_ecp_js.yml", "proxy_antsword.yml"}
    assert analyzer.ruleset.skipped == []
    log = _iis_log(tmp_path / "u_ex210303.log")
    findings = list(analyzer.analyze(_unit(tmp_path, analyzer, log)))
    got = sorted((f.rule_title, f.severity, f.location) for f in findings)
    assert got == [
        ("Test ECP Script Request", "high", "u_ex210303.log:5"),
        ("Test Web Shell Client Agent", "medium", "u_ex210303.log:6"),
    ]
    ecp = next(f for f in findings if f.rule_title == "Test ECP Script Request")
    assert str(ecp.ts) == "2021-03-03 02:41:12+00:00"
    assert "POST /ecp/y.js -> 200 from 203.0.113.9" in ecp.title


def test_without_web_rules_the_log_is_skipped_not_clean(tmp_path: Path):
    only_windows = tmp_path / "win"
    only_windows.mkdir()
    (only_windows / "proc_cmd.yml").write_text(WINDOWS_RULE)
    log = _iis_log(tmp_path / "u_ex210303.log")
    for options in ({}, {"sigma": [str(only_windows)]}):
        analyzer = WebLogSigma(options)
        with pytest.raises(Skip, match="no --sigma set with webserver or proxy rules"):
            list(analyzer.analyze(_unit(tmp_path, analyzer, log)))


def test_sigma_frame_maps_both_vocabularies():
    norm = pd.DataFrame(
        {
            "log": ["iis"], "client_ip": ["198.51.100.4"], "method": ["POST"], "uri_stem": ["/owa/auth/x.aspx"],
            "uri_query": ["cmd=whoami"], "status": ["200"], "user_agent": ["curl/7.1"], "username": [""], "host": ["m"],
        }
    )  # fmt: skip
    row = sigma_frame(norm).iloc[0]
    assert row["Channel"] == CHANNEL
    assert row["cs-uri-query"] == row["c-uri"] == "/owa/auth/x.aspx?cmd=whoami"
    assert (row["cs-uri-stem"], row["c-uri-query"], row["c-uri-extension"]) == (
        "/owa/auth/x.aspx",
        "cmd=whoami",
        "aspx",
    )
    assert (row["cs-user-agent"], row["c-useragent"], row["c-ip"], row["src_ip"]) == ("curl/7.1",) * 2 + (
        "198.51.100.4",
    ) * 2


@pytest.mark.skipif(not os.environ.get("TRIAGE_SIGMAHQ"), reason="TRIAGE_SIGMAHQ (a SigmaHQ/sigma checkout) not set")
def test_sigmahq_web_rules_load_and_run(tmp_path: Path):
    root = Path(os.environ["TRIAGE_SIGMAHQ"])
    sets = [p for p in (root / "rules" / "web", root / "rules-emerging-threats") if p.is_dir()]
    analyzer = WebLogSigma({"sigma": [str(p) for p in sets]})
    ruleset = analyzer.ruleset
    assert len(ruleset.loaded) >= 50
    unknown = [s for s in ruleset.skipped if "category=webserver" in s.reason or "category=proxy" in s.reason]
    assert not unknown, unknown[:5]
    list(analyzer.analyze(_unit(tmp_path, analyzer, _iis_log(tmp_path / "u_ex210303.log"))))
    assert ruleset.runtime_errors == []
    full = load_rules(sets)  # the whole emerging-threats set: web rules no longer fall out as unknown logsources
    assert not [s for s in full.skipped if "category=webserver" in s.reason]
