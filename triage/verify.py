"""``triage verify``: re-hash every artifact and walk the custody chain."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from triage.case import Case, ManifestRow
from triage.hashing import hash_file


@dataclass
class VerifyReport:
    """What verify checked and every problem it found, by artifact or custody line."""

    artifacts_checked: int = 0
    bytes_checked: int = 0
    custody_events: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, where: str, what: str) -> None:
        self.problems.append({"where": where, "problem": what})

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "artifacts_checked": self.artifacts_checked,
            "bytes_checked": self.bytes_checked,
            "custody_events": self.custody_events,
            "problems": self.problems,
            "warnings": self.warnings,
        }


def _check_row(case: Case, row: ManifestRow, report: VerifyReport, progress: Callable[[int], None] | None) -> None:
    path = case.artifact_path(row)
    where = f"{row.artifact_id} {row.relpath}" + (f" -> {path}" if row.storage == "reference" else "")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        report.problem(where, "artifact is missing")
        return
    except OSError as exc:
        report.problem(where, f"cannot stat artifact: {exc}")
        return
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        report.problem(where, "artifact is no longer a regular file")
        return
    try:
        size, digests = hash_file(path, ("sha256", "md5"))
    except OSError as exc:
        report.problem(where, f"cannot read artifact: {exc}")
        return
    if progress:
        progress(size)
    report.artifacts_checked += 1
    report.bytes_checked += size
    if size != row.size:
        report.problem(where, f"size changed: manifest {row.size}, now {size}")
    if digests["sha256"] != row.sha256:
        report.problem(where, f"sha256 changed: manifest {row.sha256}, now {digests['sha256']}")
    elif row.md5 and digests["md5"] != row.md5:
        report.problem(where, f"md5 changed: manifest {row.md5}, now {digests['md5']}")
    if row.storage == "copy" and st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        report.warnings.append({"where": where, "warning": "artifact is writable (should be read-only)"})


def verify_case(case: Case, *, progress: Callable[[int], None] | None = None, record: bool = True) -> VerifyReport:
    """Check every stored artifact against the manifest and the manifest against custody."""
    report = VerifyReport()
    n_events, chain_problems = case.custody.verify()
    report.custody_events = n_events
    for p in chain_problems:
        report.problem(f"custody.jsonl line {p.line}", p.problem)
    # every manifest row must be the one the custody log recorded when it was written
    recorded = {}
    for ev in case.custody.events():
        if ev.get("action") == "collect":
            d = ev.get("details", {})
            recorded[d.get("artifact_id")] = d.get("manifest_row_sha256")
    rows = list(case.manifest())
    listed: set[str] = set()
    for lineno, row in enumerate(rows, 1):
        if recorded.get(row.artifact_id) != row.digest:
            why = "not in the custody log" if row.artifact_id not in recorded else "differs from the custody record"
            report.problem(f"manifest.jsonl line {lineno} ({row.artifact_id})", f"manifest row {why}")
        if row.outcome in ("success", "empty") and row.relpath:
            listed.add(row.relpath)
            _check_row(case, row, report, progress)
    missing_rows = set(recorded) - {r.artifact_id for r in rows}
    for art in sorted(a for a in missing_rows if a):
        report.problem(f"manifest ({art})", "artifact recorded in custody but its manifest row is gone")
    evidence_root = case.path / "evidence"
    if evidence_root.exists():
        for dirpath, _dirs, files in os.walk(evidence_root):
            for name in files:
                rel = Path(dirpath, name).relative_to(case.path).as_posix()
                if rel not in listed:
                    report.problem(rel, "file in evidence/ that no manifest row accounts for")
    if record:
        case.custody.append(
            "verify",
            ok=report.ok,
            artifacts_checked=report.artifacts_checked,
            bytes_checked=report.bytes_checked,
            custody_events=n_events,
            problems=len(report.problems),
            first_problems=report.problems[:20],
        )
    return report
