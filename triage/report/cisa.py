"""Rows for CISA's ED 21-02 reporting templates, pre-filled from the evidence.

Per server: the inventory columns (hostname, IPs, Exchange version, host OS version: from host-fact
findings when present, else blank) and the Supplemental Direction v1 triage columns with the template's
exact dropdown values. A value is filled only where the ledger supports it; the rest stays blank for
the agency to answer, with the reason in the notes. The CIO attestation stays manual.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from triage.report.hosts import VERDICT_COMPROMISED, HostSummary
from triage.report.ledger import Ledger, LedgerEntry

YES_CLEAN = "Yes (no indications of compromise found)"
YES_FOUND = "Yes (indications of compromise found)"
NO_NARRATIVE = "No (must provide narrative explanation in comments section)"
DROPDOWN = (YES_CLEAN, YES_FOUND, NO_NARRATIVE)

MSERT_COL = "1) MSERT full scan completed?"
TPL_COL = "2) Test-ProxyLogon.ps1 script scan completed?"
CISA_COLUMNS = [
    "Hostname (internal)",
    "Hostname (public FQDN)",
    "Server internal IP(s)",
    "Server external IP(s)",
    "Microsoft Exchange Version",
    "Host Operating System Version",
    MSERT_COL,
    TPL_COL,
    "Notes",
    "Triage verdict",
    "Build verdict",
    "Ledger steps done",
    "Case",
]


def dropdown_value(entry: LedgerEntry | None) -> str:
    """The template value a ledger row supports; blank when only a person can answer.

    "Yes (...)" needs the scan's result, so only a step done by examining the tool's own output
    (``basis == "examined"``) fills it; a bare trace that the tool ran leaves the cell blank.
    """
    if entry is None or entry.status in ("needs manual attestation", "not applicable"):
        return ""
    if entry.status == "not done":
        return NO_NARRATIVE
    if entry.basis != "examined":
        return ""
    return YES_FOUND if entry.indications else YES_CLEAN


def _note(label: str, entry: LedgerEntry | None) -> str:
    if entry is None:
        return ""
    if entry.status == "done":
        return f"{label}: {entry.result}."
    return f"{label}: {entry.status} - {entry.result}."


def cisa_rows(case_id: str, summaries: dict[str, HostSummary], ledger: Ledger) -> list[dict[str, Any]]:
    """One row per server."""
    rows = []
    tally = ledger.tally()
    for host, s in summaries.items():
        if host not in tally:  # findings without a host are no server
            continue
        f = s.facts
        msert, tpl = ledger.get(host, "20"), ledger.get(host, "22")
        verdict = s.verdict + (f" ({', '.join(s.cves)})" if s.cves else "")
        notes = [
            _note("Test-ProxyLogon (offline parity over collected Exchange logs)", tpl),
            _note("MSERT", msert),
            f"Triage verdict: {verdict}.",
        ]
        if s.verdict == VERDICT_COMPROMISED:
            notes.append("Report the incident at https://us-cert.cisa.gov/report and add the ticket number here.")
        internal = f.hostname
        if "." in f.fqdn:
            internal = f.fqdn
        elif f.hostname and f.domain:
            internal = f"{f.hostname}.{f.domain}"
        steps = tally.get(host, {})
        rows.append(
            {
                "Hostname (internal)": internal,
                "Hostname (public FQDN)": "",
                "Server internal IP(s)": ", ".join(f.internal_ips),
                "Server external IP(s)": ", ".join(f.external_ips),
                "Microsoft Exchange Version": f.exchange,
                "Host Operating System Version": f.os,
                MSERT_COL: dropdown_value(msert),
                TPL_COL: dropdown_value(tpl),
                "Notes": " ".join(n for n in notes if n),
                "Triage verdict": verdict,
                "Build verdict": f.build_verdict,
                "Ledger steps done": f"{steps.get('done', 0)} of {sum(steps.values())}",
                "Case": case_id,
            }
        )
    return rows


def cisa_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=CISA_COLUMNS)
