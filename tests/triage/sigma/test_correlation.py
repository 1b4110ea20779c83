"""Sigma correlation rules in the engine: each type, group-by, window edges, bursts, aliases, batches, bad rules."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from triage.sigma import RuleSet, load_rules
from triage.sigma.correlation import Correlator, evaluate_with_correlations, window_starts

T0 = pd.Timestamp("2021-03-02T10:00:00Z")
BASE = textwrap.dedent(
    """\
    title: Failed logon
    id: 5b0a3c1e-0000-4000-8000-000000000001
    name: failed_logon
    logsource: {product: windows, service: security}
    detection:
      sel: {EventID: 4625}
      condition: sel
    level: low
    ---
    title: Successful logon
    id: 5b0a3c1e-0000-4000-8000-000000000002
    name: good_logon
    logsource: {product: windows, service: security}
    detection:
      sel: {EventID: 4624}
      condition: sel
    level: low
    """
)


def corr(body: str, rid: str = "5b0a3c1e-0000-4000-8000-0000000000c1", extra: str = "") -> str:
    head = f"title: Correlation {rid[-2:]}\nid: {rid}\n{extra}"
    return f"{head}correlation:\n{textwrap.indent(body, '  ')}level: medium\n"


@pytest.fixture
def load(tmp_path: Path):
    def _load(*texts: str) -> RuleSet:
        paths = []
        for n, text in enumerate(texts):
            p = tmp_path / f"r{n}.yml"
            p.write_text(text, encoding="utf-8")
            paths.append(p)
        return load_rules(paths)

    return _load


def events(spec: list[tuple[float, int, dict]]) -> pd.DataFrame:
    """(seconds after T0, event id, fields) -> a Security event frame, record ids in list order."""
    rows = [
        {
            "Channel": "Security",
            "Provider": "Microsoft-Windows-Security-Auditing",
            "EventID": eid,
            "TimeCreated": T0 + pd.Timedelta(seconds=s),
            "EventRecordID": n + 1,
            **f,
        }
        for n, (s, eid, f) in enumerate(spec)
    ]
    df = pd.DataFrame(rows)
    df["EventID"] = df["EventID"].astype("Int64")
    return df


EC = "type: event_count\nrules: [failed_logon]\ngroup-by: [IpAddress]\ntimespan: 5m\ncondition: {gte: 10}\n"


def test_event_count_groups_and_one_hit_per_burst(load):
    rs = load(BASE, corr(EC))
    spec = [(i * 10, 4625, {"IpAddress": "203.0.113.7", "TargetUserName": "admin"}) for i in range(12)]
    spec += [(i * 60, 4625, {"IpAddress": "10.0.0.5", "TargetUserName": "jdoe"}) for i in range(9)]  # 9 only
    matches, hits = evaluate_with_correlations(rs, events(spec))
    assert len(hits) == 1
    hit = hits[0]
    assert hit.group == {"IpAddress": "203.0.113.7"}
    assert (hit.first, hit.last, hit.events, hit.peak) == (T0, T0 + pd.Timedelta(seconds=110), 12, 12)
    assert hit.record_ids == tuple(range(1, 13))
    assert matches.empty  # the base rule only serves the correlation (generate: false)


@pytest.mark.parametrize(("spread", "expected"), [(300, 1), (301, 0)])
def test_window_edges_are_inclusive(load, spread: int, expected: int):
    """10 events whose first and last are exactly the timespan apart are within one window; a second more is not."""
    rs = load(BASE, corr(EC))
    times = np.linspace(0, spread, 10)
    _, hits = evaluate_with_correlations(rs, events([(s, 4625, {"IpAddress": "a"}) for s in times]))
    assert len(hits) == expected


def test_unordered_input_gives_the_same_hits(load):
    rs = load(BASE, corr(EC))
    spec = [(i * 7 % 200, 4625, {"IpAddress": "x" if i % 3 else "y"}) for i in range(60)]
    df = events(spec)
    _, ordered = evaluate_with_correlations(rs, df.sort_values("TimeCreated").reset_index(drop=True))
    _, shuffled = evaluate_with_correlations(rs, df.sample(frac=1, random_state=7).reset_index(drop=True))
    key = [(h.group["IpAddress"], h.first, h.last, h.events, sorted(h.record_ids)) for h in ordered]
    assert key == [(h.group["IpAddress"], h.first, h.last, h.events, sorted(h.record_ids)) for h in shuffled]
    assert {k[0] for k in key} == {"x", "y"}


def test_separate_bursts_are_separate_hits_and_a_long_run_is_one(load):
    rs = load(BASE, corr(EC))
    burst = [(i * 5, 4625, {"IpAddress": "a"}) for i in range(10)]
    later = [(7200 + i * 5, 4625, {"IpAddress": "a"}) for i in range(10)]
    long_run = [(20000 + i * 20, 4625, {"IpAddress": "b"}) for i in range(200)]  # steady for ~66 minutes
    _, hits = evaluate_with_correlations(rs, events(burst + later + long_run))
    by_group = sorted((h.group["IpAddress"], h.events) for h in hits)
    assert by_group == [("a", 10), ("a", 10), ("b", 200)]


def test_value_count_counts_distinct_values_per_group(load):
    vc = "type: value_count\nrules: [failed_logon]\ngroup-by: [IpAddress]\ntimespan: 10m\n"
    vc += "condition: {gte: 5, field: TargetUserName}\n"
    rs = load(BASE, corr(vc))
    spray = [(i * 10, 4625, {"IpAddress": "s", "TargetUserName": f"user{i}"}) for i in range(6)]
    guess = [(i * 10, 4625, {"IpAddress": "g", "TargetUserName": "admin"}) for i in range(50)]  # many, one name
    slow = [(i * 700, 4625, {"IpAddress": "w", "TargetUserName": f"u{i}"}) for i in range(8)]  # > 10m apart
    _, hits = evaluate_with_correlations(rs, events(spray + guess + slow))
    assert [(h.group, h.peak, len(h.values)) for h in hits] == [({"IpAddress": "s"}, 6, 6)]


def test_temporal_needs_every_rule_in_the_window(load):
    tc = "type: temporal\nrules: [failed_logon, good_logon]\ngroup-by: [TargetUserName]\ntimespan: 2m\n"
    rs = load(BASE, corr(tc))
    spec = [(0, 4625, {"TargetUserName": "a"}), (30, 4624, {"TargetUserName": "a"})]  # both within 2m
    spec += [(0, 4625, {"TargetUserName": "b"}), (600, 4624, {"TargetUserName": "b"})]  # 10 minutes apart
    spec += [(0, 4625, {"TargetUserName": "c"}), (5, 4625, {"TargetUserName": "c"})]  # one rule only
    _, hits = evaluate_with_correlations(rs, events(spec))
    assert [h.group["TargetUserName"] for h in hits] == ["a"]
    assert hits[0].rule_counts == {"5b0a3c1e-0000-4000-8000-000000000001": 1, "5b0a3c1e-0000-4000-8000-000000000002": 1}


def test_temporal_ordered_needs_the_listed_order(load):
    tc = "type: temporal_ordered\nrules: [failed_logon, good_logon]\ngroup-by: [TargetUserName]\ntimespan: 2m\n"
    rs = load(BASE, corr(tc))
    spec = [(0, 4625, {"TargetUserName": "a"}), (30, 4624, {"TargetUserName": "a"})]  # fail, then success
    spec += [(0, 4624, {"TargetUserName": "b"}), (30, 4625, {"TargetUserName": "b"})]  # success, then fail
    spec += [(0, 4625, {"TargetUserName": "c"}), (200, 4624, {"TargetUserName": "c"})]  # too far apart
    _, hits = evaluate_with_correlations(rs, events(spec))
    assert [(h.group["TargetUserName"], h.first, h.last) for h in hits] == [("a", T0, T0 + pd.Timedelta(seconds=30))]


def test_aliases_group_different_fields(load):
    tc = textwrap.dedent(
        """\
        type: temporal
        rules: [failed_logon, good_logon]
        aliases:
          who:
            failed_logon: TargetUserName
            good_logon: SubjectUserName
        group-by: [who]
        timespan: 1m
        """
    )
    rs = load(BASE, corr(tc))
    spec = [(0, 4625, {"TargetUserName": "eve"}), (10, 4624, {"SubjectUserName": "eve", "TargetUserName": "x"})]
    _, hits = evaluate_with_correlations(rs, events(spec))
    assert [h.group for h in hits] == [{"who": "eve"}]


def test_rules_by_id_in_another_file_and_generate_true(load):
    body = "type: event_count\nrules: [5b0a3c1e-0000-4000-8000-000000000001]\ntimespan: 1h\ncondition: {gt: 2}\n"
    rs = load(corr(body + "generate: true\n"), BASE)
    matches, hits = evaluate_with_correlations(rs, events([(i, 4625, {}) for i in range(3)]))
    assert len(hits) == 1 and hits[0].group == {}
    assert len(matches) == 3  # generate: true keeps the base rule's own matches


def test_batches_give_the_same_hits_as_one_frame(load):
    rs = load(BASE, corr(EC))
    df = events([(i * 3, 4625, {"IpAddress": "a"}) for i in range(40)])
    one = Correlator(rs)
    one.add(df, rs.evaluate(df))
    several = Correlator(rs)
    for part in (df.iloc[:13], df.iloc[13:29], df.iloc[29:]):
        part = part.reset_index(drop=True)
        several.add(part, rs.evaluate(part))
    a, b = one.finish(), several.finish()
    assert [(h.first, h.last, h.events) for h in a] == [(h.first, h.last, h.events) for h in b]
    assert len(a) == 1 and a[0].events == 40


def test_events_without_time_are_counted_not_used(load):
    rs = load(BASE, corr(EC))
    df = events([(i, 4625, {"IpAddress": "a"}) for i in range(12)])
    df.loc[:5, "TimeCreated"] = pd.NaT
    c = Correlator(rs)
    c.add(df, rs.evaluate(df))
    assert c.finish() == [] and c.untimed == 6


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("type: event_count\nrules: [no_such_rule]\ntimespan: 5m\ncondition: {gte: 3}\n", "not loaded: no_such_rule"),
        ("type: value_sum\nrules: [failed_logon]\ntimespan: 5m\ncondition: {gte: 3, field: X}\n", "not supported"),
        ("type: event_count\nrules: [failed_logon]\ntimespan: 5x\ncondition: {gte: 3}\n", "timespan"),
        ("type: event_count\nrules: [failed_logon]\ntimespan: 5m\ncondition: {between: 3}\n", "pySigma"),
    ],
)
def test_malformed_correlations_are_skipped_with_a_reason(load, body: str, reason: str):
    rs = load(BASE, corr(body))
    assert rs.correlations == []
    assert len(rs.loaded) == 2  # the base rules still load
    assert len(rs.skipped) == 1 and reason in rs.skipped[0].reason, rs.skipped


def test_window_starts_fallback_for_huge_keys_matches_the_fast_path():
    rng = np.random.default_rng(3)
    g = np.sort(rng.integers(0, 50, 2000))
    t = np.concatenate([np.sort(rng.integers(0, 10**12, (g == k).sum())) for k in range(50)])
    fast = window_starts(g, t, 60 * 10**9)
    spread = t * 10**6  # a time range too long for the one-key path
    slow = window_starts(g, spread, 60 * 10**15)
    assert np.array_equal(fast, slow)


@pytest.mark.slow
def test_one_million_matches_in_bounded_time(load):
    vc = "type: value_count\nrules: [failed_logon]\ngroup-by: [IpAddress]\ntimespan: 10m\n"
    vc += "condition: {gte: 10, field: TargetUserName}\n"
    rs = load(BASE, corr(EC), corr(vc, rid="5b0a3c1e-0000-4000-8000-0000000000c2"))
    n = 1_000_000
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "Channel": "Security",
            "Provider": "Microsoft-Windows-Security-Auditing",
            "EventID": pd.array(np.full(n, 4625), dtype="Int64"),
            "TimeCreated": T0 + pd.to_timedelta(rng.integers(0, 30 * 86400, n), unit="s"),
            "EventRecordID": np.arange(n),
            "IpAddress": rng.integers(0, 5000, n).astype(str),
            "TargetUserName": np.char.add("u", rng.integers(0, 3000, n).astype(str)),
        }
    )
    start = time.perf_counter()
    _, hits = evaluate_with_correlations(rs, df)
    elapsed = time.perf_counter() - start
    assert elapsed < 60, elapsed
    # each address sends ~200 events over 30 days: about 0.05 per 5 minutes, so bursts of 10 are absent
    assert all(h.rule.type == "event_count" or h.peak >= 10 for h in hits)
    assert sum(h.rule.type == "event_count" for h in hits) == 0


EC_ID4 = "5b0a3c1e-0000-4000-8000-0000000000c4"


def test_correlation_over_a_correlation_and_cycles(load):
    silent = EC.replace("group-by: [IpAddress]", "group-by: [IpAddress]\ngenerate: false")
    burst = corr(silent, extra="name: guessing\n")
    then = "type: temporal_ordered\nrules: [guessing, good_logon]\ngroup-by: [IpAddress]\ntimespan: 10m\n"
    rs = load(BASE, corr(then, rid="5b0a3c1e-0000-4000-8000-0000000000c3"), burst)  # named before it is loaded
    assert [c.id[-2:] for c in rs.correlations] == ["c1", "c3"]  # dependency order
    guess = [(i * 3, 4625, {"IpAddress": "a"}) for i in range(12)]
    spec = [*guess, (100, 4624, {"IpAddress": "a"})]  # success 67 s after the burst's last failure
    spec += [(i * 3, 4625, {"IpAddress": "b"}) for i in range(12)]  # a burst, no success
    spec += [(0, 4624, {"IpAddress": "c"})]  # a success alone
    _, hits = evaluate_with_correlations(rs, events(spec))
    got = sorted((h.rule.id[-2:], h.group["IpAddress"]) for h in hits)
    assert got == [("c1", "a"), ("c1", "b"), ("c3", "a")]  # a correlation named by another is still reported
    outer = next(h for h in hits if h.rule.id.endswith("c3"))
    assert (outer.first, outer.last) == (T0 + pd.Timedelta(seconds=33), T0 + pd.Timedelta(seconds=100))

    loop_a = corr("type: temporal\nrules: [loop_b, failed_logon]\ntimespan: 5m\n", extra="name: loop_a\n")
    loop_b = corr("type: temporal\nrules: [loop_a, failed_logon]\ntimespan: 5m\n", rid=EC_ID4)
    rs = load(BASE, loop_a, loop_b.replace("correlation:", "name: loop_b\ncorrelation:"))
    assert rs.correlations == []
    assert all("cycle" in s.reason for s in rs.skipped) and len(rs.skipped) == 2


def test_odd_record_numbers_and_times_cost_only_themselves(load):
    rs = load(BASE, corr(EC))
    df = events([(i, 4625, {"IpAddress": "a"}) for i in range(12)])
    df["EventRecordID"] = pd.Series([2**64 - 2, "x", None, *range(4, 13)], dtype=object)
    df["TimeCreated"] = df["TimeCreated"].astype(object)
    df.loc[1, "TimeCreated"] = "not a time"
    c = Correlator(rs)
    c.add(df, rs.evaluate(df))
    hits = c.finish()
    assert c.untimed == 1 and len(hits) == 1 and hits[0].events == 11
    assert hits[0].record_ids == tuple(range(4, 13))


def test_shared_frame_rows_give_each_log_the_hits_of_its_own_frame(load):
    """A batch frame of several logs, converted once (EventColumns), gives each log's correlator exactly the
    hits that log's own frame gives."""
    from triage.sigma.correlation import EventColumns

    rs = load(BASE, corr(EC))
    logs = [
        events([(i * 3, 4625, {"IpAddress": "a"}) for i in range(12)]),
        events([(i * 40, 4625, {"IpAddress": "b"}) for i in range(12)]),  # too slow for the window
        events([(i, 4625, {"IpAddress": ip}) for i in range(30) for ip in ("c", "d")]),
    ]
    shared = pd.concat(logs, ignore_index=True)
    view = EventColumns(shared)
    matches = rs.evaluate(shared)
    start = 0
    for log in logs:
        alone = Correlator(rs)
        alone.add(log, rs.evaluate(log))
        mine = matches[(matches["row"] >= start) & (matches["row"] < start + len(log))]
        together = Correlator(rs)
        together.add_rows(view, mine["rule_id"].to_numpy(dtype=object), mine["row"].to_numpy(dtype=np.int64))
        start += len(log)
        a, b = alone.finish(), together.finish()
        assert [(h.group, h.first, h.last, h.events, h.record_ids) for h in a] == [
            (h.group, h.first, h.last, h.events, h.record_ids) for h in b
        ]
    counts = []
    for log in logs:
        c = Correlator(rs)
        c.add(log, rs.evaluate(log))
        counts.append(sum(h.events for h in c.finish()))
    assert counts == [12, 0, 60]
