"""The ED 21-02 ledger, host verdicts and CISA rows, on small synthetic contexts."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_support import HIVES, art, context, finding, run

from triage.report.cisa import (
    DROPDOWN,
    MSERT_COL,
    NO_NARRATIVE,
    TPL_BASIS_COL,
    TPL_COL,
    YES_CLEAN,
    YES_FOUND,
    cisa_rows,
)
from triage.report.directive import STATUSES, load_directive
from triage.report.hosts import VERDICT_CLEAN, VERDICT_COMPROMISED, VERDICT_INSUFFICIENT, host_summaries
from triage.report.ledger import build_ledger
from triage.report.summary import ledger_summary_lines


def _server(*, hives=HIVES, memory=True, tpl_hit=True, build_severity="info", ran_exchange=True):
    manifest = [art(f"H{i}", "registry_hive", f"C:/Windows/System32/config/{n}") for i, n in enumerate(hives)]
    manifest += [
        art("E1", "evtx", "C:/Windows/System32/winevt/Logs/Security.evtx"),
        art("E2", "evtx", "C:/Windows/System32/winevt/Logs/System.evtx"),
        art("X1", "exchange_log", "C:/Exchange/Logging/HttpProxy/Ecp/HttpProxy_2021030302-1.LOG"),
        art("I1", "iis_log", "C:/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"),
        art("W1", "web_file", "C:/inetpub/wwwroot/aspnet_client/x.aspx"),
        art("F1", "evtx", "C:/Windows/System32/winevt/Logs/Broken.evtx", outcome="failure"),
    ]
    if memory:
        manifest.append(art("M1", "memory_image", "/images/ex1.raw"))
    runs = [run("registry", f"H{i}") for i in range(len(hives))]
    runs += [run("eventlog", "E1"), run("eventlog", "E2", "error"), run("webshell", "W1", "no_findings")]
    runs.append(run("exchange_weblogs", "I1", "no_findings"))
    if ran_exchange:
        runs.append(run("proxylogon", "X1"))
    findings = [
        finding(
            "TRIAGE-HOST-001",
            "H0",
            analyzer="registry_hostinfo",  # host facts are read from the analyzers that declare them
            tags="host,inventory",
            ed2102_steps="1",
            attributes={"computer_name": "EX1", "fqdn": "ex1.corp.example", "ip_addresses": ["10.0.0.5"]},
        ),
        finding(
            "TRIAGE-HOST-004",
            "H0",
            analyzer="registry_hostinfo",
            tags="host",
            attributes={"ip_addresses": ["10.0.0.5", "10.0.1.5"]},
        ),
        finding(
            "TRIAGE-HOST-002",
            "H1",
            analyzer="registry_hostinfo",
            tags="host",
            attributes={"ProductName": "Windows Server 2016 Standard", "CurrentBuild": "14393"},
        ),
        finding(
            "TRIAGE-EXCH-002",
            "H1",
            analyzer="registry_exchange",
            severity=build_severity,
            tags="exchange,build",
            ed2102_steps="1,14,32",
            cve="CVE-2021-26855,CVE-2021-28480",
            title="Exchange 2016 CU19 (15.1.2176.2) build verdict",
            attributes={"product": "Exchange Server 2016", "cu": "CU19", "build": "15.1.2176.2", "status": "x"},
        ),
        finding(
            "TRIAGE-EVT-COV-000",
            "E1",
            tags="coverage",
            ed2102_steps="5",
            attributes={"first": "2020-12-01T00:00:00+00:00"},
        ),
        finding(
            "TRIAGE-EVT-COV-000",
            "E2",
            tags="coverage",
            ed2102_steps="5",
            location="c2",
            attributes={"first": "2021-02-01T00:00:00+00:00"},
        ),
    ]
    if tpl_hit:
        findings.append(
            finding("TPL-CVE-2021-26855", "X1", severity="high", cve="CVE-2021-26855", tags="test-proxylogon")
        )
    return manifest, findings, runs


def _ledger(manifest, findings, runs):
    ctx = context(manifest, findings, runs)
    summaries = host_summaries(ctx)
    return ctx, summaries, build_ledger(ctx, summaries)


def test_every_checklist_step_is_data() -> None:
    d = load_directive()
    numbers = {s.number for s in d.steps}
    assert numbers == {str(n) for n in range(1, 36)}
    assert {s.category for s in d.steps} == {"collected", "examined", "manual"}
    manual = {s.id for s in d.steps if s.done_when == ("manual",)}
    # outside disk and memory forensics: expertise, firewall, SOC logging, identity/BloodHound, disconnect, rebuild
    assert {"2", "15", "17", "18", "24", "27", "28", "31", "33"} <= manual


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ("    note: A triage collection", "    colour: red\n    note: A triage collection"),
        ("    done_when: artifacts\n    otherwise: needs", "    done_when: sometimes\n    otherwise: needs"),
        ("families: [host_fact, build_verdict]", "families: [nope]"),
        ('  - id: "2"\n', '  - id: "1"\n'),
    ],
)
def test_directive_file_is_validated(tmp_path: Path, patch: str, message: str) -> None:
    src = load_directive().path
    text = Path(src).read_text()
    assert patch in text
    bad = tmp_path / "ed2102.yaml"
    bad.write_text(text.replace(patch, message, 1))
    with pytest.raises(ValueError, match="step"):
        load_directive(bad)


def test_ledger_statuses_and_evidence() -> None:
    ctx, summaries, ledger = _ledger(*_server())
    rows = {e.step: e for e in ledger.for_host("EX1")}
    assert len(rows) == len(ctx.directive.steps) and all(e.status in STATUSES for e in rows.values())
    # inventory from host facts and the build verdict
    assert rows["1"].status == "done" and rows["1"].basis == "findings"
    facts = summaries["EX1"].facts
    assert facts.internal_ips == ["10.0.0.5", "10.0.1.5"]
    assert facts.exchange == "Exchange Server 2016 CU19 (15.1.2176.2)"
    assert facts.os == "Windows Server 2016 Standard (build 14393)"
    # collected: artifacts with their hashes
    assert rows["3"].status == "done" and rows["3"].artifacts[0]["sha256"] == "m1" * 32
    assert rows["6"].status == "done" and rows["6"].artifact_count == 4
    assert rows["5"].status == "done" and "1 collection attempt(s) failed" in rows["5"].note
    # coverage: one of two event logs reaches back to 2021-01-01
    assert rows["5.1"].status == "not done" and rows["5.1"].result.startswith("1 of 2 logs reach back")
    assert "System.evtx (2021-02-01)" in rows["5.1"].result
    assert rows["4.1"].status == "needs manual attestation"  # web logs without coverage data
    # examined: the memory image was collected but nothing read it
    assert rows["8"].status == "not done" and "not examined: memory_image (1)" in rows["8"].result
    assert rows["9"].status == "not done"
    assert rows["10"].status == "done" and rows["10"].runs == {"success": 5, "error": 1, "no_findings": 1}
    assert "1 analyzer run(s) failed" in rows["10"].note
    assert rows["11"].status == "not done"
    # Test-ProxyLogon parity ran over the Exchange logs and found CVE-2021-26855
    assert rows["22"].status == "done" and "indications found: 1 findings (1 high); CVE-2021-26855" in rows["22"].result
    assert rows["22"].finding_count == 1 and rows["22"].artifacts[0]["examined"] is True
    # build verdict at info: the April SU step is done
    assert rows["32"].status == "done"
    assert rows["2"].status == rows["24"].status == "needs manual attestation"
    assert rows["14"].result.startswith("triage suggests: indications of compromise found (CVE-2021-26855)")
    assert "until at least 2021-09-04" in rows["35"].result
    assert rows["20"].status == "needs manual attestation"


def test_verdict_ignores_build_coverage_and_facts() -> None:
    _, summaries, ledger = _ledger(*_server(tpl_hit=False, build_severity="high", memory=False))
    s = summaries["EX1"]
    # a vulnerable build is not a compromise; its CVEs are no indications either
    assert s.verdict == VERDICT_CLEAN and s.cves == [] and s.indications == 0
    assert s.facts.build_severity == "high" and "CVE-2021-28480" in s.facts.build_cves
    assert ledger.get("EX1", "32").status == "not done"  # fail_at: a vulnerable build fails the SU step
    assert any(c.startswith("step 5.1 not done") for c in s.caveats)
    row = cisa_rows("CASE-T", summaries, ledger)[0]
    # only the offline checks ran: the script's dropdown stays blank, the basis says what ran
    assert row[TPL_COL] == "" and row[MSERT_COL] == ""
    assert row[TPL_BASIS_COL].startswith(
        "offline equivalent checks: the script's checks over 1 collected Exchange logs, no indications found; "
        "the script itself did not run"
    )
    assert row["Hostname (internal)"] == "ex1.corp.example"
    assert row["Server internal IP(s)"] == "10.0.0.5, 10.0.1.5"


def test_cisa_dropdowns_follow_the_ledger() -> None:
    _, summaries, ledger = _ledger(*_server())
    row = cisa_rows("CASE-T", summaries, ledger)[0]
    assert summaries["EX1"].verdict == VERDICT_COMPROMISED
    assert row[TPL_COL] == ""  # offline checks found the SSRF, but the script did not run
    assert row[TPL_BASIS_COL].startswith("offline equivalent checks: ") and "indications found" in row[TPL_BASIS_COL]
    assert "us-cert.cisa.gov/report" in row["Notes"]
    _, summaries, ledger = _ledger(*_server(ran_exchange=False, tpl_hit=False))
    row = cisa_rows("CASE-T", summaries, ledger)[0]
    assert row[TPL_COL] == NO_NARRATIVE
    assert row[TPL_BASIS_COL] == "not run: no script output in the evidence and no Exchange logs parsed"
    assert "not run" in row["Notes"]
    assert set(DROPDOWN) == {
        "Yes (no indications of compromise found)",
        "Yes (indications of compromise found)",
        "No (must provide narrative explanation in comments section)",
    }


@pytest.mark.parametrize(("script_hit", "value"), [(True, YES_FOUND), (False, YES_CLEAN)])
def test_cisa_cell_from_the_script_output(script_hit: bool, value: str) -> None:
    manifest, findings, runs = _server(tpl_hit=False)
    manifest.append(art("T1", "testproxylogon_csv", "D:/Test-ProxyLogonLogs/EX1-Cve-2021-26855.csv"))
    runs.append(run("testproxylogon_output", "T1"))
    findings.append(finding("TPL-OUT-FILE", "T1", tags="test-proxylogon", ed2102_steps="22"))
    if script_hit:
        findings.append(finding("TPL-OUT-CVE-2021-26855", "T1", severity="high", cve="CVE-2021-26855"))
    ctx, summaries, ledger = _ledger(manifest, findings, runs)
    row = cisa_rows("CASE-T", summaries, ledger, ctx.findings)[0]
    assert row[TPL_COL] == value
    assert row[TPL_BASIS_COL] == "script output found in the evidence (EX1-Cve-2021-26855.csv)"
    assert ledger.get("EX1", "22").status == "done"


def test_missing_hives_and_not_applicable() -> None:
    _, _, ledger = _ledger(*_server(hives=("SYSTEM", "SOFTWARE"), memory=False))
    assert ledger.get("EX1", "6").status == "not done"
    assert ledger.get("EX1", "6").result.endswith("missing: SAM, SECURITY")
    assert ledger.get("EX1", "3").status == "not done"
    assert ledger.get("EX1", "11").status == "not applicable"


def test_msert_trace_without_log_is_done_but_leaves_the_cisa_cell_blank() -> None:
    manifest, findings, runs = _server()
    findings.append(finding("TRIAGE-EXCH-007", "H1", tags="exchange,msert,eomt", title="MSERT run recorded"))
    _, summaries, ledger = _ledger(manifest, findings, runs)
    e = ledger.get("EX1", "20")
    assert (e.status, e.basis) == ("done", "findings")
    assert cisa_rows("CASE-T", summaries, ledger)[0][MSERT_COL] == ""


def test_multiple_hosts_and_summary_lines() -> None:
    manifest, findings, runs = _server()
    manifest.append(art("Z1", "evtx", "C:/Windows/System32/winevt/Logs/Security.evtx", host="EX2"))
    _, summaries, ledger = _ledger(manifest, findings, runs)
    assert set(ledger.tally()) == {"EX1", "EX2"}
    # EX2: one event log collected, nothing parsed it, no hives or web logs: no clean verdict
    assert summaries["EX2"].verdict == VERDICT_INSUFFICIENT
    assert summaries["EX2"].missing[0] == "Windows event logs: not examined (0 of 1 parsed)"
    lines = ledger_summary_lines(
        {"tally": ledger.tally(), "verdicts": ledger.verdicts, "entries": [e.as_dict() for e in ledger.entries]}
    )
    assert lines[0].startswith("ED 21-02 ledger: 37 steps per host")
    assert any(line.startswith("  EX1: compromised (CVE-2021-26855)") for line in lines)
    assert any("not done:" in line and "8 IOC examination" in line for line in lines)
    text = "\n".join(lines)
    assert "    no verdict without: Windows event logs: not examined (0 of 1 parsed); registry hives: absent" in text


def test_large_id_lists_are_capped() -> None:
    manifest, findings, runs = _server()
    findings += [finding("TRIAGE-PROBE", "W1", location=str(i), ed2102_steps="10") for i in range(30)]
    ctx = context(manifest, findings, runs, ledger_max_ids=10)
    ledger = build_ledger(ctx, host_summaries(ctx))
    e = ledger.get("EX1", "10")
    assert e.finding_count == 30 and len(e.finding_ids) == 10 and e.finding_ids_truncated
    assert e.as_row()["finding_ids"].endswith("... 20 more in findings.parquet")
