"""Web log indicators (YAML rules) over each HttpProxy, ECP Server and IIS log, plus its coverage.

One unit is one log file, read in bounded frames; every frame is normalised and matched by all
rules at once (pandas string operations over columns, never a Python loop over lines). Each log
also gives an ``info`` coverage finding (lines, rows, malformed lines, time span), the ED 21-02
step 4 evidence that the web logs were collected and readable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import pandas as pd

from analyzers.exchange.common import MAX_PER_CHECK, LogFile, iso, report_parse_problems, short
from analyzers.exchange.logs import (
    ECP,
    HTTPPROXY,
    IIS,
    OAB,
    SOURCE_COLUMNS,
    LogReader,
    normalize,
    time_span,
)
from analyzers.exchange.rules import RULE_DIR, Rule, RuleSet, SequenceState, load_rules, match_frame
from triage.errors import Skip
from triage.finding import Finding
from triage.indicators import rule_metas
from triage.registry import Analyzer, Unit, register

RULE_LOGS = (HTTPPROXY, IIS, ECP)
RULES = rule_metas("rulemeta/exchange_weblogs.yaml")
ROW_ATTRS = (
    "client_ip", "method", "uri_stem", "uri_query", "status", "user_agent", "username", "host", "request_id",
    "anchor_mailbox", "routing_hint", "protocol", "cmd",
)  # fmt: skip


def row_attributes(row: pd.Series) -> dict[str, Any]:
    """The normalised fields of one matched row, for a finding's attributes."""
    out: dict[str, Any] = {"ts": iso(row.get("ts"))}
    for c in ROW_ATTRS:
        v = row.get(c)
        if v is not None and not (isinstance(v, float) and pd.isna(v)) and str(v) != "":
            out[c] = short(v, 2000)
    out["line"] = int(row["_line"]) if "_line" in row and pd.notna(row["_line"]) else None
    return out


def describe_request(a: dict[str, Any]) -> str:
    """A short human form of a matched row: ``POST /ecp/y.js 241 from 1.2.3.4``."""
    if a.get("cmd"):
        return f"ECP command {short(a['cmd'], 160)}"
    parts = [a.get("method", ""), a.get("uri_stem", "")]
    if a.get("uri_query"):
        parts[-1] += "?" + short(a["uri_query"], 80)
    if a.get("status"):
        parts.append(str(a["status"]))
    text = " ".join(p for p in parts if p)
    if a.get("client_ip"):
        text += f" from {a['client_ip']}"
    return text or "log record"


def scan_log(
    f: LogFile, ruleset: RuleSet, *, max_per_rule: int = MAX_PER_CHECK
) -> tuple[list[tuple[Rule, dict[str, Any]]], Counter[str], dict[str, Any], LogReader]:
    """Match every rule over one log: ``(hits, hit counts per rule, time span, reader)``."""
    reader = LogReader(f.path, f.logtype)
    state = SequenceState()
    hits: list[tuple[Rule, dict[str, Any]]] = []
    counts: Counter[str] = Counter()
    first = last = None
    rules = [r for r in ruleset.rules if f.logtype in r.logs]
    for frame in reader.frames(SOURCE_COLUMNS[f.logtype]):
        df = normalize(frame, f.logtype, f.logical, reader.stats.date_headers[0] if reader.stats.date_headers else None)
        ts = df["ts"].dropna()
        if len(ts):
            lo, hi = ts.min(), ts.max()
            first = lo if first is None or lo < first else first
            last = hi if last is None or hi > last else last
        for rule, mask in match_frame(rules, df, f.logtype, state):
            n = int(mask.sum())
            room = max_per_rule - counts[rule.id]
            counts[rule.id] += n
            if room > 0:
                for _, row in df.loc[mask].head(room).iterrows():
                    hits.append((rule, row_attributes(row)))
    return hits, counts, {"first": first, "last": last}, reader


@register
class WebLogIndicators(Analyzer):
    """AA21-062A and ProxyLogon web log indicators (YAML rules) over HttpProxy, ECP and IIS logs; log coverage."""

    name = "exchange_weblogs"
    version = "1.0"
    in_process = True  # no C engine: a few small units may run in the command's process
    consumes = ("exchange_log", "iis_log")
    rules = (RULE_DIR,)

    def load_rules(self) -> RuleSet:
        """The YAML rules under signatures/exchange (bad ones disabled and reported)."""
        return load_rules(self.rule_paths())

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        """Rule hits (capped per rule) and one coverage finding for one log."""
        f = LogFile.of(unit, unit.evidence)
        for err in self.ruleset.errors:
            unit.warn(f"rule disabled: {err}")
        if f.logtype in RULE_LOGS:
            hits, counts, span, reader = scan_log(f, self.ruleset)
            stats = reader.stats
            yield from self._hits(unit, f, hits, counts)
            first, last = span["first"], span["last"]
        elif f.logtype == OAB:
            reader = LogReader(f.path, OAB)
            reader.count()
            stats = reader.stats
            ts = time_span(f.path, OAB)
            first, last = ts.first, ts.last
        else:
            raise Skip(f"not an HttpProxy, ECP, OAB generator or IIS log: {f.logical}")
        report_parse_problems(unit, [(f.logical, stats)])
        yield self._coverage(unit, f, stats, first, last)

    def _hits(
        self, unit: Unit, f: LogFile, hits: list[tuple[Rule, dict[str, Any]]], counts: Counter[str]
    ) -> Iterator[Finding]:
        for rule, attrs in hits:
            what = describe_request(attrs)
            yield unit.finding(
                rule,
                title=f"{rule.title}: {short(what, 160)}",
                message=f"{f.logical} line {attrs.get('line')}: {what}"
                + (f", user agent '{short(attrs['user_agent'], 120)}'" if attrs.get("user_agent") else "")
                + f". {rule.description}",
                location=f"{f.logical}:{attrs.get('line')}",
                ts=attrs.get("ts") or None,
                ts_desc="Log record time",
                tags=["weblog", f.logtype, *rule.tags],
                attributes=attrs
                | {"file": f.logical, "log": f.logtype, "rule_file": rule.file, "rule_line": rule.line},
            )
        by_id = {r.id: r for r, _ in hits}
        for rule_id, n in sorted(counts.items()):
            if n > MAX_PER_CHECK:
                rule = by_id[rule_id]
                yield unit.finding(
                    rule,
                    title=f"{rule.title}: {n - MAX_PER_CHECK} more lines in {PurePosixPath(f.logical).name}",
                    message=f"{n} lines of {f.logical} match; the first {MAX_PER_CHECK} are individual findings.",
                    location=f"{f.logical}:overflow",
                    tags=["weblog", f.logtype, "overflow"],
                    references=(),  # the overflow note cites nothing
                    attributes={"total_lines": n, "listed": MAX_PER_CHECK, "file": f.logical},
                )

    def _coverage(self, unit: Unit, f: LogFile, stats: Any, first: Any, last: Any) -> Finding:
        name = PurePosixPath(f.logical).name
        attrs = stats.coverage() | {"file": f.logical, "log": f.logtype, "first": iso(first), "last": iso(last)}
        bad = (
            f"; {stats.malformed_lines} malformed lines ({stats.dropped_lines} dropped)"
            if stats.malformed_lines
            else ""
        )
        return unit.finding(
            RULES["TRIAGE-EXLOG-COV"],
            title=f"Coverage of {name}: {stats.rows} records, {iso(first)[:19] or '-'} to {iso(last)[:19] or '-'}",
            message=(
                f"{f.logical} ({f.logtype}): {stats.lines} lines, {stats.rows} records read{bad}, "
                f"{stats.replaced_chars} undecodable bytes replaced, header from {stats.header_source or 'none'}; "
                f"first record {iso(first) or '-'}, last {iso(last) or '-'}."
            ),
            location=f"{f.logical}:coverage",  # identical files must not dedupe
            ts=first,
            ts_desc="First record in log",
            tags=[*RULES["TRIAGE-EXLOG-COV"].tags, f.logtype],
            attributes=attrs,
        )


__all__ = ["WebLogIndicators", "describe_request", "row_attributes", "scan_log"]
