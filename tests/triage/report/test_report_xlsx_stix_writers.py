"""Our own XLSX and STIX writers against the libraries they replace (openpyxl reads, stix2 validates)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from triage.report.stix import file_sco, stix_time
from triage.report.xlsx import Workbook, column_letter


def test_workbook_reads_back_with_openpyxl(tmp_path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    wb = Workbook()
    ws = wb.sheet("Find & <seek>", ["a", "b", "c"], {1: 30, 3: 12})
    ws.rows([("x & y <z>", 3, True), (" lead\r\nCR", 2.5, None), ("", None, False)])
    ws.text_columns([pa.array(["'=1+2", None]), pa.array(["a\rb", ""]), pa.array(["<t>", "&amp;"])])
    ws.dropdown(["Yes", "No"], ["B2:B9"])
    wb.sheet("Empty", ["only"])
    wb.save(tmp_path / "t.xlsx")
    book = openpyxl.load_workbook(tmp_path / "t.xlsx")
    assert book.sheetnames == ["Find & <seek>", "Empty"]
    sheet = book["Find & <seek>"]
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows == [
        ["a", "b", "c"],
        ["x & y <z>", 3, True],
        [" lead\r\nCR", 2.5, None],
        [None, None, False],
        ["'=1+2", "a\rb", "<t>"],
        [None, None, "&amp;"],
    ]
    assert sheet["A1"].font.b and sheet.freeze_panes == "A2"
    assert sheet.column_dimensions["A"].width == 30
    assert [dv.formula1 for dv in sheet.data_validations.dataValidation] == ['"Yes,No"']


def test_unsafe_values_still_give_a_workbook_that_opens(tmp_path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    wb = Workbook()
    ws = wb.sheet("Raw", ["head\x01er"])
    ws.rows([["nul\x00 and esc\x1b", float("inf"), float("-inf"), 3]])
    wb.save(tmp_path / "raw.xlsx")
    sheet = openpyxl.load_workbook(tmp_path / "raw.xlsx")["Raw"]
    assert sheet["A1"].value == "head\\x01er"
    assert [c.value for c in sheet[2]] == ["nul\\x00 and esc\\x1b", "inf", "-inf", 3]


def test_column_letters() -> None:
    assert [column_letter(i) for i in (1, 26, 27, 52, 703)] == ["A", "Z", "AA", "AZ", "AAA"]


def test_stix_writers_match_the_stix2_library() -> None:
    stix2 = pytest.importorskip("stix2")
    for hashes, name in (({"SHA-256": "ab" * 32}, "shell.aspx"), ({"SHA-256": "cd" * 32, "MD5": "ef" * 16}, "é.js")):
        assert file_sco(name, hashes)["id"] == stix2.File(name=name, hashes=hashes).id
    for when in (datetime(2021, 3, 3, 2, 14, 7, tzinfo=UTC), datetime(2021, 3, 3, 2, 14, 7, 120000, tzinfo=UTC)):
        ident = stix2.Identity(name="x", identity_class="system", created=when, modified=when)
        assert f'"created": "{stix_time(when, millis=True)}"' in ident.serialize()
        seen = stix2.Sighting(sighting_of_ref=f"indicator--{'1' * 8}-1111-4111-8111-{'1' * 12}", first_seen=when)
        assert f'"first_seen": "{stix_time(when)}"' in seen.serialize()
