"""Correlation rules through the eventlog analyzer: a collected Security log with a password-guessing burst."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.case import Case
from triage.report import load_findings
from triage.runner import analyze_case
from triage.testing.eventlogs import FILES, LOGS
from triage.testing.evtx import Event, evtx_bytes
from triage.testing.volume import VolumeSpec, build_volume

SOURCE_RULE = "corr_bruteforce_failed_logons_by_source.yml"


def _failed(n: int, when: datetime, ip: str, user: str) -> Event:
    data = {"TargetUserName": user, "TargetDomainName": "CORP", "Status": "0xc000006d", "LogonType": "10"}
    data |= {"IpAddress": ip, "IpPort": "50000", "WorkstationName": "X"}
    return Event(4625, "Microsoft-Windows-Security-Auditing", "Security", time_created=when, record_id=n, data=data)


def test_one_finding_per_burst_with_times_count_and_records(tmp_path: Path) -> None:
    vol = build_volume(tmp_path / "vol", VolumeSpec(compromised=False, event_logs=True))
    t0 = datetime(2021, 3, 2, 23, 0, tzinfo=UTC)
    events = [_failed(n + 1, t0 + timedelta(seconds=4 * n), "203.0.113.7", f"user{n % 3}") for n in range(30)]
    # the same address a day later, a few tries spread out: not a burst
    events += [_failed(31 + n, t0 + timedelta(days=1, minutes=20 * n), "203.0.113.7", "jdoe") for n in range(5)]
    (vol / LOGS / FILES["Security"]).write_bytes(evtx_bytes(events))
    case = Case.create_or_open(tmp_path / "case", examiner="t")
    collect_volume(case, open_source_path(str(vol)), host=None)
    s = analyze_case(case, only=("eventlog",))
    assert set(s.statuses) == {"success"}, s.statuses
    df = load_findings(case)
    attrs = [json.loads(a) for a in df["attributes"]]
    corr = df[[a.get("rule_file") == SOURCE_RULE for a in attrs]]
    assert len(corr) == 1
    hit = corr.iloc[0]
    a = json.loads(hit["attributes"])
    assert str(hit["severity"]) == "medium" and "T1110.001" in hit["mitre"]
    assert (a["first"], a["last"], a["events"]) == ("2021-03-02T23:00:00+00:00", "2021-03-02T23:01:56+00:00", 30)
    assert a["group_by"] == {"IpAddress": "203.0.113.7"} and a["sample_record_ids"][:3] == [1, 2, 3]
    assert str(hit["ts"]) == "2021-03-02 23:00:00+00:00"
    # the building block (generate: false) gives no finding per failed logon
    assert not [x for x in attrs if x.get("rule_file") == "corr_base_failed_logon.yml"]
