"""Small files copied by the helper process (triage.copyhelper): the same case as copies made in this process,
failures in the same words, nothing left behind by a plan that stops, and a kill -9 that resumes clean."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import collectors.collect as collect_mod
from triage import _copy_child
from triage.app.collect import CollectRequest, collect
from triage.app.progress import NullProgress
from triage.case import Case
from triage.copyhelper import CopyError, CopyHelper
from triage.errors import ExitCode
from triage.hashing import hash_file
from triage.testing.volume import VolumeSpec, build_volume

TRIAGE = str(Path(sys.executable).with_name("triage"))


def _volume(root: Path, n: int = 120, *, hostile: bool = False) -> Path:
    vol = build_volume(root / "vol", VolumeSpec())
    web = vol / "inetpub/wwwroot/aspnet_client/system_web"
    web.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (web / f"page{i:04d}.js").write_bytes(os.urandom(100 + i * 37))
    (web / "empty.js").write_bytes(b"")
    if hostile:  # names the case stores encoded (special characters, undecodable bytes, too long), in one folder
        for name in (b"colon:star*.js", b"pct%41 and %zz.js", b"bad\xff\xfe.js", b"x" * 250 + b".js", b"Case.js"):
            with open(os.path.join(os.fsencode(web), name), "wb") as fh:
                fh.write(name)
    return vol


def _record_helpers(monkeypatch: pytest.MonkeyPatch) -> list[CopyHelper]:
    """The helpers the collections started from now on."""
    spawned: list[CopyHelper] = []
    real_init = CopyHelper.__init__

    def counting(self: CopyHelper, count: int | None = None) -> None:
        real_init(self, count)
        spawned.append(self)

    monkeypatch.setattr(CopyHelper, "__init__", counting)
    return spawned


def _rows(case: Path) -> list[dict]:
    return [json.loads(line) for line in (case / "manifest.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("helpers", ["1", "2"])
def test_helper_copies_make_the_case_an_in_process_collect_makes(
    helpers: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vol = _volume(tmp_path, hostile=True)
    monkeypatch.setenv("TRIAGE_COPY_HELPER", "0")
    collect(CollectRequest(sources=(str(vol),), case=tmp_path / "inproc", examiner="t"), NullProgress())
    monkeypatch.setenv("TRIAGE_COPY_HELPER", "1")
    monkeypatch.setenv("TRIAGE_COPY_HELPERS", helpers)
    monkeypatch.setattr(collect_mod, "HELPER_MIN", 1)
    spawned = _record_helpers(monkeypatch)
    started_before_run: list[bool] = []
    real_run = collect_mod._Plan.run

    def run(self: collect_mod._Plan) -> None:
        started_before_run.append(self.helper is not None)
        real_run(self)

    monkeypatch.setattr(collect_mod._Plan, "run", run)
    collect(CollectRequest(sources=(str(vol),), case=tmp_path / "helper", examiner="t"), NullProgress())
    assert spawned and all(c.proc.returncode == 0 for h in spawned for c in h._children)  # ended with the plan
    assert {len(h._children) for h in spawned} == {int(helpers)}
    assert started_before_run == [True]  # copying began while the walk went on
    skip = ("artifact_id", "collected_at")
    a = [{k: v for k, v in r.items() if k not in skip} for r in _rows(tmp_path / "inproc")]
    b = [{k: v for k, v in r.items() if k not in skip} for r in _rows(tmp_path / "helper")]
    assert a == b
    rows = _rows(tmp_path / "helper")
    stored = [r for r in rows if r["outcome"] in ("success", "empty")]
    assert len(stored) >= 126 and any(r["outcome"] == "empty" for r in stored)
    encoded = [r["relpath"] for r in stored if "%" in r["relpath"].rsplit("/", 1)[-1] or "~" in r["relpath"]]
    assert len(encoded) >= 4  # the hostile names went through the helper's per-folder components too
    for r in stored[:: max(1, len(stored) // 25)]:  # the bytes are the source's, hashed as recorded, read-only
        copy = tmp_path / "helper" / r["relpath"]
        size, digests = hash_file(copy, ("md5", "sha256"))
        assert (size, digests["md5"], digests["sha256"]) == (r["size"], r["md5"], r["sha256"])
        assert copy.read_bytes() == Path(r["source_path"]).read_bytes()
        st, src = copy.stat(), Path(r["source_path"]).stat()
        assert st.st_mode & 0o777 == 0o444 and st.st_mtime == src.st_mtime
    case = Case.open(tmp_path / "helper")
    count, problems = case.custody.verify()
    assert not problems and count == len(list(case.custody.events()))
    collected = [e["details"]["artifact_id"] for e in case.custody.events() if e["action"] == "collect"]
    assert collected == [r["artifact_id"] for r in rows]


def test_a_source_swapped_for_a_link_after_the_walk_fails_in_the_same_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vol = _volume(tmp_path, 40)
    victim = vol / "inetpub/wwwroot/aspnet_client/system_web/page0005.js"
    real_copy = collect_mod._Plan.copy

    def swap_then_plan(self: collect_mod._Plan, size: int | None, fn: object, *args: object, **kw: object) -> None:
        # listed as a file by the walk, a link by the time it is copied (the helper starts copying during the walk)
        if any(getattr(a, "source_path", None) == str(victim) for a in args) and not victim.is_symlink():
            victim.unlink()
            victim.symlink_to(vol / "inetpub/wwwroot/aspnet_client/system_web/page0006.js")
        real_copy(self, size, fn, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(collect_mod._Plan, "copy", swap_then_plan)
    monkeypatch.setattr(collect_mod, "HELPER_MIN", 1)
    rows = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("TRIAGE_COPY_HELPER", mode)
        if victim.is_symlink():
            victim.unlink()
            victim.write_bytes(b"restored")
        case = tmp_path / f"case{mode}"
        summary = collect(CollectRequest(sources=(str(vol),), case=case, examiner="t"), NullProgress())
        assert summary.stats.failures == 1
        (row,) = [r for r in _rows(case) if r["source_path"] == str(victim)]
        assert row["outcome"] == "failure" and not row["relpath"]
        rows[mode] = row
    assert rows["0"]["details"] == rows["1"]["details"]
    assert "symbolic link" in rows["1"]["details"] and not rows["1"]["details"].startswith("write error")


def test_a_helper_that_dies_fails_the_collect_loudly(tmp_path: Path) -> None:
    from triage.errors import CollectionFailed

    src = tmp_path / "s.txt"
    src.write_bytes(b"x")
    helper = CopyHelper()
    helper.proc.kill()
    helper.proc.wait()
    with pytest.raises(CollectionFailed, match="copy helper process ended unexpectedly"):
        helper.ask(str(src), str(tmp_path), "copy.txt", None, None, 1, ("sha256",))
        helper.take(str(src))
    helper.close()


def test_a_second_helper_that_dies_fails_the_collect_loudly(tmp_path: Path) -> None:
    from triage.errors import CollectionFailed

    sources = []
    for i in range(80):  # three request frames: the second goes to the second helper
        p = tmp_path / f"s{i}.txt"
        p.write_bytes(b"x" * (i + 1))
        sources.append(p)
    folder = tmp_path / "dst"
    folder.mkdir()
    helper = CopyHelper(2)
    second = helper._children[1].proc
    second.kill()
    second.wait()
    with pytest.raises(CollectionFailed, match="copy helper process ended unexpectedly"):
        for p in sources:  # its frame cannot be written (or its answers never come)
            helper.ask(str(p), str(folder), p.name, None, None, p.stat().st_size, ("sha256",))
        for p in sources:
            helper.take(str(p))
    helper.close()
    assert helper.proc.returncode == 0  # the first one ended at its closed pipe


def test_a_walk_that_stops_leaves_no_helper_and_no_copy_without_its_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vol = _volume(tmp_path, 150)
    monkeypatch.setattr(collect_mod, "HELPER_MIN", 1)
    spawned = _record_helpers(monkeypatch)
    real_copy = collect_mod._Plan.copy
    planned = [0]

    def copy_until(self: collect_mod._Plan, size: int | None, fn: object, *args: object, **kw: object) -> None:
        planned[0] += 1
        if planned[0] == 120:  # the helper has been copying the files planned before this one
            raise KeyboardInterrupt
        real_copy(self, size, fn, *args, **kw)  # type: ignore[arg-type]

    removed: list[str] = []
    real_close = CopyHelper.close

    def close(self: CopyHelper) -> list[str]:
        removed.extend(real_close(self))
        return removed

    monkeypatch.setattr(CopyHelper, "close", close)
    monkeypatch.setattr(collect_mod._Plan, "copy", copy_until)
    case = tmp_path / "case"
    with pytest.raises(KeyboardInterrupt):
        collect(CollectRequest(sources=(str(vol),), case=case, examiner="t"), NullProgress())
    assert spawned and all(c.proc.returncode == 0 for h in spawned for c in h._children)
    rows = _rows(case) if (case / "manifest.jsonl").exists() else []  # no step ran: no row yet
    stored = {r["relpath"] for r in rows if r.get("relpath")}
    on_disk = {os.path.relpath(os.path.join(d, f), case) for d, _, fs in os.walk(case / "evidence") for f in fs}
    assert len(removed) >= 96 and on_disk == stored  # the copies made during the walk were removed with the helper
    monkeypatch.setattr(collect_mod._Plan, "copy", real_copy)
    summary = collect(CollectRequest(sources=(str(vol),), case=case, examiner="t"), NullProgress())
    assert summary.stats.failures == 0
    out = subprocess.run([TRIAGE, "verify", str(case), "-q"], capture_output=True, timeout=120)
    assert out.returncode == ExitCode.OK, out.stdout


def test_helper_copy_failures_read_as_in_process_ones(tmp_path: Path) -> None:
    folder = tmp_path / "dst"
    folder.mkdir()
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 5000)
    (folder / "a.log").write_bytes(b"taken")  # the name is taken: the copy becomes a~2.log, as Case._create names it
    ok = _copy_child.copy_one((0, str(src), str(folder), "a.log", 1.5e9, 1.6e9, 5000, ("sha256", "md5")))
    assert ok[1] == "a~2.log" and ok[2] == 5000 and ok[4] is None
    assert (folder / "a~2.log").stat().st_mtime == 1.6e9 and (folder / "a~2.log").stat().st_mode & 0o777 == 0o444
    gone = tmp_path / "gone.bin"
    bad = _copy_child.copy_one((1, str(gone), str(folder), "b.log", None, None, 10, ("sha256",)))
    case_side, type_name, text, strerror = bad[4]
    try:
        os.open(gone, os.O_RDONLY)
    except OSError as exc:
        assert (type_name, text, strerror) == (type(exc).__name__, str(exc), exc.strerror)
    assert case_side is False and not (folder / "b.log").exists()  # the copy it created was removed again
    # the folder is not writable as a folder: a case-side error (written as 'write error: ...')
    bad = _copy_child.copy_one((2, str(src), str(folder / "a.log"), "c.log", None, None, 10, ("sha256",)))
    assert bad[4][0] is True and bad[4][1] == "NotADirectoryError"


def test_copies_asked_for_and_not_taken_are_removed_when_the_helper_closes(tmp_path: Path) -> None:
    folder = tmp_path / "dst"
    folder.mkdir()
    sources = []
    for i in range(70):  # more than one request frame
        p = tmp_path / f"s{i}.txt"
        p.write_bytes(os.urandom(i + 1))
        sources.append(p)
    helper = CopyHelper()
    for p in sources:
        helper.ask(str(p), str(folder), p.name, None, p.stat().st_mtime, p.stat().st_size, ("sha256", "md5"))
    first = helper.take(str(sources[0]))
    assert first[1:3] == ("s0.txt", 1)
    with pytest.raises(CopyError):
        helper.ask(str(tmp_path / "missing"), str(folder), "m.txt", None, None, 1, ("sha256",))
        helper.take(str(tmp_path / "missing"))
    removed = helper.close()
    assert len(removed) == 69 and sorted(os.listdir(folder)) == ["s0.txt"]
    assert helper.proc.returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["copy:3", "placed:40", "row:70", "head:100"])
def test_a_collect_killed_while_the_helper_copies_resumes_clean(stage: str, tmp_path: Path) -> None:
    vol = _volume(tmp_path, 150)
    env = {**os.environ, "TRIAGE_EXAMINER": "tester", "TRIAGE_COPY_HELPER_MIN": "1"}
    case = tmp_path / "case"
    cmd = [TRIAGE, "collect", str(vol), "--case", str(case), "-q"]
    res = subprocess.run(cmd, env={**env, "TRIAGE_TEST_KILL_AT": stage}, capture_output=True, text=True, timeout=120)
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    out = subprocess.run([TRIAGE, "verify", str(case), "-q"], env=env, capture_output=True, timeout=120)
    assert out.returncode == ExitCode.INCOMPLETE
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    out = subprocess.run([TRIAGE, "verify", str(case), "-q"], env=env, capture_output=True, timeout=120)
    assert out.returncode == ExitCode.OK, out.stdout
    rows = _rows(case)
    stored = [r["relpath"] for r in rows if r["outcome"] in ("success", "empty")]
    assert len(stored) == len(set(stored)) >= 151 and not [r for r in stored if "~2" in r]
    on_disk = {os.path.relpath(os.path.join(d, f), case) for d, _, fs in os.walk(case / "evidence") for f in fs}
    assert on_disk == set(stored)  # every copy the helper made before the kill was removed or has its row


@pytest.mark.parametrize("umask", [0o022, 0o277])
def test_helper_copies_are_read_only_whatever_the_umask(umask: int, tmp_path: Path) -> None:
    src = tmp_path / "s.txt"
    src.write_bytes(b"evidence")
    old = os.umask(umask)
    try:
        helper = CopyHelper()  # the helper inherits the umask, as a collect's would
    finally:
        os.umask(old)
    helper.ask(str(src), str(tmp_path), "copy.txt", None, 1.6e9, 8, ("sha256",))
    assert helper.take(str(src))[1:3] == ("copy.txt", 8)
    helper.close()
    st = (tmp_path / "copy.txt").stat()
    assert st.st_mode & 0o777 == 0o444 and st.st_mtime == 1.6e9


def test_helper_count_comes_from_the_environment_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    from triage.copyhelper import helpers

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    for value, count in (("3", 3), ("0", 1), ("many", 2), ("", 2)):
        monkeypatch.setenv("TRIAGE_COPY_HELPERS", value)
        assert helpers() == count
    monkeypatch.delenv("TRIAGE_COPY_HELPERS")
    for cores, count in ((1, 1), (2, 1), (3, 2), (8, 2)):  # the command keeps a core of its own where there are 2
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert helpers() == count
