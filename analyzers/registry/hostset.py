"""The hives of one host, as a host-scope unit receives them: hives paired with their logs, opened lazily.

Collected hives arrive as separate manifest rows (``SYSTEM``, ``SYSTEM.LOG1``, ``SYSTEM.LOG2`` ...). This
module pairs each hive with its logs, tells its type and, for user hives, whose it is, and opens each
hive once per unit through :class:`~triage.formats.hive.Hive`. Backup copies under
``config/RegBack`` are left out: they repeat the live hives and would double every finding.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from triage.case import ManifestRow
from triage.formats.hive import Hive, guess_hive_type
from triage.registry import Unit, logical_path

LOG_SUFFIXES = (".log", ".log1", ".log2")
ROOTS = {
    "system": "HKLM\\SYSTEM",
    "software": "HKLM\\SOFTWARE",
    "sam": "HKLM\\SAM",
    "security": "HKLM\\SECURITY",
    "default": "HKU\\.DEFAULT",
    "amcache": "Amcache",
}


@dataclass
class HiveFile:
    """One collected hive with its transaction logs."""

    row: ManifestRow
    path: Path
    logical: str
    hive_type: str
    user: str = ""
    logs: list[Path] = field(default_factory=list)
    hive: Hive | None = None

    @property
    def root(self) -> str:
        """How findings name the hive's root key (``HKLM\\SYSTEM``, ``HKU\\alice`` ...)."""
        if self.hive_type == "ntuser":
            return f"HKU\\{self.user or '?'}"
        if self.hive_type == "usrclass":
            return f"HKU\\{self.user or '?'}_Classes"
        return ROOTS.get(self.hive_type, self.logical)


def user_of(logical: str) -> str:
    """The profile a user hive belongs to: ``C:/Users/alice/NTUSER.DAT`` -> ``alice``."""
    parts = PurePosixPath(logical.replace("\\", "/")).parts
    low = [p.lower() for p in parts]
    if "users" in low:
        i = low.index("users")
        if i + 1 < len(parts) - 1:
            return parts[i + 1]
    if "serviceprofiles" in low:
        i = low.index("serviceprofiles")
        if i + 1 < len(parts) - 1:
            return parts[i + 1]
    if "systemprofile" in low:
        return "systemprofile"
    return ""


def pair_hives(rows: list[ManifestRow], path_of: object) -> list[HiveFile]:
    """Pair hive rows with their log rows; ``path_of(row)`` gives where a row's bytes are."""
    by_logical: dict[str, tuple[ManifestRow, Path]] = {}
    for r in rows:
        if r.kind != "registry_hive" or r.outcome != "success" or not r.relpath:
            continue
        by_logical[logical_path(r).lower()] = (r, path_of(r))  # type: ignore[operator]
    hives: list[HiveFile] = []
    for low, (row, path) in sorted(by_logical.items()):
        if low.endswith(LOG_SUFFIXES) or "/regback/" in low:
            continue
        logical = logical_path(row)
        hive_type = guess_hive_type(logical)
        if not hive_type:
            continue
        logs = [by_logical[low + s][1] for s in (".log1", ".log2", ".log") if low + s in by_logical]
        user = user_of(logical) if hive_type in ("ntuser", "usrclass") else ""
        hives.append(HiveFile(row=row, path=path, logical=logical, hive_type=hive_type, user=user, logs=logs))
    return hives


class HostHives:
    """The hives of a host-scope unit; use as a context manager so private copies are removed."""

    def __init__(self, unit: Unit, backend: str = "auto") -> None:
        self.unit = unit
        self.backend = backend
        self.files = pair_hives(unit.members, unit.member_path)
        self._tmp = tempfile.mkdtemp(prefix="triage-hives-")

    def __enter__(self) -> HostHives:
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self.files:
            if f.hive is not None:
                f.hive.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def open(self, f: HiveFile) -> Hive | None:
        """The opened hive of ``f`` (opened once; its warnings go to the unit)."""
        if f.hive is None:
            workdir = Path(self._tmp) / f.row.artifact_id
            workdir.mkdir(exist_ok=True)
            f.hive = Hive(
                f.path, logs=f.logs, hive_type=f.hive_type, label=f.logical, backend=self.backend, workdir=workdir
            )
            for w in f.hive.warnings:
                self.unit.warn(w)
            f.hive.warnings = _Forward(self.unit, f.hive.warnings)
        return f.hive if f.hive.ok else None

    def of_type(self, hive_type: str) -> Iterator[tuple[HiveFile, Hive]]:
        """Every opened hive of one type."""
        for f in self.files:
            if f.hive_type == hive_type:
                h = self.open(f)
                if h is not None:
                    yield f, h

    def first(self, hive_type: str) -> tuple[HiveFile, Hive] | tuple[None, None]:
        """The first hive of a type (SYSTEM, SOFTWARE ... exist once per host)."""
        return next(self.of_type(hive_type), (None, None))


class _Forward(list):
    """A warnings list that also forwards later warnings (key-level read errors) to the unit."""

    def __init__(self, unit: Unit, initial: list[str]) -> None:
        super().__init__(initial)
        self._unit = unit

    def append(self, message: str) -> None:
        super().append(message)
        self._unit.warn(message)
