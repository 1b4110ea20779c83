"""The indexed evaluation (per-rule plans: required columns, EventID gate; small sub-frames in Python) finds
exactly what the full scan finds: the own pack and, when ``TRIAGE_SIGMAHQ`` is set, a SigmaHQ subset, over
logs the project builds and the corpus EVTX files.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sigma_support import rule_text

from triage.formats.evtx import ReadStats, iter_evtx
from triage.registry import signature_path
from triage.sigma import load_rules
from triage.sigma.compiler import SMALL_ROWS, StringTest
from triage.sigma.engine import RuleSet, rule_plan
from triage.sigma.translate import classify
from triage.testing.eventlogs import event_log_files
from triage.testing.evtx import write_evtx

REPO = Path(__file__).resolve().parents[3]
CORPUS_EVTX = REPO.parent / "shared" / "corpus" / "evtx"


def _frames(paths: list[Path], batch: int = 50_000) -> list[pd.DataFrame]:
    return [df for p in paths for df in iter_evtx(p, ReadStats(), batch=batch)]


def _match_set(ruleset: RuleSet, frames: list[pd.DataFrame], indexed: bool) -> list[tuple[int, str, int]]:
    out = []
    for n, df in enumerate(frames):
        m = ruleset.evaluate(df, indexed=indexed)
        out.extend((n, rid, row) for rid, row in zip(m["rule_id"], m["row"], strict=True))
        assert ruleset.runtime_errors == []
    return out


@pytest.fixture(scope="module")
def built_logs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The demo volume's attack and benign logs plus a Sysmon mix of 600 events (the benchmark's generator)."""
    folder = tmp_path_factory.mktemp("built-logs")
    paths = []
    for compromised in (True, False):
        for rel, data in event_log_files(compromised).items():
            p = folder / ("attack" if compromised else "benign") / Path(rel).name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            paths.append(p)
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import evtx_throughput
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    mix = folder / "mix.evtx"
    write_evtx(mix, evtx_throughput.make_events(600))
    return [*paths, mix]


@pytest.fixture(scope="module")
def own_pack() -> RuleSet:
    return load_rules([signature_path("sigma/ed2102")])


def test_own_pack_indexed_equals_full_scan_on_built_logs(own_pack: RuleSet, built_logs: list[Path]) -> None:
    frames = _frames(built_logs)
    # the big mix once whole and once cut into sub-frames below SMALL_ROWS, so both string paths are compared
    frames += _frames([built_logs[-1]], batch=SMALL_ROWS // 2)[:8]
    full = _match_set(own_pack, frames, indexed=False)
    fast = _match_set(own_pack, frames, indexed=True)
    assert fast == full
    rules_hit = {rid for _, rid, _ in full}
    assert len(rules_hit) >= 10, rules_hit  # the attack logs fire many rules: the comparison means something


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.skipif(not CORPUS_EVTX.is_dir(), reason="third-party corpus ../shared/corpus is absent")
def test_own_pack_indexed_equals_full_scan_on_corpus(own_pack: RuleSet) -> None:
    frames = _frames(sorted(CORPUS_EVTX.rglob("*.evtx")))
    full = _match_set(own_pack, frames, indexed=False)
    assert full, "the corpus attack logs match rules of the pack"
    assert _match_set(own_pack, frames, indexed=True) == full


def _sigmahq_windows() -> Path | None:
    raw = os.environ.get("TRIAGE_SIGMAHQ")
    if not raw:
        return None
    for candidate in (Path(raw) / "rules" / "windows", Path(raw)):
        if candidate.is_dir():
            return candidate
    return None


@pytest.mark.slow
@pytest.mark.skipif(_sigmahq_windows() is None, reason="TRIAGE_SIGMAHQ (a SigmaHQ/sigma checkout) not set")
def test_sigmahq_subset_indexed_equals_full_scan(built_logs: list[Path]) -> None:
    root = _sigmahq_windows()
    assert root is not None
    folders = [root / sub for sub in ("process_creation", "builtin", "powershell", "registry") if (root / sub).is_dir()]
    files = [f for folder in folders for f in sorted(folder.rglob("*.yml"))][::3]  # a spread, not all 2,400
    ruleset = load_rules(files)
    assert len(ruleset.loaded) >= 200
    paths = list(built_logs)
    if CORPUS_EVTX.is_dir():
        paths += sorted(CORPUS_EVTX.rglob("*.evtx"))
    frames = _frames(paths)
    full = _match_set(ruleset, frames, indexed=False)
    assert full
    assert _match_set(ruleset, frames, indexed=True) == full


# ---------------------------------------------------------------------------------------------- rule plans
def _plan(load_texts, detection: str, logsource: str = "product: windows\n  service: security"):  # type: ignore[no-untyped-def]
    rs = load_texts(rule_text(detection, logsource=logsource))
    assert len(rs.loaded) == 1, rs.skipped
    return rule_plan(rs.loaded[0].matcher)


def test_plan_gates_on_eventid_and_requires_fields(load_texts) -> None:  # type: ignore[no-untyped-def]
    plan = _plan(load_texts, "sel:\n  EventID: 4688\n  NewProcessName|endswith: '\\\\cmd.exe'\ncondition: sel")
    assert plan.gate == ("EventID", (4688.0,))
    assert plan.required == frozenset({"EventID", "NewProcessName"})


def test_plan_or_of_eventids_is_their_union_and_not_has_no_gate(load_texts) -> None:  # type: ignore[no-untyped-def]
    either = _plan(load_texts, "a:\n  EventID: 4720\nb:\n  EventID:\n    - 4732\n    - 4728\ncondition: a or b")
    assert either.gate == ("EventID", (4720.0, 4728.0, 4732.0))
    negated = _plan(load_texts, "a:\n  EventID: 4720\ncondition: not a")
    assert negated.gate is None and negated.required == frozenset()
    mixed = _plan(load_texts, "a:\n  EventID: 4720\nb:\n  TargetUserName: x\ncondition: a or b")
    assert mixed.gate is None and mixed.required == frozenset()


def test_rule_needing_a_missing_column_is_skipped_but_null_tests_still_match(load_texts) -> None:  # type: ignore[no-untyped-def]
    security = "product: windows\n  service: security"
    needs = load_texts(
        rule_text("sel:\n  EventID: 1102\n  Nope: x\ncondition: sel", logsource=security),
        rule_text("sel:\n  EventID: 1102\n  Nope: null\ncondition: sel", logsource=security),
    )
    df = pd.DataFrame(
        {
            "EventID": pd.array([1102, 4624], dtype="Int64"),
            "Channel": pd.array(["Security", "Security"], dtype="str"),
            "Provider": pd.array(["Microsoft-Windows-Eventlog", "x"], dtype="str"),
        }
    )
    for indexed in (False, True):
        got = needs.evaluate(df, indexed=indexed)
        assert got["rule_id"].tolist() == [needs.loaded[1].id] and got["row"].tolist() == [0]


# ------------------------------------------------------------------------------------- small-row string path
@pytest.mark.parametrize("cased", [False, True])
def test_python_string_path_agrees_with_arrow(cased: bool) -> None:
    from sigma.types import SigmaString

    values = [
        "C:\\Windows\\System32\\cmd.exe",
        "cmd.exe\n",  # $ in Python matches before a final newline; RE2's (and ours) does not
        "x\ncmd.exe",
        "CMD.EXE",
        "",
        None,
        "ünïcode\\Cmd.exe tail",
        "a*b?c",
        "prefix-only",
    ]
    patterns = ["*\\cmd.exe", "cmd.exe", "*cmd.exe*", "prefix*", "a\\*b?c", "x*cmd.exe", "*"]
    for text in patterns:
        for combo in ([text], [text, "*\\powershell.exe", "other"]):
            test = StringTest([classify(SigmaString(p), cased) for p in combo], cased=cased)
            data = values if cased else [None if v is None else v.lower() for v in values]
            arrow = test.run(pa.array(data, type=pa.large_string()))
            assert test.small_ok
            assert np.array_equal(test.run_values(data), arrow), (text, combo)


def _sample_rows() -> list[dict]:
    """Every positive and negative sample row of every sample file (signatures/sigma/samples/*.yaml)."""
    import yaml

    rows: list[dict] = []
    for path in sorted((REPO / "signatures" / "sigma" / "samples").glob("*.yaml")):
        specs = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("rules") or {}
        for spec in specs.values():
            for key in ("positive", "negative"):
                rows += [dict(r) for r in spec.get(key) or [] if isinstance(r, dict)]
    for n, row in enumerate(rows, 1):
        row["EventRecordID"] = n
    return rows


@pytest.mark.slow  # the whole pack by full scan over every sample row (7-16 s on a shared machine)
def test_the_index_never_skips_a_rule_that_could_match_a_sample(own_pack: RuleSet) -> None:
    """Every rule of the pack, through the index (plans, EventID gates) and by full scan, over every sample row of
    every sample file: the same (rule, row) matches, as one frame and as small frames (the Python string path)."""
    from triage.formats.evtx import to_frame

    rows = _sample_rows()
    assert len(rows) >= 1000
    whole = to_frame(rows)
    step = SMALL_ROWS // 2
    frames = [whole] + [to_frame(rows[i : i + step]) for i in range(0, len(rows), len(rows) // 3)]
    full = _match_set(own_pack, frames, indexed=False)
    assert _match_set(own_pack, frames, indexed=True) == full
    # the comparison covers most of the pack: rules with a positive sample match in the whole frame
    assert len({rid for n, rid, _ in full if n == 0}) >= 0.9 * len(own_pack.loaded)
