from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from triage.cli import main
from triage.errors import ExitCode
from triage.testing.snapshot import tree_snapshot as snapshot
from triage.testing.volume import VolumeSpec, build_volume


def _age(root: Path) -> None:
    # old atimes, so a read on a relatime mount would update them if the collector touched them
    for dirpath, dirs, files in os.walk(root, topdown=False):
        for name in [*files, *dirs]:
            os.utime(Path(dirpath, name), (1609459200, 1609459200))
    os.utime(root, (1609459200, 1609459200))


def test_run_end_to_end_leaves_source_untouched(tmp_path: Path, capsys) -> None:
    vol = build_volume(tmp_path / "vol", VolumeSpec(install_path=r"C:\Apps\Exchange\V15"))
    _age(vol)
    before = snapshot(vol)
    code = main(
        [
            "run",
            str(vol),
            "--case",
            str(tmp_path / "case"),
            "--json",
            "-q",
            "-j",
            "2",
            "--examiner",
            "analyst7",
            "--only",
            "webshell_locations",
        ]
    )
    assert code == ExitCode.OK
    out = json.loads(capsys.readouterr().out)
    assert out["collect"]["hosts"] == ["EXCH01"]
    assert out["collect"]["kinds"] == {
        "registry_hive": 3,
        "exchange_binary": 1,
        "exchange_log": 4,
        "web_file": 7,
        "iis_log": 1,
        "suspicious_file": 2,
    }
    assert out["collect"]["exchange"]["how"] == "registry"
    assert out["collect"]["exchange"]["root"] == "Apps/Exchange/V15"
    assert out["analyze"]["statuses"] == {"success": 3, "no_findings": 6}
    assert out["report"]["by_severity"] == {"critical": 1, "high": 1, "medium": 3, "low": 0, "info": 0}
    assert snapshot(vol) == before
    case_json = json.loads((tmp_path / "case" / "case.json").read_text())
    assert case_json["examiner"] == "analyst7" and case_json["tool_version"]
    actions = [json.loads(line)["action"] for line in (tmp_path / "case" / "custody.jsonl").read_text().splitlines()]
    assert actions[0] == "create" and actions[-3:] == ["analyze", "report_begin", "report"]
    assert actions.count("collect") == len((tmp_path / "case" / "manifest.jsonl").read_text().splitlines())


@pytest.mark.parametrize(
    ("compromised", "fail_on", "expected"),
    # a clean volume read by one analyzer only (no event logs, logs and hives unparsed) gets no clean verdict: 4
    [(True, "high", ExitCode.FINDINGS), (True, "critical", ExitCode.FINDINGS), (False, "low", ExitCode.INSUFFICIENT)],
)
def test_fail_on(tmp_path: Path, compromised: bool, fail_on: str, expected: ExitCode) -> None:
    vol = build_volume(tmp_path / "vol", VolumeSpec(compromised=compromised))
    args = [
        "run",
        str(vol),
        "--case",
        str(tmp_path / "case"),
        "-q",
        "--fail-on",
        fail_on,
        "--only",
        "webshell_locations",
    ]
    assert main(args) == expected


def test_usage_errors(tmp_path: Path, capsys) -> None:
    assert main(["collect", str(tmp_path / "nope"), "--case", str(tmp_path / "c")]) == ExitCode.USAGE
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    # a folder of loose files is accepted whatever the names; with nothing examinable in it: exit 4
    assert main(["collect", str(tmp_path / "junk"), "--case", str(tmp_path / "c")]) == ExitCode.INSUFFICIENT
    assert "nothing examinable" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # nothing written before the sources are understood
    assert main(["analyze", str(tmp_path / "junk")]) == ExitCode.USAGE
    assert main(["frobnicate"]) == ExitCode.USAGE


def test_collect_files_then_analyze_separately(tmp_path: Path, capsys) -> None:
    (tmp_path / "loose").mkdir()
    shell = tmp_path / "loose" / "errorFF.aspx"
    shell.write_text("<%@ Page %>")
    case = tmp_path / "case"
    assert (
        main(
            ["collect", str(tmp_path / "loose"), "--as", "files", "--case", str(case), "--host", "ex02", "-q", "--json"]
        )
        == ExitCode.OK
    )
    assert json.loads(capsys.readouterr().out)["kinds"] == {"web_file": 1}
    assert main(["analyze", str(case), "-q"]) == ExitCode.OK
    capsys.readouterr()
    assert main(["report", str(case), "-q", "--json"]) == ExitCode.OK
    rep = json.loads(capsys.readouterr().out)
    # a loose file has no volume location, so only the published-name rule can speak
    assert (rep["findings"], rep["max_severity"], rep["by_analyzer"]) == (1, "medium", {"webshell_locations": 1})


def test_list_json(capsys) -> None:
    assert main(["list", "--json"]) == ExitCode.OK
    data = json.loads(capsys.readouterr().out)
    names = [a["name"] for a in data["analyzers"]]
    assert "webshell_locations" in names
    fams = {f["name"]: f for f in data["families"]}
    assert fams["exchange_logs"]["paths"] == [
        "%ExchangeInstallPath%/Logging/HttpProxy/**",
        "%ExchangeInstallPath%/Logging/ECP/Server/**",
        "%ExchangeInstallPath%/Logging/OABGeneratorLog/**",
    ]
    assert data["import_failures"] == {}


def test_attest_cli_exit_codes(tmp_path: Path, capsys) -> None:
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "errorFF.aspx").write_text("<%@ Page %>")
    case = str(tmp_path / "case")
    assert main(["collect", str(tmp_path / "loose"), "--as", "files", "--case", case, "--host", "ex02", "-q"]) == 0
    capsys.readouterr()
    custody = (tmp_path / "case" / "custody.jsonl").read_bytes()
    base = ["attest", case, "-q", "--note", "reviewed"]
    assert main([*base, "--step", "24", "--status", "done"]) == ExitCode.USAGE  # no --by
    assert "--by missing" in capsys.readouterr().err
    assert main([*base, "--step", "36", "--status", "done", "--by", "J"]) == ExitCode.USAGE
    assert "unknown step '36'" in capsys.readouterr().err
    assert main([*base, "--step", "24", "--status", "yes", "--by", "J"]) == ExitCode.USAGE
    assert "status 'yes' is not one of done, not-done, not-applicable" in capsys.readouterr().err
    assert main([*base, "--step", "24", "--status", "done", "--by", "J", "--from", "x.csv"]) == ExitCode.USAGE
    missing = str(tmp_path / "nope.txt")
    assert main([*base, "--step", "24", "--status", "done", "--by", "J", "--file", missing]) == 5
    assert f"cannot read {missing}" in capsys.readouterr().err
    assert (tmp_path / "case" / "custody.jsonl").read_bytes() == custody  # nothing recorded by any of them
    (tmp_path / "fw.txt").write_text("deny\n")
    args = [*base, "--step", "24", "--status", "done", "--by", "J. Doe", "--file", str(tmp_path / "fw.txt"), "--json"]
    assert main(args) == ExitCode.OK
    out = json.loads(capsys.readouterr().out)
    (att,) = out["attestations"]
    assert (att["host"], att["step"], att["status"], att["by"]) == ("ex02", "24", "done", "J. Doe")
    assert att["files"][0]["name"] == "fw.txt" and out["files_stored"] == 1 and out["custody_head"]["seq"] > 0


def test_transfer_runs_meanwhile_once_while_copies_run_and_joins_it() -> None:
    """``meanwhile`` (a collection's summary renderer) starts in a thread at the first planned copies, runs once,
    and is over when the transfer ends; the meter still counts what it is told."""
    import threading

    from triage.cli import ConsoleProgress

    ran: list[str] = []
    release = threading.Event()

    def meanwhile() -> None:
        release.wait(5)
        ran.append(threading.current_thread().name)

    progress = ConsoleProgress(quiet=True, meanwhile=meanwhile)
    with progress.transfer("collecting") as meter:
        assert ran == []  # nothing before copies are planned
        meter.plan(3, 300)
        meter.plan(1, 10)  # planned again: still one run
        meter.advance(300)
        meter.file_done()
        release.set()
    assert ran == ["triage-meanwhile"]
    with progress.transfer("collecting again") as meter:  # once per command
        meter.plan(1, 1)
    assert ran == ["triage-meanwhile"]


def test_collect_summary_same_with_the_renderer_loaded_meanwhile(tmp_path: Path, capsys) -> None:
    """The collect summary on stdout names every kind collected, with and without --quiet (the renderer is
    loaded while the copies run either way)."""
    vol = build_volume(tmp_path / "vol", VolumeSpec(compromised=True))
    outs = []
    for i, quiet in enumerate(([], ["-q"])):
        rc = main(["collect", str(vol), "--case", str(tmp_path / f"case{i}"), "--host", "EX01", *quiet])
        assert rc == ExitCode.OK
        outs.append(capsys.readouterr().out)
    assert "Collected into" in outs[1] and "outcomes:" in outs[1]
    # the same table but for the case folder's name
    assert outs[0].replace("case0", "caseN") == outs[1].replace("case1", "caseN")
