"""The event-log command path needs no pandas: EVTX logs are read, evaluated and turned into findings from Arrow.

pyarrow itself imports pandas on its first array conversion when pandas is installed, so "not imported" cannot be
checked in a normal process; instead the command runs in a subprocess where pandas cannot be imported at all (as
if not installed): every log must still be analyzed, with the findings of a normal run.
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
    done = subprocess.run([*cmd[:2], COMMAND, str(case.path)], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "pandas was imported" in done.stderr  # with pandas there, pyarrow loads it
    with_pandas = _keys(Case.create_or_open(case.path, examiner="t"))
    assert len(without) > 20 and without == with_pandas
