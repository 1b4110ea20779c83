"""Round-3 rules of issue 14: event sources that had no rule (RdpCoreTS, RD Gateway, Winsock catalog, DNS Server
audit, OpenSSH, ...) and single-event Active Directory knowledge (signatures/sigma/samples/round3.yaml,
signatures/coverage/round3.yaml).

The generic pack tests run every sample (test_ed2102_pack.py) and every coverage cell through a real EVTX round
trip (test_coverage_matrix.py). Here: the round-3 matrix lists exactly the round-3 rules under techniques they are
tagged with, every new logsource resolves to the channel the samples are recorded in, the levels follow the
severity policy, and a few decisive boundaries hold on built events (a domain controller's own replication, the
NT AUTHORITY null session, a Windows Update BITS job).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import yaml

from triage.formats.evtx import ReadStats, iter_evtx
from triage.sigma import load_rules
from triage.testing.evtx import Event, write_evtx

REPO = Path(__file__).resolve().parents[3]
PACK = REPO / "signatures" / "sigma" / "ed2102"
SAMPLES = REPO / "signatures" / "sigma" / "samples" / "round3.yaml"
COVERAGE = REPO / "signatures" / "coverage" / "round3.yaml"
# Round-3 rules allowed above medium: each fires on the attack behaviour itself (SEVERITY.md).
HIGH_BY_BEHAVIOUR = {
    "lm_rdp_ms_t120_channel_requested",  # no genuine client binds the server's internal channel
    "privesc_dns_server_plugin_dll_set",  # the DnsAdmins code-execution path itself
    "evasion_eventlog_record_carries_shellcode",  # machine code is never event data
}


@cache
def _samples() -> dict[str, dict]:
    return yaml.safe_load(SAMPLES.read_text(encoding="utf-8"))["rules"]


@cache
def _coverage() -> list[dict]:
    return yaml.safe_load(COVERAGE.read_text(encoding="utf-8"))["techniques"]


@cache
def _ruleset():
    stems = {spec["rule"] for spec in _samples().values()}
    rs = load_rules(sorted(p for p in PACK.glob("*.yml") if p.stem in stems))
    assert not rs.skipped, rs.skipped
    assert len(rs.loaded) == len(stems)
    return rs


def _rules() -> dict[str, object]:
    return {r.id: r for r in _ruleset().loaded}


def test_every_round3_rule_is_in_the_round3_matrix_and_nothing_else():
    rules = _rules()
    assert set(rules) == set(_samples())
    listed = {rid for tech in _coverage() for refs in tech["sources"].values() for rid in refs}
    assert listed == set(rules), {"unlisted": sorted(set(rules) - listed), "unknown": sorted(listed - set(rules))}


def test_matrix_rows_name_techniques_the_rules_are_tagged_with():
    rules = _rules()
    for tech in _coverage():
        attack = {t.lower() for t in tech["attack"]}
        for refs in tech["sources"].values():
            for rid in refs:
                tags = {t.removeprefix("attack.") for t in rules[rid].tags}
                assert attack & tags, f"{tech['id']}: {Path(rules[rid].path).stem} is not tagged {sorted(attack)}"


def test_round3_levels_follow_the_severity_policy():
    loud = {Path(r.path).stem for r in _rules().values() if r.level in ("high", "critical")}
    assert loud == HIGH_BY_BEHAVIOUR


def _verdicts(tmp_path: Path, events: list[Event]) -> list[set[str]]:
    """Stems of the round-3 rules matching each built event, after an EVTX round trip."""
    path = write_evtx(tmp_path / "r3.evtx", events)
    stats = ReadStats()
    import pandas as pd

    df = pd.concat(list(iter_evtx(path, stats)), ignore_index=True)
    assert len(df) == len(events)
    matches = _ruleset().evaluate(df)
    out: list[set[str]] = [set() for _ in events]
    for row, rule_path in zip(matches["row"], matches["rule_path"], strict=True):
        out[int(row)].add(Path(rule_path).stem)
    return out


SEC = ("Microsoft-Windows-Security-Auditing", "Security")


def _ev(src: tuple[str, str], eid: int, i: int, **data: str) -> Event:
    from datetime import UTC, datetime, timedelta

    return Event(
        event_id=eid,
        provider=src[0],
        channel=src[1],
        record_id=i,
        time_created=datetime(2021, 3, 2, 4, 0, tzinfo=UTC) + timedelta(seconds=i),
        data=data,
    )


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(  # DCShadow: a user account with the replica-install right vs the DC's own computer account
            [
                _ev(SEC, 4662, 1, SubjectUserName="jdoe", Properties="%%7688 {9923a32a-3607-11d2-b9be-0000f87a36b2}"),
                _ev(SEC, 4662, 2, SubjectUserName="DC01$", Properties="%%7688 {9923a32a-3607-11d2-b9be-0000f87a36b2}"),
            ],
            [{"privesc_dcshadow_replica_registration_access"}, set()],
            id="dcshadow",
        ),
        pytest.param(  # null session: a domain name in an anonymous logon vs Windows' own NT AUTHORITY one
            [
                _ev(SEC, 4624, 1, TargetUserSid="S-1-5-7", TargetDomainName="CORP", LogonType="3"),
                _ev(SEC, 4624, 2, TargetUserSid="S-1-5-7", TargetDomainName="NT AUTHORITY", LogonType="3"),
                _ev(SEC, 4624, 3, TargetUserSid="S-1-5-7", TargetDomainName="AUTORITE NT", LogonType="3"),
            ],
            [{"disc_anonymous_logon_naming_a_domain"}, set(), set()],
            id="null-session",
        ),
        pytest.param(  # BITS: bare IP and a disk image from an outside host vs Windows Update
            [
                _ev(("Microsoft-Windows-Bits-Client", "Microsoft-Windows-Bits-Client/Operational"), 59, 1,
                    url="http://198.51.100.20:8080/x"),
                _ev(("Microsoft-Windows-Bits-Client", "Microsoft-Windows-Bits-Client/Operational"), 60, 2,
                    url="https://mirror.example.net/dist/image.iso"),
                _ev(("Microsoft-Windows-Bits-Client", "Microsoft-Windows-Bits-Client/Operational"), 60, 3,
                    url="http://download.windowsupdate.com/d/msdownload/update/software/x.exe"),
            ],
            [{"persist_bits_transfer_raw_ip_or_payload"}, {"persist_bits_transfer_raw_ip_or_payload"}, set()],
            id="bits",
        ),
        pytest.param(  # quota-created computer vs one created by an OU-delegated deployment account
            [
                _ev(SEC, 4741, 1, SubjectUserName="jdoe", PrivilegeList="SeMachineAccountPrivilege"),
                _ev(SEC, 4741, 2, SubjectUserName="svc_deploy", PrivilegeList="-"),
            ],
            [{"persist_computer_account_created_through_quota"}, set()],
            id="machine-quota",
        ),
    ],
)  # fmt: skip
def test_single_event_boundaries(tmp_path: Path, events: list[Event], expected: list[set[str]]):
    assert _verdicts(tmp_path, events) == expected
