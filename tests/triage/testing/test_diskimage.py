"""Tests for the disk image builders, reading every image back with the libyal bindings (pyewf, pyvhdi,
pyvmdk, pyfsntfs) and checking partition tables byte by byte."""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import sys
import uuid
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pyewf
import pyfsntfs
import pytest
import pyvhdi
import pyvmdk

from triage.testing import diskimage as di
from triage.testing.volume import T0

pytestmark = pytest.mark.skipif(bool(di.tools_missing()), reason=f"disk image tools: {di.tools_missing()}")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> di.ImageSet:
    return di.build_image_set(tmp_path_factory.mktemp("diskimage"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_media(fmt: str, paths: list[Path]) -> bytes:
    if fmt in ("raw", "split-raw"):
        return b"".join(p.read_bytes() for p in paths)
    if fmt == "e01":
        handle = pyewf.handle()
        handle.open([str(p) for p in paths])
    elif fmt in ("vhd", "vhdx"):
        handle = pyvhdi.file()
        handle.open(str(paths[0]))
    else:
        handle = pyvmdk.handle()
        handle.open(str(paths[0]))
        handle.open_extent_data_files()
    try:
        return handle.read(handle.get_media_size())
    finally:
        handle.close()


def ntfs_volume(fh, offset: int) -> pyfsntfs.volume:
    vol = pyfsntfs.volume()
    vol.open_file_object(di._OffsetReader(fh, offset))
    return vol


def volume_hashes(vol: pyfsntfs.volume) -> dict[str, str]:
    out: dict[str, str] = {}

    def walk(entry, prefix: str) -> None:
        for i in range(entry.number_of_sub_file_entries):
            child = entry.get_sub_file_entry(i)
            name = child.name
            if not prefix and name.startswith("$"):
                continue  # NTFS metadata files
            rel = f"{prefix}{name}"
            if child.has_directory_entries_index():
                walk(child, rel + "/")
            else:
                out[rel] = sha256(child.read())

    walk(vol.get_root_directory(), "")
    return out


def test_tools_missing_names_the_tool_and_its_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert di.tools_missing() is None  # here: every tool present and a probe mount worked (cached)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: nothing is found
    assert di.tools_missing.__wrapped__() == "mkntfs not found (Debian package ntfs-3g)"
    (tmp_path / "mkntfs").symlink_to(shutil.which("mkntfs", path="/usr/sbin:/sbin:/usr/bin") or "/usr/sbin/mkntfs")
    for tool in ("ntfs-3g", "fusermount", "qemu-img"):
        (tmp_path / tool).symlink_to(shutil.which(tool, path="/usr/bin:/bin:/usr/sbin") or f"/usr/bin/{tool}")
    assert di.tools_missing.__wrapped__() == "ewfacquire not found (Debian package ewf-tools)"


def test_every_format_reads_back_as_the_raw_disk(images: di.ImageSet) -> None:
    raw = images.raw.read_bytes()
    assert len(raw) == images.layout.size == 18 * di.MIB
    assert set(images) == set(di.FORMATS)
    for fmt, paths in images.items():
        assert all(p.exists() for p in paths)
        assert sha256(read_media(fmt, paths)) == sha256(raw), fmt
    assert [p.name for p in images["split-raw"]] == ["exch01.001", "exch01.002", "exch01.003"]
    assert [p.stat().st_size for p in images["split-raw"]] == [6 * di.MIB] * 3
    assert [p.suffix for p in images["vhd"] + images["vhdx"] + images["vmdk"]] == [".vhd", ".vhdx", ".vmdk"]


def test_e01_is_split_and_carries_case_metadata_and_hashes(images: di.ImageSet) -> None:
    segments = images["e01"]
    assert [p.suffix for p in segments] == [".E01", ".E02", ".E03", ".E04"]
    assert all(p.stat().st_size <= di.MIB + 64 * 1024 for p in segments)
    raw = images.raw.read_bytes()
    handle = pyewf.handle()
    handle.open([str(p) for p in segments])
    try:
        assert handle.get_hash_value("MD5") == hashlib.md5(raw).hexdigest()
        assert handle.get_hash_value("SHA1") == hashlib.sha1(raw).hexdigest()
        assert handle.get_header_value("case_number") == "ED2102-TEST"
        assert handle.get_header_value("examiner_name") == "triage tests"
        assert handle.get_media_size() == len(raw)
    finally:
        handle.close()
    chunks = di.ewf_chunks(segments)
    assert len(chunks) == len(raw) // (64 * 512) == 576
    assert {c.segment for c in chunks} == set(segments)


def _gpt(raw: bytes, lba: int) -> tuple[bytes, tuple]:
    head = raw[lba * 512 : lba * 512 + 92]
    return head, struct.unpack_from("<8sIIIIQQQQ16sQIII", head)


def test_gpt_layout_crcs_backup_and_hidden_sectors(images: di.ImageSet) -> None:
    raw = images.raw.read_bytes()
    last = len(raw) // 512 - 1
    assert raw[510:512] == b"\x55\xaa" and raw[0x1BE + 4] == 0xEE  # protective MBR
    for lba, other, entries_lba in ((1, last, 2), (last, 1, last - 32)):
        head, fields = _gpt(raw, lba)
        zeroed = head[:16] + b"\0\0\0\0" + head[20:]
        assert fields[0] == b"EFI PART" and fields[4] == 0
        assert fields[3] == zlib.crc32(zeroed)
        assert (fields[5], fields[6], fields[10]) == (lba, other, entries_lba)
        assert uuid.UUID(bytes_le=fields[9]) == images.layout.disk_guid
        assert fields[13] == zlib.crc32(raw[entries_lba * 512 : entries_lba * 512 + 128 * 128])
    parts = images.layout.partitions
    assert [(p.number, p.offset, p.size) for p in parts] == [(1, di.MIB, 8 * di.MIB), (2, 9 * di.MIB, 8 * di.MIB)]
    assert [str(p.guid) for p in parts] == [
        "c0c0c0c0-0c0c-4c0c-8c0c-00000000000c",
        "d0d0d0d0-0d0d-4d0d-8d0d-00000000000d",
    ]
    for i, part in enumerate(parts):
        entry = raw[1024 + 128 * i : 1024 + 128 * (i + 1)]
        assert uuid.UUID(bytes_le=entry[:16]) == di.BASIC_DATA
        assert uuid.UUID(bytes_le=entry[16:32]) == part.guid
        assert struct.unpack_from("<QQ", entry, 32) == (part.offset // 512, (part.offset + part.size) // 512 - 1)
        for boot in (part.offset, part.offset + part.size - 512):  # boot sector and its backup
            assert raw[boot + 3 : boot + 11] == b"NTFS    "
            assert struct.unpack_from("<I", raw, boot + 0x1C)[0] == part.offset // 512
    assert images.layout.mounted_devices_value(2) == b"DMIO:ID:" + parts[1].guid.bytes_le
    assert di.ntfs_partitions(images.raw) == [(di.MIB, 8 * di.MIB), (9 * di.MIB, 8 * di.MIB)]


def test_volumes_hold_the_trees_with_equal_hashes(images: di.ImageSet) -> None:
    with open(images.raw, "rb") as fh:
        for letter, part in zip("CD", images.layout.partitions, strict=True):
            vol = ntfs_volume(fh, part.offset)
            try:
                assert volume_hashes(vol) == images.hashes[letter]
                assert vol.name == ("System" if letter == "C" else "Data")
            finally:
                vol.close()
    assert len(images.hashes["C"]) == 18 and len(images.hashes["D"]) == 3
    assert images.hashes["C"][di.WEBSHELL] == sha256(images.trees["C"].joinpath(di.WEBSHELL).read_bytes())


def test_timestomped_shell_and_alternate_data_stream(images: di.ImageSet) -> None:
    with open(images.raw, "rb") as fh:
        vol = ntfs_volume(fh, images.layout.partitions[0].offset)
        try:
            shell = vol.get_file_entry_by_path("\\" + di.WEBSHELL.replace("/", "\\"))
            si = shell.get_attribute(0)
            fn = next(shell.get_attribute(i) for i in range(shell.number_of_attributes)
                      if shell.get_attribute(i).attribute_type == 0x30)  # fmt: skip
            assert si.attribute_type == 0x10
            stomped, real = di.to_filetime(di.STOMPED_SI), di.to_filetime(di.SHELL_FN)
            assert [si.get_creation_time_as_integer(), si.get_modification_time_as_integer()] == [stomped, stomped]
            assert si.get_entry_modification_time_as_integer() == stomped  # the MFT-changed time too
            assert [fn.get_creation_time_as_integer(), fn.get_modification_time_as_integer()] == [real, real]
            assert shell.get_i30_modification_time_as_integer() == real  # the parent folder's index copy
            assert shell.number_of_alternate_data_streams == 1
            ads = shell.get_alternate_data_stream(0)
            assert ads.name == "Zone.Identifier"
            assert ads.read() == di.ZONE_IDENTIFIER
            assert shell.read() == images.trees["C"].joinpath(di.WEBSHELL).read_bytes()
            # an ordinary file: every SI and FN time is its modification time in the tree
            page = vol.get_file_entry_by_path("\\inetpub\\wwwroot\\iisstart.htm")
            t0 = di.to_filetime(T0)
            times = {page.get_attribute(i).get_modification_time_as_integer() for i in (0, 1)}
            assert times == {t0} and page.get_i30_creation_time_as_integer() == t0
            # the SYSTEM hive on C: names both partitions in MountedDevices
            system = vol.get_file_entry_by_path("\\Windows\\System32\\config\\SYSTEM").read()
            assert images.layout.mounted_devices_value(1) in system
            assert images.layout.mounted_devices_value(2) in system
        finally:
            vol.close()


@pytest.fixture(scope="module")
def small_volumes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    work = tmp_path_factory.mktemp("small")
    trees = [
        di.write_tree(work / "a", {"Windows/System32/config/SOFTWARE": b"regf" + bytes(5000), "x.txt": b"a"}, T0),
        di.write_tree(work / "b", {f"logs/{i:03d}.log": b"line %d\r\n" % i * 50 for i in range(120)}, T0),
    ]
    return [di.build_ntfs_volume(t, work / f"{t.name}.ntfs", label=t.name.upper()) for t in trees]


def test_mbr_disk_layout_and_mounted_devices(small_volumes: list[Path], tmp_path: Path) -> None:
    layout = di.build_disk(small_volumes, tmp_path / "mbr.dd", scheme="mbr", disk_signature=0x1234ABCD, gap=2)
    raw = layout.path.read_bytes()
    assert raw[510:512] == b"\x55\xaa" and struct.unpack_from("<I", raw, 0x1B8)[0] == 0x1234ABCD
    entries = [raw[0x1BE + 16 * i : 0x1BE + 16 * (i + 1)] for i in range(4)]
    assert [e[0] for e in entries] == [0x80, 0, 0, 0] and [e[4] for e in entries] == [7, 7, 0, 0]
    assert [p.offset for p in layout.partitions] == [di.MIB, 11 * di.MIB]  # 1 MiB start, 8 MiB volume, 2 MiB gap
    for entry, part in zip(entries, layout.partitions, strict=False):
        assert struct.unpack_from("<II", entry, 8) == (part.offset // 512, part.size // 512)
    assert layout.mounted_devices_value(2) == struct.pack("<IQ", 0x1234ABCD, 11 * di.MIB)
    assert layout.disk_guid is None and layout.partitions[0].guid is None
    with open(layout.path, "rb") as fh:
        vol = ntfs_volume(fh, layout.partitions[1].offset)
        try:
            assert vol.get_file_entry_by_path("\\logs\\119.log").read() == b"line 119\r\n" * 50
            # a folder of 120 entries needs INDX records: their $FILE_NAME copies got the tree's time too
            entry = vol.get_file_entry_by_path("\\logs\\007.log")
            assert entry.get_i30_modification_time_as_integer() == di.to_filetime(T0)
        finally:
            vol.close()


def test_other_subformats_and_segment_sizes(small_volumes: list[Path], tmp_path: Path) -> None:
    layout = di.build_disk(small_volumes[:1], tmp_path / "one.dd")
    raw = layout.path.read_bytes()
    fixed = di.to_format(layout.path, "vhd", tmp_path / "fixed", subformat="fixed")
    assert fixed[0].stat().st_size == len(raw) + 512  # a fixed VHD is the data plus a footer sector
    flat = di.to_format(layout.path, "vmdk", tmp_path / "flat", subformat="monolithicFlat")
    assert [p.name for p in flat] == ["one.vmdk", "one-flat.vmdk"]
    stream = di.to_format(layout.path, "vmdk", tmp_path / "stream", subformat="streamOptimized")
    split = di.to_format(layout.path, "split-raw", tmp_path / "split", segment_size=4 * di.MIB)
    assert [p.stat().st_size for p in split] == [4 * di.MIB, 4 * di.MIB, 2 * di.MIB]
    for fmt, paths in (("vhd", fixed), ("vmdk", flat), ("vmdk", stream), ("split-raw", split)):
        assert read_media(fmt, paths) == raw
    with pytest.raises(ValueError, match="unknown image format"):
        di.to_format(layout.path, "qcow2", tmp_path / "q")  # type: ignore[arg-type]


def test_bad_image_makers(images: di.ImageSet, tmp_path: Path) -> None:
    disk = tmp_path / "bad.dd"
    shutil.copyfile(images.raw, disk)
    original = disk.read_bytes()
    di.corrupt_gpt_header(disk)
    raw = disk.read_bytes()
    head, fields = _gpt(raw, 1)
    assert fields[3] != zlib.crc32(head[:16] + b"\0\0\0\0" + head[20:])  # primary broken
    last = len(raw) // 512 - 1
    assert raw[last * 512 :] == original[last * 512 :]  # backup header intact
    assert raw[:512] == original[:512] and raw[1024:] == original[1024:]
    assert sum(a != b for a, b in zip(raw[512:1024], original[512:1024], strict=True)) == 1

    di.garbage_mbr(disk)
    assert disk.read_bytes()[510:512] != b"\x55\xaa" and disk.read_bytes()[512:] == raw[512:]

    shutil.copyfile(images.raw, disk)
    part, index, pos = di.mft_entry_location(disk, di.WEBSHELL)
    assert part == di.MIB and pos > part and disk.read_bytes()[pos : pos + 4] == b"FILE"
    assert di.corrupt_mft_entry(disk, di.WEBSHELL) == pos
    with open(disk, "rb") as fh:
        vol = ntfs_volume(fh, part)
        try:
            with pytest.raises(OSError):
                vol.get_file_entry(index).read()
            # the other files of the volume still read
            page = vol.get_file_entry_by_path("\\inetpub\\wwwroot\\iisstart.htm").read()
            assert sha256(page) == images.hashes["C"]["inetpub/wwwroot/iisstart.htm"]
        finally:
            vol.close()

    seg = tmp_path / "t.E02"
    shutil.copyfile(images["e01"][1], seg)
    assert di.truncate_segment(seg, 1000).stat().st_size == 1000


def test_corrupt_ewf_chunk_fails_verification_of_that_chunk_only(images: di.ImageSet, tmp_path: Path) -> None:
    segments = [tmp_path / p.name for p in images["e01"]]
    for src, dst in zip(images["e01"], segments, strict=True):
        shutil.copyfile(src, dst)
    start, _length = di.file_data_offset(images.raw, "ExchangeDatabases/DB01/DB01.edb")
    chunk = di.corrupt_ewf_chunk(segments, media_offset=start + 40000)
    assert chunk.number == (start + 40000) // 32768
    assert chunk.size == 32768 + 4 and not chunk.compressed  # random data stays stored, with its Adler-32
    proc = subprocess.run(["ewfverify", "-q", str(segments[0])], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    first = chunk.number * 64
    assert f"at sector(s): {first} - {first + 63}" in proc.stdout
    raw = images.raw.read_bytes()
    media = read_media("e01", segments)
    differ = {i // 32768 for i in range(0, len(raw), 512) if media[i : i + 512] != raw[i : i + 512]}
    assert differ == {chunk.number}


def test_ntfs_times_need_aware_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        di.to_filetime(datetime(2021, 3, 3))
    assert di.to_filetime(datetime(1601, 1, 1, tzinfo=UTC)) == 0
    assert di.to_filetime(datetime(1970, 1, 1, tzinfo=UTC)) == di.NTFS_EPOCH_OFFSET * 10**7


def test_cli_builds_an_e01(tmp_path: Path) -> None:
    tree = di.write_tree(tmp_path / "tree", {"Windows/System32/config/SYSTEM": b"regf" + bytes(100)}, T0)
    data = di.write_tree(tmp_path / "data", {"logs/a.log": b"x" * 10000}, T0)
    out = tmp_path / "out" / "host.E01"
    proc = subprocess.run(
        [sys.executable, "-m", "triage.testing.diskimage", str(tree), str(out),
         "--format", "e01", "--data-tree", str(data), "--scheme", "mbr"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(out)]
    assert "partition 2: offset 9437184" in proc.stderr
    handle = pyewf.handle()
    handle.open([str(out)])
    try:
        assert handle.get_media_size() == 18 * di.MIB
    finally:
        handle.close()
