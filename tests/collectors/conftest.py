"""Fixtures for the collector tests (helpers live in ``collectors_support``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from triage.case import Case
from triage.testing.diskimage import ImageSet, build_image_set, tools_missing
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


@pytest.fixture(scope="session")
def image_set(tmp_path_factory: pytest.TempPathFactory) -> ImageSet:
    """ONE evidence disk (GPT; C: = the default compromised volume of host EXCH01, D: = Exchange data) in
    every image format: ``image_set["e01"]`` is the list of segment paths (4 segments of 1 MiB), likewise
    ``"raw"`` (``.dd``), ``"split-raw"`` (``.001``-``.003``), ``"vhd"``, ``"vhdx"``, ``"vmdk"``.

    Also ``image_set.trees`` ({"C": folder, "D": folder} the volumes hold, for folder-vs-image comparisons),
    ``.hashes`` ({"C": {relpath: sha256}, ...}), ``.layout`` (partition offsets, GPT GUIDs; C:'s SYSTEM hive
    maps both in ``MountedDevices``), ``.raw``, ``.timestomped`` (the web shell: $STANDARD_INFORMATION times
    2016-09-15 10:00, $FILE_NAME times 2021-03-03 02:41:05 UTC) and ``.streams`` (its Zone.Identifier ADS).
    Shared by the whole session: copy segments (``shutil.copyfile``) before damaging them. Built in about a
    second by :func:`triage.testing.diskimage.build_image_set`; skipped when mkntfs/ntfs-3g/FUSE/qemu-img/
    ewfacquire are missing.
    """
    reason = tools_missing()
    if reason:
        pytest.skip(f"disk image tools unavailable: {reason}")
    return build_image_set(tmp_path_factory.mktemp("image-set"))
