"""Plugins run in a child with a time limit: results, errors, timeouts, crashes and progress messages."""

from __future__ import annotations

import faulthandler
import os
import signal
import time
from typing import Any

from analyzers.memory import isolate


def _fine(x: int, progress: Any = None) -> dict[str, int]:
    for pct in (10, 50, 100):
        progress(pct, f"step {pct}")
    return {"double": 2 * x}


def _slow(progress: Any = None) -> None:
    progress(1, "starting")
    time.sleep(60)


def _raises(progress: Any = None) -> None:
    raise RuntimeError("plugin exploded")


def _segfault(progress: Any = None) -> None:
    faulthandler.disable()  # the crash is expected: no traceback from pytest's inherited faulthandler
    os.kill(os.getpid(), signal.SIGSEGV)


def _exits(progress: Any = None) -> None:
    os._exit(3)


def test_result_and_progress() -> None:
    seen: list[tuple[float, str]] = []
    out = isolate.run_with_timeout(_fine, 21, timeout=30, on_progress=lambda p, d: seen.append((p, d)))
    assert out.status == "ok" and out.value == {"double": 42}
    assert seen[0] == (10.0, "step 10") and seen[-1] == (100.0, "step 100")


def test_timeout_stops_the_child_promptly() -> None:
    t0 = time.monotonic()
    out = isolate.run_with_timeout(_slow, timeout=0.5)
    assert out.status == "timeout" and "0.5 s time limit" in out.error
    assert time.monotonic() - t0 < 5
    assert out.progress == [(1.0, "starting")]


def test_exception_comes_back_as_data() -> None:
    out = isolate.run_with_timeout(_raises, timeout=30)
    assert out.status == "error" and out.error == "RuntimeError: plugin exploded"
    assert "_raises" in out.traceback


def test_crash_and_exit_are_reported() -> None:
    crashed = isolate.run_with_timeout(_segfault, timeout=30)
    assert crashed.status == "died" and "SIGSEGV" in crashed.error
    exited = isolate.run_with_timeout(_exits, timeout=30)
    assert exited.status == "died" and "status 3" in exited.error
