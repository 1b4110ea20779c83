"""The runner on a real dask.distributed cluster (worker processes on loopback) against the local pool."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.case import Case
from triage.cli import main
from triage.errors import UsageError
from triage.executors import DaskExecutor, LocalPoolExecutor, open_executor, parse_cluster, parse_scheduler
from triage.report import load_findings, load_runs
from triage.results import unit_records
from triage.runner import BatchLimits, analyze_case, analyze_cases
from triage.testing.volume import VolumeSpec, build_volume
from triage.verify import verify_case

PLUGIN = textwrap.dedent('''
    from __future__ import annotations
    import os, signal, time
    from pathlib import Path
    from triage.executors import worker_id
    from triage.registry import Analyzer, register

    @register
    class Flaky(Analyzer):
        """One finding per web file; can kill its own worker process on one file (once or always)."""
        name = "test_exec_flaky"
        version = "1"
        consumes = ("web_file",)

        def analyze(self, unit):
            o = self.options
            out = Path(o["dir"])
            with open(out / "attempts.log", "a") as fh:
                fh.write(f"{unit.evidence.artifact_id} {worker_id().rsplit(':', 1)[1]}\\n")
            time.sleep(o.get("sleep", 0))
            if o.get("kill") and unit.logical_path.endswith(o["kill"]):
                marker = out / ("died-" + unit.evidence.artifact_id)
                if o.get("always") or not marker.exists():
                    marker.touch()
                    # units run in a child of their dask worker (or pool worker): take that worker down
                    os.kill(int(worker_id().rsplit(":", 1)[1]), signal.SIGKILL)
                    os._exit(3)
            yield unit.finding(rule_id="T-EX", rule_title="flaky", severity="low", title="seen",
                               message=unit.logical_path, location=unit.logical_path)
''')
TIMING = ("started", "finished", "duration_s", "worker", "run_id")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compromised Exchange volume collected into a case, copied by each test."""
    root = tmp_path_factory.mktemp("exec-template")
    vol = build_volume(root / "vol", VolumeSpec(install_path=r"C:\Apps\Exchange\V15"))
    case = Case.create_or_open(root / "case", examiner="tester", case_id="CASE-EXEC")
    collect_volume(case, open_source_path(str(vol)), host=None)
    case.close()
    (root / "test_exec_plugin.py").write_text(PLUGIN)
    return root


def _copy(template: Path, dest: Path) -> Case:
    shutil.copytree(template / "case", dest)
    return Case.open(dest)


@pytest.fixture
def plugin(template: Path) -> str:
    return str(template / "test_exec_plugin.py")


@pytest.fixture(scope="module")
def cluster() -> Iterator[DaskExecutor]:
    """One LocalCluster of 2 single-threaded worker processes for the module."""
    try:
        with socket.socket() as s:  # loopback must be up
            s.bind(("127.0.0.1", 0))
        ex = DaskExecutor(local_workers=2, timeout=60)
    except (OSError, UsageError) as exc:
        pytest.skip(f"no local dask cluster on loopback: {exc}")
    try:
        yield ex
    finally:
        ex.close()


def _web(case: Case) -> list[Any]:
    return case.evidence(kinds={"web_file"})


def _records(case: Case) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for _, rec in unit_records(case.path):  # single and batch records
        out[(rec["analyzer"], rec["evidence_id"])] = rec
    return out


def _strip(recs: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {k: {f: v for f, v in r.items() if f not in TIMING} for k, r in recs.items()}


def _attempts(folder: Path) -> list[tuple[str, int]]:
    lines = (folder / "attempts.log").read_text().split()
    return [(lines[i], int(lines[i + 1])) for i in range(0, len(lines), 2)]


def _last_run(case: Case) -> dict[str, Any]:
    return json.loads(max((case.path / "runs").glob("run-*.json"), key=lambda p: p.stat().st_mtime_ns).read_text())


def test_dask_findings_equal_the_local_pools(template: Path, tmp_path: Path, cluster: DaskExecutor) -> None:
    local, remote = _copy(template, tmp_path / "local"), _copy(template, tmp_path / "dask")
    want = analyze_case(local, jobs=2)
    got = analyze_case(remote, executor=cluster)
    ref = load_findings(local).sort_values("finding_id", ignore_index=True)
    assert want.errors == [] and want.planned >= 44 and want.findings == len(ref) >= 41
    assert (got.planned, got.reused, got.findings, got.statuses) == (want.planned, 0, want.findings, want.statuses)
    pd.testing.assert_frame_equal(load_findings(remote).sort_values("finding_id", ignore_index=True), ref)
    # per artifact the same records; the local pool ran small files in batches (their findings file is the batch's)
    layout = ("result_path", "result_sha256")
    assert {k: {f: v for f, v in r.items() if f not in layout} for k, r in _strip(_records(remote)).items()} == {
        k: {f: v for f, v in r.items() if f not in layout} for k, r in _strip(_records(local)).items()
    }
    # who ran what: the run record names the executor and, per unit, a dask worker process
    run = _last_run(remote)
    assert run["executor"]["kind"] == "dask" and run["executor"]["workers"] == 2
    assert run["executor"]["address"].startswith("tcp://127.0.0.1:")
    assert run["executor"]["allowed_failures"] == 2
    procs = set(run["executor"]["worker_processes"])
    assert len(run["units"]) == got.planned and {u["worker"] for u in run["units"]} <= procs
    assert {r["worker"] for r in _records(remote).values()} <= procs
    assert {r["run_id"] for r in _records(remote).values()} == {got.run_id}
    event = [json.loads(line) for line in (remote.path / "custody.jsonl").read_text().splitlines()][-1]
    assert event["action"] == "analyze"
    assert event["details"]["executor"] == {k: run["executor"][k] for k in ("kind", "address", "workers")}
    assert sum(event["details"]["units_by_worker"].values()) == got.planned
    assert _last_run(local)["executor"] == {
        "kind": "local",
        "address": "",
        "workers": 2,
        "isolated": True,
        "unit_time_limit_s": 3600.0,
        "unit_memory_limit_bytes": 8 << 30,
    }
    assert str(os.getpid()) not in {r["worker"].rsplit(":", 1)[1] for r in _records(local).values()}
    # resume: nothing left to do
    again = analyze_case(remote, executor=cluster)
    assert (again.reused, dict(again.statuses)) == (got.planned, {})
    # the workers only read the evidence: every hash and the custody chain still verify
    rep = verify_case(Case.open(remote.path))
    assert rep.ok and rep.problems == [] and rep.artifacts_checked == len(remote.evidence())


def test_several_cases_share_one_cluster(template: Path, tmp_path: Path, cluster: DaskExecutor) -> None:
    fleet = [_copy(template, tmp_path / f"host{i}") for i in range(3)]
    seen: list[tuple[int, int]] = []
    got = analyze_cases(
        fleet, executor=cluster, only=("webshell_locations",), on_progress=lambda d, n: seen.append((d, n))
    )
    assert list(got) == [str(c.path) for c in fleet]
    assert seen == [(i, 27) for i in range(1, 28)]  # progress streams over all cases
    workers: set[str] = set()
    for case in fleet:
        s = got[str(case.path)]
        assert (s.planned, s.findings, s.errors) == (9, 5, [])
        run = _last_run(case)
        assert run["run_id"] == s.run_id and len(run["units"]) == 9
        workers |= {u["worker"] for u in run["units"]}
        assert set(load_findings(case)["rule_id"]) == {
            "TRIAGE-WEB-001",
            "TRIAGE-SUS-001",
            "TRIAGE-SUS-002",
            "TRIAGE-SUS-003",
            "TRIAGE-SUS-004",
        }
    assert len({s.run_id for s in got.values()}) == 3
    assert len(workers) == 2  # both workers took units


def test_a_killed_worker_loses_no_finished_unit(template: Path, tmp_path: Path, cluster: DaskExecutor) -> None:
    case = _copy(template, tmp_path / "case")
    plugin = str(template / "test_exec_plugin.py")
    web = _web(case)
    victim = web[-1]  # planned last: the worker it kills has finished other units before
    work = tmp_path / "work"
    work.mkdir()
    opts = {"test_exec_flaky": {"dir": str(work), "sleep": 0.1, "kill": victim.relpath.rsplit("/", 1)[1]}}
    s = analyze_case(case, executor=cluster, only=("test_exec_flaky",), plugins=(plugin,), options=opts)
    assert (s.planned, s.errors, dict(s.statuses)) == (len(web), [], {"success": len(web)})
    attempts = _attempts(work)
    dead_pid = next(pid for ev, pid in attempts if ev == victim.artifact_id)
    assert [ev for ev, _ in attempts].count(victim.artifact_id) == 2  # died once, then ran elsewhere
    recs = {k[1]: r for k, r in _records(case).items()}
    assert recs[victim.artifact_id]["status"] == "success"
    assert not recs[victim.artifact_id]["worker"].endswith(f":{dead_pid}")
    # units the dying worker had finished are kept as it wrote them: run once, by that process
    kept = [ev for ev, r in recs.items() if r["worker"].endswith(f":{dead_pid}")]
    assert kept, "the killed worker had finished no unit before dying"
    assert all([e for e, _ in attempts].count(ev) == 1 for ev in kept)
    assert len(load_findings(case)) == len(web)
    again = analyze_case(case, executor=cluster, only=("test_exec_flaky",), plugins=(plugin,), options=opts)
    assert (again.reused, dict(again.statuses)) == (len(web), {})


def test_a_unit_that_always_kills_its_worker_is_an_error(template: Path, tmp_path: Path, cluster: DaskExecutor) -> None:
    case = _copy(template, tmp_path / "case")
    plugin = str(template / "test_exec_plugin.py")
    web = _web(case)
    victim = web[2]
    work = tmp_path / "work"
    work.mkdir()
    opts = {"test_exec_flaky": {"dir": str(work), "kill": victim.relpath.rsplit("/", 1)[1], "always": True}}
    s = analyze_case(case, executor=cluster, only=("test_exec_flaky",), plugins=(plugin,), options=opts)
    assert dict(s.statuses) == {"success": len(web) - 1, "error": 1}
    assert [e["evidence_id"] for e in s.errors] == [victim.artifact_id]
    assert s.errors[0]["message"].startswith("the worker process died while running this unit (dask: 3 workers")
    # allowed-failures 2: the third death ends it
    assert [ev for ev, _ in _attempts(work)].count(victim.artifact_id) == 3
    rec = _records(case)[("test_exec_flaky", victim.artifact_id)]
    assert (rec["status"], rec["result_path"], rec["findings"]) == ("error", "", 0)
    assert len(load_findings(case)) == len(web) - 1


def test_preflight_needs_the_case_at_the_same_path(template: Path, tmp_path: Path, cluster: DaskExecutor) -> None:
    case = _copy(template, tmp_path / "case")
    sha = hashlib.sha256((case.path / "case.json").read_bytes()).hexdigest()
    cluster.preflight([(str(case.path), sha)])
    with pytest.raises(UsageError, match=r"same path .*\n.*cannot read .*/elsewhere/case.json"):
        cluster.preflight([(str(case.path), sha), (str(tmp_path / "elsewhere"), sha)])
    with pytest.raises(UsageError, match="differs from the client's copy"):
        cluster.preflight([(str(case.path), "0" * 64)])


SCHEDULER = (sys.executable, "-m", "distributed.cli.dask_scheduler")
WORKER = (sys.executable, "-m", "distributed.cli.dask_worker")


@contextmanager
def external_cluster(folder: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1: the address, and a way to add a worker."""
    sched_file = folder / "scheduler.json"
    log = open(folder / "dask.log", "wb")  # noqa: SIM115 - closed below
    procs = [
        subprocess.Popen(
            [*SCHEDULER, "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
            stdout=log,
            stderr=log,
        )
    ]

    def add_worker() -> None:
        procs.append(
            subprocess.Popen(
                [*WORKER, address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--death-timeout", "10"],
                stdout=log,
                stderr=log,
            )
        )

    try:
        deadline = time.monotonic() + 30
        while not sched_file.exists() and time.monotonic() < deadline and procs[0].poll() is None:
            time.sleep(0.05)
        if not sched_file.exists():
            pytest.skip(f"dask scheduler did not start: {(folder / 'dask.log').read_text()[-500:]}")
        time.sleep(0.1)  # the file is written before it is complete on some versions
        address = json.loads(sched_file.read_text())["address"]
        add_worker()
        yield address, add_worker
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()


def test_cli_on_an_external_scheduler(
    template: Path, tmp_path: Path, plugin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    case = _copy(template, tmp_path / "case")
    work = tmp_path / "work"
    work.mkdir()
    n = len(_web(case))
    flaky: dict[str, Any] = {
        "only": ("test_exec_flaky",),
        "plugins": (plugin,),
        "options": {"test_exec_flaky": {"dir": str(work), "sleep": 0.1}},
    }
    with external_cluster(tmp_path) as (address, add_worker):
        code = main(["analyze", str(case.path), "--scheduler", address, "--only", "webshell_locations", "--json", "-q"])
        out = capsys.readouterr()
        assert code == 0, out.err
        summary = json.loads(out.out)
        assert (summary["planned"], summary["findings"], summary["errors"]) == (9, 5, [])
        run = _last_run(case)
        assert run["executor"]["kind"] == "dask" and run["executor"]["address"] == address
        assert run["executor"]["workers"] == 1 and run["executor"]["local_cluster"] is False
        assert run["executor"]["allowed_failures"] == 3  # the scheduler's own (dask default)
        assert len({u["worker"] for u in run["units"]}) == 1

        # the only worker goes away mid-run: after no_workers_timeout the rest are errors, not a hang
        with DaskExecutor(address, no_workers_timeout=2) as ex:
            (worker_pid,) = ex.client.run(os.getpid).values()
            s = analyze_case(case, executor=ex, on_progress=lambda d, _: d == 2 and os.kill(worker_pid, 9), **flaky)
        assert (dict(s.statuses), len(s.errors)) == ({"success": 2, "error": n - 2}, n - 2)
        assert all(
            e["message"].startswith("the dask cluster failed before this unit finished (no dask worker for 2 s)")
            for e in s.errors
        )

        # the scheduler goes away mid-run: unfinished units are errors that say so, finished ones stay
        add_worker()
        with DaskExecutor(address) as ex:
            scheduler_pid = ex.client.run_on_scheduler(os.getpid)
            s = analyze_case(case, executor=ex, on_progress=lambda d, _: d == 2 and os.kill(scheduler_pid, 9), **flaky)
    assert s.reused == 2
    finished = 2 + s.statuses["success"]
    assert 4 <= finished < n and s.statuses["error"] == n - finished
    assert all("the dask cluster failed before this unit finished" in e["message"] for e in s.errors)
    assert all("rerun the same command to resume" in e["message"] for e in s.errors)
    resumed = analyze_case(case, executor=LocalPoolExecutor(1), **flaky)
    assert (resumed.reused, dict(resumed.statuses)) == (finished, {"success": n - finished})
    assert len(load_findings(case).query("analyzer == 'test_exec_flaky'")) == n


def test_records_of_older_versions_are_reused_and_load(template: Path, tmp_path: Path) -> None:
    """Run records written before ``worker``/``run_id`` existed still resume and load in the report."""
    case = _copy(template, tmp_path / "case")
    first = analyze_case(case, only=("webshell_locations",), batching=BatchLimits(count=1))  # a unit per file
    paths = sorted((case.path / "results").glob("*/*.run.json"))
    for p in paths:
        rec = json.loads(p.read_text())
        assert rec["worker"].startswith(socket.gethostname() + ":") and rec["run_id"] == first.run_id
        del rec["worker"], rec["run_id"]
        p.write_text(json.dumps(rec))
    again = analyze_case(case, only=("webshell_locations",))
    assert (again.reused, dict(again.statuses)) == (9, {})
    runs = load_runs(case)
    assert len(runs) == 9 and set(runs["status"]) == {"success", "no_findings"}
    # a mix: the first record (sorted by path) is old, a later one new; the worker column still loads
    rec = json.loads(paths[-1].read_text())
    rec["worker"] = "node7:4242"
    paths[-1].write_text(json.dumps(rec))
    runs = load_runs(case)
    assert list(runs["worker"].fillna("")) == [""] * 8 + ["node7:4242"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cluster", "local:0"], "not local:N with N >= 1"),
        (["--cluster", "4"], "not local:N"),
        (["--scheduler", "localhost:8786"], "not a scheduler address like tcp://HOST:PORT"),
        (["--scheduler", "tcp://host:99999"], "port 1-65535"),
        (["--scheduler", "tcp://127.0.0.1:8786", "--cluster", "local:2"], "not allowed with argument"),
    ],
)
def test_cli_rejects_bad_executor_options(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = main(["analyze", str(template / "case"), *args, "-q"])
    assert code == 2
    assert message in capsys.readouterr().err


def test_executor_helpers() -> None:
    assert parse_cluster(" local:3 ") == 3
    assert parse_scheduler("tcp://10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    assert parse_scheduler("tls://[::1]:8786") == "tls://[::1]:8786"
    assert isinstance(open_executor(jobs=3), LocalPoolExecutor) and open_executor(jobs=0).jobs == 1
    with pytest.raises(UsageError, match="mutually exclusive"):
        open_executor(scheduler="tcp://a:1", cluster="local:1")
    with pytest.raises(UsageError, match=r"cannot reach the dask scheduler at tcp://127\.0\.0\.1:9"):
        DaskExecutor("tcp://127.0.0.1:9", timeout=1)


def test_dask_units_run_bounded_in_a_child(template: Path, tmp_path: Path, cluster: DaskExecutor) -> None:
    from triage.executors import UnitLimits

    case = _copy(template, tmp_path / "case")
    plugin = str(template / "test_exec_plugin.py")
    web = _web(case)
    work = tmp_path / "work"
    work.mkdir()
    saved, cluster.limits = cluster.limits, UnitLimits(time_s=1.0)
    try:
        t0 = time.monotonic()
        opts = {"test_exec_flaky": {"dir": str(work), "sleep": 30}}
        s = analyze_case(case, executor=cluster, only=("test_exec_flaky",), plugins=(plugin,), options=opts)
        assert time.monotonic() - t0 < 30
    finally:
        cluster.limits = saved
    assert dict(s.statuses) == {"error": len(web)}
    assert {e["message"] for e in s.errors} == {"exceeded the 1 s time limit"}
    recs = _records(case)
    procs = {f"{w['host']}:{w['pid']}" for w in cluster._workers.values()}
    assert {r["worker"] for r in recs.values()} <= procs  # the dask worker whose child ran the unit
    assert _last_run(case)["executor"]["unit_time_limit_s"] == 1.0
