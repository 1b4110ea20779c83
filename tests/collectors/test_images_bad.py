"""Bad disk images (issue 8, point 4): truncated and missing segments, segments given out of order, broken
partition tables, a smashed MFT entry, a corrupt EWF chunk, and files that are no image at all.

Every collection runs ``triage collect IMAGE --case DIR --json -q`` (``triage.cli.main``) in a forked child
with a timeout, so a hang fails the test instead of stalling the suite. Each test checks the exit code, the JSON
summary, manifest rows and custody events, that what was collected has the hashes of the tree the image
was built from, and that the image files are byte-identical afterwards. Damaged images are copies of the
session's ``image_set`` (see ``conftest.py``), damaged with :mod:`triage.testing.diskimage`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from triage.cli import main
from triage.errors import ExitCode
from triage.testing import diskimage as di

TIMEOUT = 90  # seconds; a healthy collection of these images takes about two
DB = "ExchangeDatabases/DB01/DB01.edb"  # on D:, not an artifact triage collects
LSASS = "Windows/Temp/lsass.dmp"


@dataclass
class Run:
    """One ``triage collect`` of a (damaged) image."""

    code: int
    summary: dict[str, Any]
    stderr: str
    case: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def outcome_rows(self, outcome: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["outcome"] == outcome]

    def event(self, action: str) -> dict[str, Any]:
        found = [e["details"] for e in self.events if e["action"] == action]
        assert len(found) == 1, f"expected one {action} event, got {len(found)}"
        return found[0]

    def notes(self) -> list[str]:
        return [e["details"]["note"] for e in self.events if e["action"] == "note"]

    def stored(self) -> dict[tuple[str, str], str]:
        """(drive, path on the volume) -> sha256 of every stored artifact."""
        out = {}
        for r in self.rows:
            if r["outcome"] in ("success", "empty"):
                _evidence, _host, _kind, drive, rel = r["relpath"].split("/", 4)
                out[(drive, rel)] = r["sha256"]
        return out


def _digest(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _run_cli(argv: list[str], out: Path, err: Path) -> int:
    """``triage.cli.main(argv)`` in a forked child (triage is imported already, so no start-up cost),
    killed after TIMEOUT s: a hang, even inside a C library, fails the test instead of the suite."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            with open(out, "w") as o, open(err, "w") as e:
                sys.stdout, sys.stderr = o, e
                try:
                    code = main(argv)
                except BaseException:
                    traceback.print_exc(file=e)
                    code = 99
                o.flush()
                e.flush()
        finally:
            os._exit(code)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"triage {' '.join(argv[:2])} did not finish within {TIMEOUT} s (a hang)")


def collect(image: Path, case: Path, *extra: str) -> Run:
    """``triage collect IMAGE --case CASE --json -q`` under a timeout; the image folder must not change."""
    folder = sorted(p for p in image.parent.iterdir() if p.is_file())
    before = _digest(folder)
    out, err = case.parent / f"{case.name}.stdout", case.parent / f"{case.name}.stderr"
    code = _run_cli(["collect", str(image), "--case", str(case), "--json", "-q", *extra], out, err)
    assert _digest(folder) == before, "the image files changed"
    stdout, stderr = out.read_text(), err.read_text()
    assert "Traceback" not in stderr, stderr
    summary = json.loads(stdout) if stdout.strip() else {}
    run = Run(code, summary, stderr, case)
    if (case / "manifest.jsonl").exists():
        run.rows = [json.loads(line) for line in (case / "manifest.jsonl").read_text().splitlines() if line]
        run.events = [json.loads(line) for line in (case / "custody.jsonl").read_text().splitlines() if line]
    return run


def copy_set(paths: list[Path], folder: Path, skip: tuple[str, ...] = ()) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in paths:
        if p.suffix in skip:
            continue
        dest = folder / p.name
        shutil.copyfile(p, dest)
        out.append(dest)
    return out


def assert_tree_hashes(run: Run, image_set: di.ImageSet, *, except_: set[str] = frozenset()) -> None:
    """Every stored file that comes from the trees has the tree's sha256; the usual 19 files are there."""
    stored = run.stored()
    compared = 0
    for (drive, rel), digest in stored.items():
        expected = image_set.hashes.get(drive, {}).get(rel)
        if expected is not None and rel not in except_:
            assert digest == expected, f"{drive}:/{rel}"
            compared += 1
    # 18 files of C: are artifacts (the web shell among them), plus the HttpProxy log on D:
    assert compared == 19 - len(except_)


# -- segments ---------------------------------------------------------------------------------------
def test_truncated_last_segment_collects_what_is_there_and_says_so(image_set: di.ImageSet, tmp_path: Path) -> None:
    segs = copy_set(image_set["e01"], tmp_path / "img")
    di.truncate_segment(segs[-1], segs[-1].stat().st_size // 2)
    run = collect(segs[0], tmp_path / "case")
    assert run.code == ExitCode.COLLECTION_FAILED
    verify = run.event("image_verify")
    assert verify["status"] == "error" and "read error at offset" in verify["error"]
    assert run.summary["images"][0]["verification"] == "error"
    [bad] = run.outcome_rows("failure")
    assert bad["kind"] == "disk_image" and bad["source_path"] == str(segs[0])
    assert bad["details"].startswith("image media stream could not be verified: read error at offset")
    assert bad["details"].endswith("(collected anyway)")
    assert "WARNING" in run.stderr and "could not be verified" in run.stderr
    # everything the artifacts need lies before the cut: all of it collected, with the tree's hashes
    assert_tree_hashes(run, image_set)


def test_truncated_middle_segment(image_set: di.ImageSet, tmp_path: Path) -> None:
    segs = copy_set(image_set["e01"], tmp_path / "img")
    di.truncate_segment(segs[1], segs[1].stat().st_size // 2)
    run = collect(segs[0], tmp_path / "case")
    assert run.code == ExitCode.COLLECTION_FAILED
    assert run.event("image_verify")["status"] == "error"
    [bad] = run.outcome_rows("failure")
    assert bad["kind"] == "disk_image" and "could not be verified" in bad["details"]
    assert_tree_hashes(run, image_set)


def test_truncated_first_segment_is_a_clear_error(image_set: di.ImageSet, tmp_path: Path) -> None:
    segs = copy_set(image_set["e01"], tmp_path / "img")
    di.truncate_segment(segs[0], 4096)  # the header survives; volume, table and chunks are gone
    run = collect(segs[0], tmp_path / "case")
    assert run.code == 2
    assert f"ERROR triage: {segs[0]}:" in run.stderr
    # libewf reads the lost chunks as zeros: our own section walk names the damaged segment
    assert "exch01.E01 is truncated: its 'sectors' section points to" in run.stderr
    assert "but the file has 4,096 bytes" in run.stderr
    assert not (tmp_path / "case" / "manifest.jsonl").exists()  # usage errors come before any write


def test_segment_cut_short_in_its_last_section_is_named(image_set: di.ImageSet, tmp_path: Path) -> None:
    segs = copy_set(image_set["e01"], tmp_path / "img")
    di.truncate_segment(segs[1], segs[1].stat().st_size - 100)  # the 'next' section is gone: libewf refuses
    run = collect(segs[0], tmp_path / "case")
    assert run.code == 2
    assert "cannot open this EWF set" in run.stderr
    assert "exch01.E02 is truncated: its " in run.stderr
    assert not (tmp_path / "case").exists()


def test_truncated_middle_segment_is_named_in_the_notes(image_set: di.ImageSet, tmp_path: Path) -> None:
    segs = copy_set(image_set["e01"], tmp_path / "img")
    di.truncate_segment(segs[1], segs[1].stat().st_size // 2)
    run = collect(segs[0], tmp_path / "case")
    assert run.code == ExitCode.COLLECTION_FAILED
    assert any(n.startswith("DAMAGED: exch01.E02 is truncated:") for n in run.notes())
    assert "WARNING" in run.stderr and "exch01.E02 is truncated" in run.stderr


def test_missing_middle_segment_is_a_usage_error(image_set: di.ImageSet, tmp_path: Path) -> None:
    segs = copy_set(image_set["e01"], tmp_path / "img", skip=(".E02",))
    assert [p.suffix for p in segs] == [".E01", ".E03", ".E04"]
    run = collect(segs[0], tmp_path / "case")
    assert run.code == 2
    assert "EWF segment(s) 2 of 4 are missing (found 3 segment files)" in run.stderr
    assert not (tmp_path / "case").exists()


def test_later_segment_given_first_reads_the_set_from_e01(image_set: di.ImageSet, tmp_path: Path) -> None:
    segs = copy_set(image_set["e01"], tmp_path / "img")
    run = collect(segs[2], tmp_path / "case")
    assert run.code == 0
    assert f"exch01.E03 is segment 3; reading the set from its first segment {segs[0]}" in run.notes()
    verify = run.event("image_verify")
    assert verify["status"] == "verified" and verify["matches"] == {"md5": True, "sha1": True}
    assert verify["computed"]["sha256"] == hashlib.sha256(image_set.raw.read_bytes()).hexdigest()
    assert run.outcome_rows("failure") == []
    assert_tree_hashes(run, image_set)


def test_segments_renamed_out_of_order_are_read_in_header_order(image_set: di.ImageSet, tmp_path: Path) -> None:
    segs = copy_set(image_set["e01"], tmp_path / "img")
    swap = tmp_path / "img" / "swap"
    segs[1].rename(swap)
    segs[2].rename(segs[1])  # .E02 now holds segment 3 and .E03 segment 2
    swap.rename(segs[2])
    run = collect(segs[0], tmp_path / "case")
    assert run.code == 0
    verify = run.event("image_verify")
    assert verify["status"] == "verified"
    assert verify["computed"]["sha256"] == hashlib.sha256(image_set.raw.read_bytes()).hexdigest()
    assert_tree_hashes(run, image_set)


def test_later_segment_without_the_first_is_a_usage_error(image_set: di.ImageSet, tmp_path: Path) -> None:
    segs = copy_set(image_set["e01"], tmp_path / "img", skip=(".E01",))
    run = collect(segs[0], tmp_path / "case")
    assert run.code == 2
    assert "exch01.E02 is segment 2 of an EWF set, and segment 1 (exch01.E01) is not next to it" in run.stderr


# -- partition tables ------------------------------------------------------------------------------
def test_corrupt_primary_gpt_uses_the_backup(image_set: di.ImageSet, tmp_path: Path) -> None:
    [disk] = copy_set(image_set["raw"], tmp_path / "img")
    di.corrupt_gpt_header(disk)
    run = collect(disk, tmp_path / "case")
    assert run.code == 0
    notes = run.notes()
    assert "exch01.dd: primary GPT header unusable: header CRC mismatch" in notes
    assert "exch01.dd: using the backup GPT header at the end of the disk" in notes
    parts = run.event("image_open")["partitions"]
    assert [(p["offset"], p["guid"], p["drive"], p["letter_from"]) for p in parts] == [
        (di.MIB, str(image_set.layout.partitions[0].guid), "C", "MountedDevices"),
        (9 * di.MIB, str(image_set.layout.partitions[1].guid), "D", "MountedDevices"),
    ]
    assert_tree_hashes(run, image_set)


def test_garbage_protective_mbr_on_a_gpt_disk(image_set: di.ImageSet, tmp_path: Path) -> None:
    [disk] = copy_set(image_set["raw"], tmp_path / "img")
    di.garbage_mbr(disk)
    run = collect(disk, tmp_path / "case")
    assert run.code == 0
    notes = run.notes()
    assert "exch01.dd: no partition table (no boot signature in sector 0)" in notes
    assert "exch01.dd: a GPT was found behind the unusable MBR and used" in notes
    assert [p["scheme"] for p in run.event("image_open")["partitions"]] == ["gpt", "gpt"]
    assert_tree_hashes(run, image_set)


def test_garbage_mbr_on_an_mbr_disk_finds_the_volumes_by_boot_sector(image_set: di.ImageSet, tmp_path: Path) -> None:
    raw = image_set.raw.read_bytes()
    vols = []
    for part in image_set.layout.partitions:
        vol = tmp_path / f"p{part.number}.ntfs"
        vol.write_bytes(raw[part.offset : part.offset + part.size])
        vols.append(vol)
    layout = di.build_disk(vols, tmp_path / "img" / "mbr.dd", scheme="mbr")
    di.garbage_mbr(layout.path)
    run = collect(layout.path, tmp_path / "case")
    assert run.code == 0
    notes = run.notes()
    assert "mbr.dd: no partition table (no boot signature in sector 0)" in notes
    assert (
        "mbr.dd: partition table unusable: 2 NTFS volume(s) found by their boot sectors at offset(s) 1048576, 9437184"
        in notes
    )
    # no table, so no MountedDevices match: C: is the volume holding Windows, D: the next one
    parts = run.event("image_open")["partitions"]
    assert [(p["scheme"], p["drive"], p["role"]) for p in parts] == [
        ("carved", "C", "system volume"),
        ("carved", "D", "data volume"),
    ]
    assert_tree_hashes(run, image_set)


# -- NTFS ---------------------------------------------------------------------------------------------
def test_corrupt_mft_entry_is_a_failure_row_and_the_rest_is_collected(image_set: di.ImageSet, tmp_path: Path) -> None:
    [disk] = copy_set(image_set["raw"], tmp_path / "img")
    _part, index, _pos = di.mft_entry_location(disk, di.WEBSHELL)
    di.corrupt_mft_entry(disk, di.WEBSHELL)  # 'BAAD' over the web shell's FILE signature
    run = collect(disk, tmp_path / "case")
    assert run.code == ExitCode.COLLECTION_FAILED
    [bad] = run.outcome_rows("failure")
    assert bad["kind"] == "web_file" and bad["source_path"] == f"{disk}#p1:/{di.WEBSHELL}"
    assert bad["details"].startswith(f"MFT entry {index} is corrupt")
    assert "WARNING" in run.stderr and f"Dk2jQ8ab.aspx: MFT entry {index} is corrupt" in run.stderr
    assert_tree_hashes(run, image_set, except_={di.WEBSHELL})
    # its Zone.Identifier stream lived in the same MFT entry: gone with it, the folder's other files are not
    assert ("C", di.WEBSHELL + "%3AZone.Identifier") not in run.stored()
    assert ("C", "inetpub/wwwroot/aspnet_client/system_web/4_0_30319/WebUIValidation.js") in run.stored()


# -- EWF chunks ------------------------------------------------------------------------------------
def _corrupt_db_chunk(image_set: di.ImageSet, folder: Path) -> tuple[list[Path], di.EwfChunk]:
    segs = copy_set(image_set["e01"], folder)
    start, length = di.file_data_offset(image_set.raw, DB)
    chunk = di.corrupt_ewf_chunk(segs, media_offset=start + length // 2)  # inside the database, not an artifact
    return segs, chunk


def test_corrupt_ewf_chunk_fails_verification(image_set: di.ImageSet, tmp_path: Path) -> None:
    segs, chunk = _corrupt_db_chunk(image_set, tmp_path / "img")
    assert not chunk.compressed and chunk.size == 32768 + 4  # random data: stored as is with its Adler-32
    run = collect(segs[0], tmp_path / "case")
    assert run.code == ExitCode.COLLECTION_FAILED
    verify = run.event("image_verify")
    raw = image_set.raw.read_bytes()
    assert verify["status"] == "mismatch" and verify["matches"] == {"md5": False, "sha1": False}
    assert verify["stored"] == {"md5": hashlib.md5(raw).hexdigest(), "sha1": hashlib.sha1(raw).hexdigest()}
    assert verify["computed"]["md5"] != verify["stored"]["md5"]
    [bad] = run.outcome_rows("failure")
    assert bad["kind"] == "disk_image" and bad["details"].startswith("IMAGE HASH MISMATCH: md5 computed ")
    assert "WARNING" in run.stderr and "IMAGE HASH MISMATCH" in run.stderr
    assert run.summary["images"][0]["verification"] == "mismatch"
    assert_tree_hashes(run, image_set)  # the damage is outside every artifact


def test_corrupt_ewf_chunk_names_the_bad_sectors(image_set: di.ImageSet, tmp_path: Path) -> None:
    segs, chunk = _corrupt_db_chunk(image_set, tmp_path / "img")
    run = collect(segs[0], tmp_path / "case")
    first = chunk.number * 64  # 64 sectors per chunk (ewfacquire -b 64)
    sectors = f"{first}-{first + 63}"
    assert run.event("image_verify")["bad_chunks"] == [
        {"chunk": chunk.number, "media_offset": chunk.number * 32768, "sectors": sectors, "segment": chunk.segment.name}
    ]
    [bad] = run.outcome_rows("failure")
    zeros = f"1 chunk(s) fail their checksum and read as zeros: sectors {sectors} ({chunk.segment.name})"
    assert zeros in bad["details"] and zeros in run.stderr
    # ewfverify, the reference tool, finds the same sectors
    ewfverify = subprocess.run(["ewfverify", "-q", str(segs[0])], capture_output=True, text=True, timeout=60)
    assert f"at sector(s): {first} - {first + 63} (number: 64)" in ewfverify.stdout


# -- not images ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.E01", b"", "disk is too small to hold a volume (0 bytes)"),
        ("random.vhdx", random.Random(1).randbytes(1 << 20), "no partition table (no boot signature in sector 0)"),
        ("random.dd", random.Random(2).randbytes(1 << 20), "no NTFS boot sector found at the usual partition offsets"),
    ],
)
def test_no_image_given_as_image_is_a_usage_error(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / "img" / name
    path.parent.mkdir()
    path.write_bytes(content)
    run = collect(path, tmp_path / "case", "--as", "image")
    assert run.code == 2
    assert f"ERROR triage: {path}: no readable NTFS volume in this raw (dd) image" in run.stderr
    assert message in run.stderr
    assert not (tmp_path / "case").exists()


def test_ewf_signature_with_garbage_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "img" / "fake.E01"
    path.parent.mkdir()
    path.write_bytes(b"EVF\x09\x0d\x0a\xff\x00\x01" + random.Random(3).randbytes(4096))
    run = collect(path, tmp_path / "case")
    assert run.code == 2
    assert f"ERROR triage: {path}" in run.stderr
    assert not (tmp_path / "case").exists()


@pytest.mark.parametrize("content", [b"", b"\x00" * 100 + random.Random(4).randbytes(4096)])
def test_file_named_like_an_image_but_no_image_is_a_usage_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "img" / "host.E01"
    path.parent.mkdir()
    path.write_bytes(content)
    run = collect(path, tmp_path / "case")
    assert run.code == 2
    assert f"ERROR triage: {path}: named like a EnCase image (E01) but it is not one" in run.stderr
    assert "--as files" in run.stderr
    assert not (tmp_path / "case").exists()
