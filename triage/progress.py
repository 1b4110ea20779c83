"""Progress bars on stderr (quiet when stderr is not a terminal); log lines go through the same console.

Everything is drawn by :data:`stderr`, and :class:`ConsoleLogHandler` prints log records through it too, so a
log line written while bars are live appears above them instead of breaking them. rich is loaded when something
is drawn or logged: a quiet command that logs nothing never imports it (about 40 ms of every command's start).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, TaskID

# the console on stderr that bars and log lines share: made on first use (:func:`_stderr`); a test may set its own
stderr: Console


def __getattr__(name: str) -> Any:
    if name == "stderr":
        return _stderr()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _stderr() -> Console:
    """:data:`stderr`, made now if nothing made or set it yet."""
    console = globals().get("stderr")
    if console is None:
        from rich.console import Console

        console = globals()["stderr"] = Console(stderr=True)
    return console


def _shown(enabled: bool) -> bool:
    """Whether a bar asked for is drawn: only on a terminal (a bar not asked for loads nothing)."""
    return enabled and _stderr().is_terminal


class ConsoleLogHandler(logging.Handler):
    """Log records as plain lines through :data:`stderr` (looked up at each record, so tests may replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            _stderr().print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


def _bytes_bar(*middle: ProgressColumn, last: ProgressColumn) -> Progress:
    """A transient bar on :data:`stderr`: spinner, description, ``middle``, bytes, speed, ``last``."""
    from rich.progress import DownloadColumn, Progress, SpinnerColumn, TextColumn, TransferSpeedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), *middle, DownloadColumn(), TransferSpeedColumn())
    return Progress(*columns, last, console=_stderr(), transient=True)


@contextlib.contextmanager
def byte_progress(description: str, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A bytes-copied counter with speed; yields an ``advance(n)`` callback."""
    if not _shown(enabled):
        yield lambda n: None
        return
    from rich.progress import TimeElapsedColumn

    with _bytes_bar(last=TimeElapsedColumn()) as prog:
        task = prog.add_task(description, total=None)
        yield lambda n: prog.advance(task, n)


class TransferBar:
    """The :class:`triage.app.progress.Transfer` of a rich bar: files and bytes done of their totals, rate, time
    left. Counts are pushed to the bar at most every 0.1 s (a collection of small files calls thousands of times)."""

    def __init__(self, prog: Progress | None, task: TaskID | None) -> None:
        self._prog, self._task = prog, task  # None: counted, not drawn
        self.files_total = self.bytes_total = self.files_done = self.bytes_done = 0
        self._pushed = 0.0

    def plan(self, files: int, nbytes: int) -> None:
        self.files_total += files
        self.bytes_total += nbytes
        self.push(force=True)

    def advance(self, nbytes: int) -> None:
        self.bytes_done += nbytes
        self.push()

    def file_done(self) -> None:
        self.files_done += 1
        self.push()

    def push(self, force: bool = False) -> None:
        if self._prog is None or self._task is None:
            return
        now = time.monotonic()
        if not force and now - self._pushed < 0.1:
            return
        self._pushed = now
        # the byte total never trails what was read (a file that grew while it was copied)
        total = max(self.bytes_total, self.bytes_done)
        files = f"{self.files_done:,}/{self.files_total:,} files"
        self._prog.update(self._task, total=total or None, completed=self.bytes_done, files=files)


@contextlib.contextmanager
def transfer_progress(description: str, enabled: bool = True) -> Iterator[TransferBar]:
    """Files and bytes of a planned copy with their totals, rate and time left; yields a :class:`TransferBar`."""
    if not _shown(enabled):
        yield TransferBar(None, None)
        return
    from rich.progress import BarColumn, TextColumn, TimeRemainingColumn

    with _bytes_bar(BarColumn(), TextColumn("{task.fields[files]}"), last=TimeRemainingColumn()) as prog:
        bar = TransferBar(prog, prog.add_task(description, total=None, files=""))
        yield bar
        bar.push(force=True)


class UnitBars:
    """The overall done/total bar of a run (called as ``update(done, total)``), plus one transient line per
    running unit that reports its own progress, removed when that unit is over."""

    def __init__(self, prog: Progress | None, task: TaskID | None) -> None:
        self._prog = prog  # None: nothing is drawn
        self._task = task
        self._units: dict[str, TaskID] = {}

    def __call__(self, done: int, total: int) -> None:
        if self._prog is not None and self._task is not None:
            self._prog.update(self._task, completed=done, total=total)

    def unit(self, unit: str, done: float, total: float, text: str = "") -> None:
        """Show (or move) the line of ``unit``; ``total`` 0: unknown (a pulsing bar)."""
        if self._prog is None:
            return
        from rich.markup import escape

        description = "  " + escape(f"{unit}: {text}" if text else unit)
        known = total if total and total > 0 else None
        task = self._units.get(unit)
        new = task is None
        if task is None:
            task = self._units[unit] = self._prog.add_task(description, total=known)
        self._prog.update(task, description=description, total=known, completed=done)
        if new:
            self._prog.refresh()  # a short unit is seen at least once

    def finished(self, unit: str) -> None:
        """Drop the line of ``unit`` (a unit that never reported has none)."""
        task = self._units.pop(unit, None)
        if task is not None and self._prog is not None:
            self._prog.remove_task(task)


@contextlib.contextmanager
def unit_progress(description: str, enabled: bool = True) -> Iterator[UnitBars]:
    """A done/total bar; yields a :class:`UnitBars`, called as ``update(done, total)``."""
    if not _shown(enabled):
        yield UnitBars(None, None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_stderr(),
        transient=True,
    ) as prog:
        yield UnitBars(prog, prog.add_task(description, total=None))
