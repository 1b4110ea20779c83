"""Each ProxyLogon client narrative as a sequence of stages, for the HTML report.

The ``proxylogon_narrative`` analyzer leaves one finding per attacking client whose attributes hold its
time-ordered steps (web log requests joined by RequestId), the host events near them (vdir cmdlets, OAB
writes, UM errors) and the requests of others for the same web shells. Here every step and event is placed in
one stage of the attack as CISA and Microsoft describe it - SSRF (CVE-2021-26855), ECP access, OAB virtual
directory change, web shell (written by the Reset-VDir export or the OAB generator, then requested), follow-on
(later detections on the host, others using the shell, UM exploitation) - and linked to the findings that rest
on the same log line or event.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from triage.finding import SEVERITIES
from triage.report.context import ReportContext, parse_attributes

STAGES = ("SSRF", "ECP access", "OAB change", "web shell", "follow-on")
SSRF, ECP, OAB, SHELL, FOLLOW = range(len(STAGES))
MAX_NARRATIVES = 50
MAX_ITEMS = 40  # per stage
MAX_FOLLOW_ON = 12  # later detections listed per narrative
FOLLOW_ON_WINDOW = pd.Timedelta(hours=24)
_SHELL_PAGE = re.compile(r"(?i)/(aspnet_client|owa/auth|ecp/auth)/.*\.as[hp]x$")


@cache
def narrative_rules() -> frozenset[str]:
    """The narrative analyzer's rule ids, from its rule metadata (signatures/rulemeta)."""
    from triage.indicators import rule_metas

    return frozenset(rule_metas("rulemeta/proxylogon_narrative.yaml"))


def step_stage(step: dict[str, Any], shells: set[str]) -> int:
    """The stage of one web log step: the most telling of what its rows show."""
    uri = str(step.get("uri_stem") or "").lower()
    text = " ".join(str(step.get(k) or "") for k in ("uri_stem", "uri_query", "backend", "cmd")).lower()
    ids = " ".join(str(i) for i in step.get("rule_ids") or [])
    if uri.rsplit("/", 1)[-1] in shells or _SHELL_PAGE.search(uri):
        return SHELL
    if "virtualdirectory" in text or "27065" in ids:
        return OAB
    sources = " ".join(str(s) for s in step.get("sources") or [])
    if "/ecp/ddi" in text or "msexchecpcanary" in text or sources.startswith("ECP"):
        return ECP
    if step.get("backend") or "26855" in ids:
        return SSRF
    return ECP if uri.startswith("/ecp/") else FOLLOW


def event_stage(what: str) -> int:
    """The stage of a host event (its text as the analyzer wrote it)."""
    low = what.lower()
    if "26858" in low or ("reset-" in low and "virtualdirectory" in low):
        return SHELL  # the OAB generator or the Reset-VDir export writes the page
    if "virtualdirectory" in low:
        return OAB
    return FOLLOW


def _norm_path(path: str) -> str:
    """``C:/Windows/x.evtx:12`` and ``evidence/H/evtx/C/Windows/x.evtx`` compare by the part after the drive."""
    p = path.replace("\\", "/")
    p = re.sub(r":\d+$", "", p)
    return re.sub(r"^([A-Za-z]):/", r"\1/", p).lower()


class _Index:
    """Findings of one host, looked up by location, by (second, evidence path) and by time."""

    def __init__(self, ctx: ReportContext, host: str, locations: set[str]) -> None:
        df = ctx.findings
        self.rows = np.flatnonzero((ctx.host_column == host).to_numpy())
        # vectorised: a host of a big case holds a million findings, a narrative a few dozen lines
        loc = df["location"].iloc[self.rows]
        hit = loc.isin(locations).fillna(False).to_numpy(dtype=bool)
        self.by_loc: dict[str, list[int]] = {}
        for i, value in zip(self.rows[hit].tolist(), loc[hit].astype(str).tolist(), strict=True):
            self.by_loc.setdefault(value, []).append(i)
        self.sec = df["ts"].iloc[self.rows].dt.tz_convert("UTC").dt.tz_localize(None).dt.floor("s").to_numpy()
        self.paths = df["evidence_path"]

    def at(self, ts: pd.Timestamp, source: str) -> list[int]:
        """Findings of the same second whose evidence is ``source`` (an event's log file)."""
        same = self.rows[self.sec == ts.tz_convert("UTC").tz_localize(None).floor("s").to_datetime64()]
        paths = self.paths.iloc[same].fillna("").astype(str).str.replace("\\", "/").str.lower()
        return [int(i) for i in same[paths.str.endswith(_norm_path(source)).to_numpy(dtype=bool)]]


def _ts(value: Any) -> pd.Timestamp | None:
    try:
        t = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    if pd.isna(t):
        return None
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _step_text(step: dict[str, Any]) -> str:
    what = f"{step.get('method') or ''} {step.get('uri_stem') or ''}".strip()
    if step.get("backend"):
        what += f" -> {str(step['backend'])[:120]}"
    if step.get("status"):
        what += f" ({step['status']})"
    if step.get("cmd"):
        what += f"; ECP ran {str(step['cmd'])[:160]}"
    labels = [str(x) for x in step.get("labels") or []][:3]
    sources = ", ".join(str(s) for s in step.get("sources") or [])
    return f"[{sources}] {what}" + (f" - {'; '.join(labels)}" if labels else "")


def _links(ctx: ReportContext, rows: list[int], shown: set[str]) -> list[dict[str, Any]]:
    df = ctx.findings
    out = []
    picked = np.sort(np.asarray(rows, dtype=np.int64))
    picked = picked[np.r_[True, np.diff(picked) != 0]] if len(picked) else picked  # distinct, by sorting
    picked = picked[np.argsort(-ctx.severity_codes[picked], kind="stable")][:6]  # the most severe few
    for i in picked.tolist():
        fid = str(df["finding_id"].iat[i])
        out.append(
            {
                "id": fid,
                "rule_id": str(df["rule_id"].iat[i] or ""),
                "label": str(df["rule_title"].iat[i] or df["rule_id"].iat[i] or fid),
                "severity": str(df["severity"].iat[i]),
                "on_page": fid in shown,
            }
        )
    return out


def narrative_sequences(ctx: ReportContext, shown: set[str]) -> list[dict[str, Any]]:
    """One sequence per narrative finding: its stages in order, each with its items and their findings.

    ``shown`` holds the finding ids the page embeds (a link to any other says where the finding is instead).
    """
    df = ctx.findings
    if not len(df):
        return []
    rows = np.flatnonzero(df["rule_id"].isin(narrative_rules()).fillna(False).to_numpy(dtype=bool))
    rows = rows[np.argsort(df["ts"].iloc[rows].to_numpy(), kind="stable")][:MAX_NARRATIVES]
    ind = _indications(ctx)
    out = []
    for i in rows.tolist():
        attrs = parse_attributes(df["attributes"].iat[i])
        if not isinstance(attrs.get("steps"), list):
            continue
        host = str(ctx.host_column.iat[i])
        steps = [s for s in attrs["steps"] if isinstance(s, dict)]
        locations = {str(loc) for s in steps for loc in s.get("locations") or []}
        index = _Index(ctx, host, locations)
        shells = {str(n).lower() for n in attrs.get("shell_names") or []}
        stages: list[list[dict[str, Any]]] = [[] for _ in STAGES]
        used: set[int] = {i}
        for s in steps:
            hit = [j for loc in s.get("locations") or [] for j in index.by_loc.get(str(loc), [])]
            used.update(hit)
            stages[step_stage(s, shells)].append(
                {"ts": _ts(s.get("ts")), "what": _step_text(s), "links": _links(ctx, hit, shown)}
            )
        for e in attrs.get("host_events") or []:
            if not isinstance(e, dict):
                continue
            t = _ts(e.get("ts"))
            hit = index.at(t, str(e.get("source") or "")) if t is not None else []
            used.update(hit)
            what = str(e.get("what") or "")
            stages[event_stage(what)].append(
                {"ts": t, "what": f"[host event] {what[:180]}", "links": _links(ctx, hit, shown)}
            )
        for r in attrs.get("related_requests") or []:
            if isinstance(r, dict):
                stages[FOLLOW].append(
                    {
                        "ts": _ts(r.get("ts")),
                        "what": f"[{r.get('source') or 'web log'}] {r.get('client_ip') or '?'} requested "
                        f"{r.get('uri_stem') or '?'} ({r.get('status') or '?'}): the web shell used",
                        "links": [],
                    }
                )
        first = _ts(attrs.get("first")) or _ts(df["ts"].iat[i])
        groups: dict[tuple[str, Any], list[int]] = {}
        for j in _later(ctx, index, ind, first, used):
            groups.setdefault((str(df["evidence_id"].iat[j]), df["ts"].iat[j]), []).append(j)
        for (_, when), js in list(groups.items())[:MAX_FOLLOW_ON]:
            top = max(js, key=lambda j: int(ctx.severity_codes[j]))
            path = str(df["evidence_path"].iat[top] or "")
            name = path.replace("\\", "/").rsplit("/", 1)[-1].lower()
            stage = SHELL if name in shells or _SHELL_PAGE.search(path) else FOLLOW
            stages[stage].append(
                {
                    "ts": _ts(when),
                    "what": str(df["title"].iat[top] or ""),
                    "links": _links(ctx, js, shown),
                }
            )
        far = pd.Timestamp.max.tz_localize("UTC")
        seq = []
        for k, items in enumerate(stages):
            items.sort(key=lambda it: it["ts"] or far)
            seq.append(
                {
                    "name": STAGES[k],
                    "first": _iso(items[0]["ts"]) if items else "",
                    "count": len(items),
                    "items": [{**it, "ts": _iso(it["ts"])} for it in items[:MAX_ITEMS]],
                }
            )
        out.append(
            {
                "client_ip": str(attrs.get("client_ip") or ""),
                "host": host,
                "title": str(df["title"].iat[i] or ""),
                "self": _links(ctx, [i], shown)[0],
                "first": str(attrs.get("first") or ""),
                "last": str(attrs.get("last") or ""),
                "stages": seq,
            }
        )
    return out


def _iso(t: pd.Timestamp | None) -> str:
    return "" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")


def _indications(ctx: ReportContext) -> np.ndarray:
    from triage.report.hosts import indication_mask

    return indication_mask(ctx) & (ctx.severity_codes >= SEVERITIES.index("medium"))


def _later(ctx: ReportContext, index: _Index, ind: np.ndarray, first: pd.Timestamp | None, used: set[int]) -> list[int]:
    """The host's dated detections in the day after the narrative began, not already linked to a stage."""
    if first is None:
        return []
    rows = index.rows[ind[index.rows]]
    ts = ctx.findings["ts"].iloc[rows]
    keep = ((ts >= first) & (ts <= first + FOLLOW_ON_WINDOW)).fillna(False).to_numpy(dtype=bool)
    keep = keep & ~np.isin(rows, np.fromiter(used, dtype=np.int64, count=len(used)))
    picked, when = rows[keep], ts[keep].to_numpy()
    return picked[np.argsort(when, kind="stable")][: MAX_FOLLOW_ON * 8].tolist()
