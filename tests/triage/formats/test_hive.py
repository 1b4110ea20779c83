"""The one hive reader and transaction logs: replayed on a copy, and a damaged log costs only itself."""

from __future__ import annotations

from pathlib import Path

from triage.formats.hive import Hive
from triage.testing.hives import dirty_pair, system_hive

NAME_KEY = r"ControlSet001\Control\ComputerName\ComputerName"


def _write(tmp_path: Path, damage: bool = False) -> tuple[Path, list[Path], bytes]:
    """A dirty SYSTEM hive naming OLD-NAME01 whose .LOG1 renames it MAIL-SRV09 (``damage``: the log's pages cut)."""
    hive_bytes, log1 = dirty_pair(system_hive(hostname="OLD-NAME01"), system_hive(hostname="MAIL-SRV09"))
    (tmp_path / "SYSTEM").write_bytes(hive_bytes)
    (tmp_path / "SYSTEM.LOG1").write_bytes(log1[:600] + b"\xff" * 64 if damage else log1)
    return tmp_path / "SYSTEM", [tmp_path / "SYSTEM.LOG1"], hive_bytes


def test_the_log_is_replayed_on_a_copy(tmp_path: Path) -> None:
    path, logs, original = _write(tmp_path)
    with Hive(path, logs=logs) as h:
        assert h.value(NAME_KEY, "ComputerName") == "MAIL-SRV09"
        assert h.applied_logs == ["SYSTEM.LOG1"]
    with Hive(path) as h:  # without its log: the primary file as it is, and a warning that says so
        assert h.value(NAME_KEY, "ComputerName") == "OLD-NAME01"
        assert "no usable transaction log (none collected)" in h.warnings[0]
    assert path.read_bytes() == original


def test_a_log_that_replays_garbage_falls_back_to_the_primary_file(tmp_path: Path) -> None:
    path, logs, original = _write(tmp_path, damage=True)
    with Hive(path, logs=logs) as h:
        assert h.ok
        assert h.value(NAME_KEY, "ComputerName") == "OLD-NAME01"
        assert h.applied_logs == []
        assert any("applied cannot be parsed" in w and "reading the primary file as is" in w for w in h.warnings)
    assert path.read_bytes() == original
