"""Turn a parsed pySigma rule into a tree of vectorised matchers.

Leaves test one field (or, for keywords, every text column) against values with Arrow compute kernels and
numpy; :class:`And`, :class:`Or` and :class:`Not` combine them. Evaluation works on a *selection vector*:
once an AND has ruled most rows out, its remaining children only look at the rows still alive (and an OR's
remaining children only at the rows not yet matched), so expensive regexes rarely see the whole sub-frame.

String semantics (Sigma): case-insensitive unless ``|cased`` (values produced by ``|base64``/``|base64offset``
are matched case-sensitively too, since Base64 is case-significant); ``*``/``?`` wildcards, with ``\\*``,
``\\?`` and ``\\\\`` escapes, as anchored regexes; plain values as equality; ``|re`` as an unanchored search,
case-sensitive unless ``|i``. A field the table does not have never matches, except for ``null`` and
``|exists: false`` which then match.
"""

from __future__ import annotations

import re
import string
from bisect import bisect_right
from collections.abc import Container, Hashable, Iterator, Mapping, Sequence
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from triage.arrowlite import numbers
from triage.sigma.frame import SubFrame, to_bool_array

_PUNCT = frozenset(string.punctuation)
_DENSE = 0.5  # above this fraction of rows still undecided, children see the whole selection
_EMPTY = pa.array([""], type=pa.large_string())


class UnsupportedRule(Exception):
    """The rule uses a feature this engine does not evaluate; ``needle`` helps locate it in the file."""

    def __init__(self, reason: str, needle: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.needle = needle


# --------------------------------------------------------------------------------------------- regex helpers
def regex_escape(text: str) -> str:
    """Escape a literal for both RE2 (Arrow) and Python ``re``: ASCII punctuation and control characters."""
    out = []
    for ch in text:
        if ch in _PUNCT:
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _fragment(kind: str, text: str) -> str:
    if kind == "eq":
        return f"^{regex_escape(text)}$"
    if kind == "contains":
        return regex_escape(text)
    if kind == "startswith":
        return f"^{regex_escape(text)}"
    if kind == "endswith":
        return f"{regex_escape(text)}$"
    return text  # wildcard: already an anchored regex


def _py_fragment(kind: str, text: str) -> str:
    """The same test as :func:`_fragment` for Python ``re``: ``\\Z`` ends the text (``$`` would also match
    before a final newline, RE2's does not)."""
    if kind == "eq":
        return f"^{regex_escape(text)}\\Z"
    if kind == "endswith":
        return f"{regex_escape(text)}\\Z"
    if kind == "wildcard":  # "^body$": the last character is always the anchor we appended
        return text[:-1] + "\\Z"
    return _fragment(kind, text)


# Below this many rows a test runs in Python on the values: Arrow's per-call cost (RE2 compiles the
# pattern on every call) dominates tiny sub-frames, the shape of many small logs.
SMALL_ROWS = 64
# Up to this many distinct values a column's test runs in Python on them (see :func:`distinct_hits`).
SMALL_DISTINCT = 128
_PY_REGEX: dict[str, Any] = {}  # pattern -> compiled search, once per process (re's own cache holds 512)


def _py_regex(pattern: str) -> Any:
    found = _PY_REGEX.get(pattern)
    if found is None:
        found = _PY_REGEX[pattern] = re.compile(pattern, re.DOTALL).search
    return found


class DistinctValues:
    """A sub-frame column's distinct values (raw or folded), and what tests over them need, each built once.

    ``codes`` maps each row to its value (-1 for null). Literal tests do not loop over the values in Python:
    the values are joined by NUL into one text and each needle is found with ``str.find`` (C speed), at most
    once per value it occurs in; equality is a dictionary lookup per needle.
    """

    def __init__(self, codes: np.ndarray, arr: pa.Array) -> None:
        self.codes = codes
        self.arr = arr
        self.n = len(arr)
        # what cover sweeps learnt of the joined text: (needles looked for, those found), see :meth:`absent`
        self.sweeps: list[tuple[Container[str], Container[str]]] = []

    def absent(self, needle: str) -> bool:
        """Whether a cover sweep over the joined text already found ``needle`` in no value (then a test needs
        no scan of the text for it: most needles of a big rule set occur nowhere)."""
        for looked, found in self.sweeps:
            if needle in looked:
                return needle not in found
        return False

    @cached_property
    def items(self) -> list[str]:
        """The values as Python strings (a dictionary has no nulls)."""
        return self.arr.to_pylist()

    @cached_property
    def index(self) -> dict[str, int]:
        """Value -> its position."""
        return {v: i for i, v in enumerate(self.items)}

    @cached_property
    def joined(self) -> tuple[str, list[int]] | None:
        """``NUL + v0 + NUL + v1 ... + NUL`` and each value's start in it; None when a value holds a NUL."""
        text = "\0" + "\0".join(self.items) + "\0"
        if text.count("\0") != self.n + 1:
            return None
        lengths = numbers(pc.utf8_length(self.arr), 0).astype(np.int64)
        starts = (np.cumsum(lengths + 1) - lengths).tolist()  # value i starts after i + 1 NULs and the values before
        return text, [*starts, len(text) + 1]

    def mark(self, pattern: str, offset: int, hit: np.ndarray) -> None:
        """Set ``hit`` for every value holding ``pattern`` (found at its start + ``offset``): contains, or with
        a NUL before (startswith) or after (endswith) the needle."""
        if self.sweeps and self.absent(pattern):
            return
        text, starts = self.joined  # type: ignore[misc]
        find = text.find
        pos = find(pattern)
        while pos >= 0:
            i = bisect_right(starts, pos + offset) - 1
            hit[i] = True
            pos = find(pattern, starts[i + 1] - 1)  # on from the next value: each value is marked once


def joined_needles(test: StringTest) -> tuple[list[str], str | None] | None:
    """What to look for in a column's NUL-joined distinct values (:attr:`DistinctValues.joined`) to learn
    whether some value passes ``test``: ``(needles, regex)``, found when one needle is a substring of the text
    or the regex (its wildcards, kept inside one value) is found in it. Exact for values holding no NUL, when
    there is at least one value.

    The cover pass looks for the needles of every rule testing a column in one sweep of the text, instead of
    one test call per rule. None for a test with no such form (a ``|re`` regex, whose own anchors and dots
    would see the whole text).
    """
    if test.any:
        return [""], None
    if test._py_spec is None:
        return None
    needles, wild = [], []
    for kind, text in test._py_spec:
        if kind == "eq":
            needles.append("\0" + text + "\0")
        elif kind == "contains":
            needles.append(text)
        elif kind == "startswith":
            needles.append("\0" + text)
        elif kind == "endswith":
            needles.append(text + "\0")
        elif kind == "wildcard":  # "^body$" of escaped literals, ".*" and "."
            wild.append(wildcard_regex(text))
        else:
            return None
    return needles, "|".join(wild) if wild else None


def wildcard_regex(text: str) -> str:
    """The regex finding a wildcard pattern (``^body$`` from :func:`classify`) in NUL-joined values."""
    return "\\x00" + _joined_wildcard(text[1:-1]) + "\\x00"


_WILD_FACTORS: dict[str, tuple[tuple[str, ...], bool] | None] = {}  # joined regex -> its literals, per process


def wildcard_factors(regex: str) -> tuple[str, ...]:
    """Literals one of which any match of a joined-text regex holds (none: no such set)."""
    if regex not in _WILD_FACTORS:
        _WILD_FACTORS[regex] = regex_factors(regex)
    found = _WILD_FACTORS[regex]
    return found[0] if found is not None else ()


def _all_absent(needles: tuple[str, ...], values: DistinctValues) -> bool:
    """Whether a sweep of the values' joined text found none of ``needles`` (none given: not known)."""
    return bool(needles) and all(values.absent(needle) for needle in needles)


def _joined_wildcard(body: str) -> str:
    """A wildcard regex body from :func:`classify` with its dots kept inside one value."""
    out, i, n = [], 0, len(body)
    while i < n:
        ch = body[i]
        if ch == "\\":  # an escape of regex_escape: "\\xNN" or "\\<punctuation>"
            step = 4 if body[i + 1] == "x" else 2
            out.append(body[i : i + step])
            i += step
        elif body.startswith(".*", i):
            out.append("[^\\x00]*")
            i += 2
        elif ch == ".":
            out.append("[^\\x00]")
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# where a column keeps its distinct values (see :func:`_distinct`): folded, raw
_DISTINCT_SLOTS = ("_distinct_folded", "_distinct_raw")


def _distinct(col: Any, cased: bool) -> DistinctValues:
    """A column's distinct raw or folded values (kept on the column: one encoding per sub-frame column), so
    every test of every rule on it runs over the distinct values only: event logs repeat the same images,
    users and paths many times."""
    slot = _DISTINCT_SLOTS[cased]
    found = col.__dict__.get(slot)
    if found is None:
        encoded = pc.dictionary_encode(col.strings(cased, None))
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        codes = numbers(encoded.indices, -1).astype(np.int64)
        found = col.__dict__[slot] = DistinctValues(codes, encoded.dictionary)
    return found


def _row_values(col: Any, cased: bool, sel: np.ndarray | None) -> list[str | None]:
    """The selected rows' raw or folded strings as Python values (``Column.values``), read through the column's
    distinct values when a cover sweep has built them: a few rows then cost no conversion of the whole column."""
    values = col.__dict__.get(_DISTINCT_SLOTS[cased])
    if values is None:
        return col.values(cased, sel)
    items = values.items
    return [items[c] if c >= 0 else None for c in (values.codes if sel is None else values.codes[sel]).tolist()]


def distinct_hits(col: Any, test: StringTest) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, hit)``: ``hit[codes]`` is the test's result per row (``hit`` ends with False for nulls).

    The result per distinct value is kept on the column by the test's key: rules testing the same field with
    the same values (common in large rule sets) share one evaluation per sub-frame, whatever rows they select.
    """
    memo = col.__dict__.setdefault("_hits", {})
    key = (test.cased, test.key)
    hit = memo.get(key)
    values = _distinct(col, test.cased)
    if hit is None:
        res = test.run_distinct(values) if test.small_ok else None
        if res is None and test.small_ok and values.n <= SMALL_DISTINCT:
            res = test.run_values(values.items)
        elif res is None and test.factors is not None and _none_found(col, *test.factors):
            res = np.zeros(values.n, dtype=bool)  # a regex none of whose required literals is in any value
        elif res is None:
            res = test.run(values.arr)
        hit = memo[key] = np.append(res, False)
    return values.codes, hit


def _none_found(col: Any, needles: tuple[str, ...], folded: bool) -> bool:
    """Whether no distinct value of the column (folded ones for ``folded``) holds any of ``needles``: one ``in``
    each over the joined text. False when that cannot be told: a value holding a NUL, or folded values holding
    a character a case-insensitive regex equates with an ASCII letter that lower-casing leaves alone."""
    values = _distinct(col, not folded)
    joined = values.joined if values.n else None
    if joined is None:
        return False
    text = joined[0]
    if folded and any(ch in text for ch in _FOLD_STRAYS):
        return False
    return not any(needle in text for needle in needles)


# characters a case-insensitive regex (RE2 or Python's re) matches to an ASCII letter while lower-casing keeps
# them apart: LATIN SMALL LETTER LONG S (~ s), DOTLESS I (~ i in Python's re); KELVIN SIGN lower-cases to k
_FOLD_STRAYS = ("\u017f", "\u0131")
_MIN_FACTOR = 3  # a shorter required literal occurs in almost every text: not worth looking for


def regex_factors(pattern: str) -> tuple[tuple[str, ...], bool] | None:
    """Literals one of which every match of ``pattern`` contains, and whether they are to be looked for in
    lower-cased text (a case-insensitive pattern): when none is in a column's values, the regex cannot match
    any of them and need not run. None when the pattern yields no such set (or uses syntax whose meaning could
    differ between RE2 and Python's parser, which reads it here).

    Sound by construction: a literal run is taken only from consecutive literal characters of one sequence, a
    group or a repeat of at least one contributes what its body requires, an alternation the union of its
    branches' (each branch must yield some), anything else only separates runs.
    """
    if any(mark in pattern for mark in ("[:", "\\Q", "\\p", "\\P", "\\C", "\\z")):
        return None  # POSIX classes, quoting, Unicode classes, bytes: RE2 only
    import warnings
    from re import _parser as sre_parse  # type: ignore[attr-defined]

    try:
        with warnings.catch_warnings():  # "possible nested set" and the like: the parse is only read here
            warnings.simplefilter("ignore")
            parsed = sre_parse.parse(pattern)
    except Exception:  # not Python syntax: no prefilter, the regex runs as before
        return None
    folded = bool(parsed.state.flags & re.IGNORECASE)
    found = _required(parsed.data, folded)
    if not found or min(map(len, found)) < _MIN_FACTOR:
        return None
    return tuple(sorted(found)), folded


def _required(items: Any, folded: bool) -> frozenset[str] | None:
    """What a sequence of parsed regex items requires (see :func:`regex_factors`), or None."""
    from re import _constants as c  # type: ignore[attr-defined]

    choices: list[frozenset[str]] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            choices.append(frozenset({"".join(run)}))
            run.clear()

    for op, av in items:
        if op is c.LITERAL and (not folded or chr(av).isascii()):
            run.append(chr(av).lower() if folded else chr(av))
            continue
        flush()
        inner: frozenset[str] | None = None
        if op is c.SUBPATTERN and not (av[1] or av[2]):  # a group without flags of its own
            inner = _required(av[3], folded)
        elif op is c.ATOMIC_GROUP:
            inner = _required(av, folded)
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT) and av[0] >= 1:
            inner = _required(av[2], folded)
        elif op is c.BRANCH:
            branches = [_required(branch, folded) for branch in av[1]]
            if branches and all(branches):
                inner = frozenset().union(*branches)  # type: ignore[arg-type]
        if inner:
            choices.append(inner)
    flush()
    choices = [choice for choice in choices if "" not in choice]
    if not choices:
        return None
    # the most telling set: its shortest literal longest, then the fewest literals
    return max(choices, key=lambda choice: (min(map(len, choice)), -len(choice)))


_VALUE_SETS: dict[tuple[str, ...], pa.Array] = {}  # equality values -> their Arrow array, once per process


def _value_set(values: tuple[str, ...]) -> pa.Array:
    found = _VALUE_SETS.get(values)
    if found is None:
        found = _VALUE_SETS[values] = pa.array(values, type=pa.large_string())
    return found


def _arrow_regex_ok(pattern: str) -> bool:
    try:
        pc.match_substring_regex(_EMPTY, pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


class StringTest:
    """OR of string patterns applied to one Arrow string array (raw when ``cased``, else folded).

    Equality values become one ``is_in``; a single prefix/suffix uses the native kernel; everything else is
    merged into one RE2 alternation (one pass over the data). A ``|re`` regex RE2 cannot compile (look-around,
    back-references) falls back to Python ``re`` through pandas' string accessor.
    """

    # |re: literals one of which any match holds (see regex_factors); wildcards: the literals each needs (see
    # wildcard_factors); both derived at compile time and kept in the compiled cache with the test
    factors: tuple[tuple[str, ...], bool] | None = None
    wild_needles: Mapping[str, tuple[str, ...]] = MappingProxyType({})

    def __init__(
        self,
        patterns: Sequence[tuple[str, str]] = (),
        *,
        cased: bool = False,
        regex: str | None = None,
        regex_flags: str = "",
    ) -> None:
        self.cased = cased
        self.any = any(kind == "any" for kind, _ in patterns)
        self.ops: list[tuple[str, Any]] = []
        self.py_regex: re.Pattern[str] | None = None
        self._py_spec: tuple[tuple[str, str], ...] | None = None
        if regex is not None:
            self.cased = True  # |re matches the original text; |i is a regex flag
            pattern = f"(?{regex_flags}){regex}" if regex_flags else regex
            if _arrow_regex_ok(pattern):
                self.ops.append(("regex", pattern))
            else:
                try:
                    self.py_regex = re.compile(pattern)
                except re.error as exc:
                    raise UnsupportedRule(f"invalid regular expression {regex!r}: {exc}") from exc
            self.key: Hashable = ("re", pattern)
            self.cost = 8.0 if self.py_regex is None else 80.0
            self.factors = regex_factors(pattern)
            return
        uniq = sorted(set(patterns))
        self._py_spec = tuple(uniq)  # generated patterns only: these have an exact Python equivalent
        wild = {text: wildcard_factors(wildcard_regex(text)) for kind, text in uniq if kind == "wildcard"}
        if wild:  # only then an attribute of its own (the class's empty default is shared: 11,000 fewer dicts)
            self.wild_needles = wild
        self.key = ("str", self.cased, tuple(uniq))
        eqs = [text for kind, text in uniq if kind == "eq"]
        rest = [(kind, text) for kind, text in uniq if kind not in ("eq", "any")]
        if eqs:
            # the value set as a tuple, made an Arrow array on first use: thousands of small Arrow arrays made
            # unpickling a compiled set a third slower
            self.ops.append(("eq", eqs[0]) if len(eqs) == 1 else ("isin", tuple(eqs)))
        if len(rest) == 1 and rest[0][0] in ("startswith", "endswith"):
            self.ops.append(rest[0])
        elif rest:
            self.ops.append(("regex", "(?s)" + "|".join(_fragment(kind, text) for kind, text in rest)))
        weights = {"eq": 1.0, "isin": 1.0, "startswith": 2.0, "endswith": 2.0}
        self.cost = sum(weights.get(k, 8.0) for k, _ in self.ops) + 0.1 * len(rest)

    @property
    def small_ok(self) -> bool:
        """Whether :meth:`run_values` can evaluate this test (not for ``|re``, whose dialect is RE2's)."""
        return self._py_spec is not None

    def _py_test(self) -> Any:
        """One predicate over a (non-null) string doing every test of the spec, built once per process."""
        pred = self.__dict__.get("_py_pred")
        if pred is None:
            spec = self._py_spec or ()
            by_kind: dict[str, list[str]] = {}
            for kind, text in spec:
                by_kind.setdefault(kind, []).append(text)
            # literals as str operations (compiling thousands of Python regexes per process cost more than the
            # tests); only true wildcards become one regex, compiled once per process for every rule using it
            eqs = frozenset(by_kind.get("eq", ()))
            starts = tuple(by_kind.get("startswith", ()))
            ends = tuple(by_kind.get("endswith", ()))
            contains = tuple(by_kind.get("contains", ()))
            wild = by_kind.get("wildcard")
            search = _py_regex("|".join(_py_fragment("wildcard", t) for t in wild)) if wild else None
            checks: list[Any] = []
            if eqs:
                checks.append(eqs.__contains__)
            if starts:
                checks.append(lambda v: v.startswith(starts))
            if ends:
                checks.append(lambda v: v.endswith(ends))
            if len(contains) == 1:
                needle = contains[0]
                checks.append(lambda v: needle in v)
            elif contains:
                checks.append(lambda v: any(t in v for t in contains))
            if search is not None:
                checks.append(lambda v: search(v) is not None)
            if len(checks) == 1:
                pred = checks[0]
            elif len(checks) == 2:
                first, second = checks
                pred = lambda v: first(v) or second(v)  # noqa: E731
            else:
                pred = lambda v: any(check(v) for check in checks)  # noqa: E731
            self.__dict__["_py_pred"] = pred
        return pred

    def run_distinct(self, values: DistinctValues) -> np.ndarray | None:
        """The same matches as :meth:`run` over a column's distinct values, literals found in their joined text;
        None when this test cannot run that way (a wildcard over many values, a value holding a NUL)."""
        if self.any:
            return np.ones(values.n, dtype=bool)
        spec = self._py_spec or ()
        wild = [text for kind, text in spec if kind == "wildcard"]
        if wild and values.sweeps:  # wildcards a cover sweep showed cannot match (a literal of each is nowhere)
            wild = [text for text in wild if not _all_absent(self.wild_needles.get(text, ()), values)]
        if (wild and values.n > SMALL_DISTINCT) or values.joined is None:
            return None
        hit = np.zeros(values.n, dtype=bool)
        for kind, text in spec:
            if kind == "eq":
                i = values.index.get(text)
                if i is not None:
                    hit[i] = True
            elif not text and kind in ("contains", "startswith", "endswith"):
                hit[:] = True
            elif kind == "contains":
                values.mark(text, 0, hit)
            elif kind == "startswith":
                values.mark("\0" + text, 1, hit)
            elif kind == "endswith":
                values.mark(text + "\0", 0, hit)
        if wild:
            search = _py_regex("|".join(_py_fragment("wildcard", t) for t in wild))
            items = values.items
            for i in np.flatnonzero(~hit).tolist():
                if search(items[i]) is not None:
                    hit[i] = True
        return hit

    def run_values(self, values: Sequence[str | None]) -> np.ndarray:
        """The same matches as :meth:`run`, over Python strings (for a few values; see ``small_ok``)."""
        if self.any:
            return np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
        pred = self._py_test()
        return np.fromiter((v is not None and bool(pred(v)) for v in values), dtype=bool, count=len(values))

    def run(self, arr: pa.Array) -> np.ndarray:
        """Boolean matches over ``arr`` (nulls never match)."""
        if self.any:
            return to_bool_array(pc.is_valid(arr))
        out: np.ndarray | None = None
        if self.py_regex is not None:
            import pandas as pd  # only for patterns RE2 cannot run (the event-log path stays free of pandas)

            series = pd.Series(arr.to_numpy(zero_copy_only=False), dtype=object)
            out = series.str.contains(self.py_regex, regex=True, na=False).to_numpy(dtype=bool)
        for kind, arg in self.ops:
            if kind == "eq":  # a typed scalar: a bare Python one would make Arrow infer its type (and import pandas)
                res = pc.equal(arr, pa.scalar(arg, arr.type) if isinstance(arg, str) else arg)
            elif kind == "isin":
                res = pc.is_in(arr, value_set=_value_set(arg))
            elif kind == "startswith":
                res = pc.starts_with(arr, arg)
            elif kind == "endswith":
                res = pc.ends_with(arr, arg)
            else:
                res = pc.match_substring_regex(arr, arg)
            part = to_bool_array(res)
            out = part if out is None else (out | part)
        assert out is not None
        return out


# --------------------------------------------------------------------------------------------- matcher tree
class Node:
    """A matcher: ``eval(ctx, sel)`` returns a bool array over the selected rows of the sub-frame."""

    cost: float = 1.0

    def eval(self, ctx: SubFrame, sel: np.ndarray | None) -> np.ndarray:  # pragma: no cover - abstract
        """Match the rows ``sel`` (positions into the sub-frame; None = all of them)."""
        raise NotImplementedError

    def leaves(self) -> Iterator[Leaf]:  # pragma: no cover - abstract
        """All leaf matchers below this node."""
        raise NotImplementedError


class Leaf(Node):
    """A field test; results over the whole sub-frame are cached when several rules share the same test."""

    key: Hashable

    def eval(self, ctx: SubFrame, sel: np.ndarray | None) -> np.ndarray:
        """Match, re-using a shared cached result when there is one."""
        cached = ctx.results.get(self.key)
        if cached is not None:
            return cached if sel is None else cached[sel]
        out = self.match(ctx, sel)
        if sel is None and self.key in ctx.shared:
            ctx.results[self.key] = out
        return out

    def match(self, ctx: SubFrame, sel: np.ndarray | None) -> np.ndarray:  # pragma: no cover - abstract
        """Compute the result (no caching)."""
        raise NotImplementedError

    def leaves(self) -> Iterator[Leaf]:
        """Itself."""
        yield self


def _pick(values: np.ndarray, sel: np.ndarray | None) -> np.ndarray:
    return values if sel is None else values[sel]


class StrLeaf(Leaf):
    """A field tested against string patterns (or one ``|re`` regex)."""

    def __init__(self, field: str, test: StringTest) -> None:
        self.field = field
        self.test = test
        self.key = ("field", field, test.key)
        self.cost = test.cost

    def match(self, ctx: SubFrame, sel: np.ndarray | None) -> np.ndarray:
        """Run the string test on the field's raw or folded strings."""
        col = ctx.column(self.field)
        if col is None:
            return ctx.zeros(sel)
        if self.test.small_ok and (ctx.n if sel is None else len(sel)) <= SMALL_ROWS:
            return self.test.run_values(_row_values(col, self.test.cased, sel))
        codes, hit = distinct_hits(col, self.test)
        return hit[codes if sel is None else codes[sel]]


class KeywordLeaf(Leaf):
    """Field-less values: match when any text column (see ``SubFrame.text_columns``) matches."""

    def __init__(self, test: StringTest) -> None:
        self.test = test
        self.key = ("keyword", test.key)
        self.cost = test.cost * 20

    def match(self, ctx: SubFrame, sel: np.ndarray | None) -> np.ndarray:
        """OR of the test over every text column."""
        out = ctx.zeros(sel)
        small = self.test.small_ok and len(out) <= SMALL_ROWS
        for col in ctx.text_columns:
            if small:
                out |= self.test.run_values(_row_values(col, self.test.cased, sel))
            else:
                codes, hit = distinct_hits(col, self.test)
                out |= hit[codes if sel is None else codes[sel]]
        return out


_NUM_OPS = {"lt": np.less, "lte": np.less_equal, "gt": np.greater, "gte": np.greater_equal, "neq": np.not_equal}


class NumLeaf(Leaf):
    """Numeric equality (any of ``values``) or comparison, on numbers and numeric-looking strings."""

    def __init__(self, field: str, op: str, values: Sequence[float]) -> None:
        """``op``: ``eq`` (any of ``values``), or ``lt``, ``lte``, ``gt``, ``gte``, ``neq`` (the one value)."""
        if op != "eq" and op not in _NUM_OPS:
            raise ValueError(f"unknown numeric comparison {op!r}")
        self.field = field
        self.op = op
        self.values = np.asarray(sorted(set(values)), dtype="float64")
        self.key = ("num", field, str(op), tuple(self.values.tolist()))
        self.cost = 1.0

    def match(self, ctx: SubFrame, sel: np.ndarray | None) -> np.ndarray:
        """Compare the field's numeric view; missing or non-numeric values never match."""
        col = ctx.column(self.field)
        if col is None:
            return ctx.zeros(sel)
        num = _pick(col.numeric, sel)
        if self.op == "eq":
            return np.isin(num, self.values)
        with np.errstate(invalid="ignore"):
            return _NUM_OPS[self.op](num, self.values[0]) & ~np.isnan(num)


class BoolLeaf(Leaf):
    """Boolean value: real booleans, 'true'/'false' strings, or 1/0."""

    def __init__(self, field: str, value: bool) -> None:
        self.field, self.value = field, value
        self.key = ("bool", field, value)

    def match(self, ctx: SubFrame, sel: np.ndarray | None) -> np.ndarray:
        """Look the value up in the field's boolean view."""
        col = ctx.column(self.field)
        if col is None:
            return ctx.zeros(sel)
        is_true, is_false = col.booleans
        return _pick(is_true if self.value else is_false, sel)


class NullLeaf(Leaf):
    """``field: null``: the value is missing or empty (a column the table lacks counts as missing)."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.key = ("null", field)
        self.cost = 0.5

    def match(self, ctx: SubFrame, sel: np.ndarray | None) -> np.ndarray:
        """Missing-or-empty test."""
        col = ctx.column(self.field)
        if col is None:
            return ctx.ones(sel)
        return _pick(~col.notna | col.empty, sel)


class ExistsLeaf(Leaf):
    """``field|exists: true/false``: the value is present (not NA) or not."""

    def __init__(self, field: str, exists: bool) -> None:
        self.field, self.exists = field, exists
        self.key = ("exists", field, exists)
        self.cost = 0.5

    def match(self, ctx: SubFrame, sel: np.ndarray | None) -> np.ndarray:
        """Presence test."""
        col = ctx.column(self.field)
        if col is None:
            return ctx.zeros(sel) if self.exists else ctx.ones(sel)
        present = _pick(col.notna, sel)
        return present if self.exists else ~present


def _in_network(ver: np.ndarray, hi: np.ndarray, lo: np.ndarray, net: Any) -> np.ndarray:
    prefix = net.prefixlen
    value = int(net.network_address)
    if net.version == 4:
        ok = ver == 4
        if prefix == 0:
            return ok
        shift = np.uint64(32 - prefix)
        return ok & ((lo >> shift) == np.uint64(value >> (32 - prefix)))
    ok = ver == 6
    if prefix == 0:
        return ok
    nhi, nlo = value >> 64, value & 0xFFFFFFFFFFFFFFFF
    if prefix <= 64:
        shift = np.uint64(64 - prefix)
        return ok & ((hi >> shift) == np.uint64(nhi >> (64 - prefix)))
    shift = np.uint64(128 - prefix)
    return ok & (hi == np.uint64(nhi)) & ((lo >> shift) == np.uint64(nlo >> (128 - prefix)))


class CidrLeaf(Leaf):
    """``|cidr``: the field holds an IPv4/IPv6 address inside any of the networks."""

    def __init__(self, field: str, networks: Sequence[Any]) -> None:
        self.field = field
        self.networks = list(networks)
        self.key = ("cidr", field, tuple(sorted(str(n) for n in self.networks)))
        self.cost = 3.0

    def match(self, ctx: SubFrame, sel: np.ndarray | None) -> np.ndarray:
        """Test each distinct address once, then map back to rows."""
        col = ctx.column(self.field)
        if col is None:
            return ctx.zeros(sel)
        codes, ver, hi, lo = col.ip
        if len(ver) == 0:
            return ctx.zeros(sel)
        hit = np.zeros(len(ver), dtype=bool)
        for net in self.networks:
            hit |= _in_network(ver, hi, lo, net)
        codes = _pick(codes, sel)
        return (codes >= 0) & hit[np.maximum(codes, 0)]


class FieldRefLeaf(Leaf):
    """``|fieldref``: compare a field with another field of the same event (case-insensitive)."""

    def __init__(self, field: str, ref: str, starts_with: bool, ends_with: bool) -> None:
        self.field, self.ref = field, ref
        self.starts_with, self.ends_with = starts_with, ends_with
        self.key = ("fieldref", field, ref, starts_with, ends_with)
        self.cost = 4.0 if not (starts_with or ends_with) else 20.0

    def match(self, ctx: SubFrame, sel: np.ndarray | None) -> np.ndarray:
        """Row-wise comparison with Arrow (equality) or numpy's vectorised string functions."""
        a, b = ctx.column(self.field), ctx.column(self.ref)
        if a is None or b is None:
            return ctx.zeros(sel)
        va, vb = a.strings(False, sel), b.strings(False, sel)
        valid = _pick(a.notna, sel) & _pick(b.notna, sel)
        if not (self.starts_with or self.ends_with):
            return to_bool_array(pc.equal(va, vb)) & valid
        sa = _numpy_strings(va)
        sb = _numpy_strings(vb)
        if self.starts_with and self.ends_with:
            out = np.strings.find(sa, sb) >= 0
        elif self.starts_with:
            out = np.strings.startswith(sa, sb)
        else:
            out = np.strings.endswith(sa, sb)
        return np.asarray(out, dtype=bool) & valid


def _numpy_strings(arr: pa.Array) -> np.ndarray:
    return np.array(pc.fill_null(arr, "").to_pylist(), dtype=np.dtypes.StringDType())


class And(Node):
    """All children match; children run cheapest first on the rows still alive."""

    def __init__(self, children: Sequence[Node]) -> None:
        flat: list[Node] = []
        for child in children:
            flat.extend(child.children if isinstance(child, And) else [child])
        self.children: list[Node] = sorted(flat, key=lambda c: c.cost)
        self.cost = sum(c.cost for c in self.children)

    def eval(self, ctx: SubFrame, sel: np.ndarray | None) -> np.ndarray:
        """Narrow the selection after each child."""
        n = ctx.n if sel is None else len(sel)
        mask: np.ndarray | None = None
        for child in self.children:
            if mask is None:
                mask = child.eval(ctx, sel)
            else:
                alive = np.flatnonzero(mask)
                if alive.size > _DENSE * n:
                    mask = mask & child.eval(ctx, sel)
                else:
                    hit = child.eval(ctx, alive if sel is None else sel[alive])
                    mask = np.zeros(n, dtype=bool)
                    mask[alive[hit]] = True
            if not mask.any():
                break
        return mask if mask is not None else ctx.ones(sel)

    def leaves(self) -> Iterator[Leaf]:
        """Leaves of all children."""
        for child in self.children:
            yield from child.leaves()


class Or(Node):
    """Any child matches; later children only look at rows not matched yet."""

    def __init__(self, children: Sequence[Node]) -> None:
        flat: list[Node] = []
        for child in children:
            flat.extend(child.children if isinstance(child, Or) else [child])
        self.children: list[Node] = sorted(flat, key=lambda c: c.cost)
        self.cost = sum(c.cost for c in self.children)

    def eval(self, ctx: SubFrame, sel: np.ndarray | None) -> np.ndarray:
        """Shrink the undecided rows after each child."""
        n = ctx.n if sel is None else len(sel)
        mask: np.ndarray | None = None
        for child in self.children:
            if mask is None:
                mask = child.eval(ctx, sel)
            else:
                rest = np.flatnonzero(~mask)
                if rest.size > _DENSE * n:
                    mask = mask | child.eval(ctx, sel)
                else:
                    hit = child.eval(ctx, rest if sel is None else sel[rest])
                    mask = mask.copy()
                    mask[rest[hit]] = True
            if mask.all():
                break
        return mask if mask is not None else ctx.zeros(sel)

    def leaves(self) -> Iterator[Leaf]:
        """Leaves of all children."""
        for child in self.children:
            yield from child.leaves()


class Not(Node):
    """The child does not match."""

    def __init__(self, child: Node) -> None:
        self.child = child
        self.cost = child.cost

    def eval(self, ctx: SubFrame, sel: np.ndarray | None) -> np.ndarray:
        """Invert the child's result."""
        return ~self.child.eval(ctx, sel)

    def leaves(self) -> Iterator[Leaf]:
        """The child's leaves."""
        yield from self.child.leaves()


def _any_of(children: Sequence[Node]) -> Node:
    return children[0] if len(children) == 1 else Or(children)


def _all_of(children: Sequence[Node]) -> Node:
    return children[0] if len(children) == 1 else And(children)
