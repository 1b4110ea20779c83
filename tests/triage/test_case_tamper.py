"""The tamper matrix: every kind of file in a finished case, edited, deleted or truncated, and the other
ways to slip something past verify; each must give the exit code named here."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from triage.cli import main
from triage.errors import ExitCode
from triage.testing.volume import VolumeSpec, build_volume

pytestmark = pytest.mark.slow  # one real collect + analyze + report for the module (~15 s), then fast cases

TRIAGE = str(Path(sys.executable).with_name("triage"))
ONLY = "webshell_locations,registry_rules,exchange_weblogs"


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("tamper")
    vol = build_volume(base / "vol", VolumeSpec())
    case = base / "case"
    env = {**os.environ, "TRIAGE_EXAMINER": "tester"}
    env.pop("TRIAGE_TEST_KILL_AT", None)
    res = subprocess.run(
        [TRIAGE, "run", str(vol), "--case", str(case), "-q", "-j", "1", "--only", ONLY],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert main(["verify", str(case), "-q"]) == ExitCode.OK
    return case


def _first(case: Path, pattern: str) -> Path:
    found = sorted(case.glob(pattern))
    assert found, pattern
    return found[0]


KINDS: dict[str, str] = {
    "case.json": "case.json",
    "manifest": "manifest.jsonl",
    "custody": "custody.jsonl",
    "custody.head": "custody.head",
    "evidence": "evidence/*/*/*/Windows/System32/config/SYSTEM",
    "results parquet": "results/*/*.parquet",
    "unit record": "results/*/*.run.json",
    "run record": "runs/run-*.json",
    "report html": "report/report.html",
    "report parquet": "report/findings.parquet",
    "report csv": "report/findings.csv",
    "ledger": "report/ledger.json",
}


def _edit(p: Path) -> None:
    os.chmod(p, stat.S_IRUSR | stat.S_IWUSR)
    data = bytearray(p.read_bytes())
    i = len(data) // 2
    data[i] = ord("0") if data[i] != ord("0") else ord("1")  # stays text where it was text
    p.write_bytes(bytes(data))


def _delete(p: Path) -> None:
    p.unlink()


def _truncate(p: Path) -> None:
    os.chmod(p, stat.S_IRUSR | stat.S_IWUSR)
    os.truncate(p, max(0, p.stat().st_size // 3))


OPS: dict[str, Callable[[Path], None]] = {"edited": _edit, "deleted": _delete, "truncated": _truncate}


@pytest.fixture
def copy(golden: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "case"
    shutil.copytree(golden, dst, symlinks=True)
    return dst


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_tamper_matrix(kind: str, op: str, copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = _first(copy, KINDS[kind])
    OPS[op](target)
    capsys.readouterr()
    code = main(["verify", str(copy), "-q", "--json"])
    captured = capsys.readouterr()
    assert code == ExitCode.INTEGRITY, (kind, op, captured.out[-2000:], captured.err[-2000:])
    assert "Traceback" not in captured.err
    if captured.out.strip():  # case.json damage ends in a one-line error instead of a report
        out = json.loads(captured.out)
        assert out["ok"] is False and out["problems"]


def test_deleting_one_results_parquet_is_named(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = _first(copy, "results/*/*.parquet")
    target.unlink()
    capsys.readouterr()
    assert main(["verify", str(copy), "-q", "--json"]) == ExitCode.INTEGRITY
    out = json.loads(capsys.readouterr().out)
    rel = target.relative_to(copy).as_posix()
    assert {"where": rel, "problem": "result file recorded in the custody log is missing"} in out["problems"]


@pytest.mark.parametrize(
    ("name", "tamper"),
    [
        ("stray file at the root", lambda c: (c / "notes.txt").write_text("x")),
        ("stray file in report", lambda c: (c / "report" / "extra.html").write_text("<p>")),
        ("stray file in results", lambda c: (c / "results" / "webshell_locations" / "Afake.parquet").write_bytes(b"x")),
        ("stray file in runs", lambda c: (c / "runs" / "run-fake.json").write_text("{}")),
        ("symlink in results", lambda c: (c / "results" / "link").symlink_to("/etc/hostname")),
        ("empty folder in evidence", lambda c: (c / "evidence" / "EXCH01" / "planted").mkdir()),
        ("writable evidence", lambda c: os.chmod(_first(c, KINDS["evidence"]), 0o644)),
        ("garbage head", lambda c: (c / "custody.head").write_bytes(b"\x00garbage\xff")),
    ],
)
def test_other_tampering(name: str, tamper: Callable[[Path], object], copy: Path) -> None:
    tamper(copy)
    assert main(["verify", str(copy), "-q"]) == ExitCode.INTEGRITY, name


def test_duplicated_key_in_manifest_row(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = (copy / "manifest.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    # a reader keeps the last 'source_path', a human reading the line sees the first
    lines[0] = lines[0][:-1] + ', "source_path": "C:\\\\elsewhere"}'
    (copy / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["verify", str(copy), "-q", "--json"]) == ExitCode.INTEGRITY
    out = json.loads(capsys.readouterr().out)
    assert {"where": "manifest.jsonl line 1", "problem": "not a manifest row (duplicated key 'source_path')"} in out[
        "problems"
    ]
    assert row["artifact_id"]


def _drop_last_and_rewrite_head(case: Path, n: int) -> None:
    lines = (case / "custody.jsonl").read_text().splitlines()
    kept = lines[:-n]
    (case / "custody.jsonl").write_text("\n".join(kept) + "\n")
    last = json.loads(kept[-1])
    (case / "custody.head").write_text(json.dumps({"seq": last["seq"], "hash": last["hash"]}).ljust(128))


def test_head_kept_elsewhere_catches_dropped_events(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["verify", str(copy), "-q", "--json"]) == ExitCode.OK
    captured = capsys.readouterr()
    kept_head = json.loads(captured.out)["custody_head"]["hash"]
    assert "custody head: event " in captured.err and kept_head in captured.err  # printed for the analyst to keep
    # erase the verify that just passed (and its record) the way an intruder would
    _drop_last_and_rewrite_head(copy, 1)
    capsys.readouterr()
    assert main(["verify", str(copy), "-q", "--json", "--head", kept_head]) == ExitCode.INTEGRITY
    out = json.loads(capsys.readouterr().out)
    assert out["anchor"] == {"hash": kept_head, "found": False}
    assert any("head kept elsewhere" in p["problem"] for p in out["problems"])


def test_head_kept_elsewhere_counts_later_events(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = json.loads((copy / "custody.head").read_text())
    for _ in range(2):
        assert main(["verify", str(copy), "-q"]) == ExitCode.OK
    capsys.readouterr()
    assert main(["verify", str(copy), "-q", "--json", "--head", head["hash"]]) == ExitCode.OK
    out = json.loads(capsys.readouterr().out)
    assert out["anchor"] == {"hash": head["hash"], "found": True, "seq": head["seq"], "events_after": 2}


def test_bad_head_argument_is_a_usage_error(copy: Path) -> None:
    assert main(["verify", str(copy), "-q", "--head", "not-a-hash"]) == ExitCode.USAGE
