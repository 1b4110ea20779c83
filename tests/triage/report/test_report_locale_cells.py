"""CSV cells stay text in every locale (`,` and `;` separators, line breaks); bidi controls show in CSV and HTML."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
import pytest

from triage.report.cells import (
    FORMULA_START,
    neutralise_formulas,
    neutralise_series,
    visible_controls,
    visible_series,
    xlsx_text,
)
from triage.report.exports import write_frame_csv

UA = "Mozilla/5.0;=cmd|' /C calc'!A0;"
HOSTILE = [
    UA,
    'a,=HYPERLINK("http://x")',
    "ok\n@SUM(A1)",
    "ok\r\n+cmd|' /C calc'!A0",
    "one; -2+3",
    "tab\t=1",
    "shell\u202egpj.aspx",
    "plain text, nothing to do",
]


def _segments_a_reader_may_make(line: str) -> list[str]:
    """Every cell a reader may see in a line: split at `,` and `;` alike, quotes ignored or honoured."""
    out = re.split(r"[,;\t]", line)
    return [seg.strip().strip('"').strip() for seg in out]


def test_neutralise_each_segment() -> None:
    assert neutralise_formulas(UA) == "Mozilla/5.0;'=cmd|' /C calc'!A0;"
    assert neutralise_formulas("a,=b") == "a,'=b"
    assert neutralise_formulas("x\n@y") == "x\n'@y"
    assert neutralise_formulas("=a;=b") == "'=a;'=b"
    assert neutralise_formulas("C:/inetpub; D:/x") == "C:/inetpub; D:/x"
    s = pd.Series([UA, "fine", None, "=x"], dtype="string")
    assert neutralise_series(s).tolist() == ["Mozilla/5.0;'=cmd|' /C calc'!A0;", "fine", pd.NA, "'=x"]


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_csv_has_no_formula_cell_in_any_locale(tmp_path: Path, delimiter: str) -> None:
    path = tmp_path / "f.csv"
    df = pd.DataFrame({"message": HOSTILE, "n": range(len(HOSTILE))})
    write_frame_csv(df, path)
    raw = path.read_text(encoding="utf-8")
    # a reader that honours quotes but uses this locale's separator
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter=delimiter))
    for row in rows:
        for cell in row:
            for part in re.split(r"[\r\n]", cell):
                assert not part.lstrip(" \t").startswith(("=", "+", "-", "@")), cell
    # a reader that ignores quotes and splits at both separators and line breaks
    for line in raw.splitlines():
        for seg in _segments_a_reader_may_make(line):
            assert not seg.startswith(("=", "+", "@")), (line, seg)
            assert not re.match(r"-\D", seg), (line, seg)
    # the comma reader gets every value back, neutralised only where needed
    with open(path, newline="", encoding="utf-8") as fh:
        back = list(csv.DictReader(fh))
    assert back[0]["message"] == "Mozilla/5.0;'=cmd|' /C calc'!A0;"
    assert back[7]["message"] == "plain text, nothing to do"
    assert back[2]["message"] == "ok\n'@SUM(A1)"
    assert all(not r["message"].startswith(FORMULA_START) for r in back)


def test_bidi_controls_are_visible(tmp_path: Path) -> None:
    assert visible_controls("shell\u202egpj.aspx") == "shell<U+202E>gpj.aspx"
    assert visible_controls("\u2066x\u2069") == "<U+2066>x<U+2069>"
    assert visible_controls(5) == 5
    s = pd.Series(["a\u200fb", "c"], dtype="string")
    assert visible_series(s).tolist() == ["a<U+200F>b", "c"]
    assert xlsx_text("=\u202e") == "'=<U+202E>"
    path = tmp_path / "f.csv"
    write_frame_csv(pd.DataFrame({"message": HOSTILE}), path)
    text = path.read_text(encoding="utf-8")
    assert "\u202e" not in text and "shell<U+202E>gpj.aspx" in text


def test_bidi_in_the_html_page() -> None:
    from triage.report.html import _env

    page = _env().from_string("<p>{{ name }}</p>").render(name="shell\u202egpj.aspx<b>")
    assert page == "<p>shell&lt;U+202E&gt;gpj.aspx&lt;b&gt;</p>"


def test_csv_series_is_visible_then_neutralised_cell_for_cell() -> None:
    import random

    from triage.report.cells import BIDI_CONTROLS, csv_series, neutralise_series, visible_series

    rng = random.Random(7)
    alphabet = [*"ab ,;\t\r\n=+-@'\"x", *BIDI_CONTROLS, "é", "\u2028"]
    values = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(20_000)] + [None]
    s = pd.Series(values, dtype="string")
    fast, slow = csv_series(s), neutralise_series(visible_series(s)).astype("string")
    assert fast.fillna("<missing>").tolist() == slow.fillna("<missing>").tolist()
    assert fast.isna().sum() == 1 and (fast != s).fillna(False).sum() > 1000  # many cells did need a change
