"""Sigma rules (SigmaHQ format, parsed with pySigma) evaluated vectorised over the flattened event table.

Usage::

    rules = load_rules(["/path/to/sigma/rules/windows"])      # files and/or directories, loaded unmodified
    print(rules.summary())                                     # loaded / skipped counts
    for path, title, reason, rule_id in rules.skipped: ...     # why each skipped rule was left out
    matches = rules.evaluate(events)                           # one row per (rule, matching event)

Evaluation selects each logsource source's rows once (``signatures/sigma/logsources.yaml``), builds the
column views its rules need once (see :mod:`triage.sigma.frame`) and runs every rule of that source on them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from triage.finding import RuleMeta
from triage.sigma.compiler import (
    And,
    BoolLeaf,
    CidrLeaf,
    FieldRefLeaf,
    KeywordLeaf,
    Leaf,
    Node,
    NumLeaf,
    Or,
    StrLeaf,
    UnsupportedRule,
    _distinct,
    _py_regex,
    distinct_hits,
    joined_needles,
    wildcard_factors,
)
from triage.sigma.frame import FrameIndex, SubFrame
from triage.sigma.logsources import (
    LogsourceEntry,
    LogsourceMap,
    SourceVariant,
    default_logsources_path,
    load_logsources,
    logsource_label,
)
from triage.sigma.tags import parse_tags

if TYPE_CHECKING:  # pandas, PyYAML and pySigma are imported where used: not on a compiled set's evaluation path
    import pandas as pd
    import yaml
    from sigma.correlations import SigmaCorrelationRule
    from sigma.rule import SigmaRule

log = logging.getLogger(__name__)

RULE_SUFFIXES = (".yml", ".yaml")
MATCH_COLUMNS = ("rule_id", "rule_title", "level", "tags", "rule_path", "row")
_LEVEL_TO_SEVERITY = {"informational": "info", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
_UNKNOWN_MODIFIER = re.compile(r"Unknown modifier '([^']+)'")
_RULE_SECTIONS = frozenset({"detection", "correlation", "filter", "action"})
# Modifier names of the Sigma specification that the installed pySigma spells differently.
_MODIFIER_ALIASES = {"utf16le": "wide"}


class SkippedRule(NamedTuple):
    """A rule (or file) that was not loaded, and why."""

    path: str
    title: str
    reason: str
    rule_id: str = ""


class RuleWarning(NamedTuple):
    """A loaded rule with a metadata problem pySigma reported (bad id, date, tag ...)."""

    path: str
    title: str
    message: str


class RuntimeFailure(NamedTuple):
    """A rule that raised while being evaluated (it is left out of that evaluation's matches)."""

    rule_id: str
    title: str
    path: str
    source: str
    error: str


@dataclass(eq=False)
class CompiledRule:
    """A loaded Sigma rule: its metadata and its vectorised matcher.

    ``id`` is the rule's ``id`` as written (normally a UUID); a rule without one gets
    ``nosigmaid-<first 16 hex of the file sha256>-<n>`` so it still has a stable key.
    """

    id: str
    title: str
    level: str
    status: str
    description: str
    author: str
    tags: tuple[str, ...]
    references: tuple[str, ...]
    falsepositives: tuple[str, ...]
    logsource: dict[str, str]
    path: str
    sha256: str
    mitre: tuple[str, ...]
    tactics: tuple[str, ...]
    cve: tuple[str, ...]
    ed2102_steps: tuple[int, ...]
    conditions: tuple[str, ...]
    entry: LogsourceEntry = field(repr=False)
    matcher: Node = field(repr=False)
    date: str = ""
    modified: str = ""
    warnings: tuple[str, ...] = ()
    meta: RuleMeta = field(init=False, repr=False)  # what every finding of the rule shares, built at load time
    # where the rule can match (required columns, EventID gate, cover), derived once at compile time and kept in
    # the compiled cache with the rule, so no process walks 2,400 matcher trees again
    plan: RulePlan = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.plan = rule_plan(self.matcher)
        self.meta = RuleMeta(
            id=self.id,
            title=self.title,
            severity=self.severity,
            description=self.description,
            mitre=self.mitre,
            cve=self.cve,
            steps=tuple(str(s) for s in self.ed2102_steps),
            references=self.references,
        )

    @property
    def severity(self) -> str:
        """The level in the finding schema's vocabulary (``informational`` -> ``info``; none -> ``medium``)."""
        return _LEVEL_TO_SEVERITY.get(self.level, "medium")

    def match(self, df: pd.DataFrame) -> np.ndarray:
        """Row positions of ``df`` this rule matches (convenience for one rule; use RuleSet for many)."""
        index = FrameIndex(df)
        hits = []
        for variant in self.entry.sources:
            pos = index.positions(variant)
            if pos.size:
                ctx = SubFrame(df, pos, variant.alias_map)
                hits.append(pos[self.matcher.eval(ctx, None)])
        return np.unique(np.concatenate(hits)) if hits else np.empty(0, dtype=np.int64)


@dataclass
class RuleSet:
    """Compiled rules plus everything that was skipped (with reasons).

    Attributes:
        loaded: compiled rules, in load order.
        skipped: rules or files left out, as ``SkippedRule(path, title, reason, rule_id)``.
        warnings: metadata problems of rules that did load.
        files: rule file path -> sha256.
        logsources: the logsource map rules were resolved against.
        runtime_errors: rules that raised during the last evaluation (normally empty).
        correlations: Sigma correlation rules, resolved against the loaded rules (see
            :mod:`triage.sigma.correlation`; evaluate them with its ``Correlator``).
    """

    loaded: list[CompiledRule] = field(default_factory=list)
    skipped: list[SkippedRule] = field(default_factory=list)
    warnings: list[RuleWarning] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    logsources: LogsourceMap = field(default_factory=LogsourceMap)
    runtime_errors: list[RuntimeFailure] = field(default_factory=list)
    # Sigma correlation rules (triage.sigma.correlation.CorrelationRule) and base-rule name -> id
    correlations: list[Any] = field(default_factory=list)
    rule_names: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.loaded)

    def __iter__(self) -> Iterator[CompiledRule]:
        return iter(self.loaded)

    @property
    def counts(self) -> dict[str, int]:
        """``{"files": ..., "loaded": ..., "skipped": ...}``."""
        return {"files": len(self.files), "loaded": len(self.loaded), "skipped": len(self.skipped)}

    def summary(self) -> str:
        """One line: files, loaded and skipped counts."""
        c = self.counts
        corr = f" (and {len(self.correlations)} correlation rules)" if self.correlations else ""
        return f"{c['loaded']} Sigma rules loaded{corr}, {c['skipped']} skipped, from {c['files']} files"

    def skip_reasons(self) -> Counter[str]:
        """Skipped rules counted by the first clause of their reason (for a quick overview)."""
        return Counter(r.reason.split(":")[0] for r in self.skipped)

    def fingerprint(self) -> str:
        """sha256 over the loaded rule files' hashes (provenance of a report)."""
        h = hashlib.sha256()
        for path in sorted(self.files):
            h.update(f"{path}\0{self.files[path]}\n".encode())
        return h.hexdigest()

    # ------------------------------------------------------------------------------------------ evaluation
    def _index(self) -> _Index:
        """Rules grouped by logsource source, with their shared leaf keys and cover buckets.

        Computed once per rule list (load time, or after the list changed) instead of on every frame.
        """
        key = tuple(id(r) for r in self.loaded)
        cached: _Index | None = self.__dict__.get("_rule_index")
        if cached is not None and cached.key == key:
            return cached
        groups: dict[SourceVariant, list[CompiledRule]] = defaultdict(list)
        for rule in self.loaded:
            for variant in rule.entry.sources:
                groups[variant].append(rule)
        # sources of one logsource (Sysmon's and Security's process creation) hold the same rules: one set of
        # cover buckets for both, so each automaton is built once per process, not once per source
        covers: dict[tuple[int, ...], tuple[frozenset[Hashable], _CoverSets]] = {}
        for rules in groups.values():
            same = tuple(map(id, rules))
            if same not in covers:
                covers[same] = (_shared_keys(rules), _CoverSets(rules))
        index = _Index(
            key=key,
            groups=[(v, rules, *covers[tuple(map(id, rules))]) for v, rules in groups.items()],
        )
        self.__dict__["_rule_index"] = index
        return index

    def __setstate__(self, state: dict[str, Any]) -> None:
        # an index stored with the set (see load_rules) belongs to these rules: re-key it to their new ids
        self.__dict__.update(state)
        index = state.get("_rule_index")
        if index is not None:
            index.key = tuple(id(r) for r in self.loaded)

    def _groups(self) -> dict[SourceVariant, list[CompiledRule]]:
        return {variant: rules for variant, rules, _, _ in self._index().groups}

    def iter_matches(self, df: pd.DataFrame, *, indexed: bool = True) -> Iterator[tuple[CompiledRule, np.ndarray]]:
        """Yield ``(rule, row positions)`` for every rule with at least one match, in load order.

        Positions are sorted, unique ``iloc`` positions into ``df``. A rule that raises is recorded in
        :attr:`runtime_errors` and skipped; the others go on.

        With ``indexed`` (the default) each rule only looks at the rows its plan allows (see
        :func:`rule_plan`): a rule that needs a column the sub-frame lacks is not run at all, and a rule that
        requires ``EventID`` (or another field) to be one of a few numbers runs on those rows only, found
        through a per-sub-frame value index. ``indexed=False`` is the full scan, kept to prove both agree.
        """
        self.runtime_errors = []
        index = FrameIndex(df)
        plans = self._index()
        hits: dict[int, list[np.ndarray]] = defaultdict(list)
        for variant, rules, shared, covers in plans.groups:
            pos = index.positions(variant)
            if pos.size == 0:
                continue
            ctx = SubFrame(df, None if pos.size == len(df) else pos, variant.alias_map, shared, index)
            # looked up once per sub-frame: this loop runs for every rule of a big set
            has_values, holds, memo = ctx.field_has_values, covers.holds, _cover_memo(ctx)
            for rule in rules:
                sel: np.ndarray | None = None
                if indexed:
                    plan = rule.plan
                    if plan.required and not all(map(has_values, plan.required)):
                        continue  # a test on a missing or all-null column never matches, and one must
                    if plan.cover is not None and not holds(ctx, memo, plan.cover):
                        continue  # none of the tests one of which any match needs holds on any row here
                    if plan.clauses and not all(holds(ctx, memo, clause) for clause in plan.clauses):
                        continue  # the same for another part every match needs
                    if plan.need is not None and not _can_hold(plan.need, holds, ctx, memo):
                        continue  # no branch of an OR can match: a part of each holds nowhere
                    if plan.gate is not None:
                        sel = ctx.rows_with_numbers(*plan.gate)
                        if sel is not None and sel.size == 0:
                            continue
                try:
                    mask = rule.matcher.eval(ctx, sel)
                except Exception as exc:  # one failing rule must not stop the others
                    log.warning("Sigma rule %s (%s) failed on %s: %s", rule.id, rule.path, variant.name, exc)
                    self.runtime_errors.append(
                        RuntimeFailure(rule.id, rule.title, rule.path, variant.name, f"{type(exc).__name__}: {exc}")
                    )
                    continue
                if mask.any():
                    hits[id(rule)].append(pos[mask] if sel is None else pos[sel[mask]])
        for rule in self.loaded:
            found = hits.get(id(rule))
            if found:
                yield rule, (found[0] if len(found) == 1 else np.unique(np.concatenate(found)))

    def match_arrays(self, df: Any, *, indexed: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """All matches as two arrays, without pandas: the rule id of each match (objects) and its row (int64),
        in :meth:`evaluate`'s order (rule load order, then row); what findings need of the matches."""
        ids: list[str] = []
        rows: list[np.ndarray] = []
        for rule, positions in self.iter_matches(df, indexed=indexed):
            ids.append(rule.id)
            rows.append(positions)
        if not ids:
            return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
        counts = np.array([len(r) for r in rows])
        rule_ids = np.repeat(np.asarray(ids, dtype=object), counts)
        return rule_ids, np.concatenate(rows).astype(np.int64, copy=False)

    def evaluate(self, df: pd.DataFrame, *, indexed: bool = True) -> pd.DataFrame:
        """All matches as a frame: ``rule_id, rule_title, level, tags, rule_path, row``.

        One row per (rule, matching event); ``row`` is the ``iloc`` position into ``df``; ``tags`` is
        comma-joined. Ordered by rule load order, then row. ``indexed=False`` runs every rule over every row of
        its source (the reference the indexed path is tested against).
        """
        import pandas as pd  # only here: the event-log path reads iter_matches and never imports pandas

        rules: list[CompiledRule] = []
        rows: list[np.ndarray] = []
        for rule, positions in self.iter_matches(df, indexed=indexed):
            rules.append(rule)
            rows.append(positions)
        if not rules:
            return _empty_matches()
        counts = np.array([len(r) for r in rows])
        idx = np.repeat(np.arange(len(rules)), counts)

        def column(values: list[str]) -> pd.Series:
            return pd.Series(np.asarray(values, dtype=object)[idx], dtype="str")

        return pd.DataFrame(
            {
                "rule_id": column([r.id for r in rules]),
                "rule_title": column([r.title for r in rules]),
                "level": column([r.level for r in rules]),
                "tags": column([",".join(r.tags) for r in rules]),
                "rule_path": column([r.path for r in rules]),
                "row": pd.Series(np.concatenate(rows), dtype="int64"),
            }
        )


class RulePlan(NamedTuple):
    """What must hold on a row for a rule to possibly match it (derived from the compiled tree).

    Attributes:
        required: rule fields that must map to a column with values in the sub-frame (these tests never match
            a missing column or a null value, so without them the rule cannot match anywhere).
        gate: ``(field, numbers)`` when the rule can only match rows whose field equals one of the numbers
            (typically ``EventID``); None when no such constraint is implied.
        cover: string tests (field or keyword leaves of the rule's own tree) at least one of which holds on
            every row the rule matches; when none holds on any row of a sub-frame the rule is not run there.
            None when the tree implies no such set (a NOT above every string test, say).
        clauses: further covers, one per child of a top-level AND that has one (``cover`` is the cheapest):
            each must hold on some row of a sub-frame for the rule to run there, so a rule whose first test
            holds but whose second cannot is not run either.
        need: for a tree with an AND below an OR (``a and b or c and d``), what must hold somewhere for some
            branch to match, as nested ``("&" | "|", parts)`` over string leaves (see :func:`_need`): the rule
            does not run where ``a`` and ``c`` hold but neither ``b`` nor ``d`` does. None when ``cover`` and
            ``clauses`` already say as much.
    """

    required: frozenset[str]
    gate: tuple[str, tuple[float, ...]] | None
    cover: tuple[Leaf, ...] | None = None
    clauses: tuple[tuple[Leaf, ...], ...] = ()
    need: Any = None


def _cover_memo(ctx: SubFrame) -> dict[Hashable, bool]:
    """Cover leaf key -> whether it holds on some row of the sub-frame, kept on the sub-frame."""
    memo: dict[Hashable, bool] = ctx.__dict__.setdefault("_cover_any", {})
    return memo


def _leaf_hits_any(ctx: SubFrame, leaf: Leaf) -> bool:
    """Whether a cover leaf (string test of a field or keyword) matches any row of the sub-frame.

    Tested on the column's distinct values (shared with the leaves' own evaluation) and remembered per
    sub-frame, so a cover test costs each sub-frame one evaluation however many rules share it.
    """
    memo = _cover_memo(ctx)
    found = memo.get(leaf.key)
    if found is None:
        if isinstance(leaf, StrLeaf):
            col = ctx.column(leaf.field)
            found = col is not None and bool(distinct_hits(col, leaf.test)[1].any())
        else:
            assert isinstance(leaf, KeywordLeaf)
            found = any(bool(distinct_hits(col, leaf.test)[1].any()) for col in ctx.text_columns)
        memo[leaf.key] = found
    return found


class _Bucket:
    """The cover tests of one group's rules on one field (or every text column, for keywords) and case, all
    looked for in one sweep per sub-frame: each test's needles (and wildcard regex) searched in the column's
    NUL-joined distinct values (see :func:`joined_needles`), with no per-test Python call.

    Needles are looked for one ``in`` at a time until that has cost about as much as building an Aho-Corasick
    automaton (``pyahocorasick``) of them would, then through the automaton, in one pass of the text, whenever
    that pass costs less than the ``in`` sweep would: thousands of command-line needles over a big batch pay for
    it at once; a bucket of a few needles keeps its ``in`` sweep over a megabyte of script blocks.
    """

    # estimated seconds (measured: pyahocorasick 2.x, CPython 3.11): an ``in`` per needle (call, then scan per
    # character), adding a needle to an automaton, and the automaton's pass per character of text
    IN_CALL, IN_CHAR, BUILD, PASS_CHAR = 1e-7, 2.5e-10, 1.5e-6, 1e-8

    def __init__(self, field: str | None, cased: bool) -> None:
        self.field = field
        self.cased = cased
        self.leaves: list[Leaf] = []
        self.owners: dict[str, list[Hashable]] = {}  # needle -> keys of the leaves it belongs to
        # (leaf key, regex over the joined text, literals one of which it needs: the regex runs where one is)
        self.regexes: list[tuple[Hashable, str, tuple[str, ...]]] = []
        self._automaton: Any = None
        self._swept = 0.0  # estimated seconds spent on ``in`` sweeps so far

    def add(self, leaf: Leaf, needles: list[str], regex: str | None) -> None:
        self.leaves.append(leaf)
        for needle in needles:
            self.owners.setdefault(needle, []).append(leaf.key)
        if regex is not None:
            # the wildcards' literals, swept with the needles: the regex runs only where one of them is found
            hints = wildcard_factors(regex)  # none: a wildcard without a literal, the regex always runs
            for needle in hints:
                self.owners.setdefault(needle, [])
            self.regexes.append((leaf.key, regex, hints))

    def run(self, ctx: SubFrame, memo: dict[Hashable, bool]) -> None:
        """Record in ``memo`` whether each of the bucket's leaves holds on some row of the sub-frame."""
        if self.field is None:
            columns = ctx.text_columns
        else:
            col = ctx.column(self.field)
            columns = [] if col is None else [col]
        held: set[Hashable] = set()
        for col in columns:
            values = _distinct(col, self.cased)
            if values.n == 0:
                continue
            joined = values.joined
            if joined is None:  # a value holding a NUL: each test on its own, exactly
                for leaf in self.leaves:
                    memo[leaf.key] = _leaf_hits_any(ctx, leaf)
                return
            text = joined[0]
            automaton = self._automaton_for(len(text))
            found: set[str] = set()
            if automaton:
                needles = self._needles
                found = {needles[i] for i in {i for _, i in automaton.iter(text)}}
                if "" in self.owners:  # an empty needle is in any text (the automaton holds no empty word)
                    found.add("")
                for needle in found:
                    held.update(self.owners[needle])
            else:
                for needle, keys in self.owners.items():
                    if needle in text:
                        found.add(needle)
                        held.update(keys)
            values.sweeps.append((self.owners, found))  # the leaves' own tests then skip the absent needles
            for key, regex, hints in self.regexes:
                if key in held or (hints and found.isdisjoint(hints)):
                    continue
                if _py_regex(regex)(text) is not None:
                    held.add(key)
        for leaf in self.leaves:
            memo[leaf.key] = leaf.key in held

    def _automaton_for(self, size: int) -> Any:
        """The automaton to sweep ``size`` characters with, or None (False) for the ``in`` sweep: it is built
        once the ``in`` sweeps have cost what building it costs, and used where its pass is the cheaper."""
        n = len(self.owners)
        sweep = n * (self.IN_CALL + self.IN_CHAR * size)
        if self.PASS_CHAR * size >= sweep:
            return None
        if self._automaton is None:
            self._swept += sweep
            if self._swept <= n * self.BUILD:
                return None
            self._automaton = self._build()
        return self._automaton

    def _build(self) -> Any:
        try:
            import ahocorasick
        except ImportError:  # optional: without it every needle is looked for on its own (same result)
            return False
        automaton = ahocorasick.Automaton()
        self._needles = list(self.owners)
        for i, needle in enumerate(self._needles):
            if needle:
                automaton.add_word(needle, i)
        if not len(automaton):
            return False
        automaton.make_automaton()
        return automaton

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_automaton": None}  # built again where it is needed


class _CoverSets:
    """A group's cover tests by field and case (see :class:`_Bucket`); ``|re`` tests run one by one."""

    def __init__(self, rules: list[CompiledRule]) -> None:
        self.by_leaf: dict[Hashable, _Bucket] = {}
        buckets: dict[tuple[str | None, bool], _Bucket] = {}
        for rule in rules:
            plan = rule.plan
            tested = [leaf for clause in (plan.cover or (), *plan.clauses) for leaf in clause]
            for leaf in (*tested, *_need_leaves(plan.need)):
                if leaf.key in self.by_leaf:
                    continue
                test = leaf.test  # type: ignore[attr-defined]
                found = joined_needles(test)
                if found is None:
                    continue
                where = (leaf.field if isinstance(leaf, StrLeaf) else None, test.cased)
                bucket = buckets.get(where)
                if bucket is None:
                    bucket = buckets[where] = _Bucket(*where)
                bucket.add(leaf, *found)
                self.by_leaf[leaf.key] = bucket

    def any_holds(self, ctx: SubFrame, cover: tuple[Leaf, ...]) -> bool:
        """Whether some leaf of ``cover`` holds on some row of the sub-frame (results kept per sub-frame)."""
        return self.holds(ctx, _cover_memo(ctx), cover)

    def holds(self, ctx: SubFrame, memo: dict[Hashable, bool], cover: tuple[Leaf, ...]) -> bool:
        """:meth:`any_holds` with the sub-frame's results given (see :func:`_cover_memo`)."""
        for leaf in cover:
            found = memo.get(leaf.key)
            if found is None:
                bucket = self.by_leaf.get(leaf.key)
                if bucket is None:
                    found = _leaf_hits_any(ctx, leaf)
                else:
                    bucket.run(ctx, memo)
                    found = memo[leaf.key]
            if found:
                return True
        return False


@dataclass
class _Index:
    key: tuple[int, ...]
    groups: list[tuple[SourceVariant, list[CompiledRule], frozenset[Hashable], _CoverSets]]


def rule_plan(node: Node) -> RulePlan:
    """The row constraints a matcher tree implies: required columns, a numeric equality gate, a cover."""
    gate = _gate(node)
    cover = _cover(node)
    clauses: tuple[tuple[Leaf, ...], ...] = ()
    if isinstance(node, And):  # every child holds where the AND does: each child's cover is a clause
        others = {tuple(leaf.key for leaf in c): c for c in map(_cover, node.children) if c is not None}
        others.pop(tuple(leaf.key for leaf in cover or ()), None)
        clauses = tuple(sorted(others.values(), key=lambda c: (len(c), sum(leaf.cost for leaf in c))))
    gate_spec = None if gate is None else (gate[0], tuple(sorted(gate[1])))
    need = _need(node)
    return RulePlan(_required(node), gate_spec, cover, clauses, need if _and_below_or(need, False) else None)


def _need(node: Node) -> Any:
    """What must hold on some row of a sub-frame for ``node`` to match there: a string leaf (it holds somewhere),
    ``("&", parts)`` (each part does) or ``("|", parts)`` (some part does); None when nothing is known (a NOT,
    tests of other kinds). Sound as :func:`_cover` is: where ``node`` matches a row, its need holds."""
    if isinstance(node, (StrLeaf, KeywordLeaf)):
        return node
    if isinstance(node, And):  # every child matches that row: each child's need holds
        parts = [n for n in map(_need, node.children) if n is not None]
        return None if not parts else parts[0] if len(parts) == 1 else ("&", tuple(parts))
    if isinstance(node, Or):  # some child matches it: its need holds, unknown as soon as one child's is
        alts = [_need(child) for child in node.children]
        return None if any(a is None for a in alts) else alts[0] if len(alts) == 1 else ("|", tuple(alts))
    return None


def _and_below_or(need: Any, in_or: bool) -> bool:
    """Whether a need has an AND under an OR (only then does it say more than a cover and clauses)."""
    if not isinstance(need, tuple):
        return False
    op, parts = need
    if op == "&" and in_or:
        return True
    return any(_and_below_or(part, in_or or op == "|") for part in parts)


def _need_leaves(need: Any) -> Iterator[Leaf]:
    if isinstance(need, tuple):
        for part in need[1]:
            yield from _need_leaves(part)
    elif need is not None:
        yield need


def _can_hold(need: Any, holds: Any, ctx: SubFrame, memo: dict[Hashable, bool]) -> bool:
    """Whether a need (see :func:`_need`) holds on the sub-frame, its leaves looked up like cover leaves."""
    if not isinstance(need, tuple):
        return bool(holds(ctx, memo, (need,)))
    op, parts = need
    if op == "&":
        return all(_can_hold(part, holds, ctx, memo) for part in parts)
    return any(_can_hold(part, holds, ctx, memo) for part in parts)


def _cover(node: Node) -> tuple[Leaf, ...] | None:
    """Leaves one of which matches wherever ``node`` matches (see :class:`RulePlan`), or None."""
    if isinstance(node, (StrLeaf, KeywordLeaf)):
        return (node,)
    if isinstance(node, And):  # every child holds where the AND does: any one child's cover will do
        covers = [c for c in map(_cover, node.children) if c is not None]
        # the fewest and cheapest tests first: each sub-frame evaluates the cover for every rule
        return min(covers, key=lambda c: (len(c), sum(leaf.cost for leaf in c))) if covers else None
    if isinstance(node, Or):  # some child holds: the union of the children's covers, if each has one
        out: dict[Hashable, Leaf] = {}
        for child in node.children:
            c = _cover(child)
            if c is None:
                return None
            out.update((leaf.key, leaf) for leaf in c)
        return tuple(out.values())
    return None  # NOT, and tests of other kinds (numbers, null, exists ...): no string cover


def _required(node: Node) -> frozenset[str]:
    if isinstance(node, (StrLeaf, NumLeaf, BoolLeaf, CidrLeaf)):
        return frozenset({node.field})
    if isinstance(node, FieldRefLeaf):
        return frozenset({node.field, node.ref})
    if isinstance(node, And):  # every child must match: each child's requirements hold
        return frozenset().union(*(_required(c) for c in node.children))
    if isinstance(node, Or):  # some child matches: only what all children require
        sets = [_required(c) for c in node.children]
        return frozenset.intersection(*sets) if sets else frozenset()
    return frozenset()  # Not, null, exists, keyword tests can match where a column is missing


def _gate(node: Node) -> tuple[str, frozenset[float]] | None:
    if isinstance(node, NumLeaf):
        return (node.field, frozenset(node.values.tolist())) if node.op == "eq" else None
    if isinstance(node, And):  # any child's gate holds; several on one field intersect
        found: dict[str, frozenset[float]] = {}
        for child in node.children:
            g = _gate(child)
            if g is not None:
                found[g[0]] = found[g[0]] & g[1] if g[0] in found else g[1]
        if not found:
            return None
        field_name = "EventID" if "EventID" in found else min(found, key=lambda f: len(found[f]))
        return field_name, found[field_name]
    if isinstance(node, Or):  # some child matches: a gate only when every child gates the same field
        gates = [_gate(c) for c in node.children]
        if not gates or any(g is None for g in gates) or len({g[0] for g in gates if g}) != 1:
            return None
        return gates[0][0], frozenset().union(*(g[1] for g in gates if g))  # type: ignore[index]
    return None


def _empty_matches() -> pd.DataFrame:
    import pandas as pd

    data: dict[str, pd.Series] = {c: pd.Series([], dtype="str") for c in MATCH_COLUMNS[:-1]}
    data["row"] = pd.Series([], dtype="int64")
    return pd.DataFrame(data)


def _shared_keys(rules: list[CompiledRule]) -> frozenset[Hashable]:
    """Leaf keys used by at least two rules of a group (their full-frame results are worth caching)."""
    counts: Counter[Hashable] = Counter()
    for rule in rules:
        counts.update({leaf.key for leaf in rule.matcher.leaves()})
    return frozenset(k for k, n in counts.items() if n > 1)


# ---------------------------------------------------------------------------------------------- loading
@cache
def _yaml_loader() -> type:
    """The YAML loader of rule files (built on first use: PyYAML is only needed to compile rules)."""
    import yaml

    class _RuleYAMLLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        """Safe YAML loader that rejects duplicate mapping keys, reporting their line (merge keys ``<<`` allowed)."""

        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
            return super().construct_mapping(node, deep)

    return _RuleYAMLLoader


def iter_rule_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and directories (recursively, ``*.yml``/``*.yaml``) into rule files, each once, sorted
    within a directory (by path components). Hidden directories (``.git`` ...) are not entered, nor are
    links to directories.
    """
    seen: set[str] = set()
    for raw in paths:
        p = Path(raw)
        candidates = _folder_rules(p) if p.is_dir() else [(p, os.path.realpath(p))]
        for f, key in candidates:
            if key not in seen:
                seen.add(key)
                yield f


# folder as given -> (its real path, (directory, stat signature) of every directory listed, the rule files): a
# command lists the same folder in its main process and again in each worker (load, fingerprint, rule paths)
_LISTINGS: dict[str, tuple[str, list[tuple[str, tuple[int, int]]], list[tuple[Path, str]]]] = {}


def _folder_rules(p: Path) -> list[tuple[Path, str]]:
    """The rule files of a folder with their real paths, sorted by path components; listed again only when one
    of its directories changed (an entry added, removed or renamed changes the directory's modification time)."""
    folder = os.fspath(p)
    base = os.path.realpath(p)  # resolved once (resolving each of 2,400 files cost more than reading them)
    known = _LISTINGS.get(folder)
    if known is not None and known[0] == base and all(_dir_signature(d) == sig for d, sig in known[1]):
        return known[2]
    found: list[tuple[tuple[str, ...], str, bool]] = []
    dirs: list[tuple[str, tuple[int, int]]] = []
    _scan_rules(folder, (), found, dirs)
    found.sort()
    # a file that is itself a link is resolved, so a rule linked into a folder given too loads once
    candidates = [
        (Path(full), os.path.realpath(full) if link else os.path.join(base, *key)) for key, full, link in found
    ]
    from triage.sigma.cache import RACY_NS

    now = time.time_ns()
    # not kept when a link's target could change unseen, or a directory changed within one timestamp tick
    if not any(link for _, _, link in found) and all(now - sig[0] > RACY_NS for _, sig in dirs):
        _LISTINGS[folder] = (base, dirs, candidates)
    return candidates


def _dir_signature(folder: str) -> tuple[int, int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ino


def _scan_rules(
    folder: str,
    parts: tuple[str, ...],
    found: list[tuple[tuple[str, ...], str, bool]],
    dirs: list[tuple[str, tuple[int, int]]],
) -> None:
    """Rule files under ``folder`` as (path components, path, is a link), from directory entries (no stat per
    file); hidden directories and links to directories are not entered. ``dirs`` gets each directory listed
    with its signature, taken before it is read (a change while it is read shows as a changed signature)."""
    # no signature (not readable): one no directory has, so the folder is listed again next time
    dirs.append((folder, _dir_signature(folder) or (0, -1)))
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if not entry.name.startswith("."):
                _scan_rules(entry.path, (*parts, entry.name), found, dirs)
        elif os.path.splitext(entry.name)[1].lower() in RULE_SUFFIXES and entry.is_file():
            found.append(((*parts, entry.name), entry.path, entry.is_symlink()))


def load_rules(paths: Iterable[str | Path], *, logsources: LogsourceMap | None = None) -> RuleSet:
    """Load Sigma rules from files and directories (recursive ``*.yml``/``*.yaml``), unmodified.

    Every rule either compiles or lands in :attr:`RuleSet.skipped` with its path, title/id and a reason:
    unreadable file, YAML error (with line), pySigma parse error, unknown logsource, unsupported modifier
    or value, filter rule, unsupported or unresolved correlation rule, duplicate id. One bad rule never stops
    the others. Correlation rules land in :attr:`RuleSet.correlations`.

    Args:
        paths: rule files and/or directories.
        logsources: logsource map (default: the shipped ``signatures/sigma/logsources.yaml``).

    Large sets with the shipped map are compiled once and kept on disk (:mod:`triage.sigma.cache`), so the
    main process and every worker of a run share one compilation.
    """
    files = list(iter_rule_files(paths))

    def compile_() -> RuleSet:
        lmap = logsources if logsources is not None else load_logsources()
        ruleset = RuleSet(logsources=lmap)
        ids: dict[str, str] = {}
        for path in files:
            if not path.exists():
                ruleset.skipped.append(SkippedRule(str(path), "", "file not found"))
                continue
            _load_file(path, ruleset, ids)
        from triage.sigma.correlation import resolve_correlations

        for corr, reason in resolve_correlations(ruleset):
            ruleset.skipped.append(SkippedRule(corr.path, corr.title, reason, corr.id))
        ruleset._index()  # built once and kept in the compiled cache, not again in every worker
        return ruleset

    if logsources is not None:  # a caller's own map: compile directly
        return compile_()
    from triage.sigma.cache import cached_load

    return cached_load(files, default_logsources_path(), compile_)


def _error_text(exc: BaseException) -> str:
    from sigma.exceptions import SigmaRuleLocation

    text = str(exc.args[0]) if getattr(exc, "args", None) else str(exc)
    source = getattr(exc, "source", None)
    if isinstance(source, SigmaRuleLocation) and source.line is not None:
        text += f" (line {source.line})"
    return text


def _line_of(text: str, needle: str | None) -> int | None:
    if not needle:
        return None
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    return None


def _with_line(reason: str, text: str, needle: str | None) -> str:
    line = _line_of(text, needle)
    return f"{reason} (line {line})" if line else reason


def _load_file(path: Path, ruleset: RuleSet, ids: dict[str, str]) -> None:
    import yaml
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule
    from sigma.exceptions import SigmaRuleLocation
    from sigma.policy.profiles import TrustedPolicy
    from sigma.rule import SigmaRule

    spath = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        ruleset.skipped.append(SkippedRule(spath, "", f"cannot read file: {exc}"))
        return
    sha = hashlib.sha256(data).hexdigest()
    ruleset.files[spath] = sha
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        ruleset.skipped.append(SkippedRule(spath, "", f"file is not UTF-8: {exc}"))
        return
    try:
        docs = [d for d in yaml.load_all(text, Loader=_yaml_loader()) if d is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or str(exc)
        ruleset.skipped.append(SkippedRule(spath, _guess_title(text, path), f"YAML error{where}: {problem}"))
        return
    except yaml.YAMLError as exc:
        ruleset.skipped.append(SkippedRule(spath, _guess_title(text, path), f"YAML error: {exc}"))
        return
    if not docs:
        ruleset.skipped.append(SkippedRule(spath, path.stem, "empty file (no YAML document)"))
        return
    mappings = []
    for number, doc in enumerate(docs, 1):
        if isinstance(doc, dict) and not _RULE_SECTIONS.intersection(doc):
            what = f"YAML document {number} is not a Sigma rule (no detection, correlation or filter section)"
            ruleset.skipped.append(SkippedRule(spath, str(doc.get("title") or path.stem), what))
        elif isinstance(doc, dict):
            mappings.append(doc)
        else:
            what = f"YAML document {number} is a {type(doc).__name__}, not a rule mapping"
            ruleset.skipped.append(SkippedRule(spath, path.stem, what))
    if not mappings:
        return
    titles = [str(d.get("title") or path.stem) for d in mappings]
    for doc in mappings:
        if isinstance(doc.get("detection"), dict):
            doc["detection"] = _alias_modifiers(doc["detection"])
    try:
        collection = SigmaCollection.from_dicts(
            mappings,
            collect_errors=True,
            source=SigmaRuleLocation(path),
            collect_filters=True,
            resolve_references=False,
            policy=TrustedPolicy,  # regexes RE2 cannot run fall back to Python re at evaluation
        )
    except Exception as exc:  # pySigma raised despite collect_errors
        ruleset.skipped.append(SkippedRule(spath, titles[0], f"pySigma could not parse the file: {_error_text(exc)}"))
        return
    rule_errors = {id(e) for r in [*collection.rules, *collection.filters] for e in r.errors}
    for err in collection.errors:
        if id(err) not in rule_errors:
            ruleset.skipped.append(SkippedRule(spath, titles[0], f"pySigma: {_error_text(err)}"))
    for flt in collection.filters:
        ruleset.skipped.append(
            SkippedRule(spath, flt.title or titles[0], "Sigma filter rules are not supported", _rule_id(flt))
        )
    for n, rule in enumerate(collection.rules, 1):
        title = rule.title or path.stem
        if isinstance(rule, SigmaCorrelationRule):
            _add_correlation(rule, spath, sha, n, ruleset, ids)
            continue
        if not isinstance(rule, SigmaRule):  # pragma: no cover - collection only holds these two
            ruleset.skipped.append(SkippedRule(spath, title, f"unsupported object {type(rule).__name__}"))
            continue
        try:
            compiled = _compile(rule, spath, sha, text, n, ruleset)
        except Exception as exc:  # never let one rule stop the load
            log.exception("internal error compiling %s", spath)
            ruleset.skipped.append(
                SkippedRule(spath, title, f"internal error: {type(exc).__name__}: {exc}", _rule_id(rule))
            )
            continue
        if compiled is None:
            continue
        first = ids.get(compiled.id)
        if first is not None:
            ruleset.skipped.append(
                SkippedRule(spath, title, f"duplicate rule id (already loaded from {first})", compiled.id)
            )
            continue
        ids[compiled.id] = spath
        ruleset.loaded.append(compiled)
        if rule.name:
            ruleset.rule_names.setdefault(str(rule.name), compiled.id)


def _add_correlation(rule: SigmaCorrelationRule, path: str, sha: str, n: int, ruleset: RuleSet, ids: dict) -> None:
    """Load one correlation rule (its references are resolved once every file is read)."""
    from triage.sigma.correlation import CorrelationError, build_correlation

    title = rule.title or Path(path).stem
    try:
        corr = build_correlation(rule, path, sha, n)
    except CorrelationError as exc:
        ruleset.skipped.append(SkippedRule(path, title, f"unsupported correlation: {exc}", _rule_id(rule)))
        return
    if corr.id in ids:
        ruleset.skipped.append(
            SkippedRule(path, title, f"duplicate rule id (already loaded from {ids[corr.id]})", corr.id)
        )
        return
    ids[corr.id] = path
    ruleset.correlations.append(corr)


def _alias_modifiers(node: Any) -> Any:
    """Rewrite modifier aliases (e.g. ``|utf16le`` -> ``|wide``) in detection keys; values are untouched."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if isinstance(key, str) and "|" in key:
                head, *mods = key.split("|")
                key = "|".join([head, *(_MODIFIER_ALIASES.get(m, m) for m in mods)])
            out[key] = _alias_modifiers(value) if isinstance(value, (dict, list)) else value
        return out
    if isinstance(node, list):
        return [_alias_modifiers(v) if isinstance(v, (dict, list)) else v for v in node]
    return node


def _guess_title(text: str, path: Path) -> str:
    m = re.search(r"^title:\s*['\"]?(.+?)['\"]?\s*$", text, re.MULTILINE)
    return m.group(1) if m else path.stem


def _rule_id(rule: Any) -> str:
    return str(rule.id) if getattr(rule, "id", None) is not None else ""


def _compile(rule: SigmaRule, path: str, sha: str, text: str, n: int, ruleset: RuleSet) -> CompiledRule | None:
    from sigma.exceptions import SigmaError
    from sigma.rule import SigmaLevel, SigmaStatus
    from sigma.rule.detection import EmptySigmaDetections
    from sigma.rule.logsource import EmptyLogSource

    from triage.sigma.translate import compile_rule

    title = rule.title or Path(path).stem
    rid = _rule_id(rule)

    def skip(reason: str) -> None:
        ruleset.skipped.append(SkippedRule(path, title, reason, rid))

    broken = isinstance(rule.detection, EmptySigmaDetections) or isinstance(rule.logsource, EmptyLogSource)
    if broken:
        reasons = []
        for err in rule.errors:
            reason = _error_text(err)
            m = _UNKNOWN_MODIFIER.search(reason)
            reasons.append(_with_line(reason, text, f"|{m.group(1)}" if m else None))
        skip("pySigma: " + "; ".join(reasons or ["rule has no usable detection or logsource"]))
        return None
    warnings = tuple(_error_text(e) for e in rule.errors)
    for message in warnings:
        ruleset.warnings.append(RuleWarning(path, title, message))

    ls = rule.logsource
    entry = ruleset.logsources.resolve(ls.product, ls.category, ls.service)
    if entry is None:
        label = logsource_label(ls.product, ls.category, ls.service)
        skip(f"unknown logsource: {label} has no entry in the logsource map")
        return None
    try:
        matcher = compile_rule(rule)
    except UnsupportedRule as exc:
        skip(_with_line(f"unsupported: {exc.reason}", text, exc.needle))
        return None
    except SigmaError as exc:
        skip(f"pySigma: {_error_text(exc)}")
        return None

    tags = tuple(str(t) for t in rule.tags)
    parsed = parse_tags(tags)
    logsource = {k: v for k, v in (("product", ls.product), ("category", ls.category), ("service", ls.service)) if v}
    return CompiledRule(
        id=rid or f"nosigmaid-{sha[:16]}-{n}",
        title=title,
        level=str(rule.level) if isinstance(rule.level, SigmaLevel) else "",
        status=str(rule.status) if isinstance(rule.status, SigmaStatus) else "",
        description=rule.description or "",
        author=rule.author or "",
        tags=tags,
        references=tuple(str(r) for r in rule.references),
        falsepositives=tuple(str(f) for f in rule.falsepositives),
        logsource=logsource,
        path=path,
        sha256=sha,
        mitre=parsed.mitre,
        tactics=parsed.tactics,
        cve=parsed.cve,
        ed2102_steps=parsed.ed2102_steps,
        conditions=tuple(rule.detection.condition),
        entry=entry,
        matcher=matcher,
        date=rule.date.isoformat() if rule.date else "",
        modified=rule.modified.isoformat() if rule.modified else "",
        warnings=warnings,
    )
