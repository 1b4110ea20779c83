"""Each acquisition format through Volatility's own layers, and the analyzer's word on the ones it cannot read."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from analyzers.memory import vol
from collectors.collect import collect_files
from collectors.sources import open_source_path
from triage.case import Case
from triage.runner import analyze_case, result_paths
from triage.testing import memformats as mf

MEM = mf.sample_memory(pages=300, hole_at=100, hole_pages=20)
MARK = len(mf.page_marker(0))
PRESENT = (0, 99 * mf.PAGE, 120 * mf.PAGE, 319 * mf.PAGE)  # first and last page of each run
HOLE = 110 * mf.PAGE

pytest.importorskip("volatility3")


def _layer_reads_back(view: vol.PhysicalView) -> None:
    for addr in PRESENT:
        assert view.read(addr, MARK) == mf.page_marker(addr), hex(addr)
    assert view.read(150 * mf.PAGE + 4000, 96) == MEM.read(150 * mf.PAGE + 4000, 96)  # across a page boundary


@pytest.mark.parametrize(
    ("name", "write", "layer"),
    [
        ("crash-full.dmp", lambda p: mf.write_crash_full(p, MEM), "WindowsCrashDump64Layer"),
        ("crash-bitmap.dmp", lambda p: mf.write_crash_bitmap(p, MEM), "WindowsCrashDump64Layer"),
        ("image.lime", lambda p: mf.write_lime(p, MEM), "LimeLayer"),
        ("winpmem.elf", lambda p: mf.write_elf_core(p, MEM), "Elf64Layer"),
        ("vbox.core", lambda p: mf.write_elf_core(p, MEM, style="virtualbox"), "Elf64Layer"),
        ("vm.vmem", lambda p: mf.write_vmware(p, MEM)[0], "VmwareLayer"),
        ("snap.vmem", lambda p: mf.write_vmware(p, MEM, state="vmsn")[0], "VmwareLayer"),
    ],
)
def test_each_format_stacks_its_layer_and_reads_back_physical_memory(
    tmp_path: Path, name: str, write: object, layer: str
) -> None:
    path = write(tmp_path / name)  # type: ignore[operator]
    view = vol.open_physical(path)
    assert view.layer_class == layer and view.layers[-1] == "FileLayer"
    _layer_reads_back(view)
    assert not view.is_valid(HOLE) and view.read(HOLE, 16) == bytes(16)  # the hole is not memory


def test_raw_is_the_file_itself(tmp_path: Path) -> None:
    view = vol.open_physical(mf.write_raw(tmp_path / "m.raw", MEM))
    assert view.layers == ["FileLayer"]
    _layer_reads_back(view)


def test_a_vmem_with_its_state_file_under_other_names_is_still_layered(tmp_path: Path) -> None:
    vmem, vmss = mf.write_vmware(tmp_path / "vm.vmem", MEM)
    assert vmss is not None
    other = tmp_path / "kept" / "VM.VMSS"
    other.parent.mkdir()
    vmss.rename(other)
    assert vol.open_physical(vmem).layer_class == "FileLayer"  # Volatility alone finds no state file
    view = vol.open_physical(vmem, sidecar=other)
    assert view.layer_class == "VmwareLayer"
    _layer_reads_back(view)


def test_the_installed_volatility_is_what_the_refusals_are_checked_against() -> None:
    stackers = vol.format_stackers()
    assert {"WindowsCrashDumpStacker", "LimeStacker", "Elf64Stacker", "VmwareStacker"} <= set(stackers)
    assert 1 in vol.crash_dump_types()


# -- through the analyzer ---------------------------------------------------------------------------------------
def _case(tmp_path: Path, *files: Path) -> Case:
    case = Case.create_or_open(tmp_path / "case", examiner="pytest", case_id="FMT-1")
    for f in files:
        collect_files(case, open_source_path(str(f), "memory"), host="EXCH01")
    return case


def _run(case: Case, **options: object) -> tuple[pd.DataFrame, dict[str, dict[str, object]]]:
    analyze_case(case, only=("memory",), jobs=1, options={"memory": {"plugins": ["info"], **options}})
    frames, runs = [], {}
    for row in case.evidence():
        if row.kind != "memory_image":
            continue
        parquet, record = result_paths(case.path, "memory", row.artifact_id)
        runs[Path(row.relpath or "").name] = json.loads(record.read_text())
        if parquet.exists():
            frames.append(pd.read_parquet(parquet))
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"rule_id": []})), runs


def test_a_hibernation_file_is_refused_by_name_and_never_byte_scanned(tmp_path: Path) -> None:
    src = mf.write_hibernation(tmp_path / "hiberfil.sys", MEM)
    case = _case(tmp_path, src)
    (row,) = [r for r in case.evidence() if r.kind == "memory_image"]
    assert row.extra.get("format") == "hibernation"
    findings, runs = _run(case)
    (unread,) = findings[findings.rule_id == "MEM-FORMAT-UNREAD"].itertuples()
    assert "hibernation file" in unread.message and "no hibernation layer" in unread.message
    run = runs["hiberfil.sys"]
    assert any("raw YARA scan not run" in w for w in run["warnings"])
    index = case.path / "results" / "memory" / row.artifact_id / "index.json"
    kept = json.loads(index.read_text())
    assert kept["tables"] == {}  # neither a raw scan table nor a Volatility table
    assert kept["format"]["format"] == "hibernation" and kept["format"]["compressed"] is True
    assert not any(r.startswith("MEM-VOL-") for r in findings.rule_id)  # Volatility was not even tried


def test_an_unsupported_dump_type_names_it(tmp_path: Path) -> None:
    case = _case(tmp_path, mf.write_crash_bitmap(tmp_path / "MEMORY.DMP", MEM, dump_type=mf.DUMP_TYPE_BITMAP_KERNEL))
    findings, _ = _run(case, raw_scan=False)
    (msg,) = findings[findings.rule_id == "MEM-FORMAT-UNREAD"].message
    assert "DumpType 6 (bitmap kernel)" in msg and "reads only DumpType 1, 5" in msg


def test_a_vmem_without_its_vmss_is_read_with_a_warning_and_a_finding(tmp_path: Path) -> None:
    vmem, _ = mf.write_vmware(tmp_path / "EXCH01.vmem", MEM, state=None)
    findings, runs = _run(_case(tmp_path, vmem), raw_scan=False)
    (msg,) = findings[findings.rule_id == "MEM-FORMAT-PARTIAL"].message
    assert "no EXCH01.vmss or EXCH01.vmsn beside EXCH01.vmem" in msg
    assert any("EXCH01.vmss" in w for w in runs["EXCH01.vmem"]["warnings"])
    assert "MEM-VOL-NO-KERNEL" in set(findings.rule_id)  # Volatility still read it, as raw memory


def test_a_truncated_dump_says_how_much_is_missing(tmp_path: Path) -> None:
    cut = mf.write_crash_full(tmp_path / "MEMORY.DMP", MEM, truncate_to=0x10000)
    findings, _ = _run(_case(tmp_path, cut), raw_scan=False)
    (msg,) = findings[findings.rule_id == "MEM-FORMAT-PARTIAL"].message
    assert "truncated" in msg and f"{0x10000:,}" in msg


def test_a_vmem_and_its_vmss_collected_together_stay_together(tmp_path: Path) -> None:
    src = tmp_path / "vm"
    src.mkdir()
    mf.write_vmware(src / "EXCH01.vmem", MEM)
    case = Case.create_or_open(tmp_path / "case", examiner="pytest", case_id="FMT-2")
    collect_files(case, open_source_path(str(src), "files"), host="EXCH01")
    stored = {Path(r.relpath or "").name: r for r in case.evidence()}
    assert {"EXCH01.vmem", "EXCH01.vmss"} <= set(stored)
    assert stored["EXCH01.vmss"].kind == stored["EXCH01.vmem"].kind == "memory_image"
    assert Path(stored["EXCH01.vmem"].relpath or "").parent == Path(stored["EXCH01.vmss"].relpath or "").parent
    view = vol.open_physical(case.path / (stored["EXCH01.vmem"].relpath or ""))
    assert view.layer_class == "VmwareLayer"  # beside each other in the case, as Volatility wants them
    findings, runs = _run(case, raw_scan=False)
    assert not {"MEM-FORMAT-PARTIAL", "MEM-FORMAT-UNREAD"} & set(findings.rule_id)
    assert runs["EXCH01.vmss"]["status"] in ("success", "no_findings")


@pytest.mark.slow
def test_a_refused_format_is_no_verdict(tmp_path: Path) -> None:
    from triage.cli import main

    src = mf.write_hibernation(tmp_path / "hiberfil.sys", MEM)
    code = main(["run", str(src), "--case", str(tmp_path / "case"), "--host", "EXCH01", "-q"])
    assert code == 4  # insufficient evidence: the only memory image was not read
    ledger = (tmp_path / "case" / "report" / "ledger.json").read_text()
    assert '"memory": "not examined"' in ledger


def test_a_vmem_and_its_vmss_given_as_two_sources_land_side_by_side(tmp_path: Path) -> None:
    vmem, vmss = mf.write_vmware(tmp_path / "EXCH01.vmem", MEM)
    assert vmss is not None
    case = Case.create_or_open(tmp_path / "case", examiner="pytest", case_id="FMT-3")
    for source in (vmem, vmss):
        collect_files(case, open_source_path(str(source), "auto"), host="EXCH01")
    rows = {Path(r.relpath or "").name: r for r in case.evidence()}
    assert rows["EXCH01.vmem"].extra["format"] == "vmware_vmem"
    assert rows["EXCH01.vmss"].extra["format"] == "vmware_state"
    assert Path(rows["EXCH01.vmem"].relpath or "").with_suffix(".vmss") == Path(rows["EXCH01.vmss"].relpath or "")
