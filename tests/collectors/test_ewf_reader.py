"""The own EWF chunk reader against libewf: the same media bytes, bad chunks as libewf treats them."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pyewf
import pytest

from collectors.images import disk as d
from collectors.images import ewf as ewf_media
from collectors.images.container import open_image
from triage.errors import UsageError
from triage.formats import ewf
from triage.hashing import copy_hashing
from triage.testing import diskimage as di


def media_sha256(disk: d.Disk) -> str:
    return copy_hashing(d.DiskReader(disk), None, ["sha256"], None, disk.size)[1]["sha256"]


def libewf_media(segments: list[Path]) -> bytes:
    h = pyewf.handle()
    h.open([str(p) for p in segments])
    try:
        return bytes(h.read_buffer_at_offset(h.media_size, 0))
    finally:
        h.close()


def copy_set(paths: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(p, folder / p.name)) for p in paths]


def test_same_media_as_libewf_and_the_raw_disk(image_set: di.ImageSet) -> None:
    img = open_image(str(image_set["e01"][0]))
    try:
        assert isinstance(img.disk, ewf_media.EwfChunkDisk)
        raw = image_set.raw.read_bytes()
        assert media_sha256(img.disk) == hashlib.sha256(raw).hexdigest()
        assert libewf_media(image_set["e01"]) == raw
        # reads that start and end inside chunks and cross chunk and segment boundaries
        chunk = img.disk.chunk_size
        for offset, size in ((0, 512), (chunk - 7, 20), (3 * chunk + 5, 5 * chunk), (len(raw) - 100, 400)):
            assert img.disk.read_at(offset, size) == raw[offset : offset + size]
        assert img.disk.bad_chunks == set()
    finally:
        img.close()


def test_bad_chunk_reads_as_zeros_like_libewf(image_set: di.ImageSet, tmp_path: Path) -> None:
    segs = copy_set(image_set["e01"], tmp_path / "img")
    bad = di.corrupt_ewf_chunk(segs, media_offset=image_set.layout.partitions[0].offset)
    img = open_image(str(segs[0]))
    try:
        disk = img.disk
        assert isinstance(disk, ewf_media.EwfChunkDisk)
        ours = disk.read_at(0, disk.size)
        assert ours == libewf_media(segs)  # the same zero-filled chunk as libewf
        n = image_set.layout.partitions[0].offset // disk.chunk_size
        assert disk.bad_chunks == {n}
        assert ours[n * disk.chunk_size : (n + 1) * disk.chunk_size] == bytes(disk.chunk_size)
        assert bad.number == n
    finally:
        img.close()


def test_unknown_layout_falls_back_to_libewf(image_set: di.ImageSet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ewf_media, "table_chunks", lambda fd, size: None)
    img = open_image(str(image_set["e01"][0]))
    try:
        assert isinstance(img.disk, d.LibyalDisk)
        assert media_sha256(img.disk) == hashlib.sha256(image_set.raw.read_bytes()).hexdigest()
    finally:
        img.close()


def test_damaged_table_is_not_trusted(image_set: di.ImageSet, tmp_path: Path) -> None:
    """A table whose header checksum fails is not read by our map; libewf refuses the set with the reason."""
    segs = copy_set(image_set["e01"], tmp_path / "img")
    data = bytearray(segs[0].read_bytes())
    with open(segs[0], "rb") as fh:
        table = next(s.offset for s in ewf.iter_sections(fh.fileno(), len(data)) if s.type == "table")
    data[table + 76 + 4] ^= 0xFF  # the padding after the entry count: only the header checksum notices
    segs[0].write_bytes(bytes(data))
    with open(segs[0], "rb") as fh:
        assert ewf.table_chunks(fh.fileno(), len(data)) is None
    with pytest.raises(UsageError, match="header checksum does not match"):
        open_image(str(segs[0]))
