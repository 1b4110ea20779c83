"""Run one long job (a Volatility plugin) in a forked child with a time limit and progress messages.

A plugin that runs past its limit is terminated (then killed) and reported as a timeout; one that crashes
the interpreter (a segfault in a native decoder, an OOM kill) is reported with its exit status. Either way
the caller goes on with the next plugin. The child dies with its parent (a unit's worker killed past its
own limit leaves no plugin running). The child reports progress through the pipe, at most a few times a
second, and returns a small picklable result; bulky output (the table) it writes to disk itself.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROGRESS_INTERVAL = 0.25  # seconds between progress messages from the child


@dataclass
class Outcome:
    """How the child ended: ``ok`` (``value`` set), ``error`` (``error``/``traceback``), ``timeout`` or ``died``."""

    status: str
    value: Any = None
    error: str = ""
    traceback: str = ""
    duration_s: float = 0.0
    progress: list[tuple[float, str]] = field(default_factory=list)


def _child(conn: Any, parent: int, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    from triage.executors import die_with_parent

    die_with_parent(parent)  # a killed analyze (or a unit killed past its limit) takes its plugin child along
    last = [0.0]

    def progress(pct: float, desc: str | None = None) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_INTERVAL or pct >= 100:
            last[0] = now
            with contextlib.suppress(OSError, ValueError):  # the parent gave up: nobody to tell
                conn.send(("progress", float(pct), str(desc or "")))

    try:
        value = func(*args, progress=progress, **kwargs)
        conn.send(("ok", value))
    except BaseException as exc:  # everything goes back to the parent as data
        conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=20)))
    finally:
        conn.close()


def run_with_timeout(
    func: Callable[..., Any],
    *args: Any,
    timeout: float,
    on_progress: Callable[[float, str], None] | None = None,
    **kwargs: Any,
) -> Outcome:
    """Call ``func(*args, progress=cb, **kwargs)`` in a forked child, waiting at most ``timeout`` seconds.

    ``func`` and its result must be picklable across fork (the function itself is inherited, not pickled).
    """
    ctx = multiprocessing.get_context("fork")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child_conn, os.getpid(), func, args, kwargs), daemon=True)
    t0 = time.monotonic()
    proc.start()
    child_conn.close()
    deadline = t0 + timeout
    outcome: Outcome | None = None
    seen: list[tuple[float, str]] = []
    try:
        while outcome is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                outcome = Outcome("timeout", error=f"stopped after the {timeout:g} s time limit")
                break
            if not parent_conn.poll(min(remaining, 0.5)):
                if not proc.is_alive() and not parent_conn.poll(0):
                    outcome = Outcome("died", error=_exit_text(proc))
                continue
            try:
                msg = parent_conn.recv()
            except EOFError:
                proc.join(5)
                outcome = Outcome("died", error=_exit_text(proc))
                break
            if msg[0] == "progress":
                seen.append((msg[1], msg[2]))
                if on_progress:
                    on_progress(msg[1], msg[2])
            elif msg[0] == "ok":
                outcome = Outcome("ok", value=msg[1])
            else:
                outcome = Outcome("error", error=msg[1], traceback=msg[2])
    finally:
        parent_conn.close()
        _stop(proc)
    outcome.duration_s = round(time.monotonic() - t0, 3)
    outcome.progress = seen[-20:]
    return outcome


def _exit_text(proc: Any) -> str:
    proc.join(1)
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"the plugin process was killed by signal {name}"
    return f"the plugin process exited with status {code} without a result"


def _stop(proc: Any) -> None:
    """End the child: it has finished, or it is past its limit."""
    proc.join(0.2 if proc.is_alive() else 5)
    if proc.is_alive():
        proc.terminate()
        proc.join(3)
    if proc.is_alive() and proc.pid:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(3)
