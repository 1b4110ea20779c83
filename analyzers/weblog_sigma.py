"""SigmaHQ ``webserver`` and ``proxy`` rules over IIS and Exchange HttpProxy/ECP logs.

Third-party Sigma sets given with ``--sigma`` carry web rules (SigmaHQ ``rules/web`` and the Exchange
exploitation rules of ``rules-emerging-threats``) whose logsource is ``category: webserver`` (W3C names:
``cs-uri-stem``, ``cs-uri-query``, ``cs-method``, ``sc-status``, ``c-ip``, ``cs-user-agent`` ...) or
``category: proxy`` (``c-uri``, ``c-uri-query``, ``c-useragent``, ``cs-host``, ``src_ip`` ...). This analyzer
reads each web log with the Exchange/IIS log reader (``analyzers.exchange.logs``), maps the normalised
columns onto both vocabularies (:func:`sigma_frame`) and runs the rules through the project's Sigma engine,
whose logsource map sends both categories to the ``Triage-WebLog`` channel those rows carry.

Field mapping. ``cs-uri-query`` and ``cs-uri``/``c-uri`` hold the whole request target (``stem?query``): many
SigmaHQ web rules look for a path in ``cs-uri-query`` (their sources log the full URI there); ``c-uri-query``
is the query alone, ``cs-uri-stem``/``c-uri-stem`` the path; ``c-uri-extension`` the last extension of the
path. Logs without web rules in the given sets are skipped with the reason, never reported as clean.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from analyzers.exchange.logs import ECP, HTTPPROXY, IIS, LogReader, log_type, normalize
from triage.errors import Skip
from triage.finding import Finding
from triage.registry import Analyzer, Option, Unit, register

log = logging.getLogger(__name__)

CHANNEL = "Triage-WebLog"  # the pseudo channel signatures/sigma/logsources.yaml maps webserver/proxy onto
WEB_CATEGORIES = ("webserver", "proxy")
MAX_PER_RULE = 1000
_WEB_LOGSOURCE = re.compile(rb"^\s*category:\s*['\"]?(?:webserver|proxy)['\"]?\s*$", re.MULTILINE)
STR = pd.StringDtype("pyarrow")


def sigma_frame(norm: pd.DataFrame) -> pd.DataFrame:
    """The Sigma ``webserver``/``proxy`` columns from a frame of :func:`normalize` columns (one row per request)."""
    stem = norm["uri_stem"].astype(STR).fillna("")
    query = norm["uri_query"].astype(STR).fillna("")
    full = stem.where(query == "", stem + "?" + query)
    ext = stem.str.extract(r"\.([A-Za-z0-9]{1,10})$", expand=False).fillna("").astype(STR)
    ua = norm["user_agent"].astype(STR).fillna("")
    status = norm["status"].astype(STR).fillna("")
    client = norm["client_ip"].astype(STR).fillna("")
    host = norm["host"].astype(STR).fillna("")
    method = norm["method"].astype(STR).fillna("")
    out = {
        "Channel": pd.Series(CHANNEL, index=norm.index, dtype=STR),
        "Provider": norm["log"].astype(STR) if "log" in norm else pd.Series("", index=norm.index, dtype=STR),
        "EventID": pd.Series(pd.NA, index=norm.index, dtype="Int64"),
        # webserver (W3C)
        "cs-uri-stem": stem,
        "cs-uri-query": full,
        "cs-uri": full,
        "cs-method": method,
        "sc-status": status,
        "c-ip": client,
        "cs-user-agent": ua,
        "cs(User-Agent)": ua,
        "cs-username": norm["username"].astype(STR).fillna(""),
        "cs-host": host,
        # proxy
        "c-uri": full,
        "c-uri-stem": stem,
        "c-uri-query": query,
        "c-uri-extension": ext,
        "c-useragent": ua,
        "src_ip": client,
        "r-dns": host,
    }
    return pd.DataFrame(out, index=norm.index).reset_index(drop=True)


@register
class WebLogSigma(Analyzer):
    """Third-party Sigma webserver/proxy rules (--sigma) over IIS and Exchange HttpProxy/ECP web logs."""

    name = "weblog_sigma"
    version = "1.0"
    in_process = True  # no C engine: a few small units may run in the command's process
    consumes = ("exchange_log", "iis_log")
    rules = ()
    # the same --sigma sets as eventlog: their webserver/proxy rules run here (eventlog records the rule load)
    options_declared = (
        Option(
            "sigma",
            help="also load these Sigma rule files or folders (e.g. a SigmaHQ rules/windows checkout), unmodified",
            metavar="DIR",
            repeatable=True,
            path=True,
        ),
    )

    def rule_paths(self) -> list[Path]:
        """The web rules of the --sigma sets (files whose logsource category is webserver or proxy)."""
        paths: list[Path] = []
        for extra in self.options.get("sigma", []):
            p = Path(extra)
            for q in sorted(p.rglob("*.y*ml")) if p.is_dir() else [p]:
                try:
                    if _WEB_LOGSOURCE.search(q.read_bytes()):
                        paths.append(q)
                except OSError:
                    paths.append(q)  # unreadable: the loader reports it as skipped
        return paths

    def load_rules(self) -> Any:
        from triage.sigma import load_rules

        paths = self.rule_paths()
        if not paths:
            return None
        ruleset = load_rules(paths)
        log.info("weblog_sigma: %d webserver/proxy rules loaded, %d skipped", len(ruleset.loaded), len(ruleset.skipped))
        return ruleset

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        ruleset = self.ruleset
        if ruleset is None or not ruleset.loaded:
            raise Skip("no --sigma set with webserver or proxy rules was given")
        logtype = log_type(unit.logical_path, unit.evidence.kind)
        if logtype not in (IIS, HTTPPROXY, ECP):
            raise Skip(f"not an IIS, HttpProxy or ECP log: {unit.logical_path}")
        reader = LogReader(unit.path, logtype)
        by_id = {r.id: r for r in ruleset.loaded}
        per_rule: dict[str, int] = {}
        for df in reader.frames():
            norm = normalize(df, logtype, unit.logical_path)
            frame = sigma_frame(norm)
            matches = ruleset.evaluate(frame)
            for m in matches.itertuples(index=False):
                n = per_rule[m.rule_id] = per_rule.get(m.rule_id, 0) + 1
                if n <= MAX_PER_RULE:
                    yield self._finding(unit, by_id[m.rule_id], frame.iloc[int(m.row)], norm.iloc[int(m.row)])
        for rule_id, n in per_rule.items():
            if n > MAX_PER_RULE:
                rule = by_id[rule_id]
                yield unit.finding(
                    rule.meta,
                    title=f"{rule.title}: {n} requests in total ({n - MAX_PER_RULE} more not listed)",
                    message=f"The rule matched {n} requests of this log; the first {MAX_PER_RULE} are listed.",
                    location="summary",
                    ed2102_steps=(),  # the summary names no checklist step and cites nothing
                    references=(),
                    tags=["sigma", "weblog", "summary"],
                    attributes={"matches": n},
                )
        for w in reader.stats.warnings:
            unit.warn(w)

    def _finding(self, unit: Unit, rule: Any, row: pd.Series, norm: pd.Series) -> Finding:
        line = norm.get("_line")
        line_text = "?" if line is None or pd.isna(line) else str(int(line))
        what = f"{row['cs-method']} {row['cs-uri']} -> {row['sc-status']} from {row['c-ip']}"
        ts = norm.get("ts")
        return unit.finding(
            rule.meta,
            title=f"{rule.title}: {what[:160]}",
            message=f"{unit.logical_path} line {line_text}: {what}; user agent '{str(row['cs-user-agent'])[:120]}'. "
            f"{rule.description.strip()}",
            location=f"{PurePosixPath(unit.logical_path).name}:{line_text}",
            ts=None if ts is None or pd.isna(ts) else pd.Timestamp(ts).to_pydatetime(),
            ts_desc="Log record time",
            tags=["sigma", "weblog"],
            references=rule.meta.references[:5],
            attributes={
                "request": {k: str(v)[:2000] for k, v in row.items() if k not in ("Channel", "EventID")},
                "rule_file": Path(rule.path).name,
                "rule_sha256": rule.sha256,
                "line": line_text,
            },
        )


__all__ = ["CHANNEL", "WebLogSigma", "sigma_frame"]
