"""Hostile or broken sources: traversal in zips, links out of the source, odd names, unreadable,
vanishing and special files. Each becomes a recorded outcome; none stops or escapes the collection."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import tempfile
import threading
import urllib.parse
import zipfile
from pathlib import Path

import pytest
from collectors_support import (
    age_tree,
    case_files,
    collect,
    collect_loose,
    evidence_rel,
    rows_by_outcome,
    sha256,
    snapshot,
    stored_rows,
)

import collectors.vfs as vfs
from collectors.vfs import LINK_DETAIL
from triage.case import NAME_MAX, Case, safe_component
from triage.errors import UsageError
from triage.testing.volume import VolumeSpec, build_volume, to_velociraptor, zip_bytes

TRAVERSAL_DETAIL = "zip member path escapes the container (path traversal); refused"
SECRET = b"SECRET-OUTSIDE-THE-SOURCE-4f1c"
PAYLOAD = b"EVIL-PAYLOAD-7d2e"


def _all_case_bytes(case: Case) -> bytes:
    return b"".join(p.read_bytes() for p in case.path.rglob("*") if p.is_file() and not p.is_symlink())


def _run_with_timeout(fn, timeout: float = 20.0):
    """Run ``fn`` in a daemon thread; fail (instead of hanging the suite) if it blocks."""
    result: dict[str, object] = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"collection still running after {timeout}s (blocked on a special file?)"
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]


# -- zip members that climb out -------------------------------------------------------------------------
HOSTILE_MEMBERS = {
    "uploads/auto/C%3A/inetpub/wwwroot/../../../../../evil.aspx": PAYLOAD + b"1",
    "/uploads/auto/C%3A/inetpub/wwwroot/abs.aspx": PAYLOAD + b"2",
    "uploads\\auto\\C%3A\\inetpub\\wwwroot\\..\\..\\..\\..\\..\\win.aspx": PAYLOAD + b"3",
    "../../evil.aspx": PAYLOAD + b"4",
}


def _velociraptor_zip_with(tmp_path: Path, extra: dict[str, bytes], infos: list[tuple[zipfile.ZipInfo, bytes]] = ()):
    vol = build_volume(tmp_path / "vol")
    out = to_velociraptor(vol, tmp_path / "collection.zip", as_zip=True)
    with zipfile.ZipFile(out) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    buf = io.BytesIO(zip_bytes({**members, **extra}))
    with zipfile.ZipFile(buf, "a") as zf:
        for info, data in infos:
            zf.writestr(info, data)
    out.write_bytes(buf.getvalue())
    return out


def test_zip_members_with_traversal_or_absolute_paths_are_refused(tmp_path, new_case):
    out = _velociraptor_zip_with(tmp_path, HOSTILE_MEMBERS)
    with zipfile.ZipFile(out) as zf:  # the names really are stored as written
        assert set(HOSTILE_MEMBERS) <= set(zf.namelist())
    case = new_case()
    src, stats = collect(case, out)
    assert src.source_type == "velociraptor-zip"

    failures = {r.source_path: r for r in rows_by_outcome(case, "failure")}
    reachable = list(HOSTILE_MEMBERS)[:3]  # the fourth is outside uploads/, so no family ever names it
    assert set(failures) == {f"{out}!{m}" for m in reachable}
    for row in failures.values():
        assert row.details == TRAVERSAL_DETAIL
        assert "path traversal" in row.details
        assert row.kind == "web_file"
        assert row.relpath is None and row.sha256 is None

    assert stats.files == 18  # the legitimate members were all collected
    assert stats.outcomes["failure"] == 3
    names = {p.name for p in tmp_path.rglob("*")}
    assert {"evil.aspx", "abs.aspx", "win.aspx"}.isdisjoint(names)
    assert PAYLOAD not in _all_case_bytes(case)
    for path in case_files(case):
        assert case.path / "evidence" in path.parents


def test_zip_symlink_member_is_not_followed(tmp_path, new_case):
    info = zipfile.ZipInfo("uploads/auto/C%3A/inetpub/wwwroot/link.aspx", date_time=(2021, 3, 3, 4, 1, 0))
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    out = _velociraptor_zip_with(tmp_path, {}, [(info, b"/etc/passwd")])
    case = new_case()
    _, stats = collect(case, out)
    (row,) = rows_by_outcome(case, "failure")
    assert row.source_path == f"{out}!uploads/auto/C%3A/inetpub/wwwroot/link.aspx"
    assert row.details == "symbolic link member not followed"
    assert stats.files == 18


# -- links on a volume ---------------------------------------------------------------------------------
def test_symlinks_out_of_the_volume_are_not_followed(tmp_path, new_case):
    vol = build_volume(tmp_path / "src" / "vol")
    outside = tmp_path / "outside"
    (outside / "W3SVC9").mkdir(parents=True)
    (outside / "secret.aspx").write_bytes(SECRET)
    (outside / "W3SVC9" / "u_ex210309.log").write_bytes(SECRET)
    (vol / "Windows/System32/config/SAM").symlink_to(outside / "secret.aspx")
    links = {
        "inetpub/wwwroot/link.aspx": outside / "secret.aspx",
        "inetpub/wwwroot/aspnet_client/linkdir": outside,
        "inetpub/logs/LogFiles/W3SVC9": outside / "W3SVC9",
        "inetpub/wwwroot/loop": Path("."),
    }
    for rel, target in links.items():
        (vol / rel).symlink_to(target)
    links["Windows/System32/config/SAM"] = outside / "secret.aspx"
    age_tree(tmp_path)
    before_src, before_out = snapshot(tmp_path / "src"), snapshot(outside)

    case = new_case()
    _, stats = collect(case, vol)

    failures = {r.source_path: r for r in rows_by_outcome(case, "failure")}
    assert set(failures) == {str(vol / rel) for rel in links}
    for rel in links:
        row = failures[str(vol / rel)]
        assert row.details == LINK_DETAIL
        assert "not followed" in row.details
        assert str(target) not in row.details  # the target was not read (readlink moves the link's atime)
    assert failures[str(vol / "Windows/System32/config/SAM")].kind == "registry_hive"
    assert failures[str(vol / "inetpub/logs/LogFiles/W3SVC9")].kind == "iis_log"
    assert stats.files == 18
    assert SECRET not in _all_case_bytes(case)
    assert not any(p.is_symlink() for p in case.path.rglob("*"))
    assert snapshot(tmp_path / "src") == before_src
    assert snapshot(outside) == before_out


# -- names -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("shell.aspx", "shell.aspx"),
        (os.fsdecode(b"sh\xffell.aspx"), "sh%FFell.aspx"),
        (os.fsdecode(b"\xc3(\x80.aspx"), "%C3(%80.aspx"),
        ("100% real:shell.aspx", "100% real%3Ashell.aspx"),
        ("Microsoft-Windows-Sysmon%4Operational.evtx", "Microsoft-Windows-Sysmon%4Operational.evtx"),
        ("a%41b", "a%2541b"),
        ('a<b>c|d?e*f"g\\h.aspx', "a%3Cb%3Ec%7Cd%3Fe%2Af%22g%5Ch.aspx"),
        ("tab\there\x7f", "tab%09here%7F"),
        ("шелл.aspx", "шелл.aspx"),
        (".", "%2E"),
        ("..", "%2E%2E"),
        ("", "%00"),
    ],
)
def test_safe_component(name, expected):
    assert safe_component(name) == expected
    if name not in ("", ".", ".."):  # the mapping is reversible: percent-decoding gives the original bytes
        assert urllib.parse.unquote_to_bytes(expected) == os.fsencode(name)


def test_safe_component_shortens_long_names_keeping_a_hash():
    name = "A" * 396 + ".dll"  # 400 bytes, more than any file system allows in one component
    out = safe_component(name)
    encoded = out.encode()
    assert len(encoded) <= NAME_MAX < 255
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    assert out == "A" * (NAME_MAX - 18) + "~" + digest
    other = safe_component("A" * 396 + ".exe")  # same 222-byte stem, different name: different result
    assert other != out and other.startswith("A" * (NAME_MAX - 18) + "~")


def test_safe_component_never_splits_a_multibyte_character():
    name = "я" * 200  # 400 bytes of two-byte characters
    out = safe_component(name)
    assert len(out.encode("utf-8")) <= NAME_MAX
    out.encode("utf-8", errors="strict")
    assert out.startswith("я" * 100)


def test_safe_component_long_undecodable_name():
    name = os.fsdecode(b"\xff" * 300)
    out = safe_component(name)
    assert len(out.encode()) <= NAME_MAX
    assert out.startswith("%FF%FF")


def test_long_stored_names_are_created_on_disk(tmp_path, new_case):
    """A Velociraptor upload name decodes to more than 255 bytes; it is still stored, shortened."""
    long_name = "Ж" * 150 + ".aspx"  # 305 bytes once decoded: cannot be created as such on ext4
    encoded = urllib.parse.quote(long_name)
    assert len(os.fsencode(encoded)) > 255  # Velociraptor's own encoding would not fit either: use a zip
    data = b"<% long %>"
    out = _velociraptor_zip_with(tmp_path, {f"uploads/auto/C%3A/inetpub/wwwroot/{encoded}": data})
    case = new_case()
    collect(case, out)
    (row,) = [r for r in stored_rows(case) if r.source_path.endswith(encoded)]
    stored = case.path / row.relpath
    assert len(os.fsencode(stored.name)) <= NAME_MAX
    assert stored.read_bytes() == data
    assert row.sha256 == sha256(data)


def test_non_utf8_file_name_is_collected_percent_encoded(tmp_path, new_case):
    vol = build_volume(tmp_path / "vol")
    raw = os.path.join(os.fsencode(vol / "inetpub/wwwroot"), b"sh\xffell.aspx")
    data = b"<%@ Page Language='C#' %><% /* non-utf8 name */ %>"
    with open(raw, "wb") as fh:
        fh.write(data)
    case = new_case()
    _, stats = collect(case, vol)
    assert stats.files == 19
    (row,) = [r for r in stored_rows(case) if os.fsencode(r.source_path) == raw]
    assert row.relpath == evidence_rel("EXCH01", "web_file", "inetpub/wwwroot/sh%FFell.aspx")
    assert row.sha256 == sha256(data)
    assert row.md5 == hashlib.md5(data).hexdigest()
    assert (case.path / row.relpath).read_bytes() == data
    # the row reads back with the exact source name
    (again,) = [r for r in Case.open(case.path).manifest() if r.artifact_id == row.artifact_id]
    assert os.fsencode(again.source_path) == raw
    assert Case.open(case.path).custody.verify()[1] == []


# -- unreadable, vanishing, growing, special files ----------------------------------------------------
def _failing_open_source(monkeypatch, suffix: str, exc: OSError):
    real = vfs.open_source

    def fake(path):
        if os.fspath(path).endswith(suffix):
            raise exc
        return real(path)

    monkeypatch.setattr(vfs, "open_source", fake)


def test_unreadable_file_is_a_failure_row_and_the_collection_goes_on(volume, new_case, monkeypatch):
    target = "inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx"
    _failing_open_source(monkeypatch, target, PermissionError(errno.EACCES, "Permission denied"))
    case = new_case()
    _, stats = collect(case, volume)
    (row,) = rows_by_outcome(case, "failure")
    assert row.source_path == str(volume / target)
    assert row.details == "PermissionError: [Errno 13] Permission denied"
    assert row.kind == "web_file"
    assert row.relpath is None
    assert stats.files == 17
    assert not list(case.path.rglob("*.part-*"))
    assert not (case.path / evidence_rel("EXCH01", "web_file", target)).exists()
    # files collected after it in declaration order are there
    assert stats.kinds["suspicious_file"] == 2


@pytest.mark.parametrize("hive", ["SYSTEM", "SOFTWARE"])
def test_unreadable_hive_does_not_stop_the_collection(volume, new_case, monkeypatch, tmp_path, hive):
    _failing_open_source(monkeypatch, f"config/{hive}", PermissionError(errno.EACCES, "Permission denied"))
    scratch = tmp_path / "tmpdir"  # where the private hive copies for regipy go
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    case = new_case()
    _, stats = collect(case, volume)
    assert list(scratch.iterdir()) == []  # no temporary hive copy left behind
    (row,) = rows_by_outcome(case, "failure")
    assert row.source_path == str(volume / "Windows/System32/config" / hive)
    assert row.details.startswith("PermissionError")
    assert stats.files == 17
    if hive == "SYSTEM":
        assert stats.hosts == {"unknown-host"}
        assert stats.exchange["how"] == "registry"
    else:
        assert stats.hosts == {"EXCH01"}
        assert stats.exchange["how"] == "search"  # the install root is still found
        assert stats.kinds["exchange_log"] == 4


def test_corrupt_system_hive_is_still_evidence(tmp_path, new_case):
    garbage = b"regf" + bytes(range(256)) * 20
    spec = VolumeSpec(extra_files={"Windows/System32/config/SYSTEM": garbage})
    vol = build_volume(tmp_path / "vol", spec)
    case = new_case()
    _, stats = collect(case, vol)
    assert stats.hosts == {"unknown-host"}
    (row,) = [r for r in stored_rows(case) if r.source_path.endswith("config/SYSTEM")]
    assert row.sha256 == sha256(garbage)
    assert stats.files == 18


def test_read_error_midway_leaves_no_partial_copy(volume, new_case, monkeypatch):
    target = "Windows/Temp/lsass.dmp"
    real = vfs.open_source

    class Flaky(io.RawIOBase):
        def __init__(self, fh):
            self.fh, self.calls = fh, 0

        def readable(self):
            return True

        def readinto(self, b):
            self.calls += 1
            if self.calls > 1:
                raise OSError(errno.EIO, "Input/output error")
            data = self.fh.read(100)
            b[: len(data)] = data
            return len(data)

        def close(self):
            self.fh.close()
            super().close()

    monkeypatch.setattr(vfs, "open_source", lambda p: Flaky(real(p)) if os.fspath(p).endswith(target) else real(p))
    case = new_case()
    _, stats = collect(case, volume)
    (row,) = rows_by_outcome(case, "failure")
    assert row.source_path == str(volume / target)
    assert row.details == "OSError: [Errno 5] Input/output error"
    assert not list(case.path.rglob("*.part-*"))
    assert not list(case.path.rglob(".lsass*"))
    assert not (case.path / evidence_rel("EXCH01", "suspicious_file", target)).exists()
    assert stats.files == 17


def test_file_vanishing_between_listing_and_copy(volume, new_case, monkeypatch):
    target = str(volume / "inetpub/wwwroot/iisstart.htm")
    real_store = Case.store

    def store(self, opener, **kw):
        if kw["source_path"] == target:
            os.unlink(target)  # the server deleted it after we listed the folder
        return real_store(self, opener, **kw)

    monkeypatch.setattr(Case, "store", store)
    case = new_case()
    _, stats = collect(case, volume)
    (row,) = rows_by_outcome(case, "failure")
    assert row.source_path == target
    assert row.details.startswith("FileNotFoundError: [Errno 2]")
    assert stats.files == 17
    assert stats.outcomes["failure"] == 1
    assert not list(case.path.rglob("*.part-*"))


def test_file_growing_while_copied_is_flagged(volume, new_case, monkeypatch):
    rel = "inetpub/logs/LogFiles/W3SVC1/u_ex210303.log"
    target = str(volume / rel)
    appended = b"2021-03-03 02:15:00 10.0.0.5 POST /ecp/y.js - 443 - 167.99.168.251 - - 200 0 0 9\r\n"
    real_store = Case.store

    def store(self, opener, **kw):
        if kw["source_path"] == target:
            with open(target, "ab") as fh:  # IIS appended a line after the listing
                fh.write(appended)
        return real_store(self, opener, **kw)

    monkeypatch.setattr(Case, "store", store)
    case = new_case()
    collect(case, volume)
    (row,) = [r for r in stored_rows(case) if r.source_path == target]
    data = Path(target).read_bytes()
    assert row.size == len(data)
    assert row.sha256 == sha256(data)
    assert row.details == f"size changed while reading: {len(data) - len(appended)} bytes listed, {len(data)} read"


def test_fifo_in_the_volume_is_a_failure_not_a_hang(volume, new_case):
    os.mkfifo(volume / "inetpub/wwwroot/pipe.aspx")
    case = new_case()
    _, stats = _run_with_timeout(lambda: collect(case, volume))
    (row,) = rows_by_outcome(case, "failure")
    assert row.source_path == str(volume / "inetpub/wwwroot/pipe.aspx")
    assert row.details == "not a regular file (device, fifo or socket)"
    assert stats.files == 18


def test_fifo_in_place_of_the_system_hive(volume, new_case):
    (volume / "Windows/System32/config/SYSTEM").unlink()
    os.mkfifo(volume / "Windows/System32/config/SYSTEM")
    case = new_case()
    _, stats = _run_with_timeout(lambda: collect(case, volume))
    assert stats.hosts == {"unknown-host"}
    (row,) = rows_by_outcome(case, "failure")
    assert row.kind == "registry_hive"
    assert row.details == "not a regular file (device, fifo or socket)"


def test_fifo_in_a_loose_files_folder_is_a_failure_not_a_hang(tmp_path, new_case):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "Security.evtx").write_bytes(b"ElfFile\x00" + bytes(100))
    os.mkfifo(folder / "pipe.log")
    (folder / "link.aspx").symlink_to("/etc/hostname")
    case = new_case()
    _, stats = _run_with_timeout(lambda: collect_loose(case, folder, host="EXCH01", as_type="files"))
    failures = {Path(r.source_path).name: r for r in rows_by_outcome(case, "failure")}
    assert set(failures) == {"pipe.log", "link.aspx"}
    assert all("not a regular file" in r.details for r in failures.values())
    (row,) = stored_rows(case)
    assert row.relpath == "evidence/EXCH01/evtx/loose/Security.evtx"
    assert stats.files == 1


def test_fifo_given_as_the_source_is_a_usage_error_not_a_hang(tmp_path):
    from collectors.sources import open_source_path

    fifo = tmp_path / "memory.raw"
    os.mkfifo(fifo)
    with pytest.raises(UsageError):
        _run_with_timeout(lambda: open_source_path(str(fifo)))


def test_nothing_is_written_outside_the_case(tmp_path, new_case):
    out = _velociraptor_zip_with(tmp_path, HOSTILE_MEMBERS)
    before = {p for p in tmp_path.rglob("*")}
    case = new_case()
    collect(case, out)
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all(p == case.path or case.path in p.parents for p in created)
