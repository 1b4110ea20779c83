"""Every export of a hostile case: readable back, complete, and inert in spreadsheets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from report_support import EVIL_HOST, FORMULAS, SHELL_NAME

from triage.report.cells import FORMULA_START, neutralise_series, xlsx_text
from triage.report.cisa import DROPDOWN, MSERT_COL, TPL_COL

OUTPUTS = (
    "findings.parquet",
    "findings.csv",
    "findings.jsonl",
    "findings.xlsx",
    "timesketch.jsonl",
    "findings.stix.json",
    "ledger.csv",
    "ledger.json",
    "cisa_template.csv",
    "cisa_template.xlsx",
    "report.html",
)


def _report_dir(hostile_report) -> Path:
    case, _ = hostile_report
    return case.path / "report"


def test_all_outputs_written_and_in_custody(hostile_report) -> None:
    case, _ = hostile_report
    out = _report_dir(hostile_report)
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    event = list(case.custody.events())[-1]
    assert event["action"] == "report"
    assert set(event["details"]["outputs"]) == set(OUTPUTS)
    assert event["details"]["custody_head_before"]["seq"] == event["seq"] - 1


def test_cells_helpers() -> None:
    s = pd.Series(["=1", "ok", None, "@x", "-1"], dtype="string")
    assert neutralise_series(s).tolist() == ["'=1", "ok", pd.NA, "'@x", "'-1"]
    assert xlsx_text("=a\x00b") == "'=a\\x00b"
    assert len(xlsx_text("x" * 40_000)) <= 32_767


def _check_cell(value: object, where: str) -> None:
    if isinstance(value, str):
        assert not value.startswith(FORMULA_START), f"{where}: {value!r} would be evaluated"


def test_xlsx_cells_are_text_not_formulas(hostile_report) -> None:
    from openpyxl import load_workbook

    out = _report_dir(hostile_report)
    wb = load_workbook(out / "findings.xlsx")
    names = wb.sheetnames
    for sheet in ("Summary", "Hosts", "ED 21-02 ledger", "CISA template", "Web shells", "Event logs", "Coverage"):
        assert sheet in names
    assert "hostile_probe" in names  # a new analyzer gets its own sheet without report changes
    assert names[-3:] == ["Manifest", "Analyzer runs", "Provenance"]
    seen: set[str] = set()
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for c in row:
                assert c.data_type != "f", f"{ws.title}!{c.coordinate} is a formula"
                _check_cell(c.value, f"{ws.title}!{c.coordinate}")
                if isinstance(c.value, str):
                    seen.add(c.value)
    for text in FORMULAS:
        # a stored CR reads back as CR or LF, depending on the XML writer
        variants = {"'" + text, "'" + text.replace("\r", "\n")}
        assert any(v.startswith(tuple(variants)) for v in seen), text
    ledger = wb["ED 21-02 ledger"]
    header = [c.value for c in next(ledger.iter_rows(max_row=1))]
    assert header[:5] == ["host", "step", "title", "category", "status"]
    hosts = {r[0] for r in ledger.iter_rows(min_row=2, values_only=True)}
    assert {"EXCH01", EVIL_HOST} <= hosts


def test_cisa_template_xlsx_has_the_dropdowns(hostile_report) -> None:
    from openpyxl import load_workbook

    ws = load_workbook(_report_dir(hostile_report) / "cisa_template.xlsx")["Inventory"]
    rows = list(ws.iter_rows(values_only=True))
    header = list(rows[0])
    assert header[:6] == [
        "Hostname (internal)",
        "Hostname (public FQDN)",
        "Server internal IP(s)",
        "Server external IP(s)",
        "Microsoft Exchange Version",
        "Host Operating System Version",
    ]
    by_host = {r[0]: dict(zip(header, r, strict=True)) for r in rows[1:]}
    exch = by_host["EXCH01"]
    assert exch[TPL_COL] in (*DROPDOWN, None)
    assert exch["Microsoft Exchange Version"] == "Exchange Server 2016 CU19 (15.1.2176.2)"
    assert exch["Host Operating System Version"].startswith("Windows Server 2016")
    lists = [dv.formula1 for dv in ws.data_validations.dataValidation]
    assert lists and all(v in lists[0] for v in DROPDOWN)
    assert MSERT_COL in header


@pytest.mark.parametrize("name", ["findings.csv", "ledger.csv", "cisa_template.csv"])
def test_csv_cells_are_neutralised(hostile_report, name: str) -> None:
    with open(_report_dir(hostile_report) / name, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) > 1
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            _check_cell(value, f"{name}:{i}:{j}")
    if name == "findings.csv":
        flat = {v for row in rows for v in row}
        for text in FORMULAS:
            assert "'" + text in flat, text


def test_jsonl_and_timesketch(hostile_report) -> None:
    out = _report_dir(hostile_report)
    _, res = hostile_report
    df = pd.read_parquet(out / "findings.parquet")
    lines = [json.loads(x) for x in (out / "findings.jsonl").read_text(encoding="utf-8").split("\n") if x]
    assert len(lines) == len(df) == res.findings
    assert all(isinstance(r["attributes"], dict) for r in lines)
    probe = next(r for r in lines if r["rule_id"] == "TRIAGE-PROBE-0")
    assert probe["attributes"]["payload"].startswith("</script><!--")  # data kept exactly, never spliced
    ts = [json.loads(x) for x in (out / "timesketch.jsonl").read_text(encoding="utf-8").split("\n") if x]
    undated = int(df["ts"].isna().sum())
    assert undated == res.timesketch_skipped >= 1  # the hostile host's finding has no time
    assert len(ts) == len(df) - undated
    for ev in ts:
        assert {"message", "datetime", "timestamp", "timestamp_desc", "finding_id", "rule_id"} <= set(ev)
        when = pd.Timestamp(ev["datetime"])
        assert when.tzinfo is not None and ev["timestamp"] == when.value // 1000
        assert ev["message"] and ev["timestamp_desc"]


def test_stix_bundle_parses_strictly(hostile_report) -> None:
    import stix2

    _, res = hostile_report
    text = (_report_dir(hostile_report) / "findings.stix.json").read_text(encoding="utf-8")
    bundle = stix2.parse(text, allow_custom=False)
    objs = {o.id: o for o in bundle.objects}
    assert len(objs) == len(bundle.objects)
    by_type: dict[str, list] = {}
    for o in bundle.objects:
        by_type.setdefault(o.type, []).append(o)
    hosts = {o.name for o in by_type["identity"]}
    assert {"EXCH01", EVIL_HOST} <= hosts
    indicators = {o.name.split(":")[0]: o for o in by_type["indicator"]}
    assert len(indicators) == res.stix["indicators"]
    assert all(o.pattern_type in ("stix", "sigma", "yara") for o in indicators.values())
    # the Sigma rule travels verbatim (same bytes as the rule file the finding named)
    sigma = [o for o in indicators.values() if o.pattern_type == "sigma"]
    assert sigma and all("detection:" in o.pattern and "logsource:" in o.pattern for o in sigma)
    shell = indicators["TRIAGE-WEB-001"]
    assert shell.pattern_type == "stix" and f"[file:name = '{SHELL_NAME}']" in shell.pattern
    # coverage and host facts describe the evidence: no indicators for them
    assert not any(k.startswith(("TRIAGE-EVT-COV", "TRIAGE-HOST")) for k in indicators)
    for s in by_type["sighting"]:
        assert objs[s.sighting_of_ref].type == "indicator"
        assert s.count >= 1 and all(objs[r].type == "identity" for r in s.where_sighted_refs)
        if "first_seen" in s:
            assert s.first_seen <= s.last_seen
    files = {o.name: o for o in by_type["file"]}
    assert SHELL_NAME in files and "SHA-256" in files[SHELL_NAME].hashes
    for od in by_type["observed-data"]:
        assert all(objs[r].type == "file" for r in od.object_refs)
    report = by_type["report"][0]
    assert all(r in objs for r in report.object_refs)


def test_ledger_json_matches_csv(hostile_report) -> None:
    out = _report_dir(hostile_report)
    data = json.loads((out / "ledger.json").read_text(encoding="utf-8"))
    flat = pd.read_csv(out / "ledger.csv", dtype=str)
    assert len(data["entries"]) == len(flat)
    assert data["window_start"].startswith("2021-01-01")
    e = next(x for x in data["entries"] if x["host"] == "EXCH01" and x["step"] == "5")
    assert e["status"] == "done" and e["artifact_count"] >= 1
    assert all(len(a["sha256"]) == 64 for a in e["artifacts"])
    assert data["verdicts"]["EXCH01"]["verdict"] == "compromised"
