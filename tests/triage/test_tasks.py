"""Runner and executors share typed unit tasks and do not import each other's way round."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import triage
from triage.tasks import UnitSpec, UnitTask

ROOT = Path(triage.__file__).parent


def _imports(module: str) -> set[str]:
    tree = ast.parse((ROOT / f"{module}.py").read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):  # function-level imports count too: a lazy import is still a cycle
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_no_cycle_between_runner_and_executors() -> None:
    assert "triage.executors" in _imports("runner")
    for module in ("executors", "unitrun", "tasks"):
        assert "triage.runner" not in _imports(module), module
    assert "triage.executors" not in _imports("unitrun")
    assert not {m for m in _imports("tasks") if m.startswith("triage")}  # the shared records depend on nothing


def test_unit_task_is_a_typed_picklable_record() -> None:
    spec = UnitSpec(
        case_dir="/cases/c1",
        case_id="C1",
        analyzer="eventlog",
        evidence={"artifact_id": "A1", "kind": "evtx"},
        options={"sigma": ["/rules"]},
        run_id="run-1",
    )
    task = UnitTask(key="triage-eventlog-A1-run-1", spec=spec, time_limit=60.0)
    back = pickle.loads(pickle.dumps(task))  # what the pool pipe and dask do with it
    assert back == task
    assert (back.case_dir, back.analyzer, back.evidence_id, back.spec.options) == (
        "/cases/c1",
        "eventlog",
        "A1",
        {"sigma": ["/rules"]},
    )
