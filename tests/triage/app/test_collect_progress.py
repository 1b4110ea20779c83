"""Collection progress on the command line: files and bytes of their totals with an ETA, log lines above the bar."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from triage.cli import ConsoleProgress, main
from triage.errors import ExitCode
from triage.testing.volume import VolumeSpec, build_volume

from .conftest import console_logger
from .test_unit_progress import _terminal


def test_the_bar_shows_files_and_bytes_of_their_totals(monkeypatch: pytest.MonkeyPatch) -> None:
    err = _terminal(monkeypatch)
    with ConsoleProgress().transfer("collecting") as meter:
        meter.plan(3, 3_000_000)
        for _ in range(3):
            meter.advance(1_000_000)
            meter.file_done()
    text = err.getvalue()
    assert "3/3 files" in text
    assert "3.0/3.0 MB" in text


def test_log_lines_from_copy_threads_print_whole_above_the_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    err = _terminal(monkeypatch)
    with console_logger("triage.test_collect_progress") as logger:
        with ConsoleProgress().transfer("collecting") as meter:
            meter.plan(4, 4096)

            def copy(i: int) -> None:
                logger.warning("cannot read %s", f"file{i}" + "x" * 150)

            threads = [threading.Thread(target=copy, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            meter.advance(4096)
        text = err.getvalue()
        for i in range(4):  # each line whole, on a line of its own
            assert f"WARNING triage.test_collect_progress: cannot read file{i}{'x' * 150}\n" in text


def test_triage_collect_draws_totals_on_stderr_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    vol = build_volume(tmp_path / "vol", VolumeSpec())
    err = _terminal(monkeypatch)
    capsys.readouterr()
    assert main(["collect", str(vol), "--case", str(tmp_path / "case"), "--examiner", "t"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "files" in err.getvalue() and "18/18 files" in err.getvalue()  # the default volume holds 18 files
    assert "18/18 files" not in out and "\x1b" not in out
