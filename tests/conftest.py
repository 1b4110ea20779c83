"""Shared fixtures: synthetic volumes and cases, and isolation of the analyzer registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage import registry
from triage.case import Case
from triage.testing.volume import VolumeSpec, build_volume

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


@pytest.fixture(autouse=True, scope="session")
def _private_yara_cache(tmp_path_factory):
    """Compiled YARA rules go to a session folder, not the examiner's ~/.cache."""
    import os

    os.environ.setdefault("TRIAGE_YARA_CACHE", str(tmp_path_factory.mktemp("yara-cache")))
    yield


@pytest.fixture(autouse=True)
def _isolated_registry():
    """Analyzers registered by a test's plugins must not leak into other tests."""
    registry.discover()  # built-ins first, so the snapshot holds them (modules import once per process)
    saved = (dict(registry._REGISTRY), set(registry._DISCOVERED), dict(registry._IMPORT_FAILURES))
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved[0])
    registry._DISCOVERED.clear()
    registry._DISCOVERED.update(saved[1])
    registry._IMPORT_FAILURES.clear()
    registry._IMPORT_FAILURES.update(saved[2])


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """A compromised Exchange volume with a non-default install path."""
    return build_volume(tmp_path / "vol", VolumeSpec(install_path=r"C:\Apps\Exchange\V15"))


@pytest.fixture
def case(tmp_path: Path, volume: Path) -> Case:
    """A case with the compromised volume collected into it."""
    c = Case.create_or_open(tmp_path / "case", examiner="tester", case_id="CASE-TEST")
    src = open_source_path(str(volume))
    collect_volume(c, src, host=None)
    return c
