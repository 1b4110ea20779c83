"""ED 21-02 as data: the checklist steps of ``signatures/ed2102.yaml`` and the finding families they use.

The file is validated on load (unknown keys, bad vocabulary and duplicate ids are errors naming the
step), so a typo cannot silently turn a step into a manual one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from triage.finding import SEVERITIES
from triage.formats import yamldoc

DIRECTIVE_FILE = "ed2102.yaml"
STATUSES = ("done", "not done", "not applicable", "needs manual attestation")
CATEGORIES = ("collected", "examined", "manual")
DONE_WHEN = ("artifacts", "examined", "findings", "coverage", "manual")
PREFILLS = ("", "verdict", "retention", "cisa")
STEP_KEYS = {
    "id",
    "title",
    "short",
    "category",
    "kinds",
    "require_names",
    "findings",
    "done_when",
    "otherwise",
    "fail_at",
    "not_applicable_without",
    "prefill",
    "note",
    "needs",
    "cisa",
}
FAMILY_KEYS = {"id", "title", "kinds", "required"}
SELECTOR_KEYS = {"steps", "rule_prefixes", "tags", "families"}


@dataclass(frozen=True)
class Selector:
    """Which findings belong to a step or family: by checklist step, rule-id prefix or tag."""

    steps: tuple[str, ...] = ()
    rule_prefixes: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def mask(self, df: pd.DataFrame, step_sets: pd.Series | None = None) -> pd.Series:
        """Boolean mask over a findings frame (``step_sets``: each row's ed2102 steps as a frozenset).

        Callers pass the distinct (host, rule, tags, steps, analyzer) rows (``ReportContext.combos``: few), and
        ask for dozens of selectors over the same frame: its columns are read once (:func:`_parsed`) and each
        mask is one plain-Python pass, not a handful of pandas calls (~0.1-1 ms each whatever the size).
        """
        import numpy as np

        n = len(df)
        hit = np.zeros(n, dtype=bool)
        if n and self.rule_prefixes:
            rules = _parsed(df, "rule_id", texts=True)
            prefixes = self.rule_prefixes
            hit |= np.fromiter((r.startswith(prefixes) for r in rules), dtype=bool, count=n)
        if n and self.tags:
            wanted = set(self.tags)
            hit |= np.fromiter((not wanted.isdisjoint(t) for t in _parsed(df, "tags")), dtype=bool, count=n)
        if n and self.steps:
            sets = step_sets.tolist() if step_sets is not None else _parsed(df, "ed2102_steps")
            wanted_steps = set(self.steps)
            hit |= np.fromiter((not wanted_steps.isdisjoint(t) for t in sets), dtype=bool, count=n)
        return pd.Series(hit, index=df.index)

    def __or__(self, other: Selector) -> Selector:
        return Selector(
            steps=tuple(dict.fromkeys(self.steps + other.steps)),
            rule_prefixes=tuple(dict.fromkeys(self.rule_prefixes + other.rule_prefixes)),
            tags=tuple(dict.fromkeys(self.tags + other.tags)),
        )


def _split_sets(col: pd.Series) -> pd.Series:
    """Comma-separated text -> frozenset per row; computed on the distinct values only (they repeat a lot)."""
    col = col.fillna("").astype(str)
    uniq = {v: frozenset(p.strip() for p in v.split(",") if p.strip()) for v in col.unique()}
    return col.map(uniq)


# the columns of the last frames masks were asked over: (frame, column, texts) -> values. Held with the frame
# itself (a small one: ReportContext.combos), so an id is never reused while its entry lives.
_PARSED: dict[tuple[int, str, bool], tuple[pd.DataFrame, list[Any]]] = {}


def _parsed(df: pd.DataFrame, column: str, texts: bool = False) -> list[Any]:
    """A column of ``df`` as Python values: text (missing as ""), or comma-separated parts as frozensets."""
    key = (id(df), column, texts)
    hit = _PARSED.get(key)
    if hit is not None and hit[0] is df:
        return hit[1]
    values: list[Any] = [
        v if isinstance(v, str) else "" if v is None or pd.isna(v) else str(v) for v in df[column].tolist()
    ]
    if not texts:
        sets: dict[str, frozenset[str]] = {}
        values = [
            sets.get(v) or sets.setdefault(v, frozenset(p.strip() for p in v.split(",") if p.strip())) for v in values
        ]
    if len(_PARSED) >= 32:
        _PARSED.clear()
    _PARSED[key] = (df, values)
    return values


@dataclass(frozen=True)
class Step:
    """One checklist step and how evidence satisfies it."""

    id: str
    title: str
    category: str
    done_when: tuple[str, ...]
    kinds: tuple[str, ...] = ()
    require_names: tuple[str, ...] = ()
    findings: Selector = field(default_factory=Selector)
    otherwise: str = "not done"
    fail_at: str | None = None
    not_applicable_without: tuple[str, ...] = ()
    prefill: str = ""
    note: str = ""
    short: str = ""
    # evidence families that must have been parsed for "done": each entry is one family or alternatives
    needs: tuple[tuple[str, ...], ...] = ()
    cisa: tuple[str, ...] = ()  # CISA's paragraphs the step answers (keys of Directive.cisa_paragraphs)

    @property
    def number(self) -> str:
        """The checklist number this step (or sub-check) belongs to: ``"4.1"`` -> ``"4"``."""
        return self.id.split(".")[0]

    @property
    def sort_key(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.id.split("."))


@dataclass(frozen=True)
class EvidenceFamily:
    """A family of artifacts a verdict rests on (event logs, hives, web logs ...) and its evidence kinds."""

    id: str
    title: str
    kinds: tuple[str, ...]
    required: bool = False  # a clean verdict needs it parsed; optional ones count only when collected


@dataclass(frozen=True)
class Directive:
    """The loaded directive file."""

    steps: tuple[Step, ...]
    window_start: pd.Timestamp
    retention_days: int
    families: dict[str, Selector]
    compromised_at: str
    suspicious_at: str
    ignore_families: tuple[str, ...]
    path: str = ""
    evidence_families: tuple[EvidenceFamily, ...] = ()
    not_parsers: tuple[str, ...] = ()  # analyzers whose runs do not count as parsing a family (byte scanners)
    not_parsed_rules: tuple[str, ...] = ()  # findings that say their unit could not parse the artifact
    cisa_paragraphs: dict[str, str] = field(default_factory=dict)  # paragraph id -> what it asks (our words)

    def evidence_family(self, family_id: str) -> EvidenceFamily:
        for f in self.evidence_families:
            if f.id == family_id:
                return f
        raise KeyError(family_id)

    def family(self, name: str) -> Selector:
        return self.families.get(name, Selector())

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


def _tuple(raw: Any, where: str, key: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError(f"{where}: {key} must be a list")
    return tuple(str(v) for v in raw)


def _selector(raw: Any, where: str, families: dict[str, Selector] | None = None) -> Selector:
    if raw is None:
        return Selector()
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping of {sorted(SELECTOR_KEYS)}")
    unknown = set(raw) - SELECTOR_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    sel = Selector(
        steps=_tuple(raw.get("steps"), where, "steps"),
        rule_prefixes=_tuple(raw.get("rule_prefixes"), where, "rule_prefixes"),
        tags=_tuple(raw.get("tags"), where, "tags"),
    )
    for fam in _tuple(raw.get("families"), where, "families"):
        if families is None or fam not in families:
            raise ValueError(f"{where}: unknown family {fam!r}")
        sel = sel | families[fam]
    return sel


def load_directive(path: Path | None = None) -> Directive:
    """Load and validate ``signatures/ed2102.yaml`` (or another file in the same format)."""
    if path is None:
        from triage.registry import signature_path

        path = signature_path(DIRECTIVE_FILE)
    doc = yamldoc.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    families = {
        str(name): _selector(raw, f"{path}: conventions.{name}") for name, raw in (doc.get("conventions") or {}).items()
    }
    verdict = doc.get("verdict") or {}
    ev_families, not_parsers, not_parsed_rules = _evidence(doc.get("evidence"), str(path))
    family_ids = {f.id for f in ev_families}
    paragraphs = _paragraphs(doc.get("cisa_paragraphs"), str(path))
    steps: list[Step] = []
    seen: set[str] = set()
    for raw in doc.get("steps") or []:
        sid = str(raw.get("id", "?"))
        where = f"{path}: step {sid}"
        unknown = set(raw) - STEP_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        if sid in seen:
            raise ValueError(f"{where}: id used twice")
        seen.add(sid)
        if not all(p.isdigit() for p in sid.split(".")):
            raise ValueError(f"{where}: id must be a number such as '4' or '4.1'")
        step = Step(
            id=sid,
            title=str(raw["title"]),
            category=str(raw.get("category", "")),
            done_when=tuple(str(m) for m in raw["done_when"])
            if isinstance(raw.get("done_when"), list)
            else (str(raw.get("done_when", "")),),
            kinds=_tuple(raw.get("kinds"), where, "kinds"),
            require_names=_tuple(raw.get("require_names"), where, "require_names"),
            # findings naming the step (or its parent number) in ed2102_steps always support it
            findings=_selector(raw.get("findings"), f"{where}: findings", families)
            | Selector(steps=(sid.split(".")[0],)),
            otherwise=str(raw.get("otherwise", "not done")),
            fail_at=raw.get("fail_at"),
            not_applicable_without=_tuple(raw.get("not_applicable_without"), where, "not_applicable_without"),
            prefill=str(raw.get("prefill", "")),
            note=" ".join(str(raw.get("note", "")).split()),
            short=str(raw.get("short", "")),
            needs=_needs(raw.get("needs"), where, family_ids),
            cisa=_tuple(raw.get("cisa"), where, "cisa"),
        )
        if not step.cisa:
            raise ValueError(f"{where}: cisa must name at least one of CISA's paragraphs (cisa_paragraphs)")
        unknown_par = [c for c in step.cisa if c not in paragraphs]
        if unknown_par:
            raise ValueError(f"{where}: cisa names unknown paragraphs {unknown_par} (not in cisa_paragraphs)")
        if step.category not in CATEGORIES:
            raise ValueError(f"{where}: category must be one of {CATEGORIES}")
        if not step.done_when or any(m not in DONE_WHEN for m in step.done_when):
            raise ValueError(f"{where}: done_when must be one of {DONE_WHEN} or a list of them")
        if "manual" in step.done_when and len(step.done_when) > 1:
            raise ValueError(f"{where}: done_when manual cannot be combined")
        if step.otherwise not in STATUSES:
            raise ValueError(f"{where}: otherwise must be one of {STATUSES}")
        if step.fail_at is not None and step.fail_at not in SEVERITIES:
            raise ValueError(f"{where}: fail_at must be one of {SEVERITIES}")
        if step.prefill not in PREFILLS:
            raise ValueError(f"{where}: prefill must be one of {PREFILLS}")
        if set(step.done_when) & {"artifacts", "examined", "coverage"} and not step.kinds:
            raise ValueError(f"{where}: done_when {'/'.join(step.done_when)} needs kinds")
        steps.append(step)
    for key in ("compromised_at", "suspicious_at"):
        if verdict.get(key, "high") not in SEVERITIES:
            raise ValueError(f"{path}: verdict.{key} must be one of {SEVERITIES}")
    ignore = _tuple(verdict.get("ignore_families"), f"{path}: verdict", "ignore_families")
    for fam in ignore:
        if fam not in families:
            raise ValueError(f"{path}: verdict.ignore_families: unknown family {fam!r}")
    return Directive(
        steps=tuple(sorted(steps, key=lambda s: s.sort_key)),
        window_start=pd.Timestamp(doc.get("window_start", "2021-01-01T00:00:00Z")),
        retention_days=int(doc.get("retention_days", 183)),
        families=families,
        compromised_at=str(verdict.get("compromised_at", "high")),
        suspicious_at=str(verdict.get("suspicious_at", "medium")),
        ignore_families=ignore,
        path=str(path),
        evidence_families=ev_families,
        not_parsers=not_parsers,
        not_parsed_rules=not_parsed_rules,
        cisa_paragraphs=paragraphs,
    )


def _paragraphs(raw: Any, path: str) -> dict[str, str]:
    """The ``cisa_paragraphs`` section: paragraph id -> a short description (both non-empty text)."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: cisa_paragraphs must map each of CISA's paragraphs to what it asks")
    out = {}
    for key, text in raw.items():
        if not isinstance(key, str) or not isinstance(text, str) or not key.strip() or not text.strip():
            raise ValueError(f"{path}: cisa_paragraphs.{key}: paragraph ids and texts must be non-empty text")
        out[key.strip()] = " ".join(text.split())
    return out


def _evidence(raw: Any, path: str) -> tuple[tuple[EvidenceFamily, ...], tuple[str, ...], tuple[str, ...]]:
    """The ``evidence`` section: artifact families, the analyzers that do not parse, the rules saying so."""
    if raw is None:
        return (), (), ()
    if not isinstance(raw, dict) or set(raw) - {"families", "not_parsers", "not_parsed_rules"}:
        raise ValueError(f"{path}: evidence must be a mapping of families and not_parsers")
    out: list[EvidenceFamily] = []
    for item in raw.get("families") or []:
        fid = str(item.get("id", "?")) if isinstance(item, dict) else "?"
        where = f"{path}: evidence family {fid}"
        if not isinstance(item, dict) or set(item) - FAMILY_KEYS or "kinds" not in item or "title" not in item:
            raise ValueError(f"{where}: needs id, title, kinds (and optionally required), nothing else")
        if any(f.id == fid for f in out):
            raise ValueError(f"{where}: id used twice")
        out.append(EvidenceFamily(fid, str(item["title"]), _tuple(item["kinds"], where, "kinds"),
                                  bool(item.get("required", False))))  # fmt: skip
    return (
        tuple(out),
        _tuple(raw.get("not_parsers"), f"{path}: evidence", "not_parsers"),
        _tuple(raw.get("not_parsed_rules"), f"{path}: evidence", "not_parsed_rules"),
    )


def _needs(raw: Any, where: str, family_ids: set[str]) -> tuple[tuple[str, ...], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError(f"{where}: needs must be a list of evidence families (or lists of alternatives)")
    out = []
    for entry in raw:
        group = tuple(str(x) for x in entry) if isinstance(entry, list) else (str(entry),)
        unknown = [g for g in group if g not in family_ids]
        if unknown or not group:
            raise ValueError(f"{where}: needs names unknown evidence families {unknown}")
        out.append(group)
    return tuple(out)
