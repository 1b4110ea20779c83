"""Builders for report tests: hostile evidence, and a ReportContext from a few rows without collecting."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from triage.case import Case, ManifestRow
from triage.finding import Finding, findings_frame
from triage.report.context import ReportContext, ReportOptions, manifest_frame
from triage.report.directive import load_directive
from triage.testing.eventlogs import _sysmon_proc
from triage.testing.evtx import evtx_bytes
from triage.testing.volume import VolumeSpec, build_volume

HIVES = ("SYSTEM", "SOFTWARE", "SAM", "SECURITY")
SHELL_NAME = "<img src=x onerror=alert(1)>.aspx"  # file names may hold '<' and '>', never '/'
SCRIPT = "<script>alert(1)</script>"
FORMULAS = ('=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tTAB", "\rCR")
EVIL_HOST = "<b>EVIL</b>\"'"


def hostile_volume(root: Path) -> Path:
    """The compromised sample server plus a web shell with a markup name and event data holding a script."""
    when = datetime(2021, 3, 3, 2, 40, tzinfo=UTC)
    sysmon = evtx_bytes(
        [
            _sysmon_proc(
                when,
                "C:\\root\\procdump64.exe",
                f"C:\\root\\procdump64.exe -accepteula -ma lsass.exe {SCRIPT} </script><!--",
                "C:\\Windows\\System32\\cmd.exe",
                "cmd /c x",
                "NT AUTHORITY\\SYSTEM",
            )
        ]
    )
    spec = VolumeSpec(
        extra_files={
            f"inetpub/wwwroot/aspnet_client/{SHELL_NAME}": b'<%@ Page Language="C#" %>',
            "Windows/System32/winevt/Logs/Microsoft-Windows-Sysmon%4Operational.evtx": sysmon,
        }
    )
    return build_volume(root, spec)


def plant_hostile_results(case: Case) -> None:
    """A result file and run record as a hostile (or broken) analyzer could leave them."""
    out = case.path / "results" / "hostile_probe"
    out.mkdir(parents=True, exist_ok=True)
    base = dict(
        analyzer="hostile_probe",
        analyzer_version="1.0",
        evidence_id="A-hostile",
        evidence_path=f"evidence/EXCH01/web_file/{SHELL_NAME}",
        evidence_sha256="ab" * 32,
        case_id=case.case_id,
    )
    findings = [
        Finding(
            **base,
            rule_id=f"TRIAGE-PROBE-{i}",
            rule_title=text,
            severity="medium",
            title=text,
            message=f"{text} {SCRIPT}",
            location=text,
            host="EXCH01",
            ts=datetime(2021, 3, 4, 1, i, tzinfo=UTC),
            tags=text,
            attributes={"payload": f"</script><!--<script>alert({i})</script>", "cell": text},
        )
        for i, text in enumerate(FORMULAS)
    ]
    findings.append(
        Finding(
            **base,
            rule_id="TRIAGE-PROBE-HOST",
            rule_title="hostile host name",
            severity="high",
            title=f"{SCRIPT} on a host named in markup",
            message=SHELL_NAME,
            location="x",
            host=EVIL_HOST,
            ts=None,  # no time: left out of the Timesketch file and counted
            attributes={"note": "]]><svg onload=alert(1)>"},
        )
    )
    findings_frame(findings).to_parquet(out / "A-hostile.parquet", index=False)
    record = {
        "analyzer": "hostile_probe",
        "analyzer_version": "1.0",
        "evidence_id": "A-hostile",
        "evidence_sha256": "ab" * 32,
        "host": "EXCH01",
        "status": "error",
        "started": "2021-03-04T00:00:00Z",
        "finished": "2021-03-04T00:00:01Z",
        "duration_s": 1.0,
        "findings": len(findings),
        "warnings": [f"warning {SCRIPT}", "=1+1"],
        "message": f"ValueError: {SCRIPT}",
        "traceback": "Traceback ...\n</script><script>alert('tb')</script>",
    }
    (out / "A-hostile.run.json").write_text(json.dumps(record))


def art(artifact_id: str, kind: str, path: str, host: str = "EX1", outcome: str = "success") -> ManifestRow:
    """One manifest row; the sha256 is derived from the id so tests can look for it."""
    return ManifestRow(
        artifact_id=artifact_id,
        kind=kind,
        outcome=outcome,
        source_host=host,
        source_path=path,
        collector="test",
        collector_version="1",
        collected_at="2021-03-05T00:00:00Z",
        relpath=f"evidence/{host}/{kind}/{artifact_id}" if outcome == "success" else None,
        size=100 if outcome == "success" else None,
        sha256=(artifact_id.lower() * 64)[:64] if outcome == "success" else None,
        md5=None,
    )


def finding(rule_id: str, evidence: str, *, host: str = "EX1", severity: str = "info", **kw: Any) -> Finding:
    kw.setdefault("title", rule_id)
    return Finding(
        analyzer=kw.pop("analyzer", "probe"),
        analyzer_version="1",
        rule_id=rule_id,
        rule_title=kw.pop("rule_title", rule_id),
        severity=severity,
        message=kw.pop("message", ""),
        evidence_id=evidence,
        evidence_path=f"evidence/{host}/{evidence}",
        evidence_sha256=(evidence.lower() * 64)[:64],
        location=kw.pop("location", rule_id),
        host=host,
        case_id="CASE-T",
        **kw,
    )


def run(analyzer: str, evidence: str, status: str = "success", host: str = "EX1") -> dict[str, Any]:
    return {
        "analyzer": analyzer,
        "analyzer_version": "1",
        "evidence_id": evidence,
        "host": host,
        "status": status,
        "findings": 0,
        "duration_s": 0.1,
        "message": "",
        "warnings": [],
    }


def context(
    manifest: list[ManifestRow], findings: list[Finding], runs: list[dict[str, Any]], **options: Any
) -> ReportContext:
    df = findings_frame(findings)
    df = df.sort_values(["severity", "ts"], ascending=[False, True], na_position="last", kind="stable")
    return ReportContext(
        case_id="CASE-T",
        case_info={"created": "2021-03-05T00:00:00Z", "examiner": "t"},
        findings=df.reset_index(drop=True),
        manifest=manifest_frame(manifest),
        runs=pd.DataFrame(runs),
        directive=load_directive(),
        generated=datetime(2021, 3, 6, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        options=ReportOptions(**options),
    )
