"""The bulk cover pass (all cover tests of a field found in one sweep of its NUL-joined distinct values, by ``in``
or an Aho-Corasick automaton), cover clauses, rule-file digests, and what loading a compiled set imports.

Each must give exactly what testing row by row gives: a cover that says "nowhere" where a row matches would
lose findings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sigma_support import frame, rule_text

import triage.sigma.cache as cache
import triage.sigma.engine as engine
from triage.sigma import load_rules
from triage.sigma.compiler import KeywordLeaf, StringTest, StrLeaf, _distinct, joined_needles
from triage.sigma.engine import _Bucket
from triage.sigma.frame import SubFrame
from triage.sigma.translate import classify
from triage.testing.imports import hide_package

VALUES = [
    "C:\\Windows\\System32\\cmd.exe",
    "C:\\Windows\\System32\\CMD.EXE",
    "C:\\Users\\bob\\AppData\\Local\\Temp\\x.exe",
    "powershell.exe -enc SQBFAFgA",
    "cmd.exe\n",
    "",
    "ünïcode\\Cmd.exe",
    "a*b?c\\d",
]
SPECS = [
    ["*\\cmd.exe"],
    ["cmd.exe"],  # equality: the whole value
    ["cmd.exe\n"],
    ["c:\\windows\\*"],
    ["*\\temp\\*", "*enc*"],
    ["x*cmd.exe", "*?nïcode*"],  # wildcards inside a value
    ["c:*x.exe"],
    ["*"],
    [""],  # the empty value
    ["*nothere*", "nothere*", "*nothere"],
    ["a\\*b\\?c\\\\d"],  # escaped wildcards: the literal characters
    ["*system32\\cmd.exe", "*.EXE"],
]


def _tests() -> list[StringTest]:
    from sigma.types import SigmaString

    return [
        StringTest([classify(SigmaString(p), cased) for p in spec], cased=cased)
        for spec in SPECS
        for cased in (False, True)
    ]


@pytest.mark.parametrize("automaton", [False, True])
@pytest.mark.parametrize("values", [VALUES, VALUES[:3], ["C:\\x\x00\\cmd.exe", *VALUES]], ids=["all", "few", "nul"])
def test_bulk_pass_equals_row_by_row(values: list[str], automaton: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # BUILD 0 and a free pass: the automaton from the first sweep on; huge: never (the ``in`` sweep)
    monkeypatch.setattr(_Bucket, "BUILD", 0.0 if automaton else 1e9)
    monkeypatch.setattr(_Bucket, "PASS_CHAR", 0.0 if automaton else 1e9)
    df = frame([{"Image": v, "CommandLine": v.upper()} for v in values] + [{"Image": None}])
    ctx = SubFrame(df, None, {})
    leaves = [StrLeaf("Image", t) for t in _tests()] + [KeywordLeaf(t) for t in _tests()]
    buckets: dict[tuple[str | None, bool], _Bucket] = {}
    for leaf in leaves:
        where = (leaf.field if isinstance(leaf, StrLeaf) else None, leaf.test.cased)
        bucket = buckets.setdefault(where, _Bucket(*where))
        bucket.add(leaf, *joined_needles(leaf.test))  # type: ignore[misc]
    memo: dict = {}
    for bucket in buckets.values():
        bucket.run(ctx, memo)
    fresh = SubFrame(df, None, {})  # no sweep has run on its columns: every test scans the values itself
    rows = {leaf.key: leaf.match(fresh, None).tolist() for leaf in leaves}
    expected = {key: any(hits) for key, hits in rows.items()}
    assert memo == expected
    assert any(expected.values()) and not all(expected.values())  # the comparison means something
    # after the sweeps, the leaves' own tests skip the needles found nowhere: the same rows
    assert {leaf.key: leaf.match(ctx, None).tolist() for leaf in leaves} == rows
    if automaton and "\x00" not in "".join(values):
        assert any(b._automaton for b in buckets.values())


def test_sweeps_tell_which_needles_occur_nowhere() -> None:
    df = frame([{"Image": v} for v in VALUES])
    ctx = SubFrame(df, None, {})
    bucket = _Bucket("Image", False)
    tests = [StringTest([("contains", "\\system32\\")]), StringTest([("contains", "nothere")])]
    for t in tests:
        bucket.add(StrLeaf("Image", t), *joined_needles(t))  # type: ignore[misc]
    bucket.run(ctx, {})
    values = _distinct(ctx.column("Image"), False)  # type: ignore[arg-type]
    assert values.absent("nothere") and not values.absent("\\system32\\")
    assert not values.absent("cmd")  # not looked for: unknown, so scanned
    assert not StrLeaf("Image", tests[1]).match(ctx, None).any()


def test_a_wildcard_runs_only_where_one_of_its_literals_is(monkeypatch: pytest.MonkeyPatch) -> None:
    from sigma.types import SigmaString

    ran: list[str] = []
    real = engine._py_regex
    monkeypatch.setattr(engine, "_py_regex", lambda pattern: (ran.append(pattern), real(pattern))[1])
    df = frame([{"Image": v} for v in VALUES])
    ctx = SubFrame(df, None, {})
    bucket = _Bucket("Image", False)
    patterns = ("*\\\\nothere\\\\*.exe", "c:*\\\\temp\\\\*")
    absent, present = (StringTest([classify(SigmaString(p), False)]) for p in patterns)
    for t in (absent, present):
        bucket.add(StrLeaf("Image", t), *joined_needles(t))  # type: ignore[misc]
    memo: dict = {}
    bucket.run(ctx, memo)
    assert memo == {StrLeaf("Image", absent).key: False, StrLeaf("Image", present).key: True}
    assert ran == [joined_needles(present)[1]]  # type: ignore[index]
    # the leaf's own test skips the wildcard too, with the same rows as a fresh scan
    assert not StrLeaf("Image", absent).match(ctx, None).any()
    assert StrLeaf("Image", present).match(ctx, None).tolist() == StrLeaf("Image", present).match(
        SubFrame(df, None, {}), None
    ).tolist()


def test_automaton_only_where_it_pays() -> None:
    few, many = _Bucket("Image", False), _Bucket("CommandLine", False)
    for n in range(3):
        few.owners[f"needle{n}"] = []
    for n in range(5000):
        many.owners[f"needle{n}"] = []
    assert few._automaton_for(10_000_000) is None  # three ``in`` scans cost less than one automaton pass
    assert few._automaton is None
    # thousands of needles over a short text: ``in`` sweeps until they have cost what building would
    built = [bool(many._automaton_for(1_000)) for _ in range(10)]
    assert not built[0] and built[-1] and many._automaton is not None


def test_regex_tests_have_no_joined_form() -> None:
    assert joined_needles(StringTest(regex="^cmd")) is None  # its own anchors would see the whole joined text


# ------------------------------------------------------------------------------------------------ clauses
def test_a_rule_runs_only_where_every_and_part_can_hold(load_texts, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    both = "a:\n  Image|endswith: '\\cmd.exe'\nb:\n  CommandLine|contains: 'vssadmin'\ncondition: a and b"
    rs = load_texts(rule_text(both))
    (rule,) = rs.loaded
    assert rule.plan.cover and len(rule.plan.clauses) == 1
    calls: list[int] = []
    real = type(rule.matcher).eval
    monkeypatch.setattr(type(rule.matcher), "eval", lambda self, ctx, sel: (calls.append(1), real(self, ctx, sel))[1])
    # cmd.exe everywhere, vssadmin nowhere: the rule cannot match and is not run
    df = frame([{"Image": "C:\\Windows\\cmd.exe", "CommandLine": "cmd /c dir"}] * 3)
    assert len(rs.evaluate(df)) == 0 and calls == []
    assert len(rs.evaluate(df, indexed=False)) == 0 and calls == [1]
    # both hold, on different rows: run, and it matches nothing, as the full scan
    df = frame([{"Image": "C:\\Windows\\cmd.exe", "CommandLine": "x"}, {"Image": "y", "CommandLine": "vssadmin"}])
    assert rs.evaluate(df).empty and rs.evaluate(df, indexed=False).empty and len(calls) == 3
    df = frame([{"Image": "C:\\Windows\\cmd.exe", "CommandLine": "vssadmin delete shadows"}])
    assert rs.evaluate(df)["row"].tolist() == [0]


def test_an_or_of_ands_runs_only_where_some_branch_can_hold(load_texts, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    det = (
        "a:\n  Image|endswith: '\\cmd.exe'\nb:\n  CommandLine|contains: 'vssadmin'\n"
        "c:\n  Image|endswith: '\\wmic.exe'\nd:\n  CommandLine|contains: 'shadowcopy'\n"
        "condition: (a and b) or (c and d)"
    )
    rs = load_texts(rule_text(det))
    (rule,) = rs.loaded
    assert rule.plan.need is not None and not rule.plan.clauses
    calls: list[int] = []
    real = type(rule.matcher).eval
    monkeypatch.setattr(type(rule.matcher), "eval", lambda self, ctx, sel: (calls.append(1), real(self, ctx, sel))[1])
    # a and c hold, b and d nowhere: the cover (a or c) holds, yet no branch can match: not run
    df = frame([{"Image": "C:\\Windows\\cmd.exe", "CommandLine": "x"}, {"Image": "C:\\wmic.exe", "CommandLine": "y"}])
    assert rs.evaluate(df).empty and calls == []
    assert rs.evaluate(df, indexed=False).empty and calls == [1]
    # the second branch can hold (c and d, on different rows): run, and it matches nothing, as the full scan
    df = frame([{"Image": "C:\\wmic.exe", "CommandLine": "y"}, {"Image": "z", "CommandLine": "shadowcopy delete"}])
    assert rs.evaluate(df).empty and len(calls) == 2
    df = frame([{"Image": "C:\\wmic.exe", "CommandLine": "shadowcopy delete"}, {"Image": "C:\\cmd.exe"}])
    assert rs.evaluate(df)["row"].tolist() == [0] == rs.evaluate(df, indexed=False)["row"].tolist()


# ------------------------------------------------------------------------------------------ rule file digests
RULE = rule_text(
    "a:\n  Image|endswith: '\\cmd{n}.exe'\ncondition: a", rule_id="3f0e1d2c-4b5a-4968-8776-a5b4c3d2e1{n:02d}"
)


@pytest.fixture
def rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "MIN_FILES", 2)
    monkeypatch.setattr(cache, "_LOADED", {})
    monkeypatch.setattr(cache, "_DIGESTS", {})
    monkeypatch.setattr(cache, "_DIGEST_FILES_READ", set())
    # files as if written long ago (their digests are remembered); a change below comes a clock tick later
    monkeypatch.setattr(cache, "RACY_NS", -1)
    folder = tmp_path / "rules"
    folder.mkdir()
    for n in range(3):
        (folder / f"r{n}.yml").write_text(RULE.format(n=n))
    return folder


def _same_size_edit(path: Path) -> None:
    """Change one byte, keeping size and modification time (what a check of both alone would miss)."""
    time.sleep(0.05)  # past the coarse clock's tick: the change time moves
    st = path.stat()
    text = path.read_text()
    path.write_text(text.replace("level: high", "level: higx"))
    assert path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("process", ["same", "new"])
def test_a_byte_change_recompiles_though_size_and_mtime_are_kept(rules: Path, tmp_path: Path, process: str) -> None:
    first = load_rules([rules])
    assert {r.level for r in first.loaded} == {"high"}
    assert cache.digest_file(tmp_path / "cache" / "sigma", str(rules)).is_file()  # remembered for the next command
    _same_size_edit(rules / "r1.yml")
    if process == "new":  # another command: only the digest file and the compiled entry remain
        cache._LOADED.clear()
        cache._DIGESTS.clear()
        cache._DIGEST_FILES_READ.clear()
    again = load_rules([rules])
    assert again is not first
    assert sorted(r.level for r in again.loaded) == ["", "high", "high"]  # 'higx' is no Sigma level
    assert len(list((tmp_path / "cache" / "sigma").glob("*.pickle"))) == 2


def test_a_file_just_written_is_never_taken_from_memory(rules: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "RACY_NS", 2_000_000_000)
    fresh = rules / "r9.yml"
    fresh.write_text(RULE.format(n=9))
    (digest,) = cache.file_digests([fresh])
    assert str(fresh) not in cache._DIGESTS  # within the racy window: read again next time
    fresh.write_text(RULE.format(n=8))  # same size, maybe the same timestamp tick
    assert cache.file_digests([fresh]) != [digest]


def test_a_damaged_digest_file_costs_only_a_reread(rules: Path, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    first = load_rules([rules])
    cache.digest_file(tmp_path / "cache" / "sigma", str(rules)).write_text("{not json")
    cache._LOADED.clear()
    cache._DIGESTS.clear()
    cache._DIGEST_FILES_READ.clear()
    again = load_rules([rules])
    assert [r.id for r in again.loaded] == [r.id for r in first.loaded]
    assert any("digest file" in r.getMessage() for r in caplog.records)
    assert json.loads(cache.digest_file(tmp_path / "cache" / "sigma", str(rules)).read_text())["format"]  # rewritten


# ------------------------------------------------------------------------------------------------- imports
# pandas hidden as if not installed: pyarrow imports pandas by itself on its first conversion of Python values
# whenever pandas is installed, so its presence in sys.modules says nothing; a load that needs it fails here
LOAD = hide_package("pandas") + """
import json, sys
import triage.sigma.frame, triage.sigma.correlation
before = sorted(m for m in ("yaml",) if m in sys.modules)
import triage.sigma.cache as cache
import triage.sigma.compiler, triage.sigma.engine, triage.sigma.logsources, triage.sigma.coverage
from triage.sigma import load_rules
cache.MIN_FILES = 2
rs = load_rules([sys.argv[1]])
heavy = ("yaml", "sigma.conditions", "sigma.collection", "sigma.rule", "triage.sigma.translate")
print(json.dumps({"before": before, "after": sorted(m for m in heavy if m in sys.modules), "rules": len(rs.loaded)}))
"""


def test_a_compiled_set_loads_without_pandas_yaml_or_the_sigma_parser(rules: Path) -> None:
    load_rules([rules])  # compiled here, into the test's cache folder (the env var the child inherits)
    out = subprocess.run(
        [sys.executable, "-c", LOAD, str(rules)], capture_output=True, text=True, check=True, env=dict(os.environ)
    )
    got = json.loads(out.stdout)
    assert got["rules"] == 3
    # loaded (3 rules) without pandas being importable, and without PyYAML or pySigma's parser
    assert got["after"] == got["before"] == [], got


@pytest.mark.parametrize("module", ["compiler", "engine", "cache", "logsources", "coverage", "__init__"])
def test_no_module_level_pandas_import(module: str) -> None:
    import ast

    src = Path(engine.__file__).with_name(f"{module}.py").read_text()
    for node in ast.parse(src).body:  # module level only (imports inside functions run where needed)
        if isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] == "pandas" for a in node.names), module
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] != "pandas", module


def test_match_arrays_equal_the_match_frame(load_texts) -> None:  # type: ignore[no-untyped-def]
    rs = load_texts(
        rule_text("a:\n  Image|endswith: '\\cmd.exe'\ncondition: a", title="cmd"),
        rule_text("a:\n  CommandLine|contains: 'vssadmin'\ncondition: a", title="vss"),
        rule_text("a:\n  Image|endswith: '\\nothere.exe'\ncondition: a", title="none"),
    )
    df = frame(
        [{"Image": "C:\\Windows\\cmd.exe", "CommandLine": c} for c in ("vssadmin delete", "dir", "vssadmin list")]
        + [{"Image": "C:\\x.exe", "CommandLine": "vssadmin"}]
    )
    ids, rows = rs.match_arrays(df)
    m = rs.evaluate(df)
    assert ids.tolist() == m["rule_id"].tolist() and rows.tolist() == m["row"].tolist()
    assert rows.dtype == "int64" and len(rows) == 6
    empty_ids, empty_rows = rs.match_arrays(df.iloc[:0])
    assert len(empty_ids) == 0 and empty_rows.dtype == "int64"
