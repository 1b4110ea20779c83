"""Containers opened in place: KAPE --zip/--vhdx, zips of volumes, nested containers, encrypted Velociraptor
collections, renamed loose artifacts, bounds against bombs, damaged members and junk. Each collects the same
artifacts (relpaths and sha256) as the folder it was made from, or ends with a clear error and exit code."""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from pathlib import Path

import pytest
from collectors_support import age_tree, rows_by_outcome, snapshot, stored_rows

from collectors.collect import collect_source
from collectors.sources import open_source_path
from triage.case import Case
from triage.cli import main
from triage.errors import ExitCode, UsageError
from triage.testing import collections as tc
from triage.testing.diskimage import tools_missing
from triage.testing.evtx import Event, evtx_bytes
from triage.testing.volume import T0, VolumeSpec, build_volume, to_kape, to_velociraptor, volume_files, zip_bytes


def _collect(case: Case, location: Path | str, *, host: str | None = None, as_type: str = "auto"):
    src = open_source_path(str(location), as_type)
    try:
        return src, collect_source(case, src, host=host)
    finally:
        src.close()


def _artifacts(case: Case) -> dict[str, str]:
    return {r.relpath: r.sha256 for r in stored_rows(case)}


@pytest.fixture
def reference(volume, new_case) -> dict[str, str]:
    """What the folder collection of the default volume stores: relpath -> sha256."""
    case = new_case("reference")
    _collect(case, volume)
    got = _artifacts(case)
    assert len(got) == 18
    return got


# -- KAPE and volume zips ----------------------------------------------------------------------------------------
def test_kape_zip_collects_what_the_folder_does(volume, tmp_path, new_case, reference):
    container = tc.kape_zip(volume, tmp_path / "EXCH01_kape.zip")
    case = new_case()
    src, stats = _collect(case, container)
    assert src.source_type == "kape-zip"
    assert _artifacts(case) == reference
    assert stats.hosts == {"EXCH01"}
    rows = stored_rows(case)
    assert all(r.source_path.startswith(f"{container}!C/") for r in rows)
    # KAPE's copy log is attached to each artifact it lists
    system = next(r for r in rows if r.relpath.endswith("config/SYSTEM"))
    assert system.extra["tool_record"]["source_file"] == "C:\\Windows\\System32\\config\\SYSTEM"
    assert system.extra["tool_record"]["size"] == system.size


@pytest.mark.parametrize("prefix", ["", "exch01-c/"])
def test_zip_of_a_volume_with_or_without_a_wrapping_folder(volume, tmp_path, new_case, reference, prefix):
    container = tc.zip_tree(volume, tmp_path / "vol.zip", prefix=prefix)
    case = new_case()
    src, _ = _collect(case, container)
    assert src.source_type == "volume-zip"
    assert _artifacts(case) == reference


def test_velociraptor_zip_is_unchanged_by_the_container_layer(volume, tmp_path, new_case, reference):
    container = to_velociraptor(volume, tmp_path / "vr.zip", as_zip=True)
    case = new_case()
    src, _ = _collect(case, container)
    assert src.source_type == "velociraptor-zip"
    assert _artifacts(case) == reference


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["vhdx", "vhd"])
def test_kape_vhdx_and_vhd_collect_what_the_folder_does(volume, tmp_path, new_case, reference, fmt):
    reason = tools_missing()
    if reason:
        pytest.skip(f"disk image tools unavailable: {reason}")
    container = tc.kape_image(volume, tmp_path / f"EXCH01.{fmt}", fmt=fmt)
    case = new_case()
    src, stats = _collect(case, container)
    assert src.source_type == "kape-image"
    assert _artifacts(case) == reference
    assert stats.hosts == {"EXCH01"}


# -- containers inside folders and containers ---------------------------------------------------------------------
def test_kape_zip_inside_a_zip_inside_a_folder(volume, tmp_path, new_case, reference):
    kape = tc.kape_zip(volume, tmp_path / "work" / "kape.zip")
    handed = tmp_path / "handed-over"
    handed.mkdir()
    tc.nested_zip(kape, handed / "transfer.zip", depth=1)
    (handed / "readme.txt").write_text("collected by the site admin")
    case = new_case()
    src, stats = _collect(case, handed)
    assert src.source_type == "files"
    got = _artifacts(case)
    assert {k: v for k, v in got.items() if "/loose/" not in k} == reference
    assert set(got) - set(reference) == {"evidence/EXCH01/file/loose/readme.txt"}
    assert [c["type"] for c in stats.containers] == ["zip", "kape-zip"]
    events = [json.loads(line) for line in (case.path / "custody.jsonl").read_text().splitlines()]
    opened = [e["details"]["source_type"] for e in events if e["action"] == "container_open"]
    assert opened == ["zip", "kape-zip"]


def test_nesting_deeper_than_the_limit_is_a_failure_row(volume, tmp_path, new_case, monkeypatch):
    monkeypatch.setenv("TRIAGE_MAX_DEPTH", "2")
    kape = tc.kape_zip(volume, tmp_path / "kape.zip")
    outer = tc.nested_zip(kape, tmp_path / "outer.zip", depth=3)
    case = new_case()
    _src, stats = _collect(case, outer, host="EXCH01")
    fails = rows_by_outcome(case, "failure")
    assert len(fails) == 1 and "nested deeper than 2 levels" in fails[0].details
    assert stats.examinable > 0  # the innermost zip it could not open is kept as itself


# -- encrypted Velociraptor collections ---------------------------------------------------------------------------
def test_encrypted_velociraptor_with_password(volume, tmp_path, new_case, reference, monkeypatch):
    container = tc.encrypted_velociraptor(volume, tmp_path / "Collection-EXCH01.zip", password="s3cret-Pa55")
    with pytest.raises(UsageError, match=r"encrypted Velociraptor offline collection.*password scheme.*--password"):
        open_source_path(str(container))
    monkeypatch.setenv("TRIAGE_COLLECTION_PASSWORD", "wrong")
    with pytest.raises(UsageError, match=r"the password does not open data\.zip"):
        open_source_path(str(container))
    monkeypatch.setenv("TRIAGE_COLLECTION_PASSWORD", "s3cret-Pa55")
    case = new_case()
    src, stats = _collect(case, container)
    assert src.source_type == "velociraptor-zip"
    assert _artifacts(case) == reference
    assert stats.hosts == {"EXCH01"}
    assert b"s3cret-Pa55" not in b"".join(p.read_bytes() for p in case.path.rglob("*") if p.is_file())


def test_encrypted_velociraptor_x509_with_the_key(volume, tmp_path, reference, capsys):
    key, public = tc.rsa_key_pair(tmp_path / "collector.key.pem")
    container = tc.encrypted_velociraptor(volume, tmp_path / "Collection-EXCH01.zip", public_key=public)
    case_dir = tmp_path / "case"
    assert main(["collect", str(container), "--case", str(case_dir), "-q"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "X.509 scheme" in err and "--key KEY.pem" in err
    assert main(["collect", str(container), "--case", str(case_dir), "-q", "--key", str(key)]) == 0
    case = Case.open(case_dir)
    assert _artifacts(case) == reference
    other, _ = tc.rsa_key_pair(tmp_path / "other.key.pem")
    code = main(["collect", str(container), "--case", str(tmp_path / "c2"), "-q", "--key", str(other)])
    assert code == ExitCode.USAGE
    assert "does not decrypt this collection's password" in capsys.readouterr().err


# -- bounds -------------------------------------------------------------------------------------------------------
def test_zip_bomb_member_is_refused_by_ratio(tmp_path, new_case, monkeypatch):
    monkeypatch.setenv("TRIAGE_ZIP_MAX_RATIO", "50")
    bomb = tc.zip_bomb(tmp_path / "bomb.zip", member_bytes=24 << 20)
    evtx = evtx_bytes([Event(4624, "Microsoft-Windows-Security-Auditing", "Security", time_created=T0)])
    with zipfile.ZipFile(bomb, "a") as zf:
        zf.writestr("Security.evtx", evtx)
    case = new_case()
    started = time.monotonic()
    _, _stats = _collect(case, bomb, host="EXCH01")
    assert time.monotonic() - started < 5
    (fail,) = rows_by_outcome(case, "failure")
    assert "over the ratio limit of 50:1" in fail.details and "zip bomb" in fail.details
    assert [r.kind for r in stored_rows(case)] == ["evtx"]


def test_declared_total_over_the_limit_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_ZIP_MAX_BYTES", str(1 << 20))
    bomb = tc.zip_bomb(tmp_path / "bomb.zip", member_bytes=2 << 20)
    with pytest.raises(UsageError, match=r"over the limit of 1,048,576 \(a zip bomb\?; TRIAGE_ZIP_MAX_BYTES"):
        open_source_path(str(bomb))


def test_member_count_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_ZIP_MAX_MEMBERS", "100")
    many = tc.many_member_zip(tmp_path / "many.zip", 101)
    with pytest.raises(UsageError, match=r"101 members, over the limit of 100"):
        open_source_path(str(many))


@pytest.mark.slow
def test_200k_member_kape_zip_is_indexed_and_collected_quickly(volume, tmp_path, new_case, reference):
    tdest = to_kape(volume, tmp_path / "tdest")
    big = tc.zip_tree(tdest, tmp_path / "big.zip")
    with zipfile.ZipFile(big, "a", zipfile.ZIP_STORED) as zf:
        for i in range(200_000):
            zf.writestr(zipfile.ZipInfo(f"C/Users/Public/cache/f{i:07d}.tmp", date_time=tc.ZIP_TIME), b"x")
    case = new_case()
    started = time.monotonic()
    _collect(case, big)
    elapsed = time.monotonic() - started
    assert _artifacts(case) == reference
    assert elapsed < 60, f"200k-member KAPE zip took {elapsed:.1f}s"


# -- damaged members ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["bad_crc", "bad_magic", "truncated_header", "name_mismatch"])
def test_one_damaged_member_costs_only_itself(volume, tmp_path, new_case, reference, how, capsys):
    container = tc.kape_zip(volume, tmp_path / "kape.zip")
    tc.damage_member(container, "C/Windows/System32/config/SOFTWARE", how)
    case_dir = tmp_path / "case"
    assert main(["collect", str(container), "--case", str(case_dir), "-q"]) == ExitCode.COLLECTION_FAILED
    err = capsys.readouterr().err
    assert "1 artifact(s) failed" in err
    # no raw header bytes printed (the custody-head line is left out: a hash may end in "b" before its quote)
    said = "\n".join(line for line in err.splitlines() if "custody head" not in line)
    assert "\\x" not in said and "b'" not in said
    case = Case.open(case_dir)
    (fail,) = rows_by_outcome(case, "failure")
    assert fail.source_path.endswith("!C/Windows/System32/config/SOFTWARE")
    assert fail.details.startswith("OSError: damaged zip member: ") and len(fail.details) < 300
    soft = "evidence/EXCH01/registry_hive/C/Windows/System32/config/SOFTWARE"
    assert _artifacts(case) == {k: v for k, v in reference.items() if k != soft}
    assert not [p for p in case_dir.rglob("*") if ".part" in p.name]
    # a rerun goes through the same member again without crashing, and stores nothing twice
    assert main(["collect", str(container), "--case", str(case_dir), "-q"]) == ExitCode.COLLECTION_FAILED
    assert _artifacts(Case.open(case_dir)) == _artifacts(case)
    assert main(["verify", str(case_dir), "-q"]) == 0


def test_duplicate_member_names_are_both_collected(tmp_path, new_case):
    ev1 = evtx_bytes([Event(4624, "Microsoft-Windows-Security-Auditing", "Security", time_created=T0)])
    ev2 = evtx_bytes([Event(4625, "Microsoft-Windows-Security-Auditing", "Security", time_created=T0)])
    container = tc.zip_with_duplicates(tmp_path / "logs.zip", "Security.evtx", [ev1, ev2])
    case = new_case()
    _collect(case, container, host="EXCH01")
    rows = stored_rows(case)
    assert sorted(r.source_path for r in rows) == [
        f"{container}!Security.evtx",
        f"{container}!Security.evtx (duplicate #2)",
    ]
    assert {r.kind for r in rows} == {"evtx"}
    assert len({r.sha256 for r in rows}) == 2


# -- loose artifacts with any names -------------------------------------------------------------------------------
def test_folder_of_renamed_artifacts_is_recognised_without_as(tmp_path, new_case):
    files = volume_files(VolumeSpec())
    evtx = evtx_bytes([Event(4688, "Microsoft-Windows-Security-Auditing", "Security", time_created=T0)])
    folder = tmp_path / "from-the-admin"
    loose = {
        "SYSTEM_exch01": files["Windows/System32/config/SYSTEM"],
        "sam.hiv": files["Windows/System32/config/SOFTWARE"],
        "export1.dat": files["Windows/System32/config/SOFTWARE"],
        "foo.bin": evtx,
        "events.json": b'{"winlog": {"event_id": 4688, "channel": "Security"}}\n',
        "web/page.txt": b'<%@ Page Language="C#" %><% Response.Write("x"); %>',
        "iis/weblog.txt": files["inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"],
        "notes.txt": b"plain words",
    }
    for rel, data in loose.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    case = new_case()
    src, stats = _collect(case, folder, host="EXCH01")
    assert src.source_type == "files"
    kinds = {r.relpath.split("/loose/")[1]: (r.kind, r.extra["format"]) for r in stored_rows(case)}
    assert kinds == {
        "SYSTEM_exch01": ("registry_hive", "regf_hive"),
        "sam.hiv": ("registry_hive", "regf_hive"),
        "export1.dat": ("registry_hive", "regf_hive"),
        "foo.bin": ("evtx", "evtx"),
        "events.json": ("event_json", "event_json"),
        "web/page.txt": ("web_file", "server_page"),
        "iis/weblog.txt": ("iis_log", "iis_w3c"),
        "notes.txt": ("file", "unknown"),
    }
    assert stats.examinable == 7


@pytest.mark.parametrize("what", ["junk", "empty_zip"])
def test_nothing_examinable_exits_4(tmp_path, capsys, what):
    if what == "junk":
        src = tmp_path / "junk"
        src.mkdir()
        (src / "a.dat").write_bytes(os.urandom(4096))
        (src / "b.txt").write_text("hello")
    else:
        src = tmp_path / "empty.zip"
        src.write_bytes(zip_bytes({}))
    code = main(["run", str(src), "--case", str(tmp_path / "case"), "-q", "--jobs", "1"])
    assert code == ExitCode.INSUFFICIENT
    err = capsys.readouterr().err
    assert "nothing examinable" in err
    assert not list((tmp_path / "case").rglob("report.html"))  # no verdict written about unread evidence


# -- one host, many sources -----------------------------------------------------------------------------------------
def test_same_host_from_two_sources_is_stored_once(volume, tmp_path, new_case, reference):
    container = to_velociraptor(volume, tmp_path / "vr.zip", as_zip=True)
    case = new_case()
    _collect(case, volume)
    _, stats = _collect(case, container)
    assert _artifacts(case) == reference  # nothing stored twice
    dups = rows_by_outcome(case, "duplicate")
    assert len(dups) == 18 and stats.duplicates == 18
    by_rel = {r.relpath: r for r in stored_rows(case)}
    for d in dups:
        first = by_rel[d.relpath]
        assert d.sha256 == first.sha256 and d.extra["duplicate_of"] == first.artifact_id
        assert d.source_path.startswith(f"{container}!uploads/auto/")
    assert len(case.evidence()) == 18  # what the analyzers get: each file once


def test_same_path_with_different_bytes_is_kept_apart(volume, tmp_path, new_case):
    other = build_volume(tmp_path / "other", VolumeSpec())
    (other / "inetpub/wwwroot/iisstart.htm").write_bytes(b"changed since")
    case = new_case()
    _collect(case, volume)
    _collect(case, other)
    rels = [r.relpath for r in stored_rows(case) if "iisstart" in r.relpath]
    assert sorted(rels) == [
        "evidence/EXCH01/web_file/C/inetpub/wwwroot/iisstart.htm",
        "evidence/EXCH01/web_file/C/inetpub/wwwroot/iisstart~2.htm",
    ]


# -- sources are only read ------------------------------------------------------------------------------------------
def test_containers_and_folders_are_unchanged_by_collection(volume, tmp_path, new_case):
    work = tmp_path / "evidence-in"
    work.mkdir()
    tc.kape_zip(volume, work / "kape.zip")
    tc.encrypted_velociraptor(volume, work / "enc.zip", password="pw")
    shutil.copytree(volume, work / "loose")
    age_tree(work)
    before = snapshot(work)
    os.environ["TRIAGE_COLLECTION_PASSWORD"] = "pw"
    try:
        for name in ("kape.zip", "enc.zip", "loose"):
            _collect(new_case(), work / name)
        _collect(new_case(), work)  # the folder of containers itself
    finally:
        del os.environ["TRIAGE_COLLECTION_PASSWORD"]
    assert snapshot(work) == before  # bytes, mtimes, atimes, modes, listings


# -- real third-party files under other names ---------------------------------------------------------------------
CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


@pytest.mark.corpus
@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"shared corpus not present at {CORPUS}")
def test_folder_of_renamed_corpus_files_is_collected_by_kind(tmp_path, new_case):
    import lzma

    folder = tmp_path / "renamed"
    folder.mkdir()
    expect: dict[str, str] = {}
    picks = [
        ("hives/RGP_SYSTEM.xz", "registry_hive", True),
        ("hives/RGP_SAM.xz", "registry_hive", True),
        ("hives/PLS_NTUSER-RunTests.DAT", "registry_hive", False),
        ("evtx/baseline/PYE_security.evtx", "evtx", False),
        ("events_json/OTR_psh_lsass_memory_dump_comsvcs.json.xz", "event_json", False),
        ("webshells/TEN_fuzzdb_cmd.aspx", "web_file", False),
        ("logs/PLS_iis10.log", "iis_log", False),
    ]
    for i, (rel, kind, unpack) in enumerate(picks):
        data = (CORPUS / rel).read_bytes()
        name = f"item{i:02d}.dat"
        (folder / name).write_bytes(lzma.decompress(data) if unpack else data)
        expect[name] = kind
    case = new_case()
    _, stats = _collect(case, folder, host="EXCH01")
    got = {r.relpath.rsplit("/", 1)[-1]: r.kind for r in stored_rows(case)}
    assert got == expect
    assert stats.examinable == len(picks)


@pytest.mark.slow
def test_disk_image_container_inside_a_folder_is_opened(volume, tmp_path, new_case, reference):
    reason = tools_missing()
    if reason:
        pytest.skip(f"disk image tools unavailable: {reason}")
    folder = tmp_path / "from-site"
    folder.mkdir()
    tc.kape_image(volume, folder / "EXCH01.vhdx")
    (folder / "notes.txt").write_text("KAPE --vhdx output, copied by the site")
    case = new_case()
    _, stats = _collect(case, folder)
    got = _artifacts(case)
    assert {k: v for k, v in got.items() if "/loose/" not in k} == reference
    assert [c["type"] for c in stats.containers] == ["kape-image"]
    assert "evidence/EXCH01/suspicious_file/loose/EXCH01.vhdx" not in got  # a collection is not stored twice


# -- fuzz: mutated zips cost only themselves -----------------------------------------------------------------------
def test_mutated_zips_never_crash_or_hang(tmp_path, new_case):
    import random

    from triage.errors import TriageError

    rng = random.Random(int(os.environ.get("TRIAGE_FUZZ_SEED", "1302")))
    cases = int(os.environ.get("TRIAGE_FUZZ_CASES", "80"))
    evtx = evtx_bytes([Event(4624, "Microsoft-Windows-Security-Auditing", "Security", time_created=T0)])
    seed = zip_bytes(
        {
            "C/Windows/System32/winevt/Logs/Security.evtx": evtx,
            "C/Windows/System32/config/SYSTEM": volume_files(VolumeSpec())["Windows/System32/config/SYSTEM"],
            "loot/readme.txt": b"x" * 300,
            "inner.zip": zip_bytes({"a.evtx": evtx}),
        }
    )
    case = new_case()
    started = time.monotonic()
    outcomes: dict[str, int] = {}
    for i in range(cases):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 12)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data))]
        path = tmp_path / f"m{i:04d}.zip"
        path.write_bytes(bytes(data))
        one = time.monotonic()
        try:
            src = open_source_path(str(path))
        except TriageError as exc:
            outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
            continue
        try:
            collect_source(case, src, host="EXCH01")
            outcomes["collected"] = outcomes.get("collected", 0) + 1
        finally:
            src.close()
        assert time.monotonic() - one < 10, f"mutation {i} took too long"
    assert outcomes.get("collected", 0) > cases // 4, outcomes
    assert not [p for p in case.path.rglob("*") if ".part" in p.name]
    assert time.monotonic() - started < 120


def test_folder_named_data_zip_beside_metadata_is_just_loose_members(tmp_path):
    path = tmp_path / "odd.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", b"{}")
        zf.writestr("data.zip/inner.txt", b"x")
    src = open_source_path(str(path))
    try:
        assert src.source_type == "zip"
        assert sorted("/".join(parts) for parts, _ in src.members) == ["data.zip/inner.txt", "metadata.json"]
    finally:
        src.close()


def test_mutated_encrypted_collections_are_clear_errors(volume, tmp_path, new_case, monkeypatch):
    import random

    from triage.errors import TriageError

    monkeypatch.setenv("TRIAGE_COLLECTION_PASSWORD", "pw")
    good = tc.encrypted_velociraptor(volume, tmp_path / "enc.zip", password="pw").read_bytes()
    rng = random.Random(int(os.environ.get("TRIAGE_FUZZ_SEED", "9")))
    case = new_case()
    outcomes: dict[str, int] = {}
    for i in range(int(os.environ.get("TRIAGE_FUZZ_CASES", "60"))):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / f"m{i:03d}.zip"
        path.write_bytes(bytes(data))
        try:
            src = open_source_path(str(path))
        except TriageError as exc:
            assert exc.exit_code in (ExitCode.USAGE, ExitCode.INSUFFICIENT)
            assert "\n" not in str(exc) and len(str(exc)) < 600
            outcomes["error"] = outcomes.get("error", 0) + 1
            continue
        try:
            collect_source(case, src, host="EXCH01")
            outcomes["collected"] = outcomes.get("collected", 0) + 1
        finally:
            src.close()
    assert outcomes.get("error", 0) > 0


def test_unreadable_kape_copylog_costs_only_the_comparison(volume, tmp_path, new_case, reference):
    tdest = to_kape(volume, tmp_path / "kape")
    for log in tdest.glob("*_CopyLog.csv"):
        log.write_text('SourceFile,FileSize\n"' + "x" * 200_000 + '",1\n')
    case = new_case()
    src, _ = _collect(case, tdest)
    assert _artifacts(case) == reference
    assert any("not a readable CSV" in n for n in src.notes)
    assert not any("tool_record" in r.extra for r in stored_rows(case))


def test_unlistable_subfolder_of_loose_files_is_a_failure_row(tmp_path, new_case, monkeypatch):
    import collectors.vfs as vfs

    folder = tmp_path / "loose"
    (folder / "locked").mkdir(parents=True)
    (folder / "locked" / "a.evtx").write_bytes(b"ElfFile\x00" + bytes(100))
    (folder / "Security.evtx").write_bytes(b"ElfFile\x00" + bytes(100))
    real = vfs._list_disk

    def list_disk(path, decode):
        if path.endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real(path, decode)

    monkeypatch.setattr(vfs, "_list_disk", list_disk)
    case = new_case()
    _collect(case, folder, host="EXCH01")
    (fail,) = rows_by_outcome(case, "failure")
    assert fail.source_path == str(folder / "locked") and "cannot be listed: Permission denied" in fail.details
    assert [r.kind for r in stored_rows(case)] == ["evtx"]
