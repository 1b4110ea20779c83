"""Analyzer-declared options: flags, config keys, environment, and the README's one-file plugin example."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from triage import registry
from triage.cli import build_parser, main
from triage.errors import ExitCode, UsageError
from triage.options import Option, add_analyzer_arguments, analyzer_options, declared_options

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_declared_option_of_the_built_ins_is_in_analyze_help(capsys: pytest.CaptureFixture[str]) -> None:
    declared = declared_options()
    flags = {o.cli_flag for opts in declared.values() for o in opts if o.cli_flag}
    assert {"--sigma", "--yara", "--symbols"} <= flags
    assert {"eventlog", "weblog_sigma", "yara", "memory"} <= set(declared)
    assert main(["analyze", "--help"]) == 0
    help_text = capsys.readouterr().out
    for flag in flags:
        assert re.search(rf"^\s+{re.escape(flag)}\b", help_text, re.MULTILINE), flag
    assert main(["run", "--help"]) == 0
    run_help = capsys.readouterr().out
    assert all(flag in run_help for flag in flags)


def test_cli_values_reach_every_declaring_analyzer(tmp_path: Path) -> None:
    rules, yar = tmp_path / "sigma", tmp_path / "y.yar"
    rules.mkdir()
    yar.write_text("rule x { condition: false }")
    args = build_parser().parse_args(["analyze", str(tmp_path), "--sigma", str(rules), "--yara", str(yar)])
    opts = analyzer_options(args, config={})
    assert opts["eventlog"] == opts["weblog_sigma"] == {"sigma": [str(rules)]}  # one flag, two analyzers
    assert opts["yara"] == {"yara": [str(yar)]}
    args = build_parser().parse_args(["analyze", str(tmp_path), "--yara", str(tmp_path / "gone")])
    with pytest.raises(UsageError, match="--yara: no such file or folder"):
        analyzer_options(args, config={})


def test_precedence_cli_env_config_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    declared = {
        "demo": (
            Option("depth", help="how deep", type=int, config_key="demo_depth", env="DEMO_DEPTH", default=3),
            Option("dirs", help="where", repeatable=True, path=True, config_key="demo_dirs", metavar="DIR"),
            Option("quiet_only", help="no flag", flag=None, config_key="demo_quiet", type=bool),
        )
    }
    monkeypatch.delenv("DEMO_DEPTH", raising=False)
    assert analyzer_options({}, config={}, declared=declared) == {"demo": {"depth": 3}}
    cfg = {"demo_depth": 7, "demo_dirs": ["rel", "/abs"], "demo_quiet": True}
    got = analyzer_options({}, config=cfg, declared=declared)["demo"]
    from triage.options import config_file

    assert got["depth"] == 7 and got["quiet_only"] is True
    assert got["dirs"] == [str(config_file().parent / "rel"), "/abs"]  # relative to the config file
    monkeypatch.setenv("DEMO_DEPTH", "9")
    assert analyzer_options({}, config=cfg, declared=declared)["demo"]["depth"] == 9
    assert analyzer_options({"depth": 11}, config=cfg, declared=declared)["demo"]["depth"] == 11
    with pytest.raises(UsageError, match="--dirs: no such file or folder"):
        analyzer_options({"dirs": [str(tmp_path / "nope")]}, config={}, declared=declared)
    monkeypatch.setenv("DEMO_DEPTH", "deep")
    with pytest.raises(UsageError, match="--depth"):
        analyzer_options({}, config={}, declared=declared)


def test_a_plugin_flag_that_clashes_with_a_core_flag_is_left_out() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["analyze"]  # type: ignore[union-attr]
    added = add_analyzer_arguments(sub, {"bad": (Option("jobs", help="clash", type=int),)})
    assert added == []


def _readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- plugin-example -->", 1)[1]
    return block.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def watchlist_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    plugin = tmp_path / "plugin" / "watchlist.py"
    plugin.parent.mkdir()
    plugin.write_text(_readme_example())
    monkeypatch.setenv("TRIAGE_PLUGINS", str(plugin))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    yield plugin
    # the registry is per process: leave it as the other tests expect it
    registry._REGISTRY.pop("watchlist", None)
    registry._DISCOVERED.discard(str(plugin))
    sys.modules.pop("triage_plugin_watchlist", None)


def _watch_findings(case: Path) -> list[str]:
    out: list[str] = []
    for p in sorted((case / "results" / "watchlist").glob("*.parquet")):
        out += list(pd.read_parquet(p)["title"])
    return out


def test_readme_plugin_example_runs_with_its_option_from_cli_and_config(
    tmp_path: Path, watchlist_plugin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "errorEE.aspx").write_text("<%@ Page %>")
    (loose / "default.aspx").write_text("<%@ Page %>")
    case = tmp_path / "case"
    args = ["collect", str(loose), "--as", "files", "--case", str(case), "--host", "ex01", "-q"]
    assert main(args) == ExitCode.OK
    assert main(["analyze", "--help"]) == 0
    assert "--watch-name NAME" in capsys.readouterr().out

    # no watch list: the units say so (skipped), nothing is claimed
    assert main(["analyze", str(case), "--only", "watchlist", "-j", "1", "-q", "--json"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["statuses"] == {"skipped": 2}

    base = ["analyze", str(case), "--only", "watchlist", "-j", "1", "-q", "--json", "--force"]
    assert main([*base, "--watch-name", "ERROREE.aspx"]) == ExitCode.OK
    out = json.loads(capsys.readouterr().out)
    assert (out["findings"], out["statuses"]) == (1, {"success": 1, "no_findings": 1})
    assert _watch_findings(case) == ["errorEE.aspx is on the watch list"]

    cfg = tmp_path / "config" / "triage" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('watch_names = ["default.aspx"]\n')
    assert main(base) == ExitCode.OK
    out = json.loads(capsys.readouterr().out)
    assert out["findings"] == 1
    assert _watch_findings(case) == ["default.aspx is on the watch list"]
    # the newest record (run ids of the same second sort by their random suffix, not by time)
    run = json.loads(max((case / "runs").glob("run-*.json"), key=lambda p: p.stat().st_mtime_ns).read_text())
    assert run["options"] == {"watchlist": {"watch_name": ["default.aspx"]}}  # recorded for the report
