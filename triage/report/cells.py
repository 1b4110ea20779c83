"""Making attacker-controlled text safe for spreadsheets (CSV and XLSX).

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a line break is read as a formula by Excel,
LibreOffice or Google Sheets (CSV injection). Every string cell gets a leading ``'`` in that case, so it
reads as text. XLSX cannot hold some control characters at all, and a cell holds 32,767 characters.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
XLSX_CELL_MAX = 32_767
# the characters XML 1.0 (and so XLSX) cannot carry; shown as \xNN instead
_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def neutralise_formulas(value: object) -> object:
    """Make a cell that a spreadsheet would evaluate (=, +, -, @ ...) read as text."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def neutralise_series(s: pd.Series) -> pd.Series:
    """Vectorised :func:`neutralise_formulas` over a text column (non-text columns come back unchanged)."""
    if not (pd.api.types.is_string_dtype(s) or s.dtype == object):
        return s
    text = s.astype("string")
    mask = text.str.startswith(FORMULA_START).fillna(False).astype(bool)
    if not mask.any():
        return s
    out = text.copy()
    out[mask] = "'" + text[mask]
    return out


def neutralise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with every text column neutralised."""
    out = df.copy()
    for col in out.columns:
        out[col] = neutralise_series(out[col])
    return out


def xlsx_text(value: str, limit: int = XLSX_CELL_MAX) -> str:
    """Text that an XLSX cell can hold and that no spreadsheet evaluates."""
    text = _ILLEGAL_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", value)
    if len(text) > limit - 1:
        text = text[: limit - 40] + " ... [truncated, see findings.jsonl]"
    result = neutralise_formulas(text)
    assert isinstance(result, str)
    return result


def xlsx_series(s: pd.Series) -> pd.Series:
    """:func:`xlsx_text` over a whole text column."""
    text = s.astype("string")
    text = text.str.replace(_ILLEGAL_XML, lambda m: f"\\x{ord(m.group()):02x}", regex=True)
    long = text.str.len().fillna(0) > XLSX_CELL_MAX - 1
    if long.any():
        text[long] = text[long].str.slice(0, XLSX_CELL_MAX - 40) + " ... [truncated, see findings.jsonl]"
    return neutralise_series(text)


def xlsx_value(value: Any) -> Any:
    """A Python value as an XLSX cell value: numbers and booleans stay, the rest becomes safe text."""
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
