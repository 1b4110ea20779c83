from __future__ import annotations

import pandas as pd
import pytest

from triage.finding import FINDING_COLUMNS, SEVERITY_DTYPE, Finding, finding_id, findings_frame


def _f(**kw) -> Finding:
    base = dict(
        analyzer="a",
        analyzer_version="1",
        rule_id="R-1",
        rule_title="t",
        severity="high",
        title="t",
        message="m",
        evidence_id="A1",
        evidence_path="evidence/x",
        evidence_sha256="00" * 32,
        location="C:/x",
    )
    return Finding(**{**base, **kw})


def test_finding_id_is_stable_and_location_sensitive() -> None:
    a, b = _f(), _f(message="other words")
    assert a.finding_id == b.finding_id == finding_id("a", "R-1", "00" * 32, "C:/x")
    assert len(a.finding_id) == 32
    assert _f(location="C:/y").finding_id != a.finding_id


def test_values_are_normalised() -> None:
    f = _f(ts="2021-03-03T02:14:07Z", mitre=["T1505.003", "T1003.001"], attributes={"k": 1})
    assert f.ts is not None and f.ts.isoformat() == "2021-03-03T02:14:07+00:00"
    assert f.mitre == ("T1505.003", "T1003.001")  # a list in memory ...
    assert f.storable()["mitre"] == "T1505.003,T1003.001"  # ... the same comma-separated text in storage
    assert f.attributes == '{"k": 1}'
    with pytest.raises(ValueError, match="severity"):
        _f(severity="severe")


def test_empty_and_full_frames_share_dtypes() -> None:
    empty = findings_frame([])
    full = findings_frame([_f(ts="2021-01-01T00:00:00Z"), _f(location="C:/y", severity="low")])
    assert list(empty.columns) == list(full.columns) == FINDING_COLUMNS
    assert dict(empty.dtypes) == dict(full.dtypes)
    assert full["severity"].dtype == SEVERITY_DTYPE
    assert str(full["ts"].dtype) == "datetime64[us, UTC]"
    assert full["severity"].max() == "high"
    assert pd.isna(full.loc[1, "ts"])


def test_undecodable_text_is_stored_escaped_with_its_raw_bytes(tmp_path) -> None:
    import json
    import os

    from triage.finding import RunRecord, raw_bytes, storable

    name = os.fsdecode(b"C:/inetpub/shell\xff.aspx")
    assert storable(name) == "C:/inetpub/shell\\xff.aspx" and raw_bytes(name) == b"C:/inetpub/shell\xff.aspx"
    assert storable("a\ud800b") == "a\\ud800b" and raw_bytes("a\ud800b") == b"a\xed\xa0\x80b"
    assert storable("plain ü") == "plain ü"
    f = _f(location=name, message=f"web shell {name}", attributes={"path": name, "ok": [1, "x"]})
    assert f.location == "C:/inetpub/shell\\xff.aspx" and "\udcff" not in f.message
    attrs = json.loads(f.attributes)
    assert attrs["path"] == "C:/inetpub/shell\\xff.aspx" and attrs["ok"] == [1, "x"]
    assert bytes.fromhex(attrs["raw_hex"]["location"]) == b"C:/inetpub/shell\xff.aspx"
    assert set(attrs["raw_hex"]) == {"location", "message", "attributes.path"}
    # the id is that of the raw bytes, so it does not depend on how they are shown
    assert f.finding_id == finding_id("a", "R-1", "00" * 32, name) != finding_id("a", "R-1", "00" * 32, f.location)
    # JSON text attributes carrying escaped surrogates are made storable too
    g = _f(attributes=json.dumps({"p": name}))
    assert json.loads(g.attributes)["p"].endswith("\\xff.aspx")
    df = findings_frame([f, g, {"severity": "low", "message": name}])  # a dict row is made storable too
    df.to_parquet(tmp_path / "f.parquet")
    assert pd.read_parquet(tmp_path / "f.parquet")["location"].iloc[0] == "C:/inetpub/shell\\xff.aspx"
    rec = RunRecord("a", "1", "A1", "", "H", "error", "", "", 0.0, message=f"failed on {name}", warnings=[name])
    d = rec.to_dict()
    json.dumps(d, ensure_ascii=False).encode()
    assert d["warnings"] == ["C:/inetpub/shell\\xff.aspx"] and "warnings[0]" in d["raw_hex"]


def test_list_fields_are_tuples_in_memory_and_text_in_storage(tmp_path) -> None:
    import json
    import os

    shell = os.fsdecode(b"web\xff")
    f = _f(mitre=("T1505.003",), cve=["CVE-2021-26855", "CVE-2021-27065"], ed2102_steps=[8, 10], tags=["x", shell])
    assert (f.cve, f.ed2102_steps, f.references) == (("CVE-2021-26855", "CVE-2021-27065"), ("8", "10"), ())
    assert f.tags == ("x", "web\\xff") and json.loads(f.attributes)["raw_hex"] == {"tags": b"x,web\xff".hex()}
    # the stored (comma) form read back from an older case builds the same finding
    assert _f(mitre="T1505.003", cve="CVE-2021-26855,CVE-2021-27065", ed2102_steps="8,10", tags="") == _f(
        mitre=["T1505.003"], cve=("CVE-2021-26855", "CVE-2021-27065"), ed2102_steps=("8", "10")
    )
    df = findings_frame([f, {"severity": "low", "cve": ["CVE-2021-26857"]}])
    df.to_parquet(tmp_path / "f.parquet")
    back = pd.read_parquet(tmp_path / "f.parquet")
    assert list(back["cve"]) == ["CVE-2021-26855,CVE-2021-27065", "CVE-2021-26857"]
    assert back["ed2102_steps"].iloc[0] == "8,10" and back["references"].iloc[0] == ""
    assert str(back["mitre"].dtype) == "string"
