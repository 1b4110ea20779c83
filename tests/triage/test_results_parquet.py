"""A unit's findings file is built in Arrow (no pandas in the worker) and is the file the findings frame gives."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq

from triage.finding import SEVERITIES, Finding, findings_frame
from triage.results import findings_parquet


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


def test_writing_findings_does_not_import_pandas() -> None:
    """Without pandas the text columns are built from buffers, with it by Arrow's conversion: the same bytes."""
    code = (
        "import sys\n"
        "from tests.triage.test_results_parquet import _findings\n"
        "from triage.results import findings_parquet\n"
        "sys.stdout.buffer.write(findings_parquet(_findings()))\n"
        "sys.stderr.write(str('pandas' in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stderr.decode().strip().endswith("False")
    assert "pandas" in sys.modules  # here: the other path
    assert out.stdout[:4] == b"PAR1"
    assert out.stdout == findings_parquet(_findings())
