"""Attestations in the ED 21-02 ledger and the CISA rows, CISA's paragraphs per step, and attestation sheets."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_support import art, context, finding, run

from triage.errors import UsageError
from triage.report.attest import Attestation, AttestationInput, check, read_sheet
from triage.report.cisa import (
    HARDENING,
    MSERT_COL,
    NO_NARRATIVE,
    TPL_BASIS_COL,
    TPL_COL,
    YES_CLEAN,
    YES_FOUND,
    cisa_rows,
    test_proxylogon_cell,
)
from triage.report.directive import load_directive
from triage.report.hosts import host_summaries
from triage.report.ledger import UNDECIDED, LedgerEntry, build_ledger
from triage.report.summary import ledger_summary_lines

HIVES = ("SYSTEM", "SOFTWARE", "SAM", "SECURITY")


def _server(exchange_logs: bool = True):
    """One host: hives and an event log parsed, Exchange logs parsed by the proxylogon checks (or none)."""
    manifest = [art(f"H{i}", "registry_hive", f"C:/Windows/System32/config/{n}") for i, n in enumerate(HIVES)]
    manifest.append(art("E1", "evtx", "C:/Windows/System32/winevt/Logs/Security.evtx"))
    runs = [run("registry", f"H{i}") for i in range(len(HIVES))] + [run("eventlog", "E1")]
    if exchange_logs:
        manifest.append(art("X1", "exchange_log", "C:/Exchange/Logging/HttpProxy/Ecp/HttpProxy_2021030302-1.LOG"))
        runs.append(run("proxylogon", "X1", "no_findings"))
    findings = [finding("TRIAGE-EVT-COV-000", "E1", tags="coverage", attributes={"first": "2020-12-01T00:00:00Z"})]
    return manifest, findings, runs


def _att(step: str, status: str, *, seq: int, by: str = "J. Doe", result: str = "", files=(), host="EX1"):
    return Attestation(
        attestation_id=f"T{seq}",
        host=host,
        step=step,
        status=status,
        by=by,
        note=f"note {seq}",
        at=f"2021-04-0{seq % 9 + 1}T10:00:00.000000Z",
        recorded_by="examiner",
        seq=seq,
        result=result,
        files=tuple(files),
    )


def _ledger(attestations, exchange_logs: bool = True):
    ctx = context(*_server(exchange_logs))
    summaries = host_summaries(ctx)
    return ctx, summaries, build_ledger(ctx, summaries, attestations)


def test_every_step_names_its_cisa_paragraphs() -> None:
    d = load_directive()
    assert all(s.cisa for s in d.steps)
    used = {p for s in d.steps for p in s.cisa}
    assert used == set(d.cisa_paragraphs)  # every paragraph answered by some step, none invented
    assert d.step("22").cisa == ("SD v1 triage 2",)
    assert d.step("20").cisa == ("SD v1 triage 1",)
    assert d.step("32").cisa == ("SD v2 1",)
    assert {f"SD v1 hardening 4{c}" for c in "abcdef"} == set(d.step("27").cisa)
    assert {f"ED 21-02 Action {n}" for n in "12345"} <= used


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ('    cisa: ["SD v1 triage 2"]\n', '    cisa: ["SD v1 triage 9"]\n'),  # not a paragraph
        ('    cisa: ["SD v1 triage 2"]\n', ""),  # a step without its paragraph
    ],
)
def test_cisa_paragraphs_are_validated(tmp_path: Path, patch: str, message: str) -> None:
    text = Path(load_directive().path).read_text()
    assert text.count(patch) == 1
    bad = tmp_path / "ed2102.yaml"
    bad.write_text(text.replace(patch, message))
    with pytest.raises(ValueError, match="step 22: cisa"):
        load_directive(bad)


def test_attestation_decides_a_manual_step_and_the_later_one_supersedes() -> None:
    atts = [_att("24", "not done", seq=1), _att("24", "done", seq=2, by="A. Smith", files=[_file("fw.txt")])]
    _, _, ledger = _ledger(atts)
    e = ledger.get("EX1", "24")
    assert (e.status, e.basis, e.machine_status, e.conflict) == ("done", "attestation", "needs manual attestation", "")
    assert e.attestation["by"] == "A. Smith" and e.attestation["files"][0]["sha256"] == "ab" * 32
    assert [s["status"] for s in e.superseded] == ["not done"]  # kept and shown
    row = e.as_row()
    assert row["machine_status"] == "needs manual attestation"
    assert row["attestation"].startswith("done (attested by A. Smith, 2021-04-03): note 2 [files: fw.txt sha256 abab")
    assert row["superseded"].startswith("not done (attested by J. Doe")
    assert row["cisa"] == "SD v1 hardening 1a; SD v1 hardening 1b; SD v1 hardening 1c"
    # another host's attestation does not touch this one
    assert ledger.get("EX1", "2").status == "needs manual attestation"


def test_evidence_not_done_stays_not_done_when_attested_done() -> None:
    # no memory image: the evidence says step 3 (memory acquired) is not done; a person says it is
    _, summaries, ledger = _ledger([_att("3", "done", seq=1), _att("22", "done", seq=2, result="clean")], False)
    e = ledger.get("EX1", "3")
    assert (e.status, e.machine_status) == ("not done", "not done") and e.basis != "attestation"
    assert e.conflict.startswith("the evidence shows 'not done' but J. Doe attested 'done' on 2021-04-02")
    assert e.attestation["status"] == "done"
    c = ledger.completeness("EX1")
    assert c["conflicts"] == ["3", "22"] and "2 conflict(s)" in c["text"]
    # Test-ProxyLogon: nothing parsed by triage, a person says the script ran: the cell stays blank, never "Yes"
    row = cisa_rows("CASE-T", summaries, ledger)[0]
    assert row[TPL_COL] == ""
    assert row[TPL_BASIS_COL].startswith("not run: no script output in the evidence and no Exchange logs parsed")
    assert "attested: done (attested by J. Doe" in row[TPL_BASIS_COL] and "CONFLICT" in row[TPL_BASIS_COL]
    assert row["Notes"].count("CONFLICT") == 1  # named once, in the Test-ProxyLogon part
    lines = ledger_summary_lines(ledger_json(ledger))
    assert "    evidence and attestation disagree on: 3, 22" in lines


def test_agreeing_attestation_is_shown_beside_the_evidence() -> None:
    _, _, ledger = _ledger([_att("6", "done", seq=1)])
    e = ledger.get("EX1", "6")
    assert (e.status, e.basis, e.conflict) == ("done", "artifacts", "") and e.attestation["by"] == "J. Doe"


def test_ledger_reaches_complete_only_through_attestations() -> None:
    _, _, ledger = _ledger([])
    before = ledger.completeness("EX1")
    assert not before["complete"] and before["open_steps"]
    assert before["text"] == f"incomplete: {len(before['open_steps'])} of 37 steps need attestation"
    atts = [_att(s, "not applicable" if s == "17" else "done", seq=i + 1) for i, s in enumerate(before["open_steps"])]
    ctx, _, ledger = _ledger(atts)
    after = ledger.completeness("EX1")
    assert after["complete"] and after["text"] == "complete" and after["open_steps"] == []
    assert after["decided_by_attestation"] == before["open_steps"]
    assert ledger.get("EX1", "17").status == "not applicable"
    assert "needs manual attestation" not in ledger.tally()["EX1"]
    assert "    ledger complete; " + f"{len(atts)} attested" in ledger_summary_lines(ledger_json(ledger))
    row = cisa_rows("CASE-T", host_summaries(ctx), ledger)[0]
    assert row["Ledger completeness"] == "complete" and row["Ledger steps done"].endswith("of 37")


@pytest.mark.parametrize(
    ("status", "result", "value"),
    [
        ("done", "clean", YES_CLEAN),
        ("done", "indications", YES_FOUND),
        ("done", "", ""),  # done without a result: a person must fill the dropdown
        ("not done", "", NO_NARRATIVE),
        ("", "", ""),  # no attestation: the step needs one, the cell stays blank
    ],
)
def test_cisa_msert_cell_from_attestation(status: str, result: str, value: str) -> None:
    atts = [_att("20", status, seq=1, result=result)] if status else []
    _, summaries, ledger = _ledger(atts)
    row = cisa_rows("CASE-T", summaries, ledger)[0]
    assert row[MSERT_COL] == value
    if atts:
        assert "MSERT: no evidence in the case; " in row["Notes"] and "attested by J. Doe" in row["Notes"]
    else:
        assert "MSERT: needs manual attestation" in row["Notes"]


def test_test_proxylogon_cell_keeps_offline_checks_and_attestation_apart() -> None:
    ledger = _ledger([_att("22", "done", seq=1, result="clean", files=[_file("EX1-Cve.csv")])])[2]
    value, basis = test_proxylogon_cell(ledger.get("EX1", "22"), 0)
    assert value == ""  # what triage ran is the offline checks: no "Yes" from them
    assert basis.startswith("offline equivalent checks: the script's checks over 1 collected Exchange logs")
    assert "; script run attested: done (attested by J. Doe" in basis and "EX1-Cve.csv" in basis
    # a step the ledger leaves to a person, decided by attestation: the attested value, labelled as attested
    e = LedgerEntry("EX1", "22", "t", "examined", "done", basis="attestation", machine_status=UNDECIDED)
    e.attestation = _att("22", "done", seq=3, result="indications").as_dict()
    value, basis = test_proxylogon_cell(e, 0)
    assert value == YES_FOUND and basis.startswith("script run attested (no script output read by triage): done")


def _file(name: str) -> dict[str, object]:
    return {"artifact_id": "A1", "name": name, "relpath": f"evidence/EX1/attestation_file/{name}", "sha256": "ab" * 32}


def ledger_json(ledger) -> dict:
    return {
        "tally": ledger.tally(),
        "verdicts": ledger.verdicts,
        "completeness": {h: ledger.completeness(h) for h in ledger.tally()},
        "entries": [e.as_dict() for e in ledger.entries],
    }


# -- sheets and checks ------------------------------------------------------------------------------------
def test_csv_sheet_rows_and_files_relative_to_the_sheet(tmp_path: Path) -> None:
    sheet = tmp_path / "att.csv"
    sheet.write_text(
        "\ufeffStep,Host,Status,By,Note,Files,Result\n"
        "24,EX1,done,J. Doe,firewall reviewed,fw.txt; rules.txt,\n"
        "\n"
        '20,EX1,done,J. Doe,"MSERT full scan, 4 h",,clean\n'
    )
    rows = read_sheet(sheet)
    assert [(r.step, r.status, r.result, r.where) for r in rows] == [
        ("24", "done", "", "att.csv row 2"),
        ("20", "done", "clean", "att.csv row 4"),
    ]
    assert rows[0].files == (str(tmp_path / "fw.txt"), str(tmp_path / "rules.txt"))
    assert rows[1].note == "MSERT full scan, 4 h"


def test_yaml_sheet(tmp_path: Path) -> None:
    sheet = tmp_path / "att.yaml"
    sheet.write_text("attestations:\n  - {step: 4.1, status: not-applicable, by: Ops, note: logs kept 30 days}\n")
    (row,) = read_sheet(sheet)
    assert (row.step, row.status, row.host, row.where) == ("4.1", "not-applicable", "", "att.yaml entry 1")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("step,status,by,note,colour\n2,done,x,y,red\n", "att.csv row 2: unknown column"),
        ("step,status\n", "the sheet has no rows"),
        ("status,by\ndone,x\n", "row 1: a header row"),
    ],
)
def test_bad_sheets_are_usage_errors(tmp_path: Path, content: str, message: str) -> None:
    sheet = tmp_path / "att.csv"
    sheet.write_text(content)
    with pytest.raises(UsageError, match=message):
        read_sheet(sheet)


def test_check_names_every_bad_row() -> None:
    d = load_directive()
    inputs = [
        AttestationInput("2", "done", "A", "ok", where="s.csv row 2"),
        AttestationInput("99", "done", "A", "ok", where="s.csv row 3"),
        AttestationInput("2", "finished", "", "ok", where="s.csv row 4"),
        AttestationInput("2", "not-done", "A", "ok", result="clean", where="s.csv row 5"),
        AttestationInput("2", "done", "A", "ok", host="EX9", where="s.csv row 6"),
    ]
    with pytest.raises(UsageError) as exc:
        check(inputs, d, ["EX1"])
    text = str(exc.value)
    assert text.startswith("nothing attested: s.csv row 3: unknown step '99'")
    assert "s.csv row 4: status 'finished' is not one of done, not-done, not-applicable; who attests is missing" in text
    assert "s.csv row 5: a result" in text and "s.csv row 6: host 'EX9' is not in this case" in text
    assert "row 2" not in text
    with pytest.raises(UsageError, match="holds 2 hosts: name one"):
        check(inputs[:1], d, ["EX1", "EX2"])
    assert check([AttestationInput("2", "done", "A", "ok", host="*")], d, ["EX1", "EX2"])[0].hosts == ("EX1", "EX2")


def test_cisa_hardening_columns_from_the_ledger() -> None:
    atts = [_att("24", "done", seq=1), _att("28", "not done", seq=2), _att("30", "not applicable", seq=3)]
    atts.append(_att("26", "done", seq=4))  # no build verdict: the evidence leaves step 26 to a person
    _, summaries, ledger = _ledger(atts)
    row = cisa_rows("CASE-T", summaries, ledger)[0]
    values = {col: row[col] for col, _ in HARDENING}
    assert values == {
        "H1) Firewall: deny by default, RFC compliance (1a-1c)?": "Yes",
        "H2) Updates within 48 hours?": "",  # not attested: undecided, blank
        "H3) Only vendor-supported versions?": "Yes",
        "H4) Identity review and attack-path analysis (4a-4f)?": "",
        "H5) Logs kept 180 days centrally, SOC monitoring?": "No",
        "H6) Anti-malware enabled, signatures under 24 hours?": "",
        "H7) Visible to CDM?": "",  # not applicable is no Yes or No
    }


def test_readme_example_sheet_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Attesting manual steps", 1)[1]
    sheet = tmp_path / "attestations.csv"
    sheet.write_text(section.split("```csv\n", 1)[1].split("```", 1)[0])
    for name in ("msert.log", "fw-export.txt", "fw-rules.pdf"):
        (tmp_path / name).write_text("x")
    rows = check(read_sheet(sheet), load_directive(), ["EXCH01"])
    assert [r.input.step for r in rows] == ["2", "15", "20", "24"]
    assert rows[0].input.by == "A. Smith, CIO" and len(rows[3].files) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # an alias multiplies a long string: refused before anything is built from it
        ("- {step: 2, status: done, by: &b " + "x" * 1000 + ", note: n, files: [*b, *b, *b]}\n", "aliases"),
        ("- {step: 2, status: done, by: [a, [b]], note: n}\n", "by must be plain text"),
        ("- [2, done]\n", "entry 1: expected a mapping"),
        ("{step: 2\n", "not valid YAML"),
    ],
)
def test_hostile_yaml_sheets(tmp_path: Path, content: str, message: str) -> None:
    sheet = tmp_path / "att.yaml"
    sheet.write_text(content)
    with pytest.raises(UsageError, match=message):
        read_sheet(sheet)


def test_hostile_csv_sheets_and_spellings(tmp_path: Path) -> None:
    sheet = tmp_path / "att.csv"
    sheet.write_text("step,status,by,note\n2,done,x," + "y" * 200_000 + "\n")  # over the csv module's field limit
    with pytest.raises(UsageError, match=r"att\.csv row 2: not a CSV row"):
        read_sheet(sheet)
    sheet.write_bytes(b"step,status\n\xff\xfe\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        read_sheet(sheet)
    rows = [AttestationInput("2", "Not done", "A", "n"), AttestationInput("20", "DONE", "A", "n", result="Clean")]
    checked = check(rows, load_directive(), ["EX1"])
    assert [(c.input.status, c.input.result) for c in checked] == [("not-done", ""), ("done", "clean")]
    with pytest.raises(UsageError, match="step longer than 200 characters"):
        check([AttestationInput("2" * 10_000, "done", "A", "n")], load_directive(), ["EX1"])
