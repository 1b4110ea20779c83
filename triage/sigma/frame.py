"""Column views over the event table, cached per logsource sub-frame.

A :class:`SubFrame` holds the row positions one logsource source selects and converts each column a rule
touches once: to an Arrow string array (``raw``), its lower-case form (``folded``, for Sigma's default
case-insensitive matching), a float view (numbers and numeric-looking strings, ``0x`` hex included) and a
parsed-IP view for ``|cidr``. All rules of that source share these views.

The event table is an Arrow table (the event-log analyzer's path, no pandas) or a pandas frame (tests, other
callers); both give the same views.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Hashable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from triage.arrowlite import bits as _bits
from triage.arrowlite import numbers, to_bool_array
from triage.sigma.logsources import SourceVariant

if TYPE_CHECKING:
    import pandas as pd

Table = Any  # a pyarrow.Table or a pandas.DataFrame of events

# Envelope columns left out of keyword (field-less) matching: they describe the record, not its content.
ENVELOPE_COLUMNS = frozenset(
    {"EventRecordID", "TimeCreated", "EventID", "Provider", "Channel", "Computer", "Level", "UserID"}
)
_HEX = r"^\s*0x[0-9a-f]+\s*$"


def valid_mask(arr: pa.Array) -> np.ndarray:
    """True where an Arrow array has a value (from its validity bitmap)."""
    if not arr.null_count:
        return np.ones(len(arr), dtype=bool)
    validity = arr.buffers()[0]
    if validity is None:  # a null-typed array: nothing valid
        return np.zeros(len(arr), dtype=bool)
    return _bits(validity, arr.offset, len(arr))


# what pandas' ``to_numeric`` reads as a number: ASCII decimal, optional fraction and exponent, blanks around
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INFINITE = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "infinity": math.inf, "+infinity": math.inf}
_INFINITE["-infinity"] = -math.inf


def text_number(text: str | None) -> float:
    """A text as pandas' ``to_numeric(errors="coerce")`` reads it (NaN when it is not a number)."""
    if text is None:
        return math.nan
    text = text.strip(" \t\n\r\f\v")
    if _DECIMAL.fullmatch(text):
        return float(text)
    return _INFINITE.get(text.lower(), math.nan)


def text_numbers(arr: pa.Array) -> np.ndarray:
    """A string array as float64 (:func:`text_number`, once per distinct value)."""
    if not len(arr):
        return np.empty(0, dtype="float64")
    encoded = pc.dictionary_encode(arr)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    values = np.asarray([text_number(v) for v in encoded.dictionary.to_pylist()] + [math.nan], dtype="float64")
    return values[numbers(encoded.indices, -1)]


def is_table(df: Table) -> bool:
    """Whether the event table is an Arrow table (else a pandas frame)."""
    return isinstance(df, pa.Table)


def _whole(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    return col


def _typed_strings(arr: pa.Array) -> pa.Array:
    """A non-string Arrow column as the strings its pandas column gives (``astype("str")``)."""
    if pa.types.is_integer(arr.type) or pa.types.is_null(arr.type):
        return arr.cast(pa.large_string())
    import pandas as pd  # times and other types: pandas' rendering is the reference (no rule of the pack reads them)

    return _arrow_strings(pd.Series(arr.to_pandas()))


def _arrow_strings(series: pd.Series) -> pa.Array:
    """The column as an Arrow (large) string array; non-string values are rendered with ``str``."""
    import pandas as pd

    if not isinstance(series.dtype, pd.StringDtype):
        series = series.astype("str")
    arr = pa.array(series)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())
    return arr


def _positions(sel: np.ndarray | None) -> pa.Array | None:
    return None if sel is None else pa.array(sel, type=pa.int64())


class Column:
    """Lazily computed views of one column restricted to a sub-frame's rows."""

    def __init__(
        self, series: pd.Series | None, name: str, raw: pa.Array | None = None, typed: pa.Array | None = None
    ) -> None:
        self.series = series  # None for a column given as Arrow: strings as ``raw``, other types as ``typed``
        self.name = name
        self.typed = typed
        if raw is not None:
            self.__dict__["raw"] = raw

    @cached_property
    def raw(self) -> pa.Array:
        """Values as strings, original case."""
        if self.typed is not None:
            return _typed_strings(self.typed)
        return _arrow_strings(self.series)

    @cached_property
    def folded(self) -> pa.Array:
        """Values as lower-case strings (computed once, shared by all rules)."""
        return pc.utf8_lower(self.raw)

    @cached_property
    def notna(self) -> np.ndarray:
        """True where the value is present."""
        if self.typed is not None:
            return valid_mask(self.typed)
        if self.series is None:
            return valid_mask(self.raw)
        return self.series.notna().to_numpy(dtype=bool)

    @cached_property
    def empty(self) -> np.ndarray:
        """True where the value is present but the empty string."""
        return to_bool_array(pc.equal(self.raw, pa.scalar("", self.raw.type)))

    @cached_property
    def has_values(self) -> bool:
        """Whether any row has a value."""
        return bool(self.notna.any())

    def strings(self, cased: bool, sel: np.ndarray | None) -> pa.Array:
        """Raw (``cased``) or folded strings, for the selected rows (all when ``sel`` is None)."""
        arr = self.raw if cased else self.folded
        return arr if sel is None else arr.take(_positions(sel))

    @cached_property
    def _raw_list(self) -> list[str | None]:
        return self.raw.to_pylist()

    @cached_property
    def _folded_list(self) -> list[str | None]:
        return self.folded.to_pylist()

    def values(self, cased: bool, sel: np.ndarray | None) -> list[str | None]:
        """Like :meth:`strings`, as Python values (for tests over a few rows, where Arrow calls cost most)."""
        items = self._raw_list if cased else self._folded_list
        return items if sel is None else [items[i] for i in sel.tolist()]

    @cached_property
    def numeric(self) -> np.ndarray:
        """Values as float64 (NaN where not a number); decimal and ``0x`` hex strings are parsed."""
        s = self.series
        typed = self.typed
        if typed is not None and (pa.types.is_integer(typed.type) or pa.types.is_floating(typed.type)):
            return numbers(typed.cast(pa.float64()), np.nan)
        if typed is not None and pa.types.is_timestamp(typed.type):
            return np.full(len(typed), np.nan)  # a time's text is never a number
        if s is not None:
            import pandas as pd

            if pd.api.types.is_bool_dtype(s.dtype):
                return s.astype("float64").to_numpy(dtype="float64", na_value=np.nan)
            if pd.api.types.is_numeric_dtype(s.dtype):
                return s.to_numpy(dtype="float64", na_value=np.nan)
        num = text_numbers(self.raw)
        hexmask = np.isnan(num) & to_bool_array(pc.match_substring_regex(self.folded, _HEX))
        if hexmask.any():
            num = np.array(num, dtype="float64")  # writable copy
            idx = np.flatnonzero(hexmask)
            encoded = pc.dictionary_encode(self.folded.take(pa.array(idx)))
            uniq = [float(int(v.strip(), 16)) for v in encoded.dictionary.to_pylist()]  # per distinct value
            num[idx] = np.asarray(uniq, dtype="float64")[numbers(encoded.indices)]
        return num

    @cached_property
    def booleans(self) -> tuple[np.ndarray, np.ndarray]:
        """(is_true, is_false) masks: real booleans, 'true'/'false' strings, or 1/0 numbers."""
        s = self.series
        if s is not None:
            import pandas as pd

            if pd.api.types.is_bool_dtype(s.dtype):
                filled = s.astype("boolean")
                return (filled.eq(True).fillna(False).to_numpy(bool), filled.eq(False).fillna(False).to_numpy(bool))
        num = self.numeric
        # typed scalars: a bare Python one would make Arrow infer its type (and import pandas)
        is_true = to_bool_array(pc.equal(self.folded, pa.scalar("true", self.folded.type))) | (num == 1)
        is_false = to_bool_array(pc.equal(self.folded, pa.scalar("false", self.folded.type))) | (num == 0)
        return is_true, is_false

    @cached_property
    def ip(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Parsed addresses: (row -> distinct index or -1, version per distinct, high and low 64 bits).

        Addresses are parsed once per distinct value; IPv4-mapped IPv6 counts as IPv4.
        """
        encoded = pc.dictionary_encode(self.raw)
        codes = numbers(encoded.indices, -1).astype(np.int64)
        values = encoded.dictionary.to_pylist()
        ver = np.zeros(len(values), dtype=np.int8)
        hi = np.zeros(len(values), dtype=np.uint64)
        lo = np.zeros(len(values), dtype=np.uint64)
        for i, text in enumerate(values):  # one parse per distinct address, not per row
            addr = _parse_ip(text)
            if addr is None:
                continue
            ver[i] = addr.version
            value = int(addr)
            hi[i] = value >> 64
            lo[i] = value & 0xFFFFFFFFFFFFFFFF
        return codes, ver, hi, lo


def _parse_ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    text = text.strip().strip("[]")
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class FrameIndex:
    """Whole-frame views used to select the rows of each logsource source (computed once per frame)."""

    def __init__(self, df: Table) -> None:
        self.df = df
        self.table = df if is_table(df) else None
        self.n = len(df)
        self._columns: dict[str, Column] = {}
        self._codes: dict[str, tuple[np.ndarray, list[str | None]]] = {}
        self._arrow: dict[str, pa.Array | None] = {}
        self._notna: dict[str, np.ndarray] = {}
        self._memo: dict[tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]], np.ndarray] = {}
        # what every sub-frame asks of the column list, worked out once per frame (a frame of many small logs
        # has hundreds of columns and dozens of sub-frames)
        columns = df.column_names if self.table is not None else df.columns
        self.names = frozenset(columns)
        self.by_lower = {c.lower(): c for c in columns if isinstance(c, str)}
        self._text_names: list[str] | None = None

    def text_names(self) -> list[str]:
        """Columns keyword (field-less) detections search: string columns outside the envelope, in frame order."""
        if self._text_names is None:
            out = []
            if self.table is not None:
                for f in self.table.schema:
                    text = pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                    if text and f.name not in ENVELOPE_COLUMNS:
                        out.append(f.name)
                self._text_names = out
                return out
            import pandas as pd

            for name, dtype in self.df.dtypes.items():
                if not isinstance(name, str) or name in ENVELOPE_COLUMNS:
                    continue
                if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
                    out.append(name)
            self._text_names = out
        return self._text_names

    def arrow_strings(self, name: str) -> pa.Array | None:
        """A pyarrow-backed string column of the whole frame as one large_string array (None for other dtypes).

        Sub-frames take their rows from it with Arrow, not through pandas (a pandas ``take`` costs far more on
        the small sub-frames of many small logs).
        """
        if name not in self._arrow:
            if self.table is not None:
                col = _whole(self.table.column(name))
                if pa.types.is_large_string(col.type):
                    self._arrow[name] = col
                elif pa.types.is_string(col.type):
                    self._arrow[name] = col.cast(pa.large_string())
                else:
                    self._arrow[name] = None
                return self._arrow[name]
            import pandas as pd

            series = self.df[name]
            arr = None
            if isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow":
                arr = pa.array(series.array)
                if isinstance(arr, pa.ChunkedArray):
                    arr = arr.combine_chunks()
                if not pa.types.is_large_string(arr.type):
                    arr = arr.cast(pa.large_string())
            self._arrow[name] = arr
        return self._arrow[name]

    def notna(self, name: str) -> np.ndarray:
        """Presence mask of a whole-frame column (computed once)."""
        if name not in self._notna:
            arr = self.arrow_strings(name)
            if arr is not None:  # Arrow's validity bitmap, without a pandas call
                self._notna[name] = valid_mask(arr)
            elif self.table is not None:
                self._notna[name] = valid_mask(_whole(self.table.column(name)))
            else:
                self._notna[name] = self.df[name].notna().to_numpy(dtype=bool)
        return self._notna[name]

    def _member(self, name: str, wanted: tuple[str, ...]) -> np.ndarray | None:
        """Rows whose folded value is one of ``wanted``; tested once per distinct value (a log has few)."""
        if name not in self._codes:
            col = self._column(name)
            if col is None:
                return None
            encoded = pc.dictionary_encode(col.folded)
            if isinstance(encoded, pa.ChunkedArray):
                encoded = encoded.combine_chunks()
            codes = numbers(encoded.indices, -1).astype(np.int64)
            self._codes[name] = (codes, encoded.dictionary.to_pylist())
        codes, distinct = self._codes[name]
        wanted_set = set(wanted)
        hit = np.array([v in wanted_set for v in distinct] + [False], dtype=bool)  # last slot: nulls (-1)
        return hit[codes]

    def _column(self, name: str) -> Column | None:
        if name not in self.names:
            return None
        if name not in self._columns:
            self._columns[name] = self.whole_column(name)
        return self._columns[name]

    def whole_column(self, name: str, positions: np.ndarray | None = None) -> Column:
        """Views of a column (of the rows at ``positions``, all when None)."""
        if self.table is None:
            series = self.df[name]
            if positions is not None:
                series = series.take(positions).reset_index(drop=True)
            return Column(series, name)
        take = None if positions is None else pa.array(positions, type=pa.int64())
        strings = self.arrow_strings(name)
        if strings is not None:
            return Column(None, name, raw=strings if take is None else strings.take(take))
        typed = _whole(self.table.column(name))
        return Column(None, name, typed=typed if take is None else typed.take(take))

    def positions(self, variant: SourceVariant) -> np.ndarray:
        """Row positions (sorted) that the source's channel/provider/EventID conditions select."""
        key = (variant.channels, variant.providers, variant.event_ids)
        if key in self._memo:
            return self._memo[key]
        out = self._select(variant)
        self._memo[key] = out
        return out

    def _select(self, variant: SourceVariant) -> np.ndarray:
        mask = np.ones(self.n, dtype=bool)
        for colname, wanted in (("Channel", variant.channels), ("Provider", variant.providers)):
            if not wanted:
                continue
            member = self._member(colname, wanted)
            if member is None:
                return np.empty(0, dtype=np.int64)
            mask &= member
            if not mask.any():
                return np.empty(0, dtype=np.int64)
        if variant.event_ids:
            col = self._column("EventID")
            if col is None:
                return np.empty(0, dtype=np.int64)
            mask &= np.isin(col.numeric, np.asarray(variant.event_ids, dtype="float64"))
        return np.flatnonzero(mask)


class SubFrame:
    """The rows one logsource source selects, with column views shared by every rule evaluated on them.

    Args:
        df: the whole event table.
        positions: row positions of this sub-frame into ``df`` (None = all rows).
        aliases: rule field -> column name for this source.
        shared: keys of leaf matchers used by more than one rule here (their results are cached).
        index: the whole frame's :class:`FrameIndex`, whose per-column views sub-frames share.
    """

    def __init__(
        self,
        df: Table,
        positions: np.ndarray | None,
        aliases: Mapping[str, str],
        shared: frozenset[Hashable] = frozenset(),
        index: FrameIndex | None = None,
    ) -> None:
        self.df = df
        self.index = index
        self.positions = positions
        self.n = len(df) if positions is None else len(positions)
        self.aliases = aliases
        self.shared = shared
        self.results: dict[Hashable, np.ndarray] = {}
        self._columns: dict[str, Column] = {}
        if index is None and is_table(df):
            index = self.index = FrameIndex(df)  # an Arrow table is always read through its index
        if index is not None:
            self._by_lower, self._names = index.by_lower, index.names
        else:
            self._by_lower = {c.lower(): c for c in df.columns if isinstance(c, str)}
            self._names = frozenset(df.columns)
        self._sorted: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._present: dict[str, bool] = {}
        self._gated: dict[tuple[str, tuple[float, ...]], np.ndarray | None] = {}

    def field_has_values(self, field: str) -> bool:
        """Whether the field maps to a column with at least one value in this sub-frame (cached per field)."""
        known = self._present.get(field)
        if known is None:
            name = self.column_name(field)
            if name is None:
                known = False
            elif self.index is not None:
                present = self.index.notna(name)
                known = bool(present.any() if self.positions is None else present[self.positions].any())
            else:
                known = self.column_by_name(name).has_values
            self._present[field] = known
        return known

    def rows_with_numbers(self, field: str, values: tuple[float, ...]) -> np.ndarray | None:
        """Sorted sub-frame positions whose field's numeric view equals one of ``values`` (as ``np.isin``).

        None means every row; an empty array means none (also when the field has no column). The column is
        sorted once per sub-frame, so each further value set costs a few binary searches, not a scan.
        """
        key = (field, values)
        if key in self._gated:
            return self._gated[key]
        name = self.column_name(field)
        out: np.ndarray | None
        if name is None:
            out = np.empty(0, dtype=np.int64)
        else:
            if name not in self._sorted:
                num = self.column_by_name(name).numeric
                order = np.argsort(num, kind="stable")
                self._sorted[name] = (order, num[order])
            order, ordered = self._sorted[name]
            wanted = np.asarray(values, dtype="float64")
            lo = np.searchsorted(ordered, wanted, side="left")
            hi = np.searchsorted(ordered, wanted, side="right")
            parts = [order[a:b] for a, b in zip(lo.tolist(), hi.tolist(), strict=True) if b > a]
            total = sum(len(p) for p in parts)
            if total == self.n:
                out = None
            elif not parts:
                out = np.empty(0, dtype=np.int64)
            else:
                out = np.sort(np.concatenate(parts)).astype(np.int64, copy=False)
        self._gated[key] = out
        return out

    def column_name(self, field: str) -> str | None:
        """The table column a rule field reads here: alias first, then the name itself, then any case."""
        for candidate in (self.aliases.get(field), field):
            if candidate is not None and candidate in self._names:
                return candidate
        return self._by_lower.get(field.lower())

    def column(self, field: str) -> Column | None:
        """Views of the column a rule field maps to, or None when the table has no such column."""
        name = self.column_name(field)
        return None if name is None else self.column_by_name(name)

    def column_by_name(self, name: str) -> Column:
        """Views of a table column (which must exist) restricted to this sub-frame."""
        col = self._columns.get(name)
        if col is None and self.index is not None:
            if self.index.table is not None:
                col = self._columns[name] = self.index.whole_column(name, self.positions)
                return col
            arr = self.index.arrow_strings(name)
            if arr is not None:
                if self.positions is not None:
                    arr = arr.take(pa.array(self.positions, type=pa.int64()))
                col = self._columns[name] = Column(None, name, raw=arr)
        if col is None:
            series = self.df[name]
            if self.positions is not None:
                series = series.take(self.positions)
            col = self._columns[name] = Column(series.reset_index(drop=True), name)
        return col

    @cached_property
    def text_columns(self) -> list[Column]:
        """Columns searched by keyword (field-less) detections: string columns outside the envelope with values."""
        out = []
        if self.index is not None:
            for name in self.index.text_names():
                present = self.index.notna(name)
                # a column without a value in these rows is skipped before its views are built
                if present.any() if self.positions is None else present[self.positions].any():
                    out.append(self.column_by_name(name))
            return out
        import pandas as pd

        for name in self.df.columns:
            if not isinstance(name, str) or name in ENVELOPE_COLUMNS:
                continue
            dtype = self.df[name].dtype
            if not (pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)):
                continue
            col = self.column_by_name(name)
            if col.has_values:
                out.append(col)
        return out

    def zeros(self, sel: np.ndarray | None) -> np.ndarray:
        """An all-False result for the selected rows."""
        return np.zeros(self.n if sel is None else len(sel), dtype=bool)

    def ones(self, sel: np.ndarray | None) -> np.ndarray:
        """An all-True result for the selected rows."""
        return np.ones(self.n if sel is None else len(sel), dtype=bool)
