"""Crash safety through the real command: SIGKILL a ``triage collect``/``analyze`` at chosen writes
(``TRIAGE_TEST_KILL_AT``), then check what verify says, resume with the same command and verify clean."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from triage.cli import main
from triage.errors import ExitCode
from triage.testing.volume import VolumeSpec, build_volume

TRIAGE = str(Path(sys.executable).with_name("triage"))


def triage(*args: str, kill_at: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRIAGE_EXAMINER": "tester", "TRIAGE_LOCK_WAIT": "60"}
    env.pop("TRIAGE_TEST_KILL_AT", None)
    if kill_at:
        env["TRIAGE_TEST_KILL_AT"] = kill_at
    return subprocess.run([TRIAGE, *args], env=env, capture_output=True, text=True, timeout=timeout)


def verify(case: Path, *extra: str) -> tuple[int, dict]:
    out = subprocess.run(
        [TRIAGE, "verify", str(case), "--json", "-q", *extra],
        env={**os.environ, "TRIAGE_EXAMINER": "tester"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.returncode, json.loads(out.stdout) if out.stdout.strip() else {}


@pytest.fixture(scope="module")
def vol(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_volume(tmp_path_factory.mktemp("crash") / "vol", VolumeSpec())


@pytest.fixture(scope="module")
def clean(vol: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A collect that was never interrupted: its artifacts and how many custody events it wrote."""
    case = tmp_path_factory.mktemp("clean") / "case"
    res = triage("collect", str(vol), "--case", str(case), "-q")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in (case / "manifest.jsonl").read_text().splitlines()]
    events = (case / "custody.jsonl").read_text().splitlines()
    return {
        "relpaths": sorted(r["relpath"] for r in rows if r["relpath"]),
        "events": len(events),
    }


def _relpaths(case: Path) -> list[str]:
    rows = [json.loads(line) for line in (case / "manifest.jsonl").read_text().splitlines()]
    return sorted(r["relpath"] for r in rows if r["relpath"] and r["outcome"] in ("success", "empty"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage",
    [
        "append:1",  # before the create event: case.json exists, the log is empty
        "copy:3",  # a temporary copy written, not yet placed
        "placed:5",  # placed under its name, no manifest row
        "row:7",  # manifest row written, its custody event not
        "head:9",  # custody line written, custody.head not updated
        "append:30",  # between two artifacts
        "last",  # right before collect_end
    ],
)
def test_killed_collect_is_incomplete_then_resumes_clean(stage: str, vol: Path, clean: dict, tmp_path: Path) -> None:
    case = tmp_path / "case"
    kill_at = f"append:{clean['events']}" if stage == "last" else stage
    res = triage("collect", str(vol), "--case", str(case), "-q", kill_at=kill_at)
    assert res.returncode == -signal.SIGKILL, (res.returncode, res.stderr[-2000:])
    code, out = verify(case)
    # a collect that never finished is incomplete (6), never OK and never "tampered" (3)
    assert code == ExitCode.INCOMPLETE, out
    assert out["incomplete"] and not out["problems"], out
    res = triage("collect", str(vol), "--case", str(case), "-q")
    assert res.returncode == 0, res.stderr[-2000:]
    code, out = verify(case)
    assert code == ExitCode.OK, out
    relpaths = _relpaths(case)
    assert not [r for r in relpaths if "~2" in r]  # the resumed collect reused the names, stored nothing twice
    assert relpaths == clean["relpaths"]
    actions = [json.loads(line)["action"] for line in (case / "custody.jsonl").read_text().splitlines()]
    assert actions[0] == "create" and actions.count("collect_end") == 1
    if stage in ("copy:3", "placed:5"):
        assert "recover" in actions  # the leftover was removed with a custody event


@pytest.mark.slow
def test_killed_analyze_resumes_and_verifies(vol: Path, tmp_path: Path) -> None:
    case = tmp_path / "case"
    assert triage("collect", str(vol), "--case", str(case), "-q").returncode == 0
    # killed after every unit ran and the run record was written, before its custody event
    res = triage("analyze", str(case), "-q", "-j", "1", kill_at="append:1")
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    runs = sorted((case / "runs").glob("run-*.json"))
    assert len(runs) == 1
    code, out = verify(case)
    assert code in (ExitCode.INCOMPLETE, ExitCode.INTEGRITY) and not out["ok"]
    res = triage("analyze", str(case), "-q", "-j", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    code, out = verify(case)
    assert code == ExitCode.OK, out
    assert out["files_checked"] > 10  # results, run records and case.json were checked, not skipped


@pytest.mark.slow
def test_analyze_killed_mid_run_by_signal(vol: Path, tmp_path: Path) -> None:
    case = tmp_path / "case"
    assert triage("collect", str(vol), "--case", str(case), "-q").returncode == 0
    env = {**os.environ, "TRIAGE_EXAMINER": "tester"}
    proc = subprocess.Popen(
        [TRIAGE, "analyze", str(case), "-q", "-j", "1"], env=env, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((case / "results").glob("*/*.json")):  # a unit or batch record
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its workers, as a crash would
    proc.wait(30)
    code, out = verify(case)
    assert code != ExitCode.OK
    res = triage("analyze", str(case), "-q", "-j", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    code, out = verify(case)
    assert code == ExitCode.OK, out


def test_concurrent_collects_serialise(vol: Path, tmp_path: Path) -> None:
    """Two collects into one case at once: the second waits for the first, stores nothing twice."""
    case = tmp_path / "case"
    env = {**os.environ, "TRIAGE_EXAMINER": "tester", "TRIAGE_LOCK_WAIT": "120"}
    env.pop("TRIAGE_TEST_KILL_AT", None)
    procs = [
        subprocess.Popen(
            [TRIAGE, "collect", str(vol), "--case", str(case), "-q", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    relpaths = _relpaths(case)
    assert len(relpaths) == len(set(relpaths)) and not [r for r in relpaths if "~2" in r]
    dupes = sorted(json.loads(o[0])["already_collected"] for o in outs)
    assert dupes[0] == 0 and dupes[1] == len(relpaths)  # the second found everything already collected
    assert main(["verify", str(case), "-q"]) == ExitCode.OK


def test_second_writer_fails_clearly_when_it_cannot_wait(vol: Path, tmp_path: Path) -> None:
    from triage.case import Case

    case = Case.create_or_open(tmp_path / "case", examiner="tester")
    with case.writer():
        env = {**os.environ, "TRIAGE_EXAMINER": "tester", "TRIAGE_LOCK_WAIT": "0.3"}
        res = subprocess.run(
            [TRIAGE, "collect", str(vol), "--case", str(case.path), "-q"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert res.returncode == ExitCode.USAGE
    assert f"pid {os.getpid()}" in res.stderr and "in use by another triage command" in res.stderr
    assert "Traceback" not in res.stderr
    assert not list((case.path / "evidence").rglob("*.*"))  # it wrote nothing


@pytest.mark.slow
def test_killed_report_is_redone_and_verifies(vol: Path, tmp_path: Path) -> None:
    case = tmp_path / "case"
    res = triage("run", str(vol), "--case", str(case), "-q", "-j", "1", "--only", "webshell_locations")
    assert res.returncode == 0, res.stderr[-2000:]
    # killed after every report file was written, before the report event recorded their hashes
    # (append 1 is the report_begin event, append 2 the report event)
    res = triage("report", str(case), "-q", kill_at="append:2")
    assert res.returncode == -signal.SIGKILL
    code, out = verify(case)
    # a report that started and never finished is incomplete (6), not tampering (3)
    assert code == ExitCode.INCOMPLETE and not out["problems"], out
    # the run's report was finished; the killed one rewrote its pages (a new generation time)
    assert "report/report.html" in {p["where"] for p in out["incomplete"]}, out
    assert triage("report", str(case), "-q").returncode == 0
    code, out = verify(case)
    assert code == ExitCode.OK, out
