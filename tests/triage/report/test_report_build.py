from __future__ import annotations

import pandas as pd

from triage.case import Case
from triage.report import build_report, neutralise_formulas
from triage.runner import analyze_case


def test_neutralise_formulas() -> None:
    assert neutralise_formulas('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert neutralise_formulas("+1") == "'+1"
    assert neutralise_formulas("@SUM(A1)") == "'@SUM(A1)"
    assert neutralise_formulas("-2+3") == "'-2+3"
    assert neutralise_formulas("C:/inetpub") == "C:/inetpub"
    assert neutralise_formulas(5) == 5


def test_report_writes_parquet_and_safe_csv(case: Case) -> None:
    analyze_case(case, only=("webshell_locations",))
    # a second identical result file must not double the findings (dedupe by finding_id)
    res_dir = case.path / "results" / "webshell_locations"
    one = next(
        p for p in sorted(res_dir.glob("*.parquet")) if list(pd.read_parquet(p)["rule_id"]) == ["TRIAGE-WEB-001"]
    )
    (res_dir / "copy.parquet").write_bytes(one.read_bytes())
    # attacker-controlled text reaching a cell
    df = pd.read_parquet(one)
    df.loc[0, "message"] = "=cmd|' /C calc'!A0"
    df.loc[0, "finding_id"] = "f" * 32
    df.to_parquet(res_dir / "hostile.parquet")
    (res_dir / "broken.parquet").write_bytes(b"not parquet")
    res = build_report(case)
    assert res.findings == 6
    assert res.by_severity == {"critical": 1, "high": 1, "medium": 4, "low": 0, "info": 0}  # places alone: medium
    assert res.max_severity == "critical"
    assert any("broken.parquet" in w for w in res.warnings)
    out = pd.read_parquet(case.path / "report" / "findings.parquet")
    assert list(out["severity"].astype(str))[:1] == ["critical"]
    csv = (case.path / "report" / "findings.csv").read_text()
    assert "'=cmd|' /C calc'!A0" in csv and ",=cmd" not in csv
    assert list(case.custody.events())[-1]["action"] == "report"


def test_copies_of_one_file_report_their_finding_under_the_first_path() -> None:
    import pyarrow as pa

    from triage.report.build import _first_of_each

    ids = pa.chunked_array([["a", "b"], ["a", "c", "b", None, None]])
    paths = pa.chunked_array([["evidence/z", "evidence/y"], ["evidence/x", "evidence/w", None, "p", "o"]])
    assert _first_of_each(ids).tolist() == [0, 1, 3, 5]  # no paths: the first row of each id
    # a: x before z; b: y before a missing path; the missing ids count as one value: o before p
    assert _first_of_each(ids, paths).tolist() == [1, 2, 3, 6]
    assert _first_of_each(ids, paths.cast(pa.dictionary(pa.int32(), pa.string()))).tolist() == [1, 2, 3, 6]
    # whichever result file came first: the same rows in another order keep the same paths
    flipped = _first_of_each(pa.array(["a", "a", "b"]), pa.array(["evidence/2", "evidence/1", "evidence/3"]))
    assert flipped.tolist() == [1, 2]
