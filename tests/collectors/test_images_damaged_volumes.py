"""A damaged volume costs only itself (issue 18, point 4), and image sources leave their folder untouched,
access time included (point 14)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from collectors_support import age_tree, snapshot

from triage.cli import main
from triage.errors import ExitCode
from triage.testing import diskimage as di

C_SHELL = "evidence/EXCH01/web_file/C/inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx"


def _rows(case: Path) -> list[dict]:
    return [json.loads(line) for line in (case / "manifest.jsonl").read_text().splitlines()]


def _stored(case: Path) -> dict[str, str]:
    return {r["relpath"]: r["sha256"] for r in _rows(case) if r["outcome"] in ("success", "empty")}


@pytest.fixture
def raw_copy(image_set: di.ImageSet, tmp_path: Path) -> Path:
    out = tmp_path / "img" / "exch01.dd"
    out.parent.mkdir()
    shutil.copyfile(image_set.raw, out)
    return out


def _c_artifacts(image_set: di.ImageSet) -> dict[str, str]:
    return {f"evidence/EXCH01/{k}": v for k, v in image_set.hashes["C"].items()}


def test_corrupt_root_index_of_d_loses_only_d(image_set: di.ImageSet, raw_copy: Path, tmp_path: Path) -> None:
    d_off, _ = di.ntfs_partitions(raw_copy)[1]
    with open(raw_copy, "rb") as fh:
        pos = d_off + di._mft_record_offset(di._geometry(fh, d_off), 5)  # MFT entry 5: the root folder
    with open(raw_copy, "r+b") as fh:
        fh.seek(pos)
        assert fh.read(4) == b"FILE"
        fh.seek(pos)
        fh.write(b"BAAD")
    case = tmp_path / "case"
    code = main(["collect", str(raw_copy), "--case", str(case), "-q", "--no-verify-image"])
    assert code == ExitCode.COLLECTION_FAILED
    rows = _rows(case)
    fails = [r for r in rows if r["outcome"] == "failure"]
    assert len(fails) == 1 and fails[0]["details"].startswith("drive D: the root folder cannot be listed")
    stored = _stored(case)
    assert not [k for k in stored if "/D/" in k]
    assert stored[C_SHELL] == image_set.hashes["C"]["inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx"]
    assert len([k for k in stored if "/C/" in k]) >= 17


def test_raw_image_cut_inside_d_still_gives_c(image_set: di.ImageSet, raw_copy: Path, tmp_path: Path) -> None:
    d_off, d_size = di.ntfs_partitions(raw_copy)[1]
    os.truncate(raw_copy, d_off + d_size // 3)
    case = tmp_path / "case"
    code = main(["collect", str(raw_copy), "--case", str(case), "-q", "--no-verify-image"])
    assert code in (ExitCode.OK, ExitCode.COLLECTION_FAILED)
    stored = _stored(case)
    assert stored[C_SHELL] == image_set.hashes["C"]["inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx"]
    assert len([k for k in stored if "/C/" in k]) >= 17


@pytest.mark.parametrize("fmt", ["e01", "split-raw", "vmdk"])
def test_image_folder_access_time_is_unchanged(image_set: di.ImageSet, tmp_path: Path, fmt: str) -> None:
    folder = tmp_path / "acquired"
    shutil.copytree(image_set[fmt][0].parent, folder)
    age_tree(folder)  # the folder itself too: listing it to find the segments would move its atime
    before = snapshot(folder)
    first = folder / image_set[fmt][0].name
    assert main(["collect", str(first), "--case", str(tmp_path / "case"), "-q", "--no-verify-image"]) == 0
    assert snapshot(folder) == before
