"""Boolean results and presence masks read from Arrow bitmaps give what Arrow's own conversions give."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from triage.sigma.frame import to_bool_array, valid_mask


def _reference(result: pa.Array | pa.ChunkedArray) -> np.ndarray:
    filled = pc.fill_null(result, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)


@pytest.mark.parametrize("seed", range(4))
def test_bool_results_of_any_offset_length_and_nulls(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        n = rng.randrange(0, 90)
        values = [rng.choice([True, False, None]) for _ in range(n)]
        whole = pa.array(values, type=pa.bool_())
        off = rng.randrange(0, n + 1)
        part = whole.slice(off, rng.randrange(0, n - off + 1))  # slices start inside a bitmap byte
        for result in (part, pa.chunked_array([part]), pa.chunked_array([part, whole])):
            got = to_bool_array(result)
            assert got.dtype == bool and got.flags.writeable
            assert np.array_equal(got, _reference(result))
        text = pa.array([rng.choice(["x", "", None]) for _ in range(n)], type=pa.large_string()).slice(off)
        assert np.array_equal(valid_mask(text), pc.is_valid(text).to_numpy(zero_copy_only=False))


def test_all_null_and_empty_inputs() -> None:
    assert not to_bool_array(pa.nulls(7, pa.bool_())).any()
    assert len(to_bool_array(pa.chunked_array([], type=pa.bool_()))) == 0
    assert not valid_mask(pa.nulls(3)).any()
    assert valid_mask(pa.array(["a", "b"])).all()
    # a real rule result: a substring test over a column with missing values
    col = pa.array(["cmd.exe /c whoami", None, "notepad", "WHOAMI"], type=pa.large_string())
    assert to_bool_array(pc.match_substring(col, "whoami", ignore_case=True)).tolist() == [True, False, False, True]
