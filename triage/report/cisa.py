"""Rows for CISA's ED 21-02 reporting templates, pre-filled from the evidence.

Per server: the inventory columns (hostname, IPs, Exchange version, host OS version: from host-fact
findings when present, else blank) and the Supplemental Direction v1 triage columns with the template's
exact dropdown values. A value is filled only where the ledger supports it; the rest stays blank for
the agency to answer, with the reason in the notes. The CIO attestation stays manual.

The Test-ProxyLogon.ps1 cell never reads as if the script ran when it did not. Its basis column says
which of three things the evidence shows: "script output found in the evidence (files)" (the dropdown
then carries the script's own result), "offline equivalent checks" (the script's checks re-run over
the collected Exchange logs: the dropdown stays blank, the result is in the basis and the notes), or
"not run" (neither; the dropdown says No, as the step is not done).

Attestations (``triage attest``) fill what the evidence leaves to a person: a step the ledger decided by
attestation takes the attested value (``done`` with result ``clean`` or ``indications`` -> "Yes (...)",
``not done`` -> "No (...)", ``done`` without a result -> blank), and an attestation agreeing with evidence
that shows a tool ran but not its result supplies the result. A conflict between evidence and attestation
leaves the cell blank for a person to decide, and the notes say who attested what, with which files. An
attested Test-ProxyLogon run is its own basis ("script run attested"), never "script output found".
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from triage.finding import SEVERITIES
from triage.report.attest import describe
from triage.report.hosts import VERDICT_COMPROMISED, HostSummary
from triage.report.ledger import Ledger, LedgerEntry

SCRIPT_KIND = "testproxylogon_csv"
SCRIPT_HIT_PREFIX = "TPL-OUT-"

YES_CLEAN = "Yes (no indications of compromise found)"
YES_FOUND = "Yes (indications of compromise found)"
NO_NARRATIVE = "No (must provide narrative explanation in comments section)"
DROPDOWN = (YES_CLEAN, YES_FOUND, NO_NARRATIVE)

MSERT_COL = "1) MSERT full scan completed?"
TPL_COL = "2) Test-ProxyLogon.ps1 script scan completed?"
TPL_BASIS_COL = "2a) Test-ProxyLogon.ps1 basis"
BASIS_SCRIPT = "script output found in the evidence"
BASIS_OFFLINE = "offline equivalent checks"
BASIS_NOT_RUN = "not run"
BASIS_ATTESTED = "script run attested"
# template v3.0's hardening columns (Supplemental Direction v1) and the ledger step that answers each
HARDENING = (
    ("H1) Firewall: deny by default, RFC compliance (1a-1c)?", "24"),
    ("H2) Updates within 48 hours?", "25"),
    ("H3) Only vendor-supported versions?", "26"),
    ("H4) Identity review and attack-path analysis (4a-4f)?", "27"),
    ("H5) Logs kept 180 days centrally, SOC monitoring?", "28"),
    ("H6) Anti-malware enabled, signatures under 24 hours?", "29"),
    ("H7) Visible to CDM?", "30"),
)
CISA_COLUMNS = [
    "Hostname (internal)",
    "Hostname (public FQDN)",
    "Server internal IP(s)",
    "Server external IP(s)",
    "Microsoft Exchange Version",
    "Host Operating System Version",
    MSERT_COL,
    TPL_COL,
    TPL_BASIS_COL,
    "Notes",
    *(col for col, _ in HARDENING),
    "Triage verdict",
    "Build verdict",
    "Ledger steps done",
    "Ledger completeness",
    "Case",
]


def attested_value(att: dict[str, Any] | None) -> str:
    """The template value an attestation supports: "Yes (...)" only with the scan's result stated."""
    if not att:
        return ""
    if att["status"] == "not done":
        return NO_NARRATIVE
    if att["status"] == "done" and att.get("result") in ("clean", "indications"):
        return YES_FOUND if att["result"] == "indications" else YES_CLEAN
    return ""


def dropdown_value(entry: LedgerEntry | None) -> str:
    """The template value a ledger row supports; blank when only a person can answer.

    "Yes (...)" needs the scan's result, so only a step done by examining the tool's own output
    (``basis == "examined"``) or an attestation stating the result fills it; a bare trace that the tool
    ran leaves the cell blank, and so does a conflict between evidence and attestation.
    """
    if entry is None or entry.conflict or entry.status in ("needs manual attestation", "not applicable"):
        return ""
    if entry.basis == "attestation":
        return attested_value(entry.attestation)
    if entry.status == "not done":
        return NO_NARRATIVE
    if entry.basis != "examined":
        # the evidence shows the tool ran; an agreeing attestation may say with what result
        return attested_value(entry.attestation) if entry.attestation else ""
    return YES_FOUND if entry.indications else YES_CLEAN


def yes_no(entry: LedgerEntry | None) -> str:
    """A hardening column: Yes / No from a decided step (evidence or attestation); blank when undecided,
    not applicable or in conflict (a person decides)."""
    if entry is None or entry.conflict:
        return ""
    return {"done": "Yes", "not done": "No"}.get(entry.status, "")


def _note(label: str, entry: LedgerEntry | None) -> str:
    if entry is None:
        return ""
    text = f"{label}: {entry.result}." if entry.status == "done" else f"{label}: {entry.status} - {entry.result}."
    if entry.basis == "attestation":
        text = f"{label}: no evidence in the case; {describe(entry.attestation)}."
    elif entry.attestation:
        text += f" Attested: {describe(entry.attestation)}."
    if entry.conflict:
        text += f" CONFLICT: {entry.conflict}."
    return text


def script_hits(findings: pd.DataFrame | None) -> dict[str, int]:
    """Per host: rows of Test-ProxyLogon.ps1's own outputs that report a hit (at least medium)."""
    if findings is None or not len(findings):
        return {}
    hit = findings["rule_id"].fillna("").astype(str).str.startswith(SCRIPT_HIT_PREFIX) & findings["severity"].isin(
        SEVERITIES[SEVERITIES.index("medium") :]
    )
    return {str(h): int(n) for h, n in findings.loc[hit, "host"].fillna("").value_counts().items()}


def test_proxylogon_cell(entry: LedgerEntry | None, hits: int) -> tuple[str, str]:
    """``(dropdown value, basis)`` of the Test-ProxyLogon.ps1 column (see the module docstring)."""
    arts = entry.artifacts if entry is not None else []
    outputs = [a for a in arts if a["kind"] == SCRIPT_KIND and a.get("examined")]
    if outputs:
        names = sorted({str(a["source_path"]).replace("\\", "/").rsplit("/", 1)[-1] for a in outputs})
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        return (YES_FOUND if hits else YES_CLEAN), f"{BASIS_SCRIPT} ({shown})"
    logs = [a for a in arts if a["kind"] == "exchange_log" and a.get("examined")]
    att = entry.attestation if entry is not None else None
    if entry is not None and entry.machine_status in ("done", "") and entry.status == "done" and logs:
        found = "indications found" if entry.indications else "no indications found"
        basis = (
            f"{BASIS_OFFLINE}: the script's checks over {len(logs)} collected Exchange logs, {found}; "
            "the script itself did not run in this triage"
        )
        if att and att["status"] == "done":
            # the person's word that the script ran on the server, kept apart from what triage ran
            return "", basis + f"; {BASIS_ATTESTED}: {describe(att)}"
        return "", basis
    if att and entry is not None and not entry.conflict and att["status"] == "done":
        return attested_value(att), f"{BASIS_ATTESTED} (no script output read by triage): {describe(att)}"
    basis = f"{BASIS_NOT_RUN}: no script output in the evidence and no Exchange logs parsed"
    if att and entry is not None:
        basis += f"; attested: {describe(att)}" + (f"; CONFLICT: {entry.conflict}" if entry.conflict else "")
    return dropdown_value(entry), basis


test_proxylogon_cell.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite the name


def cisa_rows(
    case_id: str, summaries: dict[str, HostSummary], ledger: Ledger, findings: pd.DataFrame | None = None
) -> list[dict[str, Any]]:
    """One row per server (``findings``: the case's findings, for the script's own hit rows)."""
    rows = []
    tally = ledger.tally()
    hits = script_hits(findings)
    for host, s in summaries.items():
        if host not in tally:  # findings without a host are no server
            continue
        f = s.facts
        msert, tpl = ledger.get(host, "20"), ledger.get(host, "22")
        verdict = s.verdict_line
        tpl_value, tpl_basis = test_proxylogon_cell(tpl, hits.get(host, 0))
        notes = [
            f"Test-ProxyLogon.ps1: {tpl_basis}."
            + (f" CONFLICT: {tpl.conflict}." if tpl and tpl.conflict and "CONFLICT" not in tpl_basis else ""),
            _note("MSERT", msert),
            f"Triage verdict: {verdict}.",
        ]
        for _col, step in HARDENING:
            h = ledger.get(host, step)
            if h is not None and h.conflict:
                notes.append(f"Hardening step {step} CONFLICT: {h.conflict}.")
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
                TPL_COL: tpl_value,
                TPL_BASIS_COL: tpl_basis,
                "Notes": " ".join(n for n in notes if n),
                **{col: yes_no(ledger.get(host, step)) for col, step in HARDENING},
                "Triage verdict": verdict,
                "Build verdict": f.build_verdict,
                "Ledger steps done": f"{steps.get('done', 0)} of {sum(steps.values())}",
                "Ledger completeness": ledger.completeness(host)["text"],
                "Case": case_id,
            }
        )
    return rows


def cisa_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=CISA_COLUMNS)
