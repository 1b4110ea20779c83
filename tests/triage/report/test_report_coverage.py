"""Evidence coverage per host and family, from run records only, and the verdict it allows."""

from __future__ import annotations

from report_support import HIVES, art, context, finding, run

from triage.report.coverage import ABSENT, EXAMINED, NOT_EXAMINED, PARTLY, host_coverage
from triage.report.hosts import VERDICT_CLEAN, VERDICT_INSUFFICIENT, VERDICT_SUSPICIOUS, host_summaries
from triage.report.ledger import build_ledger


def _case(iis_parsed: bool):
    manifest = [art(f"H{i}", "registry_hive", f"C:/Windows/System32/config/{n}") for i, n in enumerate(HIVES)]
    manifest += [
        art("E1", "evtx", "C:/Windows/System32/winevt/Logs/Security.evtx"),
        art("E2", "evtx", "C:/Windows/System32/winevt/Logs/System.evtx"),
        art("X1", "exchange_log", "C:/Exchange/Logging/HttpProxy/Ecp/HttpProxy_2021030302-1.LOG"),
        art("I1", "iis_log", "C:/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"),
        art("B1", "iis_log", "C:/inetpub/logs/LogFiles/W3SVC1/u_ex210304.log", outcome="failure"),
    ]
    runs = [run("eventlog", "E1"), run("eventlog", "E2", "error") | {"message": "EvtxError: bad chunk"}]
    # the registry analyzers are host-scope: one run over all hives (its evidence id is the group's)
    runs.append(run("registry_rules", "G-registry_rules-EX1", "no_findings"))
    runs.append(run("exchange_weblogs", "X1") | {"warnings": ["X1: 3 malformed lines"]})
    runs.append(run("yara", "I1", "no_findings"))  # a byte scanner: no parse of the log
    if iis_parsed:
        runs.append(run("exchange_weblogs", "I1", "no_findings"))
    return manifest, runs


def test_family_statuses_from_run_records() -> None:
    manifest, runs = _case(iis_parsed=False)
    cov = {c.family: c for c in host_coverage(context(manifest, [], runs), "EX1")}
    assert (cov["event_logs"].status, cov["event_logs"].parsed, cov["event_logs"].run_errors) == (PARTLY, 1, 1)
    assert cov["event_logs"].details == ["eventlog failed: EvtxError: bad chunk"]
    assert (cov["registry_hives"].status, cov["registry_hives"].parsed) == (EXAMINED, 4)
    assert cov["exchange_logs"].status == PARTLY and cov["exchange_logs"].details == [
        "exchange_weblogs: X1: 3 malformed lines"
    ]
    iis = cov["web_logs"]
    assert (iis.status, iis.parsed, iis.artifacts, iis.collection_failures) == (NOT_EXAMINED, 0, 1, 1)
    assert iis.summary == "IIS web logs: not examined (0 of 1 parsed, 1 collection attempt(s) failed)"
    assert cov["memory"].status == ABSENT and cov["memory"].summary == "memory: absent (none collected)"


def test_verdict_needs_the_required_families() -> None:
    manifest, runs = _case(iis_parsed=False)
    ctx = context(manifest, [], runs)
    s = host_summaries(ctx)["EX1"]
    assert s.verdict == VERDICT_INSUFFICIENT
    assert s.missing == ["IIS web logs: not examined (0 of 1 parsed, 1 collection attempt(s) failed)"]
    assert s.verdict_line.startswith("insufficient evidence: not examined: IIS web logs")
    ledger = build_ledger(ctx, {"EX1": s})
    # step 8 (indicator examination): YARA scanned the IIS log for indicators and the Exchange log (IIS *or*
    # Exchange logs) was parsed, so it is done; the verdict still lacks the IIS log's records
    step8 = ledger.get("EX1", "8")
    assert step8.status == "done" and step8.result.startswith("examined 7 of 8 artifacts")
    step10 = ledger.get("EX1", "10")
    assert step10.status == "done"  # event logs (partly) and hives were parsed
    assert ledger.get("EX1", "14").result.startswith("triage cannot decide: insufficient evidence (IIS web logs")
    manifest, runs = _case(iis_parsed=True)
    assert host_summaries(context(manifest, [], runs))["EX1"].verdict == VERDICT_CLEAN
    # a finding stands whatever is missing
    manifest, runs = _case(iis_parsed=False)
    found = [finding("TRIAGE-WEB-001", "X1", severity="medium")]
    assert host_summaries(context(manifest, found, runs))["EX1"].verdict == VERDICT_SUSPICIOUS


def test_a_finding_from_a_failed_unit_does_not_make_its_artifact_examined() -> None:
    manifest, runs = _case(iis_parsed=True)
    manifest.append(art("M1", "memory_image", "/images/ex1.raw"))
    runs.append(run("memory", "M1", "error") | {"message": "MemoryError"})
    found = [finding("MEM-TABLES", "M1", analyzer="memory")]  # written before the unit failed
    ctx = context(manifest, found, runs)
    s = host_summaries(ctx)["EX1"]
    mem = next(c for c in s.coverage if c["family"] == "memory")
    assert (mem["status"], mem["parsed"], mem["run_errors"]) == (NOT_EXAMINED, 0, 1)
    # collected but not read: no clean verdict either
    assert s.verdict == VERDICT_INSUFFICIENT and s.missing == ["memory: not examined (0 of 1 parsed, 1 run error(s))"]
    e11 = build_ledger(ctx, {"EX1": s}).get("EX1", "11")
    assert e11.status == "not done" and "not examined: memory_image (1)" in e11.result
