"""The application layer, called as a library: typed requests in, typed summaries out, nothing printed."""

from __future__ import annotations

import ast
import json
import logging
import os
from pathlib import Path

import pytest

from triage import app
from triage.case import Case
from triage.errors import ExitCode, InsufficientEvidence, UsageError
from triage.testing.volume import VolumeSpec, build_volume

from .conftest import RecordingProgress

REPO = Path(__file__).resolve().parents[3]
KINDS = {"registry_hive": 3, "exchange_binary": 1, "exchange_log": 4, "web_file": 7, "iis_log": 1, "suspicious_file": 2}
ONLY = ("webshell_locations",)  # one fast analyzer: 9 units over this volume


def _volume(tmp_path: Path, name: str = "vol", host: str = "EXCH01") -> Path:
    return build_volume(tmp_path / name, VolumeSpec(hostname=host, install_path=r"C:\Apps\Exchange\V15"))


def _analyze(case: Path, **kw: object) -> app.AnalyzeRequest:
    return app.AnalyzeRequest(case, only=ONLY, execution=app.ExecutorRequest(jobs=1), **kw)  # type: ignore[arg-type]


@pytest.mark.slow
def test_collect_analyze_report_verify_through_the_app_layer(
    tmp_path: Path, progress: RecordingProgress, capsys: pytest.CaptureFixture[str]
) -> None:
    vol = _volume(tmp_path)
    case = tmp_path / "case"

    collected = app.collect(app.CollectRequest((str(vol),), case, examiner="analyst7", case_id="CASE-APP"), progress)
    assert collected.exit_code == ExitCode.OK and collected.collection_failures == 0
    assert collected.case_id == "CASE-APP" and collected.stats.hosts == {"EXCH01"}
    assert dict(collected.stats.kinds) == KINDS
    assert collected.as_dict()["case"] == str(case) and collected.as_dict()["kinds"] == KINDS
    assert ("transfer", "collecting") in progress.bars
    meter = progress.transfers["collecting"]
    assert meter.bytes_done == meter.bytes_total == collected.stats.bytes > 0
    assert meter.files_done == meter.files_total == collected.stats.files
    assert f"collecting {vol} (volume)" in progress.texts(logging.INFO)

    analyzed = app.analyze(_analyze(case), progress)
    assert analyzed.exit_code == ExitCode.OK
    assert dict(analyzed.run.statuses) == {"success": 3, "no_findings": 6}
    assert progress.last_units["analyzing"] == (9, 9)
    assert analyzed.as_dict()["planned"] == 9 and "sigma" not in analyzed.as_dict()

    reported = app.report(app.ReportRequest(case, command_line="triage report CASE"))
    assert reported.exit_code == ExitCode.OK and reported.exit_reason == ""
    assert reported.case_id == "CASE-APP"
    assert reported.result.by_severity == {"critical": 1, "high": 1, "medium": 3, "low": 0, "info": 0}
    assert Path(reported.result.outputs["ledger.json"]).is_file()
    strict = app.report(app.ReportRequest(case, fail_on="high"))
    assert strict.exit_code == ExitCode.FINDINGS
    assert strict.as_dict()["exit_reason"] == "findings at or above high (worst: critical)"

    verified = app.verify(app.VerifyRequest(case), progress)
    assert verified.ok and verified.exit_code == ExitCode.OK
    assert verified.report.artifacts_checked == sum(KINDS.values())
    head = verified.report.head["hash"]
    anchored = app.verify(app.VerifyRequest(case, (head.upper(),)), progress)
    assert anchored.report.anchor is not None and anchored.report.anchor["found"]

    opened = Case.open(case)
    shell = next(r for r in opened.evidence() if r.kind == "suspicious_file")
    stored = opened.artifact_path(shell)
    opened.close()
    os.chmod(stored, 0o644)
    stored.write_bytes(stored.read_bytes() + b"<%eval%>")
    tampered = app.verify(app.VerifyRequest(case), progress)
    assert tampered.exit_code == ExitCode.INTEGRITY and not tampered.ok
    assert any(shell.artifact_id in p["where"] for p in tampered.report.problems)

    out, err = capsys.readouterr()
    assert out == "" and err == ""  # the app layer never prints; the CLI renders


@pytest.mark.slow
def test_run_opens_the_case_once_and_matches_the_cli_summary_shape(
    tmp_path: Path, progress: RecordingProgress, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    vol = _volume(tmp_path)
    case = tmp_path / "case"
    opened: list[Path] = []
    real_open = Case.open.__func__  # type: ignore[attr-defined]

    def counting_open(cls: type[Case], path: str | os.PathLike[str]) -> Case:
        opened.append(Path(path))
        return real_open(cls, path)

    monkeypatch.setattr(Case, "open", classmethod(counting_open))
    request = app.RunRequest.of(
        app.CollectRequest((str(vol),), case, examiner="analyst7"),
        _analyze(Path("ignored")),
        app.ReportRequest(Path("ignored"), fail_on="critical"),
    )
    assert request.analyze.case == request.report.case == case
    summary = app.run(request, progress)
    assert isinstance(summary, app.RunSummary)
    assert opened == []  # created once by the collection, then passed along: never re-opened from its path
    assert summary.exit_code == ExitCode.FINDINGS
    doc = json.loads(json.dumps(summary.as_dict(), default=str))
    assert set(doc) == {"collect", "analyze", "report"}
    assert doc["collect"]["kinds"] == KINDS and doc["analyze"]["statuses"] == {"success": 3, "no_findings": 6}
    assert doc["report"]["exit_reason"].startswith("findings at or above critical")
    assert capsys.readouterr() == ("", "")


def test_junk_sources_are_refused_before_a_case_folder_exists(
    tmp_path: Path, progress: RecordingProgress, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.txt").write_text("x")
    with pytest.raises(InsufficientEvidence) as caught:
        app.collect(app.CollectRequest((str(junk),), tmp_path / "case"), progress)
    assert caught.value.exit_code == ExitCode.INSUFFICIENT
    assert "nothing examinable" in str(caught.value)
    assert not (tmp_path / "case").exists()
    assert capsys.readouterr() == ("", "")


def test_usage_errors_come_before_anything_is_opened(tmp_path: Path, progress: RecordingProgress) -> None:
    missing = str(tmp_path / "no-rules")
    with pytest.raises(UsageError, match="--sigma: no such file or folder") as caught:
        app.analyze(app.AnalyzeRequest(tmp_path / "no-case", rules=app.RuleInputs(sigma=(missing,))), progress)
    assert caught.value.exit_code == ExitCode.USAGE
    with pytest.raises(UsageError, match="a single case has one custody head"):
        app.verify(app.VerifyRequest(tmp_path, ("a" * 64, "b" * 64)), progress)
    with pytest.raises(UsageError, match="64 hex digits"):
        app.verify(app.VerifyRequest(tmp_path, ("not-a-hash",)), progress)
    with pytest.raises(UsageError, match="is not a case folder"):
        app.report(app.ReportRequest(tmp_path))
    # --yara feeds the file scan and the raw memory scan (issue 15)
    assert app.analyzer_options(app.RuleInputs(yara=(str(tmp_path),))) == {
        "memory": {"yara": [str(tmp_path)]},
        "yara": {"yara": [str(tmp_path)]},
    }
    assert progress.messages == [] and progress.bars == []


def test_a_collection_request_never_shows_its_password() -> None:
    request = app.CollectRequest(("c.zip",), Path("case"), password="s3cret")
    assert "s3cret" not in repr(request) and "***" in repr(request)


@pytest.mark.slow
def test_fleet_run_report_and_verify_through_the_app_layer(
    tmp_path: Path, progress: RecordingProgress, capsys: pytest.CaptureFixture[str]
) -> None:
    one, two = _volume(tmp_path, "v1", "EXCH01"), _volume(tmp_path, "v2", "EXCH02")
    root = tmp_path / "fleet"
    request = app.RunRequest.of(
        app.CollectRequest((str(one), str(two)), root, examiner="analyst7", case_id="FLEET-T"),
        _analyze(root),
        app.ReportRequest(root, command_line="triage run v1 v2"),
    )
    summary = app.run(request, progress)
    assert isinstance(summary, app.FleetRunSummary)
    assert summary.fleet_id == "FLEET-T" and set(summary.hosts) == {"EXCH01", "EXCH02"}
    assert app.is_fleet_folder(root)
    doc = summary.as_dict()
    assert doc["hosts"]["EXCH02"]["collect"]["case_id"] == "FLEET-T-EXCH02"
    assert doc["hosts"]["EXCH01"]["analyze"]["statuses"] == {"success": 3, "no_findings": 6}
    assert set(doc["fleet_report"]["sha256"]) == {"fleet.json", "fleet.csv", "cisa_fleet.csv", "fleet.html"}
    assert ("units", "analyzing the fleet") in progress.bars
    assert any(src == "triage.fleet" and "collecting host EXCH02" in t for _, t, src in progress.messages)

    rep = app.report_fleet(app.ReportRequest(root, fail_on="critical", jobs=2), progress)
    assert rep.exit_code == ExitCode.FINDINGS and set(rep.hosts) == {"EXCH01", "EXCH02"}
    ver = app.verify_fleet(app.VerifyRequest(root), progress)
    assert ver.ok and ver.exit_code == ExitCode.OK and set(ver.hosts) == {"EXCH01", "EXCH02"}
    with pytest.raises(UsageError, match="one custody head per host"):
        app.verify_fleet(app.VerifyRequest(root, ("a" * 64,)), progress)
    assert capsys.readouterr() == ("", "")


# -- structure: the app layer stays a library, the CLI stays a front end --------------------------------
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_app_layer_parses_no_arguments_and_prints_nothing() -> None:
    files = sorted((REPO / "triage" / "app").glob("*.py"))
    assert {f.stem for f in files} >= {"collect", "analyze", "report", "verify", "run", "fleet", "progress"}
    for path in files:
        tree = _tree(path)
        bad = {m for m in _imports(tree) if m.split(".")[0] in ("argparse", "rich") or m == "triage.progress"}
        assert not bad, f"{path.name} imports {bad}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "print", f"{path.name}:{node.lineno} prints"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "sys":
                assert node.attr not in ("argv", "stdout", "stderr"), f"{path.name}:{node.lineno} uses sys.{node.attr}"


def test_cli_and_fleet_stay_out_of_each_other_and_of_analyzers_and_collectors() -> None:
    cli = _imports(_tree(REPO / "triage" / "cli.py"))
    assert not {m for m in cli if m.split(".")[0] in ("analyzers", "collectors")}
    assert "triage.fleet" not in cli
    fleet_tree = _tree(REPO / "triage" / "fleet.py")
    assert not {m for m in _imports(fleet_tree) if m in ("triage.cli", "argparse") or m.startswith("triage.app")}
    assert "Namespace" not in (REPO / "triage" / "fleet.py").read_text(encoding="utf-8")


RULE = """title: App layer test - any logon
id: 6d0e4b52-3f0a-4c44-9b7e-0a1b2c3d4e5f
status: test
logsource:
  product: windows
  service: security
detection:
  selection:
    EventID: 4624
  condition: selection
level: low
"""


@pytest.mark.slow
def test_extra_sigma_rules_are_loaded_once_up_front_and_recorded(
    case: Case, tmp_path: Path, progress: RecordingProgress, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "logon.yml").write_text(RULE)
    (rules / "broken.yml").write_text("title: no detection\nlogsource: {product: windows}\n")
    case.close()
    # the volume holds no event log: no unit runs, but the set is still loaded and recorded
    rules_in = app.RuleInputs(sigma=(str(rules),))
    request = app.AnalyzeRequest(case.path, only=("eventlog",), rules=rules_in, execution=app.ExecutorRequest(1))
    summary = app.analyze(request, progress)
    sigma = summary.rules_loaded["sigma"]
    assert sigma["sources"] == [str(rules)] and sigma["skipped"] == 1 and sigma["loaded"] >= 2
    assert summary.as_dict()["sigma"] == sigma and summary.run.planned == 0
    events = [json.loads(line) for line in (case.path / "custody.jsonl").read_text().splitlines()]
    loaded = [e for e in events if e["action"] == "rules_loaded"]
    assert len(loaded) == 1 and loaded[0]["details"]["engine"] == "sigma"
    assert loaded[0]["details"]["record"] == "runs/sigma-rules.json"
    assert any(t.startswith(f"Sigma rules: {sigma['loaded']} loaded") for t in progress.texts(logging.INFO))
    assert capsys.readouterr() == ("", "")
