"""The column-wise pieces of the Arrow text exports against the per-value functions they stand in for."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from triage.report import textexports
from triage.report.cells import csv_text


def _numpy_iso(micros: np.ndarray, suffix: str) -> list[str]:
    return np.char.add(np.datetime_as_string(micros.view("datetime64[us]"), unit="us"), suffix).tolist()


@pytest.mark.parametrize("suffix", ["Z", "+00:00"])
def test_iso_times_equal_numpy_text_over_the_calendar(suffix):
    rng = np.random.default_rng(5)
    edges = [0, -1, 1, 951_782_400_000_000, 951_868_799_999_999, 4_107_542_399_999_999, -62_135_596_800_000_000]
    micros = np.concatenate([rng.integers(-62_135_596_800 * 10**6, 253_402_300_799 * 10**6, 50_000), edges])
    arr = pa.array(micros, pa.timestamp("us", tz="UTC"))
    assert textexports.iso_times(arr, suffix).to_pylist() == _numpy_iso(micros, suffix)


def test_iso_times_keep_missing_and_fall_back_outside_four_digit_years():
    arr = pa.array([0, None, 253_402_300_800 * 10**6], pa.timestamp("us", tz="UTC"))
    got = textexports.iso_times(arr).to_pylist()
    assert got == ["1970-01-01T00:00:00.000000Z", None, "10000-01-01T00:00:00.000000Z"]
    sliced = pa.array([None, 1, None, 2], pa.timestamp("us")).slice(1, 3)
    assert textexports.iso_times(sliced).to_pylist() == [
        "1970-01-01T00:00:00.000001Z",
        None,
        "1970-01-01T00:00:00.000002Z",
    ]


def _with_dirty_null_slot() -> pa.Array:
    """Three cells, the middle one missing but its slot holding bytes a writer must never look at."""
    data = b'plain"\n=cmd' + "\u202e".encode()
    offsets = np.array([0, 5, 10, len(data)], dtype=np.int64)
    validity = pa.array([True, False, True]).buffers()[1]
    return pa.LargeStringArray.from_buffers(3, pa.py_buffer(offsets), pa.py_buffer(data), validity, 1)


def test_missing_cells_are_null_whatever_their_slot_holds():
    arr = _with_dirty_null_slot()
    assert arr.to_pylist() == ["plain", None, "d\u202e"]
    assert textexports.json_strings(arr).to_pylist() == ['"plain"', "null", '"d\u202e"']
    assert textexports.rows_with(arr, textexports._json_special).tolist() == []
    assert textexports.csv_cells(arr).to_pylist() == ["plain", None, "d<U+202E>"]


def test_json_cells_are_orjson_bytes_for_every_escape():
    values = ['a"b', "back\\slash", "nl\nx", "\x00\x1f\x7f", "\u2028 é 漢 \U0001f600", "", None, "plain"] * 5
    arr = pa.array(values, pa.large_string())
    want = [orjson.dumps(v).decode() for v in values]
    assert textexports.json_strings(arr).to_pylist() == want
    # a column of JSON text (most cells escaped) takes the whole-column path: same bytes
    json_text = pa.array([orjson.dumps({"k": v}).decode() for v in values], pa.large_string())
    assert textexports.json_strings(json_text).to_pylist() == [orjson.dumps(v).decode() for v in json_text.to_pylist()]
    inside, whole = textexports.json_cell(pa.array(["x", 'q"'], pa.large_string()))
    assert not whole and inside.to_pylist() == ["x", 'q\\"']


def test_csv_cells_change_what_csv_text_changes():
    values = ["=1+1", "a;=cmd", "x, -2", "CVE-2021-26855", "a-b", "@user", "\tx", "ok", "\u061cx", "\u2066y", None]
    arr = pa.array(values, pa.large_string())
    assert textexports.csv_cells(arr).to_pylist() == [None if v is None else csv_text(v) for v in values]


def test_nested_attributes_compact_objects_and_keep_the_rest_as_text():
    values = ['{"b": 1, "a": [1, 2]}', "not json", "[1]", None, "{}"]
    got = textexports.json_nested(pa.array(values, pa.large_string())).to_pylist()
    assert got == ['{"b":1,"a":[1,2]}', '"not json"', '"[1]"', "null", "{}"]
    clean = textexports.json_nested(pa.array(['{"x": "y"}'] * 3, pa.large_string()))
    assert pc.all(pc.equal(clean, '{"x":"y"}')).as_py()


def test_export_module_imports_no_pandas():
    # (pyarrow itself loads pandas on its first conversion of Python values, if pandas is installed)
    code = "import sys, triage.report.textexports, triage.report.cells; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
