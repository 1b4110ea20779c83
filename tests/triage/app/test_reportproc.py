"""``triage run``'s report process: the same case, report and exit code as a report built in the command's process.

Each run is a fresh ``triage`` process (the report process is forked from it); the helper script below can
kill the report process at a chosen moment or make its report fail, to check the fallbacks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from triage.app.reportproc import ReportProcess
from triage.testing.evtx import logon_log

# runs the command line; TEST_CHILD (set by a test) makes the forked report process misbehave
SCRIPT = """
import json, os, signal, sys
from triage.app import reportproc
how = os.environ.pop("TEST_CHILD", "")
start = reportproc.ReportProcess.start.__func__
def started(cls):
    proc = start(cls)
    if proc is not None and how == "kill-early":  # dies while importing, before any request
        os.kill(proc.pid, signal.SIGKILL)
    return proc
reportproc.ReportProcess.start = classmethod(started)
report = reportproc._report
def misbehaving(*args):
    if how == "kill-mid-report":  # killed right after its first custody line (report_begin) is written
        os.environ["TRIAGE_TEST_KILL_AT"] = "head:1"
    if how == "fail":
        from triage.errors import IntegrityError
        raise IntegrityError("the report could not be written (test)")
    if how == "internal":
        raise ZeroDivisionError("a bug in the report (test)")
    if how.startswith("slow:"):  # says who it is, then takes its time
        open(how[5:], "w").write(str(os.getpid()))
        __import__("time").sleep(60)
    return report(*args)
reportproc._report = misbehaving
from triage.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

QUIET = ("pandas", "pyarrow", "numpy", "jinja2", "triage.report.build", "triage.report.ledger")


def _run(tmp: Path, name: str, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    log = tmp / "Security.evtx"
    if not log.exists():
        logon_log(log, 4)
    case = tmp / name
    argv = ["run", str(log), "--case", str(case), "--examiner", "t", "-q", "--host", "H1", "--json", *extra]
    full_env = {**os.environ, "TRIAGE_CACHE_DIR": str(tmp / "cache"), **(env or {})}
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, *argv], capture_output=True, text=True, timeout=600, check=False, env=full_env
    )
    lines = r.stdout.strip().splitlines()
    probe = json.loads(lines[-1])
    summary = json.loads("\n".join(lines[:-1])) if len(lines) > 1 else {}
    modules = set(probe["modules"])
    return {"code": probe["code"], "modules": modules, "summary": summary, "stderr": r.stderr, "case": case}


def _verify(case: Path) -> int:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from triage.cli import main; sys.exit(main(sys.argv[1:]))", "verify",
         str(case), "-q"],
        capture_output=True, timeout=600, check=False,
    ).returncode  # fmt: skip


def _actions(case: Path) -> list[str]:
    return [json.loads(line)["action"] for line in (case / "custody.jsonl").read_text().splitlines()]


def _comparable(case: Path) -> dict[str, Any]:
    """What must not depend on where the report was built: findings, ledger, report files, custody actions."""
    import pandas as pd

    findings = pd.read_parquet(case / "report" / "findings.parquet")
    ledger = json.loads((case / "report" / "ledger.json").read_text())
    return {
        "finding_ids": sorted(findings["finding_id"]),
        "rules": sorted(findings["rule_id"]),
        "ledger": json.dumps(_strip_volatile(ledger), sort_keys=True),
        "files": sorted(p.name for p in (case / "report").iterdir()),
        "actions": _actions(case),
    }


def _strip_volatile(d: Any) -> Any:
    """The ``--json`` summary without times, ids and paths that differ from run to run."""
    volatile = {"seconds", "timings", "run_id", "case", "case_id", "outputs", "html", "started", "finished", "hash"}
    volatile |= {"generated", "artifact_id"}
    if isinstance(d, dict):
        return {k: _strip_volatile(v) for k, v in d.items() if k not in volatile}
    if isinstance(d, list):
        return [_strip_volatile(v) for v in d]
    return d


@pytest.mark.slow
def test_report_process_gives_the_same_case_as_an_in_process_report(tmp_path: Path) -> None:
    here = _run(tmp_path, "here", env={"TRIAGE_REPORT_PROCESS": "0"})
    aside = _run(tmp_path, "aside")
    assert here["code"] == aside["code"] == 4, (here["stderr"], aside["stderr"])  # insufficient evidence, said so
    # the report modules were loaded by the forked process only
    assert "triage.report.build" in here["modules"] and "triage.report.build" not in aside["modules"]
    a, b = _comparable(here["case"]), _comparable(aside["case"])
    assert a == b
    assert a["finding_ids"] and a["actions"][-2:] == ["report_begin", "report"]
    assert _strip_volatile(here["summary"]) == _strip_volatile(aside["summary"])
    assert aside["summary"]["report"]["findings"] == len(a["finding_ids"])
    assert "custody_head" in aside["summary"]["report"]
    assert _verify(here["case"]) == _verify(aside["case"]) == 0


# every analyzer of a host with a Security.evtx but the event log's own: the Exchange ones (they skip a host
# without Exchange logs or an Application log), the memory joins, the collection records
HOST_ANALYZERS = "collection_records,memory_joins,proxylogon,proxylogon_narrative"


@pytest.mark.parametrize("only", ["collection_records", HOST_ANALYZERS])
def test_parent_of_a_tiny_run_imports_no_pandas(tmp_path: Path, only: str) -> None:
    # analyzers that read the evidence without pandas: then nothing in the command's process imports it
    r = _run(tmp_path, "case", "--only", only)
    assert r["code"] == 4, r["stderr"]
    assert not r["modules"] & set(QUIET), sorted(r["modules"] & set(QUIET))
    records = [json.loads(p.read_text()) for p in sorted((r["case"] / "results").glob("*/*.run.json"))]
    assert sorted((rec["analyzer"], rec["status"]) for rec in records) == [(a, "skipped") for a in only.split(",")]
    assert (r["case"] / "report" / "findings.parquet").exists() and (r["case"] / "report" / "report.html").exists()
    assert _actions(r["case"])[-2:] == ["report_begin", "report"]
    assert r["summary"]["report"]["ledger"], "the summary came back whole from the report process"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill-early", "kill-mid-report"])
def test_a_killed_report_process_falls_back_to_this_process(tmp_path: Path, how: str) -> None:
    r = _run(tmp_path, "case", env={"TEST_CHILD": how})
    assert r["code"] == 4, r["stderr"]
    assert "the report process was killed by SIGKILL before it answered" in r["stderr"]
    assert "triage.report.build" in r["modules"]  # built here instead
    actions = _actions(r["case"])
    assert actions[-2:] == ["report_begin", "report"]
    if how == "kill-mid-report":  # the killed report's begin stays, as a killed report leaves it; the head caught up
        assert actions.count("report_begin") == 2 and "repair" in actions
    else:
        assert actions.count("report_begin") == 1 and "repair" not in actions
    assert (r["case"] / "report" / "report.html").exists()
    assert _verify(r["case"]) == 0


@pytest.mark.slow
@pytest.mark.parametrize(("how", "code", "text"), [("fail", 3, "could not be written"), ("internal", 70, "a bug")])
def test_an_error_in_the_report_process_is_the_commands(tmp_path: Path, how: str, code: int, text: str) -> None:
    r = _run(tmp_path, "case", env={"TEST_CHILD": how})
    assert r["code"] == code, r["stderr"]
    assert text in r["stderr"]
    if how == "internal":  # the traceback says where it happened
        assert "ZeroDivisionError" in r["stderr"] and "in the report process" in r["stderr"]
    assert "triage.report.build" not in r["modules"]  # no second attempt: an error is an answer


def test_no_report_process_in_a_threaded_process_or_when_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert ReportProcess.start() is None  # a fork now could copy a lock another thread holds
    finally:
        stop.set()
        t.join()
    monkeypatch.setenv("TRIAGE_REPORT_PROCESS", "0")
    assert ReportProcess.start() is None


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie nobody reaped yet is dead
    except FileNotFoundError:
        return True


@pytest.mark.slow
def test_the_report_process_dies_with_the_command(tmp_path: Path) -> None:
    # kill -9 of the command while its report process works: no helper is left writing into the unlocked case
    log = logon_log(tmp_path / "Security.evtx", 4)
    marker = tmp_path / "child.pid"
    argv = ["run", str(log), "--case", str(tmp_path / "case"), "--examiner", "t", "-q"]
    env = {**os.environ, "TRIAGE_CACHE_DIR": str(tmp_path / "cache"), "TEST_CHILD": f"slow:{marker}"}
    parent = subprocess.Popen([sys.executable, "-c", SCRIPT, *argv], env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() or not marker.read_text():
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        child = int(marker.read_text())
        assert not _dead(child)
        parent.kill()
        parent.wait(30)
        deadline = time.monotonic() + 10
        while not _dead(child):
            assert time.monotonic() < deadline, "the report process outlived the command"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait(30)


# a stand-in for the report process: answers the request it reads with the request's first item
ECHO_CHILD = """
import pickle, sys
from triage.app.reportproc import _read_all, _write_all
requests, replies = int(sys.argv[1]), int(sys.argv[2])
_write_all(replies, pickle.dumps(("ok", pickle.loads(_read_all(requests))[0], "")))
"""


def test_meanwhile_runs_while_the_child_reports_and_cannot_fail_the_command() -> None:
    to_child, requests = os.pipe()  # the child reads what this process writes
    replies_read, replies = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", ECHO_CHILD, str(to_child), str(replies)], pass_fds=(to_child, replies)
    )
    os.close(to_child)
    os.close(replies)
    proc = ReportProcess(child.pid, requests, replies_read)
    calls: list[bool] = []

    def meanwhile() -> None:
        calls.append(proc._requests is None)  # the request is sent before
        raise RuntimeError("a renderer that cannot load")

    proc.meanwhile = meanwhile
    assert proc._ask(("the summary",)) == ("ok", "the summary", "")
    assert calls == [True]
