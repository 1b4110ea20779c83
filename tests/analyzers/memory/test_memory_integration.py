"""Opt-in: every Volatility plugin on a real Windows memory image with real symbols.

Set ``TRIAGE_TEST_MEMORY_IMAGE`` to a Windows memory image (raw, vmem, lime, crash dump) and
``TRIAGE_TEST_SYMBOLS`` to a folder holding its kernel's ISF (or Volatility's windows.zip pack). Optional:
``TRIAGE_TEST_MEMORY_TIMEOUT`` (seconds per plugin, default 1800). The image is referenced in place, never copied.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from analyzers.memory.analyzer import TABLE_NAMES
from collectors.collect import collect_files
from collectors.sources import open_source_path
from triage.case import Case
from triage.runner import analyze_case, result_paths

IMAGE = os.environ.get("TRIAGE_TEST_MEMORY_IMAGE", "")
SYMBOLS = os.environ.get("TRIAGE_TEST_SYMBOLS", "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (IMAGE and SYMBOLS and Path(IMAGE).is_file() and Path(SYMBOLS).exists()),
        reason="set TRIAGE_TEST_MEMORY_IMAGE and TRIAGE_TEST_SYMBOLS to run every plugin on a real image",
    ),
]


def test_every_plugin_on_a_real_image(tmp_path: Path, vol_cache: Path) -> None:
    case = Case.create_or_open(tmp_path / "case", examiner="pytest", case_id="MEM-REAL")
    collect_files(case, open_source_path(IMAGE, "memory"), host="REAL", link="reference")
    timeout = float(os.environ.get("TRIAGE_TEST_MEMORY_TIMEOUT", "1800"))
    summary = analyze_case(
        case, only=("memory",), jobs=1, options={"memory": {"symbols": [SYMBOLS], "plugin_timeout": timeout}}
    )
    assert summary.errors == []
    (row,) = [r for r in case.evidence() if r.kind == "memory_image"]
    run = json.loads(result_paths(case.path, "memory", row.artifact_id)[1].read_text())
    folder = case.path / "results" / "memory" / row.artifact_id
    index = json.loads((folder / "index.json").read_text())["tables"]
    report = {t: (e["status"], e.get("rows"), e.get("seconds"), e.get("error", "")[:120]) for t, e in index.items()}
    print(json.dumps(report, indent=1))
    print("\n".join(run["warnings"]))
    assert not any("no Volatility symbol table" in w for w in run["warnings"]), "the symbols did not match"
    for table in TABLE_NAMES:
        assert index[table]["status"] == "ok", (table, index[table])
        assert (folder / f"{table}.parquet").is_file()
    for table in ("info", "pslist", "psscan", "pstree", "cmdline", "dlllist", "handles", "filescan", "svcscan"):
        assert index[table]["rows"] > 0, table
    pslist = pd.read_parquet(folder / "pslist.parquet")
    assert {"System", "lsass.exe"} <= set(pslist.ImageFileName)
    assert pslist.CreateTime.dt.tz is not None
