"""The memory analyzer through the runner: a case with a memory image, lsass dumps and other files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from memory_support import KERNEL_GUID_VOL, KERNEL_PHYS, wide, write_isf_folder, x64_image

from analyzers.memory import analyzer as mem
from analyzers.memory import tables, vol
from collectors.collect import collect_files
from collectors.sources import open_source_path
from triage.case import Case
from triage.cli import main
from triage.registry import analyzers
from triage.runner import analyze_case, result_paths
from triage.testing.minidump import T_WRITTEN, minidump
from triage.testing.volume import minidump_bytes, zip_bytes

LSASS_CMD = wide(r"procdump64.exe -accepteula -ma lsass.exe C:\windows\temp\lsass.dmp")
OAB = wide('Set-OabVirtualDirectory -ExternalUrl \'http://f/<script language="JScript" runat="server">\'')
CHOPPER = b'<%@ Page Language="Jscript"%><%eval(Request.Item["z"],"unsafe");%>'
PLANTS = {
    0x80_0000 - 20: LSASS_CMD,  # across the first 8 MiB chunk boundary (chunk_size below)
    0x90_0000: OAB,
    KERNEL_PHYS + 0x2000: CHOPPER,
    0xA0_0003: minidump(),  # an lsass dump in the file cache, not page aligned
}


def _collect(case: Case, path: Path, kind: str | None = None) -> None:
    collect_files(case, open_source_path(str(path), "memory" if kind is None else "files"), host="EXCH01", kind=kind)


@pytest.fixture
def mem_case(tmp_path: Path) -> Case:
    src = tmp_path / "src"
    src.mkdir()
    (src / "EXCH01.raw").write_bytes(x64_image(16 << 20, plants=PLANTS))
    (src / "lsass.dmp").write_bytes(minidump())
    (src / "w3wp.dmp").write_bytes(minidump([(r"c:\windows\system32\inetsrv\w3wp.exe", 0x7FF7_0000_0000, 0x7000)]))
    (src / "header-only.dmp").write_bytes(minidump_bytes())
    (src / "it.zip").write_bytes(zip_bytes({"lsass.dmp": minidump_bytes(1024)}))
    case = Case.create_or_open(tmp_path / "case", examiner="pytest", case_id="MEM-1")
    _collect(case, src / "EXCH01.raw")
    for name in ("lsass.dmp", "w3wp.dmp", "header-only.dmp", "it.zip"):
        _collect(case, src / name, "suspicious_file")
    return case


def _findings(case: Case) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in sorted((case.path / "results" / "memory").glob("*.parquet"))]
    return pd.concat(frames, ignore_index=True)


def _image_row(case: Case) -> Any:
    return next(r for r in case.evidence() if r.kind == "memory_image")


def test_registered_with_its_declaration() -> None:
    cls = analyzers()["memory"]
    assert cls.consumes == ("memory_image", "suspicious_file", "file")
    assert cls.rules == ("yara",)


def test_image_without_symbols_gets_raw_yara_and_a_clear_warning(mem_case: Case, no_network: list[str]) -> None:
    summary = analyze_case(mem_case, only=("memory",), jobs=1, options={"memory": {"chunk_size": 8 << 20}})
    assert summary.errors == []
    image = _image_row(mem_case)
    run = json.loads(result_paths(mem_case.path, "memory", image.artifact_id)[1].read_text())
    assert run["status"] == "success"
    (warning,) = [w for w in run["warnings"] if "ntkrnlmp.pdb" in w]
    assert KERNEL_GUID_VOL in warning and "--symbols" in warning

    df = _findings(mem_case)
    mine = df[df.evidence_id == image.artifact_id].set_index("rule_id")
    for rule in (
        "MEM-YARA-TRIAGE_MEM_Lsass_Dump_CommandLine",
        "MEM-YARA-TRIAGE_MEM_OAB_ExternalUrl_Script",
        "MEM-YARA-TRIAGE_MEM_WebShell_Chopper_Eval",
        "MEM-LSASS-DUMP-CARVED",
        "MEM-VOL-NO-SYMBOLS",
        "MEM-TABLES",
    ):
        assert rule in mine.index, rule
    assert mine.loc["MEM-YARA-TRIAGE_MEM_Lsass_Dump_CommandLine", "location"] == f"offset:{0x80_0000 - 20:#x}"
    assert mine.loc["MEM-YARA-TRIAGE_MEM_Lsass_Dump_CommandLine", "severity"] == "critical"
    assert mine.loc["MEM-LSASS-DUMP-CARVED", "location"] == f"offset:{0xA0_0003:#x}"
    assert json.loads(mine.loc["MEM-VOL-NO-SYMBOLS", "attributes"])["guid"] == KERNEL_GUID_VOL

    folder = mem_case.path / "results" / "memory" / image.artifact_id
    index = json.loads((folder / "index.json").read_text())["tables"]
    assert index["info"]["status"] == "error" and index["info"]["kind"] == "missing_symbols"
    assert {index[t]["status"] for t in mem.TABLE_NAMES if t != "info"} == {"skipped"}
    raw = pd.read_parquet(folder / "yara_raw.parquet")
    assert index["yara_raw"]["sha256"] == tables.sha256_file(folder / "yara_raw.parquet")
    lsass_hits = raw[raw.Rule.str.endswith("TRIAGE_MEM_Lsass_Dump_CommandLine")]
    assert int(lsass_hits.Offset.min()) == 0x80_0000 - 20
    assert no_network == []


def test_minidump_files(mem_case: Case) -> None:
    analyze_case(mem_case, only=("memory",), jobs=1, options={"memory": {"volatility": False, "raw_scan": False}})
    df = _findings(mem_case)
    lsass = df[df.rule_id == "MEM-LSASS-DUMP-FILE"]
    assert len(lsass) == 1
    row = lsass.iloc[0]
    assert row.severity == "critical" and row.ts == pd.Timestamp(T_WRITTEN)
    attrs = json.loads(row.attributes)
    assert (attrs["process"], attrs["process_id"], attrs["full_memory"]) == ("lsass.exe", 644, True)
    others = df[df.rule_id == "MEM-MINIDUMP-FILE"].sort_values("severity")
    assert sorted(json.loads(a)["process"] for a in others.attributes) == ["", "w3wp.exe"]
    zip_row = next(r for r in mem_case.evidence() if r.relpath and r.relpath.endswith("it.zip"))
    run = json.loads(result_paths(mem_case.path, "memory", zip_row.artifact_id)[1].read_text())
    assert run["status"] == "skipped" and "MDMP" in run["message"]


# -- plugin orchestration with a stand-in for Volatility (the fork inherits the monkeypatch) -----------------
T0 = pd.Timestamp("2021-03-03T04:00:00Z").to_pydatetime()
FAKE_ROWS: dict[str, list[dict[str, Any]]] = {
    "info": [{"TreeDepth": 0, "Variable": "NtBuildLab", "Value": "17763.1.amd64fre.rs5_release.180914-1434"}],
    "pslist": [
        {"TreeDepth": 0, "PID": 644, "PPID": 500, "ImageFileName": "lsass.exe", "CreateTime": T0, "ExitTime": None},
        {"TreeDepth": 0, "PID": 2200, "PPID": 600, "ImageFileName": "w3wp.exe", "CreateTime": T0, "ExitTime": None},
        {"TreeDepth": 0, "PID": 3000, "PPID": 2200, "ImageFileName": "cmd.exe", "CreateTime": T0, "ExitTime": None},
    ],
    "cmdline": [
        {
            "TreeDepth": 0,
            "PID": 3000,
            "Process": "cmd.exe",
            "Args": r"cmd /c C:\ProgramData\procdump64.exe -accepteula -ma lsass.exe C:\ProgramData\l.dmp",
        }
    ],
}


def _kind(v: Any) -> str:
    return {bool: "bool", int: "int", str: "str", bytes: "bytes"}.get(type(v), "datetime" if v is not None else "str")


def _fake_job(
    image: str,
    names: tuple[str, ...],
    options: dict[str, Any],
    out_path: str,
    symbols: list[str],
    cache: str,
    progress: Any = None,
    **_: Any,  # layer_key, sidecar: the layer cache and a VMware state file, unused by the fake
) -> dict[str, Any]:
    table = Path(out_path).name.lstrip(".").split(".")[0]  # a staging name: .<table>.parquet.tmp-<pid>
    if progress:
        progress(50.0, f"fake {table}")
    if table == "psscan":
        raise RuntimeError("psscan blew up")
    if table == "pstree":
        time.sleep(30)
    if table == "netscan":
        os._exit(9)
    if table == "malfind":
        return {
            "status": "error",
            "plugin": names[0],
            "error": vol.Unsatisfied("Malfind: requirements not met: kernel.layer_name", ["x"]).as_dict(),
        }
    rows = FAKE_ROWS.get(table, [])
    cols = [vol.Column(k, _kind(v)) for k, v in (rows[0].items() if rows else [("TreeDepth", 0)])]
    tables.write_table(Path(out_path), cols, rows)
    return {"status": "ok", "plugin": names[0], "rows": len(rows), "warnings": []}


def test_one_failing_or_slow_plugin_never_stops_the_rest(mem_case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mem, "_plugin_job", _fake_job)
    t0 = time.monotonic()
    analyze_case(mem_case, only=("memory",), jobs=1, options={"memory": {"raw_scan": False, "plugin_timeout": 1.0}})
    assert time.monotonic() - t0 < 25
    image = _image_row(mem_case)
    run = json.loads(result_paths(mem_case.path, "memory", image.artifact_id)[1].read_text())
    assert run["status"] == "success"
    warnings = "\n".join(run["warnings"])
    assert "windows.psscan.PsScan failed: RuntimeError: psscan blew up" in warnings
    assert "windows.pstree.PsTree timed out: stopped after the 1 s time limit" in warnings
    assert "windows.netscan.NetScan crashed" in warnings and "status 9" in warnings
    assert "Malfind: requirements not met" in warnings
    index = json.loads((mem_case.path / "results" / "memory" / image.artifact_id / "index.json").read_text())["tables"]
    assert {t: e["status"] for t, e in index.items()} == {
        "info": "ok",
        "pslist": "ok",
        "psscan": "error",
        "pstree": "timeout",
        "cmdline": "ok",
        "netscan": "died",
        "malfind": "error",
        "svcscan": "ok",
        "dlllist": "ok",
        "handles": "ok",
        "filescan": "ok",
        "vadyarascan": "ok",
    }
    df = _findings(mem_case)
    rules = set(df[df.evidence_id == image.artifact_id].rule_id)
    assert {"MEM-W3WP-SHELL-CHILD", "MEM-CMD-PROCDUMP-LSASS", "MEM-TABLES"} <= rules
    child = df[df.rule_id == "MEM-W3WP-SHELL-CHILD"].iloc[0]
    assert child.severity == "critical" and "procdump64" in child.message


def test_fingerprint_follows_the_symbol_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = analyzers()["memory"]
    plain = cls({}).fingerprint()
    assert cls({}).fingerprint() == plain
    syms = write_isf_folder(tmp_path / "syms")
    monkeypatch.setenv("TRIAGE_SYMBOLS", str(syms))
    with_env = cls({}).fingerprint()
    assert with_env != plain
    assert cls({"symbols": [str(syms)]}).fingerprint() not in (plain, with_env)  # options count too
    extra = syms / "windows" / "ntkrnlmp.pdb" / "0000-1.json.xz"
    extra.write_bytes(b"x")
    cls._fp_cache.clear()  # one process never sees a folder change under it; a new run does
    assert cls({}).fingerprint() != with_env


def test_symbols_reach_the_analyzer_from_cli_env_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from analyzers.memory import settings
    from triage.app import RuleInputs, analyzer_options

    syms = write_isf_folder(tmp_path / "from-cli")
    assert analyzer_options(RuleInputs(symbols=(str(syms),)))["memory"] == {"symbols": [str(syms)]}
    assert main(["analyze", str(tmp_path), "--symbols", str(tmp_path / "nope"), "-q"]) == 2

    cfg = tmp_path / "no-config" / "triage" / "config.toml"  # XDG_CONFIG_HOME from conftest
    cfg.parent.mkdir(parents=True)
    cfg.write_text('symbols = ["../../packs", "/abs/symbols"]\nmemory_plugin_timeout = 90\n')
    assert settings.symbol_dirs({}) == ((tmp_path / "packs").resolve(), Path("/abs/symbols"))
    assert settings.plugin_timeout({}) == 90.0
    monkeypatch.setenv("TRIAGE_SYMBOLS", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    assert settings.symbol_dirs({}) == (tmp_path / "a", tmp_path / "b")  # the environment beats the file
    assert settings.symbol_dirs({"symbols": [str(syms)]}) == (syms,)  # and --symbols beats both
    cfg.write_text("symbols = [unclosed")
    monkeypatch.delenv("TRIAGE_SYMBOLS")
    with pytest.raises(ValueError, match="not valid TOML"):
        settings.symbol_dirs({})


def test_symbols_found_but_unusable_stop_the_windows_plugins_once(tmp_path: Path) -> None:
    (tmp_path / "img.raw").write_bytes(x64_image())
    case = Case.create_or_open(tmp_path / "case", examiner="pytest", case_id="MEM-2")
    _collect(case, tmp_path / "img.raw")
    syms = write_isf_folder(tmp_path / "syms")  # the kernel's identity, but no types in it
    analyze_case(case, only=("memory",), jobs=1, options={"memory": {"symbols": [str(syms)], "raw_scan": False}})
    image = _image_row(case)
    run = json.loads(result_paths(case.path, "memory", image.artifact_id)[1].read_text())
    (warning,) = run["warnings"]
    assert "was found" in warning and str(syms) in warning
    assert set(_findings(case).rule_id) == {"MEM-VOL-KERNEL-SETUP"}


def test_a_minidump_given_as_a_memory_image(tmp_path: Path) -> None:
    (tmp_path / "lsass.dmp").write_bytes(minidump())
    case = Case.create_or_open(tmp_path / "case", examiner="pytest", case_id="MEM-3")
    _collect(case, tmp_path / "lsass.dmp")  # .dmp is a memory image extension
    analyze_case(case, only=("memory",), jobs=1)
    rules = set(_findings(case).rule_id)
    assert "MEM-LSASS-DUMP-FILE" in rules
    assert "MEM-LSASS-DUMP-CARVED" not in rules  # the header at offset 0 is the file itself
    assert not any(r.startswith("MEM-VOL-") for r in rules)  # Volatility has no layer for a process dump
