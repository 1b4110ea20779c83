"""The literal prefilter of ``|re`` tests: a regex none of whose required literals occurs in a column's values
is not run there. It must never change a result: a prefilter that says "nowhere" where the regex matches a
value would lose findings.
"""

from __future__ import annotations

import numpy as np
import pytest
from sigma_support import frame

from triage.sigma.compiler import StringTest, StrLeaf, distinct_hits, regex_factors
from triage.sigma.frame import SubFrame


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        # the longest run of literal characters of the sequence, lower-cased under (?i)
        ("(?i)\\.exe\\s+[^\"]{0,64}WerFaultSecure\\.exe\\s+\\d{2,10}", (("werfaultsecure.exe",), True)),
        # an alternation: one literal per branch
        ("(?i)(\\biex\\b|invoke-expression)", (("iex", "invoke-expression"), True)),
        ("(Copy-Item|cpi) .{2,128} -Destination", ((" -Destination",), False)),
        # a repeat of at least one holds its body; an optional part holds nothing
        ("x(?:vssadmin)+y", (("vssadmin",), False)),
        ("abc(?:vssadmin)?d", (("abc",), False)),
        # a group with case flags of its own only separates runs
        ("abcd(?i:efghij)kl", (("abcd",), False)),
        # nothing long enough, or a branch with no literal: no prefilter
        ("(?i)\\s-m[ap]\\s", None),
        ("(?:vssadmin|[a-z]+)", None),
        # syntax Python's parser would read differently from RE2 (POSIX class), or cannot read (\\x{...})
        ("abcdef[[:alpha:]]", None),
        ("abcdef\\x{41}", None),
        ("(?i)abcd(?i)", None),
    ],
)
def test_required_literals(pattern: str, expected: tuple[tuple[str, ...], bool] | None) -> None:
    assert regex_factors(pattern) == expected


VALUES = [
    "C:\\Windows\\System32\\sc.exe config x",
    "SC.EXE CREATE svc",
    "\u017fc.exe config y",  # LONG S: (?i)s matches it, lower-casing keeps it apart
    "\u0131wr http://x",  # DOTLESS I: Python's (?i)i matches it
    "\u0130WR http://y",  # DOTTED CAPITAL I: lower-cases to i + a combining dot
    "invoke-expression $x",
    "\u212a-word",  # KELVIN SIGN lower-cases to k
    "",
]
PATTERNS = [
    "(?i)\\bsc(?:\\.exe)?\\s+(?:create|config)\\s",
    "(?i)(?:iwr|invoke-webrequest)\\s+http",
    "(?i)(\\biex\\b|invoke-expression)",
    "(?i)kkk|\u212a-word",
    "(?i)sc\\.exe\\s+\\S",  # RE2 matches the LONG S value
    "(?i)(?<!\\d)iwr\\s+\\S",  # look-behind: Python's re, which matches the DOTLESS I value
    "sc\\.exe config",  # case-sensitive: raw values
    "(?i)nowhere-at-all",
    "(?<=x)nowhere-at-all",  # look-behind: Python's re, not RE2
]


@pytest.mark.parametrize(
    "values",
    [VALUES, VALUES[:2], VALUES[2:5], [v for v in VALUES if not v.startswith(("\u017f", "\u0131"))]],
    ids=["all", "plain", "strays", "no-strays"],
)
def test_prefilter_never_changes_a_result(values: list[str]) -> None:
    df = frame([{"CommandLine": v} for v in values] + [{"CommandLine": None}])
    for pattern in PATTERNS:
        test = StringTest(regex=pattern)
        ctx = SubFrame(df, None, {})
        codes, hit = distinct_hits(ctx.column("CommandLine"), test)
        expected = test.run(ctx.column("CommandLine").strings(True, None))  # type: ignore[union-attr]
        assert hit[codes].tolist() == expected.tolist(), pattern
        assert StrLeaf("CommandLine", test).match(SubFrame(df, None, {}), None).tolist() == expected.tolist()


def test_a_regex_whose_literals_are_nowhere_is_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    df = frame([{"CommandLine": v} for v in VALUES[:2] + VALUES[5:]])
    runs: list[str] = []
    real = StringTest.run
    monkeypatch.setattr(StringTest, "run", lambda self, arr: (runs.append(self.key[1]), real(self, arr))[1])
    absent, present = StringTest(regex="(?i)\\bvssadmin\\s+delete"), StringTest(regex="(?i)\\bsc(?:\\.exe)?\\s+create")
    ctx = SubFrame(df, None, {})
    col = ctx.column("CommandLine")
    assert not distinct_hits(col, absent)[1].any() and runs == []
    codes, hit = distinct_hits(col, present)
    assert np.flatnonzero(hit[codes]).tolist() == [1] and runs == [present.key[1]]
    # a value LONG S makes match: the folded text cannot tell (it keeps the LONG S), so the regex runs
    long_s = StringTest(regex="(?i)sc\\.exe\\s+\\S")
    assert long_s.factors == (("sc.exe",), True)
    ctx = SubFrame(frame([{"CommandLine": "\u017fc.exe create x"}]), None, {})
    codes, hit = distinct_hits(ctx.column("CommandLine"), long_s)
    assert hit[codes].tolist() == [True] and runs[-1] == long_s.key[1]
