"""The report's views read as data and markup (no browser): the attack-window timeline with its lanes, bounded on
a million findings; the ProxyLogon narrative as a sequence of stages linked to findings; the page's layout."""

from __future__ import annotations

import json
import math
import re
import time
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from report_support import context, finding

from triage.report.html import report_timeline
from triage.report.sequence import STAGES, narrative_sequences
from triage.report.svg import (
    LANES,
    MAX_BINS,
    MAX_CELLS,
    MIN_MARGIN,
    attack_window,
    build_timeline,
    lane_of,
    timeline_svg,
)

LANE_KEYS = [k for k, _, _ in LANES]
T = datetime(2021, 3, 3, 2, 13, 51, tzinfo=UTC)


class Page(HTMLParser):
    """Elements with their attributes, in document order, and the text of the JSON data blocks."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.blocks: dict[str, str] = {}
        self._block: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        self._block = a.get("id") if tag == "script" and a.get("type") == "application/json" else None

    def handle_endtag(self, tag: str) -> None:
        self._block = None

    def handle_data(self, data: str) -> None:
        if self._block:
            self.blocks[self._block] = self.blocks.get(self._block, "") + data

    def find(self, tag: str, **want: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in want.items())]

    def position(self, tag: str, id_: str) -> int:
        return next(i for i, (t, a) in enumerate(self.tags) if t == tag and a.get("id") == id_)


def _secs(ts: pd.Series) -> np.ndarray:
    return (ts.astype("int64") // 1_000_000).to_numpy()


# -- timeline -----------------------------------------------------------------------------------------
def test_attack_window_margin() -> None:
    assert attack_window(1000, 1100) == (1000 - MIN_MARGIN, 1100 + MIN_MARGIN)  # short attack: the minimum margin
    assert attack_window(0, 100_000) == (-10_000, 110_000)  # long attack: a tenth either side


def test_timeline_focuses_on_detections_and_keeps_every_count() -> None:
    """The default view is the detections' window (not the whole span); cell counts add up to the dated findings."""
    ts = pd.Series(
        pd.to_datetime(
            [
                "2019-05-01T00:00:00Z",
                "2021-03-03T02:13:51Z",
                "2021-03-03T02:20:05Z",
                "2021-03-03T03:02:00Z",
                "2026-12-07T13:06:28Z",
                None,
            ],
            utc=True,
            format="ISO8601",
        )
    ).astype("datetime64[us, UTC]")
    lanes = np.array(
        [lane_of("registry_hive"), lane_of("exchange_log"), lane_of("evtx"), lane_of("evtx"), lane_of("web_file"), 0]
    )
    sev = np.array([0, 4, 3, 3, 0, 4])
    det = np.array([False, True, True, True, False, True])
    tl = build_timeline(ts, lanes, sev, det)
    first, last = _secs(ts.iloc[1:2])[0], _secs(ts.iloc[3:4])[0]
    assert tl.detections == (first, last)
    assert tl.default_range == attack_window(first, last)
    assert tl.span == (_secs(ts.iloc[:1])[0], _secs(ts.iloc[4:5])[0])
    assert (tl.dated, tl.undated) == (5, 1)
    for cs in tl.sets:
        inside = ((_secs(ts.iloc[:5]) >= cs.start) & (_secs(ts.iloc[:5]) <= cs.end)).sum()
        assert int(cs.n.sum()) == inside
    svg = timeline_svg(tl)
    lo, hi = tl.default_range
    assert f'data-from="{lo}" data-to="{hi}"' in svg
    assert re.findall(r'data-lane="(\w+)"', svg) == LANE_KEYS
    # zoomed out to the whole span the same chart shades the attack window
    wide = timeline_svg(tl, tl.span)
    assert 'class="attack-window"' in wide and f'data-from="{tl.span[0]}"' in wide

    def bin_of(chart: str) -> int:
        return int(re.search(r'data-bin="(\d+)"', chart).group(1))

    assert bin_of(svg) <= 60 < 86400 <= bin_of(wide)  # minutes in the window, days or more over seven years


def test_timeline_without_detections_shows_the_span() -> None:
    ts = pd.Series(pd.to_datetime(["2021-03-01T08:00:00Z", "2021-03-02T08:00:00Z"], utc=True)).astype(
        "datetime64[us, UTC]"
    )
    tl = build_timeline(ts, np.array([0, 1]), np.array([0, 1]), np.array([False, False]))
    assert tl.window is None and tl.default_range == tl.span
    empty = build_timeline(ts.iloc[:0], np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool))
    assert "No dated findings" in timeline_svg(empty)


def test_a_million_findings_stay_bounded() -> None:
    """1M dated findings over two years: a few thousand cells, at most MAX_BINS bars per lane, built in seconds."""
    rng = np.random.default_rng(7)
    n = 1_000_000
    base = int(pd.Timestamp("2020-01-01", tz="UTC").timestamp())
    secs = base + rng.integers(0, 2 * 365 * 86400, n)
    secs[10], secs[20] = base + 400 * 86400, base + 400 * 86400 + 3 * 3600  # the two detections: three hours
    ts = pd.Series(pd.to_datetime(secs, unit="s", utc=True)).astype("datetime64[us, UTC]")
    lanes = rng.integers(0, len(LANES), n)
    sev = rng.integers(0, 5, n)
    det = np.zeros(n, dtype=bool)
    det[[10, 20]] = True
    t0 = time.perf_counter()
    tl = build_timeline(ts, lanes, sev, det)
    svg = timeline_svg(tl)
    wide = timeline_svg(tl, tl.span)
    took = time.perf_counter() - t0
    assert all(len(cs.n) <= MAX_CELLS for cs in tl.sets)
    assert int(tl.sets[0].n.sum()) == n
    assert wide.count("<rect") <= MAX_BINS * len(LANES) * 5 + 10
    assert len(json.dumps(tl.as_json())) < 2_000_000 and len(wide) < 3_000_000
    d = sorted(secs[[10, 20]])
    assert tl.default_range == attack_window(int(d[0]), int(d[1])) and 'class="bar' in svg
    assert len(tl.sets) == 2 and tl.sets[1].width < tl.sets[0].width  # the window keeps finer cells
    assert took < 20, took  # generous on a shared 2-core machine; about two seconds here


# -- narrative as a sequence --------------------------------------------------------------------------
def _narrative_case():
    """A host whose narrative walks all stages, the web log findings on the same lines, a later lsass dump."""
    log = "C:/Exchange/Logging/HttpProxy/Ecp/HttpProxy_2021030302-1.LOG"
    steps = [
        {
            "ts": T.isoformat(),
            "method": "POST",
            "uri_stem": "/ecp/y.js",
            "backend": "EXCH01:444/ecp/proxyLogon.ecp#",
            "rule_ids": ["TPL-CVE-2021-26855"],
            "labels": ["CVE-2021-26855 SSRF"],
            "sources": ["HttpProxy/Ecp"],
            "locations": [f"{log}:7"],
        },
        {
            "ts": (T + timedelta(seconds=20)).isoformat(),
            "method": "POST",
            "backend": "EXCH01:444/ecp/DDI/DDIService.svc",
            "uri_stem": "/ecp/x.js",
            "uri_query": "msExchEcpCanary=abc",
            "sources": ["HttpProxy/Ecp"],
            "rule_ids": [],
            "locations": [f"{log}:8"],
        },
        {
            "ts": (T + timedelta(seconds=40)).isoformat(),
            "uri_stem": "/ecp/DDI/DDIService.svc/SetObject",
            "cmd": "Set-OabVirtualDirectory -ExternalUrl http://f/<script>",
            "sources": ["ECP"],
            "rule_ids": [],
            "locations": [f"{log}:9"],
        },
        {
            "ts": (T + timedelta(minutes=3)).isoformat(),
            "method": "POST",
            "uri_stem": "/aspnet_client/system_web/Dk2jQ8ab.aspx",
            "status": "200",
            "sources": ["IIS"],
            "rule_ids": [],
            "locations": [f"{log}:10"],
        },
    ]
    attrs = {
        "client_ip": "167.99.168.251",
        "first": T.isoformat(),
        "last": (T + timedelta(minutes=3)).isoformat(),
        "steps": steps,
        "shell_names": ["dk2jq8ab.aspx"],
        "host_events": [
            {
                "ts": (T + timedelta(seconds=50)).isoformat(),
                "source": "C:/Windows/System32/winevt/Logs/App.evtx",
                "what": "CVE-2021-26858 OAB generator wrote C:/inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx",
            },
        ],
        "related_requests": [],
    }
    fs = [
        finding("TRIAGE-EXN-001", "H1", severity="critical", ts=T, attributes=attrs, title="ProxyLogon from x"),
        finding("TRIAGE-EXW-013", "A1", severity="critical", ts=T, location=f"{log}:7", rule_title="SSRF cookie"),
        finding("TRIAGE-EXW-017", "A1", severity="critical", ts=T, location=f"{log}:9", rule_title="OAB vdir set"),
        finding("TRIAGE-EXW-010", "A1", severity="high", ts=T, location=f"{log}:10", rule_title="shell request"),
        finding(
            "S-26858", "A2", severity="high", ts=T + timedelta(seconds=50), location="App#3", rule_title="OAB write"
        ),
        finding(
            "MEM-LSASS-DUMP-FILE", "A3", severity="critical", ts=T + timedelta(minutes=20), rule_title="lsass dump"
        ),
        finding("TRIAGE-HOST-001", "A4", severity="info", ts=T + timedelta(minutes=21)),  # no indication
    ]
    for f in fs[1:4]:
        object.__setattr__(f, "evidence_path", f"evidence/EX1/exchange_log/{log[3:]}")
    object.__setattr__(fs[4], "evidence_path", "evidence/EX1/evtx/C/Windows/System32/winevt/Logs/App.evtx")
    return context([], fs, []), fs


def test_narrative_stages_in_order_with_links() -> None:
    ctx, _ = _narrative_case()
    ids = {str(i) for i in ctx.findings["finding_id"]}
    (seq,) = narrative_sequences(ctx, ids)
    assert [s["name"] for s in seq["stages"]] == list(STAGES)
    firsts = [s["first"] for s in seq["stages"]]
    assert all(firsts), firsts  # every stage seen
    assert firsts == sorted(firsts)
    by_stage = {s["name"]: s for s in seq["stages"]}

    def linked(stage: str) -> set[str]:
        return {link["rule_id"] for it in by_stage[stage]["items"] for link in it["links"]}

    assert linked("SSRF") == {"TRIAGE-EXW-013"}
    assert linked("OAB change") == {"TRIAGE-EXW-017"}
    assert linked("web shell") == {"TRIAGE-EXW-010", "S-26858"}  # the request, and the event of the write
    assert linked("follow-on") == {"MEM-LSASS-DUMP-FILE"}  # later detections; info findings are no detection
    assert by_stage["ECP access"]["count"] == 1
    assert seq["self"]["rule_id"] == "TRIAGE-EXN-001" and seq["self"]["on_page"]
    links = [link for s in seq["stages"] for it in s["items"] for link in it["links"]]
    assert links and all(link["id"] in ids and link["on_page"] for link in links)
    # a finding the page does not embed is named, not linked
    (seq2,) = narrative_sequences(ctx, set())
    assert not any(link["on_page"] for s in seq2["stages"] for it in s["items"] for link in it["links"])


def test_report_timeline_lanes_from_evidence_kinds() -> None:
    from report_support import art

    arts = [art("A1", "exchange_log", "C:/x.LOG"), art("A2", "evtx", "C:/a.evtx"), art("A3", "memory_image", "m.raw")]
    ctx, _ = _narrative_case()
    ctx2 = context(
        arts, [finding(r, e, severity="high", ts=T) for r, e in (("R1", "A1"), ("R2", "A2"), ("R3", "A3"))], []
    )
    tl = report_timeline(ctx2)
    lanes = sorted({int(v) for v in tl.sets[0].lane})
    assert lanes == [LANE_KEYS.index("evtx"), LANE_KEYS.index("web"), LANE_KEYS.index("memory")]
    assert report_timeline(ctx).detections is not None


# -- the page of a demo-like case ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def page(hostile_report):
    case, _ = hostile_report
    text = (case.path / "report" / "report.html").read_text(encoding="utf-8")
    return case, Page(text)


def test_layout_puts_findings_right_after_the_verdicts(page) -> None:
    _, p = page
    order = [
        p.position("section", s)
        for s in ("verdicts", "findings", "timeline", "narratives", "ledger", "hosts", "manifest")
    ]
    assert order == sorted(order)
    data = json.loads(p.blocks["findings-data"])
    assert [c[0] for c in data["columns"]] == ["severity", "ts", "host", "rule_title", "title", "evidence_path"]
    assert "rule_id" in data["detail"] and "attributes" in data["detail"]
    fields = data["fields"]
    narrative = next(r for r in data["rows"] if r[fields.index("rule_id")] == "TRIAGE-EXN-001")
    assert narrative[fields.index("rule_title")] == "ProxyLogon attack narrative per client"
    attrs = dict(narrative[fields.index("attributes")])  # key/value rows, not one JSON text
    assert attrs["client_ip"] == "167.99.168.251" and json.loads(attrs["steps"])[0]["method"] == "POST"


def test_timeline_defaults_to_the_attack_window(page) -> None:
    case, p = page
    df = pd.read_parquet(case.path / "report" / "findings.parquet")
    tags = df["tags"].fillna("")
    noise = tags.str.contains("coverage|build|inventory", regex=True)
    det = df[df["severity"].isin(["medium", "high", "critical"]) & ~noise & df["ts"].notna()]
    first, last = int(det["ts"].min().timestamp()), math.floor(det["ts"].max().timestamp())
    (svg,) = p.find("svg", id="timeline-chart")
    assert (int(svg["data-from"]), int(svg["data-to"])) == attack_window(first, last)
    assert [a["data-lane"] for a in p.find("g", **{"class": "lane"})] == LANE_KEYS
    data = json.loads(p.blocks["timeline-data"])
    assert data["window"] == list(attack_window(first, last)) and data["span"][0] <= first
    assert {a["data-zoom"] for a in p.find("button")} >= {"window", "span", "in", "out"}


def test_narrative_section_links_resolve_to_embedded_findings(page) -> None:
    _, p = page
    stages = [a["data-stage"] for a in p.find("li") if "stage" in a.get("class", "").split()]
    assert stages[: len(STAGES)] == list(STAGES)
    ids = {
        r[json.loads(p.blocks["findings-data"])["fields"].index("finding_id")]
        for r in json.loads(p.blocks["findings-data"])["rows"]
    }
    links = [a for t, a in p.tags if t == "a" and a.get("data-finding")]
    assert links and all(a["href"] == f"#f-{a['data-finding']}" and a["data-finding"] in ids for a in links)
