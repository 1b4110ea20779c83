"""Volatility 3 on the synthetic Windows x64 image (triage.testing.winmem): each plugin of the scenario through
the project's adapter with Volatility's own automagic (no layer, DTB or kernel hints), then the memory analyzer
end to end with ``symbols`` pointing at the builder's ISF folder."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analyzers.memory import vol
from collectors.collect import collect_files
from collectors.sources import open_source_path
from triage.case import Case
from triage.indicators import hafnium_ips
from triage.report.memtree import process_trees
from triage.runner import analyze_case, result_paths
from triage.testing.winmem import DEFAULT, PDB_GUID, WinMemImage, build_image
from triage.testing.winmem import scenario as sc

pytest.importorskip("volatility3")

LISTED = {p.pid: p for p in DEFAULT.processes if not p.hidden}
HIDDEN = [p for p in DEFAULT.processes if p.hidden]


@pytest.fixture(scope="module")
def win(tmp_path_factory: pytest.TempPathFactory, vol_cache: Path) -> WinMemImage:
    root = tmp_path_factory.mktemp("winmem")
    built = build_image(root / "EXCH01-memory.raw", root / "symbols")
    vol.configure([built.symbols_dir], vol_cache)  # Volatility's import and symbol index, once for the module
    vol.update_symbol_cache()
    return built


def _run(win: WinMemImage, plugin: str, cache: Path, **options: Any) -> vol.PluginTable:
    return vol.run_plugin(win.image, plugin, symbols=[win.symbols_dir], cache_dir=cache, **options)


def test_info_finds_the_kernel_with_no_hints(win: WinMemImage, vol_cache: Path) -> None:
    info = {r["Variable"]: r["Value"] for r in _run(win, "windows.info.Info", vol_cache).rows}
    assert int(info["Kernel Base"], 16) == win.kernel_base & 0xFFFFFFFFFFFF
    assert int(info["DTB"], 16) == win.dtb
    assert info["Symbols"].endswith(f"windows/ntkrnlmp.pdb/{PDB_GUID}-1.json.xz")
    assert info["Is64Bit"] == "True" and info["layer_name"] == "0 WindowsIntel32e"
    assert info["Major/Minor"] == "15.17763" and info["NtMajorVersion"] == "10"
    assert info["NtProductType"] == "NtProductServer"
    assert info["SystemTime"] == str(DEFAULT.capture)
    assert info["NTBuildLab"].startswith("17763.")


def test_pslist_walks_the_active_process_list(win: WinMemImage, vol_cache: Path) -> None:
    rows = _run(win, "windows.pslist.PsList", vol_cache).rows
    got = {r["PID"]: r for r in rows}
    assert set(got) == set(LISTED)  # the hidden process is not linked
    for pid, p in LISTED.items():
        assert got[pid]["PPID"] == p.ppid
        assert got[pid]["ImageFileName"] == p.name[:14]
        assert got[pid]["Offset(V)"] == win.processes[pid].eprocess & 0xFFFFFFFFFFFF
        assert got[pid]["CreateTime"] == (None if pid == 4 else p.created.replace(microsecond=0))
        assert got[pid]["ExitTime"] is None
    assert got[sc.W3WP_PID]["SessionId"] == 0 and got[4]["SessionId"] is None


def test_psscan_carves_the_hidden_process_from_the_pool(win: WinMemImage, vol_cache: Path) -> None:
    rows = _run(win, "windows.psscan.PsScan", vol_cache).rows
    got = {r["PID"]: r for r in rows}
    assert set(got) == {p.pid for p in DEFAULT.processes}
    (hidden,) = HIDDEN
    assert got[hidden.pid]["ImageFileName"] == hidden.name and got[hidden.pid]["PPID"] == hidden.ppid
    assert len(rows) == len(DEFAULT.processes)  # one carve per pool block, no ghosts


def test_pstree_nests_the_shells_under_w3wp(win: WinMemImage, vol_cache: Path) -> None:
    rows = _run(win, "windows.pstree.PsTree", vol_cache).rows
    depth = {r["PID"]: r["TreeDepth"] for r in rows}
    assert depth[4] == 0 and depth[sc.W3WP_PID] == 3
    assert depth[sc.CMD_PID] == depth[sc.POWERSHELL_PID] == 4 and depth[sc.PROCDUMP_PID] == 5
    w3wp = next(r for r in rows if r["PID"] == sc.W3WP_PID)
    assert w3wp["Cmd"] == sc.W3WP_CMD and w3wp["Path"] == LISTED[sc.W3WP_PID].path
    assert w3wp["Audit"] == "\\Device\\HarddiskVolume2\\Windows\\System32\\inetsrv\\w3wp.exe"


def test_cmdline_reads_each_peb(win: WinMemImage, vol_cache: Path) -> None:
    args = {r["PID"]: r["Args"] for r in _run(win, "windows.cmdline.CmdLine", vol_cache).rows}
    assert args[sc.PROCDUMP_PID] == sc.PROCDUMP_CMD
    assert args[sc.POWERSHELL_PID] == sc.POWERSHELL_CMD
    assert '-ap "MSExchangeOWAAppPool"' in args[sc.W3WP_PID]
    assert args[4] is None  # System has no PEB: Volatility reports it unreadable


def test_dlllist_walks_the_loader_lists(win: WinMemImage, vol_cache: Path) -> None:
    rows = _run(win, "windows.dlllist.DllList", vol_cache).rows
    mods: dict[int, list[str]] = {}
    for r in rows:
        mods.setdefault(r["PID"], []).append(r["Path"])
    for pid, p in LISTED.items():
        if pid != 4:
            assert mods[pid] == [p.path, *p.dlls], pid
    lsass = [r for r in rows if r["PID"] == sc.LSASS_PID]
    assert {r["Name"] for r in lsass} >= {"lsass.exe", "lsasrv.dll"}
    assert all(isinstance(r["LoadTime"], datetime) for r in lsass)


def test_handles_decodes_the_handle_table(win: WinMemImage, vol_cache: Path) -> None:
    rows = _run(win, "windows.handles.Handles", vol_cache).rows
    got = {(r["PID"], r["Name"]): r for r in rows}
    lsass = f"lsass.exe Pid {sc.LSASS_PID}"
    assert set(got) == {(h.holder, lsass) for h in DEFAULT.handles}
    dump = got[(sc.PROCDUMP_PID, lsass)]
    assert dump["Process"] == "procdump64.exe" and dump["Type"] == "Process"
    assert dump["GrantedAccess"] == 0x1FFFFF and dump["HandleValue"] == 4
    assert dump["Offset"] == win.processes[sc.LSASS_PID].eprocess & 0xFFFFFFFFFFFF


def test_malfind_flags_the_injected_pe_only(win: WinMemImage, vol_cache: Path) -> None:
    (row,) = _run(win, "windows.malware.malfind.Malfind", vol_cache).rows  # the read/write heap is not reported
    injected = next(r for r in DEFAULT.regions if r.protection == sc.MM_EXECUTE_READWRITE)
    assert (row["PID"], row["Process"], row["Tag"]) == (sc.W3WP_PID, "w3wp.exe", "VadS")
    assert row["Start VPN"] == injected.start and row["End VPN"] == injected.start + injected.size - 1
    assert row["Protection"] == "PAGE_EXECUTE_READWRITE" and row["Notes"] == "MZ header"
    assert row["Hexdump"] == injected.content[:64]


def test_netscan_carves_the_tcp_endpoints(win: WinMemImage, vol_cache: Path) -> None:
    rows = _run(win, "windows.netscan.NetScan", vol_cache).rows
    got = {(r["ForeignAddr"], r["ForeignPort"]): r for r in rows}
    assert set(got) == {(c.remote, c.remote_port) for c in DEFAULT.connections}
    bad = got[(sc.HAFNIUM_IP, 49812)]
    assert (bad["Proto"], bad["LocalAddr"], bad["LocalPort"], bad["State"]) == (
        "TCPv4",
        sc.SERVER_IP,
        443,
        "ESTABLISHED",
    )
    assert (bad["PID"], bad["Owner"]) == (sc.W3WP_PID, "w3wp.exe")
    assert bad["Created"] == DEFAULT.connections[0].created


def test_filescan_finds_the_file_objects(win: WinMemImage, vol_cache: Path) -> None:
    names = [r["Name"] for r in _run(win, "windows.filescan.FileScan", vol_cache).rows]
    assert sorted(names) == sorted(DEFAULT.files)  # each carved once, by its File type index


def test_svcscan_reads_the_service_database(win: WinMemImage, vol_cache: Path) -> None:
    rows = _run(win, "windows.svcscan.SvcScan", vol_cache).rows
    got = {r["Name"]: r for r in rows}
    assert set(got) == {s.name for s in DEFAULT.services}
    for s in DEFAULT.services:
        assert (got[s.name]["PID"], got[s.name]["Binary"], got[s.name]["Display"]) == (s.pid, s.binary, s.display)
        assert got[s.name]["State"] == "SERVICE_RUNNING" and got[s.name]["Start"] == "SERVICE_AUTO_START"
    assert got["W3SVC"]["Type"] == "SERVICE_WIN32_SHARE_PROCESS"
    assert got["W3SVC"]["Binary (Registry)"] is None  # no registry hives in the image


# -- the memory analyzer end to end ------------------------------------------------------------------------------
def _findings(case: Case) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in sorted((case.path / "results" / "memory").glob("*.parquet"))]
    return pd.concat(frames, ignore_index=True)


@pytest.mark.slow
def test_memory_analyzer_derives_the_scenario(win: WinMemImage, tmp_path: Path) -> None:
    case = Case.create_or_open(tmp_path / "case", examiner="pytest", case_id="WINMEM")
    collect_files(case, open_source_path(str(win.image), "memory"), host="EXCH01")
    options = {"memory": {"symbols": [str(win.symbols_dir)], "raw_scan": False}}
    summary = analyze_case(case, only=("memory",), jobs=1, options=options)
    assert summary.errors == []
    row = next(r for r in case.evidence() if r.kind == "memory_image")
    folder = case.path / "results" / "memory" / row.artifact_id
    index = json.loads((folder / "index.json").read_text())["tables"]
    for table, entry in index.items():
        assert entry["status"] == "ok", (table, entry)
        assert entry["rows"] > 0, (table, entry)
    run = json.loads(result_paths(case.path, "memory", row.artifact_id)[1].read_text())
    assert not any("no Volatility symbol table" in w for w in run["warnings"])
    f = _findings(case)
    rules = set(f.rule_id)
    assert not any(r.startswith("MEM-VOL-") for r in rules)

    def one(rule: str, location: str | None = None) -> pd.Series:
        hits = f[f.rule_id == rule]
        hits = hits if location is None else hits[hits.location == location]
        assert len(hits) == 1, (rule, location, f[["rule_id", "location", "title"]].to_string())
        return hits.iloc[0]

    for child in (sc.CMD_PID, sc.POWERSHELL_PID):
        hit = one("MEM-W3WP-SHELL-CHILD", location=f"pid:{child}")
        assert f"w3wp.exe (PID {sc.W3WP_PID})" in hit.title
        assert DEFAULT.by_pid(child).cmdline[:60] in hit.message
    (hidden,) = HIDDEN
    hit = one("MEM-PROC-HIDDEN", location=f"pid:{hidden.pid}")
    assert hidden.name in hit.title
    dump = one("MEM-CMD-PROCDUMP-LSASS", location=f"pid:{sc.PROCDUMP_PID}")
    assert "-ma lsass.exe" in dump.message
    assert {"MEM-CMD-MAILBOX-EXPORT", "MEM-CMD-EXCHANGE-SNAPIN"} <= rules
    hit = one("MEM-LSASS-HANDLE", location=f"pid:{sc.PROCDUMP_PID}")
    assert "procdump64.exe" in hit.title and "0x1fffff" in hit.title and hit.severity == "critical"
    assert "services.exe" not in " ".join(f[f.rule_id == "MEM-LSASS-HANDLE"].title)  # expected holder
    injected = next(r for r in DEFAULT.regions if r.protection == sc.MM_EXECUTE_READWRITE)
    hit = one("MEM-MALFIND", location=f"pid:{sc.W3WP_PID}")
    assert hit.severity == "high" and "PE header" in hit.title
    assert json.loads(hit.attributes)["starts"] == [hex(injected.start)]
    hit = one("MEM-NET-HAFNIUM-IP")
    assert sc.HAFNIUM_IP in hit.message and "w3wp.exe" in hit.message and str(sc.W3WP_PID) in hit.message
    assert sc.HAFNIUM_IP in hafnium_ips()
    hit = one("MEM-FILE-WEBSHELL", location=f"file:{sc.WEBSHELL.lower()}")
    assert "aspnet_client" in hit.title
    assert "App_Web_k3x9f2ma.dll" in one("MEM-FILE-APPWEB-DLL").message
    assert "MEM-SERVICE-SUSPICIOUS" not in rules  # the scenario's services are stock
    # the web shell's text on w3wp's heap and the dump command lines in the PEB pages, by YARA over the VADs
    chopper = "MEM-VADYARA-TRIAGE_MEM_WebShell_Chopper_Eval"
    assert one(chopper).location == f"pid:{sc.W3WP_PID}:rule:memory_webshell_code.TRIAGE_MEM_WebShell_Chopper_Eval"
    dumps = f[f.rule_id == "MEM-VADYARA-TRIAGE_MEM_Lsass_Dump_CommandLine"].location
    assert {loc.split(":")[1] for loc in dumps} == {str(sc.CMD_PID), str(sc.PROCDUMP_PID)}
    # the report's process tree section reads the tables the analyzer kept
    (tree,) = process_trees(case.path)
    assert [(r["depth"], r["pid"]) for r in tree["rows"]][:4] == [(0, 4), (1, 356), (2, 640), (3, sc.W3WP_PID)]
    assert [r["pid"] for r in tree["scan_only"]] == [hidden.pid]


def test_layer_cache_serves_a_real_kernel_and_a_stale_entry_is_dropped(
    win: WinMemImage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel configuration cached by one plugin (layers, DTB, kernel offset, symbol table) builds the next
    plugin's kernel with no DTB scan and no kernel search, with the same rows; an entry that no longer builds is
    dropped once."""
    from volatility3.framework.automagic import pdbscan, windows

    scans = {"dtb": 0, "kernel": 0}
    stack, determine = windows.WindowsIntelStacker.stack.__func__, pdbscan.KernelPDBScanner.determine_valid_kernel

    def counting_stack(cls, *a, **k):  # type: ignore[no-untyped-def]
        scans["dtb"] += 1
        return stack(cls, *a, **k)

    def counting_determine(self, *a, **k):  # type: ignore[no-untyped-def]
        scans["kernel"] += 1
        return determine(self, *a, **k)

    monkeypatch.setattr(windows.WindowsIntelStacker, "stack", classmethod(counting_stack))
    monkeypatch.setattr(pdbscan.KernelPDBScanner, "determine_valid_kernel", counting_determine)
    key = vol.LayerKey("ab" * 32, "winmem")
    cache = tmp_path / "cache"
    first = vol.run_plugin(
        win.image, "windows.pslist.PsList", symbols=[win.symbols_dir], cache_dir=cache, layer_key=key
    )
    assert first.layer_cache["status"] == "miss" and first.layer_cache["dtb"] == win.dtb
    again = vol.run_plugin(
        win.image, "windows.pslist.PsList", symbols=[win.symbols_dir], cache_dir=cache, layer_key=key
    )
    assert again.layer_cache["status"] == "hit"
    assert [(r["PID"], r["ImageFileName"]) for r in again.rows] == [(r["PID"], r["ImageFileName"]) for r in first.rows]
    cmd = vol.run_plugin(
        win.image, "windows.cmdline.CmdLine", symbols=[win.symbols_dir], cache_dir=cache, layer_key=key
    )
    assert cmd.layer_cache["status"] == "hit"
    assert {r["PID"] for r in cmd.rows} == {r["PID"] for r in first.rows}
    assert scans == {"dtb": 1, "kernel": 1}  # only the first plugin scanned

    entry_file = next((cache / "layers").glob("*.json"))
    entry = json.loads(entry_file.read_text())
    entry["config"]["symbol_table_name.isf_url"] = (tmp_path / "moved.json.xz").as_uri()  # the symbol file moved
    entry_file.write_text(json.dumps(entry))
    moved = vol.run_plugin(
        win.image, "windows.pslist.PsList", symbols=[win.symbols_dir], cache_dir=cache, layer_key=key
    )
    assert moved.layer_cache["status"] == "hit" and len(moved.rows) == len(first.rows)  # automagic found it again

    entry["config"]["layer_name.class"] = "volatility3.framework.layers.intel.NoSuchLayer"  # cannot be built
    entry_file.write_text(json.dumps(entry))
    healed = vol.run_plugin(
        win.image, "windows.pslist.PsList", symbols=[win.symbols_dir], cache_dir=cache, layer_key=key
    )
    assert healed.layer_cache.get("stale_entry_dropped") == entry_file.stem
    assert healed.layer_cache["status"] == "miss" and len(healed.rows) == len(first.rows)
    assert json.loads(entry_file.read_text())["config"]["layer_name.class"].endswith("WindowsIntel32e")
