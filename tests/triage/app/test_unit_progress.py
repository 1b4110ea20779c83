"""A unit's own progress (``Unit.progress``) reaches the app layer's Progress and the command line's bars."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

import triage.progress
from triage import app, registry
from triage.cli import ConsoleProgress, main
from triage.errors import ExitCode

from .conftest import RecordingProgress, console_logger

PLUGIN = '''
"""pacer: a slow unit that says how far it is."""

from __future__ import annotations

import time
from collections.abc import Iterator

from triage.finding import Finding
from triage.registry import Analyzer, Unit, register


@register
class Pacer(Analyzer):
    """Three steps a quarter second apart, each reported."""

    name = "pacer"
    version = "1.0"
    consumes = ("web_file",)

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        for step in (1, 2, 3):
            unit.progress(step, 3, f"pacing step {step}")
            time.sleep(0.25)  # past the pool worker's report interval: every report is sent
        return
        yield
'''


@pytest.fixture
def pacer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    plugin = tmp_path / "plugin" / "pacer.py"
    plugin.parent.mkdir()
    plugin.write_text(PLUGIN)
    monkeypatch.setenv("TRIAGE_PLUGINS", str(plugin))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    yield plugin
    registry._REGISTRY.pop("pacer", None)
    registry._DISCOVERED.discard(str(plugin))
    sys.modules.pop("triage_plugin_pacer", None)


@pytest.fixture
def case(tmp_path: Path) -> Path:
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "one.aspx").write_text("<%@ Page %>")
    case = tmp_path / "case"
    args = ["collect", str(loose), "--as", "files", "--case", str(case), "--host", "ex01", "-q"]
    assert main(args) == ExitCode.OK
    root = logging.getLogger()  # main() set its stderr handler up: the app layer test wants none
    root.handlers[:] = [h for h in root.handlers if type(h).__module__.startswith("_pytest")]
    return case


def test_the_app_layer_passes_a_units_own_progress_on(
    pacer: Path, case: Path, progress: RecordingProgress, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    request = app.AnalyzeRequest(case, only=("pacer",), execution=app.ExecutorRequest(jobs=1))
    summary = app.analyze(request, progress)
    assert dict(summary.run.statuses) == {"no_findings": 1}
    assert progress.last_units["analyzing"] == (1, 1)
    ((unit, reports),) = progress.unit_reports.items()
    assert unit.startswith("pacer ")
    assert [(d, t) for d, t, _ in reports] == [(1, 3), (2, 3), (3, 3)]  # increasing, each one sent
    assert reports[-1][2] == "pacing step 3"
    assert progress.units_finished == [unit]  # told when the unit is over
    assert capsys.readouterr() == ("", "")  # the app layer never prints


def test_null_and_log_progress_take_unit_progress_silently(caplog: pytest.LogCaptureFixture) -> None:
    for sink in (app.NullProgress(), app.LogProgress()):
        sink.unit_progress("pacer x", 1, 3, "step")
        sink.unit_finished("pacer x")
    assert caplog.records == []


def _terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The bars' console as a terminal writing to a buffer (stderr of the command line)."""
    buf = io.StringIO()
    monkeypatch.setattr(triage.progress, "stderr", Console(file=buf, force_terminal=True, width=160))
    return buf


def _stable(out: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in out.items() if k not in ("run_id", "elapsed_s", "started", "finished", "custody_head")}


def test_the_cli_shows_a_units_progress_on_stderr_only(
    pacer: Path, case: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    base = ["analyze", str(case), "--only", "pacer", "-j", "1", "--force"]
    assert main([*base, "-q", "--json"]) == ExitCode.OK
    quiet_out = json.loads(capsys.readouterr().out)

    err = _terminal(monkeypatch)
    assert main([*base, "--json"]) == ExitCode.OK
    out, _ = capsys.readouterr()
    assert "pacing step" not in out and "\x1b" not in out
    shown = json.loads(out)  # stdout is the same JSON summary as without bars
    assert _stable(shown) == _stable(quiet_out) and shown.keys() == quiet_out.keys()
    assert "pacing step" in err.getvalue() and "pacer " in err.getvalue()

    err = _terminal(monkeypatch)
    assert main(base) == ExitCode.OK
    table = capsys.readouterr().out
    assert "pacing step" not in table and "\x1b" not in table
    assert "pacing step" in err.getvalue()

    err = _terminal(monkeypatch)  # quiet: no bar, no unit line
    assert main([*base, "-q"]) == ExitCode.OK
    assert "pacing step" not in err.getvalue() and "analyzing" not in err.getvalue()


def test_log_lines_go_through_the_bars_console(monkeypatch: pytest.MonkeyPatch) -> None:
    err = _terminal(monkeypatch)
    with console_logger("triage.test_unit_progress") as logger:
        shown = ConsoleProgress()
        with shown.units("analyzing") as update:
            update(0, 2)
            shown.unit_progress("pacer w1", 1, 4, "[bold]scan[/] 25%")  # unit text is not markup
            logger.warning("a [red]warning[/] %s", "x" * 200)  # one line, however long, above the bars
            shown.unit_finished("pacer w1")
            shown.unit_finished("never reported")  # no line: nothing to drop
        text = err.getvalue()
        assert "pacer w1: [bold]scan[/] 25%" in text
        assert f"WARNING triage.test_unit_progress: a [red]warning[/] {'x' * 200}\n" in text
