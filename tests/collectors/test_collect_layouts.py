"""KAPE and Velociraptor layouts hold the same volume: they must give the same evidence as the volume.

The comparison key is (kind, logical path) -> (sha256, size), the logical path being the stored
relpath below ``evidence/<host>/<kind>/``; hashes come from hashlib over the builder's bytes.
"""

from __future__ import annotations

import shutil
import urllib.parse
from pathlib import Path

import pytest
from collectors_support import DEFAULT_COUNTS, EX, collect, evidence_rel, sha256, stored_rows

from triage.testing.volume import VolumeSpec, build_volume, to_kape, to_velociraptor, velociraptor_name, zip_bytes
from triage.testing.volume import volume_files as builder_files

PERCENT_NAME = "100% real:shell.aspx"  # legal on ext4 and in a Velociraptor upload, not on NTFS
CYRILLIC_NAME = "шелл.aspx"
EXTRA = {
    f"inetpub/wwwroot/{PERCENT_NAME}": b"<%@ Page Language='C#' %><% /* percent */ %>",
    f"inetpub/wwwroot/aspnet_client/{CYRILLIC_NAME}": b"<%@ Page Language='C#' %><% /* cyrillic */ %>",
}
SPEC = VolumeSpec(extra_files=EXTRA)
NTFS_DEVICE = velociraptor_name("\\\\.\\C:")
AUTO_DEVICE = velociraptor_name("C:")


def evidence_map(case) -> dict[tuple[str, str], tuple[str, int]]:
    """(kind, logical path below evidence/<host>/<kind>/) -> (sha256, size) of every stored artifact."""
    out = {}
    for row in stored_rows(case):
        host, kind, logical = row.relpath.split("/", 3)[1:]
        assert host == "EXCH01"
        assert kind == row.kind
        key = (row.kind, logical)
        assert key not in out, f"{key} stored twice"
        out[key] = (row.sha256, row.size)
    return out


def expected_map(content: dict[str, bytes], kinds: dict[str, str]) -> dict[tuple[str, str], tuple[str, int]]:
    from triage.case import safe_component

    return {
        (kinds[rel], "/".join(["C", *(safe_component(p) for p in rel.split("/"))])): (sha256(data), len(data))
        for rel, data in content.items()
    }


@pytest.fixture
def content() -> dict[str, bytes]:
    return builder_files(SPEC)


@pytest.fixture
def kinds() -> dict[str, str]:
    from collectors_support import DEFAULT_KINDS

    return {**DEFAULT_KINDS, **dict.fromkeys(EXTRA, "web_file")}


@pytest.fixture
def vol(tmp_path) -> Path:
    return build_volume(tmp_path / "vol", SPEC)


def write_members(members: dict[str, bytes], out: Path, *, as_zip: bool) -> Path:
    if as_zip:
        out.write_bytes(zip_bytes(members))
        return out
    for name, data in members.items():
        dest = out.joinpath(*name.split("/"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    return out


def mixed_accessor_members(content: dict[str, bytes], hostname: str = "EXCH01") -> dict[str, bytes]:
    """Hives read raw through the 'ntfs' accessor (locked files), everything else through 'auto'."""
    members = {}
    for rel, data in content.items():
        if rel.startswith("Windows/System32/config/"):
            prefix = ["uploads", "ntfs", NTFS_DEVICE]
        else:
            prefix = ["uploads", "auto", AUTO_DEVICE]
        members["/".join(prefix + [velociraptor_name(p) for p in rel.split("/")])] = data
    members["client_info.json"] = f'{{"Hostname": "{hostname}"}}'.encode()
    members["collection_context.json"] = b'{"session_id": "F.MIXED"}'
    return members


# -- the layouts ---------------------------------------------------------------------------------------------
def test_velociraptor_device_names_are_encoded_as_velociraptor_does():
    assert AUTO_DEVICE == "C%3A"
    assert NTFS_DEVICE == "%5C%5C.%5CC%3A"


def test_plain_volume_is_the_reference(vol, content, kinds, new_case):
    case = new_case()
    src, stats = collect(case, vol)
    assert src.source_type == "volume"
    assert evidence_map(case) == expected_map(content, kinds)
    assert dict(stats.kinds) == {**DEFAULT_COUNTS, "web_file": DEFAULT_COUNTS["web_file"] + 2}


def test_kape_layout(vol, content, kinds, tmp_path, new_case):
    tdest = to_kape(vol, tmp_path / "kape")
    case = new_case()
    src, stats = collect(case, tdest)
    assert src.source_type == "kape"
    assert list(src.drives) == ["C"]
    assert stats.hosts == {"EXCH01"}
    assert stats.exchange["how"] == "registry"
    assert evidence_map(case) == expected_map(content, kinds)
    rows = {r.relpath: r for r in stored_rows(case)}
    shell = rows[evidence_rel("EXCH01", "web_file", "inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx")]
    assert shell.source_path == str(tdest / "C/inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx")
    assert shell.source_type == "kape"
    # KAPE's own copy log is not evidence of the server and is not collected
    assert not any("CopyLog" in r.source_path for r in case.manifest())


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_velociraptor_layout(vol, content, kinds, tmp_path, new_case, as_zip):
    out = to_velociraptor(vol, tmp_path / ("vr.zip" if as_zip else "vr"), as_zip=as_zip)
    case = new_case()
    src, stats = collect(case, out)
    assert src.source_type == ("velociraptor-zip" if as_zip else "velociraptor")
    assert list(src.drives) == ["C"]
    assert src.notes == []
    assert src.host_hint == "EXCH01"
    assert stats.hosts == {"EXCH01"}
    assert stats.exchange["how"] == "registry"
    assert evidence_map(case) == expected_map(content, kinds)
    assert stats.outcomes["failure"] == 0


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_velociraptor_auto_and_ntfs_uploads_merge_into_one_volume(content, kinds, tmp_path, new_case, as_zip):
    members = mixed_accessor_members(content)
    out = write_members(members, tmp_path / ("mixed.zip" if as_zip else "mixed"), as_zip=as_zip)
    case = new_case()
    src, stats = collect(case, out)
    assert src.source_type == ("velociraptor-zip" if as_zip else "velociraptor")
    assert list(src.drives) == ["C"]  # one C: volume, not two
    assert stats.hosts == {"EXCH01"}  # SYSTEM came through the ntfs accessor
    assert stats.exchange["how"] == "registry"  # SOFTWARE (ntfs) pointed at the Exchange folder (auto)
    assert evidence_map(case) == expected_map(content, kinds)

    rows = {r.relpath: r for r in stored_rows(case)}
    system = rows[evidence_rel("EXCH01", "registry_hive", "Windows/System32/config/SYSTEM")]
    lsass = rows[evidence_rel("EXCH01", "suspicious_file", "Windows/Temp/lsass.dmp")]
    sep = "!" if as_zip else "/"
    assert system.source_path == f"{out}{sep}uploads/ntfs/{NTFS_DEVICE}/Windows/System32/config/SYSTEM"
    assert lsass.source_path == f"{out}{sep}uploads/auto/{AUTO_DEVICE}/Windows/Temp/lsass.dmp"


def test_all_layouts_agree(vol, tmp_path, new_case):
    layouts = {
        "volume": vol,
        "kape": to_kape(vol, tmp_path / "kape"),
        "velociraptor": to_velociraptor(vol, tmp_path / "vr"),
        "velociraptor-zip": to_velociraptor(vol, tmp_path / "vr.zip", as_zip=True),
        "velociraptor-ntfs": to_velociraptor(vol, tmp_path / "vr-ntfs", accessor="ntfs"),
    }
    maps = {}
    for name, location in layouts.items():
        case = new_case(f"case-{name}")
        collect(case, location)
        maps[name] = evidence_map(case)
    reference = maps.pop("volume")
    assert len(reference) == 20
    for name, got in maps.items():
        assert got == reference, name


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_url_encoded_names_come_out_decoded(vol, content, tmp_path, new_case, as_zip):
    out = to_velociraptor(vol, tmp_path / ("vr.zip" if as_zip else "vr"), as_zip=as_zip)
    encoded = velociraptor_name(PERCENT_NAME)
    assert encoded == "100%25 real%3Ashell.aspx"  # what Velociraptor writes
    if not as_zip:
        assert (out / "uploads/auto/C%3A/inetpub/wwwroot" / encoded).is_file()
    case = new_case()
    collect(case, out)
    (row,) = [r for r in stored_rows(case) if r.source_path.endswith(encoded)]
    stored_name = Path(row.relpath).name
    # the logical name is the decoded one; safe_component re-encodes ':' for storage and leaves a '%'
    # that no hex pair follows (a name that had not been decoded would come out as 100%2525 real%253A...)
    assert urllib.parse.unquote(stored_name) == PERCENT_NAME
    assert stored_name == "100% real%3Ashell.aspx"
    assert row.relpath == evidence_rel("EXCH01", "web_file", "inetpub/wwwroot/100% real%3Ashell.aspx")
    assert row.sha256 == sha256(content[f"inetpub/wwwroot/{PERCENT_NAME}"])

    (cyr,) = [r for r in stored_rows(case) if "aspnet_client/%D1" in r.source_path]
    assert cyr.relpath == evidence_rel("EXCH01", "web_file", f"inetpub/wwwroot/aspnet_client/{CYRILLIC_NAME}")
    assert cyr.sha256 == sha256(content[f"inetpub/wwwroot/aspnet_client/{CYRILLIC_NAME}"])


# -- host names in collections --------------------------------------------------------------------------
@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_velociraptor_client_info_names_the_host_when_there_is_no_system_hive(tmp_path, new_case, as_zip):
    vol = build_volume(tmp_path / "vol", VolumeSpec(write_system_hive=False))
    out = to_velociraptor(vol, tmp_path / ("vr.zip" if as_zip else "vr"), as_zip=as_zip, hostname="VR-CLIENT")
    case = new_case()
    src, stats = collect(case, out)
    assert src.host_hint == "VR-CLIENT"
    assert stats.hosts == {"VR-CLIENT"}


def test_system_hive_wins_over_velociraptor_client_info(vol, tmp_path, new_case):
    out = to_velociraptor(vol, tmp_path / "vr", hostname="VR-CLIENT")
    case = new_case()
    src, stats = collect(case, out)
    assert src.host_hint == "VR-CLIENT"
    assert stats.hosts == {"EXCH01"}


# -- Exchange on another drive ---------------------------------------------------------------------------
D_SPEC = VolumeSpec(install_path=r"D:\Exchange\V15")
D_ROOT = "Exchange/V15"


def _split_drives(tmp_path: Path) -> tuple[Path, Path]:
    """A C: volume without Exchange and a D: volume holding only the Exchange install folder."""
    c = build_volume(tmp_path / "C-vol", D_SPEC)
    d = tmp_path / "D-vol"
    d.mkdir()
    shutil.move(c / "Exchange", d / "Exchange")
    return c, d


def _assert_exchange_on_d(case, stats, content):
    assert stats.exchange["how"] == "registry"
    assert stats.exchange["root"] == D_ROOT
    rows = {r.relpath: r for r in stored_rows(case)}
    binary = rows[evidence_rel("EXCH01", "exchange_binary", f"{D_ROOT}/Bin/ExSetup.exe", drive="D")]
    assert binary.sha256 == sha256(content[f"{D_ROOT}/Bin/ExSetup.exe"])
    assert stats.kinds["exchange_log"] == 4
    assert stats.kinds["exchange_binary"] == 1


def test_kape_with_exchange_on_a_second_drive(tmp_path, new_case):
    c, d = _split_drives(tmp_path)
    tdest = to_kape(c, tmp_path / "kape", drive="C")
    shutil.copytree(d, tdest / "D")
    case = new_case()
    src, stats = collect(case, tdest)
    assert list(src.drives) == ["C", "D"]
    _assert_exchange_on_d(case, stats, builder_files(D_SPEC))


def test_velociraptor_with_exchange_on_a_second_drive(tmp_path, new_case):
    c, d = _split_drives(tmp_path)
    out = to_velociraptor(c, tmp_path / "vr")
    for path in sorted(d.rglob("*")):
        if path.is_file():
            rel = path.relative_to(d).parts
            dest = out.joinpath("uploads", "auto", velociraptor_name("D:"), *(velociraptor_name(p) for p in rel))
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(path.read_bytes())
    case = new_case()
    src, stats = collect(case, out)
    assert list(src.drives) == ["C", "D"]
    _assert_exchange_on_d(case, stats, builder_files(D_SPEC))


def test_ex_constant_matches_builder_default():
    assert builder_files(VolumeSpec())[f"{EX}/Bin/ExSetup.exe"].startswith(b"MZ")


@pytest.mark.parametrize("layout", ["kape", "velociraptor", "velociraptor-zip", "velociraptor-mixed-zip"])
def test_rerunning_a_layout_stores_nothing_twice(vol, content, tmp_path, new_case, layout):
    location = {
        "kape": lambda: to_kape(vol, tmp_path / "kape"),
        "velociraptor": lambda: to_velociraptor(vol, tmp_path / "vr"),
        "velociraptor-zip": lambda: to_velociraptor(vol, tmp_path / "vr.zip", as_zip=True),
        "velociraptor-mixed-zip": lambda: write_members(
            mixed_accessor_members(content), tmp_path / "mixed.zip", as_zip=True
        ),
    }[layout]()
    case = new_case()
    _, first = collect(case, location)
    before = [r.to_json() for r in stored_rows(case)]
    _, second = collect(case, location)
    assert first.files == 20
    assert second.skipped_duplicates == first.files
    assert second.files == 0
    assert [r.to_json() for r in stored_rows(case)] == before
