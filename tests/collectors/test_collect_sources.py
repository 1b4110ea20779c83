"""Recognising what the analyst pointed at; anything unusable is a UsageError that says what to do."""

from __future__ import annotations

import zipfile

import pytest
from collectors_support import collect

from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.errors import ExitCode, InsufficientEvidence, UsageError
from triage.testing.volume import build_volume, to_kape, to_velociraptor


def test_folder_that_is_not_a_volume_is_loose_files_and_nothing_examinable_exits_4(tmp_path, capsys):
    from triage.cli import main

    folder = tmp_path / "holiday-photos"
    (folder / "2021").mkdir(parents=True)
    (folder / "2021" / "beach.jpg").write_bytes(b"\xff\xd8\xff")
    src = open_source_path(str(folder))  # any folder is accepted: its files are recognised by content
    assert (src.source_type, src.files) == ("files", [str(folder / "2021" / "beach.jpg")])
    assert main(["collect", str(folder), "--case", str(tmp_path / "case"), "-q"]) == ExitCode.INSUFFICIENT
    assert "nothing examinable" in capsys.readouterr().err


def test_missing_path(tmp_path):
    missing = tmp_path / "no" / "such" / "mount"
    with pytest.raises(UsageError, match=r"does not exist") as exc:
        open_source_path(str(missing))
    assert str(missing) in str(exc.value)


def test_symbolic_link_as_the_source_is_refused(tmp_path):
    vol = build_volume(tmp_path / "vol")
    link = tmp_path / "mnt"
    link.symlink_to(vol)
    with pytest.raises(UsageError, match=r"symbolic link; give the real path"):
        open_source_path(str(link))


def test_unknown_source_type(volume):
    with pytest.raises(UsageError, match=r"unknown source type 'disk'; use one of auto, volume, kape"):
        open_source_path(str(volume), "disk")


def test_as_kape_without_drive_letter_folders(volume):
    with pytest.raises(UsageError, match=r"no drive-letter folder \(C/, D/ \.\.\.\) holding a Windows volume"):
        open_source_path(str(volume), "kape")


def test_as_velociraptor_on_a_plain_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    with pytest.raises(UsageError, match=r"is a file; --as velociraptor needs a folder"):
        open_source_path(str(path), "velociraptor")


def test_zip_that_is_not_a_collection_is_opened_as_loose_members(tmp_path):
    path = tmp_path / "it.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("lsass.dmp", b"MDMP")
    src = open_source_path(str(path))
    assert (src.source_type, src.files, src.drives) == ("zip", [], {})
    assert [(parts, node.source_path) for parts, node in src.members] == [(("lsass.dmp",), f"{path}!lsass.dmp")]
    src.close()


def test_corrupt_zip_is_a_loose_file_not_a_crash(tmp_path):
    path = tmp_path / "collection.zip"
    path.write_bytes(b"PK\x03\x04 truncated")
    assert open_source_path(str(path)).source_type == "files"


@pytest.mark.parametrize(
    ("folders", "expected"),
    [
        (["Windows"], "volume"),
        (["inetpub", "Users"], "volume"),
        (["PROGRAM FILES", "programdata"], "volume"),
    ],
)
def test_volume_markers(tmp_path, folders, expected):
    for name in folders:
        (tmp_path / "root" / name).mkdir(parents=True)
    assert open_source_path(str(tmp_path / "root")).source_type == expected


def test_one_marker_is_not_enough(tmp_path):
    (tmp_path / "root" / "Users").mkdir(parents=True)
    with pytest.raises(InsufficientEvidence, match="holds no files"):
        open_source_path(str(tmp_path / "root"))
    # ... unless the analyst says so
    assert open_source_path(str(tmp_path / "root"), "volume").source_type == "volume"


def test_kape_output_without_copy_log_is_still_kape(volume, tmp_path):
    tdest = to_kape(volume, tmp_path / "kape")
    for log in tdest.glob("*_CopyLog.csv"):
        log.unlink()
    src = open_source_path(str(tdest))
    assert src.source_type == "kape"
    assert list(src.drives) == ["C"]


def test_velociraptor_folder_needs_its_json_files_unless_told(volume, tmp_path, new_case):
    out = to_velociraptor(volume, tmp_path / "vr")
    for name in ("client_info.json", "collection_context.json", "log.json"):
        (out / name).unlink()
    # uploads/auto/C%3A/... alone is Velociraptor's layout
    assert open_source_path(str(out)).source_type == "velociraptor"
    src, stats = collect(new_case(), out, as_type="velociraptor")
    assert src.source_type == "velociraptor"
    assert src.host_hint is None
    assert stats.files == 18
    assert stats.hosts == {"EXCH01"}


def test_velociraptor_upload_that_is_not_a_drive_is_noted(volume, tmp_path, new_case):
    out = to_velociraptor(volume, tmp_path / "vr")
    (out / "uploads" / "auto" / "C%3A").rename(out / "uploads" / "auto" / "HarddiskVolume2")
    src = open_source_path(str(out))
    assert src.drives == {}
    assert src.notes == ["uploads/auto/HarddiskVolume2: not a drive letter, not collected"]
    with pytest.raises(ValueError, match=r"no volume found in this source \(uploads/auto/HarddiskVolume2: not a"):
        collect_volume(new_case(), src, host=None)
