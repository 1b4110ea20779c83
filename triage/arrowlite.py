"""pyarrow without pandas where no pandas object is converted: the switch :func:`arrow_without_pandas`, and
numpy views of Arrow arrays taken without Arrow's conversion code (:func:`to_bool_array`, :func:`valid_bits`).

pyarrow looks for pandas in two places, each trying the import once: its Python side on the first conversion of
Python or NumPy values (``pa.array``, ``pa.table``), to learn whether a value is a pandas object; its C++ side on
the first conversion to numpy, inference of a type, or scalar made from a Python value, to keep pandas'
missing-value markers (``NA``, ``NaT``). The import costs about 0.3 CPU s.

The switch lets the Python side's try fail (only in the calling thread: an import of pandas anywhere else goes
on as usual), and as soon as anything really imports pandas, tells pyarrow, so pandas objects are recognised
from then on exactly as if pandas had been there from the start. The C++ side is left alone: it cannot be told
later, and a process that went on without its markers would turn pandas' missing values into errors or text.
So the switch saves the import only where the code that follows never converts Arrow to numpy through Arrow
(the bitmaps are read here instead), infers a type, or hands Arrow an untyped Python scalar.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

_LOCK = threading.Lock()


class _Rearm(importlib.abc.Loader):
    """pandas' own loader, and once pandas has run: pyarrow's pandas check armed again."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        import pyarrow.lib

        # the shim's ``pd`` tries pandas again when its first try failed: it finds it now and says so for good
        pyarrow.lib._pandas_api.pd  # noqa: B018

    def __getattr__(self, name: str) -> Any:  # resources, ``is_package``, ... as pandas' loader answers them
        return getattr(self._loader, name)


class _Gate(importlib.abc.MetaPathFinder):
    """Refuses pandas to one thread while pyarrow makes its one try there; for anyone else it steps aside and
    has pandas loaded by the finders after it, through :class:`_Rearm`."""

    def __init__(self) -> None:
        self.refuse_in: int | None = None

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "pandas":
            return None
        if self.refuse_in == threading.get_ident():
            raise ModuleNotFoundError("pandas held back from pyarrow's first conversion", name=fullname)
        with _LOCK:
            if self in sys.meta_path:
                sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)  # the finders after this one, as the import would have
        if spec is not None and spec.loader is not None:
            spec.loader = _Rearm(spec.loader)
        return spec


def arrow_without_pandas() -> bool:
    """Make pyarrow's conversions in this process (and the processes it forks) skip importing pandas until
    something imports it. True when it took effect, False when pandas is already imported (nothing to save)."""
    with _LOCK:
        if "pandas" in sys.modules or any(isinstance(f, _Gate) for f in sys.meta_path):
            return "pandas" not in sys.modules
        gate = _Gate()
        sys.meta_path.insert(0, gate)
    import pyarrow as pa

    gate.refuse_in = threading.get_ident()
    try:
        pa.array([], type=pa.int64())  # the Python check's one try, refused
    finally:
        gate.refuse_in = None
    return "pandas" not in sys.modules


def converts_without_pandas() -> bool:
    """Whether ``pa.array`` over Python values (with a type given) imports no pandas in this thread now: pandas
    is loaded already, or :func:`arrow_without_pandas` has switched its import off."""
    return "pandas" in sys.modules or any(isinstance(f, _Gate) for f in sys.meta_path)


def bits(buffer: Any, offset: int, n: int) -> np.ndarray:
    """Bits ``offset .. offset + n`` of an Arrow bitmap (least significant bit first) as a writable bool array."""
    packed = np.frombuffer(buffer, dtype=np.uint8)
    return np.unpackbits(packed, count=offset + n, bitorder="little")[offset:].astype(bool)


def to_bool_array(result: Any) -> np.ndarray:
    """An Arrow boolean result (array or chunked array) as a numpy bool array, nulls as False.

    Read from the array's bitmaps with numpy: Arrow's ``fill_null`` and ``to_numpy`` cost a few hundred
    microseconds a call (every field test of every rule ends here), and Arrow's conversion imports pandas.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(result, pa.ChunkedArray):
        result = result.chunk(0) if result.num_chunks == 1 else result.combine_chunks()
    n = len(result)
    buffers = result.buffers() if pa.types.is_boolean(result.type) else []
    if n and len(buffers) == 2 and buffers[1] is not None:
        out = bits(buffers[1], result.offset, n)
        if result.null_count and buffers[0] is not None:
            out &= bits(buffers[0], result.offset, n)
        elif result.null_count:  # no validity bitmap but nulls: all of them
            out[:] = False
        return out
    filled = pc.fill_null(result.cast(pa.bool_()), False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return to_bool_array(filled) if len(filled) else np.zeros(0, dtype=bool)


def valid_bits(arr: Any) -> np.ndarray:
    """True where an Arrow array has a value."""
    if not arr.null_count:
        return np.ones(len(arr), dtype=bool)
    return to_bool_array(arr.is_valid())


def numbers(arr: Any, fill: int | float = 0) -> np.ndarray:
    """The values of an Arrow array of numbers or times (array or chunked array) as numpy, nulls as ``fill``.

    Read from the array's data buffer with numpy (Arrow's ``to_numpy`` would import pandas, see above); a time is
    its count of units since the epoch (int64). Booleans come as :func:`to_bool_array` gives them. A new array
    when there were nulls, else a read-only view of Arrow's memory.
    """
    import pyarrow as pa

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    kind = arr.type
    if pa.types.is_boolean(kind):
        return to_bool_array(arr)
    dtype: np.dtype[Any]
    if pa.types.is_timestamp(kind) or pa.types.is_duration(kind) or pa.types.is_date64(kind):
        dtype = np.dtype(np.int64)
    elif pa.types.is_date32(kind):
        dtype = np.dtype(np.int32)
    elif pa.types.is_integer(kind):
        dtype = np.dtype(f"{'i' if pa.types.is_signed_integer(kind) else 'u'}{kind.bit_width // 8}")
    elif pa.types.is_floating(kind):
        dtype = np.dtype(f"f{kind.bit_width // 8}")
    elif pa.types.is_null(kind):
        return np.full(len(arr), fill)
    else:
        raise TypeError(f"not an array of numbers: {kind}")
    n = len(arr)
    buffers = arr.buffers()
    if not n or buffers[1] is None:
        return np.full(n, fill, dtype=dtype)
    data = np.frombuffer(buffers[1], dtype=dtype, count=arr.offset + n)[arr.offset :]
    if arr.null_count:
        data = data.copy()
        data[~valid_bits(arr)] = fill
    return data

