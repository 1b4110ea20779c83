"""The provenance's rule-set hashes: the files' own SHA-256, taken from the stat-checked digest store."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

import triage.sigma.cache as cache
from triage.report.provenance import hash_tree


@pytest.fixture
def rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "_DIGESTS", {})
    monkeypatch.setattr(cache, "_DIGEST_FILES_READ", set())
    monkeypatch.setattr(cache, "RACY_NS", -1)  # files as if written long ago: their digests are remembered
    root = tmp_path / "rules"
    (root / "sub").mkdir(parents=True)
    (root / "a.yar").write_text("rule a { condition: true }")
    (root / "sub" / "b.yml").write_text("title: b")
    (root / "sub" / "__pycache__").mkdir()
    (root / "sub" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    return root


def _expected(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_rule_set_hashes_are_the_files_bytes_and_follow_an_edit(rules: Path) -> None:
    first = hash_tree(rules)
    assert {f["path"]: f["sha256"] for f in first["files"]} == _expected(rules)
    assert [f["path"] for f in first["files"]] == ["a.yar", "sub/b.yml"] and first["count"] == 2
    again = hash_tree(rules)  # from the digests remembered: the same answer
    assert again == first
    # an edit of the same size with the modification time put back: the change time still tells
    time.sleep(0.05)
    target = rules / "sub" / "b.yml"
    st = target.stat()
    target.write_text("title: c")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    edited = hash_tree(rules)
    assert {f["path"]: f["sha256"] for f in edited["files"]} == _expected(rules)
    assert edited["sha256"] != first["sha256"]


def test_an_unreadable_rule_file_is_named_so(rules: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    (rules / "a.yar").chmod(0)
    try:
        entry = {f["path"]: f["sha256"] for f in hash_tree(rules)["files"]}["a.yar"]
    finally:
        (rules / "a.yar").chmod(0o644)
    assert entry.startswith("unreadable: ")
