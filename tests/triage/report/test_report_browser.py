"""The HTML report in a real Chromium: renders, filters, loads nothing, runs no planted script."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from report_support import SCRIPT

CHROMIUM = os.environ.get("TRIAGE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory: pytest.TempPathFactory):
    """A fresh Chromium profile, and what the page did while loading (console, requests, dialogs)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=ARGS, viewport={"width": 1400, "height": 900}
        )
        try:
            yield ctx
        finally:
            ctx.close()


def test_report_in_chromium(browser_page, hostile_report, tmp_path: Path) -> None:
    case, _ = hostile_report
    html = case.path / "report" / "report.html"
    page = browser_page.new_page()
    console: list[tuple[str, str]] = []
    requests: list[str] = []
    dialogs: list[str] = []
    page.on("console", lambda m: console.append((m.type, m.text)))
    page.on("pageerror", lambda e: console.append(("pageerror", str(e))))
    page.on("request", lambda r: requests.append(r.url))

    def on_dialog(d) -> None:
        dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", on_dialog)
    page.goto(html.as_uri())
    page.wait_for_selector("#findings-table tbody tr.finding-row")

    df = pd.read_parquet(case.path / "report" / "findings.parquet")
    rows = page.locator("#findings-table tbody tr.finding-row")
    assert rows.count() == len(df)
    # the ledger renders: one matrix row per step, one column per host (after step, what, CISA paragraph, category)
    steps = page.locator("#ledger-matrix tbody tr")
    assert steps.count() == 37
    assert page.locator("#ledger-matrix thead th").count() == 4 + 2
    assert "compromised" in page.locator("#verdicts").inner_text()

    # filter: type, wait for the debounce, count the rows left
    page.fill("#findings-filter", "hyperlink")
    page.wait_for_function("n => document.querySelectorAll('#findings-table tbody tr.finding-row').length === n", arg=1)
    assert "1 of" in page.locator("#findings-count").inner_text()
    page.fill("#findings-filter", "")
    page.select_option("#findings-severity", "4")
    critical = int((df["severity"] == "critical").sum())
    page.wait_for_function(
        "n => document.querySelectorAll('#findings-table tbody tr.finding-row').length === n", arg=critical
    )
    page.select_option("#findings-severity", "0")

    # open a hostile finding: its payload shows as text, and still nothing runs
    page.fill("#findings-filter", "TRIAGE-PROBE-0")
    page.wait_for_function("() => document.querySelectorAll('#findings-table tbody tr.finding-row').length === 1")
    page.locator("#findings-table tbody tr.finding-row").first.click()
    detail = page.locator("#findings-table tr.detail")
    assert SCRIPT in detail.inner_text()
    # sorting a static table works too
    page.locator("#rules-table thead th").nth(4).click()

    page.wait_for_timeout(200)
    page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert page.locator("img").count() == 0 and page.locator("b").count() == 0
    assert page.locator("script").count() == 3  # two data blocks and our own script
    assert dialogs == [], f"a planted script ran: {dialogs}"
    errors = [m for m in console if m[0] in ("error", "pageerror")]
    assert errors == [], errors
    assert set(requests) == {html.as_uri()}, requests
    page.close()


SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "exchange-compromised" / "EXCH01-volume.zip"
VIEWPORTS = ((1366, 768), (1920, 1080))


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled compromised sample (the demo's volume zip, with its recorded 2021 file times), reported."""
    from collectors.collect import collect_volume
    from collectors.sources import open_source_path
    from triage.case import Case
    from triage.report import build_report
    from triage.runner import analyze_case

    case = Case.create_or_open(tmp_path_factory.mktemp("demo") / "case", examiner="tester", case_id="CASE-DEMO")
    collect_volume(case, open_source_path(str(SAMPLE)), host=None)
    analyze_case(case)
    build_report(case)
    case.close()
    return case.path / "report" / "report.html"


def _range(page) -> tuple[int, int]:
    svg = page.locator("#timeline-chart")
    return int(svg.get_attribute("data-from")), int(svg.get_attribute("data-to"))


@pytest.mark.slow
def test_demo_report_shows_the_attack(browser_page, demo_report: Path, tmp_path: Path) -> None:
    """Findings in the first screen at two common sizes, the timeline on the March 2021 attack with zoom, and the
    narrative's stages in order with links that open their findings. Screenshots go to the test's tmp folder."""
    from triage.report.sequence import STAGES

    page = browser_page.new_page()
    console: list[tuple[str, str]] = []
    requests: list[str] = []
    page.on("console", lambda m: console.append((m.type, m.text)))
    page.on("pageerror", lambda e: console.append(("pageerror", str(e))))
    page.on("request", lambda r: requests.append(r.url))
    print(f"screenshots in {tmp_path}")
    for w, h in VIEWPORTS:
        page.set_viewport_size({"width": w, "height": h})
        page.goto(demo_report.as_uri())
        page.wait_for_selector("#findings-table tbody tr.finding-row")
        first = page.locator("#findings-table tbody tr.finding-row").first.bounding_box()
        card = page.locator("#verdicts .card").first.bounding_box()
        assert first and card and first["y"] + first["height"] <= h, (w, h, first)
        assert card["y"] + card["height"] <= h
        assert "compromised" in page.locator("#verdicts .card").first.inner_text()
        page.screenshot(path=str(tmp_path / f"report-{w}x{h}.png"))

    # the rule column shows titles; the id is on hover and in the detail, attributes are key/value rows
    row = page.locator("#findings-table tbody tr.finding-row").first
    rule_cell = row.locator("td").nth(3)
    assert rule_cell.get_attribute("title") and rule_cell.inner_text() != rule_cell.get_attribute("title")
    page.fill("#findings-filter", "ProxyLogon activity from")
    page.wait_for_function("() => document.querySelectorAll('#findings-table tbody tr.finding-row').length === 1")
    page.locator("#findings-table tbody tr.finding-row").first.click()
    attrs = page.locator("#findings-table tr.detail .attrs")
    assert "client_ip" in attrs.inner_text() and "167.99.168.251" in attrs.inner_text()
    more = page.locator("#findings-table tr.detail button.more").first
    before = len(page.locator("#findings-table tr.detail").inner_text())
    more.click()
    assert len(page.locator("#findings-table tr.detail").inner_text()) > before  # the full value on demand
    page.fill("#findings-filter", "")

    # the timeline opens on the attack window, in March 2021, with its lanes
    data = page.evaluate("JSON.parse(document.getElementById('timeline-data').textContent)")
    window = tuple(data["window"])
    assert _range(page) == window
    march = (
        int(pd.Timestamp("2021-03-01", tz="UTC").timestamp()),
        int(pd.Timestamp("2021-04-01", tz="UTC").timestamp()),
    )
    assert march[0] <= window[0] < window[1] <= march[1]
    assert data["span"][1] <= march[1]  # nothing dated at checkout time: the sample carries its own file times
    lanes = page.locator("#timeline-chart g.lane")
    assert [lanes.nth(i).get_attribute("data-lane") for i in range(lanes.count())] == [
        "evtx", "web", "files", "registry", "memory"
    ]  # fmt: skip
    for lane in ("evtx", "web", "files"):
        assert page.locator(f'#timeline-chart g.lane[data-lane="{lane}"] rect.bar').count() > 0, lane
    page.locator("#timeline").screenshot(path=str(tmp_path / "timeline-window.png"))
    page.click('#timeline-controls button[data-zoom="in"]')
    lo, hi = _range(page)
    assert window[0] < lo < hi < window[1] and abs((hi - lo) * 2 - (window[1] - window[0])) <= 2
    page.click('#timeline-controls button[data-zoom="span"]')
    lo, hi = _range(page)
    assert (
        lo <= data["span"][0] and hi >= data["span"][1] and page.locator("#timeline-chart rect.attack-window").count()
    )
    page.locator("#timeline").screenshot(path=str(tmp_path / "timeline-span.png"))
    box = page.locator("#timeline-chart").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + 60)
    page.mouse.up()
    lo2, hi2 = _range(page)
    assert lo < lo2 < hi2 < hi  # dragged across: zoomed to that stretch
    page.click('#timeline-controls button[data-zoom="window"]')
    assert _range(page) == window

    # the narrative as a sequence: stages in order, links open their findings
    stages = page.locator("#narratives .narrative").first.locator("li.stage")
    names = [stages.nth(i).get_attribute("data-stage") for i in range(stages.count())]
    assert names == list(STAGES)
    firsts = [stages.nth(i).get_attribute("data-first") for i in range(stages.count())]
    seen = [f for f in firsts if f]
    assert len(seen) >= 4 and seen == sorted(seen), firsts
    page.locator("#narratives").screenshot(path=str(tmp_path / "narrative.png"))
    link = page.locator('#narratives li.stage[data-stage="SSRF"] a.flink').first
    fid = link.get_attribute("data-finding")
    link.click()
    target = page.locator(f"#f-{fid}")
    target.wait_for()
    assert "target" in (target.get_attribute("class") or "")
    tb = target.bounding_box()
    assert tb and 0 <= tb["y"] <= page.viewport_size["height"]
    assert page.locator("#findings-table tr.detail").count() >= 1

    errors = [m for m in console if m[0] in ("error", "pageerror")]
    assert errors == [], errors
    assert set(requests) == {demo_report.as_uri()}, requests
    page.close()


@pytest.mark.slow
def test_fleet_page_bar_charts(browser_page, demo_report: Path, tmp_path: Path) -> None:
    """The demo host as a one-host fleet: the three bar charts render (no script on that page) with its counts."""
    from triage.report.fleet import build_fleet_report

    case_dir = demo_report.parents[1]
    res = build_fleet_report(tmp_path / "fleet", {"EXCH01": case_dir}, fleet_id="FLEET-DEMO")
    page = browser_page.new_page()
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(Path(res.html).as_uri())
    for chart in ("chart-verdicts", "chart-severity", "chart-ledger"):
        box = page.locator(f"#{chart}").bounding_box()
        assert box and box["width"] > 300, chart
    df = pd.read_parquet(case_dir / "report" / "findings.parquet")
    for sev, n in df["severity"].astype(str).value_counts().items():
        seg = page.locator(f'#chart-severity rect[data-segment="{sev}"]')
        assert seg.get_attribute("data-count") == str(n) and seg.bounding_box()["width"] > 0
    assert page.locator('#chart-verdicts rect[data-segment="compromised"]').get_attribute("data-count") == "1"
    ledger = json.loads((case_dir / "report" / "ledger.json").read_text(encoding="utf-8"))
    done = sum(1 for e in ledger["entries"] if e["status"] == "done")
    assert page.locator('#chart-ledger rect[data-segment="done"]').get_attribute("data-count") == str(done)
    page.locator("#charts").screenshot(path=str(tmp_path / "fleet-charts.png"))
    print(f"screenshot: {tmp_path / 'fleet-charts.png'}")
    assert page.locator("script").count() == 0
    page.close()
