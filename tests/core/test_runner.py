from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from triage.case import Case
from triage.errors import UsageError
from triage.report import load_findings
from triage.runner import analyze_case

PLUGIN = textwrap.dedent('''
    from __future__ import annotations
    import os, signal
    from pathlib import Path
    from triage.registry import Analyzer, register

    @register
    class Marker(Analyzer):
        """One finding per web file; the n-th unit can kill the triage process it runs under (interruption test)."""
        name = "test_marker"
        version = "1"
        consumes = ("web_file",)

        def analyze(self, unit):
            counter = os.environ.get("MARKER_COUNTER")
            if counter:
                p = Path(counter)
                n = int(p.read_text() or 0) + 1 if p.exists() else 1
                p.write_text(str(n))
                if n > int(os.environ.get("MARKER_KILL_AFTER", "1000000")):
                    os.kill(os.getppid(), signal.SIGKILL)  # kill -9 of `triage analyze`; this worker must follow
                    import time
                    time.sleep(60)
            yield unit.finding(rule_id="T-1", rule_title="marker", severity="low", title="seen",
                               message=unit.logical_path, location=unit.logical_path)

    @register
    class Exploding(Analyzer):
        """Yields one finding, then raises on aspx files."""
        name = "test_exploding"
        version = "1"
        consumes = ("web_file",)

        def analyze(self, unit):
            yield unit.finding(rule_id="T-2", rule_title="before", severity="info", title="x", message="x",
                               location=unit.logical_path)
            if unit.logical_path.endswith(".aspx"):
                raise RuntimeError("parser blew up on " + unit.logical_path)

    @register
    class PerHost(Analyzer):
        """One unit per host over all its web files."""
        name = "test_per_host"
        version = "1"
        consumes = ("web_file", "suspicious_file")
        scope = "host"

        def analyze(self, unit):
            names = sorted(m.relpath.rsplit("/", 1)[-1] for m in unit.members)
            assert all(unit.member_path(m).is_file() for m in unit.members)
            yield unit.finding(rule_id="T-3", rule_title="host", severity="info", title=str(len(names)),
                               message=",".join(names), location=unit.host, evidence=unit.members[0])

    @register
    class Dying(Analyzer):
        """Kills its worker process on the web shell (a segfault stand-in)."""
        name = "test_dying"
        version = "1"
        consumes = ("web_file",)

        def analyze(self, unit):
            if unit.logical_path.endswith("Dk2jQ8ab.aspx"):
                os._exit(3)
            return iter(())
''')


@pytest.fixture
def plugin(tmp_path: Path) -> str:
    path = tmp_path / "test_plugins.py"
    path.write_text(PLUGIN)
    return str(path)


def _web_count(case: Case) -> int:
    return len(case.evidence(kinds={"web_file"}))


def test_raising_analyzer_does_not_stop_others(case: Case, plugin: str) -> None:
    s = analyze_case(case, only=("test_exploding", "webshell_locations", "test_marker"), plugins=(plugin,))
    n_web = _web_count(case)
    aspx = [r for r in case.evidence(kinds={"web_file"}) if r.relpath.endswith(".aspx")]
    assert s.statuses["error"] == len(aspx) == 4
    assert {e["analyzer"] for e in s.errors} == {"test_exploding"}
    run = json.loads((case.path / "results" / "test_exploding" / f"{aspx[0].artifact_id}.run.json").read_text())
    assert run["status"] == "error" and "RuntimeError: parser blew up on" in run["message"]
    assert "Traceback" in run["traceback"]
    df = load_findings(case)
    # the finding yielded before the exception is kept; the other analyzers ran everything
    assert (df["analyzer"] == "test_exploding").sum() == n_web
    assert (df["analyzer"] == "test_marker").sum() == n_web
    assert set(df.loc[df["analyzer"] == "webshell_locations", "rule_id"]) == {
        "TRIAGE-WEB-001",
        "TRIAGE-SUS-001",
        "TRIAGE-SUS-002",
        "TRIAGE-SUS-003",
        "TRIAGE-SUS-004",
    }


def test_rerun_skips_finished_units_and_force_reruns(case: Case, plugin: str) -> None:
    first = analyze_case(case, only=("test_marker",), plugins=(plugin,))
    n = _web_count(case)
    assert (first.planned, first.reused, first.statuses["success"]) == (n, 0, n)
    again = analyze_case(case, only=("test_marker",), plugins=(plugin,))
    assert (again.reused, sum(again.statuses.values())) == (n, 0)
    forced = analyze_case(case, only=("test_marker",), plugins=(plugin,), force=True)
    assert (forced.reused, forced.statuses["success"]) == (0, n)


def test_host_scope_unit_sees_all_members(case: Case, plugin: str) -> None:
    s = analyze_case(case, only=("test_per_host",), plugins=(plugin,))
    assert (s.planned, s.statuses["success"]) == (1, 1)
    df = load_findings(case)
    assert list(df["title"]) == ["9"]  # 7 web files + 2 suspicious files of EXCH01
    assert "lsass.dmp" in df["message"].iloc[0] and "it.zip" in df["message"].iloc[0]
    first = min(case.evidence(kinds={"web_file", "suspicious_file"}), key=lambda r: r.artifact_id)
    assert df["evidence_id"].iloc[0] in {r.artifact_id for r in case.evidence()}
    assert first is not None
    again = analyze_case(case, only=("test_per_host",), plugins=(plugin,))
    assert again.reused == 1


def test_changed_options_rerun_finished_units(case: Case, plugin: str) -> None:
    n = _web_count(case)
    analyze_case(case, only=("test_marker",), plugins=(plugin,))
    same = analyze_case(case, only=("test_marker",), plugins=(plugin,), options={"test_marker": {}})
    assert same.reused == n
    changed = analyze_case(case, only=("test_marker",), plugins=(plugin,), options={"test_marker": {"rules": "x"}})
    assert (changed.reused, changed.statuses["success"]) == (0, n)
    run = next((case.path / "results" / "test_marker").glob("*.run.json"))
    assert len(json.loads(run.read_text())["fingerprint"]) == 32


def test_parallel_pool_survives_a_dying_worker(case: Case, plugin: str) -> None:
    s = analyze_case(case, only=("test_dying", "webshell_locations"), plugins=(plugin,), jobs=2)
    assert s.statuses["error"] == 1
    assert s.errors[0]["analyzer"] == "test_dying"
    assert "worker process died" in s.errors[0]["message"]
    assert s.statuses["no_findings"] + s.statuses["success"] == s.planned - 1
    assert len(load_findings(case)) == 5


def test_only_and_skip(case: Case, plugin: str) -> None:
    s = analyze_case(case, only=("webshell_locations",), plugins=(plugin,))
    assert set((case.path / "results").iterdir()) == {case.path / "results" / "webshell_locations"}
    from triage.registry import analyzers

    others = tuple(n for n in analyzers() if n != "test_marker")
    s = analyze_case(case, skip=others, plugins=(plugin,))
    assert s.planned == _web_count(case)
    assert set(s.as_dict()["statuses"]) == {"success"}
    with pytest.raises(UsageError, match="unknown analyzer"):
        analyze_case(case, only=("nope",))


def _triage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "triage", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def _processes_mentioning(text: str, wait: float = 0.0) -> list[int]:
    """Pids of live processes whose command line contains ``text`` (waiting up to ``wait`` s for none)."""
    import time

    deadline = time.monotonic() + wait
    while True:
        found = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit() and int(d.name) != os.getpid():
                try:
                    cmd = (d / "cmdline").read_bytes()
                    state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
                except OSError:
                    continue
                if text.encode() in cmd and state != "Z":
                    found.append(int(d.name))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_interrupted_analyze_resumes_to_the_same_findings(case: Case, plugin: str, tmp_path: Path) -> None:
    reference = tmp_path / "reference-case"
    shutil.copytree(case.path, reference)
    counter = tmp_path / "counter"
    killed = _triage(
        "analyze",
        str(case.path),
        "--plugin",
        plugin,
        "--only",
        "test_marker",
        "-j",
        "1",
        "-q",
        env={"MARKER_COUNTER": str(counter), "MARKER_KILL_AFTER": "3"},
    )
    assert killed.returncode == -9  # SIGKILL half way through
    # no worker outlives the killed parent (it would sleep 60 s otherwise)
    assert _processes_mentioning(str(case.path), wait=5.0) == []
    done = list((case.path / "results" / "test_marker").glob("*.run.json"))
    assert len(done) == 3
    resumed = _triage("analyze", str(case.path), "--plugin", plugin, "--only", "test_marker", "-j", "1", "--json", "-q")
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["reused"] == 3 and out["statuses"] == {"success": _web_count(case) - 3}
    full = _triage("analyze", str(reference), "--plugin", plugin, "--only", "test_marker", "-q")
    assert full.returncode == 0
    got = load_findings(Case.open(case.path))
    want = load_findings(Case.open(reference))
    assert len(got) == _web_count(case)
    pd.testing.assert_series_equal(
        got["finding_id"].sort_values(ignore_index=True), want["finding_id"].sort_values(ignore_index=True)
    )
