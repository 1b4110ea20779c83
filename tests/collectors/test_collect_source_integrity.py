"""A collection never changes its source: not a byte, a mode, a modification or an access time.

Every file and folder of the source gets access/modification times from 2021 first, so on a
relatime mount an ordinary read or listing would move the access time to now; the snapshots read
through O_NOATIME handles so that taking them changes nothing themselves (the canary tests prove
both points on the file system the tests run on).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from collectors_support import age_tree, collect, collect_loose, sha256, snapshot, stored_rows

from triage.testing.volume import VolumeSpec, build_volume, to_kape, to_velociraptor, velociraptor_name, zip_bytes

MEMORY_SIZE = 3 * 1024 * 1024


def _memory_bytes(seed: int = 2102) -> bytes:
    return random.Random(seed).randbytes(MEMORY_SIZE)


# -- the harness itself ------------------------------------------------------------------------------------
def test_snapshot_is_stable_and_does_not_disturb_the_tree(volume):
    age_tree(volume)
    first = snapshot(volume)
    assert snapshot(volume) == first
    assert first["."].kind == "dir"
    assert first["Windows/System32/config/SYSTEM"].atime_ns == 1614936600987654321
    assert first["inetpub"].mtime_ns == 1614737647123456789


def test_canary_an_ordinary_read_would_show(volume):
    """Without O_NOATIME this file system moves atime on read: the atime checks below have teeth."""
    age_tree(volume)
    before = snapshot(volume)
    (volume / "inetpub/wwwroot/iisstart.htm").read_bytes()
    os.listdir(volume / "Windows")
    after = snapshot(volume)
    if after == before:
        pytest.skip("this file system does not update access times on read (noatime?): atime checks are vacuous")
    assert after["inetpub/wwwroot/iisstart.htm"].atime_ns != before["inetpub/wwwroot/iisstart.htm"].atime_ns


# -- the sources -----------------------------------------------------------------------------------------------
def _mixed_velociraptor(vol: Path, out: Path) -> Path:
    for path in sorted(vol.rglob("*")):
        if path.is_file():
            rel = path.relative_to(vol)
            hive = rel.as_posix().startswith("Windows/System32/config/")
            accessor, device = ("ntfs", "\\\\.\\C:") if hive else ("auto", "C:")
            dest = out.joinpath("uploads", accessor, velociraptor_name(device), *map(velociraptor_name, rel.parts))
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(path.read_bytes())
    (out / "client_info.json").write_bytes(b'{"Hostname": "EXCH01"}')
    return out


def _zip_with_traversal(vol: Path, out: Path) -> Path:
    to_velociraptor(vol, out, as_zip=True)
    members = {}
    import zipfile

    with zipfile.ZipFile(out) as zf:
        for info in zf.infolist():
            members[info.filename] = zf.read(info)
    members["uploads/auto/C%3A/inetpub/wwwroot/../../../../../evil.aspx"] = b"evil"
    members["/uploads/auto/C%3A/inetpub/wwwroot/abs.aspx"] = b"abs"
    out.write_bytes(zip_bytes(members))
    return out


LAYOUTS = ["volume", "kape", "velociraptor", "velociraptor-zip", "velociraptor-mixed", "zip-with-traversal"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_volume_like_sources_are_not_modified(tmp_path, new_case, layout):
    src_root = tmp_path / "src"
    vol = build_volume(src_root / "vol", VolumeSpec())
    location = {
        "volume": lambda: vol,
        "kape": lambda: to_kape(vol, src_root / "kape"),
        "velociraptor": lambda: to_velociraptor(vol, src_root / "vr"),
        "velociraptor-zip": lambda: to_velociraptor(vol, src_root / "vr.zip", as_zip=True),
        "velociraptor-mixed": lambda: _mixed_velociraptor(vol, src_root / "mixed"),
        "zip-with-traversal": lambda: _zip_with_traversal(vol, src_root / "evil.zip"),
    }[layout]()
    age_tree(src_root)
    before = snapshot(src_root)

    case = new_case()
    _, stats = collect(case, location)

    assert stats.files == 18  # the collection did read the whole volume
    assert stats.hosts == {"EXCH01"}  # ... and the hives inside it
    assert snapshot(src_root) == before
    assert not (tmp_path / "evil.aspx").exists()


@pytest.mark.parametrize("link", [None, "reference"], ids=["copy", "reference"])
def test_memory_image_is_not_modified(tmp_path, new_case, link):
    src_root = tmp_path / "src"
    src_root.mkdir()
    image = src_root / "EXCH01-20210304.raw"
    data = _memory_bytes()
    image.write_bytes(data)
    age_tree(src_root)
    before = snapshot(src_root)

    case = new_case()
    _, stats = collect_loose(case, image, host="EXCH01", link=link)

    assert stats.files == 1
    (row,) = stored_rows(case)
    assert row.sha256 == sha256(data)  # every byte was read
    assert snapshot(src_root) == before


def test_loose_files_folder_is_not_modified(tmp_path, new_case):
    src_root = tmp_path / "src"
    vol = build_volume(src_root / "exports", VolumeSpec())
    age_tree(src_root)
    before = snapshot(src_root)

    case = new_case()
    _, stats = collect_loose(case, vol, host="EXCH01", as_type="files")

    assert stats.files == 18
    assert snapshot(src_root) == before
