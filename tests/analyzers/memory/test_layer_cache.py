"""Layer detection and symbol lookup once per image: what the first plugin's automagic found is reused.

The image is ``memory_support.x64_image``: page tables the DTB scan finds and a kernel RSDS record the PDB scan
finds, with a symbol folder naming that kernel. Volatility stacks the Intel layer (DTB), locates the kernel and
its symbol table, then stops (the table has no types). All of that is what the cache must carry over.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from memory_support import DTB, write_isf_folder, x64_image

from analyzers.memory import settings, vol
from collectors.collect import collect_files
from collectors.sources import open_source_path
from triage.case import Case
from triage.runner import analyze_case

pytest.importorskip("volatility3")


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Counts of the expensive automagic steps in this process: the DTB scan and the kernel PDB search."""
    vol.configure()
    from volatility3.framework.automagic import pdbscan, windows

    counts = {"dtb_scan": 0, "pdb_search": 0}
    stack, determine = windows.WindowsIntelStacker.stack.__func__, pdbscan.KernelPDBScanner.determine_valid_kernel

    def counting_stack(cls, *a, **k):  # type: ignore[no-untyped-def]
        counts["dtb_scan"] += 1
        return stack(cls, *a, **k)

    def counting_determine(self, *a, **k):  # type: ignore[no-untyped-def]
        counts["pdb_search"] += 1
        return determine(self, *a, **k)

    monkeypatch.setattr(windows.WindowsIntelStacker, "stack", classmethod(counting_stack))
    monkeypatch.setattr(pdbscan.KernelPDBScanner, "determine_valid_kernel", counting_determine)
    yield counts


def _run(image: Path, plugin: str, symbols: Path, cache: Path, key: vol.LayerKey) -> dict[str, object]:
    try:
        table = vol.run_plugin(image, plugin, symbols=[symbols], cache_dir=cache, layer_key=key)
    except vol.Unsatisfied as exc:  # the fake symbol table has no types: the plugin stops after automagic
        return exc.layer_cache or {}
    return table.layer_cache


@pytest.mark.slow
def test_second_plugin_reuses_layers_and_symbols_and_a_change_misses(
    tmp_path: Path, vol_cache: Path, counted: dict[str, int]
) -> None:
    image = tmp_path / "EXCH01.raw"
    image.write_bytes(x64_image())
    syms = write_isf_folder(tmp_path / "syms")
    key = vol.LayerKey("a" * 64, settings.tree_signature([syms]))

    first = _run(image, "windows.info.Info", syms, vol_cache, key)
    assert first["status"] == "miss" and counted == {"dtb_scan": 1, "pdb_search": 1}
    assert first["dtb"] == DTB and first["layers"] == ["WindowsIntel32e", "FileLayer"]
    assert str(first["symbol_table"]).endswith("ntkrnlmp.pdb/3844DBB920174967BE7AA4A2C20430FA-1.json.xz")
    entry = json.loads((vol_cache / "layers" / f"{first['key']}.json").read_text())
    assert entry["image_sha256"] == "a" * 64 and entry["config"]["layer_name.page_map_offset"] == DTB

    second = _run(image, "windows.pslist.PsList", syms, vol_cache, key)
    assert second["status"] == "hit" and second["key"] == first["key"]
    # no second DTB scan; the kernel search runs again only because this type-less table cannot build a kernel
    # (on a full kernel neither runs again: test_vol_synthetic.py::test_layer_cache_serves_a_real_kernel...)
    assert counted["dtb_scan"] == 1

    moved = tmp_path / "copy" / "EXCH01.raw"  # the same bytes elsewhere: a hit, read at the new path
    moved.parent.mkdir()
    moved.write_bytes(image.read_bytes())
    assert _run(moved, "windows.info.Info", syms, vol_cache, key)["status"] == "hit"

    other_image = vol.LayerKey("b" * 64, key.symbols)
    assert _run(image, "windows.info.Info", syms, vol_cache, other_image)["status"] == "miss"
    assert counted["dtb_scan"] == 2

    (syms / "windows" / "ntkrnlmp.pdb" / "extra.json.xz").write_bytes(b"")  # the symbol set changed
    other_symbols = vol.LayerKey("a" * 64, settings.tree_signature([syms]))
    assert other_symbols.digest() != key.digest()
    assert _run(image, "windows.info.Info", syms, vol_cache, other_symbols)["status"] == "miss"
    assert counted["dtb_scan"] == 3


def test_a_damaged_cache_entry_is_a_miss_not_a_crash(tmp_path: Path, vol_cache: Path) -> None:
    image = tmp_path / "img.raw"
    image.write_bytes(x64_image(kernel=False))
    key = vol.LayerKey("c" * 64, "none")
    cache = vol.LayerCache(vol_cache / "layers", key)
    cache.path.parent.mkdir(parents=True, exist_ok=True)
    cache.path.write_text("{not json")
    with pytest.raises(vol.VolatilityError) as caught:  # no kernel in this image
        vol.run_plugin(image, "windows.info.Info", cache_dir=vol_cache, layer_key=key)
    assert caught.value.layer_cache is not None and caught.value.layer_cache["status"] == "miss"
    assert json.loads(cache.path.read_text())["config"]["layer_name.page_map_offset"] == DTB  # rewritten


def test_the_analyzer_records_the_cache_in_the_tables_index(tmp_path: Path) -> None:
    (tmp_path / "EXCH01.raw").write_bytes(x64_image())
    syms = write_isf_folder(tmp_path / "syms")
    case = Case.create_or_open(tmp_path / "case", examiner="pytest", case_id="LC-1")
    collect_files(case, open_source_path(str(tmp_path / "EXCH01.raw"), "memory"), host="EXCH01")
    (row,) = case.evidence()
    options = {"memory": {"symbols": [str(syms)], "raw_scan": False, "plugins": ["info"]}}
    seen = []
    for _ in range(2):
        analyze_case(case, only=("memory",), jobs=1, force=True, options=options)
        index = json.loads((case.path / "results" / "memory" / row.artifact_id / "index.json").read_text())
        seen.append(index["tables"]["info"]["layer_cache"])
    assert [s["status"] for s in seen] == ["miss", "hit"]
    assert seen[0]["key"] == seen[1]["key"] and seen[1]["dtb"] == DTB


def test_plugin_children_reuse_the_symbol_index_the_parent_built(
    tmp_path: Path, vol_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from volatility3.framework.automagic import symbol_cache

    image = tmp_path / "img.raw"
    image.write_bytes(x64_image(kernel=False))
    updates: list[int] = []
    original = symbol_cache.SqliteCache.update

    def counting(self, *a, **k):  # type: ignore[no-untyped-def]
        updates.append(1)
        return original(self, *a, **k)

    monkeypatch.setattr(symbol_cache.SqliteCache, "update", counting)
    monkeypatch.setattr(vol._STATE, "indexed", ())
    with pytest.raises(vol.NoWindowsKernel):
        vol.run_plugin(image, "windows.info.Info", cache_dir=vol_cache)
    assert len(updates) == 1  # no shared index yet: Volatility's own SymbolCacheMagic lists the symbol folders
    vol.update_symbol_cache()
    assert len(updates) == 2
    with pytest.raises(vol.NoWindowsKernel) as caught:
        vol.run_plugin(image, "windows.info.Info", cache_dir=vol_cache)
    assert len(updates) == 2 and caught.value.layer_cache == {"status": "off", "symbol_index": "reused"}
    vol.configure([tmp_path], vol_cache)  # another symbol set: the index must be brought up to date again
    with pytest.raises(vol.NoWindowsKernel):
        vol.run_plugin(image, "windows.info.Info", symbols=[tmp_path], cache_dir=vol_cache)
    assert len(updates) == 3
