"""The process tree of each analysed memory image, for the report: Volatility's pstree table as the memory
analyzer kept it (``results/memory/<evidence_id>/pstree.parquet``), with the processes only the pool scan
found (psscan rows the process list does not hold) listed after it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from triage.custody import load_json

log = logging.getLogger(__name__)
MAX_ROWS = 500  # a busy server runs a few hundred processes; the full table stays in the parquet file


def _table(folder: Path, name: str, tables: dict[str, Any]) -> list[dict[str, Any]]:
    import pandas as pd

    if tables.get(name, {}).get("status") != "ok" or not (folder / f"{name}.parquet").is_file():
        return []
    return pd.read_parquet(folder / f"{name}.parquet").to_dict("records")


def _text(value: Any) -> str:
    return "" if value is None or value != value else str(value)  # NaN/None: empty


def process_trees(case_path: str | Path) -> list[dict[str, Any]]:
    """Per memory image with a pstree table: ``image``, ``folder``, ``rows`` (depth, pid, ppid, name, created,
    cmd), ``truncated`` and ``scan_only`` (psscan rows missing from the tree)."""
    out = []
    for index in sorted(Path(case_path, "results", "memory").glob("*/index.json")):
        try:
            meta = load_json(index.read_text(encoding="utf-8"))
            tables = meta.get("tables", {})
            tree = _table(index.parent, "pstree", tables)
            scan = _table(index.parent, "psscan", tables)
        except (OSError, ValueError) as exc:  # a damaged results folder costs only its own section
            log.warning("report: memory tables in %s unreadable: %s", index.parent, exc)
            continue
        if not tree:
            continue
        rows = [
            {
                "depth": int(r.get("TreeDepth") or 0),
                "pid": r.get("PID"),
                "ppid": r.get("PPID"),
                "name": _text(r.get("ImageFileName")),
                "created": _text(r.get("CreateTime")),
                "cmd": _text(r.get("Cmd")),
            }
            for r in tree[:MAX_ROWS]
        ]
        listed = {(r.get("PID"), _text(r.get("CreateTime"))) for r in tree}
        scan_only = [
            {
                "pid": r.get("PID"),
                "ppid": r.get("PPID"),
                "name": _text(r.get("ImageFileName")),
                "created": _text(r.get("CreateTime")),
                "exited": _text(r.get("ExitTime")),
            }
            for r in scan
            if (r.get("PID"), _text(r.get("CreateTime"))) not in listed
        ]
        out.append(
            {
                "image": _text(meta.get("image")) or index.parent.name,
                "folder": index.parent.relative_to(Path(case_path)).as_posix(),
                "rows": rows,
                "truncated": len(tree) > MAX_ROWS,
                "total": len(tree),
                "scan_only": scan_only[:MAX_ROWS],
            }
        )
    return out
