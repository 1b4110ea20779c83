"""Collecting a mounted Windows/Exchange volume: what is stored, with which hashes, under which host.

Every hash is computed here with hashlib from the builder's bytes, never read back from the code
under test; every expected path and kind is written out by hand in ``collectors_support``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from collectors_support import (
    DEFAULT_COUNTS,
    DEFAULT_KINDS,
    EX,
    case_files,
    collect,
    evidence_rel,
    md5,
    rows_by_outcome,
    sha256,
    stored_rows,
)

from triage.testing.volume import T0, VolumeSpec, build_volume, volume_files

EXCHANGE_FAMILIES = {"exchange_binary": 1, "exchange_logs": 3, "exchange_web": 2, "exchange_vdirs": 2}  # -> paths
SETUP_KEY = r"SOFTWARE\Microsoft\ExchangeServer\v15\Setup"


def test_every_file_is_stored_with_independent_hashes(volume, volume_content, new_case):
    case = new_case()
    src, stats = collect(case, volume)

    assert src.source_type == "volume"
    assert list(src.drives) == ["C"]
    assert stats.hosts == {"EXCH01"}
    assert dict(stats.kinds) == DEFAULT_COUNTS
    assert stats.files == 18 == len(volume_content)
    assert stats.outcomes["success"] == 17
    assert stats.outcomes["empty"] == 1  # SYSTEM.LOG1 is a 0-byte transaction log
    assert stats.outcomes["failure"] == 0
    assert stats.bytes == sum(len(b) for b in volume_content.values())
    assert stats.skipped_duplicates == 0

    # every file on the volume is an artifact of some family, filed under the expected kind
    assert set(DEFAULT_KINDS) == set(volume_content)
    rows = stored_rows(case)
    assert {r.relpath: r.kind for r in rows} == {
        evidence_rel("EXCH01", kind, rel): kind for rel, kind in DEFAULT_KINDS.items()
    }
    assert len(rows) == len({r.artifact_id for r in rows}) == 18

    by_rel = {r.relpath: r for r in rows}
    for rel, kind in DEFAULT_KINDS.items():
        data = volume_content[rel]
        row = by_rel[evidence_rel("EXCH01", kind, rel)]
        assert row.sha256 == sha256(data), rel
        assert row.md5 == md5(data), rel
        assert row.size == len(data), rel
        assert row.outcome == ("empty" if not data else "success"), rel
        assert row.source_host == "EXCH01"
        assert row.source_path == str(volume / rel)
        assert row.source_type == "volume"
        assert row.storage == "copy"
        assert row.collector == "triage.collectors.volume"
        assert row.source_mtime == "2021-03-03T02:14:07.000000Z"
        assert row.details == ""
        stored = case.path / row.relpath
        assert stored.read_bytes() == data, rel
        st = os.stat(stored)
        assert stat.S_IMODE(st.st_mode) == 0o444, rel
        assert st.st_mtime == T0.timestamp(), rel  # the copy keeps the source's modification time

    # nothing else was written into the evidence folder (no partial copies, no strays)
    assert [p.relative_to(case.path).as_posix() for p in case_files(case)] == sorted(by_rel)


def test_the_empty_transaction_log_is_an_empty_artifact(volume, new_case):
    case = new_case()
    collect(case, volume)
    (row,) = [r for r in stored_rows(case) if r.relpath.endswith("SYSTEM.LOG1")]
    assert row.outcome == "empty"
    assert row.size == 0
    assert row.sha256 == sha256(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert row.md5 == "d41d8cd98f00b204e9800998ecf8427e"
    assert (case.path / row.relpath).read_bytes() == b""


def test_custody_log_has_one_chained_event_per_manifest_row(volume, volume_content, new_case):
    case = new_case()
    collect(case, volume)
    rows = list(case.manifest())
    collect_events = [e for e in case.custody.events() if e["action"] == "collect"]
    assert len(collect_events) == len(rows)
    assert [e["details"]["artifact_id"] for e in collect_events] == [r.artifact_id for r in rows]
    for event, row in zip(collect_events, rows, strict=True):
        assert event["details"]["manifest_row_sha256"] == row.digest
        assert event["details"]["sha256"] == row.sha256
    count, problems = case.custody.verify()
    assert problems == []
    assert count == len(list(case.custody.events()))
    locate = [e for e in case.custody.events() if e["action"] == "locate"]
    assert [(e["details"]["how"], e["details"]["root"]) for e in locate] == [
        ("registry", r"Program Files\Microsoft\Exchange Server\V15")
    ]


def test_absent_artifacts_are_recorded_as_missing(volume, new_case):
    case = new_case()
    _, stats = collect(case, volume)
    missing = {r.source_path: r for r in rows_by_outcome(case, "missing")}
    assert stats.outcomes["missing"] == len(missing)
    evtx = missing["C:/Windows/System32/winevt/Logs/*.evtx"]
    assert (evtx.kind, evtx.family, evtx.details) == ("evtx", "event_logs", "no file matches this path")
    iis = missing["C:/Windows/System32/inetsrv/config/applicationHost.config"]
    assert (iis.kind, iis.family) == ("iis_config", "iis_config")
    # each literal alternative of a brace pattern is its own attempt: SAM and SECURITY are named
    assert "C:/Windows/System32/config/SAM" in missing
    assert "C:/Windows/System32/config/SECURITY" in missing
    assert all(r.relpath is None and r.sha256 is None for r in missing.values())


# -- host name -------------------------------------------------------------------------------------------
def test_host_name_is_read_from_the_system_hive(tmp_path, new_case):
    vol = build_volume(tmp_path / "vol", VolumeSpec(hostname="MAIL-SRV02"))
    case = new_case()
    _, stats = collect(case, vol)
    assert stats.hosts == {"MAIL-SRV02"}
    rows = stored_rows(case)
    assert {r.source_host for r in rows} == {"MAIL-SRV02"}
    assert all(r.relpath.startswith("evidence/MAIL-SRV02/") for r in rows)


def test_host_given_by_the_analyst_wins_over_the_hive(volume, new_case):
    case = new_case()
    _, stats = collect(case, volume, host="exch01.corp.example")
    assert stats.hosts == {"exch01.corp.example"}
    assert {r.source_host for r in case.manifest()} == {"exch01.corp.example"}


def test_host_name_is_made_safe_for_a_folder_name(volume, new_case):
    case = new_case()
    _, stats = collect(case, volume, host="../EXCH 01/..")
    (host,) = stats.hosts
    assert "/" not in host and host not in ("", ".", "..")
    assert host == "_EXCH_01_"
    assert all((case.path / "evidence" / host) in (case.path / r.relpath).parents for r in stored_rows(case))


def test_without_system_hive_or_host_the_host_is_unknown(tmp_path, new_case, caplog):
    vol = build_volume(tmp_path / "vol", VolumeSpec(write_system_hive=False))
    case = new_case()
    with caplog.at_level(logging.WARNING, logger="collectors.collect"):
        _, stats = collect(case, vol)
    assert stats.hosts == {"unknown-host"}
    assert "no host name given" in caplog.text
    assert stats.kinds["registry_hive"] == 2  # SOFTWARE and SYSTEM.LOG1 only


# -- Exchange install root -----------------------------------------------------------------------------
def test_non_default_install_path_is_found_through_msiinstallpath(tmp_path, new_case):
    spec = VolumeSpec(install_path=r"C:\Apps\Exchange\V15")
    content = volume_files(spec)
    vol = build_volume(tmp_path / "vol", spec)
    case = new_case()
    _, stats = collect(case, vol)

    assert stats.exchange == {
        "how": "registry",
        "root": "Apps/Exchange/V15",
        "detail": r"MsiInstallPath from SOFTWARE\Microsoft\ExchangeServer\v15\Setup",
    }
    assert dict(stats.kinds) == DEFAULT_COUNTS
    by_rel = {r.relpath: r for r in stored_rows(case)}
    for rel in (
        "Apps/Exchange/V15/Bin/ExSetup.exe",
        "Apps/Exchange/V15/Logging/HttpProxy/Ecp/HttpProxy_2021030302-1.LOG",
        "Apps/Exchange/V15/Logging/ECP/Server/ECPServer20210303-1.LOG",
        "Apps/Exchange/V15/FrontEnd/HttpProxy/owa/auth/logon.aspx",
    ):
        kind = {"Bin": "exchange_binary", "Logging": "exchange_log", "FrontEnd": "web_file"}[rel.split("/")[3]]
        row = by_rel[evidence_rel("EXCH01", kind, rel)]
        assert row.sha256 == sha256(content[rel])
    assert not any("Program Files" in r for r in by_rel)


def test_install_root_is_found_by_search_without_software_hive(tmp_path, new_case):
    vol = build_volume(tmp_path / "vol", VolumeSpec(write_software_hive=False))
    case = new_case()
    _, stats = collect(case, vol)
    assert stats.exchange["how"] == "search"
    assert stats.exchange["root"] == EX
    assert "no SOFTWARE hive in the source" in stats.exchange["detail"]
    assert "found by search for Program Files/Microsoft/Exchange Server/V1[45]" in stats.exchange["detail"]
    assert stats.kinds["exchange_log"] == 4
    assert stats.kinds["exchange_binary"] == 1
    assert stats.kinds["registry_hive"] == 2


def test_search_prefers_v15_when_v14_is_also_present(tmp_path, new_case):
    v14 = "Program Files/Microsoft/Exchange Server/V14/Bin/ExSetup.exe"
    spec = VolumeSpec(write_software_hive=False, extra_files={v14: b"MZ-old"})
    vol = build_volume(tmp_path / "vol", spec)
    case = new_case()
    _, stats = collect(case, vol)
    assert stats.exchange["root"] == EX
    (binary,) = [r for r in stored_rows(case) if r.kind == "exchange_binary"]
    assert binary.relpath == evidence_rel("EXCH01", "exchange_binary", f"{EX}/Bin/ExSetup.exe")


def _exchange_missing_rows(case):
    return [r for r in rows_by_outcome(case, "missing") if r.family in EXCHANGE_FAMILIES]


@pytest.mark.parametrize("software_hive", [True, False], ids=["with-software-hive", "without-software-hive"])
def test_no_exchange_on_the_volume_gives_missing_rows_with_a_clear_reason(tmp_path, new_case, software_hive):
    vol = build_volume(tmp_path / "vol", VolumeSpec(write_software_hive=software_hive))
    shutil.rmtree(vol / "Program Files")
    case = new_case()
    _, stats = collect(case, vol)

    assert stats.exchange["how"] == "none"
    assert stats.exchange["root"] == ""
    rows = _exchange_missing_rows(case)
    assert Counter(r.family for r in rows) == Counter(EXCHANGE_FAMILIES)
    assert Counter(r.kind for r in rows) == Counter({"exchange_log": 3, "web_file": 4, "exchange_binary": 1})
    assert {r.source_path for r in rows} == {
        f"{vol}::%ExchangeInstallPath%/{p}"
        for p in (
            "Bin/ExSetup.exe",
            "Logging/HttpProxy/**",
            "Logging/ECP/Server/**",
            "Logging/OABGeneratorLog/**",
            "FrontEnd/HttpProxy/owa/auth/**",
            "FrontEnd/HttpProxy/ecp/auth/**",
            "FrontEnd/HttpProxy/**/*.{aspx,ashx,asmx,asax,ascx,asp,cshtml,svc,soap,cer,config,js}",
            "ClientAccess/**/*.{aspx,ashx,asmx,asax,ascx,asp,cshtml,svc,soap,cer,config,js}",
        )
    }
    for row in rows:
        assert row.details.startswith("Exchange install root not found: "), row.details
        assert row.details.endswith("no Exchange Server folder found by search")
        if software_hive:
            value = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\"
            assert f"MsiInstallPath '{value}' ({SETUP_KEY}) is not present on this volume" in row.details
        else:
            assert "no SOFTWARE hive in the source" in row.details
    assert {"exchange_log", "exchange_binary"}.isdisjoint(stats.kinds)
    assert stats.kinds["web_file"] == 3  # iisstart.htm, WebUIValidation.js, the OAB web shell
    assert stats.outcomes["failure"] == 0


def test_non_default_install_path_without_software_hive_is_reported_not_guessed(tmp_path, new_case):
    vol = build_volume(tmp_path / "vol", VolumeSpec(install_path=r"D:\Apps\Exchange\V15", write_software_hive=False))
    case = new_case()
    _, stats = collect(case, vol)
    assert stats.exchange["how"] == "none"
    assert len(_exchange_missing_rows(case)) == sum(EXCHANGE_FAMILIES.values())
    assert "exchange_log" not in stats.kinds


# -- NTFS is case-insensitive -------------------------------------------------------------------------
ODD_CASE = [  # (builder path or folder prefix, the same path as found on an oddly-cased volume)
    ("Windows/System32/config/SYSTEM.LOG1", "WINDOWS/system32/CONFIG/System.Log1"),
    ("Windows/System32/config/SYSTEM", "WINDOWS/system32/CONFIG/system"),
    ("Windows/System32/config/SOFTWARE", "WINDOWS/system32/CONFIG/software"),
    ("Windows/Temp/", "WINDOWS/TEMP/"),
    ("inetpub/wwwroot/", "InetPub/WWWRoot/"),
    ("inetpub/logs/LogFiles/", "InetPub/LOGS/logfiles/"),
    (f"{EX}/Logging/HttpProxy/", "PROGRAM FILES/microsoft/EXCHANGE SERVER/v15/LOGGING/httpproxy/"),
    (f"{EX}/", "PROGRAM FILES/microsoft/EXCHANGE SERVER/v15/"),
    ("ProgramData/", "programdata/"),
]


def _odd_case(rel: str) -> str:
    for old, new in ODD_CASE:
        if rel == old or (old.endswith("/") and rel.startswith(old)):
            return new + rel[len(old) :] if old.endswith("/") else new
    raise AssertionError(f"no odd-case mapping for {rel}")


def test_paths_are_matched_case_insensitively(tmp_path, volume_content, new_case):
    vol = tmp_path / "odd"
    for rel, data in volume_content.items():
        path = vol / _odd_case(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert (vol / "WINDOWS/system32/CONFIG/software").is_file()
    assert not (vol / "Windows").exists()

    case = new_case()
    _, stats = collect(case, vol)
    assert stats.hosts == {"EXCH01"}  # SYSTEM found as WINDOWS/system32/CONFIG/system
    assert stats.exchange["how"] == "registry"  # SOFTWARE found as .../software, then the V15 folder as v15
    assert dict(stats.kinds) == DEFAULT_COUNTS
    by_rel = {r.relpath: r for r in stored_rows(case)}
    expected = {evidence_rel("EXCH01", kind, _odd_case(rel)): rel for rel, kind in DEFAULT_KINDS.items()}
    assert set(by_rel) == set(expected)  # stored under the names as found on the volume
    for relpath, rel in expected.items():
        assert by_rel[relpath].sha256 == sha256(volume_content[rel])
    assert evidence_rel("EXCH01", "web_file", "InetPub/WWWRoot/aspnet_client/system_web/Dk2jQ8ab.aspx") in by_rel


# -- reruns ------------------------------------------------------------------------------------------------
def test_rerun_stores_nothing_twice(volume, new_case):
    case = new_case()
    _, first = collect(case, volume)
    before_rows = [r.to_json() for r in stored_rows(case)]
    before_files = case_files(case)

    _, second = collect(case, volume)
    assert second.skipped_duplicates == first.files == 18
    assert second.files == 0
    assert second.outcomes["success"] == second.outcomes["empty"] == 0
    assert [r.to_json() for r in stored_rows(case)] == before_rows
    assert case_files(case) == before_files

    # a fresh process opening the case finds the same rows (the index comes from manifest.jsonl)
    from triage.case import Case

    _, third = collect(Case.open(case.path), volume)
    assert third.skipped_duplicates == 18
    assert [r.to_json() for r in stored_rows(case)] == before_rows


def test_a_changed_source_file_is_collected_again_beside_the_first_copy(volume, volume_content, new_case):
    case = new_case()
    collect(case, volume)
    shell = volume / "inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx"
    new_bytes = shell.read_bytes() + b"<!-- edited -->"
    shell.write_bytes(new_bytes)
    later = datetime(2021, 3, 6, tzinfo=UTC).timestamp()
    os.utime(shell, (later, later))

    _, stats = collect(case, volume)
    assert stats.skipped_duplicates == 17
    assert stats.files == 1
    rows = [r for r in stored_rows(case) if r.source_path == str(shell)]
    assert [r.sha256 for r in rows] == [sha256(volume_content[str(shell.relative_to(volume))]), sha256(new_bytes)]
    first, second = (Path(r.relpath) for r in rows)
    assert first.name == "Dk2jQ8ab.aspx"
    assert second.name == "Dk2jQ8ab~2.aspx"  # the first copy is never overwritten
    assert (case.path / first).read_bytes() == volume_content[str(shell.relative_to(volume))]
    assert (case.path / second).read_bytes() == new_bytes


def test_manifest_rows_are_valid_json_lines(volume, new_case):
    case = new_case()
    collect(case, volume)
    lines = case.manifest_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(list(case.manifest()))
    for line in lines:
        doc = json.loads(line)
        assert doc["outcome"] in ("success", "missing", "empty", "failure")


def _dirty_system(old_name: str, new_name: str) -> tuple[bytes, bytes]:
    """A dirty SYSTEM hive that names ``old_name`` and a .LOG1 whose replay renames the host ``new_name``."""
    from triage.testing.hives import dirty_pair, system_hive

    return dirty_pair(system_hive(hostname=old_name), system_hive(hostname=new_name))


def test_host_name_is_read_after_replaying_the_transaction_log(tmp_path, new_case):
    vol = build_volume(tmp_path / "vol", VolumeSpec(hostname="UNUSED"))
    config = vol / "Windows/System32/config"
    hive_bytes, log1 = _dirty_system("OLD-NAME01", "MAIL-SRV09")
    (config / "SYSTEM").write_bytes(hive_bytes)
    (config / "SYSTEM.LOG1").write_bytes(log1)
    case = new_case()
    _, stats = collect(case, vol)
    assert stats.hosts == {"MAIL-SRV09"}
    rows = stored_rows(case)
    assert all(r.relpath.startswith("evidence/MAIL-SRV09/") for r in rows)
    # the dirty hive and its log are evidence: stored exactly as found, the replay happened on a copy
    by_path = {r.source_path.replace("\\", "/").rsplit("config/", 1)[-1]: r for r in rows if "config/" in r.source_path}
    assert by_path["SYSTEM"].sha256 == sha256(hive_bytes)
    assert by_path["SYSTEM.LOG1"].sha256 == sha256(log1)
    assert (config / "SYSTEM").read_bytes() == hive_bytes


def test_without_its_transaction_log_the_dirty_hive_gives_the_old_name(tmp_path, new_case):
    vol = build_volume(tmp_path / "vol", VolumeSpec(hostname="UNUSED"))
    config = vol / "Windows/System32/config"
    hive_bytes, _log1 = _dirty_system("OLD-NAME01", "MAIL-SRV09")
    (config / "SYSTEM").write_bytes(hive_bytes)  # SYSTEM.LOG1 stays the volume's empty log
    case = new_case()
    _, stats = collect(case, vol)
    assert stats.hosts == {"OLD-NAME01"}


def test_a_damaged_transaction_log_costs_only_itself(tmp_path, new_case, monkeypatch):
    import tempfile

    vol = build_volume(tmp_path / "vol", VolumeSpec(hostname="UNUSED"))
    config = vol / "Windows/System32/config"
    hive_bytes, log1 = _dirty_system("OLD-NAME01", "MAIL-SRV09")
    broken = log1[:600] + b"\xff" * 64  # the entry claims pages the log no longer holds
    (config / "SYSTEM").write_bytes(hive_bytes)
    (config / "SYSTEM.LOG1").write_bytes(broken)
    scratch = tmp_path / "tmpdir"  # where the private hive and log copies go
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    case = new_case()
    _, stats = collect(case, vol)
    assert stats.hosts == {"OLD-NAME01"}  # the primary file as it is
    assert list(scratch.iterdir()) == []  # no private copy left behind
    (log_row,) = [r for r in stored_rows(case) if r.source_path.endswith("SYSTEM.LOG1")]
    assert log_row.sha256 == sha256(broken)
