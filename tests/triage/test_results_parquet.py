"""A unit's findings file is built in Arrow (no pandas in the worker) and is the file the findings frame gives."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from triage.finding import FINDING_COLUMNS, SEVERITIES, Finding, findings_frame
from triage.results import FindingColumns, count_findings, findings_parquet


def _findings() -> list[Finding]:
    times = [
        datetime(2021, 3, 3, 1, 2, 3, 456789, tzinfo=UTC),
        None,
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(2021, 3, 3, tzinfo=timezone(timedelta(hours=5))),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    ]
    return [
        Finding(
            analyzer="yara",
            analyzer_version="1.0",
            rule_id=f"rule-{i}",
            rule_title="t\u00e9st \u6f22\u5b57",
            severity=sev,
            title="bytes \udcff in a name",  # escaped by Finding, raw bytes kept in attributes
            message="" if i % 2 else 'line\nbreak, "quotes"',
            evidence_id=f"A{i}",
            evidence_path="C:/inetpub/wwwroot/x.aspx",
            evidence_sha256="ab" * 32,
            ts=ts,
            mitre=("T1505.003",) if i % 2 else (),
            tags=("a", "b"),
            attributes='{"k": 1}',
        )
        for i, (sev, ts) in enumerate(zip(SEVERITIES, times, strict=True))
    ]


def _frame_bytes(found: list[Finding]) -> bytes:
    buf = io.BytesIO()
    findings_frame(found).to_parquet(buf, index=False)
    return buf.getvalue()


def test_arrow_built_findings_file_equals_the_frame_file() -> None:
    for found in (_findings(), _findings()[:1], []):
        ours = pq.read_table(io.BytesIO(findings_parquet(found)))
        theirs = pq.read_table(io.BytesIO(_frame_bytes(found)))
        assert ours.schema.equals(theirs.schema, check_metadata=True)
        assert ours.equals(theirs)
        assert ours.num_rows == len(found)
    ours = pq.read_table(io.BytesIO(findings_parquet(_findings()))).to_pandas()
    assert ours.equals(pq.read_table(io.BytesIO(_frame_bytes(_findings()))).to_pandas())
    assert str(ours["severity"].dtype) == str(findings_frame([])["severity"].dtype)
    assert ours["ts"].isna().sum() == 1


def _in_checkout(code: str) -> subprocess.CompletedProcess[bytes]:
    """``code`` run by a fresh interpreter in the checkout (its own imports, its own pandas state)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_writing_findings_does_not_import_pandas() -> None:
    """Without pandas the text columns are built from buffers, with it by Arrow's conversion: the same bytes."""
    code = (
        "import sys\n"
        "from tests.triage.test_results_parquet import _findings\n"
        "from triage.results import findings_parquet\n"
        "sys.stdout.buffer.write(findings_parquet(_findings()))\n"
        "sys.stderr.write(str('pandas' in sys.modules))\n"
    )
    out = _in_checkout(code)
    assert out.stderr.decode().strip().endswith("False")
    assert "pandas" in sys.modules  # here: the other path
    assert out.stdout[:4] == b"PAR1"
    assert out.stdout == findings_parquet(_findings())


def test_findings_written_after_the_pandas_switch_are_the_same_bytes() -> None:
    """A worker (pandas' import switched off) builds text columns with Arrow's conversion: no pandas, same file."""
    code = (
        "import sys\n"
        "from triage.arrowlite import arrow_without_pandas, converts_without_pandas\n"
        "from tests.triage.test_results_parquet import _findings\n"
        "from triage.results import findings_parquet\n"
        "before = converts_without_pandas()\n"
        "arrow_without_pandas()\n"
        "sys.stdout.buffer.write(findings_parquet(_findings()))\n"
        "sys.stderr.write(f\"{before} {converts_without_pandas()} {'pandas' in sys.modules}\")\n"
    )
    out = _in_checkout(code)
    assert out.stderr.decode().split()[-3:] == ["False", "True", "False"]
    assert out.stdout == findings_parquet(_findings())


def _fields(i: int, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "analyzer": "eventlog",
        "analyzer_version": "1.0",
        "rule_id": f"rule-{i}",
        "rule_title": "Rule",
        "severity": SEVERITIES[i % len(SEVERITIES)],
        "title": f"title {i}",
        "message": "m\u00e9ssage",
        "evidence_id": "A1",
        "evidence_path": "evidence/h/evtx/C/Windows/x.evtx",
        "evidence_sha256": "cd" * 32,
        "location": f"Security#{i}",
        "host": "h",
        "case_id": "C",
        "confidence": "high",
        "ts": datetime(2021, 3, 3, 1, 2, 3, i, tzinfo=UTC),
        "ts_desc": "Event logged",
        "mitre": ("T1003", "T1059.001"),
        "cve": (),
        "ed2102_steps": ("5",),
        "tags": ("sigma",),
        "references": ["https://a", "https://b"],
        "attributes": {"event": {"Image": "C:\\x.exe", "Z": "\u6f22"}, "computer": "H", "n": 3},
    }
    return base | kw


def test_finding_columns_store_what_a_finding_stores() -> None:
    """Rows added column-wise are the rows Finding objects store, also where Finding escapes or converts."""
    cases = [
        _fields(0),
        _fields(1, ts=None, mitre=()),
        _fields(2, ts="2021-03-03T01:02:03Z"),  # text time
        _fields(3, ts=datetime(2021, 3, 3, 4)),  # naive: UTC
        _fields(4, ts=datetime(2021, 3, 3, tzinfo=timezone(timedelta(hours=5)))),
        _fields(5, title="bytes \udcff in a title"),  # escaped, raw bytes into attributes
        _fields(6, attributes={"event": {"Data": "lone \ud800 surrogate"}}),
        _fields(7, attributes={"k\udcfe": 1}),  # in a key
        _fields(8, attributes='{"text": "given as text"}'),
        _fields(9, attributes={"when": datetime(2021, 1, 1, tzinfo=UTC)}),  # written by the JSON default
        _fields(10, tags="a,b"),  # a list field in its stored form
        _fields(11, finding_id="f" * 32),
    ]
    block = FindingColumns()
    for fields in cases:
        block.add(fields)
    assert len(block) == len(cases) == count_findings([block])
    expected = [Finding(**fields).storable() for fields in cases]  # type: ignore[arg-type]
    got = [{name: block.columns[name][i] for name in FINDING_COLUMNS} for i in range(len(cases))]
    assert got == expected
    assert "raw_hex" in got[5]["attributes"] and "raw_hex" in got[6]["attributes"]


def test_finding_columns_refuse_what_a_finding_refuses() -> None:
    with pytest.raises(ValueError, match="severity"):
        FindingColumns().add(_fields(0, severity="urgent"))
    with pytest.raises(TypeError):
        FindingColumns().add(_fields(0, colour="red"))


def test_a_file_of_findings_and_blocks_is_the_file_of_findings_alone() -> None:
    """Blocks are written in their place among Finding objects (and survive a pickle, as a pool row does)."""
    cases = [_fields(i) for i in range(6)]
    first, second = FindingColumns(), FindingColumns()
    for fields in cases[1:3]:
        first.add(fields)
    second.add(cases[5])
    objects = [Finding(**fields) for fields in cases]  # type: ignore[arg-type]
    mixed = [objects[0], pickle.loads(pickle.dumps(first)), objects[3], objects[4], second]
    assert count_findings(mixed) == len(cases)
    assert findings_parquet(mixed) == findings_parquet(objects)


def test_rows_sharing_fields_store_what_findings_store() -> None:
    """add_many: the shared part checked once, each row on its own (a row that escapes text, sets its own severity
    or tags, or has no dict of attributes takes the Finding way), rows in order."""
    common = {k: v for k, v in _fields(0).items() if k not in ("title", "location", "ts", "attributes")}
    common |= {"title": "", "location": ""}
    rows: list[dict[str, object]] = [
        {"title": "plain", "location": "Security#1", "ts": datetime(2021, 3, 3, tzinfo=UTC), "attributes": {"a": 1}},
        {"title": "lone \udcff", "location": "Security#2", "attributes": {"b": "x"}},
        {"title": "t", "location": "Security#3", "attributes": {"event": {"Data": "\ud83d"}}},
        {"title": "t", "location": "Security#4", "severity": "critical", "tags": ("own",), "attributes": {}},
        {"title": "t", "location": "Security#5", "attributes": "[1, 2]"},
        {"title": "t", "location": "Security#6", "ts": "2021-03-03T01:02:03+02:00", "attributes": {"c": None}},
    ]
    block = FindingColumns()
    block.add_many(common, rows)
    block.add_many(common | {"message": "shared \udcfe"}, rows[:1])  # the shared part escapes: every row too
    expected = [Finding(**(common | row)).storable() for row in rows]  # type: ignore[arg-type]
    expected.append(Finding(**(common | {"message": "shared \udcfe"} | rows[0])).storable())  # type: ignore[arg-type]
    got = [{name: block.columns[name][i] for name in FINDING_COLUMNS} for i in range(len(block))]
    assert got == expected
