"""The pool's workers start before planning, share what the parent loaded, and never import the parquet writer.

A plugin analyzer logs each rule load with its process id and puts, in each finding, the id of the worker that
ran it, the process that loaded the rules it used and whether pyarrow was imported in that worker. The run
happens in a fresh interpreter (the test process has pandas and pyarrow imported; forked workers would inherit
them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.case import Case
from triage.results import BATCH_SUFFIX, unit_records
from triage.testing.volume import VolumeSpec, build_volume
from triage.verify import verify_case

PLUGIN = textwrap.dedent('''
    from __future__ import annotations
    import os, sys
    from pathlib import Path
    import triage.unitrun
    from triage.registry import Analyzer, register

    if os.environ.get("PROBE_PYARROW") == "1":
        import pyarrow  # an analyzer that works in Arrow (the event logs): its workers have pyarrow

    _write = triage.unitrun.findings_parquet

    def _logged(found):  # which process writes each findings file (inherited by the forked workers)
        if found:
            with open(Path(os.environ["PROBE_OUT"]) / "writes.log", "a") as fh:
                fh.write(f"{os.getpid()}\\n")
        return _write(found)

    triage.unitrun.findings_parquet = _logged

    @register
    class WarmProbe(Analyzer):
        """A finding on 'hit' pages saying which process ran it and which loaded its rules."""
        name = "test_warm_probe"
        version = "1"
        consumes = ("web_file",)
        rules_fork_safe = bool(int(os.environ.get("PROBE_FORK_SAFE", "1")))

        def load_rules(self):
            with open(Path(self.options["dir"]) / "loads.log", "a") as fh:
                fh.write(f"{os.getpid()}\\n")
            return {"loaded_by": os.getpid()}

        def analyze(self, unit):
            name = unit.logical_path.rsplit("/", 1)[-1]
            if "hit" in name:
                yield unit.finding(rule_id="T-W", rule_title="warm", severity="low", title="hit", message=name,
                                   location=unit.logical_path,
                                   attributes={"worker": os.getpid(), "rules_from": self.ruleset["loaded_by"],
                                               "pyarrow": "pyarrow" in sys.modules})
''')

RUN = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from triage.case import Case
    from triage.executors import LocalPoolExecutor
    from triage.runner import BatchLimits, analyze_case, warm_pool
    case_dir, plugin, out = sys.argv[1:4]
    case = Case.open(Path(case_dir))
    opts = {"test_warm_probe": {"dir": out}}
    ex = LocalPoolExecutor(2)
    with case.writer():
        warmed = warm_pool(ex, [case], only=("test_warm_probe",), plugins=(plugin,), options=opts)
        started = ex.workers_started
        s = analyze_case(case, executor=ex, only=("test_warm_probe",), plugins=(plugin,), options=opts,
                         batching=BatchLimits(count=8, per_worker=1))
    ex.close()
    case.close()
    print(json.dumps({"warmed": warmed, "started_before_run": started, "started": ex.workers_started,
                      "findings": s.findings, "statuses": dict(s.statuses), "parent": os.getpid(),
                      "pyarrow_in_parent": "pyarrow" in sys.modules, "pandas_in_parent": "pandas" in sys.modules}))
""")
WEB = "inetpub/wwwroot/aspnet_client/app"
NAMES = [f"p{i:02d}-{'hit' if i % 3 == 0 else 'plain'}.aspx" for i in range(24)]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A case of a volume with 24 small pages under the web root (and the plugin beside it)."""
    root = tmp_path_factory.mktemp("warm-template")
    files = {f"{WEB}/{n}": b"<%@ Page %>" + n.encode() for n in NAMES}
    vol = build_volume(root / "vol", VolumeSpec(compromised=False, extra_files=files))
    case = Case.create_or_open(root / "case", examiner="tester", case_id="CASE-WARM")
    collect_volume(case, open_source_path(str(vol)), host=None)
    case.close()
    (root / "plugin.py").write_text(PLUGIN)
    return root


def _run(template: Path, tmp_path: Path, fork_safe: bool, pyarrow: bool = False) -> dict:
    import shutil

    shutil.copytree(template / "case", tmp_path / "case")
    env = {
        **os.environ,
        "PROBE_FORK_SAFE": "1" if fork_safe else "0",
        "PROBE_PYARROW": "1" if pyarrow else "0",
        "PROBE_OUT": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path / "case"), str(template / "plugin.py"), str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _findings(case_dir: Path) -> pd.DataFrame:
    files = sorted((case_dir / "results" / "test_warm_probe").glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def test_warmed_workers_run_the_batches_without_pyarrow_and_share_the_parents_rules(
    template: Path, tmp_path: Path
) -> None:
    got = _run(template, tmp_path, fork_safe=True)
    hits = sum("hit" in n for n in NAMES)
    # both workers were started by warm_pool, before planning, and the run took them (no third worker)
    assert got["warmed"] == ["test_warm_probe"] and got["started_before_run"] == got["started"] == 2
    pages = len(Case.open(tmp_path / "case").evidence(kinds={"web_file"}))  # ours and the volume's own
    assert got["findings"] == hits and got["statuses"] == {"success": hits, "no_findings": pages - hits}
    df = _findings(tmp_path / "case")
    attrs = [json.loads(a) for a in df["attributes"]]
    assert sorted(df["message"]) == sorted(n for n in NAMES if "hit" in n)
    # the rules were loaded once, in the parent, before the fork: every worker used that object
    loads = (tmp_path / "loads.log").read_text().split()
    assert loads == [str(got["parent"])]
    assert {a["rules_from"] for a in attrs} == {got["parent"]} and got["parent"] not in {a["worker"] for a in attrs}
    # no worker imported pyarrow: the parent wrote the batches that had findings (it imported pyarrow for them)
    assert not any(a["pyarrow"] for a in attrs) and got["pyarrow_in_parent"]
    # and it wrote them from Arrow arrays without importing pandas (0.3 CPU s beside the loop that feeds the pool)
    assert not got["pandas_in_parent"]
    assert set((tmp_path / "writes.log").read_text().split()) == {str(got["parent"])}
    case = Case.open(tmp_path / "case")
    rows = [rec for _, rec in unit_records(case.path, ["test_warm_probe"])]
    assert len(rows) == pages and all(r["fingerprint"] for r in rows)
    # a row with findings names its batch's parquet, and the worker that ran it (the parent only wrote it)
    workers = {f":{a['worker']}" for a in attrs}
    for path, rec in unit_records(case.path, ["test_warm_probe"]):
        assert path.name.endswith(BATCH_SUFFIX)
        assert bool(rec["result_path"]) == bool(rec["findings"]) == bool(rec["result_sha256"])
        if rec["findings"]:
            assert any(rec["worker"].endswith(w) for w in workers)
    rep = verify_case(case)
    assert rep.ok and rep.problems == [], rep.problems


def test_rules_that_are_not_fork_safe_load_in_each_worker(template: Path, tmp_path: Path) -> None:
    got = _run(template, tmp_path, fork_safe=False)
    loads = (tmp_path / "loads.log").read_text().split()
    # not in the parent: once per worker that ran units (warmed before planning), never twice in one process
    assert str(got["parent"]) not in loads and len(loads) == len(set(loads)) and 1 <= len(loads) <= 2
    attrs = [json.loads(a) for a in _findings(tmp_path / "case")["attributes"]]
    assert all(a["rules_from"] == a["worker"] for a in attrs)


def test_workers_that_have_pyarrow_write_their_own_findings(template: Path, tmp_path: Path) -> None:
    """An analyzer that imports pyarrow itself (the event logs): each worker writes its batches' findings files
    (nothing is sent back to the parent to write), with the same records, findings and verify as before."""
    got = _run(template, tmp_path, fork_safe=True, pyarrow=True)
    hits = sum("hit" in n for n in NAMES)
    pages = len(Case.open(tmp_path / "case").evidence(kinds={"web_file"}))
    assert got["findings"] == hits and got["statuses"] == {"success": hits, "no_findings": pages - hits}
    df = _findings(tmp_path / "case")
    attrs = [json.loads(a) for a in df["attributes"]]
    assert sorted(df["message"]) == sorted(n for n in NAMES if "hit" in n)
    workers = {str(a["worker"]) for a in attrs}
    writers = (tmp_path / "writes.log").read_text().split()
    assert str(got["parent"]) not in writers and set(writers) <= workers and all(a["pyarrow"] for a in attrs)
    case = Case.open(tmp_path / "case")
    for path, rec in unit_records(case.path, ["test_warm_probe"]):
        assert path.name.endswith(BATCH_SUFFIX)
        assert bool(rec["result_path"]) == bool(rec["findings"]) == bool(rec["result_sha256"])
    rep = verify_case(case)
    assert rep.ok and rep.problems == [], rep.problems
