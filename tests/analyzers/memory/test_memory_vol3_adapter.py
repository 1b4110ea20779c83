"""The Volatility 3 adapter end to end on images the tests make: what runs without Windows symbols, the
missing-symbols diagnosis, offline symbol folders and packs, and no network access, ever."""

from __future__ import annotations

import datetime as dt
import os
import random
from pathlib import Path

import pytest
from memory_support import (
    KERNEL_AGE,
    KERNEL_GUID_VOL,
    KERNEL_PHYS,
    LINUX_BANNER,
    rsds,
    write_isf_folder,
    write_isf_zip,
    x64_image,
)

from analyzers.memory import vol


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("images")
    blob = bytearray(random.Random(6).randbytes(4 << 20))
    blob[0x123457 : 0x123457 + len(LINUX_BANNER)] = LINUX_BANNER
    (d / "linux.raw").write_bytes(blob)
    flat = bytearray(random.Random(7).randbytes(2 << 20))
    flat[0x10_0123 : 0x10_0123 + len(rsds())] = rsds()
    (d / "rsds-only.raw").write_bytes(flat)
    # the canary in a mapped page: yarascan walks the virtual layer
    (d / "x64.raw").write_bytes(x64_image(plants={KERNEL_PHYS + 0x1100: b"TRIAGE_CANARY cmd.exe /c whoami"}))
    (d / "nothing.raw").write_bytes(bytes(1 << 20))
    return {p.stem: p for p in d.iterdir()}


def test_banners_runs_without_symbols_and_gives_typed_rows(images: dict[str, Path]) -> None:
    table = vol.run_plugin(images["linux"], "banners.Banners")
    assert [c.name for c in table.columns] == ["TreeDepth", "Offset", "Banner"]
    assert [c.kind for c in table.columns] == ["int", "hex", "str"]
    (row,) = table.rows
    assert row == {"TreeDepth": 0, "Offset": 0x123457, "Banner": LINUX_BANNER.rstrip(b"\n\x00").decode()}
    assert type(row["Offset"]) is int  # format_hints.Hex unwrapped
    # the ARCHITECTURE.md entry point: an iterator of dicts
    assert list(vol.run_vol3(images["linux"], "banners")) == table.rows


def test_windows_info_names_the_missing_kernel_symbols_without_touching_the_network(
    images: dict[str, Path], no_network: list[str], vol_cache: Path
) -> None:
    with pytest.raises(vol.MissingSymbols) as err:
        list(vol.run_vol3(images["x64"], "windows.info.Info"))
    exc = err.value
    assert (exc.pdb.pdb_name, exc.pdb.guid, exc.pdb.age) == ("ntkrnlmp.pdb", KERNEL_GUID_VOL, KERNEL_AGE)
    msg = str(exc)
    for needle in (
        "ntkrnlmp.pdb",
        KERNEL_GUID_VOL,
        f"windows/ntkrnlmp.pdb/{KERNEL_GUID_VOL}-1.json.xz",
        "--symbols",
        "TRIAGE_SYMBOLS",
        "config.toml",
        "windows.zip",
        "pdbconv.py",
    ):
        assert needle in msg
    # Volatility got as far as wanting to download the PDB: the offline flag refused it before any socket
    assert any("offline" in e.lower() for e in exc.errors)
    assert no_network == []
    # the download fallback's empty folder lands in our scratch folder, not in site-packages
    import volatility3

    assert not (Path(volatility3.__file__).parent / "symbols" / "windows").exists()
    assert (vol_cache / "volatility3" / "scratch-symbols").is_dir()
    from volatility3.framework import constants

    assert constants.OFFLINE is True
    assert Path(constants.CACHE_PATH) == vol_cache / "volatility3"
    assert (vol_cache / "volatility3" / "identifier.cache").is_file()


def test_missing_symbols_error_survives_the_trip_from_a_child_process(images: dict[str, Path]) -> None:
    with pytest.raises(vol.MissingSymbols) as err:
        vol.run_plugin(images["x64"], "windows.pslist.PsList")
    again = vol.error_from_dict(err.value.as_dict())
    assert isinstance(again, vol.MissingSymbols)
    assert str(again) == str(err.value)


def test_no_page_tables_but_a_kernel_signature_still_names_the_pdb(images: dict[str, Path]) -> None:
    with pytest.raises(vol.MissingSymbols, match=KERNEL_GUID_VOL):
        vol.run_plugin(images["rsds-only"], "windows.info")


def test_not_a_windows_image(images: dict[str, Path]) -> None:
    with pytest.raises(vol.NoWindowsKernel, match="no Windows kernel found"):
        vol.run_plugin(images["nothing"], "windows.info.Info")


@pytest.mark.parametrize("form", ["folder", "zip-in-folder", "zip-named-directly"])
def test_offline_symbol_locations_are_searched(
    images: dict[str, Path], tmp_path: Path, form: str, no_network: list[str]
) -> None:
    if form == "folder":
        where = write_isf_folder(tmp_path / "symbols")
    elif form == "zip-in-folder":
        where = write_isf_zip(tmp_path / "packs" / "windows.zip").parent
    else:
        where = write_isf_zip(tmp_path / "windows.zip")
    # the fake ISF has the kernel's identity but no types: found, then Volatility fails further on
    with pytest.raises(vol.Unsatisfied) as err:
        vol.run_plugin(images["x64"], "windows.info.Info", symbols=[where])
    assert not isinstance(err.value, vol.MissingSymbols)
    assert "was found" in str(err.value)
    assert ("windows.zip" in str(err.value)) == form.startswith("zip")
    assert no_network == []


def test_yarascan_runs_symbol_free_on_a_layer_from_page_tables(images: dict[str, Path]) -> None:
    rows = list(vol.run_vol3(images["x64"], "yarascan.YaraScan", yara_string="TRIAGE_CANARY"))
    assert len(rows) == 1
    assert rows[0]["Value"] == b"TRIAGE_CANARY"
    assert rows[0]["Rule"].endswith("r1")


def test_unknown_plugin() -> None:
    vol.configure()
    with pytest.raises(vol.UnknownPlugin):
        vol.resolve_plugin("windows.nosuchplugin.Nope")
    assert vol.resolve_plugin("windows.pslist").__name__ == "PsList"


def test_treegrid_values_become_plain_python() -> None:
    vol.configure()
    from volatility3.framework import renderers
    from volatility3.framework.renderers import format_hints

    assert vol.convert_value(renderers.UnreadableValue()) is None
    assert vol.convert_value(renderers.NotApplicableValue()) is None
    assert vol.convert_value(renderers.NotAvailableValue()) is None
    assert vol.convert_value(renderers.UnparsableValue()) is None
    assert vol.convert_value(format_hints.Hex(0xFFFFF80001000000)) == 0xFFFFF80001000000
    assert vol.convert_value(format_hints.MultiTypeData("cmd.exe".encode("utf-16-le"))) == "cmd.exe"
    assert vol.convert_value(renderers.Disassembly(b"\x90\xc3")) == b"\x90\xc3"
    naive = dt.datetime(2021, 3, 3, 4, 5, 6)
    assert vol.convert_value(naive) == naive.replace(tzinfo=dt.UTC)
    assert vol.column_kind(format_hints.Hex) == "hex"
    assert vol.column_kind(dt.datetime) == "datetime"
    assert vol.column_kind(renderers.LayerData) == "bytes"


def test_xdg_cache_is_restored_after_import() -> None:
    before = os.environ.get("XDG_CACHE_HOME")
    vol.configure()
    assert os.environ.get("XDG_CACHE_HOME") == before
