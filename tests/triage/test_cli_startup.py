"""Start-up cost: ``triage --help`` and ``--version`` load no data or engine library (they would cost ~0.5 s)."""

from __future__ import annotations

import json
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
