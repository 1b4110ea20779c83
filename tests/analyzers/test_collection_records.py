"""``collection_records``: an artifact whose bytes differ from what KAPE's CopyLog or Velociraptor's uploads.json
says the tool copied is a finding; matching records give none."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from collectors.collect import collect_source
from collectors.sources import open_source_path
from triage.case import Case
from triage.runner import analyze_case
from triage.testing.volume import VolumeSpec, build_volume, to_kape, to_velociraptor

SOFTWARE = "Windows/System32/config/SOFTWARE"


def _kape_with_hashes(tmp_path: Path, *, wrong: str | None = None, wrong_size: str | None = None) -> Path:
    vol = build_volume(tmp_path / "vol", VolumeSpec())
    tdest = to_kape(vol, tmp_path / "kape")
    lines = ["CopiedTimestamp,SourceFile,DestinationFile,FileSize,SourceFileSha1,DeferredCopy"]
    for path in sorted((tdest / "C").rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(tdest / "C").as_posix()
        sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
        size = path.stat().st_size
        if rel == wrong:
            sha1 = "0" * 40
        if rel == wrong_size:
            size += 1
        lines.append(f"2021-03-04 10:00:00,C:\\{rel.replace('/', chr(92))},{path},{size},{sha1},False")
    for log in tdest.glob("*_CopyLog.csv"):
        log.write_text("\n".join(lines) + "\n")
    return tdest


def _findings(tmp_path: Path, source: Path) -> pd.DataFrame:
    case = Case.create_or_open(tmp_path / "case", examiner="pytest")
    src = open_source_path(str(source))
    try:
        collect_source(case, src, host=None)
    finally:
        src.close()
    summary = analyze_case(case, jobs=1, only=("collection_records",))
    assert summary.statuses, "the analyzer did not run"
    frames = [pd.read_parquet(p) for p in (case.path / "results" / "collection_records").glob("*.parquet")]
    return pd.concat(frames) if frames else pd.DataFrame()


def test_sha1_mismatch_with_the_copylog_is_a_finding(tmp_path):
    tdest = _kape_with_hashes(tmp_path, wrong=SOFTWARE)
    found = _findings(tmp_path, tdest)
    assert list(found["rule_id"]) == ["collection.copy_mismatch"]
    row = found.iloc[0]
    assert row["severity"] == "medium"
    assert row["evidence_path"].endswith("registry_hive/C/Windows/System32/config/SOFTWARE")
    attrs = json.loads(row["attributes"])
    assert attrs["mismatches"][0][:2] == ["sha1", "0" * 40]
    assert "the copy is not what kape copied" in row["title"]


def test_size_mismatch_is_a_finding_too(tmp_path):
    tdest = _kape_with_hashes(tmp_path, wrong_size="inetpub/wwwroot/iisstart.htm")
    found = _findings(tmp_path, tdest)
    assert len(found) == 1 and "size" in found.iloc[0]["title"]


def test_matching_records_give_no_finding(tmp_path):
    tdest = _kape_with_hashes(tmp_path)
    assert _findings(tmp_path, tdest).empty


def test_velociraptor_uploads_json_sha256_mismatch(tmp_path):
    vol = build_volume(tmp_path / "vol", VolumeSpec())
    out = to_velociraptor(vol, tmp_path / "vr")
    records = []
    for path in sorted(vol.rglob("*")):
        if path.is_file():
            rel = path.relative_to(vol).as_posix()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if rel == SOFTWARE:
                digest = "f" * 64
            comps = ["C:", *rel.split("/")]
            records.append({"Components": comps, "Size": path.stat().st_size, "sha256": digest})
    (out / "uploads.json").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    found = _findings(tmp_path, out)
    assert list(found["rule_id"]) == ["collection.copy_mismatch"]
    assert "velociraptor" in found.iloc[0]["title"]


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("C:\\Windows\\System32\\config\\SYSTEM", ("C", "windows/system32/config/system")),
        ("\\\\.\\C:\\inetpub\\x.log", ("C", "inetpub/x.log")),
        ("D:/Exchange/Logging/a.LOG", ("D", "exchange/logging/a.log")),
        ("relative\\path", None),
    ],
)
def test_windows_paths_to_keys(path, key):
    from collectors.toolrecords import split_windows_path

    assert split_windows_path(path) == key
