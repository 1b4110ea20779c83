"""Recovery after an interrupted collect, in process (the CLI tests in test_case_crash.py kill real runs)."""

from __future__ import annotations

import json
import os
import stat

from triage.case import Case
from triage.verify import verify_case


def _actions(case: Case) -> list[dict]:
    return [e for e in case.custody.events() if e["action"] == "recover"]


def test_leftover_copies_are_removed_with_events(case: Case) -> None:
    row = next(r for r in case.evidence() if r.kind == "web_file")
    folder = (case.path / row.relpath).parent
    part = folder / ".planted.aspx.part-12345"
    part.write_bytes(b"half a copy")
    placed = folder / "placed.aspx"  # renamed into place, killed before its manifest row
    placed.write_bytes(b"<%@ Page %>")
    os.chmod(placed, stat.S_IRUSR)
    assert not verify_case(case, record=False).ok
    with case.writer():
        done = case.recover()
    assert {a["file"] for a in done} == {
        part.relative_to(case.path).as_posix(),
        placed.relative_to(case.path).as_posix(),
    }
    assert not part.exists() and not placed.exists()
    recorded = {a["details"]["file"]: a["details"] for a in _actions(case)}
    assert recorded[placed.relative_to(case.path).as_posix()]["size"] == len(b"<%@ Page %>")
    assert verify_case(case, record=False).ok


def test_row_without_custody_event_is_recorded(case: Case) -> None:
    case.close()
    lines = case.custody.path.read_text().splitlines()
    last = json.loads(lines[-1])
    assert last["action"] == "collect"
    # as if killed between the manifest row and its custody event
    case.custody.path.write_text("\n".join(lines[:-1]) + "\n")
    prev = json.loads(lines[-2])
    case.custody.head_path.write_text(json.dumps({"seq": prev["seq"], "hash": prev["hash"]}).ljust(128))
    reopened = Case.open(case.path)
    assert not verify_case(reopened, record=False).ok
    with reopened.writer():
        done = reopened.recover()
    assert done == [
        {"what": "manifest row without custody event recorded", "artifact_id": last["details"]["artifact_id"]}
    ]
    ev = [e for e in reopened.custody.events() if e["action"] == "collect"][-1]
    assert ev["details"]["recovered"] is True
    assert ev["details"]["manifest_row_sha256"] == last["details"]["manifest_row_sha256"]
    assert verify_case(reopened, record=False).ok


def test_partial_manifest_line_is_cut(case: Case) -> None:
    case.close()
    size = case.manifest_path.stat().st_size
    with open(case.manifest_path, "ab") as fh:
        fh.write(b'{"artifact_id": "Ax", "ki')
    reopened = Case.open(case.path)
    rep = verify_case(reopened, record=False)
    assert [p["problem"] for p in rep.incomplete] == [
        "partial last line (a write was cut short); the next collect repairs it"
    ]
    with reopened.writer():
        done = reopened.recover()
    assert done[0]["what"] == "partial last manifest line removed" and done[0]["bytes"] == 25
    assert reopened.manifest_path.stat().st_size == size
    assert verify_case(reopened, record=False).ok


def test_unreadable_source_leaves_no_empty_folder(case: Case) -> None:
    from triage.case import WRITE_ERROR

    def opener():
        raise PermissionError(13, "Permission denied")

    row = case.store(
        opener,
        host="EXCH01",
        kind="web_file",
        logical_parts=["C", "deep", "er", "x.aspx"],
        source_path="C:\\deep\\er\\x.aspx",
        collector="test",
        collector_version="1",
    )
    assert row.outcome == "failure" and row.details.startswith("PermissionError")
    assert not row.details.startswith(WRITE_ERROR) and case.write_failures == []  # the source's fault, not the case's
    assert not (case.path / "evidence" / "EXCH01" / "web_file" / "C" / "deep").exists()
    rep = verify_case(case, record=False)
    assert rep.ok, rep.problems
