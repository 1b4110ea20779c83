"""Fixtures of the application-layer tests: a recording progress, and no stray log handlers on stdout/stderr."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from triage.app.progress import TransferCount


@dataclass
class RecordingProgress:
    """A :class:`triage.app.Progress` that keeps everything it is told."""

    bars: list[tuple[str, str]] = field(default_factory=list)  # (bytes|units, description)
    advanced: dict[str, int] = field(default_factory=dict)  # bytes bar -> bytes advanced
    last_units: dict[str, tuple[int, int]] = field(default_factory=dict)  # units bar -> last (done, total)
    messages: list[tuple[int, str, str]] = field(default_factory=list)  # (level, text, source)
    unit_reports: dict[str, list[tuple[float, float, str]]] = field(default_factory=dict)  # unit -> reports
    units_finished: list[str] = field(default_factory=list)
    transfers: dict[str, TransferCount] = field(default_factory=dict)  # transfer bar -> its counts

    @contextlib.contextmanager
    def bytes(self, description: str) -> Iterator[Callable[[int], None]]:
        self.bars.append(("bytes", description))
        self.advanced.setdefault(description, 0)

        def advance(n: int) -> None:
            self.advanced[description] += n

        yield advance

    @contextlib.contextmanager
    def units(self, description: str) -> Iterator[Callable[[int, int], None]]:
        self.bars.append(("units", description))

        def update(done: int, total: int) -> None:
            self.last_units[description] = (done, total)

        yield update

    @contextlib.contextmanager
    def transfer(self, description: str) -> Iterator[TransferCount]:
        self.bars.append(("transfer", description))
        self.transfers[description] = count = TransferCount()
        yield count

    def message(self, level: int, text: str, source: str = "triage") -> None:
        self.messages.append((level, text, source))

    def unit_progress(self, unit: str, done: float, total: float, text: str) -> None:
        self.unit_reports.setdefault(unit, []).append((done, total, text))

    def unit_finished(self, unit: str) -> None:
        self.units_finished.append(unit)

    def texts(self, level: int | None = None) -> list[str]:
        return [t for lv, t, _ in self.messages if level is None or lv == level]


@contextlib.contextmanager
def console_logger(name: str) -> Iterator[logging.Logger]:
    """A logger that prints through the bars' console only (:class:`triage.progress.ConsoleLogHandler`)."""
    from triage.progress import ConsoleLogHandler

    handler = ConsoleLogHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


@pytest.fixture
def progress() -> RecordingProgress:
    return RecordingProgress()


@pytest.fixture(autouse=True)
def _no_stream_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """An earlier ``main()`` in this process leaves a stderr handler on the root logger: drop it here, so
    what reaches stdout/stderr in these tests is only what the app layer itself would print."""
    root = logging.getLogger()
    keep = [h for h in root.handlers if type(h).__module__.startswith("_pytest")]
    monkeypatch.setattr(root, "handlers", keep)
