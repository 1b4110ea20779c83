from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from triage.case import Case
from triage.errors import UsageError
from triage.executors import LocalPoolExecutor, UnitLimits, parse_size, resolve_limits
from triage.report import load_findings
from triage.results import unit_record, unit_records
from triage.runner import BatchLimits, analyze_case
from triage.testing.volume import VolumeSpec, build_volume

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
    run = unit_record(case.path, "test_exploding", aspx[0].artifact_id)  # a row of its batch
    assert run is not None
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
    # only whole batches were written: the artifacts of the batch in flight are not recorded, those before are
    done = [rec for _, rec in unit_records(case.path, ["test_marker"])]
    assert 0 < len(done) <= 3 and {r["status"] for r in done} == {"success"}
    assert not list((case.path / "results").rglob(".*tmp-*"))
    resumed = _triage("analyze", str(case.path), "--plugin", plugin, "--only", "test_marker", "-j", "1", "--json", "-q")
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["reused"] == len(done) and out["statuses"] == {"success": _web_count(case) - len(done)}
    full = _triage("analyze", str(reference), "--plugin", plugin, "--only", "test_marker", "-q")
    assert full.returncode == 0
    got = load_findings(Case.open(case.path))
    want = load_findings(Case.open(reference))
    assert len(got) == _web_count(case)
    pd.testing.assert_series_equal(
        got["finding_id"].sort_values(ignore_index=True), want["finding_id"].sort_values(ignore_index=True)
    )


# -- every unit bounded and isolated ------------------------------------------------------------------------
HOSTILE = textwrap.dedent('''
    from __future__ import annotations
    import ctypes, faulthandler, os, time
    from pathlib import Path
    from triage.registry import Analyzer, register

    @register
    class Hostile(Analyzer):
        """Misbehaves on the web shell Dk2jQ8ab.aspx as told by its options; one finding on every other file."""
        name = "test_hostile"
        version = "1"
        consumes = ("web_file",)

        def analyze(self, unit):
            o = dict(self.options)
            for key in ("how", "started", "sleep_after"):  # the command-line tests set these in the environment
                o.setdefault(key, os.environ.get("HOSTILE_" + key.upper()))
            if o.get("started"):
                with open(o["started"], "a") as fh:
                    fh.write(unit.evidence.artifact_id + "\\n")
                if o.get("sleep_after") and len(Path(o["started"]).read_text().split()) > int(o["sleep_after"]):
                    time.sleep(60)
            if unit.logical_path.endswith("Dk2jQ8ab.aspx"):
                how = o.get("how")
                if how == "segfault":
                    # pytest's faulthandler, inherited by the forked worker, would print the crash's traceback
                    # to the terminal: the crash is the expected outcome here, the run record reports it
                    faulthandler.disable()
                    ctypes.string_at(0)
                elif how == "exit":
                    raise SystemExit(3)
                elif how == "interrupt":
                    raise KeyboardInterrupt
                elif how == "sleep":
                    time.sleep(120)
                elif how == "hog":
                    hog = [bytearray(16 << 20) for _ in range(64)]  # 1 GiB in 16 MiB steps
                    del hog
            yield unit.finding(rule_id="T-H", rule_title="hostile", severity="low", title="seen",
                               message=unit.logical_path, location=unit.logical_path)
''')


@pytest.fixture
def hostile(tmp_path: Path) -> str:
    path = tmp_path / "hostile_plugin.py"
    path.write_text(HOSTILE)
    return str(path)


def _hostile(case: Case, plugin: str, jobs: int = 1, limits: UnitLimits | None = None, **options: object):
    return analyze_case(
        case, only=("test_hostile",), plugins=(plugin,), jobs=jobs, options={"test_hostile": options}, limits=limits
    )


def _shell_id(case: Case) -> str:
    return next(r.artifact_id for r in case.evidence(kinds={"web_file"}) if r.relpath.endswith("Dk2jQ8ab.aspx"))


@pytest.mark.parametrize(
    ("how", "jobs", "message"),
    [
        ("segfault", 1, "killed by signal 11 (SIGSEGV) (2 times)"),
        ("exit", 1, "SystemExit: 3"),
        ("exit", 2, "SystemExit: 3"),
        ("interrupt", 1, "KeyboardInterrupt"),
    ],
)
def test_a_crashing_unit_costs_only_itself(case: Case, hostile: str, how: str, jobs: int, message: str) -> None:
    s = _hostile(case, hostile, jobs=jobs, how=how)
    n = _web_count(case)
    assert (s.planned, s.statuses["success"], s.statuses["error"]) == (n, n - 1, 1)
    assert s.errors[0]["evidence_id"] == _shell_id(case) and message in s.errors[0]["message"]
    assert len(load_findings(case)) == n - 1
    run = json.loads(next((case.path / "runs").glob("run-*.json")).read_text())
    assert run["executor"]["isolated"] is True and run["statuses"] == {"success": n - 1, "error": 1}
    # leftovers of the killed workers are gone; a rerun redoes only the failed unit
    assert not list((case.path / "results").rglob(".*tmp-*"))
    again = _hostile(case, hostile, jobs=jobs, how=how)
    assert (again.reused, again.statuses["error"]) == (n - 1, 1)


def test_a_unit_past_its_time_limit_is_killed(case: Case, hostile: str) -> None:
    t0 = time.monotonic()
    s = _hostile(case, hostile, jobs=2, limits=UnitLimits(time_s=1.0), how="sleep")
    assert time.monotonic() - t0 < 20
    assert s.statuses["error"] == 1 and s.statuses["success"] == _web_count(case) - 1
    assert s.errors[0]["message"] == "exceeded the 1 s time limit"
    run = json.loads(next((case.path / "runs").glob("run-*.json")).read_text())
    assert run["limits"]["unit_time_limit_s"] == 1.0 and run["executor"]["unit_time_limit_s"] == 1.0


def test_a_unit_past_its_memory_limit_ends_as_an_error(case: Case, hostile: str) -> None:
    s = _hostile(case, hostile, limits=UnitLimits(memory_bytes=128 << 20), how="hog")
    assert s.statuses["error"] == 1 and s.statuses["success"] == _web_count(case) - 1
    assert s.errors[0]["message"].startswith("exceeded memory limit (128 MiB per unit)")
    # within the bound, the same unit runs
    fine = _hostile(case, hostile, limits=UnitLimits(memory_bytes=4 << 30), how="hog")
    assert (fine.reused, dict(fine.statuses)) == (_web_count(case) - 1, {"success": 1})


def test_memory_limit_sizes_and_jobs_are_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert parse_size("8GiB") == 8 << 30 and parse_size("512M") == 512 << 20 and parse_size(1000) == 1000
    with pytest.raises(UsageError):
        parse_size("lots")
    top = (os.cpu_count() or 1) * 4
    assert LocalPoolExecutor(100_000).jobs == top and LocalPoolExecutor(0).jobs == 1
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert resolve_limits() == UnitLimits()
    (tmp_path / "triage").mkdir()
    (tmp_path / "triage" / "config.toml").write_text('unit_time_limit = 120\nunit_memory_limit = "2GiB"\n')
    got = resolve_limits()
    assert (got.time_s, got.memory_bytes) == (120.0, 2 << 30)
    assert got.time_for(21600) == 120.0  # an explicit limit applies to every analyzer
    assert resolve_limits(30, "1G").as_dict() == {"unit_time_limit_s": 30.0, "unit_memory_limit_bytes": 1 << 30}
    assert UnitLimits().time_for(21600) == 21600  # a default is raised by an analyzer's declaration


def test_cli_limits_jobs_and_plugin(case: Case, hostile: str, capsys: pytest.CaptureFixture[str]) -> None:
    from triage.cli import main

    assert main(["analyze", str(case.path), "--plugin", "/nonexistent/plugin.py", "-q"]) == 2
    assert "--plugin: no such file" in capsys.readouterr().err
    code = main(
        [
            "analyze",
            str(case.path),
            "--plugin",
            hostile,
            "--only",
            "test_hostile",
            "-q",
            "--json",
            "--jobs",
            "100000",
            "--unit-time-limit",
            "30",
            "--unit-memory-limit",
            "1GiB",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0 and "using" in err
    summary = json.loads(out)
    assert summary["limits"] == {"unit_time_limit_s": 30.0, "unit_memory_limit_bytes": 1 << 30}
    run = json.loads((case.path / "runs" / f"{summary['run_id']}.json").read_text())
    assert run["executor"]["workers"] == (os.cpu_count() or 1) * 4
    assert main(["analyze", str(case.path), "--unit-memory-limit", "much", "-q"]) == 2


def test_ctrl_c_stops_at_once_and_the_rerun_resumes(case: Case, hostile: str, tmp_path: Path) -> None:
    started = tmp_path / "started"
    cmd = [sys.executable, "-m", "triage", "analyze", str(case.path), "--plugin", hostile, "--only", "test_hostile"]
    # three units finish, then every unit sleeps 60 s
    env = {**os.environ, "HOSTILE_STARTED": str(started), "HOSTILE_SLEEP_AFTER": "3"}
    # Ctrl-C as a terminal delivers it: an ignored SIGINT inherited from the test process (some library in the
    # same pytest worker may have set SIG_IGN) would survive exec and make Python ignore it too
    proc = subprocess.Popen(
        [*cmd, "-j", "2", "-q"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if started.exists() and len(started.read_text().split()) >= 5:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 130 and took < 5, err
    assert "interrupted; rerun the same command to resume" in err and "Traceback" not in err
    assert _processes_mentioning(str(case.path), wait=5.0) == []
    n = _web_count(case)
    assert len(list((case.path / "results" / "test_hostile").glob("*.run.json"))) == 3  # queued units did not run
    run = json.loads(next((case.path / "runs").glob("run-*.json")).read_text())
    assert run["interrupted"] is True and run["statuses"] == {"success": 3}
    events = [json.loads(line) for line in (case.path / "custody.jsonl").read_text().splitlines()]
    assert [e for e in events if e.get("action") == "analyze"][-1]["details"]["interrupted"] is True
    resumed = _triage("analyze", str(case.path), "--plugin", hostile, "--only", "test_hostile", "-q", "--json")
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert (out["reused"], out["statuses"]) == (3, {"success": n - 3})


def test_crafted_minidump_ends_quickly(tmp_path: Path) -> None:
    import struct

    # MDMP header, one directory entry: a module list whose count reads 0xFFFFFFFF; 48 bytes in all
    crafted = struct.pack("<4sIIIIIQ", b"MDMP", 0xA793, 1, 32, 0, 0x60000000, 0)
    crafted += struct.pack("<III", 4, 4, 44) + struct.pack("<I", 0xFFFFFFFF)
    assert len(crafted) == 48
    src = tmp_path / "Windows" / "Temp"
    src.mkdir(parents=True)
    (src / "lsass.dmp").write_bytes(crafted)
    r = _triage("collect", str(src / "lsass.dmp"), "--case", str(tmp_path / "case"), "--host", "H1", "-q")
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    r = _triage("analyze", str(tmp_path / "case"), "--only", "memory", "-q", "--json", "--unit-time-limit", "60")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 40
    assert json.loads(r.stdout)["statuses"] == {"success": 1}
    (run,) = (tmp_path / "case" / "results" / "memory").glob("*.run.json")
    assert any("claims 4294967295 entries" in w for w in json.loads(run.read_text())["warnings"])
    df = load_findings(Case.open(tmp_path / "case"))
    row = df[df["rule_id"] == "MEM-MINIDUMP-FILE"].iloc[0]
    assert "no readable module list" in row["message"]
    assert "claims 4294967295 entries" in row["attributes"]


def test_a_replaced_or_deleted_result_is_redone(case: Case, plugin: str) -> None:
    n = _web_count(case)
    analyze_case(case, only=("test_marker",), plugins=(plugin,), batching=BatchLimits(count=1))  # single units
    a, b, c = sorted((case.path / "results" / "test_marker").glob("*.parquet"))[:3]
    want = pd.read_parquet(a)
    os.chmod(a, 0o644)
    shutil.copyfile(b, a)  # a valid result file, but not the one recorded for this unit
    c.unlink()
    again = analyze_case(case, only=("test_marker",), plugins=(plugin,), batching=BatchLimits(count=1))
    assert (again.reused, dict(again.statuses)) == (n - 2, {"success": 2})
    pd.testing.assert_frame_equal(pd.read_parquet(a), want)
    assert c.exists()
    events = [json.loads(line) for line in (case.path / "custody.jsonl").read_text().splitlines()]
    redo = {
        e["details"]["result_path"].rsplit("/", 1)[1]: e["details"]["problem"]
        for e in events
        if e["action"] == "result_redo"
    }
    assert redo[c.name] == "deleted" and redo[a.name].startswith("sha256 ")


def test_an_undecodable_file_name_goes_through_run_and_report(tmp_path: Path) -> None:
    vol = build_volume(tmp_path / "vol", VolumeSpec())
    name = os.fsdecode(b"shell\xff.aspx")  # as a non-UTF-8 mount shows an NTFS name
    (vol / "inetpub" / "wwwroot" / "aspnet_client" / name).write_bytes(
        b'<%@ Page Language="C#" %><% eval(Request["x"]) %>'
    )
    r = _triage("run", str(vol), "--case", str(tmp_path / "case"), "-q", "-j", "2", "--only", "webshell_locations")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    report = tmp_path / "case" / "report"
    rows = [
        row for row in csv.DictReader((report / "findings.csv").open(encoding="utf-8")) if "shell%FF" in row["location"]
    ]
    assert {row["rule_id"] for row in rows} >= {"TRIAGE-WEB-001"}
    attrs = json.loads(next(row["attributes"] for row in rows if row["rule_id"] == "TRIAGE-WEB-001"))
    assert attrs["source_path"].endswith("shell\\xff.aspx")  # shown escaped
    assert bytes.fromhex(attrs["raw_hex"]["attributes.source_path"]).endswith(b"shell\xff.aspx")  # kept raw
    html = (report / "report.html").read_text(encoding="utf-8")
    assert "shell\\\\xff.aspx" in html or "shell\\xff.aspx" in html
    assert "shell\\\\xff.aspx" in (report / "findings.jsonl").read_text(encoding="utf-8")  # JSON-escaped
    runs = [json.loads(p.read_text()) for p in (tmp_path / "case" / "runs").glob("run-*.json")]
    assert runs and all(run["statuses"].get("error", 0) == 0 for run in runs)
