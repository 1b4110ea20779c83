"""Listing rule folders: the same files in the same order however often a process lists them, and a change
to a folder (a rule added, removed or renamed, in any subfolder) always seen by the next listing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import triage.sigma.cache as cache
import triage.sigma.engine as engine
from triage.sigma import iter_rule_files


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(engine, "_LISTINGS", {})
    root = tmp_path / "rules"
    for rel in ("b.yml", "a.yaml", "sub/c.yml", "sub/deeper/d.YML", "sub/notes.txt", ".git/e.yml", "z/f.yml"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("title: x\n")
    return root


def _names(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in iter_rule_files([root])]


def _later() -> None:
    time.sleep(0.05)  # past the coarse clock's tick: the directory's modification time moves


def test_listing_is_sorted_and_skips_hidden_folders(tree: Path) -> None:
    assert _names(tree) == ["a.yaml", "b.yml", "sub/c.yml", "sub/deeper/d.YML", "z/f.yml"]


def test_a_listing_is_kept_until_a_folder_changes(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "RACY_NS", -1)  # as if the folders were written long ago
    scans: list[str] = []  # every folder listed (the scan recurses through the module's name)
    real = engine._scan_rules
    monkeypatch.setattr(engine, "_scan_rules", lambda folder, *a: (scans.append(folder), real(folder, *a))[1])
    first = _names(tree)
    assert _names(tree) == first and scans.count(str(tree)) == 1  # the second listing came from memory
    _later()
    (tree / "sub" / "deeper" / "new.yml").write_text("title: y\n")
    assert _names(tree) == [*first[:3], "sub/deeper/d.YML", "sub/deeper/new.yml", "z/f.yml"]
    _later()
    (tree / "z" / "f.yml").rename(tree / "z" / "g.yml")
    assert _names(tree)[-1] == "z/g.yml"
    _later()
    (tree / "a.yaml").unlink()
    assert "a.yaml" not in _names(tree)
    assert scans.count(str(tree)) == 4


def test_a_folder_changed_just_now_is_listed_again(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # written within the last two seconds: a change in the same clock tick would keep the modification time
    scans: list[str] = []  # every folder listed (the scan recurses through the module's name)
    real = engine._scan_rules
    monkeypatch.setattr(engine, "_scan_rules", lambda folder, *a: (scans.append(folder), real(folder, *a))[1])
    assert _names(tree) == _names(tree) and scans.count(str(tree)) == 2
