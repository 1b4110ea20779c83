"""End to end: a synthetic Exchange volume collected into a case and analysed by the registry analyzers."""

from __future__ import annotations

import json
from pathlib import Path

from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.case import Case
from triage.report import load_findings
from triage.runner import analyze_case
from triage.testing.hives import exsetup_exe, planted_ntuser, planted_sam
from triage.testing.volume import VolumeSpec, build_volume

ANALYZERS = ("registry_exchange", "registry_hostinfo", "registry_rules")


def _case(tmp_path: Path, spec: VolumeSpec) -> Case:
    vol = build_volume(tmp_path / "vol", spec)
    case = Case.create_or_open(tmp_path / "case", examiner="tester", case_id="CASE-REG")
    collect_volume(case, open_source_path(str(vol)), host=None)
    return case


def test_volume_to_findings(tmp_path: Path) -> None:
    spec = VolumeSpec(
        install_path=r"C:\Apps\Exchange\V15",
        extra_files={
            "Windows/System32/config/SAM": planted_sam().to_bytes(),
            "Users/exadmin/NTUSER.DAT": planted_ntuser().to_bytes(),
        },
    )
    case = _case(tmp_path, spec)
    summary = analyze_case(case, only=ANALYZERS)
    assert summary.statuses["error"] == 0, summary.errors
    assert summary.planned == 3  # one host-scope unit per analyzer
    df = load_findings(case)
    got = sorted(zip(df["analyzer"], df["rule_id"], df["severity"].astype(str), strict=True))
    assert got == [
        ("registry_exchange", "TRIAGE-EXCH-001", "info"),
        ("registry_exchange", "TRIAGE-EXCH-002", "high"),
        ("registry_hostinfo", "TRIAGE-HOST-001", "info"),
        ("registry_hostinfo", "TRIAGE-HOST-002", "info"),
        ("registry_hostinfo", "TRIAGE-HOST-007", "info"),
        ("registry_rules", "TRIAGE-REG-ACC-001", "medium"),
        ("registry_rules", "TRIAGE-REG-ACC-002", "high"),
        ("registry_rules", "TRIAGE-REG-ACC-003", "medium"),
        ("registry_rules", "TRIAGE-REG-ACC-004", "low"),
        ("registry_rules", "TRIAGE-REG-EXE-003", "medium"),
        ("registry_rules", "TRIAGE-REG-EXE-006", "medium"),
        ("registry_rules", "TRIAGE-REG-PER-002", "high"),
    ]
    assert set(df["host"]) == {"EXCH01"} and set(df["case_id"]) == {"CASE-REG"}
    ex = df[df["rule_id"] == "TRIAGE-EXCH-002"].iloc[0]
    attrs = json.loads(ex["attributes"])
    assert attrs["install_path"] == "C:\\Apps\\Exchange\\V15\\" and attrs["build"] == "15.1.2176.2"
    assert ex["cve"].startswith("CVE-2021-26855") and ex["ed2102_steps"] == "1,14,32"
    # the volume builder writes an ExSetup.exe whose version resource is the build: it decides the verdict
    row = next(r for r in case.evidence() if r.relpath and r.relpath.endswith("Bin/ExSetup.exe"))
    assert ex["evidence_sha256"] == row.sha256
    run = json.loads((case.path / "results" / "registry_exchange").glob("*.run.json").__next__().read_text())
    assert not any("cannot read the version resource" in w for w in run["warnings"])
    # a second run reuses every unit
    assert analyze_case(case, only=ANALYZERS).reused == 3


def test_collected_exsetup_decides_the_verdict(tmp_path: Path) -> None:
    spec = VolumeSpec(
        extra_files={"Program Files/Microsoft/Exchange Server/V15/Bin/ExSetup.exe": exsetup_exe((15, 1, 2176, 12))}
    )
    case = _case(tmp_path, spec)
    analyze_case(case, only=("registry_exchange",))
    df = load_findings(case)
    assert sorted(df["rule_id"]) == ["TRIAGE-EXCH-001", "TRIAGE-EXCH-004", "TRIAGE-EXCH-006"]
    verdict = df[df["rule_id"] == "TRIAGE-EXCH-004"].iloc[0]
    assert verdict["evidence_path"].endswith("Bin/ExSetup.exe")
