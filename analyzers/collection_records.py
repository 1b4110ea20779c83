"""The ``collection_records`` analyzer: does each copy match what the collection tool says it copied?

KAPE writes a ``*_CopyLog.csv`` (source path, size, SHA-1, source times) and Velociraptor an ``uploads.json``
(path, size, SHA-256/MD5) beside the files they collect. The collector attaches the tool's record to the
manifest row of each artifact (``extra.tool_record``) and hashes with SHA-1 too where the tool gave one. This
host-scope unit compares them: a size or hash that disagrees means the bytes in the case are not the bytes the
tool copied from the server (altered or damaged in transit or storage, or the tool's output was tampered
with), so nothing derived from that artifact should be trusted without a second copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from triage.case import ManifestRow
from triage.errors import Skip
from triage.finding import Finding
from triage.indicators import rule_metas
from triage.registry import Analyzer, Unit, register

RULES = rule_metas("rulemeta/collection_records.yaml")
RULE = RULES["collection.copy_mismatch"]
CHECKS = (("size", "size"), ("sha1", "sha1"), ("sha256", "sha256"), ("md5", "md5"))  # tool field, manifest field


def mismatches(row: ManifestRow, record: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, what the tool recorded, what triage hashed) for every field that disagrees."""
    out: list[tuple[str, Any, Any]] = []
    for theirs, ours in CHECKS:
        expected, got = record.get(theirs), getattr(row, ours, None)
        if expected in (None, "") or got in (None, ""):
            continue
        if theirs == "size":
            try:
                if int(expected) != int(got):
                    out.append((theirs, int(expected), int(got)))
            except (TypeError, ValueError):
                continue
        elif str(expected).strip().lower() != str(got).lower():
            out.append((theirs, str(expected), str(got)))
    return out


@register
class CollectionRecords(Analyzer):
    """Compares every artifact with the KAPE CopyLog / Velociraptor uploads.json record of the same file."""

    name = "collection_records"
    version = "1.0"
    in_process = True  # no C engine: a few small units may run in the command's process
    consumes = (
        "registry_hive",
        "evtx",
        "event_json",
        "exchange_log",
        "exchange_binary",
        "iis_log",
        "iis_config",
        "web_file",
        "suspicious_file",
        "memory_image",
        "file",
    )
    scope = "host"

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        """One finding per artifact whose size or hash disagrees with the tool's record."""
        rows = unit.members or [unit.evidence]
        checked = 0
        for row in rows:
            record = (row.extra or {}).get("tool_record")
            if not isinstance(record, dict):
                continue
            checked += 1
            diffs = mismatches(row, record)
            if not diffs:
                continue
            tool = str(record.get("tool", "collection tool"))
            what = "; ".join(f"{f}: {tool} recorded {e}, the case holds {g}" for f, e, g in diffs)
            yield unit.finding(
                RULE,
                title=f"{row.source_path}: the copy is not what {tool} copied ({', '.join(f for f, _, _ in diffs)})",
                message=(
                    f"{what}. The bytes in the case differ from those {tool} read on the server "
                    f"(record in {record.get('log', '?')}); findings from this artifact rest on an altered or damaged "
                    "copy: collect it again or compare with another copy."
                ),
                location=str(record.get("source_file") or row.source_path),
                evidence=row,
                attributes={"tool_record": record, "mismatches": [list(d) for d in diffs]},
            )
        if not checked:
            raise Skip("no artifact of this host carries a collection tool's record (KAPE CopyLog, uploads.json)")
