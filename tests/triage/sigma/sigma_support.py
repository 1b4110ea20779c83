"""Helpers for the Sigma engine tests: inline rule documents and small hand-built event frames."""

from __future__ import annotations

import textwrap
import uuid
from typing import Any

import pandas as pd

SYSMON = "Microsoft-Windows-Sysmon/Operational"
PROC = "product: windows\n  category: process_creation"

ENVELOPE_DEFAULTS = {"Channel": SYSMON, "EventID": 1, "Provider": "Microsoft-Windows-Sysmon", "Computer": "host1"}


def rule_text(
    detection: str,
    *,
    logsource: str = PROC,
    title: str = "test rule",
    rule_id: str | None = None,
    extra: str = "",
) -> str:
    """A Sigma rule document; ``detection`` is the YAML body under ``detection:`` (any indentation)."""
    body = textwrap.indent(textwrap.dedent(detection).strip("\n"), "  ")
    rid = rule_id or str(uuid.uuid4())
    return (
        f"title: {title}\nid: {rid}\nstatus: test\nlevel: high\nlogsource:\n  {logsource}\n{extra}detection:\n{body}\n"
    )


def frame(rows: list[dict[str, Any]], *, object_dtype: bool = False, defaults: bool = True) -> pd.DataFrame:
    """Events as the EVTX reader builds them: envelope columns filled in, EventID Int64, text as 'str'."""
    full = [{**ENVELOPE_DEFAULTS, **row} if defaults else dict(row) for row in rows]
    df = pd.DataFrame(full)
    for col in df.columns:
        if col in ("EventID", "EventRecordID", "Level"):
            df[col] = df[col].astype("Int64")
        elif df[col].dtype == object or pd.api.types.is_string_dtype(df[col].dtype):
            df[col] = df[col].astype(object if object_dtype else "str")
    return df


def sel(key: str, value: str) -> str:
    """A detection with one selection ``sel`` holding ``key: value`` (value as YAML text)."""
    return f"sel:\n  {key}: {value}\ncondition: sel"
