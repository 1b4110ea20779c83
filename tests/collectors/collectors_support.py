"""Helpers shared by the collector tests: expectations, hashing, and a source-tree snapshot.

The snapshot reads through ``O_NOATIME`` descriptors (files and directories) so that taking it does
not itself change the access times it records; it is written independently of ``triage.hashing``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from triage.case import Case, ManifestRow

# Times set on every file and folder of a source before a collection. The access time is more than
# a day old, so on a relatime mount any ordinary read or listing would move it forward.
OLD_MTIME_NS = int(datetime(2021, 3, 3, 2, 14, 7, tzinfo=UTC).timestamp()) * 10**9 + 123_456_789
OLD_ATIME_NS = int(datetime(2021, 3, 5, 9, 30, 0, tzinfo=UTC).timestamp()) * 10**9 + 987_654_321

# What the default synthetic volume (``VolumeSpec()``) holds and what an analyst expects each file
# to be filed as. Written out by hand on purpose: it is the expectation, not derived from the code.
EX = "Program Files/Microsoft/Exchange Server/V15"
DEFAULT_KINDS: dict[str, str] = {
    "Windows/System32/config/SYSTEM": "registry_hive",
    "Windows/System32/config/SOFTWARE": "registry_hive",
    "Windows/System32/config/SYSTEM.LOG1": "registry_hive",
    "inetpub/wwwroot/iisstart.htm": "web_file",
    "inetpub/wwwroot/aspnet_client/system_web/4_0_30319/WebUIValidation.js": "web_file",
    "inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx": "web_file",
    "inetpub/logs/LogFiles/W3SVC1/u_ex210303.log": "iis_log",
    f"{EX}/Bin/ExSetup.exe": "exchange_binary",
    f"{EX}/FrontEnd/HttpProxy/owa/auth/logon.aspx": "web_file",
    f"{EX}/FrontEnd/HttpProxy/owa/auth/RedirSuiteServiceProxy.aspx": "web_file",
    f"{EX}/FrontEnd/HttpProxy/owa/auth/15.1.2176/themes/resources/logon.css": "web_file",
    f"{EX}/FrontEnd/HttpProxy/ecp/auth/TimeoutLogoff.aspx": "web_file",
    f"{EX}/Logging/HttpProxy/Ecp/HttpProxy_2021030302-1.LOG": "exchange_log",
    f"{EX}/Logging/HttpProxy/Owa/HttpProxy_2021030301-1.LOG": "exchange_log",
    f"{EX}/Logging/ECP/Server/ECPServer20210303-1.LOG": "exchange_log",
    f"{EX}/Logging/OABGeneratorLog/OABGeneratorLog_20210303-1.LOG": "exchange_log",
    "Windows/Temp/lsass.dmp": "suspicious_file",
    "ProgramData/it.zip": "suspicious_file",
}
DEFAULT_COUNTS = {
    "registry_hive": 3,
    "web_file": 7,
    "iis_log": 1,
    "exchange_binary": 1,
    "exchange_log": 4,
    "suspicious_file": 2,
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def evidence_rel(host: str, kind: str, volume_rel: str, drive: str = "C") -> str:
    """The relpath a file at ``volume_rel`` on drive ``drive`` gets in the case."""
    return f"evidence/{host}/{kind}/{drive}/{volume_rel}"


def stored_rows(case: Case) -> list[ManifestRow]:
    """Rows of artifacts that were stored (success or empty)."""
    return [r for r in case.manifest() if r.outcome in ("success", "empty")]


def rows_by_outcome(case: Case, outcome: str) -> list[ManifestRow]:
    return [r for r in case.manifest() if r.outcome == outcome]


def case_files(case: Case) -> list[Path]:
    """Every regular file under the case's evidence folder."""
    return sorted(p for p in (case.path / "evidence").rglob("*") if p.is_file() and not p.is_symlink())


# -- source snapshots -----------------------------------------------------------------------------
def _noatime_fd(path: str, *, directory: bool = False) -> int:
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NOATIME", 0)
    if directory:
        flags |= os.O_DIRECTORY
    return os.open(path, flags)


def _read_noatime(path: str) -> bytes:
    fd = _noatime_fd(path)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _list_noatime(path: str) -> list[str]:
    fd = _noatime_fd(path, directory=True)
    try:
        return sorted(os.listdir(fd))
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Entry:
    kind: str
    mode: int
    size: int
    mtime_ns: int
    atime_ns: int
    nlink: int
    content: str  # sha256 of a file, the sorted listing of a folder


def _walk(root: str) -> Iterator[str]:
    yield root
    st = os.lstat(root)
    if stat.S_ISDIR(st.st_mode):
        for name in _list_noatime(root):
            yield from _walk(os.path.join(root, name))


def snapshot(root: str | os.PathLike[str]) -> dict[str, Entry]:
    """Everything an examiner could see changed under ``root``: bytes, times, modes, listings."""
    root = os.fspath(root)
    out: dict[str, Entry] = {}
    for path in _walk(root):
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            kind, content = "dir", "\n".join(_list_noatime(path))
        elif stat.S_ISLNK(st.st_mode):
            # not os.readlink(): reading a link's target updates the link's own access time
            kind, content = "link", ""
        elif stat.S_ISREG(st.st_mode):
            kind, content = "file", sha256(_read_noatime(path))
        else:
            kind, content = "other", ""
        out[os.path.relpath(path, root)] = Entry(
            kind, st.st_mode, st.st_size, st.st_mtime_ns, st.st_atime_ns, st.st_nlink, content
        )
    return out


def age_tree(root: str | os.PathLike[str]) -> None:
    """Set old access and modification times on every file and folder under ``root`` (itself too)."""
    root = os.fspath(root)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), ns=(OLD_ATIME_NS, OLD_MTIME_NS), follow_symlinks=False)
        os.utime(dirpath, ns=(OLD_ATIME_NS, OLD_MTIME_NS))


def collect(case: Case, location: str | os.PathLike[str], *, host: str | None = None, as_type: str = "auto"):
    """Open ``location`` as a source and run the volume collector over it; returns (source, stats)."""
    from collectors.collect import collect_volume
    from collectors.sources import open_source_path

    src = open_source_path(os.fspath(location), as_type)
    try:
        return src, collect_volume(case, src, host=host)
    finally:
        src.close()


def collect_loose(
    case: Case,
    location: str | os.PathLike[str],
    *,
    host: str | None = None,
    as_type: str = "auto",
    link: str | None = None,
    kind: str | None = None,
):
    """Open ``location`` (memory image or loose files) and run the file collector; returns (source, stats)."""
    from collectors.collect import collect_files
    from collectors.sources import open_source_path

    src = open_source_path(os.fspath(location), as_type)
    try:
        return src, collect_files(case, src, host=host, link=link, kind=kind)
    finally:
        src.close()
