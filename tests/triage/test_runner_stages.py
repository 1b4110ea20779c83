"""The runner's stages: an analyzer that declares ``after`` runs once the named analyzers' units are done, reads
their results, and is redone when those results change (``triage.runner.stages``)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from triage import registry
from triage.case import Case
from triage.registry import Analyzer
from triage.report import load_findings
from triage.runner import analyze_case, stages

PLUGIN = textwrap.dedent('''
    from __future__ import annotations
    import time
    from triage.registry import Analyzer, register
    from triage.results import unit_records

    @register
    class Slow(Analyzer):
        """One slow unit per web file (so a reader that did not wait would see few of them)."""
        name = "test_stage_first"
        version = "1"
        consumes = ("web_file",)
        batch = False

        def analyze(self, unit):
            time.sleep(0.05)
            return iter(())

    @register
    class Reader(Analyzer):
        """Per host: how many units of test_stage_first have finished records when it runs."""
        name = "test_stage_reader"
        version = "1"
        consumes = ("web_file",)
        scope = "host"
        after = ("test_stage_first",)

        def analyze(self, unit):
            done = [r for _p, r in unit_records(unit.case_dir, ["test_stage_first"]) if r.get("status")]
            yield unit.finding(rule_id="T-STAGE", rule_title="stage", severity="info", title=str(len(done)),
                               message="", location=unit.host)
''')


@pytest.fixture
def plugin(tmp_path: Path) -> str:
    path = tmp_path / "stage_plugins.py"
    path.write_text(PLUGIN)
    return str(path)


def _cls(name: str, after: tuple[str, ...] = ()) -> type[Analyzer]:
    return type(name, (Analyzer,), {"name": name, "after": after})


def test_stages_follow_after_and_ignore_what_is_not_selected():
    a, b, c = _cls("a"), _cls("b", ("a",)), _cls("c", ("b", "not_selected"))
    assert [[x.name for x in s] for s in stages([c, b, a])] == [["a"], ["b"], ["c"]]
    assert [[x.name for x in s] for s in stages([c, a])] == [["c", "a"]]  # b not selected: c does not wait
    ring = [_cls("x", ("y",)), _cls("y", ("x",))]
    assert sum(len(s) for s in stages(ring)) == 2  # a ring is broken, every analyzer still runs once


def test_after_naming_itself_is_refused():
    with pytest.raises(TypeError, match="after"):
        registry.register(
            type(
                "Selfish",
                (Analyzer,),
                {"__doc__": "x", "name": "t_self", "version": "1", "consumes": ("file",), "after": ("t_self",)},
            )
        )


def test_reader_runs_after_every_unit_it_reads_and_again_when_they_change(case: Case, plugin: str):
    webs = len(case.evidence(kinds={"web_file"}))
    only = ("test_stage_first", "test_stage_reader")
    first = analyze_case(case, only=only, plugins=(plugin,), jobs=2)
    assert first.statuses["success"] == 1 and first.statuses["no_findings"] == webs
    df = load_findings(case)
    assert list(df[df.rule_id == "T-STAGE"].title) == [str(webs)]
    assert analyze_case(case, only=only, plugins=(plugin,), jobs=2).reused == webs + 1
    # the same analysis again (forced) gives the same results: the reader's are still good
    analyze_case(case, only=("test_stage_first",), plugins=(plugin,), force=True)
    assert analyze_case(case, only=("test_stage_reader",), plugins=(plugin,)).reused == 1
    # the upstream analyzer with other options: other results, so the reader runs again
    analyze_case(case, only=("test_stage_first",), plugins=(plugin,), options={"test_stage_first": {"x": 1}})
    again = analyze_case(case, only=("test_stage_reader",), plugins=(plugin,))
    assert again.reused == 0 and again.statuses["success"] == 1
