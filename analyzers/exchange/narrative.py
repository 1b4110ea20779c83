"""One time-ordered ProxyLogon narrative per attacking client, joined across a host's web logs.

Seeds are the Test-ProxyLogon CVE-2021-26855 and CVE-2021-27065 Reset-VDir hits. For each seed
client IP the analyzer gathers, with byte-level pre-filters instead of full parses:

* its HttpProxy rows in every protocol folder (``ClientIpAddress``);
* IIS rows from it, and back-end IIS rows whose ``cafeReqId`` is one of its RequestIds;
* ECP Server log rows whose ``S:ACTID``/``S:REQID`` is one of its RequestIds, or that carry one of
  the ``msExchEcpCanary`` values its SSRF requests used;
* requests from anyone for the web shells the host's logs name (OAB download paths, ``.aspx``
  pages the client got a 200 from), as related requests.

Rows sharing a RequestId become one step; steps are ordered by time and labelled with the web log
rules and Test-ProxyLogon checks they match. Application-log CVE-2021-26857 events, CVE-2021-26858
OAB lines and MSExchange Management cmdlets on virtual directories within an hour of the client's
activity are listed as host events (they carry no client address).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from analyzers.exchange.common import LogFile, file_failed, iso, short, unit_files
from analyzers.exchange.logs import ECP, HTTPPROXY, IIS, SOURCE_COLUMNS, LogReader, normalize
from analyzers.exchange.proxylogon import (
    OabHit,
    check_26857,
    check_26858,
    mask_26855,
    mask_reset_vdir,
    scan_httpproxy,
)
from analyzers.exchange.rules import RULE_DIR, RuleSet, load_rules, match_frame
from triage.errors import Skip
from triage.finding import SEVERITIES, Finding
from triage.indicators import indicator_list, rule_metas
from triage.lazyimport import lazy_module
from triage.registry import Analyzer, Unit, register

if TYPE_CHECKING:
    import pandas as pd
else:  # loaded on first use: a host whose evidence gives this module no work skips without them
    pd = lazy_module("pandas")

_CANARY = r"(?i)msExchEcpCanary=([^&#;\s']+)"
_SHELL_PAGE = re.compile(r"(?i)^/(owa/auth|ecp/auth|aspnet_client)/.*\.as[hp]x$")
# the stock pages of owa/auth and ecp/auth (signatures/indicators/exchange_web.yaml)
_STOCK = re.compile("(?i)^(?:" + "|".join(re.escape(p) for p in indicator_list("stock_auth_paths")) + ")$")
HOST_EVENT_WINDOW = timedelta(hours=1)
MAX_STEPS = 1000
MAX_RELATED = 200
RULES = rule_metas("rulemeta/proxylogon_narrative.yaml")
STEP_COLUMNS = (
    "ts", "log", "source", "_line", "client_ip", "method", "uri_stem", "uri_query", "status", "user_agent",
    "username", "request_id", "anchor_mailbox", "routing_hint", "protocol", "cmd", "uri_file",
)  # fmt: skip
TPL_26855 = "CVE-2021-26855 SSRF (Test-ProxyLogon)"
TPL_RESET = "CVE-2021-27065 Reset-VDir answered 200 (Test-ProxyLogon)"
SOURCE_NAMES = {HTTPPROXY: "HttpProxy", IIS: "IIS", ECP: "ECP"}


@dataclass
class Narrative:
    """The steps of one client, its related requests and the host events around them."""

    client_ip: str
    steps: list[dict[str, Any]]
    seeds: list[str]
    related: list[dict[str, Any]] = field(default_factory=list)
    host_events: list[dict[str, Any]] = field(default_factory=list)
    canaries: list[str] = field(default_factory=list)
    shell_names: list[str] = field(default_factory=list)
    rule_ids: set[str] = field(default_factory=set)

    @property
    def first(self) -> pd.Timestamp | None:
        """Time of the first step."""
        times = [s["_ts"] for s in self.steps if s["_ts"] is not None]
        return min(times) if times else None

    @property
    def last(self) -> pd.Timestamp | None:
        """Time of the last step."""
        times = [s["_ts"] for s in self.steps if s["_ts"] is not None]
        return max(times) if times else None


def _rows(
    files: Iterable[LogFile], logtype: str, needles: list[bytes], keep: Any, stats: dict[str, Any]
) -> pd.DataFrame:
    """Normalised rows of one log type holding a needle, narrowed by ``keep(frame) -> mask``."""
    out: list[pd.DataFrame] = []
    if not needles:
        return pd.DataFrame(columns=list(STEP_COLUMNS))
    for f in files:
        if f.logtype != logtype:
            continue
        reader = LogReader(f.path, logtype)
        stats[f.logical] = reader.stats
        date = None
        try:
            for frame in reader.matching_frames(needles, SOURCE_COLUMNS[logtype]):
                date = date or (reader.stats.date_headers[-1] if reader.stats.date_headers else None)
                df = normalize(frame, logtype, f.logical, date)
                m = keep(df)
                if m.any():
                    out.append(df.loc[m, list(STEP_COLUMNS)])
        except Exception as exc:  # one unreadable log costs only itself
            file_failed(stats.setdefault(FAILURES, []), f.logical, exc)
    if not out:
        return pd.DataFrame(columns=list(STEP_COLUMNS))
    return pd.concat(out, ignore_index=True)


FAILURES = "_failures"  # the key under which _rows leaves its per-file errors in the stats dict


def _needles(values: Iterable[str]) -> list[bytes]:
    return sorted({v.lower().encode("utf-8") for v in values if v})


def _shell_name(path: str) -> str:
    return re.split(r"[\\/]", path.strip().strip("'\""))[-1].lower()


def collect(
    files: list[LogFile], seeds: pd.DataFrame, oab: list[OabHit], stats: dict[str, Any]
) -> tuple[pd.DataFrame, set[str]]:
    """Every row joined to a seed client, with ``client`` (the seed IP it belongs to), and shell names."""
    ips = {ip for ip in seeds["ClientIpAddress"].fillna("").astype(str) if ip}
    names = {_shell_name(h.download_path) for h in oab} - {""}
    proxy = _rows(
        files,
        HTTPPROXY,
        _needles(ips | names),
        lambda d: d["client_ip"].isin(ips) | d["uri_file"].str.lower().isin(names),
        stats,
    )
    seed_rows = proxy[proxy["client_ip"].isin(ips)]
    rid_ip = dict(zip(seed_rows["request_id"], seed_rows["client_ip"], strict=True))
    rid_ip = {k: v for k, v in rid_ip.items() if k}
    canaries = pd.concat(
        [
            seed_rows["anchor_mailbox"].str.extract(_CANARY, expand=False),
            seed_rows["uri_query"].str.extract(_CANARY, expand=False),
        ]
    )
    canary_ip: dict[str, str] = {}
    for canary, ip in zip(canaries, pd.concat([seed_rows["client_ip"]] * 2), strict=True):
        if isinstance(canary, str) and canary:
            canary_ip.setdefault(canary, ip)
    iis = _rows(
        files,
        IIS,
        _needles(ips | set(rid_ip) | names),
        lambda d: d["client_ip"].isin(ips) | d["request_id"].isin(set(rid_ip)) | d["uri_file"].str.lower().isin(names),
        stats,
    )
    ecp = _rows(
        files,
        ECP,
        _needles(set(rid_ip) | set(canary_ip)),
        lambda d: d["request_id"].isin(set(rid_ip)) | _has_any(d["uri_query"], canary_ip),
        stats,
    )
    # pages the clients got a 200 from in the shell folders: look for anyone else asking for them too
    got = pd.concat([proxy, iis], ignore_index=True)
    mine = got[got["client_ip"].isin(ips) & (got["status"] == "200")]
    pages = mine["uri_stem"][mine["uri_stem"].str.match(_SHELL_PAGE) & ~mine["uri_stem"].str.match(_STOCK)]
    new = {p.rsplit("/", 1)[-1].lower() for p in pages} - names
    if new:
        names |= new

        def keep(d: pd.DataFrame) -> pd.Series:
            return d["uri_file"].str.lower().isin(new) & ~d["client_ip"].isin(ips)

        proxy = pd.concat([proxy, _rows(files, HTTPPROXY, _needles(new), keep, stats)], ignore_index=True)
        iis = pd.concat([iis, _rows(files, IIS, _needles(new), keep, stats)], ignore_index=True)
    frames = []
    for df in (proxy, iis, ecp):
        if not len(df):
            continue
        df = df.copy()
        client = df["client_ip"].where(df["client_ip"].isin(ips), "")
        client = client.where(client != "", df["request_id"].map(lambda r: rid_ip.get(r, "")).astype("str"))
        canary = df["uri_query"].str.extract(_CANARY, expand=False).fillna("")
        client = client.where(client != "", canary.map(lambda c: canary_ip.get(c, "")).astype("str"))
        df["client"] = client
        frames.append(df)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*STEP_COLUMNS, "client"])
    rows = rows.drop_duplicates(subset=["source", "_line"])
    return rows, names


def _has_any(series: pd.Series, values: Iterable[str]) -> pd.Series:
    out = pd.Series(False, index=series.index)
    for v in values:
        out |= series.str.contains(v, regex=False)
    return out


def _labels(rows: pd.DataFrame, ruleset: RuleSet) -> tuple[pd.Series, pd.Series]:
    """Rule titles and ids per row (lists, most severe first), from the web log rules and Test-ProxyLogon."""
    titles: dict[int, list[tuple[int, str]]] = {i: [] for i in rows.index}
    ids: dict[int, list[str]] = {i: [] for i in rows.index}
    proxy = rows[rows["log"] == HTTPPROXY]
    if len(proxy):
        for i in proxy.index[mask_26855(proxy["anchor_mailbox"])]:
            titles[i].append((-3, TPL_26855))
            ids[i].append("TPL-CVE-2021-26855")
        ecp_folder = proxy["source"].str.contains("/HttpProxy/Ecp/", case=False, regex=False)
        for i in proxy.index[mask_reset_vdir(proxy["anchor_mailbox"], proxy["status"]) & ecp_folder]:
            titles[i].append((-4, TPL_RESET))
            ids[i].append("TPL-CVE-2021-27065-RESET")
    for log in (HTTPPROXY, IIS, ECP):
        for _, sub in rows[rows["log"] == log].groupby("source", sort=False):
            sub = sub.sort_values("_line")
            for rule, mask in match_frame(ruleset.rules, sub, log):
                for i in sub.index[mask]:
                    titles[i].append((-SEVERITIES.index(rule.severity), rule.title))
                    ids[i].append(rule.id)
    return pd.Series(titles), pd.Series(ids)


def _backend(anchor: str) -> str:
    if not anchor.lower().startswith("serverinfo~"):
        return ""
    rest = anchor.split("~", 1)[1]
    return rest.split("@", 1)[1] if "@" in rest else rest


def _source_name(row: Any) -> str:
    base = SOURCE_NAMES.get(row["log"], row["log"])
    return f"{base}/{row['protocol']}" if row.get("protocol") else base


def _steps(rows: pd.DataFrame, titles: pd.Series, ids: pd.Series) -> list[dict[str, Any]]:
    """Rows sharing a RequestId become one step; steps sorted by time. Plain Python: the rows are few."""
    records = rows.assign(_titles=titles, _ids=ids).to_dict("records")
    groups: dict[str, list[dict[str, Any]]] = {}
    for i, r in enumerate(records):
        groups.setdefault(r["request_id"] or f"row:{i}", []).append(r)
    order = {HTTPPROXY: 0, IIS: 1, ECP: 2}
    steps: list[dict[str, Any]] = []
    for key, grp in groups.items():
        times = [r["ts"] for r in grp if not pd.isna(r["ts"])]
        # IIS logs whole seconds: take the time from HttpProxy or ECP when the request is there too
        precise = [r["ts"] for r in grp if r["log"] != IIS and not pd.isna(r["ts"])]
        ts = min(precise) if precise else (min(times) if times else None)
        # prefer the front end's view (HttpProxy, then IIS) for what was asked
        pref = min(grp, key=lambda r: order.get(r["log"], 3))
        labelled = sorted(t for r in grp for t in r["_titles"])
        steps.append(
            {
                "_ts": None if ts is None else pd.Timestamp(ts),
                "ts": iso(ts),
                "request_id": "" if key.startswith("row:") else key,
                "sources": sorted({_source_name(r) for r in grp}),
                "method": pref["method"],
                "uri_stem": pref["uri_stem"],
                "uri_query": short(pref["uri_query"], 300),
                "backend": _backend(pref["anchor_mailbox"] or ""),
                "status": next((r["status"] for r in grp if r["status"]), ""),
                "user_agent": short(next((r["user_agent"] for r in grp if r["user_agent"]), ""), 200),
                "username": next((r["username"] for r in grp if r["username"]), ""),
                "cmd": short(next((r["cmd"] for r in grp if r["cmd"]), ""), 600),
                "labels": list(dict.fromkeys(t for _, t in labelled)),
                "rule_ids": sorted({i for r in grp for i in r["_ids"]}),
                "locations": [f"{r['source']}:{int(r['_line'])}" for r in grp][:10],
            }
        )
    far = pd.Timestamp.max.tz_localize("UTC")
    steps.sort(key=lambda s: (s["_ts"] or far, s["locations"][0] if s["locations"] else ""))
    return steps


def describe_step(step: dict[str, Any]) -> str:
    """One line for a step: time, where seen, what was asked (and what ECP ran), what it means."""
    parts = []
    if step["method"] or step["backend"]:
        what = f"{step['method']} {step['uri_stem']}".strip()
        if step["backend"]:
            what += f" -> {short(step['backend'], 120)}"
        elif step["uri_query"]:
            what += f"?{short(step['uri_query'], 60)}"
        if step["status"]:
            what += f" ({step['status']})"
        parts.append(what)
    if step["cmd"]:
        parts.append(f"ECP ran {short(step['cmd'], 140)}")
    if not parts:
        parts.append(step["uri_stem"] or "log record")
    label = "; ".join(step["labels"][:3])
    return f"{step['ts'] or '?'} [{', '.join(step['sources'])}] {'; '.join(parts)}" + (f" - {label}" if label else "")


def _management_events(files: list[LogFile], warnings: list[str]) -> list[dict[str, Any]]:
    from triage.formats.evtx import SYSTEM_COLUMNS, ReadStats, iter_evtx

    out: list[dict[str, Any]] = []
    for f in files:
        if f.kind != "evtx" or not f.logical.lower().endswith("msexchange management.evtx"):
            continue
        rs = ReadStats()
        try:
            for frame in iter_evtx(f.path, rs):
                data_cols = [c for c in frame.columns if c not in SYSTEM_COLUMNS]
                if not data_cols:
                    continue
                text = frame[data_cols].fillna("").astype("str").agg(" ".join, axis=1)
                hit = text.str.contains("VirtualDirectory", case=False, regex=False)
                for i in frame.index[hit]:
                    out.append(
                        {
                            "_ts": frame.at[i, "TimeCreated"],
                            "ts": iso(frame.at[i, "TimeCreated"]),
                            "source": f.logical,
                            "what": "MSExchange Management cmdlet: " + short(text[i], 400),
                        }
                    )
        except Exception as exc:  # one unreadable event log costs only itself
            file_failed(warnings, f.logical, exc)
        warnings.extend(f"{f.logical}: {w}" for w in rs.warnings[:10])
    return out


def host_events(files: list[LogFile], oab: list[OabHit], warnings: list[str]) -> list[dict[str, Any]]:
    """CVE-2021-26857 events, CVE-2021-26858 OAB lines and vdir cmdlets of the host (no client address)."""
    events: list[dict[str, Any]] = []
    um = check_26857(files, warnings)
    for _, ev in um.iterrows():
        events.append(
            {
                "_ts": ev["TimeCreated"],
                "ts": iso(ev["TimeCreated"]),
                "source": ev["file"],
                "what": "CVE-2021-26857 Unified Messaging error: " + short(ev["Message"], 300),
            }
        )
    for h in oab:
        events.append(
            {
                "_ts": h.ts,
                "ts": iso(h.ts),
                "source": f"{h.file}:{h.line}",
                "what": f"CVE-2021-26858 OAB generator wrote {h.download_path}",
            }
        )
    events.extend(_management_events(files, warnings))
    return events


def build_narratives(
    files: list[LogFile], ruleset: RuleSet, warnings: list[str] | None = None
) -> tuple[list[Narrative], dict[str, Any]]:
    """The narratives of one host's logs (empty without Test-ProxyLogon seeds) and the parse stats."""
    warnings = warnings if warnings is not None else []
    stats: dict[str, Any] = {}
    scan = scan_httpproxy(files, failures=warnings)
    stats.update(scan.stats)
    seeds = pd.concat([scan.hits_26855, scan.hits_reset], ignore_index=True)
    ip = seeds["ClientIpAddress"].fillna("").astype("str").str.strip()
    seeds = seeds.assign(ClientIpAddress=ip.str.replace(r"^(\d{1,3}(?:\.\d{1,3}){3}):\d+$", r"\1", regex=True))
    seeds = seeds[seeds["ClientIpAddress"] != ""]
    if not len(seeds):
        return [], stats
    oab = check_26858(files, failures=warnings)
    rows, names = collect(files, seeds, oab, stats)
    warnings.extend(stats.pop(FAILURES, []))
    titles, ids = _labels(rows, ruleset)
    events = host_events(files, oab, warnings)
    out: list[Narrative] = []
    for ip in sorted(set(seeds["ClientIpAddress"].astype(str))):
        mine = rows[rows["client"] == ip]
        steps = _steps(mine, titles[mine.index], ids[mine.index])[:MAX_STEPS]
        other = rows[(rows["client"] != ip) & rows["uri_file"].str.lower().isin(names)] if "uri_file" in rows else None
        seed_ids = sorted(set(seeds.loc[seeds["ClientIpAddress"] == ip, "RequestId"].astype(str)))
        n = Narrative(ip, steps, seed_ids, shell_names=sorted(names))
        n.canaries = sorted(
            {c for c in mine["uri_query"].str.extract(_CANARY, expand=False).dropna()}
            | {c for c in mine["anchor_mailbox"].str.extract(_CANARY, expand=False).dropna()}
        )
        n.rule_ids = {i for s in steps for i in s["rule_ids"]}
        if other is not None and len(other):
            for _, r in other.sort_values("ts").head(MAX_RELATED).iterrows():
                n.related.append(
                    {
                        "ts": iso(r["ts"]),
                        "client_ip": r["client_ip"],
                        "source": _source_name(r),
                        "method": r["method"],
                        "uri_stem": r["uri_stem"],
                        "uri_query": short(r["uri_query"], 200),
                        "status": r["status"],
                        "user_agent": short(r["user_agent"], 200),
                        "location": f"{r['source']}:{int(r['_line'])}",
                    }
                )
        if n.first is not None:
            window = pd.Timedelta(HOST_EVENT_WINDOW)
            lo, hi = n.first - window, n.last + window
            near = [e for e in events if e["_ts"] is not None and not pd.isna(e["_ts"])]
            near = [e for e in near if lo <= pd.Timestamp(e["_ts"]) <= hi]
            n.host_events = [{k: v for k, v in e.items() if k != "_ts"} for e in sorted(near, key=lambda e: e["_ts"])]
        out.append(n)
    return out, stats


CRITICAL_RULES = {
    "TPL-CVE-2021-27065-RESET",
    "TRIAGE-EXW-010",
    "TRIAGE-EXW-013",
    "TRIAGE-EXW-015",
    "TRIAGE-EXW-017",
}


@register
class AttackNarrative(Analyzer):
    """One time-ordered ProxyLogon narrative per attacking client, joined across HttpProxy, IIS and ECP logs."""

    name = "proxylogon_narrative"
    version = "1.0"
    in_process = True  # no C engine: a few small units may run in the command's process
    consumes = ("exchange_log", "iis_log", "evtx")
    rules = (RULE_DIR,)
    scope = "host"

    def load_rules(self) -> RuleSet:
        """The web log rules, used here to label the steps."""
        return load_rules(self.rule_paths())

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        """One finding per client IP seeded by a Test-ProxyLogon hit on this host."""
        files = unit_files(unit)
        if not any(f.kind == "exchange_log" for f in files):
            raise Skip("no Exchange logs on this host")
        warnings: list[str] = []
        narratives, _stats = build_narratives(files, self.ruleset, warnings)
        for w in warnings:
            unit.warn(w)
        for n in narratives:
            yield self._finding(unit, n)

    def _finding(self, unit: Unit, n: Narrative) -> Finding:
        critical = bool(n.rule_ids & CRITICAL_RULES)
        lines = [f"{i}. {describe_step(s)}" for i, s in enumerate(n.steps[:60], 1)]
        if len(n.steps) > 60:
            lines.append(f"... {len(n.steps) - 60} more steps in the attributes")
        extra = []
        if n.related:
            ips = sorted({r["client_ip"] for r in n.related})
            extra.append(f"{len(n.related)} requests from {', '.join(ips[:5])} for the same web shell pages")
        if n.host_events:
            extra.append(f"{len(n.host_events)} host events nearby (UM errors, OAB writes, vdir cmdlets)")
        message = (
            f"{n.client_ip} on {unit.host}: {len(n.steps)} steps from {iso(n.first) or '?'} to "
            f"{iso(n.last) or '?'}, seeded by {len(n.seeds)} Test-ProxyLogon hit(s)"
            + (f"; {'; '.join(extra)}" if extra else "")
            + ".\n"
            + "\n".join(lines)
        )
        steps = [{k: v for k, v in s.items() if k != "_ts"} for s in n.steps]
        return unit.finding(
            RULES["TRIAGE-EXN-001"],
            severity="critical" if critical else "high",
            title=f"ProxyLogon activity from {n.client_ip}: {len(n.steps)} steps, "
            f"{iso(n.first)[:16] or '?'} to {iso(n.last)[:16] or '?'}",
            message=message,
            location=f"narrative:{n.client_ip}",
            ts=n.first,
            ts_desc="First step",
            mitre=["T1190", "T1505.003"] if critical else ["T1190"],
            cve=sorted(
                {"CVE-2021-26855"}
                | ({"CVE-2021-27065"} if n.rule_ids & {"TPL-CVE-2021-27065-RESET", "TRIAGE-EXW-017"} else set())
            ),
            attributes={
                "client_ip": n.client_ip,
                "first": iso(n.first),
                "last": iso(n.last),
                "steps": steps,
                "seed_request_ids": n.seeds,
                "canaries": n.canaries,
                "shell_names": n.shell_names,
                "related_requests": n.related,
                "host_events": n.host_events,
                "rule_ids": sorted(n.rule_ids),
            },
        )


__all__ = ["AttackNarrative", "Narrative", "build_narratives", "collect", "describe_step", "host_events"]
