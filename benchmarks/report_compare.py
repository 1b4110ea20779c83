"""Compare two report folders of the same case (e.g. before and after a change to the report writers).

Text exports must be byte-identical; ``findings.parquet`` equal as tables; the workbooks equal cell by cell
(values, sheet names and order); the STIX bundles equal object for object once the times that differ between
two runs are set aside (``created``/``modified``/``published``, the bundle id); the ledger JSON equal outside
its generation time. ``report.html`` carries times and hashes of the run: only its size is shown.
Usage: python benchmarks/report_compare.py BEFORE_DIR AFTER_DIR
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

BYTES = ("findings.csv", "findings.jsonl", "timesketch.jsonl", "ledger.csv", "cisa_template.csv")
RUN_TIMES = {"created", "modified", "published", "generated"}


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _strip(obj: Any, run: tuple[str, ...] = ()) -> Any:
    """``obj`` without the run's own times: keys named as such, and values equal to the run's time
    (``run``: that time as written; STIX stands it in for findings without a time)."""
    if isinstance(obj, dict):
        return {k: _strip(v, run) for k, v in obj.items() if k not in RUN_TIMES}
    if isinstance(obj, list):
        return [_strip(v, run) for v in obj]
    return "<run time>" if obj in run else obj


def _run_time(objects: list[dict[str, Any]]) -> tuple[str, ...]:
    created = str(objects[0].get("created", "")) if objects else ""
    head, _, frac = created.rstrip("Z").partition(".")
    frac = frac.rstrip("0")
    return (created, head + (f".{frac}" if frac else "") + "Z")


def _trim(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row without its trailing empty cells (readers pad rows to the sheet's width or not)."""
    values = list(row)
    while values and values[-1] is None:
        values.pop()
    return tuple(values)


def _workbook(path: Path) -> list[tuple[str, list[tuple[Any, ...]]]]:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    out = [(ws.title, [_trim(r) for r in ws.iter_rows(values_only=True)]) for ws in wb.worksheets]
    wb.close()
    return out


def _rows_without_generated(sheets: list[tuple[str, list[tuple[Any, ...]]]]) -> list[Any]:
    # the summary's "Generated" row and the provenance's times, command line and custody head are the run's own
    own = ("generated", "started", "custody", "command_line")
    return [(t, [r for r in rows if not (r and str(r[0]).lower().startswith(own))]) for t, rows in sheets]


def compare(before: Path, after: Path) -> list[tuple[str, str]]:
    """(file, verdict) for every report file."""
    import pyarrow.parquet as pq

    out: list[tuple[str, str]] = []
    for name in BYTES:
        same = _sha(before / name) == _sha(after / name)
        out.append((name, "byte-identical" if same else "DIFFERENT"))
    a, b = pq.read_table(before / "findings.parquet"), pq.read_table(after / "findings.parquet")
    out.append(
        (
            "findings.parquet",
            "equal tables" if a.replace_schema_metadata(None).equals(b.replace_schema_metadata(None)) else "DIFFERENT",
        )
    )
    for name in ("findings.xlsx", "cisa_template.xlsx"):
        wa, wb = _rows_without_generated(_workbook(before / name)), _rows_without_generated(_workbook(after / name))
        out.append((name, "equal cell values" if wa == wb else "DIFFERENT"))
    sa = json.loads((before / "findings.stix.json").read_text(encoding="utf-8"))
    sb = json.loads((after / "findings.stix.json").read_text(encoding="utf-8"))
    same = _strip(sa["objects"], _run_time(sa["objects"])) == _strip(sb["objects"], _run_time(sb["objects"]))
    out.append(("findings.stix.json", f"equal objects ({len(sb['objects'])})" if same else "DIFFERENT"))
    la = json.loads((before / "ledger.json").read_text(encoding="utf-8"))
    lb = json.loads((after / "ledger.json").read_text(encoding="utf-8"))
    out.append(("ledger.json", "equal" if _strip(la) == _strip(lb) else "DIFFERENT"))
    out.append(
        ("report.html", f"{(before / 'report.html').stat().st_size:,} -> {(after / 'report.html').stat().st_size:,} B")
    )
    return out


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    rows = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    for name, verdict in rows:
        print(f"{name:22s} {verdict}")
    return 1 if any("DIFFERENT" in v for _, v in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
