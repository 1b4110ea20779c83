"""A full disk: collection fails loudly with the count of files, verify never says OK, the custody log
is repaired to its last whole line on the next command, and a rerun with space resumes clean."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from triage.custody import CustodyLog
from triage.errors import ExitCode

TRIAGE = str(Path(sys.executable).with_name("triage"))


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only; skipped with the reason elsewhere)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: the full-disk test needs a small tmpfs")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({res.stderr.strip() or res.returncode}): needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRIAGE_EXAMINER": "tester"}
    env.pop("TRIAGE_TEST_KILL_AT", None)
    return subprocess.run([TRIAGE, *args], env=env, capture_output=True, text=True, timeout=120)


def test_full_disk_fails_collect_then_resumes(small_fs: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = []
    for i in range(8):  # 3.2 MB of loose files into 2 MiB
        f = src / f"dump{i}.dmp"  # a minidump header, so the recogniser takes them for evidence
        f.write_bytes(b"MDMP\x93\xa7\x00\x00" + os.urandom(400_000))
        files.append(str(f))
    case = small_fs / "case"
    res = _run("collect", *files, "--as", "files", "--host", "H", "--case", str(case), "-q", "--json")
    assert res.returncode == ExitCode.COLLECTION_FAILED, res.stderr
    last = res.stderr.strip().splitlines()
    error = next(line for line in last if line.startswith("ERROR triage:"))
    assert "files could not be written into" in error and "No space left on device" in error
    assert "Traceback" not in res.stderr
    failed = int(error.split("ERROR triage: ")[1].split()[0])
    assert 1 <= failed < 8

    res = _run("verify", str(case), "-q", "--json")
    out = json.loads(res.stdout)
    assert res.returncode in (ExitCode.COLLECTION_FAILED, ExitCode.INCOMPLETE) and not out["ok"], out
    if res.returncode == ExitCode.COLLECTION_FAILED:
        assert len(out["collection_failed"]) == failed

    subprocess.run(["mount", "-o", "remount,size=16m", str(small_fs)], check=True)
    res = _run("collect", *files, "--as", "files", "--host", "H", "--case", str(case), "-q", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.split("\n}\n")[0] + "\n}")["already_collected"] == 8 - failed
    res = _run("verify", str(case), "-q", "--json")
    assert res.returncode == ExitCode.OK, res.stdout
    assert json.loads(res.stdout)["artifacts_checked"] == 8


def test_full_disk_while_appending_custody(small_fs: Path) -> None:
    log = CustodyLog(small_fs, actor="tester")
    log.append("create", case_id="C1")
    filler = small_fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the file system to the last byte
        for size in (1 << 16, 4096, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        for i in range(50):  # the page the log ends in has room for a part of one event at most
            log.append("collect", n=i, pad="x" * 3000)
    head_before = log.head()
    filler.unlink()
    raw = log.path.read_bytes()
    log.append("note", text="space freed")  # repairs first: nothing is appended after a partial line
    events = [json.loads(line) for line in log.path.read_text().splitlines()]
    actions = [e["action"] for e in events]
    assert actions[-1] == "note"
    if not raw.endswith(b"\n"):  # the usual outcome on tmpfs: part of the event fitted
        assert actions[-2] == "repair"
        assert events[-2]["details"]["removed_bytes"] == len(raw) - (raw.rfind(b"\n") + 1)
    assert events[-1]["seq"] == head_before[0] + 1 + (1 if not raw.endswith(b"\n") else 0)
    assert log.verify() == (len(events), [])


def test_partial_custody_line_repaired_by_next_command(tmp_path: Path) -> None:
    """A log cut mid-line (as a full disk leaves it): verify repairs it with an event and exits 0, not 70."""
    from triage.case import Case
    from triage.cli import main

    case = Case.create_or_open(tmp_path / "case", examiner="tester")
    case.custody.append("collect_begin", collect_id="x", sources=[])
    case.custody.append("collect_end", collect_id="x", write_failures=0)
    case.close()
    with open(case.custody.path, "ab") as fh:
        fh.write(b'{"action": "collect", "actor": "tes')
    reopened = Case.open(case.path)
    from triage.verify import verify_case

    rep = verify_case(reopened, record=False)  # read-only look: incomplete, not tampered
    assert rep.exit_code == ExitCode.INCOMPLETE and not rep.problems
    assert main(["verify", str(case.path), "-q"]) == ExitCode.OK
    events = [json.loads(line) for line in case.custody.path.read_text().splitlines()]
    assert [e["action"] for e in events[-2:]] == ["repair", "verify"]
    assert events[-2]["details"]["removed_bytes"] == len(b'{"action": "collect", "actor": "tes')
