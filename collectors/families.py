"""Loading the declared artifact families (``artifacts.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from triage.errors import UsageError
from triage.formats import yamldoc

REQUIRED = ("name", "kind", "paths")


@dataclass(frozen=True)
class Family:
    """A kind of artifact and the volume-relative paths where it lives."""

    name: str
    kind: str
    paths: tuple[str, ...]
    step: int | None = None
    description: str = ""

    @property
    def needs_exchange(self) -> bool:
        return any("%ExchangeInstallPath%" in p for p in self.paths)


def load_families(path: str | Path | None = None) -> list[Family]:
    """Load and validate families; a malformed declaration is a clear error naming the entry."""
    if path is None:
        text = resources.files("collectors").joinpath("artifacts.yaml").read_text(encoding="utf-8")
        origin = "artifacts.yaml"
    else:
        text = Path(path).read_text(encoding="utf-8")
        origin = str(path)
    try:
        doc = yamldoc.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{origin}: not valid YAML: {exc}") from None
    out: list[Family] = []
    seen: set[str] = set()
    for i, entry in enumerate((doc or {}).get("families", [])):
        missing = [k for k in REQUIRED if not entry.get(k)]
        if missing:
            raise UsageError(f"{origin}: family #{i + 1} lacks {', '.join(missing)}")
        if entry["name"] in seen:
            raise UsageError(f"{origin}: family {entry['name']!r} declared twice")
        seen.add(entry["name"])
        paths = entry["paths"]
        if isinstance(paths, str) or not all(isinstance(p, str) for p in paths):
            raise UsageError(f"{origin}: family {entry['name']!r}: paths must be a list of strings")
        out.append(
            Family(
                name=entry["name"],
                kind=entry["kind"],
                paths=tuple(paths),
                step=entry.get("step"),
                description=entry.get("description", ""),
            )
        )
    return out
