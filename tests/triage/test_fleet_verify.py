"""``triage verify FLEET``: the worst host code in a documented order, each host's head, ``--head HOST=HASH``."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest

from triage.case import Case
from triage.cli import main
from triage.errors import ExitCode
from triage.fleet import VERIFY_SEVERITY, worst_verify_code


def _host(root: Path, name: str, *, end: bool = True, write_failures: int = 0) -> Case:
    """A small host case under ``root/hosts/NAME``: a collect that ended (or was cut before its end)."""
    case = Case.create_or_open(root / "hosts" / name, examiner="tester")
    case.custody.append("collect_begin", collect_id=f"c-{name}", sources=[f"/src/{name}"])
    if end:
        case.custody.append("collect_end", collect_id=f"c-{name}", write_failures=write_failures)
    case.close()
    return case


def _verify(*argv: str) -> tuple[int, dict, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["verify", *argv, "--json", "-q"])
    text = out.getvalue()
    return code, (json.loads(text) if text.strip() else {}), err.getvalue()


def _head(case: Case) -> str:
    return case.custody.head()[1]


def test_fleet_verify_code_is_the_worst_host_code(tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    a = _host(root, "EXCH01")
    _host(root, "EXCH02", end=False)  # a collect killed before collect_end: incomplete
    code, out, err = _verify(str(root))
    assert code == ExitCode.INCOMPLETE, out  # was 3 before: an interruption is not tampering
    assert {h: r["exit_code"] for h, r in out["hosts"].items()} == {"EXCH01": 0, "EXCH02": 6}
    assert out["exit_code"] == 6 and out["ok"] is False
    # every host case's head is printed (stderr) and in the summary
    for host in ("EXCH01", "EXCH02"):
        head = out["hosts"][host]["custody_head"]
        assert f"custody head {host}: event {head['seq']} {head['hash']}" in err
    assert out["hosts"]["EXCH01"]["custody_head"]["hash"] == _head(a)

    _host(root, "EXCH03", write_failures=2)  # files a collect could not write: 5 outranks 6
    code, out, _ = _verify(str(root))
    assert code == ExitCode.COLLECTION_FAILED
    assert out["hosts"]["EXCH03"]["exit_code"] == 5

    cj = a.path / "case.json"  # a changed case.json: 3 outranks everything
    os.chmod(cj, 0o644)
    cj.write_text(cj.read_text().replace("tester", "mallory"))
    code, out, _ = _verify(str(root))
    assert code == ExitCode.INTEGRITY
    assert out["hosts"]["EXCH01"]["exit_code"] == 3


def test_worst_code_order_is_documented() -> None:
    assert VERIFY_SEVERITY[:3] == (ExitCode.INTEGRITY, ExitCode.COLLECTION_FAILED, ExitCode.INCOMPLETE)
    assert worst_verify_code([ExitCode.OK, ExitCode.INCOMPLETE, ExitCode.COLLECTION_FAILED]) == 5
    assert worst_verify_code([ExitCode.USAGE, ExitCode.COLLECTION_FAILED]) == ExitCode.USAGE
    assert worst_verify_code([ExitCode.USAGE, ExitCode.INTEGRITY]) == ExitCode.INTEGRITY
    assert worst_verify_code([]) == ExitCode.INTEGRITY  # an empty fleet verified nothing
    assert worst_verify_code([ExitCode.OK, ExitCode.OK]) == ExitCode.OK


def test_fleet_head_per_host(tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    a, b = _host(root, "EXCH01"), _host(root, "EXCH02")
    head_a, head_b = _head(a), _head(b)
    # one bare hash cannot say which host it belongs to
    code, _, err = _verify(str(root), "--head", head_a)
    assert code == ExitCode.USAGE and "--head HOST=HASH" in err and "Traceback" not in err
    code, _, err = _verify(str(root), "--head", f"EXCH09={head_a}")
    assert code == ExitCode.USAGE and "EXCH09" in err
    code, _, err = _verify(str(root), "--head", f"EXCH01={head_a}", "--head", f"exch01={head_a}")
    assert code == ExitCode.USAGE and "twice" in err
    code, _, _ = _verify(str(root), "--head", "EXCH01=not-a-hash")
    assert code == ExitCode.USAGE
    # each head checked against its own host's chain only (host names match case-insensitively)
    code, out, _ = _verify(str(root), "--head", f"exch01={head_a}", "--head", f"EXCH02={head_b}")
    assert code == ExitCode.OK, out
    assert out["hosts"]["EXCH01"]["anchor"]["found"] and out["hosts"]["EXCH02"]["anchor"]["found"]
    code, out, _ = _verify(str(root), "--head", f"EXCH01={head_a}")  # a host without --head is verified without
    assert code == ExitCode.OK and out["hosts"]["EXCH02"]["anchor"] is None
    code, out, _ = _verify(str(root), "--head", f"EXCH01={head_b}")  # another host's head is not in this chain
    assert code == ExitCode.INTEGRITY
    assert out["hosts"]["EXCH01"]["anchor"]["found"] is False and out["hosts"]["EXCH02"]["exit_code"] == 0


def test_single_case_takes_one_head(tmp_path: Path) -> None:
    case = Case.create_or_open(tmp_path / "case", examiner="tester")
    case.custody.append("collect_begin", collect_id="x", sources=["/src"])
    case.custody.append("collect_end", collect_id="x", write_failures=0)
    case.close()
    head = _head(case)
    code, out, _ = _verify(str(case.path), "--head", head)
    assert code == ExitCode.OK and out["anchor"]["found"]
    code, _, err = _verify(str(case.path), "--head", head, "--head", head)
    assert code == ExitCode.USAGE and "once" in err


@pytest.mark.parametrize("bad", ["{}", "[1, 2]"])
def test_an_unopenable_host_case_costs_only_itself(tmp_path: Path, bad: str) -> None:
    root = tmp_path / "fleet"
    _host(root, "EXCH01")
    broken = _host(root, "EXCH02")
    os.chmod(broken.path / "case.json", 0o644)
    (broken.path / "case.json").write_text(bad)
    code, out, err = _verify(str(root))
    assert code == ExitCode.INTEGRITY and "Traceback" not in err
    assert out["hosts"]["EXCH01"]["exit_code"] == 0 and out["hosts"]["EXCH02"]["exit_code"] == 3


def test_an_unreadable_host_case_is_reported_under_its_host(tmp_path: Path, monkeypatch) -> None:
    from triage.app import fleet as app_fleet

    root = tmp_path / "fleet"
    _host(root, "EXCH01")
    _host(root, "EXCH02")
    real = app_fleet.verify_one

    def verify(request, progress):
        if Path(request.case).name == "EXCH02":  # as an unreadable folder on archived media would
            raise PermissionError(13, "Permission denied", str(Path(request.case) / "custody.jsonl"))
        return real(request, progress)

    monkeypatch.setattr(app_fleet, "verify_one", verify)
    code, out, err = _verify(str(root))
    assert code == ExitCode.USAGE and "Traceback" not in err
    assert out["hosts"]["EXCH01"]["exit_code"] == 0
    assert out["hosts"]["EXCH02"]["exit_code"] == 2
    assert "Permission denied" in out["hosts"]["EXCH02"]["problems"][0]["problem"]
