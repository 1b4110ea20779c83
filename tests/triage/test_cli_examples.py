"""The examples under each subcommand's --help are commands the parser accepts, with the flags they show."""

from __future__ import annotations

import shlex

import pytest

from triage.cli import EXAMPLES, build_parser


@pytest.mark.parametrize(("command", "line"), [(c, line) for c, lines in EXAMPLES.items() for line in lines])
def test_each_help_example_parses(command: str, line: str) -> None:
    argv = shlex.split(line, comments=True)
    assert argv[:2] == ["triage", command]
    args = build_parser().parse_args(argv[1:])
    assert args.command == command


def test_every_subcommand_help_shows_examples() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, sp in sub.choices.items():  # type: ignore[attr-defined]
        assert "example" in (sp.epilog or ""), f"triage {name} --help shows no example"
