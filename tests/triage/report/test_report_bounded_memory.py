"""The text exports stream: their peak memory stays far below the size of what they write.

Each export runs in a fresh interpreter over a ``findings.parquet`` of wide findings (about 1.3 KiB each),
read in Arrow batches as the export workers read it, and its peak resident memory above the imports is
compared with the size of the file it wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from triage.finding import coerce_findings

ROWS = 80_000
CHUNK = 4_096

PROBE = """
import json, resource, sys
from pathlib import Path
from triage.report import textexports
kind, parquet, out, chunk = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
textexports.write_jsonl(parquet, out, 16)  # the libraries are loaded before the baseline is taken
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
skipped = 0
if kind == "csv":
    textexports.write_csv(parquet, out, chunk)
elif kind == "jsonl":
    textexports.write_jsonl(parquet, out, chunk)
else:
    skipped = textexports.write_timesketch_jsonl(parquet, out, chunk)[0]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"grew": peak - base, "skipped": skipped}))
"""


@pytest.fixture(scope="module")
def wide_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ROWS`` findings, each with a message and attributes of about 600 bytes, 1 in 10 without a time."""
    n = np.arange(ROWS)
    rec = pd.Series(n).astype(str)
    pad = "x" * 560
    ts = pd.Series(pd.to_datetime(1614736447 + n, unit="s", utc=True))
    ts[n % 10 == 0] = pd.NaT
    df = pd.DataFrame(
        {
            "finding_id": rec.str.zfill(32),
            "case_id": "C",
            "host": "EXCH" + (n % 4).astype(str),
            "analyzer": "eventlog",
            "analyzer_version": "1",
            "rule_id": "SIGMA-" + (n % 40).astype(str),
            "rule_title": "rule",
            "severity": np.array(["info", "low", "medium", "high", "critical"])[n % 5],
            "confidence": "medium",
            "title": "Finding " + rec,
            "message": "Record " + rec + " " + pad,
            "ts": ts,
            "ts_desc": "Event logged",
            "evidence_id": "A1",
            "evidence_path": "evidence/h/evtx/Security.evtx",
            "evidence_sha256": "0" * 64,
            "location": "rec#" + rec,
            "mitre": "T1505.003",
            "cve": "",
            "ed2102_steps": "10",
            "tags": "sigma,logon",
            "references": "",
            "attributes": '{"record": ' + rec + ', "pad": "' + pad + '"}',
        }
    )
    path = tmp_path_factory.mktemp("wide") / "findings.parquet"
    coerce_findings(df).to_parquet(path, index=False, row_group_size=CHUNK)
    return path


@pytest.mark.slow  # ~100 MiB written per export: seconds on an idle machine, minutes on a loaded one
@pytest.mark.parametrize("kind", ["csv", "jsonl", "timesketch"])
def test_text_exports_hold_a_chunk_not_the_file(wide_parquet: Path, tmp_path: Path, kind: str) -> None:
    out = tmp_path / f"out.{kind}"
    r = subprocess.run(
        [sys.executable, "-c", PROBE, kind, str(wide_parquet), str(out), str(CHUNK)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    got = json.loads(r.stdout.strip().splitlines()[-1])
    size = out.stat().st_size
    assert size > 90 << 20  # every row written: ~1.2 KiB each
    lines = sum(1 for _ in out.open("rb")) - (1 if kind == "csv" else 0)
    assert lines == (ROWS - ROWS // 10 if kind == "timesketch" else ROWS)
    assert got["skipped"] == (ROWS // 10 if kind == "timesketch" else 0)
    # a chunk of 4,096 rows is ~5 MiB of text; the whole file is ~100 MiB
    assert got["grew"] < size // 3, (got["grew"] >> 20, size >> 20)
