"""Registry rules as data: load, validate and evaluate the YAML files under ``signatures/registry/``.

A rule picks records from one hive type and keeps those its conditions hold for::

    - id: TRIAGE-REG-CRED-001
      title: WDigest keeps clear-text passwords in memory
      hive: system                         # system|software|sam|security|ntuser|usrclass|amcache|default
      source: registry                     # registry (default) | accounts (SAM) | execution
      key: CurrentControlSet\\Control\\SecurityProviders\\WDigest   # '*' globs a key name; a list is allowed
      value: UseLogonCredential            # optional value-name glob: one record per value, else per key
      where:                               # every item must hold
        - data: {eq: 1}
      severity: high
      mitre: [T1003.001, T1112]
      steps: [9]
      tests: {positive: [...], negative: [...]}

Records. ``registry``: ``key_path``, ``key_name``, ``ts`` (key last write), ``value_name``, ``data``,
``type``, and ``value:<Name>`` for any value of the same key. ``accounts``: see
:func:`~analyzers.registry.artifacts.sam_accounts`. ``execution``: ``source``, ``path``, ``name``,
``ts``, ``user``, ``run_count``, ``sha1`` (``sources`` narrows to amcache/shimcache/bam/userassist).

Conditions. An item maps fields to operators, or is ``any: [items]``, ``all: [items]``, ``not: item``.
Operators: ``equals``/``not_equals`` (strings case-insensitively), ``regex``/``not_regex``
(case-insensitive search), ``in``/``not_in`` (case-insensitive lists), ``exists``/``absent`` (true/false),
``gt``/``lt``/``eq`` (numbers; dates as ``2021-01-01``), ``looks_random`` (true/false: a machine-made
name). For a list (REG_MULTI_SZ) a string operator holds when it holds for any item; binary data is
matched as the UTF-16 text it contains. In SYSTEM hives a leading ``CurrentControlSet`` is resolved
through ``Select\\Current``.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from analyzers.registry.artifacts import execution_records, sam_accounts
from triage.finding import SEVERITIES, RuleMeta
from triage.formats.hive import HIVE_TYPES, Hive, RegKey

SOURCES = ("registry", "accounts", "execution")
EXEC_SOURCES = ("amcache", "shimcache", "bam", "userassist")
RULE_KEYS = {
    "id",
    "title",
    "description",
    "severity",
    "confidence",
    "hive",
    "source",
    "sources",
    "key",
    "value",
    "where",
    "report",
    "mitre",
    "steps",
    "cve",
    "tags",
    "references",
    "false_positives",
    "tests",
}
OPERATORS = {
    "equals",
    "not_equals",
    "regex",
    "not_regex",
    "in",
    "not_in",
    "exists",
    "absent",
    "gt",
    "lt",
    "eq",
    "looks_random",
}
GROUPS = ("any", "all", "not")


class RuleError(ValueError):
    """A rule that cannot be used; the message names the file, line and rule."""


# -- value coercion ------------------------------------------------------------------------------------


def as_text(data: Any) -> str | None:
    """The text a value holds: strings as is, ints in decimal, binary data as its UTF-16 text runs."""
    if data is None:
        return None
    if isinstance(data, str):
        return data
    if isinstance(data, bool):
        return "true" if data else "false"
    if isinstance(data, int):
        return str(data)
    if isinstance(data, datetime):
        return data.isoformat()
    if isinstance(data, bytes | bytearray):
        raw = bytes(data)
        # strings inside binary blobs (TaskCache Actions, ...) may start at odd offsets: read both alignments
        texts = [raw[i:].decode("utf-16-le", errors="ignore") for i in (0, 1)]
        runs = [t for text in texts for t in re.findall(r"[\x20-\x7e\u00a0-\u024f]{3,}", text)]
        return "\n".join(runs)
    return str(data)


def _items(data: Any) -> list[Any]:
    return list(data) if isinstance(data, list | tuple) else [data]


def _number(x: Any) -> float | None:
    if isinstance(x, bool):
        return float(x)
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, datetime):
        return (x if x.tzinfo else x.replace(tzinfo=UTC)).timestamp()
    if isinstance(x, date):
        return datetime(x.year, x.month, x.day, tzinfo=UTC).timestamp()
    if isinstance(x, str):
        s = x.strip()
        try:
            return float(int(s, 0))
        except ValueError:
            pass
        try:
            return _number(datetime.fromisoformat(s.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def looks_random(name: str) -> bool:
    """Whether a key or file name looks machine-generated (e.g. ``xK7qZ2pLm9``, ``a8f3e2d1c9b7``).

    Mixed letters and digits, several switches between them, and no long vowel-free runs that real
    words and acronyms (``Ucx01000``, ``MSSQL``) explain.
    """
    stem = name.rsplit(".", 1)[0]
    if not 7 <= len(stem) <= 32 or not stem.isalnum() or not stem.isascii():
        return False
    digits = sum(c.isdigit() for c in stem)
    if digits == 0 or digits == len(stem):
        return False
    pairs = list(itertools.pairwise(stem))
    switches = sum(1 for a, b in pairs if a.isdigit() != b.isdigit())
    case_switches = sum(1 for a, b in pairs if a.isalpha() and b.isalpha() and a.isupper() != b.isupper())
    counts = Counter(stem.lower())
    entropy = -sum(n / len(stem) * math.log2(n / len(stem)) for n in counts.values())
    return switches >= 3 and (case_switches >= 2 or entropy >= 3.0)


# -- compiled conditions -------------------------------------------------------------------------------

Check = Callable[[dict[str, Any]], bool]


def _op(op: str, arg: Any, where: str) -> Callable[[Any, bool], bool]:
    """A test of one field: f(value, present) -> bool."""

    def strings(pred: Callable[[str], bool]) -> Callable[[Any, bool], bool]:
        return lambda v, present: present and any((t := as_text(i)) is not None and pred(t) for i in _items(v))

    if op in ("exists", "absent"):
        want = bool(arg) if op == "exists" else not bool(arg)
        return lambda v, present: (present and v is not None) == want
    if op in ("equals", "not_equals"):
        target = as_text(arg)
        if target is None:
            raise RuleError(f"{where}: '{op}' needs a value")
        t = target.casefold()
        if op == "equals":
            return strings(lambda s: s.casefold() == t)
        return strings(lambda s: s.casefold() != t)
    if op in ("regex", "not_regex"):
        try:
            rx = re.compile(str(arg), re.IGNORECASE)
        except re.error as exc:
            raise RuleError(f"{where}: bad regex {arg!r}: {exc}") from None
        if op == "regex":
            return strings(lambda s: rx.search(s) is not None)
        return strings(lambda s: rx.search(s) is None)
    if op in ("in", "not_in"):
        if not isinstance(arg, list):
            raise RuleError(f"{where}: '{op}' needs a list")
        options = {str(a).casefold() for a in arg}
        if op == "in":
            return strings(lambda s: s.casefold() in options)
        return strings(lambda s: s.casefold() not in options)
    if op in ("gt", "lt", "eq"):
        n = _number(arg)
        if n is None:
            raise RuleError(f"{where}: '{op}' needs a number or a date, not {arg!r}")

        def cmp(v: Any, present: bool) -> bool:
            if not present:
                return False
            for i in _items(v):
                x = _number(i)
                if x is not None and ((op == "gt" and x > n) or (op == "lt" and x < n) or (op == "eq" and x == n)):
                    return True
            return False

        return cmp
    if op == "looks_random":
        want = bool(arg)
        return lambda v, present: present and any(looks_random(str(i)) == want for i in _items(v) if i is not None)
    raise RuleError(f"{where}: unknown operator {op!r} (known: {', '.join(sorted(OPERATORS))})")


def _field(record: dict[str, Any], name: str) -> tuple[Any, bool]:
    if name.startswith("value:"):
        values: dict[str, Any] = record.get("values") or {}
        key = name[6:].lower()
        return values.get(key), key in values
    return record.get(name), name in record and record[name] is not None


def _any_of(subs: list[Check]) -> Check:
    return lambda r: any(c(r) for c in subs)


def _all_of(subs: list[Check]) -> Check:
    return lambda r: all(c(r) for c in subs)


def _not(check: Check) -> Check:
    return lambda r: not check(r)


def compile_condition(item: Any, where: str) -> Check:
    """Compile one ``where`` item (see the module docstring)."""
    if not isinstance(item, dict) or not item:
        raise RuleError(f"{where}: a condition must be a non-empty mapping, not {item!r}")
    checks: list[Check] = []
    for name, spec in item.items():
        if name in ("any", "all"):
            if not isinstance(spec, list) or not spec:
                raise RuleError(f"{where}: '{name}' needs a non-empty list")
            subs = [compile_condition(s, where) for s in spec]
            checks.append(_any_of(subs) if name == "any" else _all_of(subs))
        elif name == "not":
            sub = compile_condition(spec, where)
            checks.append(_not(sub))
        else:
            if not isinstance(spec, dict) or not spec:
                raise RuleError(f"{where}: field {name!r} needs a mapping of operators, e.g. {{equals: 1}}")
            tests = [_op(op, arg, f"{where}: {name}") for op, arg in spec.items()]

            def check(r: dict[str, Any], f: str = name, t: list[Callable[[Any, bool], bool]] = tests) -> bool:
                v, present = _field(r, f)
                return all(x(v, present) for x in t)

            checks.append(check)
    return lambda r: all(c(r) for c in checks)


# -- rules ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Rule(RuleMeta):
    """One compiled registry rule: its metadata (:class:`RuleMeta`) and what it reads and checks."""

    hive: str
    source: str
    keys: tuple[str, ...]
    value: str | None
    check: Check
    sources: tuple[str, ...] = EXEC_SOURCES
    report: tuple[str, ...] = ()
    tests: dict[str, list[Any]] = field(default_factory=dict)
    file: str = ""
    line: int = 0


@dataclass
class RuleSet:
    """The rules that loaded, and the problems of those that did not (each disables only itself)."""

    rules: list[Rule] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _tuple(raw: Any) -> tuple[Any, ...]:
    if raw is None:
        return ()
    return tuple(raw) if isinstance(raw, list | tuple) else (raw,)


def compile_rule(raw: Any, where: str) -> Rule:
    """Validate and compile one rule mapping; raises :class:`RuleError` naming ``where``."""
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: a rule must be a mapping")
    rid = str(raw.get("id", "?"))
    where = f"{where}: rule {rid}"
    unknown = set(raw) - RULE_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown keys {sorted(unknown)}")
    for req in ("id", "title", "severity", "hive"):
        if not raw.get(req):
            raise RuleError(f"{where}: missing '{req}'")
    if raw["severity"] not in SEVERITIES:
        raise RuleError(f"{where}: severity must be one of {SEVERITIES}")
    if raw["hive"] not in HIVE_TYPES:
        raise RuleError(f"{where}: hive must be one of {HIVE_TYPES}")
    source = raw.get("source", "registry")
    if source not in SOURCES:
        raise RuleError(f"{where}: source must be one of {SOURCES}")
    keys = tuple(str(k).strip("\\") for k in _tuple(raw.get("key")))
    if source == "registry" and not keys:
        raise RuleError(f"{where}: a registry rule needs 'key'")
    sources = tuple(_tuple(raw.get("sources"))) or EXEC_SOURCES
    if set(sources) - set(EXEC_SOURCES):
        raise RuleError(f"{where}: sources must be among {EXEC_SOURCES}")
    conditions = raw.get("where") or []
    if not isinstance(conditions, list):
        raise RuleError(f"{where}: 'where' must be a list")
    compiled = [compile_condition(c, where) for c in conditions]
    return Rule(
        id=rid,
        title=str(raw["title"]),
        description=" ".join(str(raw.get("description", "")).split()),
        severity=raw["severity"],
        confidence=str(raw.get("confidence", "medium")),
        hive=raw["hive"],
        source=source,
        keys=keys,
        value=str(raw["value"]) if raw.get("value") is not None else None,
        check=lambda r: all(c(r) for c in compiled),
        sources=sources,
        report=tuple(str(x) for x in _tuple(raw.get("report"))),
        mitre=tuple(str(x) for x in _tuple(raw.get("mitre"))),
        steps=tuple(str(int(x)) for x in _tuple(raw.get("steps"))),
        cve=tuple(str(x) for x in _tuple(raw.get("cve"))),
        tags=tuple(str(x) for x in _tuple(raw.get("tags"))),
        references=tuple(str(x) for x in _tuple(raw.get("references"))),
        tests=raw.get("tests") or {},
    )


def load_rule_files(paths: list[Path]) -> RuleSet:
    """Load rule files; a bad rule is reported with file and line and disables only itself."""
    out = RuleSet()
    seen: dict[str, str] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            doc = yaml.safe_load(text) or {}
        except (OSError, yaml.YAMLError) as exc:
            out.problems.append(f"{path.name}: cannot load: {exc}")
            continue
        raws = doc.get("rules") if isinstance(doc, dict) else None
        if not isinstance(raws, list):
            out.problems.append(f"{path.name}: no 'rules' list")
            continue
        lines = _rule_lines(node)
        for i, raw in enumerate(raws):
            line = lines[i] if i < len(lines) else 0
            where = f"{path.name}:{line}"
            try:
                rule = compile_rule(raw, where)
            except RuleError as exc:
                out.problems.append(str(exc))
                continue
            if rule.id in seen:
                out.problems.append(f"{where}: rule {rule.id}: id already used at {seen[rule.id]}")
                continue
            seen[rule.id] = where
            rule = replace(rule, file=path.name, line=line)
            out.rules.append(rule)
    return out


def _rule_lines(node: Any) -> list[int]:
    if not isinstance(node, yaml.MappingNode):
        return []
    for k, v in node.value:
        if getattr(k, "value", None) == "rules" and isinstance(v, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in v.value]
    return []


# -- evaluation ----------------------------------------------------------------------------------------


@dataclass
class Match:
    """A rule that held for one record of one hive."""

    rule: Rule
    record: dict[str, Any]
    location: str
    ts: datetime | None


def _key_record(k: RegKey) -> dict[str, Any]:
    return {
        "key_path": k.path,
        "key_name": k.name,
        "ts": k.ts,
        "values": {name: v.data for name, v in k.values.items()},
    }


def registry_records(rule: Rule, hive: Hive) -> Iterator[dict[str, Any]]:
    """Records of a registry rule: one per matching key, or per matching value of each key."""
    for pattern in rule.keys:
        pattern = hive.resolve(pattern) if hive.hive_type == "system" else pattern
        for k in hive.glob(pattern):
            base = _key_record(k)
            if rule.value is None:
                yield base
                continue
            if not any(c in rule.value for c in "*?["):
                v = k.values.get(rule.value.lower())
                yield {**base, "value_name": rule.value, "data": v.data if v else None, "type": v.type if v else None}
                continue
            rx = re.compile(fnmatch.translate(rule.value), re.IGNORECASE)
            for v in k.values.values():
                if rx.match(v.name):
                    yield {**base, "value_name": v.name, "data": v.data, "type": v.type}


def evaluate(rules: list[Rule], hive: Hive, *, root: str = "", user: str = "") -> Iterator[Match]:
    """Every match of ``rules`` (those for this hive's type) in one hive.

    ``root`` prefixes locations (``HKLM\\SYSTEM``); ``user`` names the profile of a user hive.
    Records of the shared sources (accounts, execution) are read once per hive.
    """
    mine = [r for r in rules if r.hive == hive.hive_type]
    cache: dict[str, list[dict[str, Any]]] = {}
    for rule in mine:
        if rule.source == "registry":
            records: Any = registry_records(rule, hive)
        elif rule.source == "accounts":
            if "accounts" not in cache:
                cache["accounts"] = sam_accounts(hive)
            records = cache["accounts"]
        else:
            if "execution" not in cache:
                cache["execution"] = list(execution_records(hive, user))
            records = [r for r in cache["execution"] if r["source"] in rule.sources]
        for rec in records:
            try:
                ok = rule.check(rec)
            except Exception as exc:  # a rule that trips on odd data must not stop the others
                hive.warnings.append(f"rule {rule.id} failed on {rec.get('key_path', '?')}: {exc}")
                continue
            if ok:
                yield Match(rule, rec, _location(rule, rec, root), rec.get("ts"))


def _location(rule: Rule, rec: dict[str, Any], root: str) -> str:
    prefix = f"{root}\\" if root else ""
    if rule.source == "registry":
        loc = prefix + rec["key_path"]
        return f"{loc}\\{rec['value_name']}" if rec.get("value_name") else loc
    if rule.source == "accounts":
        return f"{prefix}{rec['key_path']} ({rec.get('username', '')})"
    return f"{rec['source']}:{rec.get('user', '') + ':' if rec.get('user') else ''}{rec['path']}"


def scalar(v: Any) -> Any:
    """A JSON-friendly rendering of a value for finding attributes."""
    if isinstance(v, bytes | bytearray):
        text = as_text(v)
        return text if text else bytes(v[:64]).hex()
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, list | tuple):
        return [scalar(x) for x in v]
    return v


def match_attributes(m: Match) -> dict[str, Any]:
    """What a finding carries about its match: the record's fields, minus the bulky ones."""
    rec = m.record
    attrs: dict[str, Any] = {k: scalar(v) for k, v in rec.items() if k not in ("values",)}
    if m.rule.report and rec.get("values") is not None:
        attrs["values"] = {n: scalar(rec["values"].get(n.lower())) for n in m.rule.report}
    return attrs
