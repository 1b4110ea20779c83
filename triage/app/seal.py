"""Seal a case: verify it, sign what it holds now, record the seal in the custody log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage.app.progress import Progress
from triage.case import Case
from triage.errors import ExitCode, Incomplete, IntegrityError, UsageError
from triage.hashing import hash_file
from triage.seal import SEAL_DIR, SEAL_JSON, latest_seal, load_signer, seal_document, write_seal_files
from triage.verify import VerifyReport, verify_case


@dataclass(frozen=True)
class SealRequest:
    """What ``triage seal`` is asked. The passphrase is asked for through ``passphrase`` only when the key is
    encrypted (the command line reads ``$TRIAGE_SEAL_PASSPHRASE`` or prompts); it is never stored."""

    case: Path
    key: Path
    by: str
    cert: Path | None = None
    passphrase: Callable[[], bytes | None] = field(default=lambda: None, repr=False, compare=False)


@dataclass
class SealSummary:
    """The seal written: where, who, when, over which custody head, and its custody event."""

    case: Path
    seal: dict[str, Any]
    files: dict[str, str]  # seal files -> sha256
    event: dict[str, Any]
    exit_code: ExitCode = ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` summary."""
        return {
            "case": str(self.case),
            "case_id": self.seal["case_id"],
            "sealed_by": self.seal["sealed_by"],
            "sealed_at": self.seal["sealed_at"],
            "custody_head_sealed": self.seal["custody_head"],
            "sealed_files": len(self.seal["files"]),
            "signer": self.seal["signer"],
            "seal_files": self.files,
            "seal_event": {"seq": self.event["seq"], "hash": self.event["hash"]},
            "exit_code": int(self.exit_code),
        }


def refuse_unless_verified(rep: VerifyReport, what: str) -> None:
    """A seal or an export rests on a case that verifies: problems (3) or unfinished commands (6) stop it."""
    trouble = rep.problems + rep.incomplete
    if not trouble:
        return
    first = "; ".join(f"{p['where']}: {p['problem']}" for p in trouble[:3])
    more = f" (and {len(trouble) - 3} more)" if len(trouble) > 3 else ""
    text = f"the case does not verify, so it is not {what}: {first}{more}; run 'triage verify' for the whole list"
    raise IntegrityError(text) if rep.problems else Incomplete(text)


def clear_interrupted_seal(case: Case) -> list[str]:
    """Remove what a seal killed before its custody event left in ``seal/`` (temporary files, seal files no
    seal event records), each a ``recover`` event with its hash. Files the latest seal event records stay, even
    when changed: that is for verify to report."""
    folder = case.path / SEAL_DIR
    if not folder.is_dir():
        return []
    ev, _later = latest_seal(case.custody.events)
    details = ev.get("details") if ev is not None else None
    files = details.get("files") if isinstance(details, dict) else None
    recorded = files if isinstance(files, dict) else {}
    removed: list[str] = []
    for path in sorted(folder.iterdir()):
        rel = f"{SEAL_DIR}/{path.name}"
        if rel in recorded or path.is_symlink() or not path.is_file():
            continue
        size, digests = hash_file(path, ("sha256",))
        path.unlink()
        case.custody.append(
            "recover", what="file left by an interrupted seal removed", file=rel, size=size, sha256=digests["sha256"]
        )
        removed.append(rel)
    if not any(folder.iterdir()):
        folder.rmdir()  # verify reports an empty folder; the seal makes it again
    return removed


def seal(request: SealRequest, progress: Progress) -> SealSummary:
    """Verify the case, then write ``seal/seal.json`` and its signature and record a ``seal`` event."""
    if not request.by.strip():
        raise UsageError("--by: name the person sealing the case")
    signer = load_signer(request.key, request.cert, request.passphrase)  # before the lock: it may prompt
    case = Case.open(request.case)
    try:
        with case.writer():
            case.custody.prepare()
            for rel in clear_interrupted_seal(case):
                progress.message(logging.WARNING, f"{rel}: left by an interrupted seal, removed (recorded)")
            with progress.bytes("verifying before the seal") as advance:
                rep = verify_case(case, record=False, progress=advance)
            refuse_unless_verified(rep, "sealed")
            previous = (rep.seal or {}).get("seal_event")
            doc = seal_document(case.path, case.case_id, case.custody.head(), signer, request.by.strip())
            files = write_seal_files(case.path, doc, signer)
            ev = case.custody.append(
                "seal",
                seal_sha256=files[SEAL_JSON],
                files=files,
                sealed_by=doc["sealed_by"],
                signer=doc["signer"],
                custody_head_sealed=doc["custody_head"],
                sealed_files=len(doc["files"]),
                replaces_seal_event=previous,
            )
    finally:
        case.close()
    return SealSummary(case=case.path, seal=doc, files=files, event=ev)
