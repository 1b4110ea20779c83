"""A tiny run pays only for what it uses: no worker process, no module of an analyzer without work.

``triage run`` of a 4-event EVTX runs its handful of small units in its own process (under the same time and
memory bounds as a worker) and imports only the analyzers that consume an EVTX.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from triage import registry
from triage.case import Case
from triage.executors import LocalPoolExecutor, UnitLimits
from triage.registry import Analyzer, Unit, register
from triage.report.build import load_findings
from triage.runner import analyze_case

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
PROBE = """
import json, os, sys
forks = []
os.register_at_fork(before=lambda: forks.append(1))  # the pool would fork its workers, the report process forks
from triage.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "forks": len(forks), "modules": sorted(sys.modules)}))
"""


def _tiny_log(path: Path) -> Path:
    """The 4-event Security log the start-up benchmark times (``benchmarks/startup.py``)."""
    spec = importlib.util.spec_from_file_location("triage_bench_startup", BENCHMARKS / "startup.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return Path(bench.tiny_evtx(path))


def test_tiny_run_starts_no_worker_and_imports_only_analyzers_with_work(tmp_path: Path) -> None:
    log = _tiny_log(tmp_path / "Security.evtx")
    case_dir = tmp_path / "case"
    argv = ["run", str(log), "--case", str(case_dir), "--examiner", "t", "-q", "--host", "H1"]
    r = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=300, check=False)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["code"] == 4, r.stderr  # a lone event log: insufficient evidence for a verdict, said so
    assert out["forks"] == 1  # the report process (triage.app.reportproc), forked first; no pool worker (below)
    modules = set(out["modules"])
    index = registry.read_index()
    assert index is not None
    idle = {d.module for d in index.values() if "evtx" not in d.consumes}
    assert idle and not idle & modules, sorted(idle & modules)
    assert not {"yara", "yara_x", "volatility3", "cryptography"} & {m.split(".")[0] for m in modules}
    assert "triage.app.fleet" not in modules and "triage.verify" not in modules  # a single host's run
    assert "analyzers.eventlog" in modules  # the analyzer with work was imported, here, not in a worker
    run = json.loads(next((case_dir / "runs").glob("run-*.json")).read_text())
    # collection_records, eventlog, proxylogon, proxylogon_narrative and memory_joins consume an EVTX: all but eventlog
    # skip (no web logs, no memory), memory_joins in the second stage
    assert run["executor"]["units_in_process"] == run["planned"] == 5
    assert run["executor"]["isolated"] is False
    assert run["statuses"] == {"success": 1, "skipped": 4}
    # the same findings as units run in pool workers
    case = Case.open(case_dir)
    here = sorted(load_findings(case)["finding_id"])
    pooled = analyze_case(case, executor=LocalPoolExecutor(1), force=True)
    assert pooled.statuses == run["statuses"] and sorted(load_findings(case)["finding_id"]) == here
    assert here, "the tiny log gives findings (logon events of the ED 21-02 pack)"
    case.close()


class _Bounded(Analyzer):
    """Test analyzer: sleeps or allocates, as its evidence's host name says."""

    name = "test_bounded"
    version = "1"
    consumes = ("evtx",)

    def analyze(self, unit: Unit) -> Iterator[Any]:
        if unit.host == "SLOW":
            time.sleep(30)
        else:
            hog = [bytearray(1 << 20) for _ in range(2048)]  # 2 GiB, past the 64 MiB bound
            del hog
        return iter(())


@pytest.mark.parametrize(
    ("host", "limits", "message"),
    [
        ("SLOW", UnitLimits(time_s=0.5), "exceeded the 0.5 s time limit"),
        ("HUNGRY", UnitLimits(memory_bytes=64 << 20), "exceeded memory limit (64 MiB per unit)"),
    ],
)
def test_in_process_units_keep_the_pool_bounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, limits: UnitLimits, message: str
) -> None:
    from triage import executors

    register(_Bounded)
    monkeypatch.setattr(executors, "_small_run", lambda tasks: True)  # a test analyzer is not in the index
    log = _tiny_log(tmp_path / "Security.evtx")
    case = Case.create_or_open(tmp_path / "case", examiner="t", case_id="C")
    case.store(
        lambda: open(log, "rb"),  # noqa: SIM115  (store opens it in a with block)
        host=host,
        kind="evtx",
        logical_parts=["C", "Windows", "System32", "winevt", "Logs", "Security.evtx"],
        source_path=str(log),
        collector="test",
        collector_version="1",
    )
    ex = LocalPoolExecutor(1, limits, in_process_small=True)
    t0 = time.monotonic()
    summary = analyze_case(case, executor=ex, only=("test_bounded",))
    assert time.monotonic() - t0 < 20
    assert ex.workers_started == 0 and ex.units_in_process == 1
    assert dict(summary.statuses) == {"error": 1} and message in summary.errors[0]["message"]
    case.close()
