"""A disk image among loose files is opened like a top-level image source (its other segments are read
through it, never stored as loose files); one inside a zip is stored as it is, with a failure row saying why."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from triage.case import Case
from triage.cli import main
from triage.errors import ExitCode
from triage.testing import diskimage as di


def _stored(case_dir: Path) -> dict[str, str]:
    return {
        r.relpath: r.sha256 for r in Case.open(case_dir).manifest() if r.outcome in ("success", "empty") and r.relpath
    }


def _events(case_dir: Path, action: str) -> list[dict]:
    lines = (case_dir / "custody.jsonl").read_text().splitlines()
    return [e["details"] for e in map(json.loads, lines) if e["action"] == action]


@pytest.fixture(scope="module")
def top_level(image_set: di.ImageSet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What the raw image gives as a source of its own."""
    case = tmp_path_factory.mktemp("top") / "case"
    assert main(["collect", str(image_set["raw"][0]), "--case", str(case), "-q"]) == ExitCode.OK
    return _stored(case)


@pytest.mark.parametrize("fmt", ["e01", "split-raw", "vhdx"])
def test_image_in_a_folder_of_loose_files_is_opened(
    fmt: str, image_set: di.ImageSet, top_level: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "handover"
    folder.mkdir()
    segments = [Path(shutil.copyfile(p, folder / p.name)) for p in image_set[fmt]]
    (folder / "notes.txt").write_text("collected by the site admin\n")
    case = tmp_path / "case"
    assert main(["collect", str(folder), "--case", str(case), "-q"]) == ExitCode.OK
    stored = _stored(case)
    loose = {rel: sha for rel, sha in stored.items() if "/loose/" in rel}
    # the image's drives give exactly what the image gives as a source (relpaths and sha256)
    assert {rel: sha for rel, sha in stored.items() if rel not in loose} == top_level
    # the text file is kept; no segment is stored as a loose file or opened a second time
    assert sorted(loose) == ["evidence/EXCH01/file/loose/notes.txt"]
    opened = _events(case, "container_open")
    assert len(opened) == 1 and opened[0]["source"] == str(segments[0])
    assert opened[0]["segments"] == [p.name for p in segments]
    assert not [r for r in Case.open(case).manifest() if r.outcome in ("failure", "duplicate")]
    assert main(["verify", str(case), "-q"]) == ExitCode.OK


def test_image_inside_a_zip_is_a_clear_failure_row(image_set: di.ImageSet, tmp_path: Path) -> None:
    archive = tmp_path / "handover.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(image_set["vhdx"][0], "disk/exch01.vhdx")
        zf.writestr("notes.txt", "collected by the site admin\n")
    case = tmp_path / "case"
    code = main(["collect", str(archive), "--case", str(case), "-q"])
    assert code == ExitCode.COLLECTION_FAILED  # the image's content was not read: never a clean 0
    rows = list(Case.open(case).manifest())
    failures = [r for r in rows if r.outcome == "failure"]
    assert len(failures) == 1 and failures[0].source_path.endswith("disk/exch01.vhdx")
    assert "vhdx disk image inside a zip is not opened" in failures[0].details
    assert "random" in failures[0].details and "extract it" in failures[0].details
    kept = {r.relpath.rsplit("/", 1)[-1]: r for r in rows if r.outcome == "success"}
    # the image itself is stored as it is (bytes unchanged), beside the other member
    assert kept["exch01.vhdx"].kind == "suspicious_file"
    assert kept["exch01.vhdx"].sha256 == hashlib.sha256(image_set["vhdx"][0].read_bytes()).hexdigest()
    assert "notes.txt" in kept
