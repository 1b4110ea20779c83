"""A small streaming XLSX (Office Open XML spreadsheet) writer for the report's workbooks.

The report's workbooks need little: text, numbers and booleans, a bold shaded header row frozen at the top,
column widths and list dropdowns. Written here as SpreadsheetML straight into the zip (inline strings, one
style for the header), the finding sheets are put together column-wise in Arrow, not cell by cell: a sheet of
10,000 findings costs tens of milliseconds where a cell-object writer costs seconds, and the report needs no
spreadsheet library at all. Values arrive spreadsheet-safe (see :mod:`triage.report.cells`); this module only
makes them valid XML.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
# a CR would read back as LF (XML end-of-line handling): written as a character reference it stays a CR
_TEXT_ENTITIES = {"\r": "&#13;"}
# the characters XML 1.0 (and so XLSX) cannot carry: a workbook holding one does not open at all
ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_STYLES = (
    _HEAD + f'<styleSheet xmlns="{_MAIN}">'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="3"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill>'
    '<fill><patternFill patternType="solid"><fgColor rgb="00DDE3EA"/><bgColor rgb="00DDE3EA"/></patternFill></fill>'
    "</fills>"
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="2" borderId="0" xfId="0" applyFont="1" applyFill="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)
HEADER_STYLE = 1


def column_letter(i: int) -> str:
    """The letters of the 1-based column ``i`` (1 -> A, 27 -> AA)."""
    out = ""
    while i > 0:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def shown_illegal(text: str) -> str:
    """``text`` with each character XML cannot carry shown as ``\\xNN``."""
    return ILLEGAL_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _text_cell(ref: str, text: str, style: int = 0) -> str:
    s = f' s="{style}"' if style else ""
    text = shown_illegal(text)  # values arrive safe; a caller that forgot must not make the workbook unreadable
    return f'<c r="{ref}" t="inlineStr"{s}><is><t xml:space="preserve">{escape(text, _TEXT_ENTITIES)}</t></is></c>'


def _cell(ref: str, value: Any) -> str:
    """One cell of a value already made safe: text, a number, a boolean (None: no cell)."""
    if value is None or value == "":  # an empty text is no value (as spreadsheet writers have it)
        return ""
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return f'<c r="{ref}"><v>{value!r}</v></c>'
    return _text_cell(ref, str(value))


class Sheet:
    """One worksheet being written: the header row first, then rows or whole columns."""

    def __init__(self, title: str, header: Sequence[str], widths: Mapping[int, float] | None) -> None:
        self.title = title
        self.ncols = len(header)
        self.widths = widths or {}
        self.validations: list[tuple[str, list[str]]] = []  # (formula, ranges)
        self.next_row = 2
        cells = "".join(_text_cell(f"{column_letter(i)}1", h, HEADER_STYLE) for i, h in enumerate(header, 1))
        self.parts: list[str | bytes] = [f'<row r="1">{cells}</row>']

    def rows(self, rows: Iterable[Iterable[Any]]) -> None:
        """Append rows of safe values (text, numbers, booleans, None)."""
        letters: list[str] = []
        for row in rows:
            values = list(row)
            self.ncols = max(self.ncols, len(values))
            while len(letters) < len(values):
                letters.append(column_letter(len(letters) + 1))
            n = self.next_row
            cells = "".join(_cell(f"{letters[i]}{n}", v) for i, v in enumerate(values))
            self.parts.append(f'<row r="{n}">{cells}</row>')
            self.next_row += 1

    def text_columns(self, columns: Sequence[Any]) -> None:
        """Append rows given as whole text columns (Arrow string arrays of one length, nulls for no cell),
        put together in Arrow: no Python per cell."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        if not columns or not len(columns[0]):
            return
        n = len(columns[0])
        big = pa.large_string()
        nums = pc.cast(pa.array(np.arange(self.next_row, self.next_row + n, dtype=np.int64)), big)

        def lit(text: str) -> Any:
            return pa.scalar(text, big)

        empty = lit("")
        parts: list[Any] = [lit('<row r="'), nums, lit('">')]
        for i, col in enumerate(columns, 1):
            text = pc.cast(col, big)
            text = pc.if_else(pc.equal(text, empty), pa.scalar(None, big), text)  # empty text: no cell
            for raw, ent in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("\r", "&#13;")):
                text = pc.replace_substring(text, raw, ent)
            cell = pc.binary_join_element_wise(
                lit(f'<c r="{column_letter(i)}'),
                nums,
                lit('" t="inlineStr"><is><t xml:space="preserve">'),
                text,
                lit("</t></is></c>"),
                empty,
            )
            parts.append(pc.fill_null(cell, ""))  # a missing value: no cell
        parts.append(lit("</row>"))
        rows = pc.binary_join_element_wise(*parts, empty)
        if isinstance(rows, pa.ChunkedArray):
            rows = rows.combine_chunks()
        offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64)
        start, end = int(offsets[rows.offset]), int(offsets[rows.offset + len(rows)])
        data = rows.buffers()[2]
        if data is not None and end > start:
            self.parts.append(memoryview(data)[start:end].tobytes())
        self.next_row += n

    def dropdown(self, choices: Sequence[str], ranges: Sequence[str]) -> None:
        """A list validation (a dropdown of ``choices``) over the cell ranges (``"F2:F9"``)."""
        self.validations.append(('"' + ",".join(choices) + '"', list(ranges)))

    def xml(self) -> Iterable[bytes]:
        """The worksheet's XML, in pieces."""
        yield (
            _HEAD + f'<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}">'
            f'<dimension ref="A1:{column_letter(max(self.ncols, 1))}{self.next_row - 1}"/>'
            '<sheetViews><sheetView workbookViewId="0">'
            '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
            '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/></sheetView></sheetViews>'
            '<sheetFormatPr defaultRowHeight="15"/>'
        ).encode()
        if self.widths:
            cols = "".join(
                f'<col min="{i}" max="{i}" width="{w}" customWidth="1"/>' for i, w in sorted(self.widths.items())
            )
            yield f"<cols>{cols}</cols>".encode()
        yield b"<sheetData>"
        for part in self.parts:
            yield part if isinstance(part, bytes) else part.encode("utf-8")
        yield b"</sheetData>"
        if self.validations:
            items = "".join(
                f'<dataValidation type="list" allowBlank="1" showErrorMessage="0" sqref="{" ".join(ranges)}">'
                f"<formula1>{escape(formula)}</formula1></dataValidation>"
                for formula, ranges in self.validations
            )
            yield f'<dataValidations count="{len(self.validations)}">{items}</dataValidations>'.encode()
        yield b"</worksheet>"


class Workbook:
    """Sheets in the order they are made, written as one ``.xlsx`` by :meth:`save`."""

    def __init__(self) -> None:
        self.sheets: list[Sheet] = []

    def sheet(self, title: str, header: Sequence[str], widths: Mapping[int, float] | None = None) -> Sheet:
        ws = Sheet(title, header, widths)
        self.sheets.append(ws)
        return ws

    def save(self, path: Path) -> None:
        n = len(self.sheets)
        overrides = "".join(
            f'<Override PartName="/xl/worksheets/sheet{i}.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            for i in range(1, n + 1)
        )
        types = (
            _HEAD + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/styles.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
            f"{overrides}</Types>"
        )
        root_rels = (
            _HEAD + f'<Relationships xmlns="{_PKG_REL}">'
            f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        )
        sheets = "".join(
            f'<sheet name={quoteattr(ws.title)} sheetId="{i}" r:id="rId{i}"/>' for i, ws in enumerate(self.sheets, 1)
        )
        workbook = (
            _HEAD + f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}">'
            '<bookViews><workbookView activeTab="0"/></bookViews>'
            f"<sheets>{sheets}</sheets></workbook>"
        )
        rels = "".join(
            f'<Relationship Id="rId{i}" Type="{_REL}/worksheet" Target="worksheets/sheet{i}.xml"/>'
            for i in range(1, n + 1)
        )
        rels += f'<Relationship Id="rId{n + 1}" Type="{_REL}/styles" Target="styles.xml"/>'
        wb_rels = _HEAD + f'<Relationships xmlns="{_PKG_REL}">{rels}</Relationships>'
        # level 1: the sheets are mostly repetitive markup, which compresses well even at the fastest level
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            zf.writestr("[Content_Types].xml", types)
            zf.writestr("_rels/.rels", root_rels)
            zf.writestr("xl/workbook.xml", workbook)
            zf.writestr("xl/_rels/workbook.xml.rels", wb_rels)
            zf.writestr("xl/styles.xml", _STYLES)
            for i, ws in enumerate(self.sheets, 1):
                with zf.open(f"xl/worksheets/sheet{i}.xml", "w", force_zip64=False) as fh:
                    for piece in ws.xml():
                        fh.write(piece)
