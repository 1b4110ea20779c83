"""Manifest lines are read by a fast path when they are what triage writes, with the strict reader's results."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from triage.case import ManifestRow, parse_row, row_line
from triage.custody import strict_json

BASE = ManifestRow(
    "A0123456789abcde", "web_file", "success", "HOST", "/src/a.aspx", "triage.collectors.volume", "1.0",
    "2026-12-07T16:00:00.000000Z", relpath="evidence/HOST/web_file/C/a.aspx", size=12, sha256="0" * 64,
    extra={"format": "aspx", "nested": {"n": 3, "list": ["x", None, True]}},
)  # fmt: skip


def _row(**kw: Any) -> ManifestRow:
    return dataclasses.replace(BASE, **kw)


@pytest.mark.parametrize(
    "row",
    [
        _row(),
        _row(source_path="C:/Users/Ünïcode ✓/\"quoted\"\\back\nslash.aspx"),
        _row(source_path="/src/bad-\udcff-name.aspx"),  # written by json (escaped surrogate): the strict path
        _row(extra={"ratio": 0.5}),  # a float: the strict path
    ],
    ids=["plain", "escapes", "undecodable", "float"],
)
def test_a_written_line_reads_back_as_its_row_as_bytes_or_text(row: ManifestRow) -> None:
    data, _ = row_line(row)
    assert parse_row(data) == parse_row(data.decode("utf-8", "surrogateescape")) == row
    assert parse_row(data).as_dict() == strict_json(data.decode("utf-8", "surrogateescape"))


def test_a_repeated_key_is_refused_even_in_canonical_form() -> None:
    data, _ = row_line(_row())
    body = json.loads(data)
    # the same key twice in a compact line that orjson reads (keeping one value): the fast path must not take it
    twice = data[:-2] + b',"source_path":' + json.dumps(body["source_path"]).encode() + b"}\n"
    with pytest.raises(ValueError, match="duplicated key 'source_path'"):
        parse_row(twice)
    spaced = json.dumps(body, sort_keys=True, indent=1).replace("\n", " ") + "\n"  # not canonical: strict path
    assert parse_row(spaced.encode()) == _row()


def test_a_read_row_is_the_row_init_makes_with_or_without_its_optional_fields() -> None:
    """A line with every field (as triage writes it) makes the very row ``ManifestRow(**fields)`` makes: the same
    attributes in field order (what ``as_dict`` and the row digest read); a line without the optional fields
    (an older manifest) gets their defaults; a line that is not a row is refused either way."""
    row = _row(md5="1" * 32, family="web_files", details="note")
    data, digest = row_line(row)
    got = parse_row(data)
    assert got == row and type(got) is ManifestRow
    assert list(vars(got).items()) == list(vars(row).items())
    assert got.as_dict() == row.as_dict() and list(got.as_dict()) == [f.name for f in dataclasses.fields(row)]
    assert got.digest == digest
    required = {f.name for f in dataclasses.fields(row) if f.default is dataclasses.MISSING} - {"extra"}
    short = {k: v for k, v in row.as_dict().items() if k in required}
    older = parse_row(json.dumps(short, separators=(",", ":"), sort_keys=True) + "\n")
    assert older == ManifestRow(**short)
    assert (older.storage, older.extra, older.relpath, older.family) == ("copy", {}, None, "")
    assert list(vars(older)) == [f.name for f in dataclasses.fields(row)]
    bad = json.loads(data)
    bad["size"] = True  # a bool is not a size, whichever way the row is made
    with pytest.raises(ValueError, match="field 'size'"):
        parse_row(json.dumps(bad, separators=(",", ":"), sort_keys=True) + "\n")
