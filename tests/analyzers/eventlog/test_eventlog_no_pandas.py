"""The event-log command path needs no pandas: EVTX logs are read, evaluated and turned into findings from Arrow.

The command runs in a subprocess where pandas cannot be imported at all (as if not installed): every log must
still be analyzed, with the findings of a normal run. Then with pandas installed: pyarrow would import it on its
own (see triage.arrowlite), and no process of the command may ask for it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.case import Case
from triage.report import load_findings
from triage.testing.imports import hide_package
from triage.testing.volume import VolumeSpec, build_volume

COMMAND = """
import sys
from triage.cli import main
sys.argv = ["triage", "analyze", "-q", "--force", "--only", "eventlog", sys.argv[1]]
code = main()
assert not any(m == "pandas" or m.startswith("pandas.") for m in sys.modules), "pandas was imported"
sys.exit(code)
"""


# a finder that notes every import of pandas asked for (with where from) and lets it go on
WATCH = """
import os, sys, traceback

_ASKED = sys.argv[2]


class _Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "pandas":
            with open(_ASKED, "a") as out:
                out.write(f"pid {os.getpid()}:\\n" + "".join(traceback.format_stack(limit=15)))
        return None

sys.meta_path.insert(0, _Watch())
"""


def _keys(case: Case) -> list[tuple[str, str, str, str]]:
    df = load_findings(case)
    df = df[df["analyzer"] == "eventlog"]
    return sorted(zip(df["evidence_id"], df["rule_id"], df["location"], df["title"], strict=True))


@pytest.mark.slow  # a volume collected and analyzed twice
def test_event_logs_are_analyzed_without_pandas(tmp_path: Path) -> None:
    vol = build_volume(tmp_path / "vol", VolumeSpec(compromised=True, event_logs=True))
    case = Case.create_or_open(tmp_path / "case", examiner="t", case_id="CASE-NO-PANDAS")
    collect_volume(case, open_source_path(str(vol)), host=None)
    n = len(case.evidence(kinds={"evtx"}))
    assert n >= 3
    cmd = [sys.executable, "-c", hide_package("pandas") + COMMAND, str(case.path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # every log analyzed (other analyzers' modules that need pandas are reported and left out: --only eventlog)
    assert f"statuses {{'success': {n}}}" in done.stdout + done.stderr, done.stderr[-3000:]
    assert "eventlog failed" not in done.stderr and "batch step of eventlog" not in done.stderr
    without = _keys(Case.create_or_open(case.path, examiner="t"))
    # with pandas installed, no process of the command imports it either (the forked workers inherit the watch)
    asked = tmp_path / "pandas-asked"
    done = subprocess.run(
        [*cmd[:2], WATCH + COMMAND, str(case.path), str(asked)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not asked.exists(), asked.read_text()[-3000:]
    with_pandas = _keys(Case.create_or_open(case.path, examiner="t"))
    assert len(without) > 20 and without == with_pandas
