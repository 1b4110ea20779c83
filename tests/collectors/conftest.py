"""Fixtures for the collector tests (helpers live in ``collectors_support``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from triage.case import Case
from triage.testing.volume import VolumeSpec, build_volume, volume_files


# -- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture
def new_case(tmp_path: Path) -> Callable[..., Case]:
    """A factory of fresh case folders under tmp_path (case-1, case-2, ...)."""
    counter = itertools.count(1)

    def make(name: str | None = None) -> Case:
        return Case.create_or_open(tmp_path / (name or f"case-{next(counter)}"), examiner="pytest")

    return make


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """The default compromised Exchange volume (host EXCH01), as a mounted folder."""
    return build_volume(tmp_path / "src" / "vol")


@pytest.fixture
def volume_content() -> dict[str, bytes]:
    """Relative path -> bytes of the default volume, straight from the builder (not from disk)."""
    return volume_files(VolumeSpec())
