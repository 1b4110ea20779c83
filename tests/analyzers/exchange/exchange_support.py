"""Helpers of the Exchange log tests: story files on disk as LogFile lists, collected cases."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analyzers.exchange.common import LogFile
from analyzers.exchange.logs import log_type
from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.case import Case
from triage.results import unit_records
from triage.testing.exchangelogs import LogSet, proxylogon_story, write_files
from triage.testing.volume import DEFAULT_INSTALL, VolumeSpec, build_volume

REPO = Path(__file__).resolve().parents[3]
CORPUS_LOGS = REPO.parent / "shared" / "corpus" / "logs"
INSTALL = "C:/Program Files/Microsoft/Exchange Server/V15"
MY_ANALYZERS = ("proxylogon", "exchange_weblogs", "proxylogon_narrative")


def kind_of(rel: str) -> str:
    if rel.lower().endswith(".evtx"):
        return "evtx"
    if rel.startswith("inetpub/logs/"):
        return "iis_log"
    return "exchange_log"


def story_files(
    root: Path, logset: LogSet | None = None, drive: str = "C", **kw: object
) -> tuple[LogSet, list[LogFile]]:
    """Write a story under ``root`` and describe its files as the analyzers see collected ones."""
    ls = logset or proxylogon_story(**kw)  # type: ignore[arg-type]
    write_files(root, ls.files)
    files = []
    for rel in sorted(ls.files):
        logical = f"{drive}:/" + rel
        files.append(LogFile(root / rel, logical, log_type(logical, kind_of(rel)), kind_of(rel)))
    return ls, files


def collected_case(tmp: Path, logset: LogSet, install_path: str = DEFAULT_INSTALL, name: str = "case") -> Case:
    """A case with a synthetic volume (no planted web shell files) plus the story's logs collected."""
    vol = build_volume(tmp / f"{name}-vol", VolumeSpec(install_path=install_path, compromised=False,
                                                        extra_files=logset.files))  # fmt: skip
    case = Case.create_or_open(tmp / name, examiner="pytest", case_id=f"CASE-{name.upper()}")
    collect_volume(case, open_source_path(str(vol)), host=None)
    return case


def run_records(case: Case, analyzer: str) -> list[dict[str, object]]:
    return [rec for _, rec in unit_records(case.path, [analyzer])]  # single and batch records


def attrs(df: pd.DataFrame) -> list[dict[str, object]]:
    return [json.loads(a) for a in df["attributes"]]


# what the story plants (written out by hand, not taken from the builder)
A = "157.230.221.198"
D = "45.77.204.11"
SUFFIX = "-5c1e-4b7a-9d3f-0a1b2c3d4e5f"
EXPECTED_26855 = {
    ("a0000002" + SUFFIX, A, "2021-03-03T06:49:43.699Z", "Ecp"),
    ("a0000003" + SUFFIX, A, "2021-03-03T06:49:46.210Z", "Ecp"),
    ("a0000004" + SUFFIX, A, "2021-03-03T06:49:51.543Z", "Ecp"),
    ("a0000005" + SUFFIX, A, "2021-03-03T06:49:53.801Z", "Ecp"),
    ("a0000006" + SUFFIX, A, "2021-03-03T06:49:56.120Z", "Ecp"),
    ("a0000007" + SUFFIX, A, "2021-03-03T06:50:00.760Z", "Ecp"),
    ("a0000016" + SUFFIX, A, "2021-03-03T06:59:13.030Z", "Ecp"),
    ("a0000017" + SUFFIX, A, "2021-03-03T06:59:14.588Z", "Ecp"),
    ("a0000018" + SUFFIX, A, "2021-03-03T06:59:18.042Z", "Ecp"),
    ("a0000019" + SUFFIX, A, "2021-03-03T06:59:19.101Z", "Ecp"),
    ("a0000020" + SUFFIX, A, "2021-03-03T06:59:20.359Z", "Ecp"),
    ("a0000021" + SUFFIX, A, "2021-03-03T06:59:23.288Z", "Ecp"),
    ("d0000001" + SUFFIX, D, "2021-03-03T07:15:20.005Z", "Owa"),
}
EXPECTED_RESET = {
    ("a0000006" + SUFFIX, A, "2021-03-03T06:49:56.120Z"),
    ("a0000020" + SUFFIX, A, "2021-03-03T06:59:20.359Z"),
}
SHELL = r"'C:\inetpub\wwwroot\aspnet_client\system_web\Dk2jQ8ab.aspx'"

STORY_TOTALS = {
    "TRIAGE-EXW-001": 1,
    "TRIAGE-EXW-003": 30,
    "TRIAGE-EXW-005": 1,
    "TRIAGE-EXW-006": 31,
    "TRIAGE-EXW-007": 1,
    "TRIAGE-EXW-009": 29,
    "TRIAGE-EXW-010": 2,
    "TRIAGE-EXW-011": 4,
    "TRIAGE-EXW-012": 1,
    "TRIAGE-EXW-013": 2,
    "TRIAGE-EXW-014": 1,
    "TRIAGE-EXW-015": 3,
    "TRIAGE-EXW-016": 1,
    "TRIAGE-EXW-017": 2,
    "TRIAGE-EXW-018": 4,
}
