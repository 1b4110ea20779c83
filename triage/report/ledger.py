"""The ED 21-02 compliance ledger: one row per checklist step and host, with status and evidence.

Statuses are ``done``, ``not done``, ``not applicable`` and ``needs manual attestation``. A row carries
what makes its status true: the artifacts (id, kind, sha256, size) and the findings (ids, counts,
worst severity) behind it, the analyzer runs over those artifacts, and a one-line result an analyst can
copy into a status report. How each step is satisfied is data (``signatures/ed2102.yaml``), and so is the
list of CISA's paragraphs each step answers (``cisa``).

Machine evidence and a person's attestation (``triage attest``, :mod:`triage.report.attest`) are kept apart:
``machine_status`` is what the evidence shows, ``attestation`` the attestation in force (earlier ones in
``superseded``). An attestation decides a step only where the evidence leaves it to a person ("needs manual
attestation"); where both speak and disagree, the evidence's status stands and ``conflict`` says why, for the
auditor. A host's ledger is *complete* when no step is left undecided.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from triage.finding import SEVERITIES
from triage.report.attest import Attestation, by_step, describe, read_attestations
from triage.report.context import ReportContext, parse_attributes
from triage.report.directive import Step
from triage.report.hosts import (
    VERDICT_CLEAN,
    VERDICT_COMPROMISED,
    VERDICT_INSUFFICIENT,
    HostSummary,
    indication_mask,
)

log = logging.getLogger(__name__)
OK_RUNS = ("success", "no_findings")
LEDGER_COLUMNS = [
    "host",
    "step",
    "title",
    "category",
    "status",
    "basis",
    "result",
    "note",
    "artifact_count",
    "artifact_bytes",
    "artifacts",
    "finding_count",
    "max_severity",
    "finding_ids",
    "runs",
    "cisa",
    "machine_status",
    "attestation",
    "superseded",
    "conflict",
]
UNDECIDED = "needs manual attestation"


@dataclass
class Outcome:
    """What one way of satisfying a step found."""

    status: str | None
    result: str
    artifacts: pd.DataFrame | None = None
    flags: np.ndarray | None = None


@dataclass
class LedgerEntry:
    """One step for one host."""

    host: str
    step: str
    title: str
    category: str
    status: str
    result: str = ""
    note: str = ""
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    artifact_count: int = 0
    artifact_bytes: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    artifacts_truncated: bool = False
    finding_count: int = 0
    finding_ids: list[str] = field(default_factory=list)
    finding_ids_truncated: bool = False
    max_severity: str | None = None
    runs: dict[str, int] = field(default_factory=dict)
    short: str = ""
    basis: str = ""  # which done_when mode decided the status
    indications: int = 0  # supporting findings that speak of an intrusion (see hosts.indication_mask)
    cisa: list[str] = field(default_factory=list)  # CISA's paragraphs the step answers
    machine_status: str = ""  # what the evidence alone shows (status differs only where an attestation decided)
    attestation: dict[str, Any] | None = None  # the attestation in force (Attestation.as_dict)
    superseded: list[dict[str, Any]] = field(default_factory=list)  # earlier attestations, oldest first
    conflict: str = ""  # evidence and attestation disagree: the evidence's status stands

    def attestation_line(self) -> str:
        return describe(self.attestation)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def as_row(self, max_artifacts: int = 200) -> dict[str, Any]:
        """A flat row for CSV/XLSX: lists joined, artifacts as ``id:kind:sha256``."""
        arts = [f"{a['artifact_id']}:{a['kind']}:{a.get('sha256') or '-'}" for a in self.artifacts[:max_artifacts]]
        if self.artifact_count > max_artifacts:
            where = "ledger.json" if self.artifact_count <= len(self.artifacts) else "the manifest"
            arts.append(f"... {self.artifact_count - max_artifacts} more in {where}")
        ids = list(self.finding_ids)
        if self.finding_ids_truncated:
            ids.append(f"... {self.finding_count - len(self.finding_ids)} more in findings.parquet")
        return {
            "host": self.host,
            "step": self.step,
            "title": self.title,
            "category": self.category,
            "status": self.status,
            "basis": self.basis,
            "result": self.result,
            "note": self.note,
            "artifact_count": self.artifact_count,
            "artifact_bytes": self.artifact_bytes,
            "artifacts": "; ".join(arts),
            "finding_count": self.finding_count,
            "max_severity": self.max_severity or "",
            "finding_ids": "; ".join(ids),
            "runs": "; ".join(f"{k} {v}" for k, v in sorted(self.runs.items())),
            "cisa": "; ".join(self.cisa),
            "machine_status": self.machine_status,
            "attestation": self.attestation_line(),
            "superseded": " | ".join(describe(a) for a in self.superseded),
            "conflict": self.conflict,
        }


@dataclass
class Ledger:
    """All ledger rows plus per-host tallies."""

    entries: list[LedgerEntry]
    window_start: str
    retention_until: str
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    paragraphs: dict[str, str] = field(default_factory=dict)  # CISA paragraph id -> what it asks

    def completeness(self, host: str) -> dict[str, Any]:
        """Whether every step of the host is decided (by evidence or attestation), and what is still open."""
        entries = self.for_host(host)
        open_steps = [e.step for e in entries if e.status == UNDECIDED]
        conflicts = [e.step for e in entries if e.conflict]
        attested = [e.step for e in entries if e.attestation is not None]
        decided_by_attestation = [e.step for e in entries if e.basis == "attestation"]
        complete = bool(entries) and not open_steps
        text = "complete" if complete else f"incomplete: {len(open_steps)} of {len(entries)} steps need attestation"
        if conflicts:
            text += f"; {len(conflicts)} conflict(s) between evidence and attestation"
        return {
            "complete": complete,
            "text": text,
            "steps": len(entries),
            "decided": len(entries) - len(open_steps),
            "open_steps": open_steps,
            "attested": attested,
            "decided_by_attestation": decided_by_attestation,
            "conflicts": conflicts,
        }

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([e.as_row() for e in self.entries], columns=LEDGER_COLUMNS)

    def tally(self) -> dict[str, dict[str, int]]:
        """host -> status -> number of steps."""
        out: dict[str, Counter[str]] = {}
        for e in self.entries:
            out.setdefault(e.host, Counter())[e.status] += 1
        return {h: dict(c) for h, c in out.items()}

    def for_host(self, host: str) -> list[LedgerEntry]:
        return [e for e in self.entries if e.host == host]

    def get(self, host: str, step: str) -> LedgerEntry | None:
        return next((e for e in self.entries if e.host == host and e.step == step), None)

    def as_json(self, ctx: ReportContext) -> dict[str, Any]:
        return {
            "case_id": ctx.case_id,
            "generated": ctx.generated,
            "directive": "CISA ED 21-02 with Supplemental Directions v1 and v2",
            "window_start": self.window_start,
            "retention_until": self.retention_until,
            "statuses": ["done", "not done", "not applicable", "needs manual attestation"],
            "tally": self.tally(),
            "completeness": {h: self.completeness(h) for h in dict.fromkeys(e.host for e in self.entries)},
            "cisa_paragraphs": self.paragraphs,
            "verdicts": self.verdicts,
            "entries": [e.as_dict() for e in self.entries],
        }


def _text_or_none(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def _artifact(
    artifact_id: Any, kind: Any, source_path: Any, sha256: Any, size: Any, examined: bool | None = None
) -> dict[str, Any]:
    out = {
        "artifact_id": str(artifact_id),
        "kind": str(kind),
        "source_path": _text_or_none(source_path) or "",
        "sha256": _text_or_none(sha256),
        "size": None if size is None or pd.isna(size) else int(size),
    }
    if examined is not None:
        out["examined"] = examined
    return out


class _HostView:
    """What one host's evidence, runs and findings look like, computed once for all its steps."""

    def __init__(self, ctx: ReportContext, host: str, registry_consumes: dict[str, tuple[str, ...]]) -> None:
        self.host = host
        stored = ctx.stored
        self.artifacts = stored[stored["source_host"] == host]
        m = ctx.manifest
        fails = m[(m["source_host"] == host) & (m["outcome"] == "failure")]
        self.failures = Counter(fails["kind"].astype(str))
        self.examined_ids: set[str] = set()
        self.run_status: dict[str, Counter[str]] = defaultdict(Counter)  # kind -> status -> n
        runs = ctx.runs
        kinds_here = set(self.artifacts["kind"].astype(str))
        if len(runs):
            mine = runs[runs["host"].fillna("").astype(str) == host] if "host" in runs else runs.iloc[0:0]
            by_kind = self.artifacts.groupby("kind")["artifact_id"].apply(list).to_dict()
            for r in mine.itertuples(index=False):
                ev = str(getattr(r, "evidence_id", "") or "")
                kind = ctx.kind_of.get(ev)
                status = str(getattr(r, "status", "") or "")
                if kind is not None:
                    self.run_status[kind][status] += 1
                    if status in OK_RUNS:
                        self.examined_ids.add(ev)
                    continue
                # a host-scope unit: it examined every artifact of the kinds its analyzer consumes
                for k in set(registry_consumes.get(str(r.analyzer), ())) & kinds_here:
                    self.run_status[k][status] += 1
                    if status in OK_RUNS:
                        self.examined_ids.update(by_kind.get(k, []))
        # only run records say what was parsed: a finding left by a unit that then failed proves no more
        # than its own lines
        self.coverage: dict[str, dict[str, Any]] = {}  # evidence family -> coverage (set by the builder)
        ids = self.artifacts["artifact_id"].astype(str)
        self.examined_kinds = set(self.artifacts["kind"][ids.isin(self.examined_ids).to_numpy()].astype(str))

    def of_kinds(self, kinds: tuple[str, ...]) -> pd.DataFrame:
        memo = self.__dict__.setdefault("_of_kinds", {})  # steps share kinds: one filter per distinct tuple
        if kinds not in memo:
            memo[kinds] = self.artifacts[self.artifacts["kind"].isin(kinds)]
        return memo[kinds]


def _severity_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n)


class LedgerBuilder:
    """Evaluates every step of the directive for every host of a case."""

    def __init__(
        self, ctx: ReportContext, summaries: dict[str, HostSummary], attestations: list[Attestation] | None = None
    ) -> None:
        self.ctx = ctx
        self.summaries = summaries
        self.attestations = by_step(attestations or [])
        self.directive = ctx.directive
        combos, codes = ctx.combos
        self.combos, self.codes = combos, codes
        self.indications = indication_mask(ctx)
        self.coverage_rows = self._family_rows("coverage")
        try:
            from triage.registry import declarations

            reg = declarations()  # what analyzers declare, without importing them
            self.consumes = {name: tuple(cls.consumes) for name, cls in reg.items()}
        except Exception as exc:  # the registry is optional for a report: host-scope runs then count less
            log.warning("analyzer registry unavailable: %s", exc)
            self.consumes = {}

    def _family_rows(self, name: str) -> np.ndarray:
        if not len(self.codes):
            return np.zeros(0, dtype=bool)
        return self.directive.family(name).mask(self.combos).to_numpy()[self.codes]

    def build(self) -> Ledger:
        entries: list[LedgerEntry] = []
        host_codes = {
            h: np.flatnonzero(self.combos["host"].to_numpy() == h) if len(self.combos) else np.zeros(0, dtype=int)
            for h in self.ctx.servers
        }
        step_masks = {
            s.id: s.findings.mask(self.combos).to_numpy() if len(self.combos) else np.zeros(0, dtype=bool)
            for s in self.directive.steps
        }
        created = pd.Timestamp(self.ctx.case_info.get("created") or self.ctx.generated)
        retention = (created + timedelta(days=self.directive.retention_days)).date().isoformat()
        for host in self.ctx.servers:
            view = _HostView(self.ctx, host, self.consumes)
            on_host_combo = np.zeros(len(self.combos), dtype=bool)
            on_host_combo[host_codes[host]] = True
            summary = self.summaries.get(host)
            view.coverage = {c["family"]: c for c in summary.coverage} if summary is not None else {}
            for step in self.directive.steps:
                combo_mask = step_masks[step.id] & on_host_combo
                rows = np.flatnonzero(combo_mask[self.codes]) if len(self.codes) else np.zeros(0, dtype=int)
                entry = self._entry(step, host, view, rows, retention)
                entry.cisa = list(step.cisa)
                self._attest(entry, self.attestations.get((host, step.id), []))
                entries.append(entry)
        return Ledger(
            entries,
            self.directive.window_start.isoformat(),
            retention,
            paragraphs=dict(getattr(self.directive, "cisa_paragraphs", {}) or {}),
        )

    @staticmethod
    def _attest(e: LedgerEntry, atts: list[Attestation]) -> None:
        """Set the attestation in force beside the evidence's status; never let one overwrite the other."""
        e.machine_status = e.status
        if not atts:
            return
        current = atts[-1]
        e.attestation = current.as_dict()
        e.superseded = [a.as_dict() for a in atts[:-1]]
        if e.status == UNDECIDED:
            e.status, e.basis = current.status, "attestation"
        elif e.status != current.status:
            e.conflict = (
                f"the evidence shows {e.status!r} but {current.by} attested {current.status!r} on "
                f"{current.at[:10]}; the evidence's status stands"
            )

    # -- one step ---------------------------------------------------------------------------------
    def _entry(self, step: Step, host: str, view: _HostView, rows: np.ndarray, retention: str) -> LedgerEntry:
        e = LedgerEntry(
            host=host, step=step.id, title=step.title, category=step.category, status=step.otherwise, short=step.short
        )
        notes = [step.note] if step.note else []
        self._attach_findings(e, rows)
        arts = view.of_kinds(step.kinds) if step.kinds else view.artifacts.iloc[0:0]
        for k in step.kinds:
            for status, n in view.run_status.get(k, {}).items():
                e.runs[status] = e.runs.get(status, 0) + n
        if e.runs.get("error"):
            notes.append(f"{e.runs['error']} analyzer run(s) failed on this evidence (see Analyzer runs)")
        failed = sum(view.failures.get(k, 0) for k in step.kinds)
        if failed:
            notes.append(f"{failed} collection attempt(s) failed")
        if step.done_when == ("manual",):
            e.status, e.basis = "needs manual attestation", "manual"
            e.result = self._prefill(step, host, retention)
            if len(rows):
                e.result = (e.result + "; " if e.result else "") + f"{len(rows)} supporting findings"
        elif step.not_applicable_without and not len(view.of_kinds(step.not_applicable_without)):
            e.status = "not applicable"
            e.result = f"no {', '.join(step.not_applicable_without)} in the case for this host"
        else:
            first: Outcome | None = None
            for mode in step.done_when:
                out = getattr(self, f"_when_{mode}")(step, view, arts, rows)
                first = first or out
                if out.status is not None:
                    e.status, e.basis = out.status, mode
                    self._apply(e, out)
                    break
            else:
                assert first is not None
                self._apply(e, first)
        e.note = " ".join(notes)
        return e

    def _apply(self, e: LedgerEntry, out: Outcome) -> None:
        e.result = out.result
        if out.artifacts is not None:
            self._set_artifacts(e, out.artifacts, out.flags)

    # each _when_* returns a final status, or None when its condition does not hold
    def _when_artifacts(self, step: Step, view: _HostView, arts: pd.DataFrame, rows: np.ndarray) -> Outcome:
        missing = self._missing_names(step, arts)
        if len(arts) and not missing:
            return Outcome("done", self._collected_text(arts), arts)
        if len(arts):
            return Outcome(None, self._collected_text(arts) + f"; missing: {', '.join(missing)}", arts)
        return Outcome(None, f"no {', '.join(step.kinds)} collected", arts)

    def _when_examined(self, step: Step, view: _HostView, arts: pd.DataFrame, rows: np.ndarray) -> Outcome:
        collected = set(arts["kind"].astype(str))
        flags = arts["artifact_id"].astype(str).isin(view.examined_ids).to_numpy()
        if not collected:
            return Outcome(None, f"no {', '.join(step.kinds)} collected", arts, flags)
        head = f"examined {int(flags.sum())} of {len(arts)} artifacts ({', '.join(sorted(collected))})"
        not_examined = sorted(collected - view.examined_kinds)
        if not_examined:
            counts = Counter(arts["kind"][~flags].astype(str))
            return Outcome(
                None, head + "; not examined: " + ", ".join(f"{k} ({counts[k]})" for k in not_examined), arts, flags
            )
        unmet = self._unmet_needs(step, view)
        if unmet:
            return Outcome(None, head + "; not parsed: " + "; ".join(unmet), arts, flags)
        return Outcome("done", head + "; " + self._indications_text(rows), arts, flags)

    def _unmet_needs(self, step: Step, view: _HostView) -> list[str]:
        """The step's evidence families (or groups of alternatives) of which nothing was parsed."""
        out = []
        for group in step.needs:
            covs = [view.coverage.get(f) for f in group]
            if any(c is not None and c["status"] in ("examined", "partly examined") for c in covs):
                continue
            titles = [
                (c["title"] + f" ({c['status']})") if c is not None else self.directive.evidence_family(f).title
                for f, c in zip(group, covs, strict=True)
            ]
            out.append(" or ".join(titles))
        return out

    def _when_findings(self, step: Step, view: _HostView, arts: pd.DataFrame, rows: np.ndarray) -> Outcome:
        if not len(rows):
            return Outcome(None, "no supporting findings")
        worst = int(self.ctx.severity_codes[rows].max())
        failing = step.fail_at is not None and worst >= SEVERITIES.index(step.fail_at)
        return Outcome("not done" if failing else "done", self._findings_text(rows), self._finding_artifacts(rows))

    def _when_coverage(self, step: Step, view: _HostView, arts: pd.DataFrame, rows: np.ndarray) -> Outcome:
        if not len(arts):
            return Outcome(None, f"no {', '.join(step.kinds)} collected", arts)
        df = self.ctx.findings
        window = self.directive.window_start
        ids = set(arts["artifact_id"].astype(str))
        cov_rows = np.flatnonzero(self.coverage_rows) if len(self.coverage_rows) else np.zeros(0, dtype=int)
        firsts: dict[str, pd.Timestamp | None] = {}
        ev_codes, ev_names = self.ctx.factorized("evidence_id")
        for i in cov_rows:
            ev = str(ev_names[ev_codes[i]]) if ev_codes[i] >= 0 else ""
            if ev not in ids:
                continue
            attrs = parse_attributes(df["attributes"].iat[i])
            first = attrs.get("first") or attrs.get("earliest")
            ts = pd.to_datetime(first, utc=True, errors="coerce") if isinstance(first, str) and first else pd.NaT
            prev = firsts.get(ev)
            if pd.isna(ts):
                firsts.setdefault(ev, None)
            elif prev is None or ts < prev:
                firsts[ev] = ts
        known = {k: v for k, v in firsts.items() if v is not None}
        if not known:
            return Outcome(
                "needs manual attestation",
                f"no coverage data for {len(arts)} collected logs; check their first entries by hand",
                arts,
            )
        reaching = [k for k, v in known.items() if v <= window]
        earliest = min(known.values())
        names = dict(zip(arts["artifact_id"].astype(str), arts["source_path"].astype(str), strict=False))
        later = [
            names.get(k, k).replace("\\", "/").rsplit("/", 1)[-1] + f" ({v.date().isoformat()})"
            for k, v in sorted(known.items(), key=lambda kv: kv[1], reverse=True)
            if v > window
        ]
        result = (
            f"{len(reaching)} of {len(known)} logs reach back to {window.date().isoformat()}; "
            f"earliest entry {earliest.isoformat()}"
        )
        if later:
            result += "; starting later: " + ", ".join(later[:8]) + (" ..." if len(later) > 8 else "")
        if len(firsts) > len(known):
            result += f"; {len(firsts) - len(known)} logs without dated entries"
        if len(ids) > len(firsts):
            result += f"; {len(ids) - len(firsts)} logs without coverage data"
        return Outcome("done" if len(reaching) == len(known) else "not done", result, arts)

    def _attach_findings(self, e: LedgerEntry, rows: np.ndarray) -> None:
        e.finding_count = len(rows)
        cap = self.ctx.options.ledger_max_ids
        e.finding_ids = [str(x) for x in self.ctx.take("finding_id", rows[:cap])]
        e.finding_ids_truncated = len(rows) > cap
        if len(rows):
            e.indications = int(self.indications[rows].sum())
            e.max_severity = self.ctx.severity_name(int(self.ctx.severity_codes[rows].max()))

    def _set_artifacts(self, e: LedgerEntry, arts: pd.DataFrame, flags: np.ndarray | None = None) -> None:
        e.artifact_count = len(arts)
        if not len(arts):
            return
        e.artifact_bytes = int(arts["size"].fillna(0).sum())
        e.by_kind = dict(sorted(Counter(str(k) for k in arts["kind"].tolist() if _text_or_none(k)).items()))
        cap = self.ctx.options.ledger_max_artifacts
        e.artifacts_truncated = len(arts) > cap
        # columns as lists, zipped: itertuples builds a namedtuple class per call (~1 ms on a 37-step ledger)
        head = arts.iloc[:cap]
        cols = [head[c].tolist() for c in ("artifact_id", "kind", "source_path", "sha256", "size")]
        e.artifacts = [
            _artifact(aid, kind, path, sha, size, examined=None if flags is None else bool(flags[i]))
            for i, (aid, kind, path, sha, size) in enumerate(zip(*cols, strict=True))
        ]

    def _finding_artifacts(self, rows: np.ndarray) -> pd.DataFrame:
        ids = set(self.ctx.distinct("evidence_id", rows))
        m = self.ctx.manifest
        return m[m["artifact_id"].isin(ids)]

    @staticmethod
    def _missing_names(step: Step, arts: pd.DataFrame) -> list[str]:
        if not step.require_names:
            return []
        names = {str(p).replace("\\", "/").rsplit("/", 1)[-1].lower() for p in arts["source_path"].dropna()}
        return [n for n in step.require_names if n.lower() not in names]

    @staticmethod
    def _collected_text(arts: pd.DataFrame) -> str:
        by_kind = Counter(arts["kind"].astype(str))
        size = int(arts["size"].fillna(0).sum())
        return (
            f"{len(arts)} artifacts, {size:,} bytes (" + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())) + ")"
        )

    def _counts(self, rows: np.ndarray) -> dict[str, int]:
        counts = {s: 0 for s in reversed(SEVERITIES)}
        if len(rows):
            vals, n = np.unique(self.ctx.severity_codes[rows], return_counts=True)
            for v, c in zip(vals, n, strict=True):
                if v >= 0:
                    counts[SEVERITIES[v]] = int(c)
        return counts

    def _cves(self, rows: np.ndarray) -> list[str]:
        vals = self.ctx.distinct("cve", rows)
        return sorted({c.strip() for v in vals if isinstance(v, str) for c in v.split(",") if c.strip()})

    def _indications_text(self, rows: np.ndarray) -> str:
        ind = rows[self.indications[rows]] if len(rows) else rows
        if not len(ind):
            return "no indications found"
        cves = self._cves(ind)
        text = f"indications found: {len(ind)} findings ({_severity_text(self._counts(ind))})"
        return text + (f"; {', '.join(cves)}" if cves else "")

    def _findings_text(self, rows: np.ndarray) -> str:
        titles = list(dict.fromkeys(self.ctx.take("title", rows[:3])))
        text = f"{len(rows)} findings ({_severity_text(self._counts(rows))})"
        return text + ": " + "; ".join(str(t) for t in titles if isinstance(t, str))

    def _prefill(self, step: Step, host: str, retention: str) -> str:
        s = self.summaries.get(host)
        if step.prefill == "verdict" and s is not None:
            if s.verdict == VERDICT_COMPROMISED:
                return "triage suggests: indications of compromise found" + (
                    f" ({', '.join(s.cves)})" if s.cves else ""
                )
            if s.verdict == VERDICT_CLEAN:
                return "triage suggests: no indications of compromise found in the examined evidence"
            if s.verdict == VERDICT_INSUFFICIENT:
                return "triage cannot decide: insufficient evidence (" + "; ".join(s.missing) + ")"
            return f"triage suggests: {s.indications} findings need review"
        if step.prefill == "retention":
            return f"keep the case folder (manifest and custody log hashed) until at least {retention}"
        if step.prefill == "cisa":
            return "pre-filled rows: cisa_template.csv / cisa_template.xlsx"
        return ""


def build_ledger(
    ctx: ReportContext, summaries: dict[str, HostSummary], attestations: list[Attestation] | None = None
) -> Ledger:
    """Evaluate the directive for every host of the case; ``attestations`` default to those in the case's
    custody log (none for a context without a case folder)."""
    if attestations is None:
        attestations = read_attestations(ctx.case_path) if ctx.case_path else []
    ledger = LedgerBuilder(ctx, summaries, attestations).build()
    for host, s in summaries.items():
        s.caveats = caveats(ledger, host)
        ledger.verdicts[host] = {
            "verdict": s.verdict,
            "cves": s.cves,
            "max_severity": s.max_severity,
            "missing": s.missing if s.verdict == VERDICT_INSUFFICIENT else [],
            "coverage": {c["family"]: c["status"] for c in s.coverage},
        }
    return ledger


CAVEAT_STEPS = ("4.1", "5.1", "8", "9", "10", "22")


def caveats(ledger: Ledger, host: str) -> list[str]:
    """What weakens a host's verdict: examination and coverage steps that are not done."""
    out = []
    for e in ledger.for_host(host):
        if e.step in CAVEAT_STEPS and e.status in ("not done", "needs manual attestation"):
            out.append(f"step {e.step} {e.status}: {e.result}")
    return out
