"""The entry-point scan is cached by what is installed: a command pays it once, an install is seen at once."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from triage import registry


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("TRIAGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "_EP_MODULES", None)
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


def _install(site: Path, dist: str, module: str) -> None:
    """A distribution the way pip leaves one: a ``.dist-info`` folder with its entry points."""
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{dist} = {module}:Analyzer\n")


def test_installed_plugin_is_found_and_the_answer_cached(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "acme_triage_plugin" not in registry.entry_point_modules()
    _install(fresh, "acme-triage", "acme_triage_plugin")
    monkeypatch.setattr(registry, "_EP_MODULES", None)  # a new command
    assert registry.entry_point_modules().count("acme_triage_plugin") == 1  # the install changed the key: rescanned

    def no_scan(**kw: object) -> object:
        raise AssertionError("scanned although nothing changed")

    monkeypatch.setattr(registry, "_EP_MODULES", None)
    monkeypatch.setattr(metadata, "entry_points", no_scan)
    assert "acme_triage_plugin" in registry.entry_point_modules()  # from the cache file
    assert "acme_triage_plugin" in registry.entry_point_modules()  # from this process's answer


def test_removal_is_seen_and_a_broken_cache_is_ignored(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install(fresh, "acme-triage", "acme_triage_plugin")
    assert "acme_triage_plugin" in registry.entry_point_modules()
    for f in (fresh / "acme-triage-1.0.dist-info").iterdir():
        f.unlink()
    (fresh / "acme-triage-1.0.dist-info").rmdir()
    monkeypatch.setattr(registry, "_EP_MODULES", None)
    assert "acme_triage_plugin" not in registry.entry_point_modules()
    cache = Path(registry._cache_dir()) / "entry_points.json"
    cache.write_text("{not json")
    monkeypatch.setattr(registry, "_EP_MODULES", None)
    assert "acme_triage_plugin" not in registry.entry_point_modules()
    assert cache.read_text().startswith('{"entries"')  # rewritten whole


def test_files_made_in_a_folder_on_the_path_do_not_cost_a_rescan(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `python -m triage` puts the current folder on sys.path, and commands make files there (cases, reports)
    _install(fresh, "acme-triage", "acme_triage_plugin")
    assert "acme_triage_plugin" in registry.entry_point_modules()
    (fresh / "a-case-folder").mkdir()
    (fresh / "notes.txt").write_text("x")

    def no_scan(**kw: object) -> object:
        raise AssertionError("scanned although no distribution changed")

    monkeypatch.setattr(registry, "_EP_MODULES", None)
    monkeypatch.setattr(metadata, "entry_points", no_scan)
    assert "acme_triage_plugin" in registry.entry_point_modules()


def test_folders_without_distributions_share_the_key(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # each dask worker puts its own scratch folder on sys.path: one key per worker would push the command
    # line's answer out of the cache, and each command would scan again
    _install(fresh, "acme-triage", "acme_triage_plugin")
    assert "acme_triage_plugin" in registry.entry_point_modules()
    scratch = tmp_path / "dask-scratch-space" / "worker-1"
    scratch.mkdir(parents=True)
    monkeypatch.syspath_prepend(str(scratch))
    monkeypatch.syspath_prepend(str(tmp_path / "not-there"))

    def no_scan(**kw: object) -> object:
        raise AssertionError("scanned although no distribution changed")

    monkeypatch.setattr(registry, "_EP_MODULES", None)
    monkeypatch.setattr(metadata, "entry_points", no_scan)
    assert "acme_triage_plugin" in registry.entry_point_modules()
