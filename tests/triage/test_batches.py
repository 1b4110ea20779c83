"""Batch units: small artifacts of one analyzer run together, one result file per batch, a row per artifact.

A plugin analyzer over a web root of small pages finds "hit" pages, raises on "boom", kills its worker on "die"
and sleeps on "slow"; every attempt is logged, so the tests see what ran again and what did not.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.case import Case
from triage.executors import LocalPoolExecutor, UnitLimits
from triage.report import load_findings, load_runs
from triage.results import BATCH_SUFFIX, UNIT_SUFFIX, unit_record, unit_records
from triage.runner import BatchLimits, _batches, analyze_case
from triage.testing.volume import VolumeSpec, build_volume
from triage.verify import verify_case

PLUGIN = textwrap.dedent('''
    from __future__ import annotations
    import os, time
    from pathlib import Path
    from triage.registry import Analyzer, register

    @register
    class Probe(Analyzer):
        """A finding on 'hit' pages; raises on 'boom', kills its worker on 'die', sleeps on 'slow'."""
        name = "test_batch_probe"
        version = "1"
        consumes = ("web_file",)

        def analyze(self, unit):
            name = unit.logical_path.rsplit("/", 1)[-1]
            with open(Path(self.options["dir"]) / "attempts.log", "a") as fh:
                fh.write(name + "\\n")
            if "slow" in name:
                time.sleep(float(self.options.get("slow", 0)))
            if "die" in name and self.options.get("die"):
                os._exit(3)
            if "hit" in name:
                yield unit.finding(rule_id="T-B", rule_title="probe", severity="low", title="hit",
                                   message=name, location=unit.logical_path)
            if "boom" in name:
                raise RuntimeError("probe blew up on " + name)
''')
ONE = BatchLimits(count=24, per_worker=1)  # the whole web root in one batch
WEB = "inetpub/wwwroot/aspnet_client/app"
TAGS = ["hit", "plain", "hit", "boom", "die", "plain"] * 4
TAGS[5] = TAGS[17] = "slow"
NAMES = [f"p{i:02d}-{tag}.aspx" for i, tag in enumerate(TAGS)]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A case of a volume with 24 small pages under the web root (and the plugin beside it)."""
    root = tmp_path_factory.mktemp("batch-template")
    files = {f"{WEB}/{n}": b"<%@ Page %>" + n.encode() for n in NAMES}
    vol = build_volume(root / "vol", VolumeSpec(compromised=False, extra_files=files))
    case = Case.create_or_open(root / "case", examiner="tester", case_id="CASE-BATCH")
    collect_volume(case, open_source_path(str(vol)), host=None)
    case.close()
    (root / "plugin.py").write_text(PLUGIN)
    return root


@pytest.fixture
def case(template: Path, tmp_path: Path) -> Case:
    shutil.copytree(template / "case", tmp_path / "case")
    return Case.open(tmp_path / "case")


def _run(case: Case, template: Path, tmp_path: Path, **kw: Any) -> Any:
    opts = {"dir": str(tmp_path), **kw.pop("opts", {})}
    return analyze_case(
        case,
        only=("test_batch_probe",),
        plugins=(str(template / "plugin.py"),),
        options={"test_batch_probe": opts},
        **kw,
    )


def _attempts(tmp_path: Path) -> list[str]:
    log = tmp_path / "attempts.log"
    return log.read_text().split() if log.exists() else []


def _files(case: Case) -> list[str]:
    return sorted(p.name for p in (case.path / "results" / "test_batch_probe").iterdir())


def _web(case: Case) -> dict[str, str]:
    """evidence id -> page name of the web files."""
    return {r.artifact_id: r.relpath.rsplit("/", 1)[-1] for r in case.evidence(kinds={"web_file"})}


def test_small_artifacts_share_one_result_file_per_batch(case: Case, template: Path, tmp_path: Path) -> None:
    web = _web(case)
    n = len(web)
    s = _run(case, template, tmp_path, jobs=2, batching=BatchLimits(count=8, per_worker=1))
    assert (s.planned, s.reused) == (n, 0)
    hits = sum("hit" in v for v in web.values())
    booms = sum("boom" in v for v in web.values())
    assert dict(s.statuses) == {"success": hits, "error": booms, "no_findings": n - hits - booms}
    assert s.findings == hits == 8
    files = _files(case)
    records = [f for f in files if f.endswith(BATCH_SUFFIX)]
    # every page of the web root is under the limits: batches of at most 8, no single-unit files
    assert len(records) == -(-n // 8) and not [f for f in files if f.endswith(UNIT_SUFFIX)]
    parquets = [f for f in files if f.endswith(".parquet")]
    assert 0 < len(parquets) <= len(records) and len(files) == len(records) + len(parquets)
    rows = [rec for _, rec in unit_records(case.path, ["test_batch_probe"])]
    assert sorted(r["evidence_id"] for r in rows) == sorted(web)  # one row per artifact, none twice
    for r in rows:
        name = web[r["evidence_id"]]
        assert r["evidence_sha256"] == next(e.sha256 for e in case.evidence() if e.artifact_id == r["evidence_id"])
        assert r["findings"] == ("hit" in name) and len(r["fingerprint"]) == 32 and r["run_id"] == s.run_id
        if "boom" in name:
            assert r["status"] == "error" and "RuntimeError: probe blew up on" in r["message"]
            assert "Traceback" in r["traceback"]
        # a row with findings names its batch's findings file and hash; the others name none
        assert bool(r["result_path"]) == bool(r["findings"]) and bool(r["result_sha256"]) == bool(r["findings"])
    df = load_findings(case)
    assert sorted(df["message"]) == sorted(v for v in web.values() if "hit" in v)
    runs = load_runs(case)
    assert len(runs) == n and set(runs["evidence_id"]) == set(web)
    rep = verify_case(case)
    assert rep.ok and rep.problems == [], rep.problems
    # the run record accounts for every result file, with the hash the batch record gives for its parquet
    run = json.loads((case.path / "runs" / f"{s.run_id}.json").read_text())
    assert sorted(k.rsplit("/", 1)[1] for k in run["results"]) == files
    assert len(run["units"]) == n
    again = _run(case, template, tmp_path, jobs=2, batching=BatchLimits(count=8, per_worker=1))
    assert (again.reused, dict(again.statuses)) == (n - booms, {"error": booms})  # only errors run again
    assert sorted(r["evidence_id"] for _, r in unit_records(case.path, ["test_batch_probe"])) == sorted(web)
    assert verify_case(case).problems == []


def test_a_batch_whose_worker_dies_costs_only_the_artifact_in_flight(
    case: Case, template: Path, tmp_path: Path
) -> None:
    web = _web(case)
    n = len(web)
    dies = {k for k, v in web.items() if "die" in v}
    s = _run(case, template, tmp_path, jobs=1, opts={"die": True}, batching=ONE)
    assert s.statuses["error"] == len(dies) + sum("boom" in v for v in web.values())
    died = [e for e in s.errors if e["evidence_id"] in dies]
    assert len(died) == len(dies) and all("worker process died" in e["message"] for e in died)
    assert all(e["message"].endswith("(2 times)") for e in died)  # tried once more on its own, as a single unit
    # every other page ran exactly once: rows finished before a death are kept, not run again
    attempts = _attempts(tmp_path)
    for name in web.values():
        assert attempts.count(name) == (2 if "die" in name else 1), name
    assert sorted(load_findings(case)["message"]) == sorted(v for v in web.values() if "hit" in v)
    rows = [rec for _, rec in unit_records(case.path, ["test_batch_probe"])]
    assert sorted(r["evidence_id"] for r in rows) == sorted(web) and len(rows) == n
    assert {r["status"] for r in rows if r["evidence_id"] in dies} == {"error"}
    rep = verify_case(case)
    assert rep.ok and rep.problems == [], rep.problems
    assert not list((case.path / "results").rglob(".*tmp-*"))
    # a rerun runs only the errors; force runs everything again, still one record per artifact
    again = _run(case, template, tmp_path, jobs=1, opts={"die": True}, batching=ONE)
    assert (again.reused, dict(again.statuses)) == (n - len(s.errors), {"error": len(s.errors)})
    forced = _run(case, template, tmp_path, jobs=2, force=True, batching=ONE)
    assert forced.reused == 0 and sum(forced.statuses.values()) == n
    rows = [rec for _, rec in unit_records(case.path, ["test_batch_probe"])]
    assert sorted(r["evidence_id"] for r in rows) == sorted(web) and {r["run_id"] for r in rows} == {forced.run_id}
    assert verify_case(case).problems == []


def test_the_time_limit_is_per_artifact(case: Case, template: Path, tmp_path: Path) -> None:
    web = _web(case)
    slow = {e for e, v in web.items() if "slow" in v}
    booms = sum("boom" in v for v in web.values())
    # each slow page takes 0.7 s: the batch together takes longer than the 1 s bound, no page does
    with LocalPoolExecutor(1, UnitLimits(time_s=1.0)) as ex:
        s = _run(case, template, tmp_path, executor=ex, opts={"slow": 0.7}, batching=ONE)
    assert (s.statuses["error"], len(s.errors)) == (booms, booms)
    # a page past the bound is killed and fails alone (not tried again); its batch-mates finish, each once
    (tmp_path / "attempts.log").unlink()
    with LocalPoolExecutor(1, UnitLimits(time_s=1.0)) as ex:
        s = _run(case, template, tmp_path, executor=ex, force=True, opts={"slow": 60}, batching=ONE)
    timed_out = [e for e in s.errors if e["evidence_id"] in slow]
    assert len(timed_out) == len(slow) == 2
    assert {e["message"] for e in timed_out} == {"exceeded the 1 s time limit"}
    assert sorted(_attempts(tmp_path)) == sorted(web.values())
    assert sorted(load_findings(case)["message"]) == sorted(v for v in web.values() if "hit" in v)
    assert verify_case(case).problems == []


def test_batches_are_sized_by_count_and_bytes() -> None:
    from triage.case import ManifestRow

    def row(i: int, size: int) -> ManifestRow:
        return ManifestRow(f"A{i:03d}", "web_file", "success", "H", f"p{i}", "c", "1", "", f"e/{i}", size=size)

    rows = [row(i, 1000) for i in range(100)] + [row(100, 20 << 20)] + [row(101, 5000)]
    units = _batches(rows, BatchLimits(count=30, bytes=10_000, alone_bytes=16 << 20), workers=1)
    assert [r.artifact_id for r in units[0]] == ["A100"]  # a big artifact runs alone
    assert sorted(r.artifact_id for u in units for r in u) == sorted(r.artifact_id for r in rows)
    assert all(len(u) <= 30 and sum(r.size or 0 for r in u) <= 10_000 for u in units[1:])
    assert max(len(u) for u in units) == 10  # the byte bound decided
    sizes = [sum(r.size or 0 for r in u) for u in units]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 5000  # biggest first: no straggler at the end
    # few artifacts spread over the workers: about per_worker batches each
    few = _batches(rows[:16], BatchLimits(), workers=2)
    assert [len(u) for u in few] == [2] * 8
    assert [len(u) for u in _batches(rows[:5], BatchLimits(count=1), workers=1)] == [1] * 5


def test_verify_catches_a_changed_or_missing_batch_file(case: Case, template: Path, tmp_path: Path) -> None:
    _run(case, template, tmp_path, jobs=1, batching=BatchLimits(count=8, per_worker=1))
    folder = case.path / "results" / "test_batch_probe"
    parquet = sorted(folder.glob("*.parquet"))[0]
    record = parquet.with_name(parquet.name.replace(".parquet", BATCH_SUFFIX))
    body = json.loads(record.read_text())
    os.chmod(parquet, 0o644)
    frame = pd.read_parquet(parquet)
    frame.assign(message="tampered").to_parquet(parquet, index=False)
    rep = verify_case(case)
    where = parquet.relative_to(case.path).as_posix()
    assert any(p["where"] == where and "changed" in p["problem"] for p in rep.problems), rep.problems
    # resume trusts no row whose findings are in a replaced file: exactly those artifacts run again (and the errors)
    with_findings = {u["evidence_id"] for u in body["units"] if u["findings"]}
    assert with_findings
    again = _run(case, template, tmp_path, jobs=1, batching=BatchLimits(count=8, per_worker=1))
    boom = sum("boom" in v for v in _web(case).values())
    assert sum(again.statuses.values()) == len(with_findings | {e for e, v in _web(case).items() if "boom" in v})
    assert again.statuses["error"] == boom
    assert len(load_findings(case)) == 8
    assert verify_case(case).problems == []
    # a stray file in the analyzer's folder is still a problem
    (folder / "Bffffffffffffff.parquet").write_bytes(b"x")
    assert any("no run record accounts for" in p["problem"] for p in verify_case(case).problems)


def test_single_unit_layout_still_reads(case: Case, template: Path, tmp_path: Path) -> None:
    """A case analysed unit by unit (as versions before batches did) reports, verifies and resumes the same."""
    web = _web(case)
    s = _run(case, template, tmp_path, jobs=1, batching=BatchLimits(count=1))
    files = _files(case)
    assert len([f for f in files if f.endswith(UNIT_SUFFIX)]) == len(web) and not [f for f in files if "batch" in f]
    assert len([f for f in files if f.endswith(".parquet")]) == 8  # no parquet for a unit without findings
    rec = unit_record(case.path, "test_batch_probe", sorted(web)[0])
    assert rec is not None and rec["run_id"] == s.run_id
    assert verify_case(case).problems == []
    # now batched: the artifacts that run again (the errors) leave their single files for a batch row
    again = _run(case, template, tmp_path, jobs=1, batching=BatchLimits(count=8, per_worker=1))
    booms = {e for e, v in web.items() if "boom" in v}
    assert again.reused == len(web) - len(booms)
    rows = [r for _, r in unit_records(case.path, ["test_batch_probe"])]
    assert sorted(r["evidence_id"] for r in rows) == sorted(web)
    assert all(not (case.path / "results" / "test_batch_probe" / f"{e}{UNIT_SUFFIX}").exists() for e in booms)
    assert verify_case(case).problems == []
    assert len(load_findings(case)) == 8 and len(load_runs(case)) == len(web)


def test_the_run_record_hashes_what_its_batches_wrote_without_reading_them_again(
    case: Case, template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import triage.results as results

    read: list[Path] = []
    real = results.read_records

    def counted(path: Path) -> list[dict[str, Any]]:
        read.append(path)
        return real(path)

    monkeypatch.setattr(results, "read_records", counted)
    web = _web(case)
    # a worker dies on the 'die' pages: the rows before it are written here, the rest run again (new batch ids)
    s = _run(case, template, tmp_path, jobs=2, opts={"die": True}, batching=BatchLimits(count=8, per_worker=1))
    assert sum(s.statuses.values()) == len(web)
    run = json.loads((case.path / "runs" / f"{s.run_id}.json").read_text())
    batches = [p for p in (case.path / "results" / "test_batch_probe").iterdir() if p.name.endswith(BATCH_SUFFIX)]
    assert batches and not set(batches) & set(read)  # the run's result hashes came from the bodies it held
    monkeypatch.setattr(results, "read_records", real)
    # the same as reading every record back from disk: each batch's parquet with the hash its record gives
    assert run["results"] == case.result_hashes(["test_batch_probe"])
    assert sorted(k.rsplit("/", 1)[1] for k in run["results"]) == _files(case)
    assert verify_case(case).problems == []


def test_a_forced_rerun_removes_the_old_batch_files_in_the_background(
    case: Case, template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--force: the old batch files are moved aside at once (a dot name no reader takes) and deleted by a
    background thread, waited for before the run record; a file left aside by a killed command is removed by the
    next command's recovery, with its event."""
    import triage.runner as runner

    first = _run(case, template, tmp_path, jobs=1, batching=BatchLimits(count=8, per_worker=1))
    old = sorted(p.name for p in (case.path / "results" / "test_batch_probe").glob(f"*{BATCH_SUFFIX}"))
    n = len(list(unit_records(case.path, ["test_batch_probe"])))
    assert len(old) >= 3 and n >= 24
    forced = _run(case, template, tmp_path, jobs=1, force=True, batching=BatchLimits(count=8, per_worker=1))
    names = _files(case)
    assert not set(old) & set(names) and not [n for n in names if n.startswith(".")]
    assert sorted(r["run_id"] for _, r in unit_records(case.path, ["test_batch_probe"])) == [forced.run_id] * n
    superseded = [e for e in case.custody.events() if e["action"] == "result_superseded"]
    assert sorted(Path(e["details"]["record"]).name for e in superseded) == old
    assert {e["details"]["kept"] for e in superseded} == {0} and first.run_id != forced.run_id
    assert verify_case(case).problems == []
    # a kill before the deletion: the files stay aside (never read as results) until the next command
    before = _files(case)
    monkeypatch.setattr(runner, "_delete_later", lambda paths: None)
    _run(case, template, tmp_path, jobs=1, force=True, batching=BatchLimits(count=8, per_worker=1))
    aside = [n for n in _files(case) if n.startswith(".")]
    assert sorted(name[1:].split(".old.tmp-")[0] for name in aside) == before  # every file of the run before
    assert len(list(unit_records(case.path, ["test_batch_probe"]))) == n
    monkeypatch.undo()
    again = Case.open(case.path)
    with again.writer():
        actions = again.recover()
    assert sorted(a["file"].rsplit("/", 1)[-1] for a in actions) == sorted(aside)
    assert not [n for n in _files(again) if n.startswith(".")]
