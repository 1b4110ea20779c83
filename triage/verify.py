"""``triage verify``: re-hash every file of the case against what the custody log recorded.

Checked: the custody chain (and, with ``--head``, a head kept elsewhere), ``case.json``, every
manifest row (strictly parsed) against its custody event, every artifact (hash, size, read-only),
every run record, result file and report file against the hashes recorded when they were written,
and the whole tree for files, links and folders nothing accounts for. A collection (or a report:
``report_begin`` without its ``report`` event) that never finished is *incomplete*; one that could not
write some files *failed*; both are told apart from tampering by their own exit codes.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage.case import CASE_DIRS, CASE_FILES, WRITE_ERROR, Case, ManifestRow, row_digest
from triage.custody import is_readonly_error, load_json
from triage.errors import ExitCode, IntegrityError
from triage.hashing import hash_file
from triage.results import is_record_name, read_records, record_files, record_run_id
from triage.seal import SEAL_DIR, check_seal

DERIVED_DIRS = ("timeline",)  # folders a command creates when asked (their files are custody-recorded)
_TEMP = re.compile(r"^\..*\.(part|tmp)-\d+$")  # a writer's temporary file (killed before its rename)


@dataclass
class VerifyReport:
    """What verify checked and every problem it found, by artifact, file or custody line."""

    artifacts_checked: int = 0
    bytes_checked: int = 0
    files_checked: int = 0  # case.json, run records, results, report files
    custody_events: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    incomplete: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    head: dict[str, Any] = field(default_factory=dict)
    anchor: dict[str, Any] | None = None
    recorded: str = ""
    seal: dict[str, Any] | None = None  # who sealed the case, when, the signature's state (None: never sealed)

    @property
    def ok(self) -> bool:
        return not (self.problems or self.incomplete or self.failed)

    @property
    def exit_code(self) -> ExitCode:
        if self.problems:
            return ExitCode.INTEGRITY
        if self.failed:
            return ExitCode.COLLECTION_FAILED
        if self.incomplete:
            return ExitCode.INCOMPLETE
        return ExitCode.OK

    @property
    def verdict(self) -> str:
        return {
            ExitCode.OK: "OK",
            ExitCode.INTEGRITY: "FAILED",
            ExitCode.COLLECTION_FAILED: "COLLECTION FAILED",
            ExitCode.INCOMPLETE: "INCOMPLETE",
        }[self.exit_code]

    def problem(self, where: str, what: str) -> None:
        self.problems.append({"where": where, "problem": what})

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "verdict": self.verdict,
            "exit_code": int(self.exit_code),
            "artifacts_checked": self.artifacts_checked,
            "bytes_checked": self.bytes_checked,
            "files_checked": self.files_checked,
            "custody_events": self.custody_events,
            "problems": self.problems,
            "incomplete": self.incomplete,
            "collection_failed": self.failed,
            "warnings": self.warnings,
            "custody_head": self.head,
            "anchor": self.anchor,
            "recorded": self.recorded,
            "seal": self.seal,
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
        report.problem(where, "artifact is writable (evidence copies are read-only)")


def _check_file(case: Case, rel: str, sha256: str, report: VerifyReport, what: str) -> None:
    path = case.path / rel
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            report.problem(rel, f"{what} is no longer a regular file")
            return
        digest = hash_file(path, ("sha256",))[1]["sha256"]
    except FileNotFoundError:
        report.problem(rel, f"{what} recorded in the custody log is missing")
        return
    except OSError as exc:
        report.problem(rel, f"cannot read {what}: {exc.strerror or exc}")
        return
    report.files_checked += 1
    if digest != sha256:
        report.problem(rel, f"{what} changed: custody recorded sha256 {sha256}, now {digest}")


def _check_report_file_while_pending(case: Case, rel: str, sha256: str, report: VerifyReport) -> None:
    """A report killed mid-way rewrote the files of the one before it: changed bytes are incomplete (6);
    a missing or replaced (non-regular) file is still a problem (a report never deletes or links)."""
    scratch = VerifyReport()
    _check_file(case, rel, sha256, scratch, "report file")
    report.files_checked += scratch.files_checked
    for p in scratch.problems:
        if p["problem"].startswith("report file changed:"):
            why = "rewritten by a report that never finished (report_begin without its end): rerun report"
            report.incomplete.append({"where": p["where"], "problem": why})
        else:
            report.problems.append(p)


def _details(ev: dict[str, Any]) -> dict[str, Any]:
    d = ev.get("details")
    return d if isinstance(d, dict) else {}


class _Ledger:
    """What the custody log says the case holds, from one pass over its events."""

    def __init__(self, case: Case) -> None:
        self.collect_rows: dict[str, str | None] = {}
        self.files: dict[str, tuple[str, str]] = {}  # relpath -> (sha256, what)
        self.run_records: list[str] = []
        self.run_ids: set[str] = set()
        self.begins: dict[str, list[str]] = {}  # collect_id -> sources
        self.ended: set[str] = set()
        self.started_since_end: list[str] = []  # logs from before collect ids: sources after the last end
        self.legacy_ends = 0
        self.last_end: dict[str, Any] | None = None
        self.has_collect = False
        self.report_pending: str | None = None  # a report_begin whose report event never came (killed)
        for ev in case.custody.events():
            action, d = ev.get("action"), _details(ev)
            if action == "create" and isinstance(d.get("case_json_sha256"), str):
                self.files["case.json"] = (d["case_json_sha256"], "case.json")
            elif action == "collect":
                self.collect_rows[str(d.get("artifact_id"))] = d.get("manifest_row_sha256")
                self.has_collect = True
            elif action == "analyze" and isinstance(d.get("run_record"), str):
                self.files[d["run_record"]] = (str(d.get("run_record_sha256")), "run record")
                self.run_records.append(d["run_record"])
                self.run_ids.add(str(d.get("run_id")))
            elif action == "report_begin":
                self.report_pending = str(d.get("report_id"))
            elif action == "report" and isinstance(d.get("outputs"), dict):
                for name, digest in d["outputs"].items():
                    self.files[f"report/{name}"] = (str(digest), "report file")
                if d.get("report_id") == self.report_pending:
                    self.report_pending = None
            elif action == "timeline" and isinstance(d.get("outputs"), dict):  # derived files (triage timeline)
                for rel, digest in d["outputs"].items():
                    self.files[str(rel)] = (str(digest), "timeline file")
            elif action == "rules_loaded" and isinstance(d.get("record"), str) and d.get("record_sha256"):
                self.files[d["record"]] = (str(d["record_sha256"]), "rule load record")
            elif action == "recover" and d.get("kept") and isinstance(d.get("file"), str):
                self.files[d["file"]] = (str(d.get("sha256")), "kept record")
            elif action == "collect_begin":
                self.begins[str(d.get("collect_id"))] = [str(s) for s in d.get("sources", [])]
                self.has_collect = True
            elif action == "collect_start":
                if not d.get("collect_id"):
                    self.started_since_end.append(str(d.get("source")))
                self.has_collect = True
            elif action == "collect_end":
                self.last_end = d
                if d.get("collect_id"):
                    self.ended.add(str(d["collect_id"]))
                else:
                    self.legacy_ends += 1
                    self.started_since_end = []

    def unfinished(self) -> list[tuple[str, list[str]]]:
        """Collect commands that never wrote collect_end and whose sources no later command completed."""
        done_sources = {s for cid, srcs in self.begins.items() if cid in self.ended for s in srcs}
        out = [
            (cid, [s for s in srcs if s not in done_sources])
            for cid, srcs in self.begins.items()
            if cid not in self.ended and not set(srcs) <= done_sources
        ]
        if self.started_since_end:
            out.append(("(no collect id)", self.started_since_end))
        return out


def verify_case(
    case: Case,
    *,
    progress: Callable[[int], None] | None = None,
    record: bool = True,
    anchor: str | None = None,
    ca: Path | None = None,
) -> VerifyReport:
    """Check the whole case against the custody log; record a ``verify`` event if the case is writable.

    With ``record``, the case lock is taken (waiting for a running writer) and a partial last custody
    line left by a full disk is repaired (and that recorded) first. On read-only media nothing is
    written; ``report.recorded`` says so. ``ca``: a PEM bundle the seal's certificate must chain to.
    """
    report = VerifyReport()
    done = False
    if record and _never_recorded(case):  # its first event must be the create event the resumed collect writes
        report.recorded = "not recorded: the case has no create event yet"
        record = False
    if record:
        try:
            with case.writer():
                case.custody.prepare()
                _verify(case, report, progress, anchor, ca)
                done = True
                ev = case.custody.append(
                    "verify",
                    ok=report.ok,
                    verdict=report.verdict,
                    artifacts_checked=report.artifacts_checked,
                    bytes_checked=report.bytes_checked,
                    files_checked=report.files_checked,
                    custody_events=report.custody_events,
                    problems=len(report.problems),
                    incomplete=len(report.incomplete),
                    collection_failed=len(report.failed),
                    first_problems=(report.problems + report.failed + report.incomplete)[:20],
                    anchor=report.anchor,
                )
                report.recorded = f"verify event {ev['seq']} in {case.custody.path}"
                report.head = {"seq": ev["seq"], "hash": ev["hash"]}
        except IntegrityError as exc:  # custody.head unreadable: reported above, nothing appended after it
            report.recorded = f"not recorded: {exc}"
        except OSError as exc:
            if not is_readonly_error(exc) and exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            report.recorded = (
                f"not recorded: {case.custody.path.parent} cannot be written ({exc.strerror}); "
                "this output is the only record of this verify"
            )
    if not done:
        _verify(case, report, progress, anchor, ca)
    return report


def _verify(
    case: Case, report: VerifyReport, progress: Callable[[int], None] | None, anchor: str | None, ca: Path | None
) -> None:
    if _never_recorded(case):
        report.incomplete.append(
            {"where": "custody.jsonl", "problem": "the case was created but nothing was recorded: rerun the collect"}
        )
        return
    n_events, chain_problems, facts = case.custody.walk(anchor)
    report.custody_events = n_events
    report.head = {"seq": facts["last_seq"], "hash": facts["last_hash"]}
    if anchor is not None:
        report.anchor = {"hash": anchor, "found": "anchor_seq" in facts}
        if "anchor_seq" in facts:
            report.anchor |= {"seq": facts["anchor_seq"], "events_after": facts["events_after_anchor"]}
    for p in chain_problems:
        if p.problem.startswith("partial last line"):
            report.incomplete.append({"where": f"custody.jsonl line {p.line}", "problem": p.problem})
        else:
            report.problem(f"custody.jsonl line {p.line}", p.problem)
    ledger = _Ledger(case)

    # case.json, as created
    if "case.json" in ledger.files:
        _check_file(case, "case.json", ledger.files["case.json"][0], report, "case.json")
    else:
        report.problem("case.json", "no custody event records the hash of case.json (the create event is gone)")

    # the manifest, row by row, against the custody events that recorded the rows
    listed: set[str] = set()
    seen_ids: set[str] = set()
    latest: dict[tuple[str, str], ManifestRow] = {}
    unfinished = ledger.unfinished()
    lines = list(case.manifest_lines())
    # a collect writes rows in batches, then their events: one killed in between leaves a run of rows at the end
    recorded_lines = [n for n, row, _ in lines if row is not None and row.artifact_id in ledger.collect_rows]
    last_recorded = recorded_lines[-1] if recorded_lines else 0
    for lineno, row, err in lines:
        if row is None:
            where = f"manifest.jsonl line {lineno}"
            if err.startswith("partial last line"):
                report.incomplete.append({"where": where, "problem": err + "; the next collect repairs it"})
            else:
                report.problem(where, err)
            continue
        seen_ids.add(row.artifact_id)
        digest = ledger.collect_rows.get(row.artifact_id)
        if digest != row_digest(row.as_dict()):
            known = row.artifact_id in ledger.collect_rows
            why = "differs from the custody record" if known else "not in the custody log"
            where = f"manifest.jsonl line {lineno} ({row.artifact_id})"
            if not known and unfinished and lineno > last_recorded:  # killed between the rows and their events
                report.incomplete.append({"where": where, "problem": f"last manifest row {why}: the collect was cut"})
            else:
                report.problem(where, f"manifest row {why}")
        latest[(row.source_host, row.source_path)] = row
        if row.outcome in ("success", "empty") and row.relpath:
            listed.add(row.relpath)
            _check_row(case, row, report, progress)
    for art in sorted(a for a in set(ledger.collect_rows) - seen_ids if a):
        report.problem(f"manifest ({art})", "artifact recorded in custody but its manifest row is gone")

    # files written after collection: run records, results, reports, rule load records
    expected = {rel: v for rel, v in ledger.files.items() if rel != "case.json"}
    results: dict[str, str] = {}
    for rel in ledger.run_records:
        try:
            body = load_json((case.path / rel).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # reported below as missing or changed
        if not isinstance(body, dict):
            continue
        recorded = body.get("results")
        if isinstance(recorded, dict):
            for name in body.get("analyzers") or {}:  # this run's snapshot replaces the analyzer's earlier one
                prefix = f"results/{name}/"
                results = {k: v for k, v in results.items() if not k.startswith(prefix)}
            results.update({str(k): str(v) for k, v in recorded.items()})
    for rel, digest in results.items():
        expected[rel] = (digest, "result file")
    for rel, (digest, what) in sorted(expected.items()):
        if what == "report file" and ledger.report_pending:
            _check_report_file_while_pending(case, rel, digest, report)
        else:
            _check_file(case, rel, digest, report, what)
    _check_results_against_units(case, report)

    sealed = _check_seal(case, report, ca)

    # everything else in the tree
    _walk_tree(case, report, listed, set(expected) | {"case.json"} | sealed, ledger)

    # was every collection finished, and did it write every file?
    if not ledger.has_collect:
        report.incomplete.append({"where": "custody.jsonl", "problem": "nothing was ever collected into this case"})
    for cid, sources in unfinished:
        report.incomplete.append(
            {
                "where": f"collect {cid}",
                "problem": f"collection never finished (no collect_end) for {', '.join(sources) or 'its sources'}: "
                "rerun the same collect to resume",
            }
        )
    for (host, source), row in sorted(latest.items()):
        if row.outcome == "failure" and row.details.startswith(WRITE_ERROR):
            report.failed.append(
                {"where": f"{host} {source}", "problem": f"could not be written into the case ({row.details})"}
            )
    end_failed = int((ledger.last_end or {}).get("write_failures") or 0)
    if end_failed and not report.failed:
        report.failed.append(
            {"where": "collect_end", "problem": f"the last collection could not write {end_failed} files"}
        )


def _check_seal(case: Case, report: VerifyReport, ca: Path | None) -> set[str]:
    """The seal (triage/seal.py): its problems, its "after the seal" warnings; the seal files it accounts for."""
    check = check_seal(case.path, case.case_id, case.custody.events, ca)
    report.problems += check.problems
    report.warnings += check.warnings
    report.seal = check.status
    return check.files


def _check_results_against_units(case: Case, report: VerifyReport) -> None:
    """Each unit record's result file must be there with the hash the record gives (catches a deleted
    or replaced parquet even in cases made before run records listed result hashes). Unit records and batch
    records (a row per artifact, one findings file per batch) alike; each file is read once."""
    root = case.path / "results"
    if not root.is_dir():
        return
    checked: set[str] = set()
    for run in record_files(case.path):
        where = run.relative_to(case.path).as_posix()
        try:
            recs = read_records(run)
        except OSError as exc:
            report.problem(where, f"cannot read unit record: {exc.strerror or exc}")
            continue
        except ValueError as exc:
            why = "not valid JSON" if isinstance(exc, json.JSONDecodeError) else str(exc)
            report.problem(where, f"unit record is {why}")
            continue
        for rec in recs:
            rel, digest = rec.get("result_path"), rec.get("result_sha256")
            if not rel or not digest or f"{rel}\x00{digest}" in checked:
                continue
            checked.add(f"{rel}\x00{digest}")
            path = case.path / str(rel)
            try:
                actual = hash_file(path, ("sha256",))[1]["sha256"]
            except FileNotFoundError:
                report.problem(str(rel), "result file named by its unit record is missing")
                continue
            except OSError as exc:
                report.problem(str(rel), f"cannot read result file: {exc.strerror or exc}")
                continue
            if actual != digest:
                report.problem(str(rel), f"result file changed: its unit record says sha256 {digest}, now {actual}")


def _walk_tree(case: Case, report: VerifyReport, listed: set[str], known: set[str], ledger: _Ledger) -> None:
    """Stray files, links and empty folders anywhere in the case."""
    for dirpath, dirs, files in os.walk(case.path):
        here = Path(dirpath)
        rel_dir = "" if here == case.path else here.relative_to(case.path).as_posix()
        for d in list(dirs):
            full = here / d
            if full.is_symlink():
                report.problem(f"{rel_dir}/{d}".lstrip("/"), "symbolic link in the case (never written by triage)")
                dirs.remove(d)
            elif rel_dir == "" and d not in (*CASE_DIRS, SEAL_DIR) and d not in DERIVED_DIRS:
                report.problem(d, "folder at the case root that triage does not write")
        if rel_dir and not dirs and not files and rel_dir not in CASE_DIRS:
            if rel_dir.startswith("evidence/") and ledger.unfinished():
                # a copy thread made the folder and was killed before its file was placed
                why = "empty folder in evidence/, left by a collect that never finished"
                report.incomplete.append({"where": rel_dir + "/", "problem": why})
                continue
            where = "warnings" if rel_dir.startswith(("results/", "runs/", "report/")) else "problems"
            entry = {"where": rel_dir + "/", ("warning" if where == "warnings" else "problem"): "empty folder"}
            getattr(report, where).append(entry)
        for name in files:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            full = here / name
            if full.is_symlink():
                report.problem(rel, "symbolic link in the case (never written by triage)")
                continue
            if rel_dir == "":
                if name not in CASE_FILES:
                    report.problem(rel, "file at the case root that triage does not write")
                continue
            if rel in listed or rel in known:
                continue
            top = rel.split("/", 1)[0]
            if _TEMP.match(name):
                report.incomplete.append(
                    {"where": rel, "problem": "temporary file of an interrupted command; rerun it to resume"}
                )
            elif top == "evidence" and ledger.unfinished():
                why = "file in evidence/ that no manifest row accounts for, left by a collect that never finished"
                report.incomplete.append({"where": rel, "problem": why})
            elif top == "evidence":
                report.problem(rel, "file in evidence/ that no manifest row accounts for")
            elif top == "results":
                run_id = record_run_id(full) if is_record_name(name) else None
                if run_id is not None and run_id not in ledger.run_ids:
                    why = f"written by analyze run {run_id}, which never finished; rerun analyze"
                    report.incomplete.append({"where": rel, "problem": why})
                elif not ledger.run_records or not _results_recorded(case, ledger):
                    report.warnings.append({"where": rel, "warning": "result file not recorded by any run record"})
                else:
                    report.problem(rel, "file in results/ that no run record accounts for")
            elif top == "report" and ledger.report_pending:
                why = "report file written by a report that never finished (report_begin without its end): rerun report"
                report.incomplete.append({"where": rel, "problem": why})
            else:
                report.problem(rel, f"file in {top}/ that no custody event accounts for")


def _results_recorded(case: Case, ledger: _Ledger) -> bool:
    """Whether this case's run records list result hashes (records by older versions do not)."""
    for rel in ledger.run_records:
        try:
            body = load_json((case.path / rel).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(body, dict) and isinstance(body.get("results"), dict):
            return True
    return False


def _never_recorded(case: Case) -> bool:
    """case.json written and the command killed before its first custody event (nothing else there)."""
    try:
        empty_log = not case.custody.path.exists() or case.custody.path.stat().st_size == 0
        no_head = not case.custody.head_path.exists() or case.custody.head_path.stat().st_size == 0
        no_rows = not case.manifest_path.exists()
        no_evidence = not any((case.path / "evidence").rglob("*"))
    except OSError:
        return False
    return empty_log and no_head and no_rows and no_evidence
