"""A snapshot of a source tree that does not itself disturb what it records.

Files are read and folders listed through O_NOATIME descriptors, so taking the snapshot twice with a
collection in between shows exactly what the collection changed: bytes, size, mode, mtime, atime.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from triage.hashing import copy_hashing, open_readonly, open_source


def tree_snapshot(root: str | os.PathLike[str]) -> dict[str, tuple[object, ...]]:
    """Map each path under ``root`` (root included, as '.') to (sha256, size, mode, mtime_ns, atime_ns, links)."""
    root = Path(root)
    out: dict[str, tuple[object, ...]] = {}

    def visit(path: Path, rel: str) -> None:
        st = os.lstat(path)
        digest = None
        if stat.S_ISREG(st.st_mode):
            with open_source(path) as fh:
                digest = copy_hashing(fh, None, ("sha256",))[1]["sha256"]
        out[rel] = (digest, st.st_size, st.st_mode, st.st_mtime_ns, st.st_atime_ns, st.st_nlink)
        if stat.S_ISDIR(st.st_mode):
            fd = open_readonly(path, directory=True)
            try:
                names = sorted(os.listdir(fd))
            finally:
                os.close(fd)
            for name in names:
                visit(path / name, f"{rel}/{name}" if rel != "." else name)

    visit(root, ".")
    return out
