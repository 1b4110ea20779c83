"""YARA tests share one compiled-rule cache per session, never the user's own cache folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _yara_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the analyzer's default cache (and forked analysis workers) at a session temp folder."""
    path = tmp_path_factory.mktemp("yara-cache")
    old = os.environ.get("TRIAGE_YARA_CACHE")
    os.environ["TRIAGE_YARA_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("TRIAGE_YARA_CACHE", None)
    else:
        os.environ["TRIAGE_YARA_CACHE"] = old
