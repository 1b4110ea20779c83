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


class Progress(Protocol):
    """Progress bars and messages of one application-layer call."""

    def bytes(self, description: str) -> AbstractContextManager[Callable[[int], None]]:
        """A bytes counter; the context yields ``advance(n)``."""
        ...

    def units(self, description: str) -> AbstractContextManager[Callable[[int, int], None]]:
        """A done/total counter; the context yields ``update(done, total)``."""
        ...

    def message(self, level: int, text: str, source: str = "triage") -> None:
        """A message for the analyst (``level`` as in :mod:`logging`; ``source`` names the part speaking)."""
        ...


class NullProgress:
    """Shows nothing and says nothing."""

    @contextlib.contextmanager
    def bytes(self, description: str) -> Iterator[Callable[[int], None]]:
        yield lambda n: None

    @contextlib.contextmanager
    def units(self, description: str) -> Iterator[Callable[[int, int], None]]:
        yield lambda done, total: None

    def message(self, level: int, text: str, source: str = "triage") -> None:
        pass


class LogProgress(NullProgress):
    """No bars; messages go to :mod:`logging` (for scripts that configure logging themselves)."""

    def message(self, level: int, text: str, source: str = "triage") -> None:
        logging.getLogger(source).log(level, "%s", text)

