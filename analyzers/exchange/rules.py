"""Web log indicator rules: small YAML schemas with explicit operators, matched vectorised.

A rule names the logs it applies to (``httpproxy``, ``iis``, ``ecp``) and conditions over the
normalised columns of :func:`analyzers.exchange.logs.normalize` (``method``, ``uri_stem``,
``status``, ``user_agent``, ``client_ip``, ``anchor_mailbox``, ``cmd`` ...)::

    all:  [cond, ...]   every condition holds
    any:  [cond, ...]   at least one holds
    none: [cond, ...]   none holds
    cond: {field: uri_stem, regex: '^/ecp/[^/]\\.js$'}   or a nested {all|any|none: [...]}

Operators: ``equals``, ``in``, ``contains``, ``startswith``, ``endswith`` (a value or a list, any of
them; ``@name`` names a list under ``lists`` or of ``signatures/indicators``), ``regex`` (searched, RE2
syntax so pyarrow can run it); all ignore case unless the condition says ``case: sensitive``.
``after: {rule: ID, within: 24h}`` keeps only rows that come after a hit of rule ID in the same log, within the window.
Every rule carries ``tests.positive`` and ``tests.negative`` example rows. A bad rule is reported
with its file and line and disabled; the others still load.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# numpy, pandas and pyarrow as the readers bind them: loaded on first use
from analyzers.exchange.logs import NORMALIZED, np, pa, pc, pd
from triage.finding import SEVERITIES, RuleMeta
from triage.formats import yamldoc
from triage.indicators import lists as indicator_lists
from triage.registry import signature_path

RULE_DIR = "exchange"
OPERATORS = ("equals", "in", "contains", "startswith", "endswith", "regex")
LOGS = ("httpproxy", "iis", "ecp")
RULE_KEYS = {
    "id", "title", "description", "severity", "confidence", "logs", "all", "any", "none", "after", "mitre", "cve",
    "steps", "tags", "references", "tests",
}  # fmt: skip
FIELDS = frozenset(NORMALIZED) - {"ts"}
_DURATION = re.compile(r"^(\d+)\s*([smhd])$")


class RuleError(ValueError):
    """A rule that cannot be used, with the file and line it starts at."""


@dataclass(frozen=True)
class Cond:
    """One compiled condition (a leaf with an operator, or a group of conditions)."""

    op: str  # an operator, or 'all' | 'any' | 'none'
    field: str = ""
    values: tuple[str, ...] = ()
    sensitive: bool = False
    children: tuple[Cond, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Rule(RuleMeta):
    """One compiled web log rule: its metadata (:class:`RuleMeta`) and what it matches."""

    logs: frozenset[str]
    cond: Cond
    after: tuple[str, pd.Timedelta] | None
    tests: dict[str, list[Any]]
    file: str
    line: int


@dataclass
class RuleSet:
    """The usable rules, in file order, and the problems of those that were disabled."""

    rules: list[Rule] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lists: dict[str, list[str]] = field(default_factory=dict)

    def by_id(self) -> dict[str, Rule]:
        """The rules by id."""
        return {r.id: r for r in self.rules}


# -- loading --------------------------------------------------------------------------------------
def _lines_of_rules(text: str) -> list[int]:
    """1-based line of each item of the top-level ``rules`` sequence."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if getattr(key, "value", None) == "rules" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _values(raw: Any, lists: dict[str, list[str]], where: str) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for item in items:
        if isinstance(item, str) and item.startswith("@"):
            if item[1:] not in lists:
                raise RuleError(f"{where}: unknown list {item}")
            out.extend(str(v) for v in lists[item[1:]])
        elif isinstance(item, bool) or item is None:
            raise RuleError(f"{where}: value {item!r} is not a string or number")
        else:
            out.append(str(item))
    if not out:
        raise RuleError(f"{where}: no values")
    return tuple(out)


def _check_regex(pattern: str, where: str) -> None:
    try:
        re.compile(pattern)
        pc.match_substring_regex(pa.array([""], pa.string()), pattern, ignore_case=True)
    except (re.error, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise RuleError(f"{where}: bad regex {pattern!r}: {exc}") from exc


def _compile_cond(raw: Any, lists: dict[str, list[str]], where: str) -> Cond:
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: a condition must be a mapping, not {type(raw).__name__}")
    groups = [k for k in ("all", "any", "none") if k in raw]
    if groups:
        if len(raw) != 1:
            raise RuleError(f"{where}: a group holds one of all/any/none and nothing else")
        op = groups[0]
        items = raw[op]
        if not isinstance(items, list) or not items:
            raise RuleError(f"{where}: '{op}' needs a non-empty list")
        return Cond(op, children=tuple(_compile_cond(c, lists, f"{where}.{op}[{i}]") for i, c in enumerate(items)))
    unknown = set(raw) - {"field", "case", *OPERATORS}
    if unknown:
        raise RuleError(f"{where}: unknown keys {sorted(unknown)}")
    ops = [k for k in OPERATORS if k in raw]
    if len(ops) != 1:
        raise RuleError(f"{where}: a condition needs exactly one operator of {', '.join(OPERATORS)}")
    fld = raw.get("field")
    if fld not in FIELDS:
        raise RuleError(f"{where}: unknown field {fld!r} (known: {', '.join(sorted(FIELDS))})")
    case = raw.get("case", "insensitive")
    if case not in ("sensitive", "insensitive"):
        raise RuleError(f"{where}: case must be 'sensitive' or 'insensitive'")
    op = ops[0]
    values = _values(raw[op], lists, where)
    if op == "regex":
        if len(values) != 1:
            raise RuleError(f"{where}: regex takes one pattern")
        _check_regex(values[0], where)
    return Cond(op, fld, values, case == "sensitive")


def _duration(text: Any, where: str) -> pd.Timedelta:
    m = _DURATION.match(str(text).strip())
    if not m:
        raise RuleError(f"{where}: duration {text!r} is not like 30m, 24h or 7d")
    return pd.Timedelta(int(m.group(1)), unit=m.group(2))


def _compile_rule(raw: Any, lists: dict[str, list[str]], where: str, file: str, line: int) -> Rule:
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: a rule must be a mapping")
    unknown = set(raw) - RULE_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown keys {sorted(unknown)}")
    for key in ("id", "title", "description", "severity", "logs"):
        if not raw.get(key):
            raise RuleError(f"{where}: missing '{key}'")
    if raw["severity"] not in SEVERITIES:
        raise RuleError(f"{where}: severity {raw['severity']!r} is not one of {SEVERITIES}")
    logs = raw["logs"] if isinstance(raw["logs"], list) else [raw["logs"]]
    bad_logs = [x for x in logs if x not in LOGS]
    if bad_logs:
        raise RuleError(f"{where}: unknown logs {bad_logs} (known: {', '.join(LOGS)})")
    groups = {k: raw[k] for k in ("all", "any", "none") if k in raw}
    if not groups:
        raise RuleError(f"{where}: no conditions (all/any/none)")
    cond = Cond("all", children=tuple(_compile_cond({k: v}, lists, f"{where}") for k, v in groups.items()))
    after = None
    if raw.get("after") is not None:
        spec = raw["after"]
        if not isinstance(spec, dict) or set(spec) - {"rule", "within"} or "rule" not in spec:
            raise RuleError(f"{where}: 'after' needs 'rule' and optionally 'within'")
        after = (str(spec["rule"]), _duration(spec.get("within", "24h"), where))
    tests = raw.get("tests") or {}
    if not isinstance(tests, dict) or not tests.get("positive") or not tests.get("negative"):
        raise RuleError(f"{where}: tests.positive and tests.negative example rows are required")
    return Rule(
        id=str(raw["id"]),
        title=str(raw["title"]),
        description=" ".join(str(raw["description"]).split()),
        severity=str(raw["severity"]),
        confidence=str(raw.get("confidence", "medium")),
        logs=frozenset(logs),
        cond=cond,
        after=after,
        mitre=tuple(str(x) for x in raw.get("mitre", [])),
        cve=tuple(str(x) for x in raw.get("cve", [])),
        steps=tuple(str(x) for x in raw.get("steps", ["8"])),
        tags=tuple(str(x) for x in raw.get("tags", [])),
        references=tuple(str(x) for x in raw.get("references", [])),
        tests=tests,
        file=file,
        line=line,
    )


def load_rule_file(path: Path, into: RuleSet | None = None) -> RuleSet:
    """Load one YAML rule file; a bad rule is recorded in ``errors`` (file:line: why) and skipped."""
    rs = into or RuleSet()
    text = path.read_text(encoding="utf-8")
    try:
        doc = yamldoc.safe_load(text) or {}
    except yaml.YAMLError as exc:
        rs.errors.append(f"{path.name}: not valid YAML: {exc}")
        return rs
    if not isinstance(doc, dict):
        rs.errors.append(f"{path.name}: the top level must be a mapping with 'rules'")
        return rs
    for name, values in indicator_lists().items():  # the shared indicator lists (signatures/indicators)
        rs.lists.setdefault(name, list(values))
    lists = {str(k): [str(v) for v in (vals or [])] for k, vals in (doc.get("lists") or {}).items()}
    rs.lists.update(lists)
    lines = _lines_of_rules(text)
    seen = {r.id for r in rs.rules}
    for i, raw in enumerate(doc.get("rules") or []):
        line = lines[i] if i < len(lines) else 0
        rid = raw.get("id", f"#{i + 1}") if isinstance(raw, dict) else f"#{i + 1}"
        where = f"{path.name}:{line}: rule {rid}"
        try:
            rule = _compile_rule(raw, rs.lists, where, path.name, line)
            if rule.id in seen:
                raise RuleError(f"{where}: id used twice")
        except RuleError as exc:
            rs.errors.append(str(exc))
            continue
        seen.add(rule.id)
        rs.rules.append(rule)
    ids = {r.id for r in rs.rules}
    for rule in list(rs.rules):
        if rule.after and rule.after[0] not in ids:
            rs.errors.append(f"{rule.file}:{rule.line}: rule {rule.id}: 'after' names unknown rule {rule.after[0]}")
            rs.rules.remove(rule)
    return rs


def load_rules(paths: Iterable[Path] | None = None) -> RuleSet:
    """Every ``*.yaml`` rule file under ``signatures/exchange`` (or the given files), in name order."""
    if paths is None:
        paths = sorted(signature_path(RULE_DIR).glob("*.yaml"))
    rs = RuleSet()
    for p in paths:
        load_rule_file(Path(p), rs)
    return rs


# -- matching -------------------------------------------------------------------------------------
class _Columns:
    """Per-frame cache of the columns as Arrow strings (nulls as ''), raw and lower-cased.

    ``subset(rows)`` gives the same view over some rows only, so costly conditions (regexes) run on
    the rows the cheap ones left, not on the whole frame.
    """

    def __init__(self, df: pd.DataFrame | None, parent: _Columns | None = None, rows: np.ndarray | None = None):
        self.df = df
        self.parent = parent
        self.rows = rows
        self.n = len(rows) if rows is not None else len(df)  # type: ignore[arg-type]
        self._raw: dict[str, pa.Array] = {}
        self._low: dict[str, pa.Array] = {}

    def subset(self, rows: np.ndarray) -> _Columns:
        """The same columns over ``rows`` only."""
        return _Columns(None, self, rows)

    def raw(self, name: str) -> pa.Array:
        """A column as it is."""
        if name not in self._raw:
            if self.parent is not None:
                self._raw[name] = self.parent.raw(name).take(pa.array(self.rows))
            elif self.df is not None and name in self.df.columns:
                arr = pa.array(self.df[name], type=pa.large_string(), from_pandas=True)
                self._raw[name] = pc.fill_null(arr, "")
            else:
                self._raw[name] = pa.repeat(pa.scalar("", pa.large_string()), self.n)
        return self._raw[name]

    def low(self, name: str) -> pa.Array:
        """A column lower-cased."""
        if name not in self._low:
            self._low[name] = pc.utf8_lower(self.raw(name))
        return self._low[name]


def _np(arr: pa.Array) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


_COST = {"equals": 0, "in": 0, "startswith": 1, "endswith": 1, "contains": 2, "regex": 3}


def _cost(cond: Cond) -> int:
    return _COST.get(cond.op, 4)


def _eval(cond: Cond, cols: _Columns) -> np.ndarray:
    """A condition as a boolean array, computed with Arrow kernels over whole columns.

    In an ``all`` group the cheap conditions run first and each later one only on the rows still in.
    """
    if cond.op == "all":
        rows = np.arange(cols.n)
        view = cols
        for child in sorted(cond.children, key=_cost):
            rows = rows[_eval(child, view)]
            if not len(rows):
                break
            view = cols.subset(rows)
        out = np.zeros(cols.n, dtype=bool)
        out[rows] = True
        return out
    if cond.op in ("any", "none"):
        hit = np.zeros(cols.n, dtype=bool)
        for child in sorted(cond.children, key=_cost):
            rest = np.flatnonzero(~hit)
            if not len(rest):
                break
            hit[rest[_eval(child, cols.subset(rest))]] = True
        return hit if cond.op == "any" else ~hit
    if cols.n == 0:
        return np.zeros(0, dtype=bool)
    arr = cols.raw(cond.field) if cond.sensitive else cols.low(cond.field)
    values = cond.values if cond.sensitive else tuple(v.lower() for v in cond.values)
    if cond.op in ("equals", "in"):
        return _np(pc.is_in(arr, value_set=pa.array(values, type=pa.large_string())))
    if cond.op == "regex":  # on the original text (lower-casing would change \\D, [A-Z] ...)
        return _np(pc.match_substring_regex(cols.raw(cond.field), cond.values[0], ignore_case=not cond.sensitive))
    kernel = {"contains": pc.match_substring, "startswith": pc.starts_with, "endswith": pc.ends_with}[cond.op]
    return np.logical_or.reduce([_np(kernel(arr, v)) for v in values])


@dataclass
class SequenceState:
    """For ``after`` rules: the last time each referenced rule hit in the log read so far."""

    last: dict[str, pd.Timestamp] = field(default_factory=dict)


def match_frame(
    rules: Iterable[Rule], df: pd.DataFrame, log: str, state: SequenceState | None = None
) -> Iterator[tuple[Rule, np.ndarray]]:
    """``(rule, boolean mask)`` for every rule with at least one hit in a normalised frame.

    ``state`` carries ``after`` conditions across the frames of one log (frames in file order).
    """
    state = state if state is not None else SequenceState()
    cols = _Columns(df)
    masks: dict[str, np.ndarray] = {}
    ordered = sorted((r for r in rules if log in r.logs), key=lambda r: r.after is not None)
    ts = df["ts"] if "ts" in df.columns else pd.Series(pd.NaT, index=df.index, dtype="datetime64[ms, UTC]")
    for rule in ordered:
        mask = _eval(rule.cond, cols)
        if rule.after is not None and mask.any():
            ref, within = rule.after
            ref_mask = masks.get(ref)
            prior = ts.where(ref_mask) if ref_mask is not None else pd.Series(pd.NaT, index=df.index, dtype=ts.dtype)
            # the latest hit of the referenced rule on an earlier line, in this frame or a previous one
            prior = prior.shift(1)
            if ref in state.last and len(prior) and pd.isna(prior.iloc[0]):
                prior.iloc[0] = state.last[ref]
            delta = ts - prior.ffill()
            mask &= ((delta >= pd.Timedelta(0)) & (delta <= within)).fillna(False).to_numpy(dtype=bool)
        masks[rule.id] = mask
        if mask.any():
            yield rule, mask
    for rule_id, mask in masks.items():
        if mask.any():
            t = ts[mask].dropna()
            if len(t):
                state.last[rule_id] = t.iloc[-1]


def example_frame(rows: list[dict[str, Any]], log: str) -> pd.DataFrame:
    """A normalised frame from rule example rows (missing columns are empty; ``ts`` parsed)."""
    data: dict[str, list[Any]] = {c: [] for c in NORMALIZED}
    for row in rows:
        for c in NORMALIZED:
            data[c].append(str(row.get(c, log if c == "log" else "")))
    df = pd.DataFrame({c: pd.Series(v, dtype="str") for c, v in data.items() if c != "ts"})
    derived = df["uri_stem"].str.extract(r"([^/]*)$", expand=False).fillna("")
    df["uri_file"] = df["uri_file"].where(df["uri_file"] != "", derived)
    df["ts"] = pd.to_datetime(pd.Series(data["ts"], dtype="str").replace("", None), utc=True, format="ISO8601")
    return df


def example_hits(rule: Rule, example: Any, rules: RuleSet) -> tuple[int, int | None]:
    """How many rows of one example a rule hits, and the count the example expects (if it says)."""
    if isinstance(example, dict) and "rows" in example:
        rows, expect = example["rows"], example.get("matches")
    else:
        rows, expect = [example], None
    log = str(rows[0].get("log", sorted(rule.logs)[0])) if rows else sorted(rule.logs)[0]
    df = example_frame(rows, log)
    deps = [rules.by_id()[rule.after[0]]] if rule.after else []
    hits = 0
    for r, mask in match_frame([*deps, rule], df, log):
        if r.id == rule.id:
            hits = int(mask.sum())
    return hits, expect


__all__ = [
    "FIELDS",
    "LOGS",
    "OPERATORS",
    "Cond",
    "Rule",
    "RuleError",
    "RuleSet",
    "SequenceState",
    "example_frame",
    "example_hits",
    "load_rule_file",
    "load_rules",
    "match_frame",
]
