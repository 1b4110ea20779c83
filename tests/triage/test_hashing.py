from __future__ import annotations

import hashlib
import io
import random

from triage.hashing import CHUNK, copy_hashing


def test_threaded_and_sequential_paths_agree_with_hashlib() -> None:
    data = random.Random(5).randbytes(9 * CHUNK + 12345)
    want = {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}
    for hint in (None, 0):  # None: pipelined threads; 0: small-file sequential path
        out = io.BytesIO()
        seen: list[int] = []
        size, got = copy_hashing(io.BytesIO(data), out, ("sha256", "md5"), seen.append, hint)
        assert (size, got) == (len(data), want)
        assert out.getvalue() == data
        assert sum(seen) == len(data)


def test_empty_input() -> None:
    size, got = copy_hashing(io.BytesIO(b""), None, ("sha256",))
    assert (size, got["sha256"]) == (0, hashlib.sha256(b"").hexdigest())
