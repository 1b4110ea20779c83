"""``Hive.walk``: every key of a hive once, with its own last-write time, in bounded memory; damage costs itself."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from triage.formats.hive import Hive
from triage.testing.regf import HiveBuilder

T_ROOT = datetime(2021, 1, 1, tzinfo=UTC)
T_TASK = datetime(2021, 3, 3, 2, 50, 1, tzinfo=UTC)


def _hive(path: Path) -> Path:
    hb = HiveBuilder(timestamp=T_ROOT)
    hb.set_value(r"Microsoft\Windows NT\CurrentVersion", "ProductName", "Windows Server 2016")
    hb.add_key(r"Microsoft\Windows NT\CurrentVersion\Schedule\TaskCache\Tree\WinUpdate", timestamp=T_TASK)
    for i in range(300):  # a wide key: its subkeys are walked as they come, not listed first
        hb.add_key(rf"Wide\k{i:03d}")
    path.write_bytes(hb.to_bytes())
    return path


@pytest.mark.parametrize("backend", ["auto", "python"])
def test_walk_gives_every_key_once_with_its_time(tmp_path: Path, backend: str) -> None:
    with Hive(_hive(tmp_path / "SOFTWARE"), backend=backend) as hive:
        keys = dict(hive.walk())
        assert not hive.warnings
    task = r"Microsoft\Windows NT\CurrentVersion\Schedule\TaskCache\Tree\WinUpdate"
    assert keys[task] == T_TASK and keys[""] == T_ROOT and keys["Microsoft"] == T_ROOT
    assert sum(1 for k in keys if k.startswith("Wide\\")) == 300
    # root, Microsoft, the 6 keys down to WinUpdate, Wide and its 300 subkeys
    assert len(keys) == 1 + 1 + 6 + 1 + 300


def test_walk_of_a_truncated_hive_warns_and_never_raises(tmp_path: Path) -> None:
    data = _hive(tmp_path / "full").read_bytes()
    bad = tmp_path / "SOFTWARE"
    bad.write_bytes(data[: 4096 + 2048])  # the header and part of the first bin
    with Hive(bad) as hive:
        keys = list(hive.walk()) if hive.ok else []
        assert hive.ok or hive.warnings
    assert len(keys) < 309
