"""The analyzer index (``analyzers/index.json``): declarations read without importing analyzer modules.

The index must equal what the classes declare; a stale one (sources changed since it was written) is not used.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from triage import registry
from triage.registry import Declared


@pytest.fixture
def fresh_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test reads the index afresh (the process caches it)."""
    monkeypatch.setattr(registry, "_INDEX_READ", False)
    monkeypatch.setattr(registry, "_INDEX_CACHE", None)


def test_checked_in_index_matches_the_classes(fresh_index: None) -> None:
    built = registry.build_index()
    root = registry._package_dir()
    assert root is not None
    stored = json.loads((root / registry.INDEX_NAME).read_text())
    hint = "analyzers/index.json is out of date: run `python -m triage.registry --write-index`"
    assert stored["analyzers"] == built["analyzers"], hint
    assert stored["digest"] == built["digest"], hint
    index = registry.read_index()
    assert index is not None
    for name, cls in registry.analyzers().items():
        if cls.__module__.startswith("analyzers."):
            assert index[name] == Declared.of(cls), name


def test_declarations_round_trip_through_json() -> None:
    registry.discover()
    for name, cls in registry.analyzers().items():
        decl = Declared.of(cls)
        assert Declared.from_json(json.loads(json.dumps(decl.as_json()))) == decl, name
    # options keep their types (a float option parses as float)
    memory = Declared.of(registry.analyzers()["memory"])
    timeout = next(o for o in memory.options_declared if o.name == "plugin_timeout")
    assert timeout.type is float and timeout.flag is None and timeout.env


def test_stale_index_falls_back_to_importing(fresh_index: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "source_digest", lambda root: "0" * 64)
    assert registry.read_index() is None
    got = registry.declarations()
    assert {n: Declared.of(c) for n, c in registry.analyzers().items()} == got
    assert {"eventlog", "memory", "yara"} <= set(got)


def test_registered_class_wins_over_the_index_and_load_imports_one_module() -> None:
    code = (
        "import json, sys\n"
        "from triage import registry\n"
        "d = registry.declarations()\n"
        "before = sorted(m for m in sys.modules if m.startswith('analyzers.'))\n"
        "cls = registry.load('ntfs_timestomp')\n"
        "after = sorted(m for m in sys.modules if m.startswith('analyzers.'))\n"
        "print(json.dumps([sorted(d), before, after, cls.__module__, d['yara'].consumes]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    names, before, after, module, yara_consumes = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"eventlog", "memory", "ntfs_timestomp", "yara"} <= set(names)
    assert before == []  # every declaration came from the index
    assert after == ["analyzers.ntfs_times"] and module == "analyzers.ntfs_times"
    assert "web_file" in yara_consumes or yara_consumes  # consumes read without importing yara
