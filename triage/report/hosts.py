"""Per-host facts (inventory) and verdicts, from generic finding fields only.

Host facts are findings of the ``host_fact`` family (``TRIAGE-HOST-*`` or tag ``host_fact``); their
``attributes`` are read with a small alias table, so ``{"ComputerName": ..}``, ``{"hostname": ..}`` and
``{"fact": "hostname", "value": ..}`` all work. A build verdict is a finding of the ``build_verdict``
family. The verdict counts every other finding: at or above ``compromised_at`` (and not of low
confidence) the host is compromised, at or above ``suspicious_at`` it needs review. Without such a
finding the host gets "no indications found" only when the evidence a verdict needs was parsed (see
:mod:`triage.report.coverage`); otherwise "insufficient evidence", with the families that are missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from triage.finding import SEVERITIES
from triage.report.context import UNKNOWN_HOST, ReportContext, parse_attributes
from triage.report.coverage import analyzer_scopes, host_coverage, missing_for_verdict

VERDICT_COMPROMISED = "compromised"
VERDICT_SUSPICIOUS = "suspicious"
VERDICT_CLEAN = "no indications found"
VERDICT_INSUFFICIENT = "insufficient evidence"
VERDICTS = (VERDICT_COMPROMISED, VERDICT_SUSPICIOUS, VERDICT_INSUFFICIENT, VERDICT_CLEAN)

_FACT_ALIASES: dict[str, tuple[str, ...]] = {
    "hostname": ("hostname", "computername", "hostnameinternal", "netbiosname", "activecomputername", "nvhostname"),
    "fqdn": ("fqdn", "dnshostname", "fullyqualifieddomainname", "hostnamepublic", "publicfqdn"),
    "domain": ("domain", "dnsdomain", "primarydnsdomain", "nvdomain"),
    "internal_ips": (
        "internalips",
        "ipaddresses",
        "ipaddress",
        "ips",
        "ip",
        "ipv4",
        "ipv4addresses",
        "dhcpipaddress",
        "staticips",
        "addresses",
    ),
    "external_ips": ("externalips", "publicips", "natips"),
    "exchange_version": ("exchangeversion", "exchangeproduct", "exchangename", "productversion"),
    "exchange_build": ("exchangebuild", "exsetupversion", "exchangebuildnumber", "buildnumber"),
    "exchange_cu": ("exchangecu", "cumulativeupdate"),
    "os_version": ("osversion", "os", "osname", "productname", "windowsversion", "operatingsystem"),
    "os_build": ("osbuild", "currentbuild", "currentbuildnumber", "buildlab"),
    "verdict": ("verdict", "buildverdict", "patchstatus", "sustatus", "status"),
}
_ALIAS_TO_FACT = {alias: fact for fact, aliases in _FACT_ALIASES.items() for alias in aliases}
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")


def _norm(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def _scalar_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(_scalar_text(v) for v in value if v not in (None, ""))
    if isinstance(value, dict):
        return ""
    return str(value).strip()


@dataclass
class HostFacts:
    """What the evidence says about a server, for the inventory and the CISA rows."""

    hostname: str = ""
    fqdn: str = ""
    domain: str = ""
    internal_ips: list[str] = field(default_factory=list)
    external_ips: list[str] = field(default_factory=list)
    exchange_version: str = ""
    exchange_cu: str = ""
    exchange_build: str = ""
    os_version: str = ""
    os_build: str = ""
    build_verdict: str = ""
    build_severity: str = ""
    build_cves: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # finding ids the facts come from

    def add(self, fact: str, value: Any) -> None:
        if fact in ("internal_ips", "external_ips"):
            items = value if isinstance(value, list | tuple) else _IPV4.findall(str(value)) or [str(value)]
            target = getattr(self, fact)
            for item in items:
                text = _scalar_text(item)
                if text and text not in target:
                    target.append(text)
            return
        text = _scalar_text(value)
        if text and not getattr(self, fact if fact != "verdict" else "build_verdict"):
            setattr(self, fact if fact != "verdict" else "build_verdict", text)

    @property
    def exchange(self) -> str:
        """Exchange version as a person reads it: ``Exchange Server 2016 CU19 (15.1.2176.2)``."""
        text = self.exchange_version
        if self.exchange_cu and self.exchange_cu not in text:
            text = f"{text} {self.exchange_cu}".strip()
        if self.exchange_build and self.exchange_build not in text:
            text = f"{text} ({self.exchange_build})" if text else self.exchange_build
        return text

    @property
    def os(self) -> str:
        if self.os_version and self.os_build and self.os_build not in self.os_version:
            return f"{self.os_version} (build {self.os_build})"
        return self.os_version or (f"build {self.os_build}" if self.os_build else "")

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.update(exchange=self.exchange, os=self.os)
        return d


def read_facts(attrs: dict[str, Any], rule_id: str, facts: HostFacts) -> None:
    """Fold one host-fact finding's attributes into ``facts``."""
    name_key = next((k for k in ("fact", "name", "key") if isinstance(attrs.get(k), str)), None)
    if name_key and "value" in attrs:
        fact = _ALIAS_TO_FACT.get(_norm(attrs[name_key]))
        if fact:
            facts.add(fact, attrs["value"])
    words = set(re.split(r"[^A-Z0-9]+", rule_id.upper()))
    for key, value in attrs.items():
        norm = _norm(str(key))
        fact = _ALIAS_TO_FACT.get(norm)
        if norm in ("version", "build", "product", "cu"):
            # a bare version/build belongs to whatever the rule is about
            if words & {"EXCH", "EXCHANGE", "BUILD"}:
                fact = {"build": "exchange_build", "cu": "exchange_cu"}.get(norm, "exchange_version")
            elif words & {"OS", "WINDOWS"}:
                fact = "os_build" if norm == "build" else "os_version"
        if fact:
            facts.add(fact, value)


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
    fact_rows = np.flatnonzero(_family_mask(ctx, ["host_fact"]))
    build_rows = np.flatnonzero(_family_mask(ctx, ["build_verdict"]))
    df = ctx.findings
    host_codes, host_names = ctx.factorized("host")
    for i in fact_rows:
        facts = out.setdefault(host_names[host_codes[i]], HostFacts())
        read_facts(parse_attributes(df["attributes"].iat[i]), str(df["rule_id"].iat[i]), facts)
        facts.sources.append(str(df["finding_id"].iat[i]))
    # the worst build verdict per host wins (a vulnerable build outranks a later "patched" note)
    for i in sorted(build_rows, key=lambda j: -int(ctx.severity_codes[j])):
        facts = out.setdefault(host_names[host_codes[i]], HostFacts())
        attrs = parse_attributes(df["attributes"].iat[i])
        verdict_before = facts.build_verdict
        read_facts(attrs, str(df["rule_id"].iat[i]) + "-BUILD", facts)
        if not facts.build_severity:
            # the worst verdict's own title says it best ("... lacks the March 2021 security update")
            facts.build_verdict = verdict_before or str(df["title"].iat[i])
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
