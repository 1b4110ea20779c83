"""String tests run once per distinct column value and shared by every rule of a sub-frame; rules are skipped
where none of their cover tests holds. Both must give exactly what a row-by-row evaluation gives."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sigma_support import SYSMON, frame, rule_text

from triage.sigma.compiler import SMALL_DISTINCT, KeywordLeaf, StringTest, StrLeaf, distinct_hits
from triage.sigma.engine import rule_plan
from triage.sigma.frame import SubFrame
from triage.sigma.translate import classify

IMAGES = [
    "C:\\Windows\\System32\\cmd.exe",
    "C:\\Windows\\System32\\CMD.EXE",
    "C:\\Users\\bob\\AppData\\Local\\Temp\\x.exe",
    "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
    "cmd.exe\n",
    "",
    "ünïcode\\Cmd.exe",
]


def _values(n_distinct: int, rows: int, seed: int) -> list[str | None]:
    """``rows`` values drawn from the fixed images plus generated ones (about ``n_distinct`` distinct), nulls."""
    rng = random.Random(seed)
    pool = IMAGES + [f"C:\\Tools\\t{i}\\Run{i % 7}.EXE" for i in range(max(0, n_distinct - len(IMAGES)))]
    return [None if rng.random() < 0.1 else rng.choice(pool) for _ in range(rows)]


def _tests() -> list[StringTest]:
    from sigma.types import SigmaString

    specs = [
        ["*\\cmd.exe"],
        ["cmd.exe", "*\\powershell.exe"],
        ["*\\temp\\*", "c:\\tools\\*"],
        ["*run3.exe", "*run5*", "x*cmd.exe"],
        ["*"],
        ["", "*\\system32\\*"],  # the empty value, and a needle inside values
    ]
    out = [
        StringTest([classify(SigmaString(p), cased) for p in spec], cased=cased)
        for spec in specs
        for cased in (False, True)
    ]
    out.append(StringTest(regex=r"run[0-3]\.exe$", regex_flags="i"))  # RE2 through Arrow
    out.append(StringTest(regex=r"(?<=tools\\)t1\d"))  # look-behind: Python re fallback
    return out


@pytest.mark.parametrize("n_distinct", [5, SMALL_DISTINCT + 40])  # few and many distinct values
@pytest.mark.parametrize("nul", [False, True])  # a value holding a NUL cannot be searched in the joined text
def test_distinct_value_evaluation_equals_row_by_row(n_distinct: int, nul: bool) -> None:
    values = _values(n_distinct, 900, seed=n_distinct) + (["C:\\x\x00\\cmd.exe"] if nul else [])
    df = pd.DataFrame({"Image": pd.array(values, dtype="str")})
    ctx = SubFrame(df, None, {})
    sel = np.arange(0, len(df), 3)
    for test in _tests():
        leaf = StrLeaf("Image", test)
        raw = pa.array(values, type=pa.large_string())
        rows = test.run(raw if test.cased else pa.compute.utf8_lower(raw))  # the row-by-row reference
        assert np.array_equal(leaf.match(ctx, None), rows), test.key
        assert np.array_equal(leaf.match(ctx, sel), rows[sel]), test.key
    codes, hit = distinct_hits(ctx.column("Image"), _tests()[0])  # folded: one slot per distinct lower-case value
    assert len(hit) - 1 == codes.max() + 1 == len({v.lower() for v in values if v is not None}) < len(values) / 2


def test_a_test_shared_by_rules_runs_once_per_column(monkeypatch: pytest.MonkeyPatch) -> None:
    from sigma.types import SigmaString

    df = pd.DataFrame({"Image": pd.array(_values(20, 300, seed=1), dtype="str")})
    ctx = SubFrame(df, None, {})
    calls = []
    first = StringTest([classify(SigmaString("*\\cmd.exe"), False)])
    same = StringTest([classify(SigmaString("*\\cmd.exe"), False)])  # another rule's identical test
    for name in ("run_distinct", "run_values", "run"):  # whichever way the test runs, it runs once
        orig = getattr(StringTest, name)
        monkeypatch.setattr(StringTest, name, lambda self, v, orig=orig: calls.append(1) or orig(self, v))
    a = StrLeaf("Image", first).match(ctx, None)
    b = StrLeaf("Image", same).match(ctx, np.arange(100))  # more rows than SMALL_ROWS: the shared path
    assert len(calls) == 1 and np.array_equal(a[:100], b) and a.sum() > 0


@pytest.mark.parametrize("swept_first", [False, True])
def test_a_few_rows_read_through_distinct_values_match_row_by_row(swept_first: bool) -> None:
    """A leaf over at most SMALL_ROWS rows reads their values through the column's distinct values once those
    exist (a cover sweep built them): the same matches, and no Python list of the whole column."""
    values = _values(30, 600, seed=7)
    df = pd.DataFrame({"Image": pd.array(values, dtype="str")})
    raw = pa.array(values, type=pa.large_string())
    picks = [np.array([0, 5, 6, 599]), np.arange(0, 600, 15)]
    for test in [t for t in _tests() if t.small_ok]:  # regexes (|re) have no few-rows path
        ctx = SubFrame(df, None, {})
        col = ctx.column("Image")
        if swept_first:
            distinct_hits(col, test)
        rows = test.run(raw if test.cased else pa.compute.utf8_lower(raw))
        for sel in picks:
            assert np.array_equal(StrLeaf("Image", test).match(ctx, sel), rows[sel]), test.key
            assert np.array_equal(KeywordLeaf(test).match(ctx, sel), rows[sel]), test.key
        assert ("_raw_list" in col.__dict__ or "_folded_list" in col.__dict__) is not swept_first


# ---------------------------------------------------------------------------------------------------- covers
def _plan(load_texts, detection: str):  # type: ignore[no-untyped-def]
    rs = load_texts(rule_text(detection))
    assert len(rs.loaded) == 1, rs.skipped
    assert rs.loaded[0].plan == rule_plan(rs.loaded[0].matcher)  # computed at load, kept with the rule
    return rs.loaded[0].plan


def _fields(cover) -> set[str]:  # type: ignore[no-untyped-def]
    return {leaf.field if isinstance(leaf, StrLeaf) else "<keyword>" for leaf in cover}


def test_cover_of_and_or_not(load_texts) -> None:  # type: ignore[no-untyped-def]
    both = _plan(
        load_texts, "a:\n  Image|endswith: '\\x.exe'\nb:\n  CommandLine|contains: ' -enc '\ncondition: a and b"
    )
    assert both.cover is not None and len(both.cover) == 1  # either one will do
    either = _plan(
        load_texts, "a:\n  Image|endswith: '\\x.exe'\nb:\n  OriginalFileName: 'x.exe'\ncondition: a or b"
    )
    assert either.cover is not None and _fields(either.cover) == {"Image", "OriginalFileName"}
    assert _plan(load_texts, "a:\n  Image|endswith: '\\x.exe'\ncondition: not a").cover is None
    assert _plan(load_texts, "a:\n  EventID: 4688\nb:\n  Image: x\ncondition: a or b").cover is None  # a number
    keyword = _plan(load_texts, "keywords:\n  - 'mimikatz'\ncondition: keywords")
    assert keyword.cover is not None and isinstance(keyword.cover[0], KeywordLeaf)


def test_rules_skipped_by_their_cover_match_exactly_what_the_full_scan_matches(load_texts) -> None:  # type: ignore[no-untyped-def]
    """A built rule set (every cover shape) over built events: index with covers == full scan, and not empty."""
    detections = [
        "a:\n  Image|endswith: '\\cmd.exe'\nb:\n  CommandLine|contains: '/c '\ncondition: a and b",
        "a:\n  Image|endswith: '\\cmd.exe'\nf:\n  ParentImage|endswith: '\\explorer.exe'\ncondition: a and not f",
        "a:\n  Image|endswith: '\\rundll32.exe'\nb:\n  OriginalFileName: 'RUNDLL32.EXE'\ncondition: a or b",
        "a:\n  Image|endswith: '\\nothere.exe'\nb:\n  CommandLine|contains: 'never'\ncondition: a or b",
        "a:\n  CommandLine|contains|all:\n    - 'vssadmin'\n    - 'delete'\ncondition: a",
        "keywords:\n  - 'lsass'\ncondition: keywords",
        "a:\n  User|contains: 'SYSTEM'\ncondition: not a",
        "a:\n  CommandLine|re: '(?i)pass(word)?[:=]'\ncondition: a",
        "a:\n  Image|endswith: '\\cmd.exe'\nb:\n  IntegrityLevel: null\ncondition: a and b",
    ]
    rs = load_texts(*(rule_text(d, title=f"r{i}") for i, d in enumerate(detections)))
    assert len(rs.loaded) == len(detections), rs.skipped
    rng = random.Random(7)
    images = ["C:\\Windows\\System32\\cmd.exe", "C:\\Windows\\rundll32.exe", "C:\\x\\vssadmin.exe", "C:\\a\\b.exe"]
    lines = ["cmd /c whoami", "vssadmin delete shadows", "procdump lsass", "x password=1", "rundll32 a,b", ""]
    rows = [
        {
            "Image": rng.choice(images),
            "CommandLine": rng.choice(lines),
            "ParentImage": rng.choice(["C:\\Windows\\explorer.exe", "C:\\Windows\\services.exe"]),
            "OriginalFileName": rng.choice(["RUNDLL32.EXE", "Cmd.Exe", None]),
            "User": rng.choice(["NT AUTHORITY\\SYSTEM", "CORP\\bob"]),
            "IntegrityLevel": rng.choice(["High", None]),
        }
        for _ in range(400)
    ]
    rows += [{"Channel": "Security", "EventID": 4624, "TargetUserName": "lsass"}] * 3  # another source
    df = frame(rows)
    # where only one side of an OR holds anywhere, the cover must still let the rule run
    no_ofn = frame([r for r in rows if r.get("OriginalFileName") != "RUNDLL32.EXE"])
    no_image = frame([r for r in rows if not str(r.get("Image", "")).endswith("rundll32.exe")])
    assert len(rs.evaluate(no_ofn)) and len(rs.evaluate(no_image))
    for part in (df, df.iloc[:40].reset_index(drop=True), no_ofn, no_image):  # big, under SMALL_ROWS, one-sided
        full = rs.evaluate(part, indexed=False)
        fast = rs.evaluate(part, indexed=True)
        assert fast[["rule_id", "row"]].values.tolist() == full[["rule_id", "row"]].values.tolist()
    hit = set(rs.evaluate(df)["rule_title"])
    assert {"r0", "r2", "r4", "r5", "r6", "r7"} <= hit and "r3" not in hit
    assert df["Channel"].iloc[0] == SYSMON
