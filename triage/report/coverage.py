"""Which artifact families of each host were examined, partly examined, not examined or absent.

A verdict is only as good as the evidence read for it. Per host and per evidence family of
``signatures/ed2102.yaml`` (event logs, hives, IIS logs, Exchange logs, memory ...), this counts the
collected artifacts and the ones an analyzer parsed, from the run records alone:

* an artifact is parsed when a unit over it ended ``success`` or ``no_findings`` (``skipped`` and
  ``error`` do not count), from an analyzer that parses (byte scanners such as YARA are listed in
  ``evidence.not_parsers``) and that left no finding saying it could not parse it
  (``evidence.not_parsed_rules``: a memory image Volatility could not analyse);
* kinds that no per-artifact analyzer reads (the registry analyzers take all hives of a host at once)
  count as parsed by a host-scope run over them that ended ``success``/``no_findings``.

A family is ``examined`` when all its artifacts were parsed without warnings, ``partly examined`` when
some were not parsed, runs recorded warnings or collection attempts failed, ``not examined`` when
artifacts were collected and none was parsed, ``absent`` when none was collected.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from triage.report.context import ReportContext
from triage.report.directive import EvidenceFamily

log = logging.getLogger(__name__)

EXAMINED = "examined"
PARTLY = "partly examined"
NOT_EXAMINED = "not examined"
ABSENT = "absent"
COVERAGE_STATUSES = (EXAMINED, PARTLY, NOT_EXAMINED, ABSENT)
OK_RUNS = ("success", "no_findings")
MAX_DETAILS = 8


@dataclass
class FamilyCoverage:
    """One evidence family on one host."""

    family: str
    title: str
    kinds: tuple[str, ...]
    required: bool
    status: str = ABSENT
    artifacts: int = 0
    parsed: int = 0
    run_errors: int = 0
    run_skipped: int = 0
    runs_with_warnings: int = 0
    collection_failures: int = 0
    details: list[str] = field(default_factory=list)  # why it is partial: run errors and warnings, first few

    @property
    def read(self) -> bool:
        """At least part of the family was parsed."""
        return self.status in (EXAMINED, PARTLY)

    @property
    def summary(self) -> str:
        """One line: ``event logs: partly examined (3 of 4 parsed, 1 run error)``."""
        if self.status == ABSENT:
            extra = f", {self.collection_failures} collection attempt(s) failed" if self.collection_failures else ""
            return f"{self.title}: absent (none collected{extra})"
        parts = [f"{self.parsed} of {self.artifacts} parsed"]
        if self.run_errors:
            parts.append(f"{self.run_errors} run error(s)")
        if self.run_skipped:
            parts.append(f"{self.run_skipped} skipped")
        if self.runs_with_warnings:
            parts.append(f"{self.runs_with_warnings} run(s) with warnings")
        if self.collection_failures:
            parts.append(f"{self.collection_failures} collection attempt(s) failed")
        return f"{self.title}: {self.status} ({', '.join(parts)})"

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["kinds"] = list(self.kinds)
        d["summary"] = self.summary
        return d


def analyzer_scopes() -> dict[str, tuple[tuple[str, ...], str]]:
    """``analyzer -> (consumes, scope)`` from the registry; empty when it cannot be loaded."""
    try:
        from triage.registry import declarations

        reg = declarations()  # what analyzers declare, without importing them
        return {name: (tuple(cls.consumes), str(getattr(cls, "scope", "artifact"))) for name, cls in reg.items()}
    except Exception as exc:  # the registry is optional for a report: host-scope runs then count for every kind
        log.warning("analyzer registry unavailable: %s", exc)
        return {}


def _warnings(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    if hasattr(value, "tolist"):
        return [str(v) for v in value.tolist()]
    return []


def host_coverage(
    ctx: ReportContext, host: str, scopes: dict[str, tuple[tuple[str, ...], str]] | None = None
) -> list[FamilyCoverage]:
    """Coverage of every evidence family of the directive on ``host``."""
    scopes = analyzer_scopes() if scopes is None else scopes
    not_parsers = set(ctx.directive.not_parsers)
    stored = ctx.stored
    arts = stored[stored["source_host"] == host]
    kind_by_id = dict(zip(arts["artifact_id"].astype(str), arts["kind"].astype(str), strict=True))
    m = ctx.manifest
    failures = Counter(m.loc[(m["source_host"] == host) & (m["outcome"] == "failure"), "kind"].astype(str))
    # kinds some per-artifact parser reads: host-scope runs do not vouch for their artifacts
    per_artifact = {k for name, (kinds, scope) in scopes.items() if scope != "host" and name not in not_parsers
                    for k in kinds}  # fmt: skip
    parsed: set[str] = set()
    cannot_parse = _unparsed(ctx, host)
    bad: dict[str, Counter[str]] = {}  # kind -> error/skipped/warnings counts
    details: dict[str, list[str]] = {}
    runs = ctx.runs
    if len(runs) and "host" in runs:
        mine = runs[runs["host"].fillna("").astype(str) == host]
        has_warn = "warnings" in mine
        for r in mine.to_dict("records"):
            name = str(r.get("analyzer", ""))
            if name in not_parsers:
                continue
            status = str(r.get("status", ""))
            ev = str(r.get("evidence_id", "") or "")
            warns = _warnings(r.get("warnings")) if has_warn else []
            if ev in kind_by_id:
                kinds = {kind_by_id[ev]}
                targets = [ev] if status in OK_RUNS else []
            else:  # a host-scope unit over every artifact of the kinds its analyzer consumes
                consumed = set(scopes.get(name, ((), "host"))[0]) if scopes else set(kind_by_id.values())
                kinds = {k for k in consumed if k not in per_artifact} if scopes else consumed
                targets = [a for a, k in kind_by_id.items() if k in kinds] if status in OK_RUNS else []
            unparsed = [t for t in targets if t in cannot_parse]
            parsed.update(t for t in targets if t not in cannot_parse)
            for t in unparsed:
                details.setdefault(kind_by_id[t], []).append(f"{name}: {cannot_parse[t]}")
            for k in kinds:
                c = bad.setdefault(k, Counter())
                note = details.setdefault(k, [])
                if status == "error":
                    c["error"] += 1
                    note.append(f"{name} failed: {str(r.get('message', ''))[:200]}")
                elif status == "skipped":
                    c["skipped"] += 1
                    note.append(f"{name} skipped: {str(r.get('message', ''))[:200]}")
                if warns:
                    c["warned"] += 1
                    note.extend(f"{name}: {w[:200]}" for w in warns[:2])
    out = []
    for fam in ctx.directive.evidence_families:
        out.append(_family(fam, kind_by_id, parsed, bad, details, failures))
    return out


def _unparsed(ctx: ReportContext, host: str) -> dict[str, str]:
    """``evidence_id -> title`` of the findings saying their unit could not parse that artifact."""
    rules = set(getattr(ctx.directive, "not_parsed_rules", ()) or ())
    f = ctx.findings
    if not rules or not len(f) or "rule_id" not in f:
        return {}
    # the rule test first, over the column; the host's text only on the few rows it leaves
    hit = f.loc[f["rule_id"].isin(rules).to_numpy(dtype=bool, na_value=False), ["host", "evidence_id", "title"]]
    hit = hit[(hit["host"].fillna("").astype(str) == host).to_numpy(dtype=bool)]
    return dict(zip(hit["evidence_id"].astype(str), hit["title"].astype(str), strict=True))


def _family(
    fam: EvidenceFamily,
    kind_by_id: dict[str, str],
    parsed: set[str],
    bad: dict[str, Counter[str]],
    details: dict[str, list[str]],
    failures: Counter[str],
) -> FamilyCoverage:
    cov = FamilyCoverage(fam.id, fam.title, fam.kinds, fam.required)
    ids = [a for a, k in kind_by_id.items() if k in fam.kinds]
    cov.artifacts = len(ids)
    cov.parsed = sum(a in parsed for a in ids)
    for k in fam.kinds:
        c = bad.get(k, Counter())
        cov.run_errors += c["error"]
        cov.run_skipped += c["skipped"]
        cov.runs_with_warnings += c["warned"]
        cov.collection_failures += failures.get(k, 0)
        cov.details.extend(details.get(k, [])[: MAX_DETAILS - len(cov.details)])
    if not ids:
        cov.status = ABSENT
    elif not cov.parsed:
        cov.status = NOT_EXAMINED
    elif cov.parsed < len(ids) or cov.run_errors or cov.runs_with_warnings or cov.collection_failures:
        cov.status = PARTLY
    else:
        cov.status = EXAMINED
    return cov


def missing_for_verdict(coverage: list[FamilyCoverage]) -> list[FamilyCoverage]:
    """Families a clean verdict lacks: required ones not read at all, and collected ones none of which was read."""
    return [c for c in coverage if not c.read and (c.required or c.artifacts)]


def coverage_frame(coverage: dict[str, list[FamilyCoverage]]) -> pd.DataFrame:
    """One row per host and family (for the workbook and tests)."""
    rows = [{"host": h, **c.as_dict()} for h, covs in coverage.items() for c in covs]
    cols = ["host", "family", "title", "status", "artifacts", "parsed", "run_errors", "run_skipped",
            "runs_with_warnings", "collection_failures", "required", "summary"]  # fmt: skip
    df = pd.DataFrame(rows, columns=[*cols, "kinds", "details"])
    return df[cols]
