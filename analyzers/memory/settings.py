"""Where the memory analyzer finds its symbol tables, cache and limits.

Symbol directories come from the first of: the analyzer option ``symbols`` (``triage analyze --symbols DIR``),
the environment variable ``TRIAGE_SYMBOLS`` (``os.pathsep``-separated), the key ``symbols`` (a string or a list)
in ``$XDG_CONFIG_HOME/triage/config.toml`` (default ``~/.config/triage/config.toml``). A named path may be a
folder of ISF files (``windows/<pdb>/<GUID>-<age>.json.xz``, as JPCERT publishes them), a folder holding
Volatility's ``windows.zip`` pack, or such a zip or ISF file itself.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SYMBOLS_ENV = "TRIAGE_SYMBOLS"
CACHE_ENV = "TRIAGE_CACHE_DIR"
TIMEOUT_ENV = "TRIAGE_MEMORY_TIMEOUT"
DEFAULT_PLUGIN_TIMEOUT = 1800.0  # seconds; filescan/handles on a 64 GB image take minutes, not hours


def config_file() -> Path:
    """The user's triage config file (it need not exist)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "triage" / "config.toml"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The parsed config file, or {} when there is none. A broken file is an error the user must see."""
    path = path or config_file()
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | os.PathLike):
        return [os.fspath(value)]
    return [os.fspath(v) for v in value]


def symbol_dirs(options: dict[str, Any] | None = None) -> tuple[Path, ...]:
    """The symbol locations to search, absolute, in the order the user gave them (see the module docstring)."""
    options = options or {}
    if options.get("symbols"):
        return tuple(Path(p).expanduser().resolve() for p in _as_list(options["symbols"]))
    env = os.environ.get(SYMBOLS_ENV, "")
    if env.strip():
        return tuple(Path(p).expanduser().resolve() for p in env.split(os.pathsep) if p.strip())
    cfg_path = config_file()
    cfg = load_config(cfg_path)
    # relative entries in the config file are relative to the file, not to wherever triage runs
    return tuple((cfg_path.parent / Path(p).expanduser()).resolve() for p in _as_list(cfg.get("symbols")))


def cache_dir(options: dict[str, Any] | None = None) -> Path:
    """The private cache folder (Volatility's identifier cache lives below it, never in ``~/.cache/volatility3``)."""
    options = options or {}
    if options.get("cache_dir"):
        return Path(options["cache_dir"]).expanduser().resolve()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return (Path(base) / "triage").resolve()


def plugin_timeout(options: dict[str, Any] | None = None) -> float:
    """Seconds one Volatility plugin may run before it is stopped (option, env, config, default)."""
    options = options or {}
    for value in (options.get("plugin_timeout"), os.environ.get(TIMEOUT_ENV)):
        if value not in (None, ""):
            return float(value)
    cfg = load_config()
    if cfg.get("memory_plugin_timeout") is not None:
        return float(cfg["memory_plugin_timeout"])
    return DEFAULT_PLUGIN_TIMEOUT


def tree_signature(paths: Iterable[Path], limit: int = 200_000) -> str:
    """A cheap hash of names, sizes and mtimes below ``paths``, so adding a symbol file changes fingerprints."""
    h = hashlib.sha256()
    seen = 0
    for root in paths:
        h.update(str(root).encode() + b"\x00")
        try:
            st = root.stat()
        except OSError:
            h.update(b"missing")
            continue
        if not root.is_dir():
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                seen += 1
                if seen > limit:
                    return h.hexdigest()
                try:
                    fst = os.stat(os.path.join(dirpath, name))
                except OSError:
                    continue
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                h.update(f"{rel}:{fst.st_size}:{fst.st_mtime_ns}\n".encode())
    return h.hexdigest()
