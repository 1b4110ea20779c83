"""Sigma logsources as data: which rows of the event table a rule's logsource selects, and field aliases.

The mapping lives in ``signatures/sigma/logsources.yaml``; :func:`load_logsources` reads and validates it
(any problem raises :class:`LogsourceError` naming the file, the entry and, for YAML syntax, the line).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from triage.errors import TriageError

DEFAULT_LOGSOURCES = "sigma/logsources.yaml"  # relative to the installed signatures/ folder
_ENTRY_KEYS = {"product", "category", "service", "sources", "description"}
_SOURCE_KEYS = {"name", "channel", "provider", "event_ids", "fields"}
_MATCH_KEYS = ("product", "category", "service")


class LogsourceError(TriageError):
    """The logsource mapping file cannot be used as written."""


@dataclass(frozen=True)
class SourceVariant:
    """One row filter of a logsource: channel/provider/EventID conditions plus field aliases.

    Attributes:
        name: label for messages (e.g. ``security-4688``).
        channels: case-folded channel names (any of them), empty = no channel condition.
        providers: case-folded provider names (any of them), empty = no provider condition.
        event_ids: EventIDs (any of them), empty = no EventID condition.
        aliases: (rule field, table column) pairs, global aliases merged with the source's own.
    """

    name: str = field(compare=False)  # sources with equal filters and aliases share one sub-frame
    channels: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    event_ids: tuple[int, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()

    @cached_property
    def alias_map(self) -> dict[str, str]:
        """The aliases as a dict (rule field -> column)."""
        return dict(self.aliases)

    def describe(self) -> str:
        """A short human-readable form of the filter."""
        parts = []
        if self.channels:
            parts.append("channel in " + "|".join(self.channels))
        if self.providers:
            parts.append("provider in " + "|".join(self.providers))
        if self.event_ids:
            parts.append("EventID in " + ",".join(str(e) for e in self.event_ids))
        return f"{self.name}: " + " and ".join(parts)


@dataclass(frozen=True)
class LogsourceEntry:
    """A Sigma logsource (exact product/category/service combination) and the sources it reads."""

    product: str | None
    category: str | None
    service: str | None
    sources: tuple[SourceVariant, ...]
    description: str = ""

    @property
    def key(self) -> tuple[str | None, str | None, str | None]:
        """``(product, category, service)``, lower-case."""
        return (self.product, self.category, self.service)

    def label(self) -> str:
        """``product/category/service`` with unset parts left out."""
        return logsource_label(self.product, self.category, self.service)


def logsource_label(product: str | None, category: str | None, service: str | None) -> str:
    """Render a logsource like ``product=windows category=process_creation``."""
    parts = [f"{k}={v}" for k, v in (("product", product), ("category", category), ("service", service)) if v]
    return " ".join(parts) or "(empty)"


@dataclass
class LogsourceMap:
    """All known logsources, looked up by a rule's (product, category, service).

    Build it with :func:`load_logsources` (from YAML) or :meth:`from_dict`.
    """

    entries: dict[tuple[str | None, str | None, str | None], LogsourceEntry] = field(default_factory=dict)
    field_aliases: dict[str, str] = field(default_factory=dict)
    path: str = ""

    def resolve(self, product: str | None, category: str | None, service: str | None) -> LogsourceEntry | None:
        """The entry for exactly this logsource (case-insensitive), or None when it is unknown."""
        return self.entries.get((_norm(product), _norm(category), _norm(service)))

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[LogsourceEntry]:
        return iter(self.entries.values())

    @classmethod
    def from_dict(cls, data: Any, *, origin: str = "<dict>") -> LogsourceMap:
        """Validate a parsed mapping document and build the map (raises :class:`LogsourceError`)."""
        if not isinstance(data, Mapping):
            raise LogsourceError(f"{origin}: the document must be a mapping with 'logsources'")
        unknown = set(data) - {"version", "field_aliases", "logsources"}
        if unknown:
            raise LogsourceError(f"{origin}: unknown top-level key(s) {sorted(unknown)}")
        if data.get("version", 1) != 1:
            raise LogsourceError(f"{origin}: unsupported version {data.get('version')!r} (expected 1)")
        aliases = _str_map(data.get("field_aliases") or {}, f"{origin}: field_aliases")
        raw_entries = data.get("logsources")
        if not isinstance(raw_entries, list) or not raw_entries:
            raise LogsourceError(f"{origin}: 'logsources' must be a non-empty list")
        entries: dict[tuple[str | None, str | None, str | None], LogsourceEntry] = {}
        for i, raw in enumerate(raw_entries, 1):
            entry = _entry(raw, aliases, f"{origin}: logsources[{i}]")
            if entry.key in entries:
                raise LogsourceError(f"{origin}: logsources[{i}] ({entry.label()}) is defined twice")
            entries[entry.key] = entry
        return cls(entries=entries, field_aliases=aliases, path=origin)


def default_logsources_path() -> Path:
    """Path of the shipped ``signatures/sigma/logsources.yaml``."""
    return Path(str(resources.files("signatures").joinpath(DEFAULT_LOGSOURCES)))


def load_logsources(path: str | Path | None = None) -> LogsourceMap:
    """Read and validate a logsource mapping file (default: the shipped one).

    Raises:
        LogsourceError: unreadable file, YAML syntax error (with line), or an invalid entry.
    """
    import yaml  # only to read a map: a compiled rule set carries its own

    from triage.formats import yamldoc

    p = Path(path) if path is not None else default_logsources_path()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise LogsourceError(f"{p}: cannot read logsource mapping: {exc}") from exc
    try:
        data = yamldoc.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise LogsourceError(f"{p}: YAML error{where}: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise LogsourceError(f"{p}: YAML error: {exc}") from exc
    return LogsourceMap.from_dict(data, origin=str(p))


def _norm(value: Any) -> str | None:
    return str(value).strip().lower() if value not in (None, "") else None


def _entry(raw: Any, aliases: dict[str, str], where: str) -> LogsourceEntry:
    if not isinstance(raw, Mapping):
        raise LogsourceError(f"{where}: must be a mapping")
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise LogsourceError(f"{where}: unknown key(s) {sorted(unknown)}")
    for key in _MATCH_KEYS:
        if key in raw and not isinstance(raw[key], str):
            raise LogsourceError(f"{where}: '{key}' must be a string")
    product, category, service = (_norm(raw.get(k)) for k in _MATCH_KEYS)
    if not (product or category or service):
        raise LogsourceError(f"{where}: needs at least one of product, category, service")
    label = logsource_label(product, category, service)
    sources = raw.get("sources")
    if not isinstance(sources, list) or not sources:
        raise LogsourceError(f"{where} ({label}): 'sources' must be a non-empty list")
    variants = tuple(_source(s, aliases, f"{where} ({label}) sources[{j}]", label) for j, s in enumerate(sources, 1))
    return LogsourceEntry(product, category, service, variants, str(raw.get("description") or ""))


def _source(raw: Any, aliases: dict[str, str], where: str, label: str) -> SourceVariant:
    if not isinstance(raw, Mapping):
        raise LogsourceError(f"{where}: must be a mapping")
    unknown = set(raw) - _SOURCE_KEYS
    if unknown:
        raise LogsourceError(f"{where}: unknown key(s) {sorted(unknown)}")
    channels = _str_list(raw.get("channel"), f"{where}: channel")
    providers = _str_list(raw.get("provider"), f"{where}: provider")
    if not channels and not providers:
        raise LogsourceError(f"{where}: needs a 'channel' or a 'provider'")
    ids_raw = raw.get("event_ids")
    ids_list = [] if ids_raw is None else ids_raw if isinstance(ids_raw, list) else [ids_raw]
    for v in ids_list:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise LogsourceError(f"{where}: event_ids must be non-negative integers, got {v!r}")
    merged = dict(aliases)
    merged.update(_str_map(raw.get("fields") or {}, f"{where}: fields"))
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise LogsourceError(f"{where}: 'name' must be a string")
    return SourceVariant(
        name=name or label,
        channels=tuple(c.lower() for c in channels),
        providers=tuple(p.lower() for p in providers),
        event_ids=tuple(sorted(set(ids_list))),
        aliases=tuple(sorted(merged.items())),
    )


def _str_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    items: Iterable[Any] = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if not isinstance(v, str) or not v.strip():
            raise LogsourceError(f"{where}: expected non-empty strings, got {v!r}")
        out.append(v.strip())
    return out


def _str_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise LogsourceError(f"{where}: must be a mapping of field -> column")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str) or not k or not v:
            raise LogsourceError(f"{where}: entries must be non-empty strings, got {k!r}: {v!r}")
    return dict(value)
