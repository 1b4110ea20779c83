"""The fleet report: every host case of a fleet folder side by side, with the Supplemental Direction v2 totals.

Read from each host case's own report (``report/findings.parquet`` and ``report/ledger.json``) plus its
manifest and run records, so it says exactly what the host reports say. ``build_fleet_report`` writes into
``FLEET/fleet/``:

================  ==========================================================================================
fleet.json        per host: verdict, Exchange version/CU/build, build status, finding counts by severity,
                  top findings, ED 21-02 steps done / not done, disconnect decision and reason; the totals
fleet.csv         one row per host (text cells formula-safe)
fleet.html        one self-contained page (no script at all; the CSP allows only its own style)
cisa_fleet.csv    the counts CISA's Supplemental Direction v2 template (v4.0) asks for, with the hosts behind
                  each count
================  ==========================================================================================

What "updated" and "to disconnect" mean follows the directive (docs: ED2102-REFERENCE 1.2, 1.5):
updated = the build verdict finds the April 2021 SU (Supplemental Direction v2 item 1); a server is to be
disconnected when its evidence shows indications of compromise (ED 21-02 action 3a) or when it is not updated
(Supplemental Direction v2: servers that cannot be updated must be removed from the network). A suspicious
host (findings below the compromise threshold) goes to deep forensics (action 2) and is counted, not
disconnected by this rule. A host whose build cannot be placed in the table is "update unknown".
"""

from __future__ import annotations

import logging
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from triage.case import Case
from triage.custody import load_json
from triage.finding import SEVERITIES, coerce_findings
from triage.hashing import hash_file
from triage.report.context import UNKNOWN_HOST, ReportContext, manifest_frame, parse_attributes

log = logging.getLogger(__name__)

VERSIONS = ("2013", "2016", "2019")
MARCH_STATUSES = ("march_only", "patched", "e2010_patched")  # the ProxyLogon fixes are present
UPDATED_STATUSES = ("patched", "e2010_patched")
NOT_UPDATED_STATUSES = ("vulnerable", "march_only", "e2010_vulnerable")
TOP_FINDINGS = 5
FLEET_COLUMNS = [
    "host",
    "computer_name",
    "case_id",
    "verdict",
    "missing_evidence",
    "cves",
    "max_severity",
    *(f"count_{s}" for s in reversed(SEVERITIES)),
    "indications",
    "findings",
    "exchange_version",
    "exchange_cu",
    "exchange_build",
    "build_status",
    "patched_march_2021",
    "updated_april_2021",
    "build_verdict",
    "os",
    "internal_ips",
    "to_disconnect",
    "disconnect_reason",
    "steps_done",
    "steps_not_done",
    "steps_manual",
    "steps_not_applicable",
    "failed_steps",
    "top_findings",
    "report",
    "problems",
]
CISA_FLEET_COLUMNS = ["item", "count", "hosts", "note"]
FLEET_CSS = "\ntd.nowrap { white-space: nowrap; }\n"  # after the case report's stylesheet, hashed with it


@dataclass
class FleetReport:
    """What the fleet report holds and where it went."""

    fleet_dir: str
    outputs: dict[str, str] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    hosts: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    html: str = ""

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


# -- one host ---------------------------------------------------------------------------------------
def _host_context(case: Case, directive: Any) -> ReportContext:
    """The case's report data as the report built it: the canonical findings table, manifest and runs."""
    from triage.report.build import load_runs

    findings = coerce_findings(pd.read_parquet(case.path / "report" / "findings.parquet"))
    return ReportContext(
        case_id=case.case_id,
        case_info=dict(case.info),
        findings=findings,
        manifest=manifest_frame(list(case.manifest())),
        runs=load_runs(case),
        directive=directive,
        generated=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        case_path=str(case.path),
    )


def _build_facts(ctx: ReportContext, host: str) -> dict[str, str]:
    """Product, CU, build and table status from the worst build-verdict finding of ``host`` that has them."""
    df = ctx.findings
    if not len(df):
        return {}
    combos, codes = ctx.combos
    fam = ctx.directive.family("build_verdict").mask(combos).to_numpy()[codes]
    on_host = (ctx.host_column == host).to_numpy()
    rows = [int(i) for i in fam.nonzero()[0] if on_host[i]]
    rows.sort(key=lambda i: -int(ctx.severity_codes[i]))
    out: dict[str, str] = {}
    for i in rows:
        attrs = parse_attributes(df["attributes"].iat[i])
        for key in ("product", "cu", "build", "status"):
            value = attrs.get(key)
            if isinstance(value, str | int | float) and str(value) and key not in out:
                out[key] = str(value)
    return out


def _version_of(product: str, exchange_text: str) -> str:
    m = re.search(r"\b(20(?:07|10|13|16|19))\b", f"{product} {exchange_text}")
    return m.group(1) if m else ""


def _step_label(entry: dict[str, Any]) -> str:
    return f"{entry.get('step')} {entry.get('short') or entry.get('title') or ''}".strip()


def host_row(name: str, case_dir: Path, fleet_dir: Path, directive: Any = None) -> dict[str, Any]:
    """Everything the fleet report shows about one host case."""
    from triage.report.directive import load_directive
    from triage.report.hosts import host_summaries

    directive = directive or load_directive()

    row: dict[str, Any] = {
        "host": name,
        "computer_name": "",
        "case_id": "",
        "verdict": "",
        "missing_evidence": [],
        "coverage": [],
        "cves": [],
        "max_severity": "",
        "counts": {s: 0 for s in reversed(SEVERITIES)},
        "severity_counts": {s: 0 for s in reversed(SEVERITIES)},
        "indications": 0,
        "findings": 0,
        "exchange": "",
        "exchange_version": "",
        "exchange_cu": "",
        "exchange_build": "",
        "build_status": "",
        "patched_march_2021": "",
        "updated_april_2021": "",
        "build_verdict": "",
        "os": "",
        "internal_ips": [],
        "to_disconnect": False,
        "disconnect_reason": "",
        "steps_done": 0,
        "steps_not_done": 0,
        "steps_manual": 0,
        "steps_not_applicable": 0,
        "failed_steps": [],
        "steps": {},
        "top": [],
        "caveats": [],
        "report": "",
        "problems": [],
    }
    report_html = case_dir / "report" / "report.html"
    # relative to fleet.html in FLEET/fleet/, so the folder can be moved or copied as a whole
    rel = Path(os.path.relpath(report_html, fleet_dir / "fleet"))
    row["report"] = "/".join(urllib.parse.quote(p) for p in rel.parts)
    try:
        case = Case.open(case_dir)
    except Exception as exc:  # a damaged host case must not hide the other hosts
        row["problems"].append(f"cannot open the host case: {exc}")
        row["verdict"] = "not triaged"
        return row
    row["case_id"] = case.case_id
    try:
        ctx = _host_context(case, directive)
        ledger = load_json((case_dir / "report" / "ledger.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        row["problems"].append(f"no complete report (run `triage report` on the fleet folder): {exc}")
        row["verdict"] = "not triaged"
        return row
    # read only: the case object holds no open handle, and close() would sync the whole file system
    summaries = host_summaries(ctx)
    # a host case holds one server; its findings carry the host name the collection gave it
    real = [h for h in summaries if h != UNKNOWN_HOST]
    key = name if name in summaries else (real[0] if real else next(iter(summaries), None))
    if len(real) > 1:
        row["problems"].append(f"the host case holds several hosts: {', '.join(real)}; showing {key}")
    if key is None:
        row["problems"].append("no evidence and no findings in the host case")
        row["verdict"] = "not triaged"
        return row
    s = summaries[key]
    f = s.facts
    build = _build_facts(ctx, key)
    status = build.get("status", "")
    version = _version_of(build.get("product", ""), f.exchange)
    row.update(
        computer_name=f.hostname,
        verdict=s.verdict,
        missing_evidence=s.missing if s.verdict == "insufficient evidence" else [],
        coverage=[{"family": c["title"], "status": c["status"]} for c in s.coverage],
        cves=s.cves,
        max_severity=s.max_severity or "",
        counts=s.counts,
        indications=s.indications,
        findings=s.findings_total,
        exchange=f.exchange,
        exchange_version=version,
        exchange_cu=build.get("cu", f.exchange_cu),
        exchange_build=build.get("build", f.exchange_build),
        build_status=status,
        patched_march_2021=_yes_no(status, MARCH_STATUSES, ("vulnerable", "e2010_vulnerable")),
        updated_april_2021=_yes_no(status, UPDATED_STATUSES, NOT_UPDATED_STATUSES),
        build_verdict=f.build_verdict,
        os=f.os,
        internal_ips=f.internal_ips,
        top=s.top_findings[:TOP_FINDINGS],
        caveats=s.caveats,
    )
    on_key = ctx.findings["severity"][(ctx.host_column == key).to_numpy()].astype(str).value_counts()
    row["severity_counts"] = {sev: int(on_key.get(sev, 0)) for sev in reversed(SEVERITIES)}
    entries = [e for e in ledger.get("entries", []) if e.get("host") == key]
    by_status: dict[str, list[str]] = {}
    for e in entries:
        by_status.setdefault(str(e.get("status")), []).append(_step_label(e))
    row["steps"] = {str(e.get("step")): str(e.get("status")) for e in entries}
    row["steps_done"] = len(by_status.get("done", []))
    row["steps_not_done"] = len(by_status.get("not done", []))
    row["steps_manual"] = len(by_status.get("needs manual attestation", []))
    row["steps_not_applicable"] = len(by_status.get("not applicable", []))
    row["failed_steps"] = by_status.get("not done", [])
    reasons = disconnect_reasons(s.verdict, row["updated_april_2021"])
    row["to_disconnect"] = bool(reasons)
    row["disconnect_reason"] = "; ".join(reasons)
    if not version and not status:
        row["problems"].append("no Exchange installation found in the evidence")
    if not report_html.exists():
        row["problems"].append("report.html is missing")
    return row


def disconnect_reasons(verdict: str, updated: str) -> list[str]:
    """Why the directive says to take the server off the network (empty: it does not say so).

    ``updated`` is "yes", "no", "unknown" or "" (no Exchange found): only a known "no" counts.
    """
    from triage.report.hosts import VERDICT_COMPROMISED

    reasons = []
    if verdict == VERDICT_COMPROMISED:
        reasons.append("indications of compromise (ED 21-02 action 3)")
    if updated == "no":
        reasons.append("April 2021 SU missing (Supplemental Direction v2)")
    return reasons


def _yes_no(status: str, yes: tuple[str, ...], no: tuple[str, ...]) -> str:
    return "yes" if status in yes else "no" if status in no else ("unknown" if status else "")


# -- the fleet --------------------------------------------------------------------------------------
def fleet_totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The Supplemental Direction v2 counts, each with the hosts behind it."""

    def hosts(pred: Any) -> list[str]:
        return [r["host"] for r in rows if pred(r)]

    exchange = hosts(lambda r: r["exchange_version"] or r["build_status"])
    items: dict[str, list[str]] = {
        "hosts": [r["host"] for r in rows],
        "exchange_servers": exchange,
        **{f"exchange_{v}": hosts(lambda r, v=v: r["exchange_version"] == v) for v in VERSIONS},
        "exchange_other": hosts(lambda r: r["host"] in exchange and r["exchange_version"] not in VERSIONS),
        "updated": hosts(lambda r: r["updated_april_2021"] == "yes"),
        "not_updated": hosts(lambda r: r["updated_april_2021"] == "no"),
        "update_unknown": hosts(lambda r: r["host"] in exchange and r["updated_april_2021"] not in ("yes", "no")),
        "proxylogon_unpatched": hosts(lambda r: r["patched_march_2021"] == "no"),
        "compromised": hosts(lambda r: r["verdict"] == "compromised"),
        "suspicious": hosts(lambda r: r["verdict"] == "suspicious"),
        "insufficient_evidence": hosts(lambda r: r["verdict"] == "insufficient evidence"),
        "to_disconnect": hosts(lambda r: r["to_disconnect"] is True),
        "failed_steps": hosts(lambda r: bool(r["failed_steps"])),
        "not_triaged": hosts(lambda r: r["verdict"] == "not triaged"),
    }
    return {"counts": {k: len(v) for k, v in items.items()}, "hosts": items}


CISA_ITEMS = (
    ("exchange_servers", "Total hosted Exchange servers", "hosts whose evidence holds an Exchange installation"),
    ("exchange_2013", "Exchange Server 2013", ""),
    ("exchange_2016", "Exchange Server 2016", ""),
    ("exchange_2019", "Exchange Server 2019", ""),
    ("exchange_other", "Other or unknown Exchange version", ""),
    ("updated", "Updated (April 2021 security update deployed)", "by the build verdict (ExSetup.exe or registry)"),
    (
        "not_updated",
        "Not updated",
        "Supplemental Direction v2: remove from the network; give a justification and scheduled completion date",
    ),
    ("update_unknown", "Update status unknown", "build not in the table: check by hand"),
    ("compromised", "Indications of compromise found", "ED 21-02 action 3; report the incident to CISA"),
    ("suspicious", "Suspected (needs review)", "ED 21-02 action 2: deep forensics"),
    (
        "insufficient_evidence",
        "Insufficient evidence for a verdict",
        "event logs, hives, web or Exchange logs not parsed: collect them and triage again",
    ),
    ("to_disconnect", "To disconnect", "compromised (action 3) or not updated (Supplemental Direction v2)"),
    ("failed_steps", "Hosts with ED 21-02 steps not done", "see fleet.csv failed_steps and each host's ledger"),
    ("not_triaged", "Hosts without a complete triage", "see fleet.json problems"),
)


def cisa_fleet_frame(totals: dict[str, Any]) -> pd.DataFrame:
    """Rows for the v4.0 template counts: item, count, the hosts behind it, a note."""
    rows = [
        {"item": label, "count": totals["counts"][key], "hosts": "; ".join(totals["hosts"][key]), "note": note}
        for key, label, note in CISA_ITEMS
    ]
    return pd.DataFrame(rows, columns=CISA_FLEET_COLUMNS)


def _csv_row(r: dict[str, Any]) -> dict[str, Any]:
    out = {c: r.get(c, "") for c in FLEET_COLUMNS}
    out.update({f"count_{k}": v for k, v in r["counts"].items()})
    out["cves"] = ", ".join(r.get("cves") or [])
    out["missing_evidence"] = "; ".join(r.get("missing_evidence") or [])
    out["internal_ips"] = ", ".join(r.get("internal_ips") or [])
    out["failed_steps"] = "; ".join(r.get("failed_steps") or [])
    out["top_findings"] = " | ".join(f"{t['severity']}: {t['title']}" for t in r.get("top") or [])
    out["problems"] = "; ".join(r.get("problems") or [])
    out["to_disconnect"] = "yes" if r.get("to_disconnect") is True else "no"
    return out


def build_fleet_report(
    fleet_dir: Path,
    hosts: dict[str, Path],
    *,
    fleet_id: str = "",
    command_line: str | None = None,
) -> FleetReport:
    """Write the fleet report for ``hosts`` (host name -> host case folder) into ``fleet_dir/fleet``."""
    from triage import __version__
    from triage.report.exports import write_frame_csv, write_json

    fleet_dir = Path(fleet_dir)
    out = fleet_dir / "fleet"
    out.mkdir(parents=True, exist_ok=True)
    from triage.report.directive import load_directive

    directive = load_directive()
    order = sorted(hosts.items(), key=lambda kv: kv[0].lower())
    rows = [host_row(name, path, fleet_dir, directive) for name, path in order]
    totals = fleet_totals(rows)
    generated = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    res = FleetReport(fleet_dir=str(fleet_dir), hosts=rows, totals=totals)
    doc = {
        "fleet_id": fleet_id,
        "generated": generated,
        "tool": "triage",
        "tool_version": __version__,
        "command_line": command_line,
        "rules": {
            "updated": "April 2021 security update present by the build verdict (Supplemental Direction v2)",
            "to_disconnect": "compromised (ED 21-02 action 3) or not updated (Supplemental Direction v2)",
        },
        "totals": totals,
        "hosts": rows,
    }
    files = {name: out / name for name in ("fleet.json", "fleet.csv", "cisa_fleet.csv", "fleet.html")}
    write_json(doc, files["fleet.json"])
    write_frame_csv(pd.DataFrame([_csv_row(r) for r in rows], columns=FLEET_COLUMNS), files["fleet.csv"])
    write_frame_csv(cisa_fleet_frame(totals), files["cisa_fleet.csv"])
    css = (Path(__file__).parent / "templates" / "report.css").read_text(encoding="utf-8") + FLEET_CSS
    from triage.report.html import _env

    steps = [{"id": st.id, "short": st.short, "title": st.title} for st in directive.steps]
    page = (
        _env()
        .get_template("fleet.html.j2")
        .render(
            csp=fleet_csp(css),
            css=_markup(css),
            fleet_id=fleet_id,
            generated=generated,
            tool_version=__version__,
            hosts=rows,
            totals=totals,
            cisa=cisa_fleet_frame(totals).to_dict("records"),
            steps=steps,
            severities=list(reversed(SEVERITIES)),
            charts=fleet_charts(rows, len(directive.steps)),
        )
    )
    files["fleet.html"].write_text(page, encoding="utf-8")
    res.outputs = {k: str(v) for k, v in files.items()}
    res.hashes = {k: hash_file(v, ("sha256",))[1]["sha256"] for k, v in files.items()}
    res.html = str(files["fleet.html"])
    return res


VERDICT_COLORS = {
    "compromised": "#b3152e",
    "suspicious": "#e0a100",
    "insufficient evidence": "#7a5cc0",
    "no indications found": "#1e7d3a",
    "not triaged": "#8c96a3",
}
LEDGER_SEGMENTS = (
    ("done", "steps_done", "#1e7d3a"),
    ("not done", "steps_not_done", "#b3152e"),
    ("not applicable", "steps_not_applicable", "#8c96a3"),
    ("needs manual attestation", "steps_manual", "#7a5cc0"),
)
MAX_CHART_HOSTS = 200  # bars per chart; every host is in the tables and fleet.csv


def fleet_charts(rows: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """The fleet page's bar charts (inline SVG, no script): hosts by verdict, findings by severity per host,
    ED 21-02 ledger completeness per host. Hosts are drawn worst first."""
    from markupsafe import Markup

    from triage.report.svg import COLORS, bar_chart_svg

    worst = sorted(rows, key=lambda r: (_verdict_rank(r["verdict"]), -r.get("indications", 0), r["host"].lower()))
    shown = worst[:MAX_CHART_HOSTS]
    verdicts = [(v, [(v, sum(1 for r in rows if r["verdict"] == v), c)]) for v, c in VERDICT_COLORS.items()]
    severity = [
        (r["host"], [(s, int(r["severity_counts"].get(s, 0)), COLORS[s]) for s in reversed(SEVERITIES)]) for r in shown
    ]
    ledger = [(r["host"], [(name, int(r[key]), color) for name, key, color in LEDGER_SEGMENTS]) for r in shown]
    return {
        "verdicts": Markup(bar_chart_svg("chart-verdicts", verdicts, title="hosts by verdict", unit="host(s)")),
        "severity": Markup(
            bar_chart_svg("chart-severity", severity, title="findings by severity per host", unit="finding(s)")
        ),
        "ledger": Markup(
            bar_chart_svg(
                "chart-ledger", ledger, title="ED 21-02 ledger per host", unit="step(s)", scale_max=max(steps, 1)
            )
        ),
        "hidden": max(0, len(rows) - len(shown)),
    }  # built by svg.py with every text escaped


def _verdict_rank(verdict: str) -> int:
    order = list(VERDICT_COLORS)
    return order.index(verdict) if verdict in order else len(order)


def fleet_csp(css: str) -> str:
    """No script at all, no remote loads; only this page's own inline style (by hash) applies."""
    from triage.report.html import csp_hash

    return (
        f"default-src 'none'; script-src 'none'; style-src {csp_hash(css)}; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )


def _markup(text: str) -> Any:
    from markupsafe import Markup

    return Markup(text)  # our own stylesheet, hashed into the CSP
