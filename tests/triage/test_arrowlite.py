"""triage.arrowlite: pyarrow's pandas look-up switched off until pandas is really imported, and numpy views of
Arrow arrays read from their bitmaps."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from triage.arrowlite import numbers, to_bool_array, valid_bits

# conversions whose result depends on pyarrow knowing pandas: printed the same with and without the switch
PANDAS_CONVERSIONS = """
import pandas as pd, numpy as np, pyarrow as pa
table = pa.Table.from_pandas(pd.DataFrame({"a": [1, None], "b": ["x", None]}))
print(pa.array(pd.Series([1, None], dtype="Int64")).to_pylist())
print(pa.array(pd.Series(["a", None, "b"], dtype="string")).to_pylist())
print(pa.array(pd.Series([1.5, np.nan]), from_pandas=True).null_count)
print(pa.array(pd.Categorical(["a", "b", "a"])).type)
print(table.schema.types, table.column("a").null_count, table.column("b").null_count)
stamp = pa.array([1_000_000_001], type=pa.timestamp("ns", tz="UTC"))[0].as_py()
print(type(stamp).__name__, stamp)
print(pa.table({"t": pa.array([5], type=pa.timestamp("ns"))}).to_pandas().dtypes.to_dict())
"""

SWITCH = """
import sys
from triage.arrowlite import arrow_without_pandas
import pyarrow as pa, pyarrow.parquet as pq, io
assert arrow_without_pandas()
table = pa.table({"n": pa.array([1, None], type=pa.int64()), "s": pa.array(["a", None], type=pa.large_string())})
pq.write_table(table, io.BytesIO())
assert "pandas" not in sys.modules, "pandas was imported"
assert arrow_without_pandas()  # a second call changes nothing
"""


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_typed_arrays_and_parquet_need_no_pandas_after_the_switch() -> None:
    _run(SWITCH)


def test_pandas_objects_convert_as_before_once_pandas_is_imported() -> None:
    plain = _run(PANDAS_CONVERSIONS)
    switched = _run(SWITCH + PANDAS_CONVERSIONS)
    assert "[1, None]" in plain and "Timestamp" in plain  # pandas was recognised in the plain process
    assert switched == plain


def test_the_switch_does_nothing_once_pandas_is_there() -> None:
    out = _run("import pandas\nfrom triage.arrowlite import arrow_without_pandas\nprint(arrow_without_pandas())")
    assert out.strip() == "False"


def test_pandas_imported_in_another_thread_during_the_switch_is_the_real_one() -> None:
    code = """
import sys, threading
from triage.arrowlite import _Gate
gate = _Gate()
sys.meta_path.insert(0, gate)
gate.refuse_in = threading.get_ident()
out = {}
def other():
    import pandas
    out["ok"] = hasattr(pandas, "DataFrame")
t = threading.Thread(target=other); t.start(); t.join()
print(out, gate in sys.meta_path)
"""
    assert _run(code).strip() == "{'ok': True} False"  # the gate stepped aside for good once pandas was loaded


def test_bool_and_validity_bits_match_arrow() -> None:
    values = pa.array([True, None, False, True, None, True, False, False, True, None], type=pa.bool_())
    for arr in (values, values.slice(3), values.slice(1, 7), pa.array([], type=pa.bool_())):
        want = [bool(v) if v is not None else False for v in arr.to_pylist()]
        assert to_bool_array(arr).tolist() == want
        assert valid_bits(arr).tolist() == [v is not None for v in arr.to_pylist()]
    chunked = pa.chunked_array([values.slice(0, 4), values.slice(4)])
    assert to_bool_array(chunked).tolist() == [bool(v) if v is not None else False for v in values.to_pylist()]
    texts = pa.array(["a", None, "c"], type=pa.large_string()).slice(1)
    assert valid_bits(texts).tolist() == [False, True]
    assert valid_bits(pa.nulls(3, pa.large_string())).dtype == np.bool_
    assert not valid_bits(pa.nulls(3, pa.large_string())).any()


def test_numbers_read_from_buffers_match_arrow() -> None:
    ints = pa.array([5, None, -7, 2**40, None, 3], type=pa.int64())
    for arr in (ints, ints.slice(2), ints.slice(1, 3)):
        want = [0 if v is None else v for v in arr.to_pylist()]
        assert numbers(arr).tolist() == want and numbers(arr).dtype == np.int64
    assert numbers(ints, -1).tolist() == [5, -1, -7, 2**40, -1, 3]
    floats = pa.array([1.5, None, -2.0], type=pa.float64())
    got = numbers(floats, np.nan)
    assert got[0] == 1.5 and np.isnan(got[1]) and got[2] == -2.0
    assert numbers(pa.array([1, None, 3], type=pa.int32()), -1).tolist() == [1, -1, 3]
    assert numbers(pa.array([1, 2], type=pa.uint8())).dtype == np.uint8
    assert numbers(pa.array([1.0], type=pa.float32())).dtype == np.float32
    stamps = pa.array([1_600_000_000_000_000, None], type=pa.timestamp("us", tz="UTC"))
    assert numbers(stamps).tolist() == [1_600_000_000_000_000, 0]
    assert numbers(pa.chunked_array([ints.slice(0, 2), ints.slice(2)]), 9).tolist() == [5, 9, -7, 2**40, 9, 3]
    assert numbers(pa.nulls(2), 4).tolist() == [4, 4]
    assert numbers(pa.array([], type=pa.int64())).tolist() == []
    assert numbers(pa.array([True, None], type=pa.bool_())).tolist() == [True, False]
    with pytest.raises(TypeError):
        numbers(pa.array(["1"], type=pa.large_string()))
