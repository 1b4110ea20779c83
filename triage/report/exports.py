"""File exports rendered from the findings frame: CSV, JSONL, Timesketch JSONL, XLSX, ledger, CISA rows.

All spreadsheet-bound text goes through :mod:`triage.report.cells` (formula neutralisation; XLSX also
drops characters XML cannot hold and clips to the cell limit).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from triage.finding import FINDING_COLUMNS
from triage.report import arrowmem, textexports
from triage.report.cells import (
    csv_series,
    neutralise_formulas,
    visible_controls,
    xlsx_series,
    xlsx_text,
    xlsx_value,
)
from triage.report.context import ReportContext

TIMESKETCH_FIELDS = textexports.TIMESKETCH_FIELDS
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
# The findings' text exports are written from Arrow record batches by triage.report.textexports (bounded
# memory, no pandas). Over PARALLEL_ROWS findings they run in worker processes that read findings.parquet
# themselves while this one writes the rest.
CHUNK = textexports.CHUNK
PARALLEL_ROWS = 250_000


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
            if len(s) <= SMALL_SHEET:  # a few rows: cell by cell costs less than the column-wise passes
                cells = [None if v is None else neutralise_formulas(visible_controls(str(v))) for v in _objects(s)]
                s = pd.Series(cells, index=s.index, dtype="string")
            else:
                s = csv_series(s)
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


def write_findings_csv(df: Any, path: Path, chunk: int = CHUNK) -> None:
    """All findings (``ts`` and ``severity`` are typed, never attacker text), written batch by batch from Arrow
    (:func:`triage.report.textexports.write_csv`).

    ``df`` is the findings frame, an Arrow table of them, or their chunks in order (:func:`parquet_chunks`); the
    bytes are those of :func:`write_frame_csv` over the whole frame.
    """
    textexports.write_csv(df, path, chunk)


def write_findings_jsonl(df: Any, path: Path, chunk: int = CHUNK) -> None:
    """One JSON object per finding; ``attributes`` nested as an object. Bounded memory (Arrow batches)."""
    textexports.write_jsonl(df, path, chunk)


def write_timesketch(df: Any, path: Path, chunk: int = CHUNK) -> int:
    """Write the Timesketch JSONL (the rows :func:`timesketch_frame` describes); returns how many findings
    were left out for lack of a time."""
    return textexports.write_timesketch_jsonl(df, path, chunk)[0]


_json_attributes = textexports.json_attributes
_export_from_parquet = textexports.export_from_parquet
use_jemalloc = arrowmem.use_jemalloc


def _chunks(df: pd.DataFrame, chunk: int) -> Iterable[pd.DataFrame]:
    for start in range(0, len(df), chunk):
        yield df.iloc[start : start + chunk]


def parquet_chunks(path: Path, chunk: int = CHUNK) -> Iterator[pd.DataFrame]:
    """The findings of a ``findings.parquet`` as typed frames of at most ``chunk`` rows, in file order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from triage.finding import coerce_findings

    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=chunk):
        yield coerce_findings(pa.Table.from_batches([batch], schema=pf.schema_arrow).to_pandas())


def _objects(values: pd.Series) -> list[Any]:
    return values.to_numpy(dtype=object, na_value=None).tolist()


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
    # one list per distinct (rule, severity, tags): a case has few of them, and every row of one shares it
    keys = pd.DataFrame({"r": dated["rule_id"], "s": sev, "t": dated["tags"]}).astype("string").fillna("")
    codes, uniques = pd.MultiIndex.from_frame(keys).factorize()
    lists = [
        list(dict.fromkeys(t for t in ("triage", rule, level, *(p.strip() for p in own.split(","))) if t))
        for rule, level, own in uniques
    ]
    out["tag"] = [lists[c] for c in codes.tolist()]
    out["details"] = dated["message"].astype("string")
    out["attributes"] = dated["attributes"].astype("string")
    return out, skipped


class ExportsJob:
    """The text exports under way (:func:`start_finding_exports`); :meth:`result` waits for them."""

    def __init__(self, value: tuple[int, dict[str, str]] | None = None, pool: Any = None, jobs: Any = None) -> None:
        self._value, self._pool, self._jobs = value, pool, jobs

    def result(self) -> tuple[int, dict[str, str]]:
        """The findings left out of the Timesketch file and the SHA-256 of each file, by file name."""
        if self._value is None:
            try:
                hashes: dict[str, str] = {}
                skipped = 0
                for name, job in self._jobs.items():
                    left_out, hashes[name] = job.result()
                    skipped += left_out
                self._value = (skipped, hashes)
            finally:
                self._pool.shutdown(wait=True, cancel_futures=True)
        return self._value


def start_finding_exports(df: Any, rows: int, parquet: Path, csv: Path, jsonl: Path, timesketch: Path) -> ExportsJob:
    """Begin the three text exports of the findings (``df``: their frame, Arrow table or ``findings.parquet``;
    ``rows``: how many; ``parquet``: the same findings, already written).

    Small cases are written here and now, in turn. Large ones are written by three worker processes, each
    reading ``parquet`` in Arrow batches, while this process goes on with the ledger,
    workbooks and page: the exports then overlap everything else on a machine with more than one core. Every
    file is hashed as it is written.
    """
    if rows < PARALLEL_ROWS:
        return ExportsJob(textexports.write_all(df, csv, jsonl, timesketch))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=3, mp_context=multiprocessing.get_context("spawn"))
    jobs = {
        path.name: pool.submit(textexports.export_from_parquet, kind, parquet, path)
        for kind, path in (("timesketch", timesketch), ("jsonl", jsonl), ("csv", csv))
    }
    return ExportsJob(pool=pool, jobs=jobs)


def write_finding_exports(
    df: Any, parquet: Path, csv: Path, jsonl: Path, timesketch: Path
) -> tuple[int, dict[str, str]]:
    """The three text exports, written before returning (see :func:`start_finding_exports`). Returns the
    findings left out of the Timesketch file and the SHA-256 of the files hashed so far, by file name."""
    return start_finding_exports(df, len(df), parquet, csv, jsonl, timesketch).result()


class Aside:
    """The result of :func:`run_aside`: ready now, or from the forked child when asked."""

    def __init__(self, value: Any = None, proc: Any = None, conn: Any = None) -> None:
        self._value, self._proc, self._conn = value, proc, conn

    def result(self) -> Any:
        if self._proc is None:
            return self._value
        try:
            ok, value = self._conn.recv()
        except EOFError:  # the child died without a word (killed, out of memory)
            ok, value = False, f"exit code {self._proc.exitcode}"
        finally:
            self._proc.join()
            self._conn.close()
            self._proc = None
        if not ok:
            raise RuntimeError(f"report worker failed: {value}")
        self._value = value
        return value


def run_aside(fn: Callable[..., Any], *args: Any, aside: bool = True) -> Aside:
    """Run ``fn(*args)`` in a forked copy of this process (it shares the loaded findings, nothing is
    pickled but the result) while the caller goes on; inline when ``aside`` is false or fork is missing.

    The child writes files only; it never touches the case's custody log or manifest.
    """
    import multiprocessing

    if not aside or "fork" not in multiprocessing.get_all_start_methods():
        return Aside(fn(*args))
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def work() -> None:
        try:
            child.send((True, fn(*args)))
        except BaseException as exc:  # reported to the parent, which raises it
            child.send((False, f"{type(exc).__name__}: {exc}"))

    proc = ctx.Process(target=work, daemon=True)
    proc.start()
    child.close()
    return Aside(proc=proc, conn=parent)


def write_json(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


# -- XLSX -----------------------------------------------------------------------------------------
class XlsxWriter:
    """A workbook (:mod:`triage.report.xlsx`) where every cell goes through :func:`xlsx_value`."""

    def __init__(self) -> None:
        from triage.report.xlsx import Workbook

        self.wb = Workbook()
        self.names: set[str] = set()

    def sheet(self, title: str, header: list[str], widths: dict[int, int] | None = None) -> Any:
        name = _sheet_name(title)
        base, n = name, 2
        while name.lower() in self.names:
            name = f"{base[:28]}~{n}"
            n += 1
        self.names.add(name.lower())
        return self.wb.sheet(name, [xlsx_value(h) for h in header], widths)

    @staticmethod
    def rows(ws: Any, rows: Iterable[Iterable[Any]], *, safe: bool = False) -> None:
        """Append rows; ``safe``: the values went through :func:`xlsx_series` already."""
        ws.rows(rows if safe else ([xlsx_value(v) for v in r] for r in rows))

    def frame(self, title: str, df: pd.DataFrame, widths: dict[int, int] | None = None) -> Any:
        ws = self.sheet(title, [str(c) for c in df.columns], widths)
        self.rows(ws, df.itertuples(index=False, name=None))
        return ws

    def save(self, path: Path) -> None:
        self.wb.save(path)


def _col_letter(i: int) -> str:
    from triage.report.xlsx import column_letter

    return column_letter(i)


FINDING_SHEET_COLUMNS = [c for c in FINDING_COLUMNS if c != "case_id"]
SMALL_SHEET = 200


def _finding_rows(ws: Any, df: pd.DataFrame) -> None:
    """Finding rows made XLSX-safe column by column and written as whole columns (these sheets are the big ones)."""
    import pyarrow as pa

    part = df[FINDING_SHEET_COLUMNS].copy()
    part["ts"] = _ts_text(part["ts"])
    part["severity"] = part["severity"].astype("string")
    if len(part) <= SMALL_SHEET:  # a few rows: cell by cell costs less than two dozen column passes
        cols = [_objects(part[c]) for c in part.columns]
        ws.rows([tuple(None if v is None else xlsx_text(str(v)) for v in row) for row in zip(*cols, strict=True)])
        return
    ws.text_columns(
        [pa.array(xlsx_series(part[c].astype("string")), type=pa.large_string(), from_pandas=True) for c in part]
    )


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
        _finding_rows(ws, df.iloc[rows])
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
    from triage.report.cisa import DROPDOWN, MSERT_COL, TPL_COL

    n = max(len(cisa), 1) + 1
    ranges = []
    for col in (MSERT_COL, TPL_COL):
        letter = _col_letter(list(cisa.columns).index(col) + 1)
        ranges.append(f"{letter}2:{letter}{n}")
    ws.dropdown(DROPDOWN, ranges)


def write_cisa_xlsx(cisa: pd.DataFrame, path: Path) -> None:
    xw = XlsxWriter()
    ws = xw.frame("Inventory", cisa, {i: 30 for i in range(1, len(cisa.columns) + 1)})
    _dropdowns(ws, cisa)
    xw.save(path)
