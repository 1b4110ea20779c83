"""The ``ntfs_timestomp`` analyzer on manifest rows with NTFS facts (as an image collection writes them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzers.ntfs_times import NtfsTimestomp, is_web_page, signals, ticks
from triage.case import ManifestRow
from triage.errors import Skip
from triage.registry import Unit

SHELL = "C/inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx"


def facts(si_created: str, si_modified: str, fn_created: str) -> dict:
    return {
        "mft_entry": 114,
        "si": {"created": si_created, "modified": si_modified, "mft_modified": si_modified, "accessed": si_modified},
        "fn": {"created": fn_created, "modified": fn_created, "mft_modified": fn_created, "accessed": fn_created},
    }


def unit(rel: str, ntfs: dict | None, tmp_path: Path) -> Unit:
    row = ManifestRow(
        artifact_id="A1",
        kind="web_file",
        outcome="success",
        source_host="EXCH01",
        source_path=f"/img/exch01.E01#p1:/{rel.split('/', 1)[1]}",
        collector="triage.collectors.volume",
        collector_version="1.0",
        collected_at="2026-01-01T00:00:00Z",
        relpath=f"evidence/EXCH01/web_file/{rel}",
        sha256="ab" * 32,
        extra={"ntfs": ntfs} if ntfs is not None else {},
    )
    return Unit("CASE-1", tmp_path, "EXCH01", row, tmp_path / "x", NtfsTimestomp())


def test_ticks_keeps_100ns() -> None:
    assert ticks("1970-01-01T00:00:01.0000001Z") == 10**7 + 1
    assert ticks("1970-01-01T00:00:01Z") == 10**7
    assert ticks("1970-01-01T00:00:01.5Z") == 15 * 10**6
    assert ticks("FILETIME:12") is None and ticks(None) is None


@pytest.mark.parametrize(
    ("si_c", "si_m", "fn_c", "expected"),
    [
        # back-dated to the install date with a tool: SI before FN, and whole seconds against FN's fraction
        (
            "2016-09-15T10:00:00.0000000Z",
            "2016-09-15T10:00:00.0000000Z",
            "2021-03-03T02:41:05.8417263Z",
            ["ntfs.timestomp.si_before_fn", "ntfs.timestomp.si_zero_fraction"],
        ),
        # SI 100 ns before FN still counts
        (
            "2021-03-03T02:41:05.8417262Z",
            "2021-03-03T02:41:05.8417262Z",
            "2021-03-03T02:41:05.8417263Z",
            ["ntfs.timestomp.si_before_fn"],
        ),
        # a page written normally: SI == FN
        ("2021-03-03T02:41:05.8417263Z", "2021-03-03T02:41:05.8417263Z", "2021-03-03T02:41:05.8417263Z", []),
        # modified later than created, whole-second modification only (e.g. from an archive): not enough
        ("2021-03-03T02:41:05.8417263Z", "2021-01-01T00:00:00.0000000Z", "2021-03-03T02:41:05.8417263Z", []),
        # whole seconds everywhere (a tool-built volume): no contrast with FN
        ("2021-03-03T02:14:07.0000000Z", "2021-03-03T02:14:07.0000000Z", "2021-03-03T02:14:07.0000000Z", []),
        # SI later than FN (a file moved in, or touched): not a timestomp signal
        ("2021-03-04T00:00:00.1234567Z", "2021-03-04T00:00:00.1234567Z", "2021-03-03T02:41:05.8417263Z", []),
    ],
)
def test_signals(si_c: str, si_m: str, fn_c: str, expected: list[str]) -> None:
    assert signals(facts(si_c, si_m, fn_c)) == expected


def test_only_pages_in_web_folders() -> None:
    assert is_web_page("C:/inetpub/wwwroot/aspnet_client/x.aspx")
    assert is_web_page("D:/Program Files/Microsoft/Exchange Server/V15/FrontEnd/HttpProxy/owa/auth/y.js")
    assert is_web_page("C:/Program Files/Microsoft/Exchange Server/V15/ClientAccess/ecp/z.ASHX")
    assert not is_web_page("C:/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log")
    assert not is_web_page("C:/Users/Administrator/Desktop/x.aspx")


def test_findings_from_a_stomped_row(tmp_path: Path) -> None:
    ntfs = facts("2016-09-15T10:00:00.0000000Z", "2016-09-15T10:00:00.0000000Z", "2021-03-03T02:41:05.8417263Z")
    found = list(NtfsTimestomp().analyze(unit(SHELL, ntfs, tmp_path)))
    assert [f.rule_id for f in found] == ["ntfs.timestomp.si_before_fn", "ntfs.timestomp.si_zero_fraction"]
    first = found[0]
    assert first.severity == "high" and first.location == "C:/inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx"
    assert first.ts.isoformat() == "2021-03-03T02:41:05.841726+00:00"
    assert "T1070.006" in first.mitre
    attrs = json.loads(first.attributes)
    assert attrs["mft_entry"] == 114 and attrs["si"]["created"] == "2016-09-15T10:00:00.0000000Z"


def test_rows_without_ntfs_facts_or_outside_web_folders_give_nothing(tmp_path: Path) -> None:
    ntfs = facts("2016-09-15T10:00:00.0000000Z", "2016-09-15T10:00:00.0000000Z", "2021-03-03T02:41:05.8417263Z")
    with pytest.raises(Skip, match="only files collected from a disk image carry them"):  # a folder source
        list(NtfsTimestomp().analyze(unit(SHELL, None, tmp_path)))
    assert list(NtfsTimestomp().analyze(unit("C/Users/Public/x.aspx", ntfs, tmp_path))) == []
