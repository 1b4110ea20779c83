"""The technique x event-source coverage matrix (signatures/coverage/*.yaml) holds what it declares.

A declared cell must name rules that exist; each Sigma rule in an event-source cell must have a positive sample
recorded by THAT source and a benign sample, and its samples must give the same verdicts after a round trip
through a real EVTX file (the project's EVTX writer, then the EVTX reader the analyzer uses); registry and
web-log rules in their cells must carry positive and negative examples (their own tests run them). The ED 21-02
post-exploitation set named in issue 14 must be present as techniques.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from analyzers.registry.checks import RULE_FILES as REGISTRY_RULE_FILES
from analyzers.registry.rules import load_rule_files
from triage.formats.evtx import ReadStats, iter_evtx
from triage.registry import signature_path
from triage.sigma import RuleSet, load_rules
from triage.sigma.coverage import Coverage, CoverageError, load_coverage
from triage.testing.evtx import Event, write_evtx

REPO = Path(__file__).resolve().parents[3]
COVERAGE = REPO / "signatures" / "coverage"
PACK = REPO / "signatures" / "sigma" / "ed2102"
SAMPLES = REPO / "signatures" / "sigma" / "samples"
WEBLOG = REPO / "signatures" / "exchange" / "weblog_indicators.yaml"

# The ED 21-02 post-exploitation set (issue 14, "Build"): each must be a technique row of the matrix.
REQUIRED_TECHNIQUES = {
    "lsass_dump_process_access", "lsass_dump_comsvcs", "lsass_dump_tools", "lsass_dump_silent_process_exit",
    "mimikatz", "wdigest_cleartext", "service_created", "local_account_created", "privileged_group_membership",
    "powershell_download_cradle", "powershell_obfuscation", "powershell_compressed_stager", "run_keys",
    "winlogon_helpers", "ifeo_and_accessibility", "wmi_subscription", "scheduled_task", "web_worker_children",
    "web_worker_network", "web_worker_injection", "web_pages_written", "exchange_transport_agent", "exchange_oab_vdir",
    "exchange_mailbox_export", "exchange_role_assignment", "log_clearing", "audit_policy_tampering",
}  # fmt: skip
# Each named gap of issue 14 (Why 1-2) must be covered on every source listed here.
REQUIRED_CELLS = {
    "lsass_dump_silent_process_exit": {"sysmon_registry", "application"},
    "service_created": {"system", "security", "sysmon_registry"},
    "lsass_dump_comsvcs": {"sysmon_process", "security_4688", "ps_script", "ps_module"},
    "powershell_compressed_stager": {"ps_script", "sysmon_process", "security_4688"},
    "local_account_created": {"security", "sysmon_process", "security_4688"},
    "web_pages_written": {"sysmon_file"},
    "exchange_oab_vdir": {"exchange_mgmt"},
    "exchange_mailbox_export": {"exchange_mgmt"},
    "exchange_role_assignment": {"exchange_mgmt"},
    "exchange_transport_agent": {"exchange_mgmt"},
}
SYSTEM_KEYS = {
    "Channel", "Provider", "EventID", "Level", "EventSourceName", "Computer", "Task", "Opcode", "Version", "UserID",
}  # fmt: skip


@cache
def _coverage() -> Coverage:
    return load_coverage(COVERAGE)


@cache
def _ruleset() -> RuleSet:
    return load_rules(sorted(PACK.glob("*.yml")))


@cache
def _sigma_by_ref() -> dict[str, Any]:
    """Sigma rules by file stem and by id."""
    out: dict[str, Any] = {}
    for rule in _ruleset().loaded:
        out[Path(rule.path).stem] = rule
        out[rule.id] = rule
    # a correlation rule's cell stands on its building block's samples (bursts: tests/sigma/test_correlation_pack.py)
    for corr in _ruleset().correlations:
        out[Path(corr.path).stem] = out[corr.id] = out[corr.rule_ids[0]]
    return out


@cache
def _samples() -> dict[str, dict]:
    merged: dict[str, dict] = {}
    for path in sorted(SAMPLES.glob("*.yaml")):
        merged.update(yaml.safe_load(path.read_text(encoding="utf-8"))["rules"] or {})
    return merged


@cache
def _registry_rules() -> dict[str, Any]:
    return {r.id: r for r in load_rule_files([signature_path(p) for p in REGISTRY_RULE_FILES]).rules}


@cache
def _weblog_rules() -> dict[str, dict]:
    return {r["id"]: r for r in yaml.safe_load(WEBLOG.read_text(encoding="utf-8"))["rules"]}


def _event_cells() -> list[tuple[str, str, str]]:
    cov = _coverage()
    return sorted(
        (t.id, src, ref)
        for t in cov.techniques
        for src, refs in t.cells.items()
        if cov.sources[src].kind == "events"
        for ref in refs
    )


# ------------------------------------------------------------------------------------------ schema
def test_matrix_loads_and_names_known_sources():
    cov = _coverage()
    assert cov.files[0].name == "ed2102.yaml"
    for tech in cov.techniques:
        unknown = set(tech.cells) - set(cov.sources)
        assert not unknown, f"{tech.file}: {tech.id} names unknown sources {sorted(unknown)}"
        for src, refs in tech.cells.items():
            assert refs, f"{tech.file}: {tech.id} declares {src} without a rule"
            assert len(refs) == len(set(refs)), f"{tech.id}/{src}: a rule listed twice"


def test_matrix_has_the_ed2102_post_exploitation_set():
    cov = _coverage()
    ids = {t.id for t in cov.techniques}
    assert not REQUIRED_TECHNIQUES - ids, sorted(REQUIRED_TECHNIQUES - ids)
    by_id = {t.id: t for t in cov.techniques}
    for tid, sources in REQUIRED_CELLS.items():
        missing = sources - set(by_id[tid].cells)
        assert not missing, f"{tid}: no rule on {sorted(missing)}"


def test_loader_rejects_broken_files(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nsources: {s: {title: x, channel: Security}}\ntechniques:\n  - {id: t, cells: {}}\n")
    with pytest.raises(CoverageError, match="declares no cells"):
        load_coverage(bad)
    bad.write_text("version: 1\nsources: {s: {title: x}}\n")
    with pytest.raises(CoverageError, match="needs a channel"):
        load_coverage(bad)
    bad.unlink()
    good = tmp_path / "ed2102.yaml"
    good.write_text("version: 1\nsources: {s: {channel: Security}}\ntechniques:\n  - {id: t, cells: {s: [r1]}}\n")
    again = tmp_path / "more.yaml"
    again.write_text("version: 1\ntechniques:\n  - {id: t, cells: {s: [r2]}}\n")
    with pytest.raises(CoverageError, match="already declared"):
        load_coverage(tmp_path)
    again.write_text("version: 1\ntechniques:\n  - {id: u, cells: {s: [r2]}}\n")
    cov = load_coverage(tmp_path)
    assert [t.id for t in cov.techniques] == ["t", "u"] and cov.rows()[1]["rule"] == "r2"
    # a cell on a source no file declares: a schema error naming the file, the technique and the source
    # (was a KeyError at test collection, in _event_cells)
    again.write_text("version: 1\ntechniques:\n  - {id: u, cells: {s: [r2], IIS-Config: [r3]}}\n")
    with pytest.raises(CoverageError, match=r"more\.yaml: technique 'u' names source 'IIS-Config'.*declared: s\)"):
        load_coverage(tmp_path)


# ------------------------------------------------------------------------------------------ cells -> rules
def test_every_cell_names_existing_rules():
    cov = _coverage()
    missing = []
    for tech in cov.techniques:
        for src, refs in tech.cells.items():
            kind = cov.sources[src].kind
            known = {"events": _sigma_by_ref(), "registry": _registry_rules(), "weblog": _weblog_rules()}[kind]
            missing += [f"{tech.id}/{src}: {ref}" for ref in refs if ref not in known]
    assert not missing, missing


@pytest.mark.parametrize("cell", _event_cells(), ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_sigma_cell_has_a_positive_sample_from_its_source_and_a_benign_one(cell: tuple[str, str, str]):
    """ed2102.yaml cells need a positive sample recorded by that very source. Cells of other files (breadth.yaml
    names whole channels, and lets one process_creation rule stand for Sysmon 1 and Security 4688) need the rule's
    logsource to read that source through the engine's map, plus a positive sample of the rule."""
    tid, src, ref = cell
    rule = _sigma_by_ref().get(ref)
    assert rule is not None, f"{ref}: no such Sigma rule"
    spec = _samples().get(rule.id)
    assert spec, f"{ref}: no samples"
    source = _coverage().sources[src]
    positives = spec.get("positive") or []
    assert positives, f"{ref}: no positive sample"
    from_source = any(source.selects(row) for row in positives)
    file = next(t.file for t in _coverage().techniques if t.id == tid)
    if file != "ed2102.yaml" and not from_source:
        from_source = any(source.reads(v.channels, v.event_ids) for v in rule.entry.sources)
    assert from_source, f"{tid}: {ref} has no positive sample recorded by {src} ({source.channels} {source.event_ids})"
    assert spec.get("negative"), f"{ref}: no benign (negative) sample"


def test_registry_and_weblog_cells_have_examples():
    cov = _coverage()
    for tech in cov.techniques:
        for src, refs in tech.cells.items():
            kind = cov.sources[src].kind
            for ref in refs:
                if kind == "registry":
                    tests = _registry_rules()[ref].tests
                elif kind == "weblog":
                    tests = _weblog_rules()[ref].get("tests") or {}
                else:
                    continue
                assert tests.get("positive") and tests.get("negative"), f"{tech.id}/{src}: {ref} lacks examples"


# ------------------------------------------------------------------------------------------ EVTX round trip
def _event(row: dict[str, Any], record_id: int, when: datetime) -> Event:
    """A flattened sample row as an EVTX event: system columns to the System element, the rest to EventData."""
    data: dict[str, Any] | list[Any]
    fields = {k: v for k, v in row.items() if k not in SYSTEM_KEYS and v is not None}
    if set(fields) == {"Data"}:  # classic provider: unnamed insertion strings
        data = str(fields["Data"]).split("\n")
    else:
        data = {k: v if isinstance(v, int) and not isinstance(v, bool) else str(v) for k, v in fields.items()}
    return Event(
        event_id=int(row["EventID"]),
        provider=str(row["Provider"]),
        channel=str(row["Channel"]),
        level=int(row.get("Level", 4)),
        event_source_name=row.get("EventSourceName"),
        user_sid=row.get("UserID"),  # the System element's Security UserID (the requester's SID)
        record_id=record_id,
        time_created=when,
        data=data,
    )


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory) -> tuple[pd.DataFrame, dict[int, tuple[str, str, int]]]:
    """Every sample of every Sigma rule named in the matrix, written to one EVTX file and read back."""
    rules = sorted({_sigma_by_ref()[ref].id for _, _, ref in _event_cells() if ref in _sigma_by_ref()})
    events: list[Event] = []
    origin: dict[int, tuple[str, str, int]] = {}
    start = datetime(2021, 3, 3, 2, 0, tzinfo=UTC)
    for rule_id in rules:
        spec = _samples().get(rule_id) or {}
        for kind in ("positive", "negative"):
            for i, row in enumerate(spec.get(kind) or []):
                record_id = len(events) + 1
                events.append(_event(row, record_id, start + timedelta(seconds=record_id)))
                origin[record_id] = (rule_id, kind, i)
    path = write_evtx(tmp_path_factory.mktemp("coverage") / "samples.evtx", events)
    stats = ReadStats()
    frame = pd.concat(list(iter_evtx(path, stats)), ignore_index=True)
    assert stats.records == len(events) and not stats.warnings, stats.warnings
    return frame, origin


def test_samples_survive_an_evtx_round_trip(round_trip):
    frame, origin = round_trip
    ruleset = _ruleset()
    matches = ruleset.evaluate(frame)
    assert ruleset.runtime_errors == []
    records = frame["EventRecordID"].astype("int64").to_numpy()
    hits = {(m.rule_id, int(records[m.row])) for m in matches.itertuples(index=False)}
    wrong = []
    for record_id, (rule_id, kind, i) in origin.items():
        hit = (rule_id, record_id) in hits
        if (kind == "positive") != hit:
            stem = Path(_sigma_by_ref()[rule_id].path).stem
            wrong.append(f"{stem} {kind} sample {i} {'missed' if kind == 'positive' else 'matched'} after EVTX")
    assert not wrong, wrong
