"""Progress bars on stderr (quiet when stderr is not a terminal)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

stderr = Console(stderr=True)


@contextlib.contextmanager
def byte_progress(description: str, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A bytes-copied counter with speed; yields an ``advance(n)`` callback."""
    enabled = enabled and stderr.is_terminal
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=not enabled,
    ) as prog:
        task = prog.add_task(description, total=None)
        yield lambda n: prog.advance(task, n)


@contextlib.contextmanager
def unit_progress(description: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A done/total bar; yields an ``update(done, total)`` callback."""
    enabled = enabled and stderr.is_terminal
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=not enabled,
    ) as prog:
        task = prog.add_task(description, total=None)
        yield lambda done, total: prog.update(task, completed=done, total=total)
