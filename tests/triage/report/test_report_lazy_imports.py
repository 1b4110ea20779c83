"""A tiny run's report pays only for what it writes: no stix2, no openpyxl; templates compiled once."""

from __future__ import annotations

import json
import subprocess
import sys

from triage.report import html
from triage.testing.evtx import logon_log

PROBE = """
import json, sys
from triage.cli import main
try:
    code = main(["run", sys.argv[1], "--case", sys.argv[2], "--examiner", "t", "-q"])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "loaded": sorted(m for m in ("stix2", "openpyxl", "jinja2") if m in sys.modules)}))
"""


def test_tiny_run_report_imports_neither_stix2_nor_openpyxl(tmp_path) -> None:
    log = logon_log(tmp_path / "Security.evtx")
    case = tmp_path / "case"
    # the report in the command's own process, where the probe sees its imports (run forks it off otherwise)
    env = {"TRIAGE_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "TRIAGE_REPORT_PROCESS": "0"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(log), str(case)], capture_output=True, text=True, env=env, timeout=120
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["code"] in (0, 4), out.stderr[-2000:]  # 4: one event log is not enough for a verdict
    assert result["loaded"] == ["jinja2"]  # the page is rendered; STIX and XLSX are written without libraries
    for name in ("report.html", "findings.stix.json", "findings.xlsx", "cisa_template.xlsx"):
        assert (case / "report" / name).stat().st_size > 0, name
    assert list((tmp_path / "cache" / "jinja").iterdir())  # the compiled template was kept for the next run


def test_templates_compile_once_into_the_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TRIAGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(html, "_ENV", None)
    env = html._env()
    assert html._env() is env
    env.get_template("report.html.j2")
    cached = list((tmp_path / "jinja").iterdir())
    assert len(cached) == 1 and cached[0].stat().st_size > 0
    monkeypatch.setattr(html, "_ENV", None)  # a new command: the template is loaded from the cache
    loaded = html._env().bytecode_cache
    assert loaded is not None and loaded.directory == str(tmp_path / "jinja")
