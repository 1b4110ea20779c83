"""Bad case folders and bad --case values: a one-line error and a named exit code, never a traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from triage.case import Case
from triage.cli import main
from triage.errors import ExitCode


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err and code != ExitCode.INTERNAL, err
    return code, err


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("ERROR")]
    assert len(lines) == 1, err
    return lines[0]


def test_case_naming_a_file(tmp_path: Path, volume: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("x")
    for argv in (
        ["collect", str(volume), "--case", str(f)],
        ["analyze", str(f)],
        ["verify", str(f)],
        ["report", str(f)],
    ):
        code, err = _run([*argv, "-q"], capsys)
        assert code == ExitCode.USAGE, (argv, err)
        assert "is not a folder" in _error_line(err)
    assert f.read_text() == "x"


@pytest.mark.parametrize("content", [b"[1, 2]", b"{}", b'{"case_id": "A", "case_id": "B"}', b"\xff\xfe", b'{"case_'])
def test_bad_case_json(content: bytes, case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.close()
    (case.path / "case.json").write_bytes(content)
    for argv in (["verify", str(case.path)], ["analyze", str(case.path), "-j", "1"], ["report", str(case.path)]):
        code, err = _run([*argv, "-q"], capsys)
        assert code == ExitCode.INTEGRITY, (argv, err)
        assert "case.json" in _error_line(err)


def test_truncated_manifest_line(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.close()
    data = case.manifest_path.read_bytes()
    case.manifest_path.write_bytes(data[: data.rfind(b"\n", 0, len(data) - 1) + 40])  # last row cut mid-way
    code, err = _run(["verify", str(case.path), "-q"], capsys)
    assert code == ExitCode.INTEGRITY  # the cut row's custody event exists: a row is gone, not just cut
    code, err = _run(["report", str(case.path), "-q"], capsys)
    assert code == ExitCode.INTEGRITY and "manifest.jsonl line" in _error_line(err)


def test_garbage_manifest_line_in_the_middle(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.close()
    lines = case.manifest_path.read_text().splitlines()
    lines[3] = lines[3][:25]
    case.manifest_path.write_text("\n".join(lines) + "\n")
    code, err = _run(["analyze", str(case.path), "-q", "-j", "1"], capsys)
    assert code == ExitCode.INTEGRITY and "manifest.jsonl line 4" in _error_line(err)


def test_truncated_custody_line_is_repaired(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.close()
    with open(case.custody.path, "ab") as fh:
        fh.write(b'{"seq": 999, "act')
    code, err = _run(["verify", str(case.path), "-q"], capsys)
    assert code == ExitCode.OK, err
    events = [json.loads(line) for line in case.custody.path.read_text().splitlines()]
    assert events[-2]["action"] == "repair" and events[-1]["action"] == "verify"


@pytest.mark.parametrize("content", [b"garbage", b'{"seq": "x", "hash": 5}', b"\x00" * 128, b'{"seq": 3}'])
def test_garbage_head(content: bytes, case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    case.close()
    case.custody.head_path.write_bytes(content)
    code, err = _run(["verify", str(case.path), "-q"], capsys)
    assert code == ExitCode.INTEGRITY
    code, err = _run(["analyze", str(case.path), "-q", "-j", "1"], capsys)
    assert code == ExitCode.INTEGRITY and "custody.head" in _error_line(err)


def test_over_long_path_component(tmp_path: Path, volume: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long = tmp_path / ("c" * 300)
    code, err = _run(["collect", str(volume), "--case", str(long), "-q"], capsys)
    assert code == ExitCode.USAGE and "File name too long" in _error_line(err)
    code, err = _run(["verify", str(long), "-q"], capsys)
    assert code == ExitCode.USAGE


def test_folder_that_is_not_a_case(tmp_path: Path, volume: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "a.txt").write_text("x")
    code, err = _run(["verify", str(tmp_path / "stuff"), "-q"], capsys)
    assert code == ExitCode.USAGE and "case.json is missing" in _error_line(err)
    code, err = _run(["collect", str(volume), "--case", str(tmp_path / "stuff"), "-q"], capsys)
    assert code == ExitCode.USAGE and "not empty" in _error_line(err)


@pytest.fixture
def ro_mount(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs that the test remounts read-only (root only; skipped with the reason elsewhere)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: the read-only media test needs a tmpfs")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode}): needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_read_only_case(ro_mount: Path, case: Case, volume: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Archived media: verify checks everything without writing and says where it could not record."""
    case.custody.append("collect_begin", collect_id="c1", sources=[str(volume)])
    case.custody.append("collect_end", collect_id="c1", write_failures=0)
    case.close()
    dst = ro_mount / "case"
    shutil.copytree(case.path, dst, symlinks=True)
    (dst / ".lock").unlink(missing_ok=True)  # archived without the lock file: verify must not need to create it
    subprocess.run(["mount", "-o", "remount,ro", str(ro_mount)], check=True)
    before = (dst / "custody.jsonl").read_bytes()
    capsys.readouterr()
    code = main(["verify", str(dst), "--json", "-q"])
    captured = capsys.readouterr()
    assert code == ExitCode.OK, captured.out
    out = json.loads(captured.out)
    assert out["artifacts_checked"] == 18
    assert out["recorded"].startswith(f"not recorded: {dst} cannot be written")
    assert (dst / "custody.jsonl").read_bytes() == before
    code, err = _run(["analyze", str(dst), "-q", "-j", "1"], capsys)
    assert code == ExitCode.USAGE and "Read-only file system" in _error_line(err)
    code, err = _run(["collect", str(volume), "--case", str(ro_mount / "new"), "-q"], capsys)
    assert code == ExitCode.USAGE and "cannot create the case folder" in _error_line(err)


def test_every_command_ends_with_the_head(tmp_path: Path, volume: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "case"
    capsys.readouterr()
    assert main(["collect", str(volume), "--case", str(case), "--json", "-q"]) == ExitCode.OK
    captured = capsys.readouterr()
    head = json.loads((case / "custody.head").read_text())
    assert json.loads(captured.out)["custody_head"] == head
    assert f"custody head: event {head['seq']} {head['hash']}" in captured.err
    events = (case / "custody.jsonl").read_text().splitlines()
    assert json.loads(events[-1])["hash"] == head["hash"] and json.loads(events[-1])["action"] == "collect_end"


def test_a_case_half_created_by_another_command_is_not_refused(tmp_path: Path) -> None:
    """What a concurrent creator holds before its case.json (lock, temp file, empty sub-folders) is no stranger's
    folder; a sub-folder with content is."""
    p = tmp_path / "case"
    p.mkdir()
    (p / ".lock").touch()
    (p / "evidence").mkdir()
    (p / "results").mkdir()
    case = Case.create_or_open(p, examiner="t")
    assert (p / "case.json").is_file() and case.case_id.startswith("CASE-")
    case.close()
    other = tmp_path / "other"
    (other / "evidence").mkdir(parents=True)
    (other / "evidence" / "x.bin").write_bytes(b"x")
    with pytest.raises(Exception, match="is not empty and is not a case folder"):
        Case.create_or_open(other, examiner="t")
