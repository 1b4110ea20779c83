from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ZIPS = ("exchange-compromised/EXCH01-volume.zip", "exchange-clean/EXCH02-volume.zip")


def _members(path: Path) -> dict[str, tuple[tuple[int, ...], bytes]]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: (i.date_time, zf.read(i)) for i in zf.infolist()}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _builder():
    spec = importlib.util.spec_from_file_location("build_samples", REPO / "samples" / "build_samples.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bundled_samples_match_their_builder(tmp_path: Path) -> None:
    """The committed demo evidence is exactly what samples/build_samples.py makes (rebuild it if not): the same
    members with the same bytes and recorded times (compared member by member: deflate output may differ between
    zlib builds)."""
    _builder().build(tmp_path)
    for name in ZIPS:
        assert _members(REPO / "samples" / name) == _members(tmp_path / name), name
    image = "exchange-compromised/memory/EXCH01-memory.raw"
    assert (REPO / "samples" / image).read_bytes() == (tmp_path / image).read_bytes()
    symbols = "exchange-compromised/memory/symbols"  # the synthetic kernel's ISF, passed by make demo
    assert _files(REPO / "samples" / symbols) == _files(tmp_path / symbols) != {}


def test_sample_evidence_records_2021_file_times() -> None:
    """The demo's file times live in the evidence (zip members), not in the checkout: the intrusion's files carry
    their March 2021 times and nothing is dated after the acquisition."""
    members = _members(REPO / "samples" / ZIPS[0])
    times = {name: dt for name, (dt, _) in members.items()}
    assert times["inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx"] == (2021, 3, 3, 2, 14, 42)
    assert times["Windows/Temp/lsass.dmp"] == (2021, 3, 3, 2, 33, 44)
    assert times["Apps/Exchange/V15/Bin/ExSetup.exe"] == (2020, 12, 16, 9, 12, 0)
    assert max(times.values()) <= (2021, 3, 4, 9, 56, 0)
    assert not (REPO / "samples" / "exchange-compromised" / "volume").exists()


def test_demo_zip_is_collected_with_its_recorded_times(tmp_path: Path) -> None:
    """Collecting the demo zip stores each file's recorded 2021 time as its source time (what the report draws)."""
    from collectors.collect import collect_volume
    from collectors.sources import open_source_path
    from triage.case import Case

    case = Case.create_or_open(tmp_path / "case", examiner="t", case_id="CASE-SAMPLE")
    collect_volume(case, open_source_path(str(REPO / "samples" / ZIPS[0])), host=None)
    rows = {r.source_path.rsplit("/", 1)[-1]: r for r in case.manifest() if r.outcome == "success"}
    case.close()
    assert rows["Dk2jQ8ab.aspx"].source_mtime == "2021-03-03T02:14:42.000000Z"
    assert rows["lsass.dmp"].source_mtime == "2021-03-03T02:33:44.000000Z"
    assert all(r.source_mtime and r.source_mtime < "2021-03-05" for r in rows.values())
