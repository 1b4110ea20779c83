"""Memory images (copy, reference, hard link) and loose files, with independently computed hashes."""

from __future__ import annotations

import errno
import json
import os
import random
import stat
from pathlib import Path

import pytest
from collectors_support import case_files, collect_loose, md5, rows_by_outcome, sha256, stored_rows

from collectors.collect import guess_kind
from collectors.sources import open_source_path

MIB = 1024 * 1024
IMAGE_NAME = "EXCH01-20210304.raw"


@pytest.fixture(scope="module")
def image_bytes() -> bytes:
    return random.Random(2102).randbytes(3 * MIB)


@pytest.fixture
def image(tmp_path, image_bytes) -> Path:
    path = tmp_path / "acquired" / IMAGE_NAME
    path.parent.mkdir()
    path.write_bytes(image_bytes)
    os.chmod(path, 0o640)
    return path


def test_image_bytes_are_deterministic(image_bytes):
    assert len(image_bytes) == 3 * MIB
    assert sha256(image_bytes) == sha256(random.Random(2102).randbytes(3 * MIB))


def test_memory_image_is_copied_with_hashes(image, image_bytes, new_case):
    case = new_case()
    src, stats = collect_loose(case, image, host="EXCH01")
    assert src.source_type == "memory"
    assert src.files == [str(image)]
    assert dict(stats.kinds) == {"memory_image": 1}
    assert stats.bytes == 3 * MIB

    (row,) = list(case.manifest())
    assert row.outcome == "success"
    assert row.kind == "memory_image"
    assert row.family == "memory"
    assert row.storage == "copy"
    assert row.relpath == f"evidence/EXCH01/memory_image/memory/{IMAGE_NAME}"
    assert row.size == 3 * MIB
    assert row.sha256 == sha256(image_bytes)
    assert row.md5 == md5(image_bytes)
    assert row.source_path == str(image)
    assert row.collector == "triage.collectors.files"
    stored = case.path / row.relpath
    assert case.artifact_path(row) == stored
    assert stored.read_bytes() == image_bytes
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o444
    assert os.stat(stored).st_ino != os.stat(image).st_ino


def test_memory_image_by_reference_keeps_the_bytes_in_place(image, image_bytes, new_case):
    case = new_case()
    _, stats = collect_loose(case, image, host="EXCH01", link="reference")
    (row,) = list(case.manifest())
    assert row.outcome == "success"
    assert row.storage == "reference"
    assert row.relpath == f"evidence/EXCH01/memory_image/memory/{IMAGE_NAME}.ref.json"
    assert row.sha256 == sha256(image_bytes)  # hashed in place, all of it
    assert row.md5 == md5(image_bytes)
    assert row.size == 3 * MIB
    assert row.extra == {"reference_path": str(image), "format": "raw_memory", "recognised_by": "name"}
    assert case.artifact_path(row) == image

    pointer = case.path / row.relpath
    assert json.loads(pointer.read_text()) == {
        "reference_path": str(image),
        "sha256": sha256(image_bytes),
        "size": 3 * MIB,
    }
    assert stat.S_IMODE(os.stat(pointer).st_mode) == 0o444
    assert case_files(case) == [pointer]  # no copy of the image in the case
    assert sum(p.stat().st_size for p in case.path.rglob("*") if p.is_file()) < MIB
    assert stats.bytes == 3 * MIB


def test_memory_image_by_hard_link(image, image_bytes, new_case):
    case = new_case()
    collect_loose(case, image, host="EXCH01", link="hardlink")
    (row,) = list(case.manifest())
    assert row.outcome == "success"
    assert row.storage == "hardlink"
    assert row.relpath == f"evidence/EXCH01/memory_image/memory/{IMAGE_NAME}"
    assert row.sha256 == sha256(image_bytes)
    stored = case.path / row.relpath
    assert os.stat(stored).st_ino == os.stat(image).st_ino
    assert os.stat(image).st_nlink == 2
    assert stat.S_IMODE(os.stat(image).st_mode) == 0o640  # the source's mode was not changed
    assert case.artifact_path(row) == stored


def test_hard_link_across_file_systems_is_a_failure_row(image, new_case, monkeypatch):
    def no_cross_device_link(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_cross_device_link)
    case = new_case()
    _, stats = collect_loose(case, image, host="EXCH01", link="hardlink")
    (row,) = list(case.manifest())
    assert row.outcome == "failure"
    assert row.details == "OSError: [Errno 18] Invalid cross-device link"
    assert stats.files == 0
    assert case_files(case) == []


@pytest.mark.parametrize("link", [None, "reference", "hardlink"])
def test_collecting_the_same_image_twice_stores_it_once(image, new_case, link):
    case = new_case()
    collect_loose(case, image, host="EXCH01", link=link)
    before = [r.to_json() for r in stored_rows(case)]
    _, again = collect_loose(case, image, host="EXCH01", link=link)
    assert again.skipped_duplicates == 1
    assert again.files == 0
    assert [r.to_json() for r in stored_rows(case)] == before


def test_two_referenced_images_with_the_same_name_keep_two_pointers(tmp_path, new_case):
    first, second = tmp_path / "day1" / "memory.raw", tmp_path / "day2" / "memory.raw"
    for path, fill in ((first, b"1"), (second, b"2")):
        path.parent.mkdir()
        path.write_bytes(fill * 4096)
    case = new_case()
    collect_loose(case, first, host="EXCH01", link="reference")
    collect_loose(case, second, host="EXCH01", link="reference")
    rows = stored_rows(case)
    assert len({r.relpath for r in rows}) == 2
    for row in rows:
        assert json.loads((case.path / row.relpath).read_text())["reference_path"] == row.source_path


@pytest.mark.parametrize("ext", [".raw", ".mem", ".vmem", ".dmp", ".lime", ".bin", ".RAW"])
def test_memory_extensions_are_recognised(tmp_path, ext):
    path = tmp_path / f"image{ext}"
    path.write_bytes(b"\0" * 16)
    src = open_source_path(str(path))
    assert src.source_type == "memory"


def test_as_memory_forces_an_unusual_extension(tmp_path, new_case):
    path = tmp_path / "image.001"
    data = random.Random(1).randbytes(4096)
    path.write_bytes(data)
    assert open_source_path(str(path)).source_type == "files"
    case = new_case()
    src, _ = collect_loose(case, path, host="EXCH01", as_type="memory")
    assert src.source_type == "memory"
    (row,) = stored_rows(case)
    assert (row.kind, row.relpath, row.sha256) == (
        "memory_image",
        "evidence/EXCH01/memory_image/memory/image.001",
        sha256(data),
    )


# -- loose files ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Security.evtx", "evtx"),
        ("Microsoft-Windows-PowerShell%4Operational.evtx", "evtx"),
        ("NTUSER.DAT", "registry_hive"),
        ("ntuser.dat.LOG1", "registry_hive"),
        ("UsrClass.dat", "registry_hive"),
        ("SYSTEM", "registry_hive"),
        ("SOFTWARE.LOG2", "registry_hive"),
        ("Amcache.hve", "registry_hive"),
        ("u_ex210303.log", "iis_log"),
        ("HttpProxy_2021030302-1.LOG", "exchange_log"),
        ("ECPServer20210303-1.LOG", "exchange_log"),
        ("shell.aspx", "web_file"),
        ("App_Web_abc123.dll", "web_file"),
        ("it.zip", "suspicious_file"),
        ("loot.7z", "suspicious_file"),
        ("MEMORY.DMP", "memory_image"),  # a full crash dump
        ("notes.txt", "file"),
    ],
)
def test_guess_kind(name, kind):
    assert guess_kind(name) == kind
    assert guess_kind(f"/some/folder/{name}") == kind


def test_single_loose_file(tmp_path, new_case):
    path = tmp_path / "Security.evtx"
    data = b"ElfFile\x00" + random.Random(7).randbytes(5000)
    path.write_bytes(data)
    case = new_case()
    src, stats = collect_loose(case, path, host="EXCH01")
    assert src.source_type == "files"
    (row,) = stored_rows(case)
    assert row.kind == "evtx"
    assert row.family == "loose"
    assert row.relpath == "evidence/EXCH01/evtx/loose/Security.evtx"
    assert (row.sha256, row.md5, row.size) == (sha256(data), md5(data), len(data))
    assert (case.path / row.relpath).read_bytes() == data
    assert dict(stats.kinds) == {"evtx": 1}


def test_loose_file_kind_can_be_given(tmp_path, new_case):
    path = tmp_path / "hive-export.bin.txt"
    path.write_bytes(b"regf")
    case = new_case()
    collect_loose(case, path, host="EXCH01", kind="registry_hive")
    (row,) = stored_rows(case)
    assert row.relpath == "evidence/EXCH01/registry_hive/loose/hive-export.bin.txt"


def test_folder_of_loose_files_keeps_its_layout(tmp_path, new_case):
    folder = tmp_path / "handed-over"
    files = {
        "logs/Security.evtx": b"ElfFile\x00sec",
        "logs/iis/u_ex210303.log": b"#Fields: date time\r\n",
        "web/shell.aspx": b"<% eval %>",
        "notes.txt": b"from the admin",
        "staging/it.zip": b"PK\x05\x06" + bytes(18),
    }
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    case = new_case()
    src, stats = collect_loose(case, folder, as_type="files")
    assert src.source_type == "files"
    assert stats.hosts == {"unknown-host"}
    got = {r.relpath: r.sha256 for r in stored_rows(case)}
    kinds = {
        "logs/Security.evtx": "evtx",
        "logs/iis/u_ex210303.log": "iis_log",
        "web/shell.aspx": "web_file",
        "notes.txt": "file",
        "staging/it.zip": "suspicious_file",
    }
    assert got == {f"evidence/unknown-host/{kinds[rel]}/loose/{rel}": sha256(data) for rel, data in files.items()}


def test_unreadable_loose_file_is_a_failure_row(tmp_path, new_case, monkeypatch):
    import collectors.collect as collect_mod

    folder = tmp_path / "handed-over"
    folder.mkdir()
    (folder / "a.evtx").write_bytes(b"a")
    (folder / "b.evtx").write_bytes(b"b")
    real = collect_mod.open_source

    def fake(path):
        if str(path).endswith("a.evtx"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(path)

    monkeypatch.setattr(collect_mod, "open_source", fake)
    case = new_case()
    _, stats = collect_loose(case, folder, host="EXCH01", as_type="files")
    (failure,) = rows_by_outcome(case, "failure")
    assert failure.source_path == str(folder / "a.evtx")
    assert failure.details == "PermissionError: [Errno 13] Permission denied"
    (ok,) = stored_rows(case)
    assert ok.sha256 == sha256(b"b")
    assert stats.files == 1
