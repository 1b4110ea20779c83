"""The self-contained HTML report: one file, inline CSS/JS/SVG, a CSP that forbids every remote load.

Every string in a case can come from an attacker (file names, event data, log lines), so:
- the template autoescapes everything (jinja2 ``autoescape=True``; nothing user-derived is marked safe);
- the findings travel as JSON in a ``<script type="application/json">`` block with ``<``, ``>`` and ``&``
  written as ``\\u003c``/``\\u003e``/``\\u0026``, so no ``</script>`` or ``<!--`` can end or bend it;
- the table script inserts text with ``textContent`` only;
- the CSP allows exactly the inline style and script of this page by hash (``default-src 'none'``).
Large cases embed the top findings by severity plus aggregates over all findings.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from triage.finding import SEVERITIES
from triage.report.cells import visible_controls
from triage.report.context import ReportContext, parse_attributes
from triage.report.coverage import analyzer_scopes
from triage.report.hosts import (
    VERDICT_COMPROMISED,
    VERDICT_INSUFFICIENT,
    VERDICT_SUSPICIOUS,
    HostSummary,
    indication_mask,
)
from triage.report.ledger import Ledger
from triage.report.memtree import process_trees
from triage.report.sequence import STAGES, narrative_sequences
from triage.report.svg import FILES_LANE, LANES, Timeline, build_timeline, lane_of, timeline_svg, width_name

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
# the table shows what an analyst reads first: rule titles (the id on hover and in the detail), not rule ids
SHOWN = [
    ("severity", "Severity", ""),
    ("ts", "Time (UTC)", "nowrap"),
    ("host", "Host", ""),
    ("rule_title", "Rule", "wrap"),
    ("title", "Finding", "wrap"),
    ("evidence_path", "Evidence", "path"),
]
DETAIL = [
    "rule_id",
    "analyzer",
    "finding_id",
    "cve",
    "ed2102_steps",
    "message",
    "location",
    "evidence_id",
    "evidence_sha256",
    "confidence",
    "ts_desc",
    "mitre",
    "tags",
    "references",
    "attributes",
]
# every embedded field: the table columns, then the detail rows (one list, so the two cannot drift)
FINDING_FIELDS = [name for name, _, _ in SHOWN] + DETAIL
TEXT_LIMIT = 4000  # per embedded field; the full text is in the data files
MAX_ATTRIBUTES = 60  # key/value rows per finding; the rest are counted
STATUS_CLASS = {"done": "done", "not done": "notdone", "not applicable": "na", "needs manual attestation": "manual"}
RUN_STATUSES = ("success", "no_findings", "skipped", "error")


def script_json(obj: Any) -> Markup:
    """JSON that is inert inside a ``<script>`` element (no ``</script>``, ``<!--`` or ``]]>`` possible)."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), default=str, allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # made inert above: JSON in a data block, not HTML


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def content_security_policy(css: str, js: str) -> str:
    """No remote loads at all; only this page's own inline style and script (by hash) may apply."""
    return (
        f"default-src 'none'; script-src {csp_hash(js)}; style-src {csp_hash(css)}; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )


def _sevclass(value: Any) -> str:
    return value if value in SEVERITIES else "info"


def _stclass(value: Any) -> str:
    return STATUS_CLASS.get(str(value), "na")


_ENV: Environment | None = None


def template_cache_dir() -> Path:
    """Where compiled templates are kept (``$TRIAGE_CACHE_DIR/jinja``, else ``~/.cache/triage/jinja``)."""
    base = os.environ.get("TRIAGE_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "triage") / "jinja"


def _bytecode_cache() -> Any:
    """Jinja's bytecode cache in the user cache folder (a template is compiled once, not per command; jinja
    keys each entry by the template's source checksum and its own bytecode version), or none where the folder
    cannot be made."""
    from jinja2 import FileSystemBytecodeCache

    folder = template_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.debug("no template cache at %s: %s", folder, exc)
        return None
    return FileSystemBytecodeCache(str(folder))


def _env() -> Environment:
    global _ENV
    if _ENV is not None:
        return _ENV
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every template, whatever its name
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=visible_controls,  # bidi controls shown as <U+202E>, never applied to the page
        bytecode_cache=_bytecode_cache(),
    )
    env.filters["sevclass"] = _sevclass
    env.filters["stclass"] = _stclass
    _ENV = env
    return env


def template() -> Any:
    """The report page's compiled template (compiled once per process; jinja reloads it when the file changes)."""
    return _env().get_template("report.html.j2")


def _clip(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, str) and len(value) > TEXT_LIMIT:
        value = value[:TEXT_LIMIT] + f" ... [{len(value) - TEXT_LIMIT} more characters in findings.jsonl]"
    return visible_controls(value)


def findings_payload(ctx: ReportContext) -> dict[str, Any]:
    """The top findings (report order: severity, then time) as compact rows for the table script."""
    df = ctx.findings.head(ctx.options.html_max_findings)
    cols: list[list[Any]] = []
    for name in FINDING_FIELDS:
        s = df[name]
        if name == "ts":
            vals = s.dt.strftime("%Y-%m-%d %H:%M:%S").astype(object).where(s.notna(), None).tolist()
        elif name == "severity":
            vals = s.astype(str).tolist()
        elif name == "host":
            vals = ctx.host_column.head(len(df)).tolist()
        elif name == "rule_title":  # a rule without a title shows its id
            vals = [_clip(v) for v in s.where(s.fillna("") != "", df["rule_id"]).astype(object).tolist()]
        elif name == "attributes":
            vals = [attribute_rows(v) for v in s.astype(object).tolist()]
        else:
            vals = [_clip(v) for v in s.astype(object).where(s.notna(), None).tolist()]
        cols.append(vals)
    rows = [list(r) for r in zip(*cols, strict=True)] if len(df) else []
    return {
        "fields": FINDING_FIELDS,
        "columns": [list(c) for c in SHOWN],
        "detail": DETAIL,
        "rows": rows,
        "total": len(ctx.findings),
    }


def attribute_rows(value: Any) -> list[list[str]]:
    """A finding's attributes as ``[key, text]`` rows (nested values as compact JSON), each text clipped."""
    if not isinstance(value, str) or not value:
        return []
    attrs = parse_attributes(value)
    if not attrs:
        return [["(raw)", _clip(value)]]
    rows = []
    for key, v in list(attrs.items())[:MAX_ATTRIBUTES]:
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
        rows.append([_clip(str(key)), _clip(text)])
    if len(attrs) > MAX_ATTRIBUTES:
        rows.append(["...", f"{len(attrs) - MAX_ATTRIBUTES} more attributes in findings.jsonl"])
    return rows


def finding_lanes(ctx: ReportContext) -> np.ndarray:
    """The timeline lane of every finding: its evidence's kind, else the first kind its analyzer consumes."""
    n = len(ctx.findings)
    if not n:
        return np.zeros(0, dtype=np.int8)
    ev_codes, ev_names = ctx.factorized("evidence_id")
    kinds = ctx.kind_of
    ev_lane = np.array([lane_of(kinds[e]) if e in kinds else -1 for e in ev_names] + [-1], dtype=np.int8)
    an_codes, an_names = ctx.factorized("analyzer")
    scopes = analyzer_scopes()
    an_lane = np.array(
        [lane_of(scopes[a][0][0]) if a in scopes and scopes[a][0] else FILES_LANE for a in an_names] + [FILES_LANE],
        dtype=np.int8,
    )
    lanes = ev_lane[ev_codes]  # code -1 picks the appended -1: unknown
    return np.where(lanes >= 0, lanes, an_lane[an_codes]).astype(np.int8)


def report_timeline(ctx: ReportContext) -> Timeline:
    """The timeline of the report: every dated finding in its lane; the attack window from the detections."""
    detection = indication_mask(ctx) & (ctx.severity_codes >= SEVERITIES.index("medium"))
    return build_timeline(
        ctx.findings["ts"],
        finding_lanes(ctx),
        ctx.severity_codes if len(ctx.findings) else np.zeros(0, dtype=np.int8),
        detection,
        marker=(ctx.directive.window_start, "ED 21-02 window start"),
    )


def rule_table(ctx: ReportContext) -> list[dict[str, Any]]:
    """Every rule that fired, counted over all findings."""
    df = ctx.findings
    if not len(df):
        return []
    g = (
        pd.DataFrame(
            {
                "rule_id": df["rule_id"].fillna("").astype(str),
                "rule_title": df["rule_title"].fillna("").astype(str),
                "analyzer": df["analyzer"].fillna("").astype(str),
                "sev": ctx.severity_codes,
                "host": ctx.host_column,
                "ts": df["ts"],
                "cve": df["cve"].fillna("").astype(str),
                "steps": df["ed2102_steps"].fillna("").astype(str),
            }
        )
        .groupby("rule_id", sort=False)
        .agg(
            rule_title=("rule_title", "first"),
            analyzer=("analyzer", "first"),
            sev=("sev", "max"),
            count=("sev", "size"),
            hosts=("host", "nunique"),
            first=("ts", "min"),
            last=("ts", "max"),
            cve=("cve", "first"),
            steps=("steps", "first"),
        )
        .reset_index()
        .sort_values(["sev", "count"], ascending=[False, False])
    )
    out = []
    for r in g.itertuples(index=False):
        out.append(
            {
                "rule_id": r.rule_id,
                "rule_title": r.rule_title,
                "analyzer": r.analyzer,
                "severity": ctx.severity_name(int(r.sev)) or "",
                "sev_code": int(r.sev),
                "count": int(r.count),
                "hosts": int(r.hosts),
                "first": "" if pd.isna(r.first) else r.first.strftime("%Y-%m-%d %H:%M:%S"),
                "last": "" if pd.isna(r.last) else r.last.strftime("%Y-%m-%d %H:%M:%S"),
                "cve": r.cve,
                "steps": r.steps,
            }
        )
    return out


def run_tables(ctx: ReportContext, max_rows: int = 300) -> dict[str, Any]:
    runs = ctx.runs
    out: dict[str, Any] = {
        "runs": [],
        "run_errors": [],
        "run_warnings": [],
        "run_errors_total": 0,
        "run_warnings_total": 0,
    }
    if not len(runs):
        return out
    for name, g in runs.groupby("analyzer", sort=True):
        out["runs"].append(
            {
                "analyzer": str(name),
                "versions": ", ".join(sorted({str(v) for v in g["analyzer_version"].dropna()})),
                "statuses": {str(k): int(v) for k, v in g["status"].value_counts().items()},
                "findings": int(pd.to_numeric(g["findings"], errors="coerce").fillna(0).sum()),
                "seconds": round(float(pd.to_numeric(g["duration_s"], errors="coerce").fillna(0).sum()), 2),
            }
        )
    errors = runs[runs["status"] == "error"]
    out["run_errors_total"] = len(errors)
    for r in errors.head(max_rows).to_dict("records"):
        out["run_errors"].append(
            {
                "analyzer": r.get("analyzer"),
                "host": r.get("host"),
                "evidence_id": r.get("evidence_id"),
                "message": _clip(r.get("message")),
                "traceback": _clip(r.get("traceback") if isinstance(r.get("traceback"), str) else ""),
            }
        )
    if "warnings" in runs:
        for r in runs[["analyzer", "host", "evidence_id", "warnings"]].itertuples(index=False):
            ws = r.warnings if isinstance(r.warnings, list) else []
            out["run_warnings_total"] += len(ws)
            for w in ws:
                if len(out["run_warnings"]) < max_rows:
                    out["run_warnings"].append(
                        {"analyzer": r.analyzer, "host": r.host, "evidence_id": r.evidence_id, "warning": _clip(str(w))}
                    )
    return out


def manifest_tables(ctx: ReportContext) -> dict[str, Any]:
    m = ctx.manifest
    summary = []
    if len(m):
        g = m.assign(_stored=m["outcome"].isin(("success", "empty")), _bytes=m["size"].fillna(0))
        for (host, kind), sub in g.groupby(["source_host", "kind"], sort=True):
            summary.append(
                {
                    "host": host,
                    "kind": kind,
                    "stored": int(sub["_stored"].sum()),
                    "bytes": int(sub.loc[sub["_stored"], "_bytes"].sum()),
                    "missing": int((sub["outcome"] == "missing").sum()),
                    "failure": int((sub["outcome"] == "failure").sum()),
                }
            )
    order = {"failure": 0, "success": 1, "empty": 2, "missing": 3}
    ranked = m.assign(_o=m["outcome"].map(order).fillna(4)).sort_values(
        ["_o", "source_host", "kind", "source_path"], kind="stable"
    )
    cap = ctx.options.html_max_artifacts
    rows = []
    for r in ranked.head(cap).itertuples(index=False):
        rows.append(
            {
                "artifact_id": r.artifact_id,
                "source_host": r.source_host,
                "kind": r.kind,
                "outcome": r.outcome,
                "source_path": _clip(r.source_path),
                "size": "" if pd.isna(r.size) else f"{int(r.size):,}",
                "sha256": "" if pd.isna(r.sha256) else r.sha256,
                "md5": "" if pd.isna(r.md5) else r.md5,
                "details": "" if pd.isna(r.details) else _clip(r.details),
            }
        )
    return {
        "manifest_summary": summary,
        "manifest_rows": rows,
        "manifest_total": len(m),
        "manifest_truncated": len(m) > cap,
    }


def _utc(sec: int) -> str:
    return pd.Timestamp(sec, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S")


def _verdict_class(verdict: str) -> str:
    return {
        VERDICT_COMPROMISED: "compromised",
        VERDICT_SUSPICIOUS: "suspicious",
        VERDICT_INSUFFICIENT: "insufficient",
    }.get(verdict, "clean")


def render_html(
    ctx: ReportContext,
    summaries: dict[str, HostSummary],
    ledger: Ledger,
    prov: dict[str, Any],
    outputs: list[dict[str, str]],
) -> str:
    """The report page as text."""
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    js = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    df = ctx.findings
    tally = ledger.tally()
    by_sev = df["severity"].value_counts()
    dated = int(df["ts"].notna().sum())
    runs = ctx.runs
    stored = ctx.stored
    shown = min(len(df), ctx.options.html_max_findings)
    notices = []
    if len(df) > shown:
        notices.append(
            f"Large case: this page embeds the {shown:,} most severe of {len(df):,} findings, plus counts over all "
            "of them. The full data is in findings.parquet, findings.csv, findings.jsonl and findings.xlsx."
        )
    errors = int((runs["status"] == "error").sum()) if len(runs) else 0
    if errors:
        notices.append(f"{errors} analyzer unit(s) failed; their evidence was not fully examined (see Analyzer runs).")
    hosts = []
    for host, s in summaries.items():
        d = s.as_dict()
        d["verdict_class"] = _verdict_class(s.verdict)
        d["tally"] = tally.get(host, {})
        d["ledger"] = ledger.completeness(host) if host in tally else None
        hosts.append(d)
    matrix = []
    servers = [h for h in ctx.servers if h in tally]
    for step in ctx.directive.steps:
        statuses = []
        for h in servers:
            e = ledger.get(h, step.id)
            statuses.append(e.status if e else "")
        matrix.append(
            {"step": step.id, "title": step.title, "category": step.category, "statuses": statuses, "cisa": step.cisa}
        )
    timeline = report_timeline(ctx)
    payload = findings_payload(ctx)
    shown_ids = {str(r[FINDING_FIELDS.index("finding_id")]) for r in payload["rows"]}
    window = timeline.window
    context = {
        "csp": content_security_policy(css, js),
        "css": Markup(css),  # our own file, hashed into the CSP
        "js": Markup(js),  # our own file, hashed into the CSP
        "case": prov["case"],
        "prov": prov,
        "generated": ctx.generated,
        "notices": notices,
        "totals": {
            "findings": len(df),
            "hosts": len(ctx.servers),
            "artifacts": len(stored),
            "bytes": int(stored["size"].fillna(0).sum()) if len(stored) else 0,
            "by_severity": {s: int(by_sev.get(s, 0)) for s in reversed(SEVERITIES)},
            "units": len(runs),
            "errors": errors,
            "dated": dated,
            "undated": len(df) - dated,
        },
        "hosts": hosts,
        "ledger": {
            "hosts": servers,
            "matrix": matrix,
            "by_host": [(h, [e.as_dict() for e in ledger.for_host(h)]) for h in servers],
            "window_start": ledger.window_start,
            "retention_until": ledger.retention_until,
            "completeness": {h: ledger.completeness(h) for h in servers},
            "paragraphs": ledger.paragraphs,
        },
        "chart": Markup(timeline_svg(timeline)),  # built by svg.py with every text escaped
        "timeline": {
            "json": script_json(timeline.as_json()),
            "lanes": [label for _, label, _ in LANES],
            "window": [_utc(t) for t in window] if window else None,
            "detections": [_utc(t) for t in timeline.detections] if timeline.detections else None,
            "span": [_utc(t) for t in timeline.span] if timeline.span else None,
            "width": width_name(timeline.sets[0].width) if timeline.sets else "",
        },
        "narratives": narrative_sequences(ctx, shown_ids),
        "stages": STAGES,
        "findings_json": script_json(payload),
        "findings_truncated": len(df) > shown,
        "findings_shown": shown,
        "finding_columns": SHOWN,
        "rules": rule_table(ctx),
        "run_statuses": RUN_STATUSES,
        "report_warnings": ctx.warnings,
        "outputs": outputs,
        **run_tables(ctx),
        **manifest_tables(ctx),
        "process_trees": process_trees(ctx.case_path) if ctx.case_path else [],
    }
    return template().render(**context)
