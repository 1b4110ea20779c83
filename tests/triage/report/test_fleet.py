"""The fleet report: hostile host names and finding text, damaged host cases, totals and disconnect rules."""

from __future__ import annotations

import contextlib
import csv
import html
import html.parser
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from triage.cli import main
from triage.errors import ExitCode
from triage.report.fleet import build_fleet_report, cisa_fleet_frame, disconnect_reasons, fleet_totals
from triage.report.html import csp_hash
from triage.testing.fleet import BUILDS, build_fleet

SCRIPT_NAME = "<script>alert(1)</script>"
FORMULA_NAME = "-2+3"  # safe_host keeps the leading "-": a formula start
ONLY = "webshell_locations,webshell_heuristics,registry_hostinfo,registry_exchange"
SHELL = "<img src=x onerror=alert(2)>.aspx"
# a page that evaluates request input: the place alone is only suspicious, what the page does is compromise
SHELL_PAGE = b"<%@ Page Language='JScript' %><% eval(Request.Item['z'], 'unsafe'); %>"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Two hosts whose computer names are markup and a formula; one holds a web shell with a markup name."""
    base = tmp_path_factory.mktemp("hostile")
    hosts = build_fleet(
        base / "src",
        2,
        seed=5,
        names=[SCRIPT_NAME, FORMULA_NAME],
        extra_files={SCRIPT_NAME: {f"inetpub/wwwroot/aspnet_client/{SHELL}": SHELL_PAGE}},
    )
    out = base / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["run", *(str(h.source) for h in hosts), "--case", str(out), "--json", "-q", "--only", ONLY])
    return {"hosts": hosts, "out": out, "code": code, "json": json.loads(buf.getvalue())}


def test_hostile_names_are_escaped_in_the_fleet_page(hostile) -> None:
    assert hostile["code"] == ExitCode.OK
    out: Path = hostile["out"]
    # folder names come from the safe host naming of triage.case
    assert sorted(p.name for p in (out / "hosts").iterdir()) == ["-2_3", "_script_alert_1___script_"]
    page = (out / "fleet" / "fleet.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower()  # the page has no script of its own, and none gets in
    assert "<img" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the computer name, shown as text
    # the web shell's name reaches the finding title as the case stored it (percent-encoded), inert
    assert "aspnet_client: %3Cimg src=x onerror=alert(2)%3E.aspx" in page
    csp = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1))
    assert "default-src 'none'" in csp and "script-src 'none'" in csp
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    assert csp_hash(style) in csp  # the only style allowed is this page's own
    assert 'href="../hosts/_script_alert_1___script_/report/report.html"' in page


def test_hostile_names_are_formula_safe_in_the_csv_files(hostile) -> None:
    out: Path = hostile["out"]
    with open(out / "fleet" / "fleet.csv", newline="", encoding="utf-8") as fh:
        rows = {r["host"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"'-2_3", "_script_alert_1___script_"}
    assert rows["'-2_3"]["computer_name"] == "'-2+3"
    assert rows["_script_alert_1___script_"]["computer_name"] == SCRIPT_NAME
    for row in rows.values():
        assert not any(v.startswith(("=", "+", "-", "@")) for v in row.values())
    with open(out / "fleet" / "cisa_fleet.csv", newline="", encoding="utf-8") as fh:
        cisa = {r["item"]: r for r in csv.DictReader(fh)}
    assert cisa["Total hosted Exchange servers"]["count"] == "2"
    assert cisa["Total hosted Exchange servers"]["hosts"] == "'-2_3; _script_alert_1___script_"
    # the JSON keeps the text as it is (it is data, not a spreadsheet)
    doc = json.loads((out / "fleet" / "fleet.json").read_text(encoding="utf-8"))
    assert {r["computer_name"] for r in doc["hosts"]} == {SCRIPT_NAME, FORMULA_NAME}


def test_the_web_shell_host_is_compromised_by_the_named_page(hostile) -> None:
    doc = json.loads((hostile["out"] / "fleet" / "fleet.json").read_text(encoding="utf-8"))
    row = next(r for r in doc["hosts"] if r["host"] == "_script_alert_1___script_")
    assert row["verdict"] == "compromised"
    assert any(t["title"].endswith("%3Cimg src=x onerror=alert(2)%3E.aspx") for t in row["top"])


def test_a_damaged_host_case_is_reported_not_hidden(hostile, tmp_path: Path) -> None:
    copy = tmp_path / "fleet"
    shutil.copytree(hostile["out"], copy)
    (copy / "hosts" / "-2_3" / "report" / "ledger.json").unlink()
    res = build_fleet_report(
        copy, {"-2_3": copy / "hosts" / "-2_3", "ok": copy / "hosts" / "_script_alert_1___script_"}
    )
    rows = {r["host"]: r for r in res.hosts}
    assert rows["-2_3"]["verdict"] == "not triaged"
    assert "no complete report" in rows["-2_3"]["problems"][0]
    assert rows["ok"]["problems"] == [] and rows["ok"]["exchange_build"]
    assert res.totals["counts"]["not_triaged"] == 1
    assert res.totals["hosts"]["not_triaged"] == ["-2_3"]
    assert set(res.hashes) == {"fleet.json", "fleet.csv", "cisa_fleet.csv", "fleet.html"}


def test_disconnect_follows_the_directive() -> None:
    assert disconnect_reasons("compromised", "yes") == ["indications of compromise (ED 21-02 action 3)"]
    assert disconnect_reasons("no indications found", "no") == ["April 2021 SU missing (Supplemental Direction v2)"]
    assert len(disconnect_reasons("compromised", "no")) == 2
    assert disconnect_reasons("suspicious", "yes") == []  # deep forensics (action 2), not disconnect by rule
    assert disconnect_reasons("no indications found", "unknown") == []


def _row(host: str, **kw: object) -> dict[str, object]:
    base = {
        "host": host,
        "verdict": "no indications found",
        "exchange_version": "2016",
        "build_status": "patched",
        "patched_march_2021": "yes",
        "updated_april_2021": "yes",
        "to_disconnect": False,
        "failed_steps": [],
    }
    return base | kw


def test_totals_count_each_group_with_its_hosts() -> None:
    rows = [
        _row("A"),
        _row("B", exchange_version="2013", build_status="vulnerable", patched_march_2021="no", updated_april_2021="no")
        | {"to_disconnect": True},
        _row("C", verdict="suspicious", exchange_version="2019", failed_steps=["3 memory acquired"]),
        _row("D", exchange_version="2010", build_status="unknown", patched_march_2021="unknown")
        | {"updated_april_2021": "unknown"},
        _row("E", exchange_version="", build_status="", patched_march_2021="", updated_april_2021=""),
        _row("F", verdict="insufficient evidence"),
    ]
    t = fleet_totals(rows)
    assert t["counts"] == {
        "hosts": 6,
        "exchange_servers": 5,
        "exchange_2013": 1,
        "exchange_2016": 2,
        "exchange_2019": 1,
        "exchange_other": 1,
        "updated": 3,
        "not_updated": 1,
        "update_unknown": 1,
        "proxylogon_unpatched": 1,
        "compromised": 0,
        "suspicious": 1,
        "insufficient_evidence": 1,
        "to_disconnect": 1,
        "failed_steps": 1,
        "not_triaged": 0,
    }
    assert t["hosts"]["exchange_other"] == ["D"] and t["hosts"]["update_unknown"] == ["D"]
    frame = cisa_fleet_frame(t)
    assert list(frame.columns) == ["item", "count", "hosts", "note"]
    assert frame.set_index("item").loc["Exchange Server 2016", "hosts"] == "A; F"
    assert frame.set_index("item").loc["Insufficient evidence for a verdict", "hosts"] == "F"


def test_builder_builds_match_the_build_table() -> None:
    from analyzers.registry.exchange import assess, load_build_table

    table = load_build_table()
    for product, cu, build, status in BUILDS:
        v = assess(build, set(), table)
        assert (v.product, v.cu, v.status) == (product, cu, status), build


class _Segments(html.parser.HTMLParser):
    """``chart id -> [(row, segment, count)]`` of the fleet page's bar charts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.charts: dict[str, list[tuple[str, str, int]]] = {}
        self._chart = ""
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "svg" and "bars" in a.get("class", ""):
            self._chart = a["id"]
            self.charts[self._chart] = []
        elif tag == "rect" and "data-segment" in a:
            self.charts[self._chart].append((a["data-row"], a["data-segment"], int(a["data-count"])))


def test_fleet_bar_charts_count_what_the_host_cases_hold(hostile) -> None:
    """Hosts by verdict, findings by severity per host and ledger steps per host, each bar checked against the
    host cases' own files (findings.parquet, ledger.json), read here independently."""
    import pandas as pd

    out: Path = hostile["out"]
    charts = _Segments((out / "fleet" / "fleet.html").read_text(encoding="utf-8")).charts
    assert set(charts) == {"chart-verdicts", "chart-severity", "chart-ledger"}
    doc = json.loads((out / "fleet" / "fleet.json").read_text(encoding="utf-8"))
    verdicts: dict[str, int] = {}
    for r in doc["hosts"]:
        verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
    assert {seg: n for _, seg, n in charts["chart-verdicts"]} == verdicts
    names = {r["host"]: r["computer_name"] for r in doc["hosts"]}
    for host in names:
        case = out / "hosts" / host
        df = pd.read_parquet(case / "report" / "findings.parquet")
        want = {str(k): int(v) for k, v in df["severity"].astype(str).value_counts().items()}
        got = {seg: n for row, seg, n in charts["chart-severity"] if row == host}
        assert got == want, host
        ledger = json.loads((case / "report" / "ledger.json").read_text(encoding="utf-8"))
        steps: dict[str, int] = {}
        for e in ledger["entries"]:
            steps[e["status"]] = steps.get(e["status"], 0) + 1
        assert {seg: n for row, seg, n in charts["chart-ledger"] if row == host} == steps, host


def test_fleet_charts_draw_the_worst_hosts_first_and_bounded() -> None:
    from triage.report.fleet import MAX_CHART_HOSTS, fleet_charts

    def row(host: str, verdict: str, indications: int) -> dict:
        counts = {"critical": indications, "high": 0, "medium": 0, "low": 0, "info": 3}
        steps = {"steps_done": 10, "steps_not_done": 1, "steps_not_applicable": 2, "steps_manual": 24}
        return {"host": host, "verdict": verdict, "indications": indications, "severity_counts": counts, **steps}

    rows = [row(f"clean{i:03d}", "no indications found", 0) for i in range(MAX_CHART_HOSTS + 5)]
    rows.append(row("ZZ-bad", "compromised", 7))
    charts = fleet_charts(rows, 37)
    assert charts["hidden"] == 6
    first = _Segments(str(charts["severity"])).charts["chart-severity"][0]
    assert first == ("ZZ-bad", "critical", 7)
    verdict_bars = _Segments(str(charts["verdicts"])).charts["chart-verdicts"]
    assert ("compromised", "compromised", 1) in verdict_bars
    assert ("no indications found", "no indications found", MAX_CHART_HOSTS + 5) in verdict_bars
