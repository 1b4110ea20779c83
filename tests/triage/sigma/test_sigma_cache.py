"""Compiled rule sets kept on disk (triage.sigma.cache): compiled once, reused, rebuilt when anything changes."""

from __future__ import annotations

import hashlib
import logging
import pickle
from pathlib import Path

import pandas as pd
import pytest

import triage.sigma.cache as cache
import triage.sigma.engine as engine
from triage.sigma import load_rules

RULE = """
title: Cmd {n}
id: 3f0e1d2c-4b5a-4968-8776-a5b4c3d2e1{n:02d}
status: test
logsource:
  product: windows
  category: process_creation
detection:
  selection:
    Image|endswith: '\\cmd{n}.exe'
  condition: selection
level: high
"""


@pytest.fixture
def rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "MIN_FILES", 2)
    monkeypatch.setattr(cache, "_LOADED", {})  # each test a fresh process
    folder = tmp_path / "rules"
    folder.mkdir()
    for n in range(3):
        (folder / f"r{n}.yml").write_text(RULE.format(n=n))
    return folder


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Channel": ["Microsoft-Windows-Sysmon/Operational"] * 2,
            "EventID": pd.array([1, 1], dtype="Int64"),
            "Image": [r"C:\Windows\cmd1.exe", r"C:\Windows\notepad.exe"],
        }
    )


def _no_compiling(*_a, **_k):
    raise AssertionError("compiled although a cached rule set exists")


def test_second_load_comes_from_the_cache(rules: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    first = load_rules([rules])
    entries = list((tmp_path / "cache" / "sigma").glob("*.pickle"))
    assert len(entries) == 1 and len(first.loaded) == 3
    monkeypatch.setattr(engine, "_load_file", _no_compiling)
    cache._LOADED.clear()  # another process: from the disk entry
    second = load_rules([rules])
    assert [r.id for r in second.loaded] == [r.id for r in first.loaded]
    a, b = first.evaluate(_events()), second.evaluate(_events())
    assert a["rule_id"].tolist() == b["rule_id"].tolist() == ["3f0e1d2c-4b5a-4968-8776-a5b4c3d2e101"]


def test_a_changed_rule_is_compiled_again(rules: Path, tmp_path: Path):
    load_rules([rules])
    (rules / "r2.yml").write_text(RULE.format(n=2).replace("level: high", "level: low"))
    again = load_rules([rules])
    assert {r.level for r in again.loaded} == {"high", "low"}
    assert len(list((tmp_path / "cache" / "sigma").glob("*.pickle"))) == 2


def test_damaged_entry_is_rebuilt_and_unwritable_cache_costs_only_speed(
    rules: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    load_rules([rules])
    (entry,) = (tmp_path / "cache" / "sigma").glob("*.pickle")
    entry.write_bytes(b"not a pickle")
    cache._LOADED.clear()
    assert len(load_rules([rules]).loaded) == 3
    assert entry.read_bytes()[:1] == b"\x80"  # rewritten as a pickle
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocked))
    cache._LOADED.clear()
    assert len(load_rules([rules]).loaded) == 3


def test_stale_entry_is_ignored_with_a_warning_and_rebuilt(
    rules: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    first = load_rules([rules])
    (entry,) = (tmp_path / "cache" / "sigma").glob("*.pickle")
    # a well-formed pickle of the previous layout (the bare rule set, no header): unpickles, but is not trusted
    entry.write_bytes(pickle.dumps(first))
    cache._LOADED.clear()
    compiled: list[Path] = []
    real = engine._load_file
    monkeypatch.setattr(engine, "_load_file", lambda path, *a: (compiled.append(path), real(path, *a))[1])
    with caplog.at_level(logging.WARNING, logger="triage.sigma.cache"):
        again = load_rules([rules])
    assert len(compiled) == 3 and [r.id for r in again.loaded] == [r.id for r in first.loaded]
    assert any("stale cache entry" in r.getMessage() for r in caplog.records)
    header = pickle.loads(entry.read_bytes())[:2]
    assert header == (cache._FORMAT, entry.stem)  # rewritten under this format and key


def test_a_set_is_loaded_once_per_process(rules: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    first = load_rules([rules])
    for entry in (tmp_path / "cache" / "sigma").glob("*.pickle"):
        entry.unlink()  # a second load in this process must not need the disk entry, nor compile
    monkeypatch.setattr(engine, "_load_file", _no_compiling)
    assert load_rules([rules]) is first
    assert not list((tmp_path / "cache" / "sigma").glob("*.pickle"))


def test_small_sets_and_own_logsource_maps_are_not_cached(rules: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(cache, "MIN_FILES", 10)
    load_rules([rules])
    assert not (tmp_path / "cache" / "sigma").exists()


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    compiled: list[Path] = []
    real = engine._load_file
    monkeypatch.setattr(engine, "_load_file", lambda path, *a: (compiled.append(path), real(path, *a))[1])
    return compiled


def test_a_new_engine_version_compiles_again(rules: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import triage

    key = cache.ruleset_key(sorted(rules.glob("*.yml")), engine.default_logsources_path())
    load_rules([rules])
    monkeypatch.setattr(triage, "__version__", triage.__version__ + ".post1")
    assert cache.ruleset_key(sorted(rules.glob("*.yml")), engine.default_logsources_path()) != key
    compiled = _counting(monkeypatch)
    assert len(load_rules([rules]).loaded) == 3
    assert len(compiled) == 3  # compiled, not taken from the entry of the other version
    assert len(list((tmp_path / "cache" / "sigma").glob("*.pickle"))) == 2


def test_a_garbled_rule_costs_only_itself_also_from_the_cache(rules: Path, monkeypatch: pytest.MonkeyPatch):
    (rules / "r3.yml").write_bytes(b"title: [unclosed\n\xff\xfe detection: {{{\n")
    first = load_rules([rules])
    assert len(first.loaded) == 3
    ((path, _title, reason, _id),) = first.skipped
    assert path.endswith("r3.yml") and "UTF-8" in reason
    cache._LOADED.clear()
    monkeypatch.setattr(engine, "_load_file", _no_compiling)
    cached = load_rules([rules])  # another process: the skip and its reason come with the compiled set
    assert len(cached.loaded) == 3 and cached.skipped == first.skipped
    monkeypatch.undo()
    monkeypatch.setattr(cache, "MIN_FILES", 2)
    (rules / "r3.yml").write_text(RULE.format(n=3))  # repaired: a new key, compiled again
    assert len(load_rules([rules]).loaded) == 4


def test_rule_plans_come_with_the_cached_rules(rules: Path, monkeypatch: pytest.MonkeyPatch):
    load_rules([rules])
    cache._LOADED.clear()
    monkeypatch.setattr(engine, "rule_plan", lambda *_: pytest.fail("plan derived again after a cache load"))
    monkeypatch.setattr(engine, "_load_file", _no_compiling)
    ruleset = load_rules([rules])
    for rule in ruleset.loaded:  # the cover's leaves are the rule's own (one pickle: shared objects stay shared)
        assert rule.plan.cover and all(any(leaf is own for own in rule.matcher.leaves()) for leaf in rule.plan.cover)
    assert ruleset.evaluate(_events())["rule_id"].tolist() == ["3f0e1d2c-4b5a-4968-8776-a5b4c3d2e101"]


def test_rule_file_digests_are_kept_per_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command reads the recorded digests of the rule directories it uses, not those of every folder met."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "_DIGESTS", {})
    monkeypatch.setattr(cache, "_DIGEST_FILES_READ", set())
    monkeypatch.setattr(cache, "RACY_NS", -1)  # files as if written long ago: their digests are remembered
    folders = {}
    for name in ("own", "third"):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        for n in range(3):
            (folders[name] / f"r{n}.yml").write_text(RULE.format(n=n) + name)
    own = sorted(folders["own"].iterdir())
    first = cache.file_digests(own)
    assert first == [hashlib.sha256(p.read_bytes()).digest() for p in own]
    cache.file_digests(sorted(folders["third"].iterdir()))
    stored = {name: cache.digest_file(tmp_path / "cache" / "sigma", str(f)) for name, f in folders.items()}
    assert all(p.is_file() for p in stored.values()) and stored["own"] != stored["third"]

    cache._DIGESTS.clear()  # a new command: only the digest files remain
    cache._DIGEST_FILES_READ.clear()

    def unread(*args: object, **kw: object) -> None:
        raise AssertionError("a rule file was read again although its digest was recorded")

    monkeypatch.setattr(cache, "open", unread, raising=False)
    assert cache.file_digests(own) == first
    assert {Path(p).parent for p in cache._DIGESTS} == {folders["own"]}  # the other folder's digests not parsed
