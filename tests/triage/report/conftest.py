"""Report fixtures: a compromised case with hostile strings everywhere, reported once per session."""

from __future__ import annotations

import pytest
from report_support import hostile_volume, plant_hostile_results

from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.case import Case
from triage.report import ReportResult, build_report
from triage.runner import analyze_case


@pytest.fixture(scope="session")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Case, ReportResult]:
    """A collected, analyzed and reported hostile case (built once; tests only read it)."""
    tmp = tmp_path_factory.mktemp("hostile")
    vol = hostile_volume(tmp / "vol")
    case = Case.create_or_open(tmp / "case", examiner="tester", case_id="CASE-HOSTILE")
    collect_volume(case, open_source_path(str(vol)), host=None)
    analyze_case(case)
    plant_hostile_results(case)
    result = build_report(case)
    case.close()
    return case, result
