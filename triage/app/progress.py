"""How the application layer reports progress and messages: a small protocol the caller implements.

The app layer never prints. The command line implements :class:`Progress` with rich bars and log lines on
stderr; tests pass :class:`NullProgress` or a recorder.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol


class Transfer(Protocol):
    """A copy whose totals are known ahead (a collection walks its sources first): files and bytes done of total."""

    def plan(self, files: int, nbytes: int) -> None:
        """Add to the totals, before the copies they count start (called again when more is found)."""
        ...

    def advance(self, nbytes: int) -> None:
        """Bytes copied (or found already collected)."""
        ...

    def file_done(self) -> None:
        """One planned file is over, stored or not."""
        ...


class Progress(Protocol):
    """Progress bars and messages of one application-layer call."""

    def bytes(self, description: str) -> AbstractContextManager[Callable[[int], None]]:
        """A bytes counter; the context yields ``advance(n)``."""
        ...

    def units(self, description: str) -> AbstractContextManager[Callable[[int, int], None]]:
        """A done/total counter; the context yields ``update(done, total)``."""
        ...

    def transfer(self, description: str) -> AbstractContextManager[Transfer]:
        """Files and bytes done of their planned totals, with rate and time left; the context yields a
        :class:`Transfer`."""
        ...

    def message(self, level: int, text: str, source: str = "triage") -> None:
        """A message for the analyst (``level`` as in :mod:`logging`; ``source`` names the part speaking)."""
        ...

    def unit_progress(self, unit: str, done: float, total: float, text: str) -> None:
        """A running unit's own progress (``unit``: "ANALYZER EVIDENCE_ID"; ``total`` 0: unknown), reported
        while a :meth:`units` bar is open."""
        ...

    def unit_finished(self, unit: str) -> None:
        """The unit is over (whatever its status): its own progress, if any was shown, can go."""
        ...


def unit_key(analyzer: str, evidence_id: str) -> str:
    """How a unit is named to :meth:`Progress.unit_progress`."""
    return f"{analyzer} {evidence_id}"


class TransferCount:
    """A :class:`Transfer` that counts: totals and done so far (what a display shows, what tests check)."""

    def __init__(self) -> None:
        self.files_total = self.bytes_total = self.files_done = self.bytes_done = 0

    def plan(self, files: int, nbytes: int) -> None:
        self.files_total += files
        self.bytes_total += nbytes

    def advance(self, nbytes: int) -> None:
        self.bytes_done += nbytes

    def file_done(self) -> None:
        self.files_done += 1


class NullProgress:
    """Shows nothing and says nothing."""

    @contextlib.contextmanager
    def bytes(self, description: str) -> Iterator[Callable[[int], None]]:
        yield lambda n: None

    @contextlib.contextmanager
    def units(self, description: str) -> Iterator[Callable[[int, int], None]]:
        yield lambda done, total: None

    @contextlib.contextmanager
    def transfer(self, description: str) -> Iterator[Transfer]:
        yield TransferCount()

    def message(self, level: int, text: str, source: str = "triage") -> None:
        pass

    def unit_progress(self, unit: str, done: float, total: float, text: str) -> None:
        pass

    def unit_finished(self, unit: str) -> None:
        pass


class LogProgress(NullProgress):
    """No bars and no unit progress; messages go to :mod:`logging` (for scripts that configure logging themselves)."""

    def message(self, level: int, text: str, source: str = "triage") -> None:
        logging.getLogger(source).log(level, "%s", text)

