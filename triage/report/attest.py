"""Attestations: a person's word on an ED 21-02 step, recorded in the case and kept apart from machine evidence.

An attestation names a step, a host, a status (done / not done / not applicable), who vouches for it, a note
and optionally the result of a scan (``clean`` or ``indications``) and files (a firewall export, an MSERT log,
the Test-ProxyLogon output a person ran on the server). The files enter the case through :meth:`Case.store`
like any evidence (hashed while copied, read-only, a manifest row of kind ``attestation_file``, a ``collect``
custody event), so ``triage verify`` checks them. The attestation itself is one ``attest`` custody event
holding who, step, status, note and the files' hashes: the hash chain makes it append-only. A later
attestation of the same step and host supersedes an earlier one; both stay on record and in the ledger.

Batch input is a sheet the agency fills (CSV with a header row, or YAML: a list of mappings) with the
columns of :data:`SHEET_COLUMNS`. Every row is checked, and every file opened, before anything is written:
a bad row is a usage error naming it, and nothing of the sheet is applied.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from triage import __version__
from triage.case import Case
from triage.custody import load_json
from triage.errors import CollectionFailed, UsageError
from triage.hashing import open_readonly, sha256_bytes
from triage.report.directive import Directive

ACTION = "attest"
FILE_KIND = "attestation_file"
COLLECTOR = "attest"
# what a person may say of a step (command-line spelling -> ledger status)
STATUSES = {"done": "done", "not-done": "not done", "not-applicable": "not applicable"}
RESULTS = ("clean", "indications")  # a scan's outcome, for the CISA template's dropdowns
SHEET_COLUMNS = ("step", "host", "status", "by", "note", "files", "result")
ALL_HOSTS = "*"
MAX_SHEET_BYTES = 8 << 20  # a filled sheet is a few KiB; anything this large is not one
MAX_NOTE = 4000
MAX_FIELD = 200  # step, status, by, host, result: short words
MAX_ERRORS_SHOWN = 10


class AttestationFileError(CollectionFailed):
    """A file attached to an attestation cannot be read (exit 5, COLLECTION_FAILED): nothing was recorded."""


@dataclass(frozen=True)
class AttestationInput:
    """One attestation to record, as given on the command line or in one row of a sheet."""

    step: str
    status: str  # the command-line spelling: done | not-done | not-applicable
    by: str
    note: str
    host: str = ""  # "" (the case's only host) or "*" (every host of the case)
    files: tuple[str, ...] = ()
    result: str = ""  # "" | clean | indications
    where: str = "command line"  # "sheet.csv row 3": named in errors and in the custody event


@dataclass(frozen=True)
class Attestation:
    """One recorded attestation, as read back from the custody log."""

    attestation_id: str
    host: str
    step: str
    status: str  # ledger spelling: done | not done | not applicable
    by: str
    note: str
    at: str  # when it was recorded (the custody event's time, UTC)
    recorded_by: str  # the examiner who ran the command
    seq: int
    result: str = ""
    files: tuple[dict[str, Any], ...] = ()  # artifact_id, name, relpath, sha256, size
    source: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ledger.json and the HTML page."""
        return {
            "attestation_id": self.attestation_id,
            "host": self.host,
            "step": self.step,
            "status": self.status,
            "by": self.by,
            "at": self.at,
            "note": self.note,
            "result": self.result,
            "files": [dict(f) for f in self.files],
            "recorded_by": self.recorded_by,
            "seq": self.seq,
            "source": self.source,
        }


def describe(att: dict[str, Any] | None) -> str:
    """One line for exports and notes: who attested what, when, with which files (by full sha256)."""
    if not att:
        return ""
    text = f"{att['status']} (attested by {att['by']}, {str(att['at'])[:10]}"
    text += f", result {att['result']}" if att.get("result") else ""
    text += f"): {att['note']}" if att.get("note") else ")"
    if att.get("files"):
        text += " [files: " + ", ".join(f"{f['name']} sha256 {f['sha256']}" for f in att["files"]) + "]"
    return text


# -- reading back -------------------------------------------------------------------------------------
def read_attestations(case_path: str | os.PathLike[str]) -> list[Attestation]:
    """Every attestation recorded in a case's custody log, oldest first (an empty list for no case)."""
    path = Path(case_path) / "custody.jsonl"
    if not str(case_path) or not path.is_file():
        return []
    out = []
    marker = f'"action": "{ACTION}"'
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            # the log holds one event per collected file: parse only the lines that can be attestations
            if marker not in line or not line.endswith("\n"):
                continue
            try:
                ev = load_json(line)
            except ValueError:
                continue  # a damaged line is verify's to report
            att = _from_event(ev)
            if att is not None:
                out.append(att)
    return out


def _from_event(ev: Any) -> Attestation | None:
    if not isinstance(ev, dict) or ev.get("action") != ACTION or not isinstance(ev.get("details"), dict):
        return None
    d = ev["details"]
    if d.get("status") not in STATUSES.values() or not isinstance(d.get("step"), str):
        return None
    files = tuple(f for f in d.get("files") or [] if isinstance(f, dict))
    return Attestation(
        attestation_id=str(d.get("attestation_id", "")),
        host=str(d.get("host", "")),
        step=d["step"],
        status=d["status"],
        by=str(d.get("by", "")),
        note=str(d.get("note", "")),
        at=str(ev.get("ts", "")),
        recorded_by=str(ev.get("actor", "")),
        seq=int(ev.get("seq") or 0),
        result=str(d.get("result") or ""),
        files=files,
        source=str(d.get("source", "")),
    )


def by_step(attestations: list[Attestation]) -> dict[tuple[str, str], list[Attestation]]:
    """(host, step) -> attestations, oldest first (the last one is in force)."""
    out: dict[tuple[str, str], list[Attestation]] = {}
    for a in sorted(attestations, key=lambda a: a.seq):
        out.setdefault((a.host, a.step), []).append(a)
    return out


# -- sheets -------------------------------------------------------------------------------------------
def read_sheet(path: Path) -> list[AttestationInput]:
    """The rows of a filled sheet (CSV or YAML), unchecked but for their shape; file paths are taken relative
    to the sheet's folder. A sheet that cannot be read or parsed is a usage error."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_SHEET_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"--from {path}: cannot read the sheet ({exc.strerror or exc})") from None
    if len(raw) > MAX_SHEET_BYTES:
        raise UsageError(f"--from {path}: larger than {MAX_SHEET_BYTES >> 20} MiB, not an attestation sheet")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"--from {path}: not UTF-8 text (save the sheet as UTF-8 CSV or YAML)") from None
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        records = _yaml_records(text, path)
    elif suffix in (".csv", ".txt"):
        records = _csv_records(text, path)
    else:
        raise UsageError(f"--from {path}: expected a .csv or .yaml sheet")
    if not records:
        raise UsageError(f"--from {path}: the sheet has no rows")
    base = path.parent
    out = []
    for where, rec in records:
        unknown = sorted(set(rec) - set(SHEET_COLUMNS))
        if unknown:
            raise UsageError(f"{where}: unknown column(s) {unknown}; the columns are {', '.join(SHEET_COLUMNS)}")
        files = rec.get("files")
        names = _split_files(files, where)
        out.append(
            AttestationInput(
                step=_text(rec.get("step")),
                status=_text(rec.get("status")),
                by=_text(rec.get("by")),
                note=_text(rec.get("note")),
                host=_text(rec.get("host")),
                files=tuple(str(n if Path(n).is_absolute() else base / n) for n in names),
                result=_text(rec.get("result")),
                where=where,
            )
        )
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():  # YAML reads step 4 as 4, and a CSV tool may write 4.0
        value = int(value)
    return " ".join(str(value).split())


def _split_files(value: Any, where: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    if isinstance(value, str):
        return [p.strip() for p in value.split(";") if p.strip()]
    raise UsageError(f"{where}: files must be a list or names separated by ';'")


def _csv_records(text: str, path: Path) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text))
    try:
        rows = list(reader)
    except csv.Error as exc:  # a field over the csv module's limit, a NUL byte ...
        raise UsageError(f"{path.name} row {reader.line_num}: not a CSV row ({exc})") from None
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    if "step" not in header:
        raise UsageError(f"{path.name} row 1: a header row naming the columns ({', '.join(SHEET_COLUMNS)}) is expected")
    out = []
    for n, row in enumerate(rows[1:], 2):  # spreadsheet numbering: the header is row 1
        if not any(c.strip() for c in row):
            continue
        where = f"{path.name} row {n}"
        if len(row) > len(header):
            raise UsageError(f"{where}: {len(row)} cells under a header of {len(header)} columns")
        out.append((where, {h: c for h, c in zip(header, row, strict=False) if h}))
    return out


def _yaml_records(text: str, path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        doc = yaml.load(text, Loader=_SheetLoader)  # a SafeLoader that also refuses aliases
    except yaml.YAMLError as exc:
        raise UsageError(f"--from {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(doc, dict) and set(doc) == {"attestations"}:
        doc = doc["attestations"]
    if not isinstance(doc, list):
        raise UsageError(f"--from {path}: expected a list of attestations (mappings of {', '.join(SHEET_COLUMNS)})")
    out = []
    for n, item in enumerate(doc, 1):
        where = f"{path.name} entry {n}"
        if not isinstance(item, dict):
            raise UsageError(f"{where}: expected a mapping of {', '.join(SHEET_COLUMNS)}")
        rec = {str(k).strip().lower(): v for k, v in item.items()}
        for key, value in rec.items():
            ok = _scalar(value) or (key == "files" and isinstance(value, list) and all(map(_scalar, value)))
            if not ok:
                raise UsageError(f"{where}: {key[:MAX_FIELD]} must be plain text (files: a list of names)")
        out.append((where, rec))
    return out


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


class _SheetLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases: a sheet is a few plain rows, and an alias can multiply one long
    string a million times (a few bytes of input, gigabytes of paths)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a sheet", mark)
        return super().compose_node(parent, index)


# -- checking -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Checked:
    """An attestation input that passed every check, with its hosts resolved and its files measured."""

    input: AttestationInput
    hosts: tuple[str, ...]
    files: tuple[tuple[Path, int], ...] = field(default=())  # path, size when checked


def check(inputs: list[AttestationInput], directive: Directive, hosts: list[str]) -> list[Checked]:
    """Check every input against the directive and the case's hosts, and open every attached file.

    All problems of the batch are collected first; bad fields are one :class:`UsageError` naming each row,
    an unreadable file an :class:`AttestationFileError`; either way nothing is recorded.
    """
    step_ids = {s.id for s in directive.steps}
    errors: list[str] = []
    resolved: list[tuple[AttestationInput, tuple[str, ...]]] = []
    for raw in inputs:
        # spreadsheet spellings: "Not done", "not_applicable", "CLEAN"
        inp = dataclasses.replace(
            raw,
            status=raw.status.strip().lower().replace("_", "-").replace(" ", "-"),
            result=raw.result.strip().lower(),
        )
        problems = []
        too_long = [n for n in ("step", "status", "by", "host", "result") if len(getattr(inp, n)) > MAX_FIELD]
        if too_long:
            errors.append(f"{inp.where}: {', '.join(too_long)} longer than {MAX_FIELD} characters")
            continue
        if inp.step not in step_ids:
            problems.append(f"unknown step {inp.step!r} (the ED 21-02 steps are 1 to 35, sub-checks such as 4.1)")
        if inp.status not in STATUSES:
            problems.append(f"status {raw.status!r} is not one of {', '.join(STATUSES)}")
        if not inp.by.strip():
            problems.append("who attests is missing (--by / column 'by')")
        if not inp.note.strip():
            problems.append("the note is missing (--note / column 'note'): say what was done or why not")
        elif len(inp.note) > MAX_NOTE:
            problems.append(f"the note is longer than {MAX_NOTE} characters; attach a file instead")
        if inp.result and inp.result not in RESULTS:
            problems.append(f"result {inp.result!r} is not one of {', '.join(RESULTS)}")
        if inp.result and inp.status != "done":
            problems.append("a result (clean / indications) belongs to a step attested done")
        targets: tuple[str, ...] = ()
        if inp.host == ALL_HOSTS:
            targets = tuple(hosts)
        elif inp.host:
            if inp.host in hosts:
                targets = (inp.host,)
            else:
                problems.append(f"host {inp.host!r} is not in this case (hosts: {', '.join(hosts) or 'none'})")
        elif len(hosts) == 1:
            targets = (hosts[0],)
        else:
            problems.append(
                f"the case holds {len(hosts)} hosts: name one (--host / column 'host'), or '*' for every host"
            )
        if problems:
            errors.append(f"{inp.where}: " + "; ".join(problems))
        resolved.append((inp, targets))
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        more = f" (and {len(errors) - len(shown)} more)" if len(errors) > len(shown) else ""
        raise UsageError("nothing attested: " + " | ".join(shown) + more)
    out = []
    for inp, targets in resolved:
        out.append(Checked(inp, targets, tuple((p, _readable(p, inp.where)) for p in map(Path, inp.files))))
    return out


def _readable(path: Path, where: str) -> int:
    """The file's size, after proving it is a regular file we can open and read; else AttestationFileError."""
    try:
        fd = open_readonly(path)
    except OSError as exc:
        raise AttestationFileError(f"nothing attested: {where}: cannot read {path} ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AttestationFileError(f"nothing attested: {where}: {path} is not a regular file")
        os.pread(fd, 1, 0)
    except OSError as exc:
        raise AttestationFileError(f"nothing attested: {where}: cannot read {path} ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    return st.st_size


# -- recording ----------------------------------------------------------------------------------------
def _opener(path: Path) -> Callable[[], AbstractContextManager[BinaryIO]]:
    """What :meth:`Case.store` calls to open the source: an O_NOATIME reader (its access time stays)."""

    @contextmanager
    def opened() -> Iterator[BinaryIO]:
        with os.fdopen(open_readonly(path), "rb", buffering=0) as fh:
            yield fh

    return opened


def record(case: Case, checked: list[Checked], *, sheet: Path | None = None) -> list[Attestation]:
    """Store the attached files and append one ``attest`` event per attestation and host.

    Call with the case's writer lock held. Each file goes through :meth:`Case.store` (kind
    ``attestation_file``, under ``evidence/<host>/attestation_file/step-<N>/``); a file that cannot be
    stored stops the command with :class:`AttestationFileError` before that attestation's event is written.
    """
    sheet_sha = sha256_bytes(sheet.read_bytes()) if sheet is not None else None
    out: list[Attestation] = []
    for item in checked:
        inp = item.input
        for host in item.hosts:
            files = []
            for path, size in item.files:
                st = os.stat(path)
                row = case.store(
                    _opener(path),
                    host=host,
                    kind=FILE_KIND,
                    logical_parts=[f"step-{inp.step}", path.name],
                    source_path=str(path.resolve()),
                    collector=COLLECTOR,
                    collector_version=__version__,
                    source_type="attestation",
                    mtime=st.st_mtime,
                    atime=st.st_atime,
                    expected_size=size,
                    extra={"step": inp.step},
                )
                if row.outcome not in ("success", "empty"):
                    raise AttestationFileError(
                        f"{inp.where}: {path} could not be stored ({row.details}); the attestation was not recorded"
                    )
                files.append(
                    {
                        "artifact_id": row.artifact_id,
                        "name": path.name,
                        "relpath": row.relpath,
                        "sha256": row.sha256,
                        "size": row.size,
                    }
                )
            details: dict[str, Any] = {
                "attestation_id": "T" + uuid.uuid4().hex[:15],
                "host": host,
                "step": inp.step,
                "status": STATUSES[inp.status],
                "by": inp.by.strip(),
                "note": inp.note.strip(),
                "files": files,
                "source": inp.where,
            }
            if inp.result:
                details["result"] = inp.result
            if sheet_sha is not None:
                details["sheet_sha256"] = sheet_sha
            ev = case.custody.append(ACTION, **details)
            att = _from_event(ev)
            assert att is not None
            out.append(att)
    return out
