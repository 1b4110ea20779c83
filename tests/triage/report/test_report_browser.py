"""The HTML report in a real Chromium: renders, filters, loads nothing, runs no planted script."""

from __future__ import annotations

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
