"""The streamed text exports write the same bytes as the row-by-row writers they replaced.

The reference writers below are the previous implementation, kept here verbatim in behaviour: a whole
frame through arrow's CSV writer, and one ``orjson.dumps(dict)`` per row for the two JSONL files.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pandas as pd
import pytest
from report_support import finding

from triage.finding import findings_frame
from triage.report import exports
from triage.report.build import load_findings


def _ref_rows(frame: pd.DataFrame, nested: str | None) -> bytes:
    keys = list(frame.columns)
    cols = [frame[c].to_numpy(dtype=object, na_value=None).tolist() for c in keys]
    if nested:
        i = keys.index(nested)
        cols[i] = [exports._json_attributes(v) for v in cols[i]]
    return b"".join(
        orjson.dumps(dict(zip(keys, row, strict=True)), option=orjson.OPT_APPEND_NEWLINE)
        for row in zip(*cols, strict=True)
    )


def ref_jsonl(df: pd.DataFrame) -> bytes:
    part = df.copy()
    part["ts"] = exports._ts_text(part["ts"])
    part["severity"] = part["severity"].astype("string")
    return _ref_rows(part, "attributes")


def ref_timesketch(df: pd.DataFrame) -> tuple[bytes, int]:
    rows, skipped = exports.timesketch_frame(df)
    return _ref_rows(rows, None), skipped


def _nasty_frame() -> pd.DataFrame:
    """Findings with every kind of cell the JSON and CSV writers must escape or keep."""
    t = datetime(2021, 3, 3, 2, 14, 7, 123456, tzinfo=UTC)
    texts = [
        'quote " and backslash \\ and \\"both\\"',
        "line\nbreak\r\ttab\x00nul\x1fus\x7fdel",
        "=HYPERLINK(\"http://x\")",
        "a;=cmd|' /C calc'!A0, -2+3",
        "bidi \u202egpj.aspx and \u2028 separator",
        "unicode é 漢字 \U0001f600 \ufeff",
        "",
        "plain",
    ]
    attrs = [
        '{"path": "C:\\\\inetpub\\\\x.aspx", "n": 3, "f": 1.5, "nested": {"a": [1, null, true]}}',
        "not json {",
        '["a list", "not an object"]',
        "42",
        '{"big": 123456789012345678901234567890}',
        "{}",
        '{"text": "tab\\there \\u202e"}',
        "",
    ]
    out = []
    for i in range(40):
        out.append(
            finding(
                f"R-{i % 7}",
                f"E{i % 5}",
                severity=("info", "low", "medium", "high", "critical")[i % 5],
                title=texts[i % len(texts)],
                message=texts[(i + 3) % len(texts)],
                location=texts[(i + 5) % len(texts)],
                ts=None if i % 6 == 0 else t,
                ts_desc=texts[i % 3] if i % 4 else "",
                tags=("webshell", "x") if i % 2 else (),
                attributes=attrs[i % len(attrs)],
            )
        )
    df = findings_frame(out)
    # a run of rows where some text columns are all missing: a chunk of them must not change the CSV types
    df.loc[10:19, ["message", "ts_desc", "attributes"]] = pd.NA
    return df


def _check_same(df: pd.DataFrame, tmp: Path, chunk: int) -> None:
    exports.write_frame_csv(df, tmp / "ref.csv")
    exports.write_findings_csv(df, tmp / "new.csv", chunk=chunk)
    assert (tmp / "new.csv").read_bytes() == (tmp / "ref.csv").read_bytes()

    exports.write_findings_jsonl(df, tmp / "new.jsonl", chunk=chunk)
    assert (tmp / "new.jsonl").read_bytes() == ref_jsonl(df)

    ref_ts, ref_skipped = ref_timesketch(df)
    skipped = exports.write_timesketch(df, tmp / "new_ts.jsonl", chunk=chunk)
    assert skipped == ref_skipped
    assert (tmp / "new_ts.jsonl").read_bytes() == ref_ts


@pytest.mark.parametrize("chunk", [1, 7, 10, 65_536])
def test_streamed_exports_match_row_writers_on_hostile_cells(tmp_path, chunk):
    df = _nasty_frame()
    _check_same(df, tmp_path, chunk)
    lines = (tmp_path / "new.jsonl").read_bytes().splitlines()
    assert len(lines) == len(df) == 40
    first = orjson.loads(lines[0])
    assert first["attributes"]["nested"] == {"a": [1, None, True]}
    assert orjson.loads(lines[1])["attributes"] == "not json {"  # kept as text, never spliced in
    assert orjson.loads(lines[10])["attributes"] is None


def test_streamed_exports_match_on_built_case(hostile_report, tmp_path):
    case, _ = hostile_report
    df = load_findings(case)
    assert len(df) > 10
    _check_same(df, tmp_path, chunk=4)
    # and the files the report itself wrote are the streamed ones
    out = case.path / "report"
    assert (out / "findings.jsonl").read_bytes() == ref_jsonl(df)
    assert (out / "timesketch.jsonl").read_bytes() == ref_timesketch(df)[0]
    exports.write_frame_csv(df, tmp_path / "whole.csv")
    assert (out / "findings.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


def test_empty_findings_write_headers_only(tmp_path):
    df = findings_frame([])
    _check_same(df, tmp_path, chunk=5)
    assert (tmp_path / "new.csv").read_text().startswith('"analyzer","analyzer_version",')
    assert (tmp_path / "new.jsonl").read_bytes() == b""


@pytest.mark.slow  # two spawned worker processes
def test_parallel_exports_from_parquet_match(tmp_path, monkeypatch):
    df = _nasty_frame()
    df.to_parquet(tmp_path / "f.parquet", index=False)
    monkeypatch.setattr(exports, "PARALLEL_ROWS", 1)
    names = [tmp_path / n for n in ("p.csv", "p.jsonl", "p_ts.jsonl")]
    skipped, hashes = exports.write_finding_exports(df, tmp_path / "f.parquet", *names)
    assert hashes == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in names}
    ref_ts, ref_skipped = ref_timesketch(df)
    assert skipped == ref_skipped == 7
    exports.write_frame_csv(df, tmp_path / "ref.csv")
    assert names[0].read_bytes() == (tmp_path / "ref.csv").read_bytes()
    assert names[1].read_bytes() == ref_jsonl(df)
    assert names[2].read_bytes() == ref_ts


def _sheet_xml(df) -> bytes:
    from triage.report.xlsx import Workbook

    ws = Workbook().sheet("Findings", exports.FINDING_SHEET_COLUMNS)
    exports._finding_rows(ws, df)
    return b"".join(ws.xml())


def test_small_sheet_rows_match_the_column_path(monkeypatch):
    df = _nasty_frame()
    monkeypatch.setattr(exports, "SMALL_SHEET", 0)
    vectorised = _sheet_xml(df)
    monkeypatch.setattr(exports, "SMALL_SHEET", 10_000)
    per_cell = _sheet_xml(df)
    assert per_cell == vectorised
    assert per_cell.count(b"<row ") == 41 and b"<t xml:space=\"preserve\">'=" in per_cell


def test_run_aside_returns_and_raises():
    assert exports.run_aside(lambda a, b: {"sum": a + b}, 2, 3).result() == {"sum": 5}
    assert exports.run_aside(lambda: 7, aside=False).result() == 7

    def boom() -> None:
        raise ValueError("bad input")

    with pytest.raises(RuntimeError, match="ValueError: bad input"):
        exports.run_aside(boom).result()


@pytest.mark.slow  # builds the report twice, once with worker processes
def test_large_case_path_writes_what_the_inline_path_writes(case, monkeypatch):
    from triage.report import build_report
    from triage.runner import analyze_case

    analyze_case(case, only=("webshell_locations",))
    inline = build_report(case, html=False, xlsx=False)
    out = case.path / "report"
    before = {n: (out / n).read_bytes() for n in ("findings.csv", "findings.jsonl", "timesketch.jsonl")}
    monkeypatch.setattr(exports, "PARALLEL_ROWS", 1)  # every case is "large": workers and a forked STIX writer
    forked = build_report(case, html=False, xlsx=False)
    assert forked.findings == inline.findings > 0
    assert forked.stix == inline.stix and forked.stix.get("indicators", 1) > 0
    assert forked.timesketch_skipped == inline.timesketch_skipped
    for name, data in before.items():
        assert (out / name).read_bytes() == data, name
    bundle = json.loads((out / "findings.stix.json").read_text())
    assert bundle["type"] == "bundle" and len(bundle["objects"]) > 1
    event = list(case.custody.events())[-1]
    assert event["details"]["outputs"]["findings.jsonl"] == hashlib.sha256(before["findings.jsonl"]).hexdigest()
