"""Assembling the report: ``findings.parquet`` (canonical) and everything rendered from it.

``build_report(case)`` writes into ``CASE/report/``:

==========================  ==============================================================
findings.parquet            every finding of every analyzer and host, typed, deduplicated
findings.csv / .jsonl       the same, as text (CSV cells formula-safe; JSONL attributes nested)
findings.xlsx               summary, hosts, ledger, CISA rows, one sheet per area, manifest, runs
timesketch.jsonl            dated findings in Timesketch's import format
findings.stix.json          STIX 2.1 bundle: identities, indicators, sightings, observed files
ledger.csv / ledger.json    the ED 21-02 ledger: status per step and host, with evidence
cisa_template.csv / .xlsx   per-server rows for CISA's reporting template
report.html                 one self-contained page (verdicts, ledger, timeline, tables)
==========================  ==============================================================

and records the outputs with their hashes in the custody log.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from triage.case import Case
from triage.finding import SEVERITIES, coerce_findings, findings_frame
from triage.hashing import hash_file
from triage.report.cells import FORMULA_START, neutralise_formulas
from triage.report.context import ReportContext, ReportOptions, manifest_frame
from triage.report.result import ReportResult, outcome  # pandas-free: a report's summary crosses processes
from triage.results import unit_records

log = logging.getLogger(__name__)
__all__ = [
    "FORMULA_START",
    "ReportOptions",
    "ReportResult",
    "build_report",
    "load_findings",
    "load_runs",
    "neutralise_formulas",
    "outcome",
]

OUTPUT_WHAT = {
    "findings.parquet": "all findings (canonical, typed)",
    "findings.csv": "all findings, spreadsheet-safe CSV",
    "findings.jsonl": "all findings, one JSON object per line",
    "timesketch.jsonl": "dated findings for Timesketch import",
    "findings.stix.json": "STIX 2.1 bundle",
    "ledger.json": "ED 21-02 ledger with evidence",
    "ledger.csv": "ED 21-02 ledger, flat",
    "cisa_template.csv": "rows for CISA's ED 21-02 template",
    "cisa_template.xlsx": "rows for CISA's ED 21-02 template, with dropdowns",
    "findings.xlsx": "workbook: summary, ledger, CISA rows, areas, manifest, runs",
}


def load_runs(case: Case) -> pd.DataFrame:
    """All unit run records of the case as a frame: one row per artifact, from single and batch records alike."""
    recs = [rec for _path, rec in unit_records(case.path)]  # unreadable records are logged there
    cols = [
        "analyzer",
        "analyzer_version",
        "evidence_id",
        "host",
        "status",
        "findings",
        "duration_s",
        "message",
    ]
    # the union of keys: records written by older versions lack newer fields (worker, run_id)
    extra = dict.fromkeys(k for rec in recs for k in rec if k not in cols)
    return pd.DataFrame.from_records(recs, columns=[*cols, *extra])


def load_findings(case: Case, warnings: list[str] | None = None) -> pd.DataFrame:
    """Every unit's findings, one typed frame, deduplicated by finding_id, in report order.

    The frame of :func:`load_findings_table` (its text columns wrapped without a copy).
    """
    table = load_findings_table(case, warnings)
    return findings_frame([]) if table is None else findings_frame_of(table)


# Text columns whose values repeat across findings (a few rules, hosts, artifacts): the report process holds each
# as shared Python strings, one per distinct value, and 8 bytes per finding (a million findings: ~240 MiB less
# than their Arrow text). Columns that differ per finding (ids, titles, messages, locations, attributes) stay Arrow.
SHARED_TEXT = (
    "case_id",
    "host",
    "analyzer",
    "analyzer_version",
    "rule_id",
    "rule_title",
    "confidence",
    "ts_desc",
    "evidence_id",
    "evidence_path",
    "evidence_sha256",
    "mitre",
    "cve",
    "ed2102_steps",
    "tags",
    "references",
)


def load_findings_table(case: Case, warnings: list[str] | None = None, *, shared: bool = False) -> Any:
    """Every unit's findings as one canonical Arrow table, deduplicated by finding_id, in report order (None
    when there are none).

    The result files are read as Arrow tables (one whose columns or types are not the canonical ones, e.g.
    written by an older version, goes through :func:`coerce_findings` first), concatenated without a copy,
    deduplicated and ordered in Arrow: each column is taken in report order and its unordered source
    released before the next, so a million findings are held about once. ``shared``: the columns of
    :data:`SHARED_TEXT` are read and kept as dictionary arrays (their text is never expanded; see
    :func:`findings_frame_of` and :func:`write_findings_parquet`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from triage.report.arrowmem import use_jemalloc

    use_jemalloc()
    canonical = arrow_schema()
    as_dict = list(SHARED_TEXT) if shared else []
    tables = []
    for path in sorted((case.path / "results").glob("*/*.parquet")):
        try:
            if pq.read_schema(path).remove_metadata().equals(canonical):
                table = pq.read_table(path, read_dictionary=as_dict)
            else:
                table = pq.read_table(path)
                table = pa.Table.from_pandas(coerce_findings(table.to_pandas()), preserve_index=False)
                table = table.replace_schema_metadata(None).cast(canonical)
                for name in as_dict:
                    table = table.set_column(
                        table.schema.get_field_index(name), name, table[name].cast(pa.string()).dictionary_encode()
                    )
            tables.append(table.replace_schema_metadata(None))
        except Exception as exc:  # a damaged result file must not hide the others
            msg = f"unreadable result file {path.relative_to(case.path)}: {exc}"
            log.warning(msg)
            if warnings is not None:
                warnings.append(msg)
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return None
    table = pa.concat_tables(tables)
    del tables
    order = _report_order(table)
    names = table.column_names
    columns: list[Any] = list(table.columns)
    del table

    out = []
    for i in range(len(names)):
        # one column at a time (two in threads measured +70 MiB of peak at 1M findings, at the 1 GiB limit):
        # taken in report order, then the unordered source is released
        source, columns[i] = columns[i], None
        if names[i] in as_dict:  # one dictionary for all files: the take then moves indices only
            source = source.unify_dictionaries()
        out.append(source.take(order))
        del source
    return pa.table(out, names=names)


def findings_frame_of(table: Any) -> pd.DataFrame:
    """The canonical findings frame of a findings table (text columns wrapped without a copy; dictionary columns
    as shared Python strings)."""
    return pd.DataFrame({name: _series(name, table[name]) for name in table.column_names}, copy=False)


def write_findings_parquet(table: Any, path: Path, row_group: int) -> None:
    """``findings.parquet`` from a findings table: the bytes ``DataFrame.to_parquet`` writes (canonical schema
    with its pandas metadata), in row groups of ``row_group`` findings. Written group by group, so a dictionary
    column is expanded to text one group at a time."""
    import pyarrow.parquet as pq

    schema = parquet_schema()
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, max(table.num_rows, 1), row_group):
            writer.write_table(table.slice(start, row_group).cast(schema), row_group_size=row_group)


def parquet_schema() -> Any:
    """The canonical findings schema with the pandas metadata ``DataFrame.to_parquet`` writes (read back, the
    file gives the same typed frame)."""
    import pyarrow as pa

    return pa.Schema.from_pandas(findings_frame([]), preserve_index=False)


_SCHEMA: Any = None


def arrow_schema() -> Any:
    """The Arrow schema of a canonical findings frame (what every current result file holds)."""
    global _SCHEMA
    if _SCHEMA is None:
        import pyarrow as pa

        _SCHEMA = pa.Schema.from_pandas(findings_frame([]), preserve_index=False).remove_metadata()
    return _SCHEMA


def _series(name: str, values: Any) -> pd.Series:
    """One canonical findings column from an Arrow column (text wrapped without a copy)."""
    import pyarrow as pa

    from triage.finding import FINDING_DTYPES

    dtype = FINDING_DTYPES[name]
    if name == "ts":
        return pd.Series(values.to_pandas(), name=name).astype(dtype)
    if name == "severity":
        return pd.Series(values.to_pandas(), name=name).astype(dtype)
    if pa.types.is_dictionary(values.type):
        return pd.Series(_shared_strings(values), name=name, copy=False)
    return pd.Series(pd.array(values, dtype=dtype), name=name)


def _shared_strings(values: Any) -> Any:
    """A dictionary column as a pandas string array of Python strings, one object per distinct value (the
    values and missing cells a ``string`` column of the same text has)."""
    import numpy as np
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    words = values.dictionary.to_pylist()
    pool = np.empty(len(words) + 1, dtype=object)
    pool[: len(words)] = words
    pool[len(words)] = pd.NA  # a missing cell
    codes = values.indices.fill_null(len(words)).to_numpy(zero_copy_only=False)
    return pd.arrays.StringArray(pool[codes], dtype=pd.StringDtype("python"))


def _first_of_each(ids: Any, paths: Any = None) -> Any:
    """Positions of the first row of each distinct id, ascending (a missing id counts as one value, as pandas'
    ``duplicated`` has it). By a stable sort and a look at neighbours: less memory than a hash of every id.

    With ``paths`` (the rows' evidence paths), of the rows sharing an id the one with the first path is kept:
    the same finding in copies of one file (same bytes, so the same id) is then told under the same artifact in
    every report of the case, whichever result file the run happened to write first.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(ids)
    by_id = pc.sort_indices(ids)  # stable: within equal ids, input order
    ordered = ids.take(by_id)
    if isinstance(ordered, pa.ChunkedArray):
        ordered = ordered.combine_chunks()
    head, tail = ordered.slice(0, n - 1), ordered.slice(1)
    same = pc.or_(pc.fill_null(pc.equal(tail, head), False), pc.and_(pc.is_null(tail), pc.is_null(head))).to_numpy(
        zero_copy_only=False
    )
    keep = np.ones(n, dtype=bool)
    order = by_id.to_numpy()
    keep[order[1:][same]] = False  # every later row of a run of equal ids
    if paths is not None and same.any():
        # runs of equal ids (rare: copies of a file): the row with the first path, ties to the first row
        run = np.cumsum(np.concatenate([[True], ~same]))
        dup = np.concatenate([[False], same]) | np.concatenate([same, [False]])
        rows = order[dup]
        where = paths.take(pa.array(rows, type=pa.int64()))
        if pa.types.is_dictionary(where.type):
            where = where.cast(pa.large_string())
        best: dict[int, tuple[str, int]] = {}
        for r, group, path in zip(rows.tolist(), run[dup].tolist(), where.to_pylist(), strict=True):
            key = (path if path is not None else "\uffff", r)  # a missing path last
            if group not in best or key < best[group]:
                best[group] = key
        keep[rows] = False
        keep[[r for _, r in best.values()]] = True
    return np.flatnonzero(keep)


def _plain(values: Any) -> Any:
    """A dictionary column as its text (sort keys compare values, not dictionary positions)."""
    import pyarrow as pa

    return values.cast(pa.large_string()) if pa.types.is_dictionary(values.type) else values


def _report_order(table: Any) -> Any:
    """Row positions of the report: first finding per ``finding_id``, most severe first, then by time,
    analyzer, rule and location, missing values last, ties in input order (arrow's stable sort over the
    key columns alone: no copy of the text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keep = _first_of_each(table["finding_id"], table["evidence_path"])
    rows = pa.array(keep)
    severity = pc.index_in(pc.cast(table["severity"].take(rows), pa.string()), value_set=pa.array(SEVERITIES))
    keys = pa.table(
        {
            "severity": severity,
            **{c: _plain(table[c].take(rows)) for c in ("ts", "analyzer", "rule_id", "location")},
        }
    )
    sort_keys = [("severity", "descending", "at_end")]
    sort_keys += [(c, "ascending", "at_end") for c in ("ts", "analyzer", "rule_id", "location")]
    pos = pc.sort_indices(keys, sort_keys=sort_keys).to_numpy()
    return pa.array(keep[pos])


def report_context(
    case: Case, options: ReportOptions | None = None, warnings: list[str] | None = None
) -> ReportContext:
    """Gather the findings, manifest, runs and directive of a case."""
    from triage.report.directive import load_directive

    warnings = warnings if warnings is not None else []
    table = load_findings_table(case, warnings, shared=True)
    df = findings_frame([]) if table is None else findings_frame_of(table)
    return ReportContext(
        case_id=case.case_id,
        case_info=dict(case.info),
        findings=df,
        table=table,
        manifest=manifest_frame(list(case.manifest())),
        runs=load_runs(case),
        directive=load_directive(),
        generated=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        options=options or ReportOptions(),
        warnings=warnings,
        case_path=str(case.path),
    )


def _hosts_frame(summaries: dict[str, Any], tally: dict[str, dict[str, int]]) -> pd.DataFrame:
    rows = []
    for host, s in summaries.items():
        f = s.facts
        t = tally.get(host, {})
        rows.append(
            {
                "host": host,
                "verdict": s.verdict,
                "cves": ", ".join(s.cves),
                "max_severity": s.max_severity or "",
                "indications": s.indications,
                "findings": s.findings_total,
                **{f"count_{k}": v for k, v in s.counts.items()},
                "exchange": f.exchange,
                "build_verdict": f.build_verdict,
                "os": f.os,
                "internal_ips": ", ".join(f.internal_ips),
                "ledger_done": t.get("done", 0),
                "ledger_not_done": t.get("not done", 0),
                "ledger_manual": t.get("needs manual attestation", 0),
                "ledger_not_applicable": t.get("not applicable", 0),
                "caveats": " | ".join(s.caveats),
                "evidence": " | ".join(f"{e['evidence_path']} ({e['sha256']})" for e in s.evidence),
            }
        )
    return pd.DataFrame(rows)


def _flat(prefix: str, obj: Any) -> list[tuple[str, Any]]:
    """Nested provenance as (key, value) rows for a sheet."""
    if isinstance(obj, dict):
        out: list[tuple[str, Any]] = []
        for k, v in obj.items():
            out += _flat(f"{prefix}.{k}" if prefix else str(k), v)
        return out
    if isinstance(obj, list):
        if all(not isinstance(v, dict | list) for v in obj):
            return [(prefix, ", ".join(map(str, obj)))]
        out = []
        for i, v in enumerate(obj):
            out += _flat(f"{prefix}[{i}]", v)
        return out
    return [(prefix, obj)]


def build_report(
    case: Case,
    options: ReportOptions | None = None,
    *,
    html: bool = True,
    stix: bool = True,
    xlsx: bool = True,
) -> ReportResult:
    """Write the report files and record them in the custody log."""
    from triage.report.cisa import cisa_frame, cisa_rows
    from triage.report.exports import (
        CHUNK,
        PARALLEL_ROWS,
        run_aside,
        start_finding_exports,
        write_cisa_xlsx,
        write_frame_csv,
        write_json,
        write_xlsx,
    )
    from triage.report.hosts import VERDICT_INSUFFICIENT, host_summaries
    from triage.report.ledger import build_ledger
    from triage.report.provenance import provenance

    t0 = time.perf_counter()
    result = ReportResult()
    clock = [t0]
    # a begin event first: a report killed mid-way is then told apart (verify: incomplete, 6) from report
    # files that no command wrote (3); the end event below names the same id
    report_id = uuid.uuid4().hex
    case.custody.append("report_begin", report_id=report_id)

    def lap(stage: str) -> None:
        now = time.perf_counter()
        result.timings[stage] = round(now - clock[0], 3)
        clock[0] = now

    out = case.path / "report"
    out.mkdir(exist_ok=True)
    ctx = report_context(case, options, result.warnings)
    df = ctx.findings
    files: dict[str, Path] = {}

    def target(name: str) -> Path:
        files[name] = out / name
        return files[name]

    lap("load")
    # row groups of one export chunk: the writer buffers one group, the export workers read one at a time
    if ctx.table is not None:  # written from the Arrow table itself (the bytes DataFrame.to_parquet writes)
        write_findings_parquet(ctx.table, target("findings.parquet"), CHUNK)
        # the frame holds what the rest reads; the text exports read the file just written
        ctx.table = None
        exports_src: Any = files["findings.parquet"]
    else:
        df.to_parquet(target("findings.parquet"), index=False, row_group_size=CHUNK)
        exports_src = df
    lap("parquet")
    prov = provenance(case, ctx)
    lap("provenance")
    stix_job = None
    if stix:
        from triage.report.arrowmem import release_columns
        from triage.report.stix import STIX_COLUMNS, build_bundle

        roots = [Path(r["path"]) for r in prov["rule_sets"] if r.get("path")]
        # computed once here, shared with the forked child, which would otherwise compute them for itself
        _ = (ctx.host_column, ctx.hosts, ctx.kind_of, ctx.severity_codes, ctx.combos)

        def write_stix(path: Path, forked: bool) -> dict[str, int]:
            if forked:  # this copy gives back, at once, the finding columns the bundle never reads
                release_columns(ctx.findings, keep=STIX_COLUMNS)
            bundle, counts = build_bundle(ctx, roots)
            path.write_text(bundle.serialize(pretty=False), encoding="utf-8")
            return counts

        # on a large case the bundle is built by a forked copy of this process (forked before any worker pool
        # or thread exists) while this one writes the rest
        aside = len(df) >= PARALLEL_ROWS
        stix_job = run_aside(write_stix, out / "findings.stix.json", aside, aside=aside)
        lap("stix")
    # CSV, JSONL and Timesketch: streamed in chunks; on large cases by worker processes reading the parquet
    # above while this process writes the rest (they are waited for before the outputs are hashed)
    exports_job = start_finding_exports(
        exports_src,
        len(df),
        files["findings.parquet"],
        target("findings.csv"),
        target("findings.jsonl"),
        target("timesketch.jsonl"),
    )
    lap("text exports")

    summaries = host_summaries(ctx)
    ledger = build_ledger(ctx, summaries)
    write_json(ledger.as_json(ctx), target("ledger.json"))
    ledger_df = ledger.frame()
    write_frame_csv(ledger_df, target("ledger.csv"))
    cisa = cisa_frame(cisa_rows(ctx.case_id, summaries, ledger, df))
    write_frame_csv(cisa, target("cisa_template.csv"))
    lap("ledger")
    if stix:
        target("findings.stix.json")  # begun above; listed here, in the order of the outputs
    counts = df["severity"].value_counts()
    result.findings = len(df)
    result.by_severity = {s: int(counts.get(s, 0)) for s in reversed(SEVERITIES)}
    result.by_analyzer = {str(k): int(v) for k, v in df["analyzer"].value_counts().sort_index().items()}
    present = [s for s in SEVERITIES if result.by_severity.get(s)]
    result.max_severity = present[-1] if present else None
    if len(ctx.runs):
        table = ctx.runs.groupby(["analyzer", "status"]).size().unstack(fill_value=0)
        result.runs = {str(a): {str(s): int(n) for s, n in row.items() if n} for a, row in table.iterrows()}
    result.ledger = ledger.tally()
    result.hosts = {
        h: {
            "verdict": s.verdict,
            "cves": s.cves,
            "max_severity": s.max_severity,
            "indications": s.indications,
            "missing": s.missing if s.verdict == VERDICT_INSUFFICIENT else [],
            "coverage": {c["family"]: c["status"] for c in s.coverage},
        }
        for h, s in summaries.items()
    }

    if xlsx:
        write_cisa_xlsx(cisa, target("cisa_template.xlsx"))
        summary_rows: list[tuple[str, Any]] = [
            ("Case", ctx.case_id),
            ("Generated", ctx.generated),
            ("Findings", len(df)),
            *((f"Findings {s}", n) for s, n in result.by_severity.items()),
            *((f"Host {h}", f"{s.verdict}; CVEs: {', '.join(s.cves) or '-'}") for h, s in summaries.items()),
            ("Timesketch: findings without a time (left out)", int(df["ts"].isna().sum())),
            ("Full data", "findings.parquet (canonical), findings.csv, findings.jsonl"),
        ]
        write_xlsx(
            ctx,
            target("findings.xlsx"),
            summary=summary_rows,
            hosts=_hosts_frame(summaries, result.ledger),
            ledger=ledger_df,
            cisa=cisa,
            provenance_rows=_flat("", {k: v for k, v in prov.items() if k != "rule_sets"})
            + [(f"rule_set {r['name']}", f"{r['count']} files, sha256 {r['sha256']}") for r in prov["rule_sets"]],
        )
        lap("xlsx")
    if stix_job is not None:
        result.stix = stix_job.result()
        lap("stix (wait)")
        if result.stix.get("observed_omitted"):
            result.warnings.append(
                f"STIX: {result.stix['observed_omitted']} observed files over the cap of "
                f"{ctx.options.stix_max_observed} were left out (all are in findings.parquet)"
            )

    result.timesketch_skipped, hashed = exports_job.result()
    lap("text exports (wait)")
    # the large exports were hashed by the processes that wrote them (hashed: name -> sha256)
    hashes = {name: hashed.get(name) or hash_file(p, ("sha256",))[1]["sha256"] for name, p in files.items()}
    if html:
        from triage.report.html import render_html

        outputs = [{"name": n, "what": OUTPUT_WHAT.get(n, ""), "sha256": h} for n, h in hashes.items()]
        page = render_html(ctx, summaries, ledger, prov, outputs)
        target("report.html").write_text(page, encoding="utf-8")
        hashes["report.html"] = hash_file(files["report.html"], ("sha256",))[1]["sha256"]
        result.html = str(files["report.html"])
        lap("html")
    result.outputs = {name: str(p) for name, p in files.items()}
    result.seconds = round(time.perf_counter() - t0, 3)
    case.custody.append(
        "report",
        report_id=report_id,
        findings=result.findings,
        by_severity=result.by_severity,
        ledger=result.ledger,
        outputs=hashes,
        custody_head_before=prov["custody_head"],
    )
    return result
