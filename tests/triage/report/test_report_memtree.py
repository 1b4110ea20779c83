"""The report's memory process trees (triage/report/memtree.py) from the tables the memory analyzer keeps."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from triage.report.memtree import process_trees

T = datetime(2021, 3, 3, 2, 50, 5, tzinfo=UTC)


def _tables(folder: Path, tables: dict[str, list[dict]], status: str = "ok") -> None:
    folder.mkdir(parents=True)
    for name, rows in tables.items():
        pd.DataFrame(rows).to_parquet(folder / f"{name}.parquet")
    index = {"image": "evidence/EXCH01/memory_image/memory/mem.raw", "tables": {n: {"status": status} for n in tables}}
    (folder / "index.json").write_text(json.dumps(index))


def test_tree_rows_and_the_processes_only_psscan_found(tmp_path: Path) -> None:
    tree = [
        {
            "TreeDepth": 0,
            "PID": 4012,
            "PPID": 640,
            "ImageFileName": "w3wp.exe",
            "CreateTime": T,
            "Cmd": "w3wp.exe -ap x",
        },
        {"TreeDepth": 1, "PID": 5120, "PPID": 4012, "ImageFileName": "cmd.exe", "CreateTime": T, "Cmd": None},
    ]
    scan = [
        {"PID": 4012, "PPID": 640, "ImageFileName": "w3wp.exe", "CreateTime": T, "ExitTime": None},
        {"PID": 6248, "PPID": 4012, "ImageFileName": "rundll32.exe", "CreateTime": T, "ExitTime": None},
    ]
    _tables(tmp_path / "results" / "memory" / "A1", {"pstree": tree, "psscan": scan})
    (t,) = process_trees(tmp_path)
    assert t["image"].endswith("mem.raw") and t["folder"] == "results/memory/A1"
    assert [(r["depth"], r["pid"], r["name"], r["cmd"]) for r in t["rows"]] == [
        (0, 4012, "w3wp.exe", "w3wp.exe -ap x"),
        (1, 5120, "cmd.exe", ""),
    ]
    assert [(r["pid"], r["name"]) for r in t["scan_only"]] == [(6248, "rundll32.exe")]


def test_failed_or_damaged_tables_give_no_section(tmp_path: Path) -> None:
    _tables(tmp_path / "results" / "memory" / "A1", {"pstree": [{"TreeDepth": 0, "PID": 4}]}, status="error")
    bad = tmp_path / "results" / "memory" / "A2"
    bad.mkdir(parents=True)
    (bad / "index.json").write_text("{not json")
    assert process_trees(tmp_path) == []
    assert process_trees(tmp_path / "nothing-here") == []
