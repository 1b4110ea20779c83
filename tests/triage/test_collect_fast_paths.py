"""The collection's fast paths give the bytes the slow ones give: canonical JSON through orjson, manifest lines in
canonical form, names that need no encoding; the end-of-command sync is one ``syncfs`` of the case, never
``os.sync()``."""

from __future__ import annotations

import enum
import hashlib
import io
import json
import os
import random
import re
import string
from pathlib import Path
from typing import Any

import pytest

import triage.case as case_mod
from triage.case import Case, ManifestRow, parse_row, row_digest, row_line, safe_component
from triage.custody import canonical, canonical_fast


def _json_canonical(obj: Any) -> bytes:
    """The reference: what canonical() wrote before orjson (and still writes where orjson's bytes could differ)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return text.encode("utf-8", "surrogatepass")


def test_orjson_canonical_is_json_canonical_for_every_code_point() -> None:
    # every code point but the surrogates, in values and in keys, in chunks (one dict per 4,096 code points)
    for start in range(0, 0x110000, 4096):
        chars = "".join(chr(c) for c in range(start, min(start + 4096, 0x110000)) if not 0xD800 <= c <= 0xDFFF)
        obj = {"v": chars, chars[:64]: [chars[-64:], 1], "é": None}
        fast = canonical_fast(obj)
        assert fast is not None
        assert fast == _json_canonical(obj), hex(start)


def test_orjson_canonical_matches_on_nested_plain_values() -> None:
    obj = {
        "z": [1, -(2**63), 2**64 - 1, True, False, None, "", {"b": [], "a": {}}],
        "a": {"\u00e9t\u00e9": "x", "A": '\x00\x1f\x7f"\\/\u2028'},
        "m": ("tuple", 2),
    }
    assert canonical_fast(obj) == _json_canonical(obj)
    assert canonical(obj) == _json_canonical(obj)


def test_empty_containers_are_plain_and_their_non_empty_siblings_still_looked_into() -> None:
    # a row's empty 'extra' is not looked into; a non-empty container beside it still is
    assert canonical_fast({"extra": {}, "l": [], "t": (), "s": "x"}) == _json_canonical(
        {"extra": {}, "l": [], "t": (), "s": "x"}
    )
    assert canonical_fast({"extra": {}, "more": {"f": 0.5}}) is None
    assert canonical_fast([[], {}, (), [1.5]]) is None


class _Colour(enum.Enum):
    RED = 1


@pytest.mark.parametrize(
    "value",
    [1.5, 1e16, float("nan"), _Colour.RED, 2**64, "lone \udc80 surrogate", {1: "int key"}, Path("/x"), b"bytes"],
)
def test_values_orjson_could_write_differently_take_the_json_path(value: object) -> None:
    obj = {"k": [value]}
    assert canonical_fast(obj) is None
    assert canonical(obj) == _json_canonical(obj)  # the event hash is unchanged whichever path wrote it


def _row(**kw: Any) -> ManifestRow:
    base: dict[str, Any] = dict(
        artifact_id="A0123456789abcde",
        kind="web_file",
        outcome="success",
        source_host="HOST",
        source_path="/src/inetpub/wwwroot/a.aspx",
        collector="triage.collectors.volume",
        collector_version="1.0",
        collected_at="2026-12-07T16:00:00.000000Z",
        relpath="evidence/HOST/web_file/C/inetpub/wwwroot/a.aspx",
        size=12,
        sha256="0" * 64,
        md5="1" * 32,
        source_mtime="2021-03-03T02:14:07.000000Z",
    )
    base.update(kw)
    return ManifestRow(**base)


def test_manifest_line_is_the_canonical_row_and_its_digest_the_hash_of_the_line() -> None:
    row = _row(extra={"format": "aspx", "tool_record": {"sha1": "2" * 40, "n": 3}})
    data, digest = row_line(row)
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert data[:-1] == _json_canonical(row.as_dict())
    assert digest == hashlib.sha256(data[:-1]).hexdigest() == row.digest
    parsed = parse_row(data.decode("utf-8"))
    assert parsed == row and row_digest(parsed.as_dict()) == digest  # what verify recomputes


@pytest.mark.parametrize(
    "row",
    [_row(source_path="/src/bad-\udcff-name.aspx"), _row(extra={"ratio": 0.5})],
    ids=["undecodable-name", "float-in-extra"],
)
def test_rows_orjson_cannot_write_keep_the_previous_line(row: ManifestRow) -> None:
    data, digest = row_line(row)
    line = json.dumps(row.as_dict(), ensure_ascii=False, sort_keys=True) + "\n"
    assert data == line.encode("utf-8", "backslashreplace")
    assert digest == row.digest
    assert row_digest(parse_row(data.decode("utf-8")).as_dict()) == digest


def test_names_that_need_no_encoding_come_back_as_they_are() -> None:
    slow = safe_component.__wrapped__  # type: ignore[attr-defined]
    rng = random.Random(15)
    alphabet = string.printable + "é%.\udc80"
    names = [".", "..", "a" * 240, "a" * 241, "f00001.js", "%41", "a%2", "[x]{y}^", "-", "~", "a b", "CON"]
    names += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(6000)]
    fast_path = case_mod._SAFE_AS_IS
    try:
        expected = []
        case_mod._SAFE_AS_IS = re.compile(r"(?!)")  # never matches: every name through the encoding loop
        expected = [slow(n) for n in names]
    finally:
        case_mod._SAFE_AS_IS = fast_path
    assert [slow(n) for n in names] == expected
    assert sum(1 for n in names if fast_path.fullmatch(n)) > 300  # the fast path was taken, not skipped


def _store(case: Case, name: str, data: bytes) -> ManifestRow:
    return case.store(
        lambda: io.BytesIO(data),
        host="HOST",
        kind="web_file",
        logical_parts=["C", "inetpub", name],
        source_path=f"/src/{name}",
        collector="test",
        collector_version="1",
        mtime=1614737647.0,
    )


def test_sync_is_one_syncfs_of_the_case_and_never_os_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = case_mod._syncfs
    monkeypatch.setattr(case_mod, "_syncfs", lambda folder: (calls.append(folder), real(folder)))
    monkeypatch.setattr(os, "sync", lambda: pytest.fail("os.sync() waits for every file system"))
    case = Case.create_or_open(tmp_path / "case", examiner="t")
    with case.writer():
        rows = [_store(case, f"f{i}.js", bytes([i]) * (i + 1)) for i in range(3)]
        assert [r.outcome for r in rows] == ["success"] * 3
        case.sync()
        assert calls == [case.path]  # one call for the three copies
        case.custody.append("note", note="the logs only")
        case.sync(files=False)
        assert calls == [case.path]  # the manifest and custody log fsynced, the file system not synced
    case.close()
    assert calls == [case.path, case.path]  # close() syncs everything
    stored = case.path / rows[0].relpath  # type: ignore[operator]
    assert stored.read_bytes() == b"\x00" and stored.stat().st_mode & 0o777 == 0o444
    assert stored.stat().st_mtime == 1614737647.0


def test_syncfs_writes_the_case_file_system(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    case_mod._syncfs(tmp_path)  # returns (raises OSError on failure); the fallback is os.sync()
    with pytest.raises(OSError):
        case_mod._syncfs(tmp_path / "missing")


def test_evidence_folder_is_a_top_of_folder_trees_where_the_file_system_has_the_flag(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    if not case_mod._mark_topdir(probe):
        pytest.skip("this file system has no 'top of directory hierarchy' flag (not ext2/3/4 on Linux)")
    case = Case.create_or_open(tmp_path / "case", examiner="t")
    with case.writer():
        assert _store(case, "a.js", b"x").outcome == "success"
    case.close()
    import fcntl
    import struct

    fd = os.open(case.path / "evidence", os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = struct.unpack_from("<I", fcntl.ioctl(fd, case_mod._FS_IOC_GETFLAGS, bytes(8)))[0]
    finally:
        os.close(fd)
    assert flags & case_mod._FS_TOPDIR_FL


def _reference_ts(value: float) -> str:
    """What ts_from_epoch wrote before its own arithmetic: datetime's text."""
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(value, UTC)
    if when.year < 1000:
        return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return when.isoformat(timespec="microseconds")[:-6] + "Z"


def _outcome(fn: Any, value: float) -> str:
    try:
        return fn(value)
    except (ValueError, OverflowError, OSError) as exc:
        return type(exc).__name__


def test_source_times_are_datetimes_text_to_the_microsecond_and_its_rounding() -> None:
    rng = random.Random(15)
    edges = [0.0, -0.5, -1e-7, 0.9999995, 1.0000005, 2.5e-6, 1.5e-6, -1.5e-6, 1614556800.0000005, 1614556800.9999995]
    edges += [253402300799.999, 253402300799.9999995, -30610224000.0, -30610224000.0000005, -30610224001.0, 1e12]
    values = edges + [rng.uniform(-3.2e10, 2.6e11) for _ in range(20000)]
    values += [rng.randint(0, 2**31) + (rng.randint(0, 10**6) + 0.5) / 1e6 for _ in range(20000)]  # ties
    values += [rng.randint(0, 2**31) + rng.randint(0, 10**7) / 1e7 for _ in range(20000)]
    for value in values:
        assert _outcome(case_mod.ts_from_epoch, value) == _outcome(_reference_ts, value), repr(value)


def test_utcnow_is_datetime_now_text(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    import triage.custody as custody_mod

    for ns in (1_700_000_000_123_456_789, 1_700_000_000_999_999_999, 1_700_000_001_000_000_000, 86_400 * 10**9):
        monkeypatch.setattr(custody_mod.time, "time_ns", lambda ns=ns: ns)
        when = datetime.fromtimestamp(ns // 10**9, UTC).replace(microsecond=(ns % 10**9) // 1000)
        assert custody_mod.utcnow() == when.isoformat(timespec="microseconds")[:-6] + "Z"


def test_collect_events_written_compact_are_the_events_verify_checks(tmp_path: Path) -> None:
    from triage.custody import CustodyLog, event_hash

    rng = random.Random(3)
    alphabet = string.printable + '"\\\x00\x1f\x7f\u2028é中\U0001f600'
    many: list[dict[str, Any]] = []
    for i in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        many.append({"source_path": text, "size": rng.choice([None, 0, 2**63 - 1, -5]), "relpath": None, "n": i})
    many += [{"source_path": "bad \udcff name"}, {"ratio": 0.1}, {"when": enum.Enum("E", "A").A}]  # the json path
    log = CustodyLog(tmp_path, actor='exam"iner\\')
    written = log.append_many("collect", many)
    log.append("note", text="a spaced line")
    log.close()
    lines = (tmp_path / "custody.jsonl").read_bytes().splitlines()
    assert len(lines) == len(many) + 1
    for raw, event in zip(lines, written, strict=False):
        parsed = json.loads(raw)
        assert parsed["hash"] == event["hash"] == event_hash(parsed)
        if event is written[-1] or "bad" in str(event["details"]) or "ratio" in event["details"]:
            continue
        if "when" not in event["details"]:
            assert parsed == event
            body = {k: v for k, v in parsed.items() if k != "hash"}
            assert raw == canonical(parsed) and hashlib.sha256(canonical(body)).hexdigest() == event["hash"]
    assert b'"action": "note"' in lines[-1]  # other actions keep json's spaced line
    count, problems = CustodyLog(tmp_path).verify()
    assert count == len(lines) and not problems
