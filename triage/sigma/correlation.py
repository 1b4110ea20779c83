"""Sigma correlation rules (``event_count``, ``value_count``, ``temporal``, ``temporal_ordered``) over rule matches.

A correlation rule names base rules (by id or name, in the same file or any other file of the set), a
``timespan``, optional ``group-by`` fields (or aliases mapping one name to a different field per base rule) and a
``condition``. It is evaluated over the matches of its base rules across the whole log, in time order: every
window of ``timespan`` that ends at a matched event is counted, the events of every window that meets the
condition are marked, and the marked events of one group form bursts (consecutive marked events no more than
``timespan`` apart). Each burst is ONE :class:`CorrelationHit`.

Usage::

    corr = Correlator(ruleset)            # ruleset.correlations were loaded and resolved by load_rules
    for df in batches:
        matches = ruleset.evaluate(df)
        corr.add(df, matches)             # keeps only the few columns it needs of the matched rows
        matches = corr.visible(matches)   # drops base rules whose correlations say ``generate: false``
    hits = corr.finish()

Cost: sorting the matched rows (n log n) and ``searchsorted`` per window; distinct counts (``value_count``,
``temporal``) scan only the groups that could reach the threshold, once, with a sliding window (linear).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from triage.arrowlite import numbers
from triage.formats.evtx import valid_bits

if TYPE_CHECKING:
    import pandas as pd
    from sigma.correlations import SigmaCorrelationRule

    from triage.sigma.engine import RuleSet

SUPPORTED_TYPES = ("event_count", "value_count", "temporal", "temporal_ordered")
OPERATORS = ("gt", "gte", "lt", "lte", "eq", "neq")
SAMPLE_RECORDS = 20  # record ids kept per hit
_LEVEL_TO_SEVERITY = {"informational": "info", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
NO_VALUE = "(none)"  # group-by value of events without that field


class CorrelationError(ValueError):
    """A correlation rule the engine cannot evaluate (the message is the skip reason)."""


@dataclass(eq=False)
class CorrelationRule:
    """A loaded correlation rule; ``refs`` as written, ``rule_ids`` the base rules they resolved to."""

    id: str
    title: str
    name: str
    level: str
    type: str
    refs: tuple[str, ...]
    timespan: float  # seconds
    op: str
    count: float
    group_by: tuple[str, ...] = ()
    field: str = ""  # value_count: the field whose distinct values are counted
    aliases: dict[str, dict[str, str]] = dc_field(default_factory=dict)  # alias -> {rule ref: field}
    generate: bool = False
    description: str = ""
    tags: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    mitre: tuple[str, ...] = ()
    cve: tuple[str, ...] = ()
    ed2102_steps: tuple[int, ...] = ()
    path: str = ""
    sha256: str = ""
    rule_ids: tuple[str, ...] = ()
    ref_of: dict[str, str] = dc_field(default_factory=dict)  # resolved base rule id -> reference as written

    @property
    def severity(self) -> str:
        """The level in the finding schema's vocabulary (none -> ``medium``)."""
        return _LEVEL_TO_SEVERITY.get(self.level, "medium")

    def satisfied(self, values: np.ndarray) -> np.ndarray:
        """Element-wise: does a window count meet the condition."""
        c = self.count
        return {
            "gt": values > c, "gte": values >= c, "lt": values < c, "lte": values <= c,
            "eq": values == c, "neq": values != c,
        }[self.op]  # fmt: skip

    def field_for(self, name: str, rule_id: str) -> str:
        """The event field a group-by name (or alias) means in the events of one base rule."""
        alias = self.aliases.get(name)
        if alias:
            ref = self.ref_of.get(rule_id, rule_id)
            return alias.get(ref, alias.get(rule_id, name))
        return name


@dataclass
class CorrelationHit:
    """One burst of one correlation rule in one group: what a finding reports."""

    rule: CorrelationRule
    group: dict[str, str]
    first: datetime  # UTC
    last: datetime
    events: int  # base-rule events in the burst
    peak: int  # the highest window value (event count, distinct values or distinct rules) in the burst
    values: tuple[str, ...] = ()  # value_count: distinct values seen (first 20); temporal: base rule ids
    record_ids: tuple[int, ...] = ()
    rule_counts: dict[str, int] = dc_field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- loading
def build_correlation(rule: SigmaCorrelationRule, path: str, sha: str, n: int) -> CorrelationRule:
    """A :class:`CorrelationRule` from pySigma's parse; raises :class:`CorrelationError` with the skip reason."""
    from sigma.correlations import SigmaCorrelationCondition
    from sigma.rule import SigmaLevel

    from triage.sigma.tags import parse_tags

    ctype = str(rule.type.name).lower()
    if ctype not in SUPPORTED_TYPES:
        raise CorrelationError(f"correlation type {ctype} is not supported (supported: {', '.join(SUPPORTED_TYPES)})")
    if not rule.rules:
        raise CorrelationError("correlation rule names no base rules")
    cond = rule.condition
    if not isinstance(cond, SigmaCorrelationCondition):
        raise CorrelationError("extended correlation conditions are not supported")
    op = str(cond.op.name).lower()
    if op not in OPERATORS:
        raise CorrelationError(f"correlation condition operator {op} is not supported")
    fieldref = cond.fieldref
    if isinstance(fieldref, list):
        if len(fieldref) != 1:
            raise CorrelationError("value_count over several fields is not supported")
        fieldref = fieldref[0]
    if ctype == "value_count" and not fieldref:
        raise CorrelationError("value_count correlation needs condition.field")
    timespan = getattr(rule.timespan, "seconds", None)
    if not timespan or timespan <= 0:
        raise CorrelationError("correlation rule needs a positive timespan")
    tags = tuple(str(t) for t in rule.tags)
    parsed = parse_tags(tags)
    rid = str(rule.id) if rule.id is not None else f"nosigmaid-{sha[:16]}-{n}"
    return CorrelationRule(
        id=rid,
        title=rule.title or rid,
        name=str(rule.name or ""),
        level=str(rule.level) if isinstance(rule.level, SigmaLevel) else "",
        type=ctype,
        refs=tuple(r.reference for r in rule.rules),
        timespan=float(timespan),
        op=op,
        count=float(cond.count),
        group_by=tuple(str(g) for g in (rule.group_by or ())),
        field=str(fieldref or ""),
        aliases=rule.aliases.to_dict() if len(rule.aliases) else {},
        generate=bool(rule.generate),
        description=rule.description or "",
        tags=tags,
        references=tuple(str(r) for r in rule.references),
        mitre=parsed.mitre,
        cve=parsed.cve,
        ed2102_steps=parsed.ed2102_steps,
        path=path,
        sha256=sha,
    )


def resolve_correlations(ruleset: RuleSet) -> list[tuple[CorrelationRule, str]]:
    """Resolve every correlation's references (rule id or ``name``) against the loaded rules and correlations.

    A correlation may name other correlations (their bursts are its events); ``ruleset.correlations`` is
    reordered so that each comes after those it names. Correlations whose references do not all resolve
    (unknown rule, a skipped correlation, a cycle) are removed and returned with the reason (the caller
    records them as skipped).
    """
    ids = {r.id for r in ruleset.loaded}
    names = dict(getattr(ruleset, "rule_names", {}) or {})
    by_ref = {c.id: c for c in ruleset.correlations} | {c.name: c for c in ruleset.correlations if c.name}
    kept: list[CorrelationRule] = []
    done: set[str] = set()
    pending = list(ruleset.correlations)
    while pending:  # keep every correlation whose references are all resolved; repeat until nothing changes
        progress = False
        for corr in list(pending):
            targets = [
                ref if ref in ids else names.get(ref) or getattr(by_ref.get(ref), "id", None) for ref in corr.refs
            ]
            if any(t is None for t in targets) or not all(t in ids or t in done for t in targets):
                continue
            corr.rule_ids = tuple(dict.fromkeys(t for t in targets if t))
            corr.ref_of = {t: ref for t, ref in zip(targets, corr.refs, strict=True) if t}
            kept.append(corr)
            done.add(corr.id)
            pending.remove(corr)
            progress = True
        if not progress:
            break
    dropped: list[tuple[CorrelationRule, str]] = []
    for corr in pending:
        missing = [ref for ref in corr.refs if ref not in ids and ref not in names and ref not in by_ref]
        if missing:
            dropped.append((corr, f"correlation references rules that were not loaded: {', '.join(missing)}"))
        else:
            waiting = [ref for ref in corr.refs if ref in by_ref and by_ref[ref].id not in done]
            dropped.append(
                (corr, f"correlation names correlations that were skipped or form a cycle: {', '.join(waiting)}")
            )
    ruleset.correlations = kept
    return dropped


def silent_rule_ids(correlations: Iterable[CorrelationRule]) -> frozenset[str]:
    """Base rules that only serve correlations: every correlation naming them says ``generate: false``.

    A correlation named by another is still reported: its bursts are findings in their own right (a guessing
    burst stays a finding whether or not a logon followed it).
    """
    correlations = list(correlations)
    silent: set[str] = set()
    loud: set[str] = {c.id for c in correlations}
    for corr in correlations:
        (loud if corr.generate else silent).update(corr.rule_ids)
    return frozenset(silent - loud)


# ---------------------------------------------------------------------------------------------- evaluation
_NAT = np.iinfo(np.int64).min
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Events = dict[str, np.ndarray]  # the matched events of one correlation: equal-length columns t, rec, rule, g0.., v


def _utc(ns: int) -> datetime:
    """Nanoseconds since the epoch as a UTC datetime (event times carry microseconds)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _codes(values: np.ndarray) -> np.ndarray:
    """Each value's number in order of first appearance (as ``pandas.factorize``)."""
    seen: dict[Any, int] = {}
    return np.fromiter((seen.setdefault(x, len(seen)) for x in values.tolist()), dtype=np.int64, count=len(values))


def _group_codes(columns: list[np.ndarray], n: int) -> np.ndarray:
    """Group number of each row over several key columns, in order of first appearance (an unsorted groupby)."""
    if not columns:
        return np.zeros(n, dtype=np.int64)
    if len(columns) == 1:
        return _codes(columns[0])
    seen: dict[tuple[Any, ...], int] = {}
    keys = zip(*(c.tolist() for c in columns), strict=True)
    return np.fromiter((seen.setdefault(k, len(seen)) for k in keys), dtype=np.int64, count=n)


def _distinct_per_group(g: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """For each row, how many distinct codes its group has."""
    if not len(g):
        return np.zeros(0, dtype=np.int64)
    pairs = np.unique(np.stack([g, codes], axis=1), axis=0)
    per_group = np.bincount(pairs[:, 0], minlength=int(g.max()) + 1)
    return per_group[g].astype(np.int64)


def _first_seen(values: np.ndarray) -> list[Any]:
    """Distinct values in order of first appearance (as ``pandas.unique``)."""
    return list(dict.fromkeys(values.tolist()))


class EventColumns:
    """What correlations read of an event table, converted once per table (whole columns, not per match).

    A table shared by many logs is read by one :class:`Correlator` per log: converting the time, record and
    group-by columns once and indexing them by row keeps each log's cost to its own matches. Takes an Arrow
    table (the event-log path, no pandas) or a pandas frame.
    """

    def __init__(self, df: Any) -> None:
        self.df = df
        self.n = len(df)
        self.table = df if isinstance(df, pa.Table) else None
        names = df.column_names if self.table is not None else df.columns
        self.lower = {str(c).lower(): str(c) for c in names}
        self._names = frozenset(names)
        self._strings: dict[str, np.ndarray | None] = {}
        self._times: np.ndarray | None = None
        self._records: np.ndarray | None = None

    def _name(self, name: str) -> str | None:
        return name if name in self._names else self.lower.get(name.lower())

    def _arrow(self, name: str) -> pa.Array:
        col = self.table.column(name)  # type: ignore[union-attr]
        return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()

    def times(self, rows: np.ndarray) -> np.ndarray:
        """Nanoseconds since the epoch (UTC) of the rows; int64's minimum where there is no readable time."""
        if self._times is None:
            name = self._name("TimeCreated")
            if name is None:
                self._times = np.full(self.n, _NAT, dtype=np.int64)
            elif self.table is not None and pa.types.is_timestamp(self._arrow(name).type):
                arr = self._arrow(name)
                unit = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1000, "ns": 1}[arr.type.unit]
                raw = numbers(arr.cast(pa.int64()), 0).astype(np.int64)
                # a time beyond what nanoseconds since the epoch can hold (years past 2262) has no place in a window
                fits = valid_bits(arr) & (np.abs(raw) < np.iinfo(np.int64).max // unit)
                self._times = np.where(fits, raw * unit, _NAT)
            else:
                import pandas as pd

                series = self._series(name)
                if not pd.api.types.is_datetime64_any_dtype(series.dtype):
                    return _pandas_times(series.iloc[rows])  # text: its format is inferred from the rows' own values
                self._times = _pandas_times(series)
        return self._times[rows]

    def _series(self, name: str) -> pd.Series:
        if self.table is not None:
            return self._arrow(name).to_pandas()
        return self.df[name]

    def records(self, rows: np.ndarray) -> np.ndarray:
        """Record numbers of the rows as int64; -1 where missing, not a number or beyond int64."""
        if self._records is None:
            out = np.full(self.n, -1, dtype=np.int64)
            name = self._name("EventRecordID")
            if name is not None:
                if self.table is not None and pa.types.is_integer(self._arrow(name).type):
                    num = numbers(self._arrow(name).cast(pa.float64()), np.nan)
                else:
                    import pandas as pd

                    num = pd.to_numeric(self._series(name), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
                ok = np.isfinite(num) & (np.abs(num) < 2**62)
                out[ok] = num[ok].astype(np.int64)
            self._records = out
        return self._records[rows]

    def strings(self, name: str, rows: np.ndarray) -> np.ndarray:
        """A field's values of the rows as text, :data:`NO_VALUE` where missing (or the frame lacks it)."""
        if name not in self._strings:
            column = self._name(name)
            self._strings[name] = None if column is None else self._text(column)
        values = self._strings[name]
        return np.full(len(rows), NO_VALUE, dtype=object) if values is None else values[rows]

    def _text(self, name: str) -> np.ndarray:
        if self.table is not None:
            arr = self._arrow(name)
            if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) or pa.types.is_integer(arr.type):
                text = arr.cast(pa.large_string()).fill_null(NO_VALUE)
                return np.asarray(text.to_pylist(), dtype=object)
        series = self._series(name)
        return series.astype("string").fillna(NO_VALUE).to_numpy(dtype=object)


def _pandas_times(series: pd.Series) -> np.ndarray:
    import pandas as pd

    ts = pd.to_datetime(series, utc=True, errors="coerce")
    return ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view(np.int64)


class Correlator:
    """Collects base-rule matches batch by batch and evaluates the ruleset's correlation rules at the end."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.correlations: list[CorrelationRule] = list(getattr(ruleset, "correlations", []) or [])
        self.silent = silent_rule_ids(self.correlations)
        self._parts: dict[str, list[Events]] = {c.id: [] for c in self.correlations}
        self._by_rule: dict[str, list[CorrelationRule]] = {}
        for corr in self.correlations:
            for rid in corr.rule_ids:
                self._by_rule.setdefault(rid, []).append(corr)
        self.untimed = 0  # matched events without a usable TimeCreated (left out of windows)

    def __bool__(self) -> bool:
        return bool(self.correlations)

    def visible(self, matches: pd.DataFrame) -> pd.DataFrame:
        """``matches`` without the rows of base rules that only serve correlations (``generate: false``)."""
        if not self.silent or matches.empty:
            return matches
        return matches[~matches["rule_id"].isin(self.silent)]

    def add(self, df: Any, matches: pd.DataFrame) -> None:
        """Keep, of this batch, the time, record id, group-by and counted values of each base-rule match."""
        if not self.correlations or matches.empty:
            return
        self.add_rows(
            EventColumns(df), matches["rule_id"].to_numpy(dtype=object), matches["row"].to_numpy(dtype=np.int64)
        )

    def add_rows(self, events: EventColumns, rule_ids: np.ndarray, rows: np.ndarray) -> None:
        """:meth:`add` for matches given as arrays (rule id and frame row of each) over a converted frame."""
        if not self.correlations or not len(rows):
            return
        by_rule: dict[str, list[int]] = {}  # rules in order of first match, as a groupby without sorting
        for position, rid in enumerate(rule_ids.tolist()):
            if rid in self._by_rule:
                by_rule.setdefault(rid, []).append(position)
        for rid, positions in by_rule.items():
            mine = rows[np.asarray(positions, dtype=np.int64)]
            t = events.times(mine)
            rec = events.records(mine)
            for corr in self._by_rule[str(rid)]:
                data: Events = {"t": t, "rec": rec, "rule": np.full(len(mine), str(rid), dtype=object)}
                for i, name in enumerate(corr.group_by):
                    data[f"g{i}"] = events.strings(corr.field_for(name, str(rid)), mine)
                if corr.type == "value_count":
                    data["v"] = events.strings(corr.field_for(corr.field, str(rid)), mine)
                self._parts[corr.id].append(data)

    def finish(self) -> list[CorrelationHit]:
        """Evaluate every correlation over everything added; one hit per (rule, group, burst)."""
        hits: list[CorrelationHit] = []
        for corr in self.correlations:  # in dependency order: a correlation's bursts feed those naming it
            parts = self._parts[corr.id]
            if not parts:
                continue
            frame = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            self._parts[corr.id] = []
            # in time order, then by group: the same hits whatever order the events came in
            found = sorted(self._evaluate(corr, frame), key=lambda h: (h.first, sorted(h.group.items())))
            for outer in self._by_rule.get(corr.id, []):
                self._parts[outer.id].append(_hits_as_events(outer, corr.id, found))
            if corr.id not in self.silent:
                hits.extend(found)
        return hits

    def _evaluate(self, corr: CorrelationRule, frame: Events) -> list[CorrelationHit]:
        untimed = frame["t"] == _NAT
        if untimed.any():
            self.untimed += int(untimed.sum())
            frame = {k: v[~untimed] for k, v in frame.items()}
        n = len(frame["t"])
        if not n:
            return []
        # no window holds more events or distinct values than the frame has, nor more base rules: a log whose
        # matches are too few cannot meet an at-least condition (most logs of a batch, each finished on its own)
        counted = corr.type in ("event_count", "value_count")
        if counted and corr.op in ("gt", "gte") and not corr.satisfied(np.asarray([n]))[0]:
            return []
        if not counted and len(set(frame["rule"].tolist())) < len(set(corr.rule_ids)):
            return []
        gcode = _group_codes([frame[f"g{i}"] for i in range(len(corr.group_by))], n)
        t = frame["t"].astype(np.int64, copy=False)
        order = np.lexsort((frame["rec"], t, gcode))
        frame = {k: v[order] for k, v in frame.items()}
        g, t = gcode[order], t[order]
        span = int(corr.timespan * 1e9)
        starts = window_starts(g, t, span)
        if corr.type == "event_count":
            value = np.arange(len(t)) - starts + 1
            covered_from = starts
            ok = corr.satisfied(value)
        elif corr.type == "value_count":
            value = distinct_in_windows(g, frame["v"], starts, corr)
            covered_from = starts
            ok = corr.satisfied(value)
        elif corr.type == "temporal":
            value = distinct_in_windows(g, frame["rule"], starts, corr, need=len(corr.rule_ids))
            covered_from = starts
            ok = value >= len(corr.rule_ids)
        else:
            ok, covered_from = ordered_chains(g, t, frame["rule"], corr.rule_ids, span)
            value = np.where(ok, len(corr.rule_ids), 0)
        if not ok.any():
            return []
        covered = cover(len(t), covered_from, ok)
        return _bursts(corr, frame, g, t, covered, value, ok, span)


def _hits_as_events(outer: CorrelationRule, inner_id: str, hits: list[CorrelationHit]) -> Events:
    """Bursts of a correlation as events of one naming it: each at the time its burst ends."""
    data: Events = {
        "t": np.array([_ns(h.last) for h in hits], dtype=np.int64),
        "rec": np.array([h.record_ids[0] if h.record_ids else -1 for h in hits], dtype=np.int64),
        "rule": np.full(len(hits), inner_id, dtype=object),
    }
    for i, name in enumerate(outer.group_by):
        key = outer.field_for(name, inner_id)
        data[f"g{i}"] = np.array([h.group.get(key, h.group.get(name, NO_VALUE)) for h in hits], dtype=object)
    if outer.type == "value_count":
        key = outer.field_for(outer.field, inner_id)
        data["v"] = np.array([h.group.get(key, NO_VALUE) for h in hits], dtype=object)
    return data


def _ns(when: datetime) -> int:
    """A UTC datetime as nanoseconds since the epoch."""
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def window_starts(g: np.ndarray, t: np.ndarray, span: int) -> np.ndarray:
    """For events sorted by (group, time): the index of the first event of the same group at or after
    ``t[i] - span`` (the window of ``span`` nanoseconds that ends at event i, edges included)."""
    n = len(t)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    tmin = int(t.min())
    rel = (t - tmin) // 1000  # microseconds: room for many groups in one int64 key
    span_us = span // 1000
    stride = int(rel.max()) + span_us + 1
    if (int(g.max()) + 1) * stride < 2**62:
        key = g * stride + rel
        return np.searchsorted(key, key - span_us, side="left").astype(np.int64)
    out = np.empty(n, dtype=np.int64)  # too many groups over too long a time for one key: per group
    bounds = np.flatnonzero(np.diff(g)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, n], strict=True):
        out[lo:hi] = lo + np.searchsorted(rel[lo:hi], rel[lo:hi] - span_us, side="left")
    return out


def distinct_in_windows(
    g: np.ndarray, v: np.ndarray, starts: np.ndarray, corr: CorrelationRule, need: int | None = None
) -> np.ndarray:
    """Distinct values of ``v`` in each window ``[starts[i], i]`` (events sorted by group and time).

    Only groups whose total distinct count could meet the condition are scanned (for ``gt``/``gte`` or a
    temporal ``need``); others get their total, which is an upper bound that fails the condition anyway.
    """
    n = len(v)
    codes = _codes(v)
    out = np.zeros(n, dtype=np.int64)
    totals = _distinct_per_group(g, codes)
    threshold = need if need is not None else (corr.count + (1 if corr.op == "gt" else 0))
    prefilter = need is not None or corr.op in ("gt", "gte")
    # a window holds at most as many distinct values as events: a group is scanned only when one of its
    # windows has enough events and the group enough distinct values (most groups of a big log have neither)
    bound = np.minimum(totals, np.arange(n) - starts + 1)
    if prefilter:
        busy = np.bincount(g, weights=(bound >= threshold), minlength=int(g.max()) + 1) > 0 if n else np.zeros(0, bool)
        scan = busy[g]
    else:
        scan = np.ones(n, dtype=bool)
    out[~scan] = bound[~scan]
    idx = np.flatnonzero(scan)
    if idx.size == 0:
        return out
    # sliding window per group: counts of each value in the window; windows only move forward
    counts: dict[int, int] = {}
    lo = hi = distinct = 0
    group = -1
    cl, sl, gl = codes.tolist(), starts.tolist(), g.tolist()
    for i in idx.tolist():  # a scanned group is scanned whole, so its first event starts a fresh window
        if gl[i] != group:
            group, counts, distinct, lo, hi = gl[i], {}, 0, i, i
        while hi <= i:
            c = cl[hi]
            k = counts.get(c, 0)
            distinct += k == 0
            counts[c] = k + 1
            hi += 1
        while lo < sl[i]:
            c = cl[lo]
            k = counts[c] - 1
            counts[c] = k
            distinct -= k == 0
            lo += 1
        out[i] = distinct
    return out


def ordered_chains(
    g: np.ndarray, t: np.ndarray, rules: np.ndarray, order: tuple[str, ...], span: int
) -> tuple[np.ndarray, np.ndarray]:
    """temporal_ordered: events i that complete the base rules in the listed order within ``span``.

    Returns (complete mask, index where each complete chain starts). Keeping the latest start of each prefix
    is optimal: a later start can only make the remaining chain fit the window better.
    """
    n = len(t)
    ok = np.zeros(n, dtype=bool)
    start = np.arange(n, dtype=np.int64)
    pos = {rid: k for k, rid in enumerate(order)}
    last = len(order) - 1
    group = None
    chain: list[tuple[int, int] | None] = []
    tl = t.tolist()
    for i, (gi, rid) in enumerate(zip(g.tolist(), rules.tolist(), strict=True)):
        if gi != group:
            group, chain = gi, [None] * len(order)
        k = pos.get(rid)
        if k is None:
            continue
        if k == 0:
            chain[0] = (tl[i], i)
        elif chain[k - 1] is not None:
            chain[k] = chain[k - 1]
        if k == last and chain[k] is not None:
            t0, i0 = chain[k]  # type: ignore[misc]
            if tl[i] - t0 <= span:
                ok[i] = True
                start[i] = i0
    return ok, start


def cover(n: int, starts: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Events inside any qualifying window ``[starts[i], i]`` (a difference array: linear)."""
    diff = np.zeros(n + 1, dtype=np.int64)
    ends = np.flatnonzero(ok)
    np.add.at(diff, starts[ends], 1)
    np.add.at(diff, ends + 1, -1)
    return np.cumsum(diff[:-1]) > 0


def _bursts(
    corr: CorrelationRule,
    frame: Events,
    g: np.ndarray,
    t: np.ndarray,
    covered: np.ndarray,
    value: np.ndarray,
    ok: np.ndarray,
    span: int,
) -> list[CorrelationHit]:
    idx = np.flatnonzero(covered)
    # a new burst where the group changes, an uncovered event lies between, or the gap exceeds the timespan
    breaks = np.ones(len(idx), dtype=bool)
    if len(idx) > 1:
        breaks[1:] = (np.diff(idx) > 1) | (np.diff(g[idx]) != 0) | (np.diff(t[idx]) > span)
    bounds = np.flatnonzero(breaks)
    hits: list[CorrelationHit] = []
    for b, lo in enumerate(bounds):
        hi = bounds[b + 1] if b + 1 < len(bounds) else len(idx)
        rows = idx[lo:hi]
        first_row = int(rows[0])
        group = {name: str(frame[f"g{i}"][first_row]) for i, name in enumerate(corr.group_by)}
        window_vals = value[rows][ok[rows]]
        rules = frame["rule"][rows].tolist()
        rule_counts: dict[str, int] = {}
        for rid in rules:
            rule_counts[str(rid)] = rule_counts.get(str(rid), 0) + 1
        if corr.type == "value_count":
            values = tuple(str(x) for x in _first_seen(frame["v"][rows])[:SAMPLE_RECORDS])
        elif corr.type.startswith("temporal"):
            values = tuple(str(x) for x in dict.fromkeys(rules))
        else:
            values = ()
        recs = frame["rec"][rows]
        hits.append(
            CorrelationHit(
                rule=corr,
                group=group,
                first=_utc(int(t[rows[0]])),
                last=_utc(int(t[rows[-1]])),
                events=len(rows),
                peak=int(window_vals.max()) if len(window_vals) else 0,
                values=values,
                record_ids=tuple(int(r) for r in recs[recs >= 0][:SAMPLE_RECORDS]),
                # most frequent first (as a count table reads); stored as JSON with sorted keys
                rule_counts=dict(sorted(rule_counts.items(), key=lambda item: -item[1])),
            )
        )
    return hits


def evaluate_with_correlations(ruleset: RuleSet, df: pd.DataFrame) -> tuple[pd.DataFrame, list[CorrelationHit]]:
    """One frame through the rules and the correlations: (visible matches, correlation hits)."""
    corr = Correlator(ruleset)
    matches = ruleset.evaluate(df)
    if not corr:
        return matches, []
    corr.add(df, matches)
    return corr.visible(matches), corr.finish()


def describe(hit: CorrelationHit) -> str:
    """One line for a hit: what, how many, over which group and time."""
    group = ", ".join(f"{k}={v}" for k, v in hit.group.items()) or "all events"
    unit = {"event_count": "events", "value_count": f"distinct {hit.rule.field}"}.get(hit.rule.type, "rules in order")
    return (
        f"{hit.peak} {unit} within {_span_text(hit.rule.timespan)} ({group}); burst of {hit.events} events "
        f"from {hit.first.isoformat()} to {hit.last.isoformat()}"
    )


def _span_text(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


__all__ = [
    "CorrelationError",
    "CorrelationHit",
    "CorrelationRule",
    "Correlator",
    "build_correlation",
    "describe",
    "evaluate_with_correlations",
    "resolve_correlations",
    "silent_rule_ids",
    "window_starts",
]
