"""Making attacker-controlled text safe for spreadsheets (CSV and XLSX) and visible to a reader.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a line break is read as a formula by Excel,
LibreOffice or Google Sheets (CSV injection). Every string cell gets a leading ``'`` in that case, so it
reads as text. A CSV opened where the list separator is ``;`` (most of Europe) splits a cell at its
``;`` (and a reader that ignores quotes at its ``,`` or line breaks): every segment after such a
separator that would start a formula gets the same ``'`` (``Mozilla/5.0;=cmd|..`` becomes
``Mozilla/5.0;'=cmd|..``), so no locale's split can produce a live formula. XLSX cannot hold some
control characters at all, and a cell holds 32,767 characters.

Bidirectional controls (U+202E RIGHT-TO-LEFT OVERRIDE and its kin) make ``gpj.aspx`` read as
``xpsa.jpg``; :func:`visible_controls` shows them as ``<U+202E>`` in HTML and CSV (the parquet and
JSONL keep the bytes).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from triage.report.xlsx import ILLEGAL_XML, shown_illegal

if TYPE_CHECKING:  # pandas loads on first use: the text-export workers write from Arrow without it
    import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
XLSX_CELL_MAX = 32_767
# a formula start right after a separator some locale or reader splits cells at (optionally after blanks)
_SEGMENT_FORMULA = re.compile(r"([,;\t\r\n][ \t]*)([=+\-@])")
_SEGMENT_FORMULA_ANY = re.compile(r"[,;\t\r\n][ \t]*[=+\-@]")
# bidirectional formatting characters (embeddings, overrides, isolates, marks)
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_BIDI = re.compile(f"[{BIDI_CONTROLS}]")


def visible_controls(value: object) -> object:
    """Text with every bidi control shown as ``<U+XXXX>``; other values unchanged."""
    if isinstance(value, str) and _BIDI.search(value):
        return _BIDI.sub(lambda m: f"<U+{ord(m.group()):04X}>", value)
    return value


def neutralise_formulas(value: object) -> object:
    """Make a cell that a spreadsheet would evaluate (=, +, -, @ ...) read as text."""
    if not isinstance(value, str):
        return value
    if _SEGMENT_FORMULA.search(value):
        value = _SEGMENT_FORMULA.sub(r"\1'\2", value)
    return "'" + value if value.startswith(FORMULA_START) else value


def neutralise_series(s: pd.Series) -> pd.Series:
    """Vectorised :func:`neutralise_formulas` over a text column (non-text columns come back unchanged)."""
    import pandas as pd

    if not (pd.api.types.is_string_dtype(s) or s.dtype == object):
        return s
    text = s.astype("string")
    inner = text.str.contains(_SEGMENT_FORMULA_ANY, regex=True).fillna(False).astype(bool)
    if inner.any():
        text = text.copy()
        text[inner] = text[inner].str.replace(_SEGMENT_FORMULA, r"\1'\2", regex=True)
    mask = text.str.startswith(FORMULA_START).fillna(False).astype(bool)
    if not mask.any() and not inner.any():
        return s
    out = text.copy()
    out[mask] = "'" + text[mask]
    return out


def visible_series(s: pd.Series) -> pd.Series:
    """Vectorised :func:`visible_controls` over a text column (non-text columns come back unchanged)."""
    import pandas as pd

    if not (pd.api.types.is_string_dtype(s) or s.dtype == object):
        return s
    text = s.astype("string")
    mask = text.str.contains(_BIDI, regex=True).fillna(False).astype(bool)
    if not mask.any():
        return s
    out = text.copy()
    out[mask] = text[mask].str.replace(_BIDI, lambda m: f"<U+{ord(m.group()):04X}>", regex=True)
    return out


# one pass finds every cell that :func:`csv_text` would change: a bidi control, a formula start, or a formula
# start after a separator (RE2 syntax, for Arrow)
CSV_SUSPECT = (
    "[" + "".join(f"\\x{{{ord(c):04x}}}" for c in BIDI_CONTROLS) + "]" + "|^[=+@\\t\\r\\n-]|[,;\\t\\r\\n][ \\t]*[=+@-]"
)


def csv_text(value: str) -> str:
    """A CSV cell: bidi controls shown, formulas neutralised (:func:`visible_controls`, :func:`neutralise_formulas`)."""
    result = neutralise_formulas(visible_controls(value))
    assert isinstance(result, str)
    return result


def csv_series(s: pd.Series) -> pd.Series:
    """:func:`csv_text` over a text column: one Arrow regex pass over the column flags the few cells that need
    a change, and only those pass through Python (the same result as :func:`visible_series` then
    :func:`neutralise_series`, at a fraction of their three passes)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(s.astype("string"), type=pa.large_string(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    flagged = pc.fill_null(pc.match_substring_regex(arr, CSV_SUSPECT), False)
    if not pc.any(flagged).as_py():
        return s.astype("string")
    rows = np.flatnonzero(flagged.to_numpy(zero_copy_only=False))
    fixed = pa.array([csv_text(v) for v in arr.take(pa.array(rows)).to_pylist()], pa.large_string())
    out = pc.replace_with_mask(arr, flagged, fixed)
    return pd.Series(pd.array(out, dtype="string"), index=s.index, name=s.name)


def neutralise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with every text column neutralised."""
    out = df.copy()
    for col in out.columns:
        out[col] = neutralise_series(out[col])
    return out


def xlsx_text(value: str, limit: int = XLSX_CELL_MAX) -> str:
    """Text that an XLSX cell can hold and that no spreadsheet evaluates."""
    text = shown_illegal(str(visible_controls(value)))
    if len(text) > limit - 1:
        text = text[: limit - 40] + " ... [truncated, see findings.jsonl]"
    result = neutralise_formulas(text)
    assert isinstance(result, str)
    return result


def xlsx_series(s: pd.Series) -> pd.Series:
    """:func:`xlsx_text` over a whole text column."""
    text = visible_series(s.astype("string")).astype("string")
    text = text.str.replace(ILLEGAL_XML, lambda m: f"\\x{ord(m.group()):02x}", regex=True)
    long = text.str.len().fillna(0) > XLSX_CELL_MAX - 1
    if long.any():
        text[long] = text[long].str.slice(0, XLSX_CELL_MAX - 40) + " ... [truncated, see findings.jsonl]"
    return neutralise_series(text)


def xlsx_value(value: Any) -> Any:
    """A Python value as an XLSX cell value: numbers and booleans stay, the rest becomes safe text."""
    import pandas as pd

    if value is None or value is pd.NA:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return None if value != value else value  # NaN is no value
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        try:
            return xlsx_value(value.item())
        except (ValueError, AttributeError):
            pass
    if isinstance(value, list | tuple | set):
        value = ", ".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = ", ".join(f"{k}: {v}" for k, v in value.items())
    return xlsx_text(str(value))
