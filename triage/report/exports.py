"""File exports rendered from the findings frame: CSV, JSONL, Timesketch JSONL, XLSX, ledger, CISA rows.

All spreadsheet-bound text goes through :mod:`triage.report.cells` (formula neutralisation; XLSX also
drops characters XML cannot hold and clips to the cell limit).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from triage.finding import FINDING_COLUMNS
from triage.report.cells import neutralise_series, visible_series, xlsx_series, xlsx_value
from triage.report.context import ReportContext

TIMESKETCH_FIELDS = [
    "finding_id",
    "host",
    "severity",
    "confidence",
    "analyzer",
    "analyzer_version",
    "rule_id",
    "rule_title",
    "title",
    "evidence_id",
    "evidence_path",
    "evidence_sha256",
    "location",
    "mitre",
    "cve",
    "ed2102_steps",
    "tags",
    "case_id",
]
# Sheets by area: the first matching area wins; anything else gets a sheet named after its analyzer.
# Matching uses only generic fields (analyzer name, rule-id prefix, tags, directive families).
AREAS: list[tuple[str, dict[str, Any]]] = [
    ("Host facts", {"families": ("host_fact", "build_verdict")}),
    ("Coverage", {"families": ("coverage",)}),
    ("Web shells", {"tags": ("webshell", "staging"), "analyzers": ("webshell",)}),
    ("Exchange logs", {"families": ("test_proxylogon",), "analyzers": ("exchange", "proxylogon", "iis", "httpproxy")}),
    ("MSERT", {"families": ("msert",)}),
    ("Event logs", {"analyzers": ("eventlog", "evtx", "sigma"), "tags": ("sigma",)}),
    ("Registry", {"analyzers": ("registry", "hive")}),
    ("Memory", {"analyzers": ("memory", "volatility", "vol3")}),
    ("YARA", {"analyzers": ("yara",), "tags": ("yara",)}),
]
_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")
_NL = orjson.OPT_APPEND_NEWLINE


def finding_areas(ctx: ReportContext) -> np.ndarray:
    """Each finding's report area (sheet name)."""
    combos, codes = ctx.combos
    if not len(codes):
        return np.array([], dtype=object)
    area = pd.Series([None] * len(combos), index=combos.index, dtype=object)
    analyzer = combos["analyzer"].str.lower()
    tag_sets = combos["tags"].map(lambda t: {p.strip() for p in t.split(",") if p.strip()})
    for name, spec in AREAS:
        m = pd.Series(False, index=combos.index)
        for fam in spec.get("families", ()):
            m |= ctx.directive.family(fam).mask(combos)
        for sub in spec.get("analyzers", ()):
            m |= analyzer.str.contains(sub, regex=False)
        tags = set(spec.get("tags", ()))
        if tags:
            m |= tag_sets.map(lambda s, t=tags: not t.isdisjoint(s)).astype(bool)
        area[m & area.isna()] = name
    fallback = combos["analyzer"].map(lambda a: _sheet_name(a or "other"))
    area = area.fillna(fallback)
    return area.to_numpy()[codes]


def _sheet_name(name: str) -> str:
    return (_SHEET_BAD.sub("_", name).strip("'") or "sheet")[:31]


def _ts_text(s: pd.Series, suffix: str = "Z") -> pd.Series:
    """UTC times as ISO 8601 with microseconds (``2021-03-03T02:14:07.000000Z``); missing stay missing.

    numpy formats in C; ``strftime`` costs seconds per million values.
    """
    values = s.dt.tz_convert(None).to_numpy(dtype="datetime64[us]") if s.dt.tz is not None else s.to_numpy()
    text = np.char.add(np.datetime_as_string(values.astype("datetime64[us]"), unit="us"), suffix)
    return pd.Series(text, index=s.index, dtype="string").where(s.notna(), pd.NA)


# -- CSV / JSONL ----------------------------------------------------------------------------------
def _csv_table(df: pd.DataFrame) -> Any:
    """An arrow table of text columns, each neutralised; times as ISO 8601 UTC."""
    import pyarrow as pa

    cols = {}
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            s = _ts_text(s, "+00:00")
        elif isinstance(s.dtype, pd.CategoricalDtype):
            s = s.astype("string")
        elif pd.api.types.is_string_dtype(s) or s.dtype == object:
            s = neutralise_series(visible_series(s.astype("string")))
        cols[str(col)] = s
    return pa.Table.from_pandas(pd.DataFrame(cols), preserve_index=False)


def write_frame_csv(df: pd.DataFrame, path: Path) -> None:
    """A frame as CSV, every text cell neutralised and quoted (arrow's writer: fast on millions of rows).

    Cells holding ``,``, a quote or a line break are quoted (a bare CR stays inside its cell). A
    ``;``-locale reader splits cells at ``;`` whatever the quoting, so every segment that would start a
    formula is neutralised as well (see :mod:`triage.report.cells`). Bidi controls show as ``<U+XXXX>``.
    """
    import pyarrow.csv as pacsv

    pacsv.write_csv(_csv_table(df), path, pacsv.WriteOptions(quoting_style="needed"))


def write_findings_csv(df: pd.DataFrame, path: Path) -> None:
    """All findings (``ts`` and ``severity`` are typed, never attacker text)."""
    write_frame_csv(df, path)


def _json_attributes(value: Any) -> Any:
    """Attributes as a JSON object; text that is not one is kept as text, never spliced into the line."""
    if not isinstance(value, str):
        return None
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    return parsed if isinstance(parsed, dict) else value


def _chunks(df: pd.DataFrame, chunk: int) -> Iterable[pd.DataFrame]:
    for start in range(0, len(df), chunk):
        yield df.iloc[start : start + chunk]


def _column_lists(part: pd.DataFrame, columns: list[str]) -> list[list[Any]]:
    return [part[c].to_numpy(dtype=object, na_value=None).tolist() for c in columns]


def write_findings_jsonl(df: pd.DataFrame, path: Path, chunk: int = 100_000) -> None:
    """One JSON object per finding; ``attributes`` nested as an object. Bounded memory (chunks)."""
    keys = list(df.columns)
    with open(path, "wb") as fh:
        for part in _chunks(df, chunk):
            part = part.copy()
            part["ts"] = _ts_text(part["ts"])
            part["severity"] = part["severity"].astype("string")
            cols = _column_lists(part, keys)
            ai = keys.index("attributes")
            cols[ai] = [_json_attributes(v) for v in cols[ai]]
            rows = zip(*cols, strict=True)
            fh.write(b"".join(orjson.dumps(dict(zip(keys, row, strict=True)), option=_NL) for row in rows))


def timesketch_frame(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Timesketch import rows (``message``, ``datetime``, ``timestamp`` in µs, ``timestamp_desc`` + our fields).

    ``tag`` is a list, as Timesketch shows tags: ``triage``, the rule id, the severity, then the finding's own
    tags (the comma-separated ``tags`` field split). Findings without a time cannot sit on a timeline: they are
    left out and counted.
    """
    dated = df[df["ts"].notna()]
    skipped = len(df) - len(dated)
    sev = dated["severity"].astype("string")
    title = dated["title"].fillna("").astype("string")
    host = dated["host"].fillna("").astype("string")
    out = pd.DataFrame(
        {
            "message": "[" + sev.fillna("") + "] " + host + ": " + title,
            "datetime": _ts_text(dated["ts"], "+00:00"),
            "timestamp": dated["ts"].astype("int64"),  # datetime64[us] -> epoch microseconds
            "timestamp_desc": dated["ts_desc"].fillna("").replace("", "Finding time").astype("string"),
        },
        index=dated.index,
    )
    for col in TIMESKETCH_FIELDS:
        if col != "tags":  # a string field Timesketch does not read as tags: ``tag`` below
            out[col] = dated[col].astype("string")
    cols = [dated[c].astype("string").fillna("").tolist() for c in ("rule_id", "tags")]
    out["tag"] = [
        list(dict.fromkeys(t for t in ("triage", rule, level, *(p.strip() for p in own.split(","))) if t))
        for rule, level, own in zip(cols[0], sev.fillna("").tolist(), cols[1], strict=True)
    ]
    out["details"] = dated["message"].astype("string")
    out["attributes"] = dated["attributes"].astype("string")
    return out, skipped


def write_timesketch(df: pd.DataFrame, path: Path, chunk: int = 100_000) -> int:
    """Write the Timesketch JSONL; returns how many findings were left out for lack of a time."""
    skipped_total = 0
    with open(path, "wb") as fh:
        for part in _chunks(df, chunk):
            rows, skipped = timesketch_frame(part)
            skipped_total += skipped
            keys = list(rows.columns)
            cols = _column_lists(rows, keys)
            rows_out = zip(*cols, strict=True)
            fh.write(b"".join(orjson.dumps(dict(zip(keys, r, strict=True)), option=_NL) for r in rows_out))
    return skipped_total


def write_json(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


# -- XLSX -----------------------------------------------------------------------------------------
class XlsxWriter:
    """A streaming workbook (openpyxl write-only) where every cell goes through :func:`xlsx_value`."""

    def __init__(self) -> None:
        from openpyxl import Workbook

        self.wb = Workbook(write_only=True)
        self.names: set[str] = set()

    def sheet(self, title: str, header: list[str], widths: dict[int, int] | None = None) -> Any:
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.styles import Font, PatternFill

        name = _sheet_name(title)
        base, n = name, 2
        while name.lower() in self.names:
            name = f"{base[:28]}~{n}"
            n += 1
        self.names.add(name.lower())
        ws = self.wb.create_sheet(title=name)
        for i, w in (widths or {}).items():
            ws.column_dimensions[_col_letter(i)].width = w
        ws.freeze_panes = "A2"
        bold, fill = Font(bold=True), PatternFill("solid", fgColor="DDE3EA")
        cells = []
        for h in header:
            c = WriteOnlyCell(ws, value=xlsx_value(h))
            c.font, c.fill = bold, fill
            cells.append(c)
        ws.append(cells)
        return ws

    @staticmethod
    def rows(ws: Any, rows: Iterable[Iterable[Any]], *, safe: bool = False) -> None:
        """Append rows; ``safe``: the values went through :func:`xlsx_series` already."""
        for r in rows:
            ws.append(list(r) if safe else [xlsx_value(v) for v in r])

    def frame(self, title: str, df: pd.DataFrame, widths: dict[int, int] | None = None) -> Any:
        ws = self.sheet(title, [str(c) for c in df.columns], widths)
        self.rows(ws, df.itertuples(index=False, name=None))
        return ws

    def save(self, path: Path) -> None:
        self.wb.save(path)


def _col_letter(i: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(i)


FINDING_SHEET_COLUMNS = [c for c in FINDING_COLUMNS if c != "case_id"]


def _finding_rows(df: pd.DataFrame) -> Iterable[tuple[Any, ...]]:
    """Finding rows made XLSX-safe column by column (vectorised: these sheets are the big ones)."""
    part = df[FINDING_SHEET_COLUMNS].copy()
    part["ts"] = _ts_text(part["ts"])
    part["severity"] = part["severity"].astype("string")
    for col in part.columns:
        part[col] = xlsx_series(part[col].astype("string"))
    part = part.astype(object).where(part.notna(), None)
    return part.itertuples(index=False, name=None)


def write_xlsx(
    ctx: ReportContext,
    path: Path,
    *,
    summary: list[tuple[str, Any]],
    hosts: pd.DataFrame,
    ledger: pd.DataFrame,
    cisa: pd.DataFrame,
    provenance_rows: list[tuple[str, Any]],
) -> dict[str, int]:
    """The workbook: summary, hosts, ledger, CISA rows, one sheet per area, manifest, runs, provenance.

    Returns rows written per area sheet (areas over ``xlsx_max_rows`` keep their most severe rows).
    """
    df = ctx.findings
    xw = XlsxWriter()
    areas = finding_areas(ctx)
    area_names = list(dict.fromkeys(areas.tolist())) if len(areas) else []
    cap = ctx.options.xlsx_max_rows
    written: dict[str, int] = {}
    counts = {a: int((areas == a).sum()) for a in area_names}
    notes = [
        (f"Area {a}", f"{n} findings" + (f" (sheet holds the {cap} most severe)" if n > cap else ""))
        for a, n in counts.items()
    ]
    ws = xw.sheet("Summary", ["Item", "Value"], {1: 34, 2: 110})
    xw.rows(ws, [*summary, *notes])
    xw.frame("Hosts", hosts, {1: 18, 2: 22, 3: 60})
    xw.frame("ED 21-02 ledger", ledger, {1: 14, 2: 6, 3: 60, 4: 10, 5: 22, 6: 80, 7: 50})
    cisa_ws = xw.frame("CISA template", cisa, {i: 28 for i in range(1, 10)})
    _dropdowns(cisa_ws, cisa)
    widths = {FINDING_SHEET_COLUMNS.index(c) + 1: w for c, w in (("title", 60), ("message", 80), ("location", 40))}
    for area in area_names:
        rows = np.flatnonzero(areas == area)[:cap]  # frame is in report order: the most severe first
        ws = xw.sheet(area, FINDING_SHEET_COLUMNS, widths)
        xw.rows(ws, _finding_rows(df.iloc[rows]), safe=True)
        written[area] = len(rows)
    m = ctx.manifest.drop(columns=["extra"], errors="ignore")
    xw.frame("Manifest", m, {2: 14, 3: 16, 6: 70, 9: 66})
    if len(ctx.runs):
        runs = ctx.runs.copy()
        for col in runs.columns:
            runs[col] = runs[col].map(lambda v: "; ".join(map(str, v)) if isinstance(v, list) else v)
        xw.frame("Analyzer runs", runs)
    ws = xw.sheet("Provenance", ["Item", "Value"], {1: 34, 2: 110})
    xw.rows(ws, provenance_rows)
    xw.save(path)
    return written


def _dropdowns(ws: Any, cisa: pd.DataFrame) -> None:
    """The template's dropdown lists on the two triage columns, as in CISA's own sheet."""
    from openpyxl.worksheet.datavalidation import DataValidation

    from triage.report.cisa import DROPDOWN, MSERT_COL, TPL_COL

    n = max(len(cisa), 1) + 1
    dv = DataValidation(type="list", formula1='"' + ",".join(DROPDOWN) + '"', allow_blank=True)
    for col in (MSERT_COL, TPL_COL):
        letter = _col_letter(list(cisa.columns).index(col) + 1)
        dv.add(f"{letter}2:{letter}{n}")
    ws.data_validations.append(dv)


def write_cisa_xlsx(cisa: pd.DataFrame, path: Path) -> None:
    xw = XlsxWriter()
    ws = xw.frame("Inventory", cisa, {i: 30 for i in range(1, len(cisa.columns) + 1)})
    _dropdowns(ws, cisa)
    xw.save(path)
