"""A compiled Sigma rule set kept on disk, so a large ``--sigma`` set is compiled once, not once per process.

Compiling SigmaHQ's ``rules/windows`` (about 2,400 rules) takes half a minute; an analyze run loads the same set
in the main process and in every worker. :func:`cached_load` keys a compiled :class:`~triage.sigma.RuleSet` by
SHA-256 over the engine's own source files, the triage version, the logsource map's bytes and every rule file's
path and bytes, and stores it (pickled) under ``$TRIAGE_CACHE_DIR/sigma`` (default ``~/.cache/triage/sigma``).
Any change to a rule, the map or the engine gives a new key. The cache is the user's own folder, written
atomically; an unreadable or damaged entry is ignored and rebuilt, an unwritable folder only costs the speed-up.
Small sets (fewer than :data:`MIN_FILES` files) are compiled directly: they are faster to compile than to hash.
Within one process a set is loaded once (the main process asks for it when it reports the loaded rules and again
when it analyzes): later calls with the same key get the same object. An entry whose header does not name this
cache format and key (stale, or another file under that name) is ignored with a warning and rebuilt, as is one
that does not unpickle. The cyclic garbage collector is paused while a set is compiled or unpickled: both build
tens of thousands of objects that all stay alive, which the collector would only rescan (about 8x the load time).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import pickle
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import triage
from triage.tasks import paused_gc

log = logging.getLogger(__name__)

CACHE_ENV = "TRIAGE_CACHE_DIR"
MIN_FILES = 200
_FORMAT = b"triage-sigma-cache-3"
_LOADED: dict[str, Any] = {}  # key -> rule set, this process's loads (a few sets at most)
_MAX_LOADED = 4



def cache_dir() -> Path:
    """Where compiled rule sets are kept (``$TRIAGE_CACHE_DIR/sigma``, else ``~/.cache/triage/sigma``)."""
    base = os.environ.get(CACHE_ENV)
    return (Path(base) if base else Path.home() / ".cache" / "triage") / "sigma"


def _engine_digest() -> bytes:
    h = hashlib.sha256(_FORMAT + triage.__version__.encode())
    for src in sorted(Path(__file__).parent.glob("*.py")):
        h.update(src.name.encode() + b"\0" + src.read_bytes())
    return h.digest()


def ruleset_key(files: Iterable[Path], logsources: Path) -> str:
    """The cache key of compiling ``files`` with the logsource map at ``logsources`` (hex SHA-256)."""
    h = hashlib.sha256(_engine_digest())
    h.update(logsources.read_bytes())
    files = list(files)
    # an unreadable rule is part of the key as such, so the set reloads once it reads
    h.update(
        b"".join(
            os.fsencode(f) + b"\0" + (digest if digest is not None else b"unreadable") + b"\0"
            for f, digest in zip(files, file_digests(files), strict=True)
        )
    )
    return h.hexdigest()


# path -> (stat signature, SHA-256 of the bytes): what this process (or the one it was forked from) read, and
# what earlier processes recorded in the cache folder's digest file
_DIGESTS: dict[str, tuple[tuple[int, int, int, int], bytes]] = {}
_DIGEST_FILES_READ: set[Path] = set()
_DIGESTS_FORMAT = "triage-sigma-digests-1"
_MAX_DIGESTS = 100_000
# a file changed this recently may change again within the same timestamp: its digest is not remembered
RACY_NS = 2_000_000_000


def file_digests(files: Iterable[str | os.PathLike[str]]) -> list[bytes | None]:
    """SHA-256 of each file's bytes (None when it cannot be read), in order.

    A file is read and hashed again only when its size, modification or change time or inode differ from
    when it was last hashed (the same test git makes of its work tree): the cache key, the analyzer's
    fingerprint and the loaded set's provenance all need the digests of the same thousands of rule files. The
    digests are kept in memory (forked workers inherit them) and in ``digests.json`` of the cache folder, so a
    new command stats the files instead of reading them. A file modified within two seconds of being hashed is
    not remembered, so a change made within one timestamp tick of a read is never missed. Fewer than
    :data:`MIN_FILES` files (an analyzer's own rules) are hashed without the digest file, which holds the
    digests of every big set used on this machine: parsing it cost each process more than reading a few files.
    """
    files = list(files)
    folder = cache_dir()
    shared = len(files) >= MIN_FILES or folder in _DIGEST_FILES_READ
    if shared:
        _read_digests(folder)
    now = time.time_ns()
    out: list[bytes | None] = []
    added = False
    for f in files:
        name = os.fspath(f)
        key = _ABSOLUTE.get(name) or _absolute(name)
        try:
            st = os.stat(key)
        except OSError:
            out.append(None)
            continue
        sig = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        known = _DIGESTS.get(key)
        if known is not None and known[0] == sig:
            out.append(known[1])
            continue
        try:
            with open(key, "rb") as fh:
                digest = hashlib.sha256(fh.read()).digest()
        except OSError:
            out.append(None)
            continue
        if now - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_NS:
            _DIGESTS[key] = (sig, digest)
            added = True
        out.append(digest)
    if added and shared:  # written only when merged with what the file held (not to lose other sets' digests)
        _write_digests(folder)
    return out


_ABSOLUTE: dict[str, str] = {}  # absolute path as given -> normalised (what abspath gives whatever the cwd)


def _absolute(name: str) -> str:
    found = os.path.abspath(name)
    if os.path.isabs(name) and len(_ABSOLUTE) < _MAX_DIGESTS:
        _ABSOLUTE[name] = found
    return found


def _read_digests(folder: Path) -> None:
    """Merge the folder's digest file into this process's digests (once per folder and process)."""
    if folder in _DIGEST_FILES_READ:
        return
    _DIGEST_FILES_READ.add(folder)
    try:
        data = json.loads((folder / "digests.json").read_bytes())
        if data.get("format") != _DIGESTS_FORMAT:
            return
        for path, (size, mtime, ctime, ino, digest) in data["files"].items():
            _DIGESTS.setdefault(path, ((int(size), int(mtime), int(ctime), int(ino)), bytes.fromhex(digest)))
    except FileNotFoundError:
        return
    except Exception as exc:  # damaged: every file is read again (and the file rewritten)
        log.warning("sigma: ignoring unusable digest file in %s (%s)", folder, exc)


def _write_digests(folder: Path) -> None:
    if len(_DIGESTS) > _MAX_DIGESTS:  # many rule folders over time: start again from this process's
        for path in list(_DIGESTS)[: len(_DIGESTS) - _MAX_DIGESTS]:
            del _DIGESTS[path]
    files = {path: [*sig, digest.hex()] for path, (sig, digest) in _DIGESTS.items()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump({"format": _DIGESTS_FORMAT, "files": files}, fh)
        os.replace(tmp, folder / "digests.json")
    except OSError as exc:  # read-only home: the digests stay in memory
        log.debug("sigma: could not store rule file digests in %s (%s)", folder, exc)


def cached_load(files: list[Path], logsources: Path, compile_: Callable[[], Any], folder: Path | None = None) -> Any:
    """Return the rule set compiled from ``files``: from this process's loads, else the on-disk cache, else
    ``compile_()`` (then stored)."""
    if len(files) < MIN_FILES:
        with _settled():
            return compile_()
    folder = folder or cache_dir()
    key = ruleset_key(files, logsources)
    if key in _LOADED:
        return _LOADED[key]
    ruleset = _read_entry(folder / f"{key}.pickle", key)
    if ruleset is None:
        with _settled():
            ruleset = compile_()
        _write_entry(folder, key, ruleset)
    if len(_LOADED) >= _MAX_LOADED:
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[key] = ruleset
    return ruleset


@contextmanager
def _settled() -> Iterator[None]:
    """Build a rule set with the cyclic collector paused, then freeze what was built (gc.freeze).

    A set's objects (about 150,000 for SigmaHQ's) all stay alive as long as the process. Left in the
    collector's generations, the first allocation after the pause would scan all of them as new objects, and
    every full collection during evaluation again (0.3-0.9 s each); frozen, they are never scanned, and forked
    workers inherit them frozen.
    """
    with paused_gc():
        try:
            yield
        finally:
            gc.freeze()


def _read_entry(entry: Path, key: str) -> Any:
    """The rule set stored under ``entry``, or None (absent; unusable ones are warned about)."""
    try:
        with entry.open("rb") as fh, _settled():
            payload = pickle.load(fh)
    except FileNotFoundError:
        return None
    except Exception as exc:  # damaged or from an incompatible library: rebuild it
        log.warning("sigma: ignoring unusable cache entry %s (%s)", entry, exc)
        return None
    if not (isinstance(payload, tuple) and len(payload) == 3 and payload[:2] == (_FORMAT, key)):
        log.warning("sigma: ignoring stale cache entry %s (not this cache format and key)", entry)
        return None
    ruleset = payload[2]
    log.info("sigma: %d rules from the compiled cache %s", len(ruleset.loaded), entry.name)
    return ruleset


def _write_entry(folder: Path, key: str, ruleset: Any) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pickle")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump((_FORMAT, key, ruleset), fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, folder / f"{key}.pickle")
    except Exception as exc:  # read-only home, full disk: the run goes on without the cache
        log.warning("sigma: could not store the compiled rule set in %s (%s)", folder, exc)


__all__ = ["CACHE_ENV", "MIN_FILES", "cache_dir", "cached_load", "file_digests", "ruleset_key"]
