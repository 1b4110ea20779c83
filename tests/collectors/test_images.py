"""Disk images as sources: the same artifacts as from a folder, NTFS facts, drive letters, bad images, verification.

The evidence disk is the session's ``image_set`` (GPT; C: the compromised EXCH01 volume with a timestomped web
shell carrying a Zone.Identifier stream, D: Exchange data), built by ``triage.testing.diskimage`` in every
format. Damaged variants are made on copies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from collectors_support import OLD_ATIME_NS, OLD_MTIME_NS, snapshot

from collectors.partitions import read_partitions
from collectors.sources import open_source_path
from triage.case import Case, ManifestRow
from triage.cli import main
from triage.errors import ExitCode, UsageError
from triage.testing import diskimage as di

SHELL = di.WEBSHELL
EX = "Program Files/Microsoft/Exchange Server/V15"
D_LOG = f"{EX}/Logging/HttpProxy/Ecp/HttpProxy_2021030302-2.LOG"
ADS_REL = "evidence/EXCH01/file/C/inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx%3AZone.Identifier"

needs_tools = pytest.mark.skipif(bool(di.tools_missing()), reason=f"disk image tools: {di.tools_missing()}")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(*argv: str) -> int:
    return main([*argv, "-q"])


def rows(case_dir: Path) -> list[ManifestRow]:
    return list(Case.open(case_dir).manifest())


def stored(case_dir: Path) -> dict[str, str]:
    """relpath -> sha256 of everything a collection stored."""
    return {r.relpath: r.sha256 for r in rows(case_dir) if r.outcome in ("success", "empty") and r.relpath}


def custody(case_dir: Path, action: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in (case_dir / "custody.jsonl").read_text().splitlines() if line.strip()]
    return [e["details"] for e in events if e["action"] == action]


def copy_set(paths: list[Path], dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(p, dest / p.name)) for p in paths]


@pytest.fixture(scope="session")
def folder_artifacts(image_set: di.ImageSet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The same C: and D: trees collected from folders (a KAPE layout holds both drives)."""
    base = tmp_path_factory.mktemp("folder-source")
    for letter, tree in image_set.trees.items():
        shutil.copytree(tree, base / "kape" / letter, copy_function=shutil.copy2)
    assert run_cli("collect", str(base / "kape"), "--case", str(base / "case"), "--as", "kape") == 0
    return stored(base / "case")


@pytest.fixture(scope="session")
def e01_case(image_set: di.ImageSet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One collection from the E01 set, with verification (the default)."""
    case = tmp_path_factory.mktemp("e01") / "case"
    assert run_cli("collect", str(image_set["e01"][0]), "--case", str(case)) == 0
    return case


# -- the acceptance test: image == folder ---------------------------------------------------------------
@needs_tools
@pytest.mark.parametrize("fmt", di.FORMATS)
def test_image_gives_the_folder_artifacts_and_stays_untouched(
    fmt: str, image_set: di.ImageSet, folder_artifacts: dict[str, str], tmp_path: Path
) -> None:
    folder = image_set[fmt][0].parent
    for p in folder.iterdir():  # old times: on a relatime mount any plain read would move the access time
        os.utime(p, ns=(OLD_ATIME_NS, OLD_MTIME_NS))
    before = snapshot(folder)
    assert run_cli("collect", str(image_set[fmt][0]), "--case", str(tmp_path / "case")) == 0
    assert snapshot(folder) == before  # bytes, mtime and atime of every segment, and the folder listing

    got = stored(tmp_path / "case")
    ads = {k: v for k, v in got.items() if "%3A" in k.rsplit("/", 1)[-1]}
    assert {k: v for k, v in got.items() if k not in ads} == folder_artifacts
    assert ads == {ADS_REL: hashlib.sha256(di.ZONE_IDENTIFIER).hexdigest()}
    d_rel = f"evidence/EXCH01/exchange_log/D/{D_LOG}"
    assert got[d_rel] == image_set.hashes["D"][D_LOG]
    assert len(got) == 20  # 18 files on C: (SYSTEM.LOG1 empty), the Exchange log on D:, the stream

    (verify,) = custody(tmp_path / "case", "image_verify")
    assert verify["computed"]["sha256"] == sha256_file(image_set.raw)
    assert verify["status"] == ("verified" if fmt == "e01" else "computed")
    if fmt == "e01":
        assert verify["matches"] == {"md5": True, "sha1": True}
        assert verify["stored"]["md5"] == hashlib.md5(image_set.raw.read_bytes()).hexdigest()
    failures = [r for r in rows(tmp_path / "case") if r.outcome == "failure"]
    assert failures == []


# -- NTFS facts -----------------------------------------------------------------------------------------
@needs_tools
def test_si_and_fn_times_mft_entry_and_streams_are_recorded(e01_case: Path, image_set: di.ImageSet) -> None:
    by_rel = {r.relpath: r for r in rows(e01_case) if r.relpath}
    shell = by_rel[f"evidence/EXCH01/web_file/C/{SHELL}"]
    ntfs = shell.extra["ntfs"]
    assert ntfs["si"] == dict.fromkeys(
        ("created", "modified", "mft_modified", "accessed"), "2016-09-15T10:00:00.0000000Z"
    )
    assert ntfs["fn"] == dict.fromkeys(
        ("created", "modified", "mft_modified", "accessed"), "2021-03-03T02:41:05.0000000Z"
    )
    assert ntfs["fn_name"] == "Dk2jQ8ab.aspx"
    assert ntfs["ads"] == [{"name": "Zone.Identifier", "size": len(di.ZONE_IDENTIFIER)}]
    _part, index, _pos = di.mft_entry_location(image_set.raw, SHELL)
    assert ntfs["mft_entry"] == index
    assert shell.source_path == f"{image_set['e01'][0]}#p1:/{SHELL}"
    assert shell.source_mtime == "2016-09-15T10:00:00.000000Z"  # $SI modified, what Explorer shows

    stream = by_rel[ADS_REL]
    assert stream.kind == "file" and stream.size == len(di.ZONE_IDENTIFIER)
    assert stream.source_path == f"{shell.source_path}:Zone.Identifier"
    assert (e01_case / ADS_REL).read_bytes() == di.ZONE_IDENTIFIER
    hive = by_rel["evidence/EXCH01/registry_hive/C/Windows/System32/config/SYSTEM"]
    assert hive.extra["ntfs"]["si"]["created"] == "2021-03-03T02:14:07.0000000Z"
    assert hive.sha256 == image_set.hashes["C"]["Windows/System32/config/SYSTEM"]


@needs_tools
def test_volumes_and_letters_are_recorded(e01_case: Path, image_set: di.ImageSet) -> None:
    notes = [n["note"] for n in custody(e01_case, "note")]
    assert any("#p1 -> C: (system volume, NTFS, label 'System'" in n and "MountedDevices" in n for n in notes)
    assert any("#p2 -> D: (data volume, NTFS, label 'Data'" in n and "MountedDevices" in n for n in notes)
    (opened,) = custody(e01_case, "image_open")
    assert opened["format"] == "ewf" and len(opened["segments"]) == len(image_set["e01"])
    assert [(p["partition"], p["drive"], p["offset"]) for p in opened["partitions"]] == [
        (1, "C", image_set.layout.partitions[0].offset),
        (2, "D", image_set.layout.partitions[1].offset),
    ]
    end = custody(e01_case, "collect_end")[-1]
    assert end["images"][0]["verification"] == "verified"


@needs_tools
def test_letters_fall_back_to_partition_order(image_set: di.ImageSet, tmp_path: Path) -> None:
    """An MBR disk whose MountedDevices (GPT GUIDs here) names no partition: C: = system volume, D: by order."""
    disk = Path(shutil.copyfile(image_set.raw, tmp_path / "mbr.dd"))
    with open(disk, "r+b") as fh:
        mbr = bytearray(fh.read(512))
        mbr[446:510] = bytes(64)
        for i, part in enumerate(image_set.layout.partitions):
            mbr[446 + 16 * i : 462 + 16 * i] = struct.pack("<B3xB3xII", 0, 0x07, part.offset // 512, part.size // 512)
        fh.seek(0)
        fh.write(mbr)
    src = open_source_path(str(disk))
    try:
        assert list(src.drives) == ["C", "D"]
        assert any("-> C: (system volume" in n and "Windows system volume" in n for n in src.notes)
        assert any("-> D: (data volume" in n and "partition order" in n for n in src.notes)
        assert src.drives["D"].child("ExchangeDatabases") is not None
    finally:
        src.close()


# -- bad images -------------------------------------------------------------------------------------------
@needs_tools
def test_bad_primary_gpt_uses_backup(image_set: di.ImageSet, tmp_path: Path) -> None:
    disk = Path(shutil.copyfile(image_set.raw, tmp_path / "gpt.dd"))
    di.corrupt_gpt_header(disk)
    src = open_source_path(str(disk))
    try:
        assert list(src.drives) == ["C", "D"]
        assert any("primary GPT header unusable: header CRC mismatch" in n for n in src.notes)
        assert any("using the backup GPT header" in n for n in src.notes)
    finally:
        src.close()


@needs_tools
def test_garbage_mbr_and_no_gpt_finds_volumes_by_boot_sector(image_set: di.ImageSet, tmp_path: Path) -> None:
    disk = Path(shutil.copyfile(image_set.raw, tmp_path / "wiped.dd"))
    di.garbage_mbr(disk)
    with open(disk, "r+b") as fh:  # both GPT headers gone as well
        fh.seek(512)
        fh.write(bytes(512))
        fh.seek(-512, os.SEEK_END)
        fh.write(bytes(512))
    src = open_source_path(str(disk))  # recognised by name and boot sectors, though sector 0 is junk
    try:
        assert src.source_type == "image"
        assert [p["offset"] for p in src.partitions] == [p.offset for p in image_set.layout.partitions]
        assert any("found by their boot sectors" in n for n in src.notes)
        assert list(src.drives) == ["C", "D"]
        with src.drives["C"].child("inetpub").child("wwwroot").child("iisstart.htm").open() as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == image_set.hashes["C"]["inetpub/wwwroot/iisstart.htm"]
    finally:
        src.close()


@needs_tools
def test_ewf_segment_problems(image_set: di.ImageSet, tmp_path: Path) -> None:
    segs = image_set["e01"]
    assert len(segs) >= 3
    gap = copy_set([segs[0], *segs[2:]], tmp_path / "gap")
    with pytest.raises(UsageError, match=r"EWF segment\(s\) 2 of \d+ are missing"):
        open_source_path(str(gap[0]))
    no_first = copy_set(segs[1:], tmp_path / "nofirst")
    with pytest.raises(UsageError, match="is segment 2 of an EWF set, and segment 1"):
        open_source_path(str(no_first[0]))
    whole = copy_set(segs, tmp_path / "whole")
    src = open_source_path(str(whole[1]))  # E02 given: the set is read from E01, and the note says so
    try:
        assert any("is segment 2; reading the set from its first segment" in n for n in src.notes)
        assert src.image.segments == [str(p) for p in whole]
    finally:
        src.close()
    head = tmp_path / "cut" / "x.E01"
    head.parent.mkdir()
    head.write_bytes(segs[0].read_bytes()[:20000])
    with pytest.raises(UsageError, match="truncated or corrupt"):
        open_source_path(str(head))


@needs_tools
def test_split_raw_segment_problems(image_set: di.ImageSet, tmp_path: Path) -> None:
    segs = image_set["split-raw"]
    whole = copy_set(segs, tmp_path / "whole")
    src = open_source_path(str(whole[1]))
    try:
        assert src.image.format == "split-raw" and src.image.segments == [str(p) for p in whole]
        assert src.image.disk.size == image_set.raw.stat().st_size
    finally:
        src.close()
    gap = copy_set([segs[0], segs[2]], tmp_path / "gap")
    with pytest.raises(UsageError, match=r"missing segment exch01\.002"):
        open_source_path(str(gap[0]))


@needs_tools
def test_truncated_last_segment_collects_what_is_there(image_set: di.ImageSet, tmp_path: Path) -> None:
    segs = copy_set(image_set["e01"], tmp_path / "img")
    di.truncate_segment(segs[-1], segs[-1].stat().st_size // 3)
    assert run_cli("collect", str(segs[0]), "--case", str(tmp_path / "case")) == ExitCode.COLLECTION_FAILED
    got = stored(tmp_path / "case")
    assert got[f"evidence/EXCH01/web_file/C/{SHELL}"] == image_set.hashes["C"][SHELL]
    (bad,) = [r for r in rows(tmp_path / "case") if r.kind == "disk_image"]
    assert bad.outcome == "failure" and "could not be verified" in bad.details and "read error" in bad.details
    assert custody(tmp_path / "case", "image_verify")[0]["status"] == "error"


@needs_tools
def test_corrupt_mft_entry_is_a_failure_row_and_the_rest_is_collected(
    image_set: di.ImageSet, folder_artifacts: dict[str, str], tmp_path: Path
) -> None:
    disk = Path(shutil.copyfile(image_set.raw, tmp_path / "mft.dd"))
    _part, index, _pos = di.mft_entry_location(disk, "inetpub/wwwroot/iisstart.htm")
    di.corrupt_mft_entry(disk, "inetpub/wwwroot/iisstart.htm")
    assert (
        run_cli("collect", str(disk), "--case", str(tmp_path / "case"), "--no-verify-image")
        == ExitCode.COLLECTION_FAILED
    )
    all_rows = rows(tmp_path / "case")
    (bad,) = [r for r in all_rows if r.outcome == "failure"]
    assert bad.source_path == f"{disk}#p1:/inetpub/wwwroot/iisstart.htm"
    assert f"MFT entry {index} is corrupt" in bad.details
    got = {k: v for k, v in stored(tmp_path / "case").items() if "%3A" not in k}
    expected = dict(folder_artifacts)
    del expected["evidence/EXCH01/web_file/C/inetpub/wwwroot/iisstart.htm"]
    assert got == expected


@needs_tools
def test_read_error_mid_file_fails_that_artifact_only(image_set: di.ImageSet, tmp_path: Path) -> None:
    target = f"{EX}/Bin/ExSetup.exe"
    offset, _length = di.file_data_offset(image_set.raw, target)
    disk = tmp_path / "cut.dd"
    with open(image_set.raw, "rb") as src, open(disk, "wb") as out:
        out.write(src.read(offset + 512))  # the image ends half a KiB into ExSetup.exe's data
    assert (
        run_cli("collect", str(disk), "--case", str(tmp_path / "case"), "--no-verify-image")
        == ExitCode.COLLECTION_FAILED
    )
    by_path = {r.source_path: r for r in rows(tmp_path / "case")}
    exsetup = by_path[f"{disk}#p1:/{target}"]
    assert exsetup.outcome == "failure" and "OSError" in exsetup.details and "ExSetup.exe" in exsetup.details
    shell = by_path[f"{disk}#p1:/{SHELL}"]
    assert shell.outcome == "success" and shell.sha256 == image_set.hashes["C"][SHELL]
    notes = [n["note"] for n in custody(tmp_path / "case", "note")]
    assert any("partition 2 starts at" in n and "beyond the end of the disk" in n for n in notes)


@needs_tools
def test_hash_mismatch_is_loud_and_collection_goes_on(image_set: di.ImageSet, tmp_path: Path) -> None:
    segs = copy_set(image_set["e01"], tmp_path / "img")
    chunk = di.corrupt_ewf_chunk(segs)
    assert run_cli("collect", str(segs[0]), "--case", str(tmp_path / "case")) == ExitCode.COLLECTION_FAILED
    (bad,) = [r for r in rows(tmp_path / "case") if r.kind == "disk_image"]
    assert bad.outcome == "failure" and bad.details.startswith("IMAGE HASH MISMATCH: md5 computed")
    first = chunk.number * 64
    assert f"1 chunk(s) fail their checksum and read as zeros: sectors {first}-{first + 63}" in bad.details
    verify = custody(tmp_path / "case", "image_verify")[0]
    assert verify["status"] == "mismatch" and verify["matches"] == {"md5": False, "sha1": False}
    assert verify["bad_chunks"] == [
        {
            "chunk": chunk.number,
            "sectors": f"{first}-{first + 63}",
            "media_offset": chunk.number * 32768,
            "segment": chunk.segment.name,
        }
    ]
    assert len(stored(tmp_path / "case")) >= 20


@needs_tools
def test_no_verify_image_is_recorded(image_set: di.ImageSet, tmp_path: Path) -> None:
    assert run_cli("collect", str(image_set["vhdx"][0]), "--case", str(tmp_path / "c"), "--no-verify-image") == 0
    assert custody(tmp_path / "c", "image_verify") == [
        {"image": str(image_set["vhdx"][0]), "status": "skipped", "reason": "--no-verify-image"}
    ]


@needs_tools
def test_as_image_and_auto_detection(image_set: di.ImageSet, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--as image needs a disk image file"):
        open_source_path(str(tmp_path), "image")
    mem = tmp_path / "host.raw"
    mem.write_bytes(bytes(1 << 20))  # zeros: a memory image, not a disk
    assert open_source_path(str(mem)).source_type == "memory"
    with pytest.raises(UsageError, match="no readable NTFS volume"):
        open_source_path(str(mem), "image")


@needs_tools
def test_triage_run_on_an_e01(image_set: di.ImageSet, tmp_path: Path) -> None:
    """`triage run IMAGE.E01`: collected, analyzed (the timestomped web shell found), reported."""
    from triage.report import load_findings

    case = tmp_path / "case"
    code = run_cli("run", str(image_set["e01"][0]), "--case", str(case), "--jobs", "2")
    assert code == 0
    assert (case / "report" / "report.html").is_file()
    findings = load_findings(Case.open(case))
    stomped = findings[findings.rule_id == "ntfs.timestomp.si_before_fn"]
    assert list(stomped.location) == [f"C:/{SHELL}"]
    assert set(findings.analyzer) >= {"ntfs_timestomp", "webshell_locations", "registry_hostinfo"}


# -- partition tables without any tool ----------------------------------------------------------------------
def _reader(buf: bytes):
    return lambda off, n: buf[off : off + n]


def _mbr(entries: list[tuple[int, int, int]]) -> bytearray:
    sector = bytearray(512)
    for i, (ptype, lba, count) in enumerate(entries):
        sector[446 + 16 * i : 462 + 16 * i] = struct.pack("<B3xB3xII", 0, ptype, lba, count)
    sector[510:512] = b"\x55\xaa"
    return sector


def test_mbr_with_a_logical_partition() -> None:
    disk = bytearray(8 << 20)
    disk[:512] = _mbr([(0x07, 2048, 2048), (0x05, 4096, 8192)])
    disk[4096 * 512 : 4097 * 512] = _mbr([(0x07, 63, 1000)])  # one logical partition, no next link
    table = read_partitions(_reader(bytes(disk)), len(disk))
    assert table.scheme == "mbr"
    assert [(p.index, p.offset, p.type) for p in table.partitions] == [(1, 2048 * 512, "0x07"), (5, 4159 * 512, "0x07")]
    assert table.partitions[1].size == 1000 * 512


def test_ebr_self_loop_is_reported() -> None:
    disk = bytearray(8 << 20)
    disk[:512] = _mbr([(0x05, 2048, 8192)])
    ebr = _mbr([(0x07, 63, 100)])
    struct.pack_into("<B3xB3xII", ebr, 462, 0, 0x05, 1, 100)  # -> 2049
    disk[2048 * 512 : 2049 * 512] = ebr
    ebr2 = _mbr([(0x07, 63, 100)])
    struct.pack_into("<B3xB3xII", ebr2, 462, 0, 0x05, 0, 100)  # -> back to 2048
    disk[2049 * 512 : 2050 * 512] = ebr2
    table = read_partitions(_reader(bytes(disk)), len(disk))
    assert [p.index for p in table.partitions] == [5, 6]
    assert any("loops back to sector 2048" in w for w in table.warnings)


def test_gpt_with_bad_entry_crc_and_absurd_counts() -> None:
    disk = bytearray(4 << 20)
    disk[:512] = _mbr([(0xEE, 1, len(disk) // 512 - 1)])
    head = bytearray(92)
    struct.pack_into("<8sIII", head, 0, b"EFI PART", 0x10000, 92, 0)
    struct.pack_into("<QQQQ", head, 24, 1, len(disk) // 512 - 1, 34, len(disk) // 512 - 34)
    struct.pack_into("<QIII", head, 72, 2, 1_000_000, 128, 0)  # a million entries declared
    struct.pack_into("<I", head, 16, zlib.crc32(head))
    disk[512 : 512 + 92] = head
    table = read_partitions(_reader(bytes(disk)), len(disk))
    assert table.partitions == []
    assert any("1000000 entries declared" in w for w in table.warnings)


@needs_tools
def test_hives_and_event_logs_in_use_on_the_server_are_read_from_the_image(tmp_path: Path) -> None:
    """What a live copy cannot open (hives, EVTX held by the running system) is plain data in an image."""
    from triage.testing.volume import VolumeSpec, build_volume

    tree = build_volume(tmp_path / "tree", VolumeSpec(event_logs=True, all_hives=True))
    paths, _layout = di.build_image([tree], tmp_path / "img" / "srv.dd", "raw", scheme="mbr")
    assert run_cli("collect", str(paths[0]), "--case", str(tmp_path / "case"), "--no-verify-image") == 0
    expected = di.tree_hashes(tree)
    got = {r.relpath.split("/", 4)[4]: (r.kind, r.sha256) for r in rows(tmp_path / "case") if r.relpath}
    logs = {rel: sha for rel, (kind, sha) in got.items() if kind == "evtx"}
    hives = {rel: sha for rel, (kind, sha) in got.items() if kind == "registry_hive"}
    assert len(logs) == 6 and len(hives) == 7
    assert all(expected[rel] == sha for rel, sha in {**logs, **hives}.items())
    assert "Windows/System32/config/SAM" in hives and "Users/Administrator/NTUSER.DAT" in hives


class _FakeEntry:
    """Just enough of a pyfsntfs file entry for the lister: a folder whose index names itself."""

    def __init__(self, ref: int, name: str, child: _FakeEntry | None = None) -> None:
        self.file_reference, self.name, self.child = (1 << 48) | ref, name, child
        self.number_of_sub_file_entries, self.number_of_attributes = 1, 3
        self.file_attribute_flags = 0x10

    def get_sub_file_entry(self, _i: int) -> _FakeEntry:
        return self.child or self  # without a child, the folder lists itself: a loop

    def is_allocated(self) -> bool:
        return True

    def has_directory_entries_index(self) -> bool:
        return True

    def get_modification_time_as_integer(self) -> int:
        return 132592112470000000

    get_access_time_as_integer = get_modification_time_as_integer


def test_a_directory_loop_in_a_corrupt_index_is_not_walked() -> None:
    from collectors.images.ntfs import NtfsVolume
    from collectors.vfs import CORRUPT, DIR, VNode, glob

    vol = NtfsVolume.__new__(NtfsVolume)
    vol.prefix, vol._failures = "img.dd#p1:", []
    root = vol._list(_FakeEntry(5, "", _FakeEntry(64, "loop")), "", frozenset({5}))  # root -> loop -> loop ...
    assert [(n.name, n.kind) for n in root] == [("loop", DIR)]
    (inner,) = root[0].children()
    assert inner.kind == CORRUPT and "MFT entry 64 is one of its own parent folders" in inner.detail

    top = VNode(name="", kind=DIR, source_path="img.dd#p1:/", lister=lambda: root)
    assert [m.node.kind for m in glob(top, "**")] == [CORRUPT]
