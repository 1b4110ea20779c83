"""Memory tests: a private Volatility cache for the session, no user config, and a network tripwire."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def vol_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session: indexing Volatility's bundled ISFs once keeps the tests fast."""
    return tmp_path_factory.mktemp("triage-cache")


@pytest.fixture(autouse=True)
def _memory_env(monkeypatch: pytest.MonkeyPatch, vol_cache: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("TRIAGE_CACHE_DIR", str(vol_cache))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))  # never the analyst's own config.toml
    monkeypatch.delenv("TRIAGE_SYMBOLS", raising=False)
    monkeypatch.delenv("TRIAGE_MEMORY_TIMEOUT", raising=False)


class NetworkAttempt(AssertionError):
    """Raised by the tripwire: something tried to open a socket or resolve a name."""


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every socket creation or name lookup raises and is recorded (forked children inherit the tripwire)."""
    attempts: list[str] = []

    def trip(what: str):  # type: ignore[no-untyped-def]
        def raiser(*args, **kwargs):  # type: ignore[no-untyped-def]
            attempts.append(f"{what}{args[:2]!r}")
            raise NetworkAttempt(f"network access attempted: {what}")

        return raiser

    monkeypatch.setattr(socket, "socket", trip("socket.socket"))
    monkeypatch.setattr(socket, "create_connection", trip("socket.create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", trip("socket.getaddrinfo"))
    return attempts
