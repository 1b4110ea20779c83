"""Per-host facts (inventory) and verdicts, from generic finding fields only.

Host facts are read from the findings their analyzers declare (``Analyzer.host_facts``, see
:mod:`triage.hostfacts`): for each rule, which attribute holds which fact; nothing is guessed from attribute
names. A build verdict is a finding of the ``build_verdict`` family. The verdict counts every other finding:
at or above ``compromised_at`` (and not of low confidence) the host is compromised, at or above
``suspicious_at`` it needs review. Without such a finding the host gets "no indications found" only when the
evidence a verdict needs was parsed (see :mod:`triage.report.coverage`); otherwise "insufficient evidence",
with the families that are missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from triage.finding import SEVERITIES
from triage.hostfacts import FactSource, HostFacts
from triage.report.context import UNKNOWN_HOST, ReportContext, parse_attributes
from triage.report.coverage import analyzer_scopes, host_coverage, missing_for_verdict

VERDICT_COMPROMISED = "compromised"
VERDICT_SUSPICIOUS = "suspicious"
VERDICT_CLEAN = "no indications found"
VERDICT_INSUFFICIENT = "insufficient evidence"
VERDICTS = (VERDICT_COMPROMISED, VERDICT_SUSPICIOUS, VERDICT_INSUFFICIENT, VERDICT_CLEAN)

log = logging.getLogger(__name__)


def declared_fact_sources() -> dict[str, tuple[FactSource, ...]]:
    """``analyzer -> its declared host-fact sources``, from the registry; empty when it cannot be loaded."""
    try:
        from triage.registry import declarations

        reg = declarations()  # what analyzers declare, without importing them
        return {name: tuple(cls.host_facts) for name, cls in reg.items() if cls.host_facts}
    except Exception as exc:  # the registry is optional for a report: the inventory is then left empty
        log.warning("analyzer registry unavailable, host facts not read: %s", exc)
        return {}


@dataclass
class HostSummary:
    """The verdict for one host and what it rests on."""

    host: str
    verdict: str
    max_severity: str | None
    counts: dict[str, int]
    findings_total: int
    indications: int
    cves: list[str]
    evidence: list[dict[str, Any]]
    top_findings: list[dict[str, Any]]
    facts: HostFacts
    caveats: list[str] = field(default_factory=list)
    coverage: list[dict[str, Any]] = field(default_factory=list)  # per evidence family (coverage.FamilyCoverage)
    missing: list[str] = field(default_factory=list)  # families a clean verdict lacks, one line each

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["facts"] = self.facts.as_dict()
        return d

    @property
    def verdict_line(self) -> str:
        """The verdict as one line, with the CVEs or what is missing."""
        if self.verdict == VERDICT_INSUFFICIENT:
            return f"{self.verdict}: not examined: " + "; ".join(self.missing)
        return self.verdict + (f" ({', '.join(self.cves)})" if self.cves else "")


def _family_mask(ctx: ReportContext, names: tuple[str, ...] | list[str]) -> np.ndarray:
    combos, codes = ctx.combos
    m = pd.Series(False, index=combos.index)
    for name in names:
        m |= ctx.directive.family(name).mask(combos)
    return m.to_numpy()[codes] if len(codes) else np.zeros(0, dtype=bool)


def indication_mask(ctx: ReportContext) -> np.ndarray:
    """Findings that speak of an intrusion: outside the ignored families and at least ``suspicious_at``."""
    if not len(ctx.findings):
        return np.zeros(0, dtype=bool)
    ignored = _family_mask(ctx, ctx.directive.ignore_families)
    return ~ignored & (ctx.severity_codes >= SEVERITIES.index(ctx.directive.suspicious_at))


def host_facts(ctx: ReportContext) -> dict[str, HostFacts]:
    """Facts per host from host-fact and build-verdict findings (info findings, so few)."""
    out = {h: HostFacts() for h in ctx.hosts}
    if not len(ctx.findings):
        return out
    declared = declared_fact_sources()
    fact_rows = np.flatnonzero(_family_mask(ctx, ["host_fact"]))
    build_rows = np.flatnonzero(_family_mask(ctx, ["build_verdict"]))
    df = ctx.findings
    host_codes, host_names = ctx.factorized("host")
    for i in fact_rows:
        facts = out.setdefault(host_names[host_codes[i]], HostFacts())
        sources = declared.get(str(df["analyzer"].iat[i]), ())
        facts.read(sources, str(df["rule_id"].iat[i]), parse_attributes(df["attributes"].iat[i]))
        facts.sources.append(str(df["finding_id"].iat[i]))
    # the worst build verdict per host wins (a vulnerable build outranks a later "patched" note)
    for i in sorted(build_rows, key=lambda j: -int(ctx.severity_codes[j])):
        facts = out.setdefault(host_names[host_codes[i]], HostFacts())
        sources = declared.get(str(df["analyzer"].iat[i]), ())
        facts.read(sources, str(df["rule_id"].iat[i]), parse_attributes(df["attributes"].iat[i]))
        if not facts.build_severity:
            # the worst verdict's own title says it best ("... lacks the March 2021 security update")
            facts.build_verdict = facts.build_verdict or str(df["title"].iat[i])
            facts.build_severity = str(df["severity"].iat[i])
            facts.build_cves = [c for c in str(df["cve"].iat[i] or "").split(",") if c]
        facts.sources.append(str(df["finding_id"].iat[i]))
    for host, facts in out.items():
        if not facts.hostname and host != UNKNOWN_HOST:
            facts.hostname = host
    return out


def host_summaries(ctx: ReportContext, top: int = 8) -> dict[str, HostSummary]:
    """Verdict per host, with the findings and evidence it rests on."""
    facts = host_facts(ctx)
    df = ctx.findings
    sev = ctx.severity_codes
    ind = indication_mask(ctx)
    host_codes = ctx.factorized("host")[0] if len(df) else np.zeros(0, dtype=np.int64)
    comp_code = SEVERITIES.index(ctx.directive.compromised_at)
    low_conf = (df["confidence"].fillna("").astype(str).str.lower() == "low").to_numpy() if len(df) else ind
    out: dict[str, HostSummary] = {}
    scopes = analyzer_scopes()
    for host in ctx.hosts:
        on_host = host_codes == ctx.code_of("host", host)
        rows = np.flatnonzero(on_host & ind)
        counts = {s: 0 for s in reversed(SEVERITIES)}
        if len(rows):
            vals, n = np.unique(sev[rows], return_counts=True)
            for v, c in zip(vals, n, strict=True):
                if v >= 0:
                    counts[SEVERITIES[v]] = int(c)
        strong = rows[(sev[rows] >= comp_code) & ~low_conf[rows]] if len(rows) else rows
        if len(strong):
            verdict = VERDICT_COMPROMISED
        elif len(rows):
            verdict = VERDICT_SUSPICIOUS
        else:
            verdict = VERDICT_CLEAN
        coverage = host_coverage(ctx, host, scopes) if host != UNKNOWN_HOST else []
        missing = [c.summary for c in missing_for_verdict(coverage)]
        if verdict == VERDICT_CLEAN and host != UNKNOWN_HOST and (missing or not coverage):
            # a clean verdict is a claim about evidence read: without it, say what is missing
            verdict = VERDICT_INSUFFICIENT
            missing = missing or ["no evidence families are declared for a verdict"]
        max_code = int(sev[rows].max()) if len(rows) else -1
        cves: list[str] = []
        evidence: list[dict[str, Any]] = []
        tops: list[dict[str, Any]] = []
        if len(rows):
            sub = df.iloc[rows]
            for value in sub["cve"].dropna().unique():
                for c in str(value).split(","):
                    if c.strip() and c.strip() not in cves:
                        cves.append(c.strip())
            cves.sort()
            ev = (
                sub.assign(_sev=sev[rows])
                .groupby(["evidence_id", "evidence_path", "evidence_sha256"], dropna=False, sort=False)
                .agg(findings=("finding_id", "size"), max_sev=("_sev", "max"))
                .reset_index()
                .sort_values(["max_sev", "findings"], ascending=False)
                .head(top)
            )
            for r in ev.itertuples(index=False):
                evidence.append(
                    {
                        "evidence_id": _s(r.evidence_id),
                        "evidence_path": _s(r.evidence_path),
                        "sha256": _s(r.evidence_sha256),
                        "kind": ctx.kind_of.get(_s(r.evidence_id), ""),
                        "findings": int(r.findings),
                        "max_severity": ctx.severity_name(int(r.max_sev)),
                    }
                )
            # rows are already in report order (severity desc, time): the first ones are the top
            for i in rows[:top]:
                tops.append(
                    {
                        "finding_id": str(df["finding_id"].iat[i]),
                        "severity": str(df["severity"].iat[i]),
                        "title": _s(df["title"].iat[i]),
                        "rule_id": _s(df["rule_id"].iat[i]),
                        "cve": _s(df["cve"].iat[i]),
                    }
                )
        out[host] = HostSummary(
            host=host,
            verdict=verdict,
            max_severity=ctx.severity_name(max_code),
            counts=counts,
            findings_total=int(on_host.sum()),
            indications=len(rows),
            cves=cves,
            evidence=evidence,
            top_findings=tops,
            facts=facts.get(host, HostFacts(hostname=host)),
            coverage=[c.as_dict() for c in coverage],
            missing=missing,
        )
    return out


def _s(value: Any) -> str:
    return "" if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)) else str(value)
