"""Start-up cost: ``triage --help`` and ``--version`` load no data or engine library (they would cost ~0.5 s)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

HEAVY = ("pandas", "pyarrow", "numpy", "yara", "yara_x", "evtx", "rich", "openpyxl", "jinja2", "stix2", "cryptography")

PROBE = """
import json, sys
from triage.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def _probe(*argv: str) -> tuple[int, set[str], str]:
    r = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60, check=True)
    last = json.loads(r.stdout.strip().splitlines()[-1])
    return last["code"], set(last["modules"]), r.stdout


@pytest.mark.parametrize("argv", [("--help",), ("--version",)])
def test_help_and_version_import_no_heavy_library(argv):
    code, modules, out = _probe(*argv)
    assert code == 0
    assert "usage: triage" in out or out.startswith("triage ")
    assert modules.isdisjoint(HEAVY), sorted(modules & set(HEAVY))
    assert not any(m.startswith("analyzers") or m == "collectors" for m in modules)


@pytest.mark.parametrize("command", ["run", "analyze"])
def test_subcommand_help_lists_analyzer_options_without_importing_analyzers(command):
    # the declared options (--sigma, --yara, --symbols) come from the analyzer index (analyzers/index.json)
    code, modules, out = _probe(command, "--help")
    assert code == 0
    assert "--sigma" in out and "--yara" in out and "--symbols" in out
    assert "analyzers" not in modules and "yara" not in modules


def test_app_names_are_functions_even_after_their_module_loads():
    # triage.app loads lazily; a submodule of the same name as a function must not shadow it
    code = (
        "import triage.app.collect, triage.app.report, triage.app.verify\n"
        "from triage import app\n"
        "import inspect\n"
        "print(all(inspect.isfunction(getattr(app, n)) for n in ('collect', 'report', 'verify', 'run', 'analyze')))\n"
        "print(app.CollectRequest.__module__, app.is_fleet_folder.__module__)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert r.stdout.split() == ["True", "triage.app.collect", "triage.fleet"]


def test_app_unknown_name_is_attribute_error():
    from triage import app

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        app.nope  # noqa: B018


EXIT_PROBE = """
import atexit, sys, threading
atexit.register(lambda: print("exit handler ran", file=sys.stderr))
if sys.argv[1] == "thread":  # a thread still running: the usual exit, which waits for it
    threading.Thread(target=lambda: (__import__("time").sleep(0.3), print("thread done"))).start()
sys.argv[1:] = ["--version"]
print("buffered before", end=" ")  # still in stdout's buffer when the command ends
from triage.cli import console
sys.exit(console())
"""


@pytest.mark.parametrize("mode", ["alone", "thread"])
def test_console_exit_runs_exit_handlers_and_flushes(mode):
    # the console script skips the interpreter's teardown, not what a user would see missing
    r = subprocess.run(
        [sys.executable, "-c", EXIT_PROBE, mode], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("buffered before triage "), r.stdout
    assert r.stderr.count("exit handler ran") == 1
    assert ("thread done" in r.stdout) == (mode == "thread")


def _cpu(cmd: list[str]) -> float:
    """CPU seconds (user + system) of one command: steadier than wall time on a shared machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, capture_output=True, timeout=60, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def test_help_costs_little_beyond_the_interpreter():
    # the target is `triage --help` < 0.15 s on an idle machine, where `python -c pass` takes ~0.03-0.05 s
    triage = [sys.executable, "-c", "import sys; from triage.cli import console; sys.argv[1:] = ['--help']; console()"]
    bare = [sys.executable, "-c", "pass"]
    extra = sorted(_cpu(triage) - _cpu(bare) for _ in range(3))[1]
    assert extra < 0.15, f"--help costs {extra:.3f} CPU s more than the bare interpreter"


def test_quiet_analyze_that_logs_nothing_loads_no_rich(tmp_path):
    # rich is loaded to draw a bar or print a log line; a quiet analyze of a clean log does neither, and its
    # summary line is the same text
    from triage.testing.evtx import logon_log

    src = tmp_path / "src"
    src.mkdir()
    logon_log(src / "Security.evtx", 4)
    case = tmp_path / "case"
    code, modules, _ = _probe("collect", "-q", "--json", "--case", str(case), "--as", "files", str(src))
    assert code == 0
    code, modules, out = _probe("analyze", "-q", "--only", "eventlog", str(case))
    assert code == 0 and "rich" not in modules
    line = out.splitlines()[0]
    assert line.startswith("analyze run-") and line.endswith(": 1 units planned, 0 already done, statuses "
                                                               "{'success': 1}, 2 findings"), line


LOG_PROBE = """
import logging, sys
from triage.progress import ConsoleLogHandler
logging.getLogger().addHandler(ConsoleLogHandler())
before = "rich" in sys.modules
logging.getLogger("x").warning("a warning\\tafter a tab\\x07")
print(before, "rich" in sys.modules)
"""


def test_a_log_line_loads_rich_and_prints_through_the_console():
    r = subprocess.run([sys.executable, "-c", LOG_PROBE], capture_output=True, text=True, timeout=60, check=True)
    assert r.stdout.split() == ["False", "True"]
    assert r.stderr == "a warning       after a tab\n"  # rich's own treatment: tab expanded, bell dropped
