"""The technique x event-source coverage matrix (``signatures/coverage/*.yaml``) as data.

Each file declares techniques and, per technique, the event sources that can record it and the rules that
cover each of those cells::

    version: 1
    sources:                      # the event-source vocabulary (only ed2102.yaml declares it; others reuse it)
      sysmon_registry: {title: Sysmon registry events, channel: Microsoft-Windows-Sysmon/Operational,
                        event_ids: [12, 13, 14]}
      registry_hive: {title: Offline registry hives, kind: registry}     # rules over hives, not events
    techniques:
      - id: lsass_silent_process_exit
        title: Lsass dumped through silent process exit monitoring
        attack: [T1003.001]
        ed2102_steps: [9]
        cells:                    # source -> rule references (Sigma file stem or id, registry or web-log id)
          sysmon_registry: [cred_lsass_silent_process_exit_dump]
          application: [cred_lsass_silent_process_exit_event]

``name`` is accepted for ``title`` and ``sources`` for ``cells`` (the shape of ``breadth.yaml``), whose source
ids are the coarse channel names also declared here (``Sysmon``, ``Security``, ``PowerShell`` ...).

An event source with a ``channel`` selects sample events by channel (and event ids when given); ``kind``
names a non-event source (``registry`` for the registry rules, ``weblog`` for the web-log indicators). The
test ``tests/signatures/sigma/test_coverage_matrix.py`` holds every cell to a rule that exists, with a positive
sample from that very source and a benign sample; a cell with no rule is an error, not a gap to fill later.
Severity policy: see ``signatures/SEVERITY.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SOURCE_KINDS = ("events", "registry", "weblog")


class CoverageError(ValueError):
    """A coverage file that does not follow the schema (the message names the file and the entry)."""


@dataclass(frozen=True)
class Source:
    """One event source: the channel (and event ids) whose events record a technique, or a non-event kind."""

    id: str
    title: str
    kind: str = "events"
    channels: tuple[str, ...] = ()
    event_ids: tuple[int, ...] = ()
    providers: tuple[str, ...] = ()

    def reads(self, channels: tuple[str, ...], event_ids: tuple[int, ...]) -> bool:
        """True when a logsource variant with these (case-folded) channels and event ids reads this source."""
        if self.kind != "events" or not {c.lower() for c in self.channels} & set(channels):
            return False
        return not self.event_ids or not event_ids or bool(set(self.event_ids) & set(event_ids))

    def selects(self, row: dict[str, Any]) -> bool:
        """True when a flattened event row (reader column names) comes from this source."""
        if self.kind != "events":
            return False
        if str(row.get("Channel", "")).lower() not in {c.lower() for c in self.channels}:
            return False
        if self.providers and str(row.get("Provider", "")).lower() not in {p.lower() for p in self.providers}:
            return False
        return not self.event_ids or int(row.get("EventID", -1)) in self.event_ids


@dataclass(frozen=True)
class Technique:
    """One technique row of the matrix: cells map a source id to the rule references covering it."""

    id: str
    title: str
    file: str
    attack: tuple[str, ...] = ()
    ed2102_steps: tuple[int, ...] = ()
    cells: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class Coverage:
    """All coverage files merged: the source vocabulary and the techniques, in file order."""

    sources: dict[str, Source] = field(default_factory=dict)
    techniques: list[Technique] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def rule_refs(self) -> set[str]:
        """Every rule reference named in any cell."""
        return {ref for t in self.techniques for refs in t.cells.values() for ref in refs}

    def rows(self) -> list[dict[str, Any]]:
        """The matrix flat: one row per (technique, source, rule reference), for reports and tables."""
        return [
            {"technique": t.id, "title": t.title, "attack": ",".join(t.attack), "source": s, "rule": ref}
            for t in self.techniques
            for s, refs in t.cells.items()
            for ref in refs
        ]


def _tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def _source(sid: str, raw: Any, where: str) -> Source:
    if not isinstance(raw, dict):
        raise CoverageError(f"{where}: source {sid!r} must be a mapping")
    unknown = set(raw) - {"title", "kind", "channel", "event_ids", "provider"}
    if unknown:
        raise CoverageError(f"{where}: source {sid!r} has unknown keys {sorted(unknown)}")
    kind = raw.get("kind", "events")
    if kind not in SOURCE_KINDS:
        raise CoverageError(f"{where}: source {sid!r} kind {kind!r} is not one of {SOURCE_KINDS}")
    channels = tuple(str(c) for c in _tuple(raw.get("channel")))
    if kind == "events" and not channels:
        raise CoverageError(f"{where}: event source {sid!r} needs a channel")
    return Source(
        id=sid,
        title=str(raw.get("title") or sid),
        kind=kind,
        channels=channels,
        event_ids=tuple(int(e) for e in _tuple(raw.get("event_ids"))),
        providers=tuple(str(p) for p in _tuple(raw.get("provider"))),
    )


def _technique(raw: Any, where: str) -> Technique:
    if not isinstance(raw, dict) or not raw.get("id"):
        raise CoverageError(f"{where}: every technique needs an id")
    unknown = set(raw) - {"id", "title", "name", "attack", "ed2102_steps", "cells", "sources", "note"}
    if unknown:
        raise CoverageError(f"{where}: technique {raw['id']!r} has unknown keys {sorted(unknown)}")
    cells = raw.get("cells", raw.get("sources"))
    if not isinstance(cells, dict) or not cells:
        raise CoverageError(f"{where}: technique {raw['id']!r} declares no cells")
    return Technique(
        id=str(raw["id"]),
        title=str(raw.get("title") or raw.get("name") or raw["id"]),
        file=where,
        attack=tuple(str(a) for a in _tuple(raw.get("attack"))),
        ed2102_steps=tuple(int(s) for s in _tuple(raw.get("ed2102_steps"))),
        cells={str(s): tuple(str(r) for r in _tuple(refs)) for s, refs in cells.items()},
    )


def load_coverage(paths: Iterable[Path] | Path) -> Coverage:
    """Load coverage files (a folder means every ``*.yaml`` in it, ``ed2102.yaml`` first).

    Raises :class:`CoverageError` for a file that breaks the schema, a technique id given twice, a
    source declared twice with different definitions, or a cell naming a source that no file declares.
    """
    if isinstance(paths, Path):
        paths = (
            sorted(paths.glob("*.yaml"), key=lambda p: (p.name != "ed2102.yaml", p.name)) if paths.is_dir() else [paths]
        )
    from triage.formats import yamldoc  # PyYAML only where a coverage file is read

    cov = Coverage()
    seen: dict[str, str] = {}
    for path in paths:
        doc = yamldoc.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        where = Path(path).name
        if doc.get("version") != 1:
            raise CoverageError(f"{where}: version must be 1")
        for sid, raw in (doc.get("sources") or {}).items():
            src = _source(str(sid), raw, where)
            if sid in cov.sources and cov.sources[sid] != src:
                raise CoverageError(f"{where}: source {sid!r} redefined differently")
            cov.sources[str(sid)] = src
        for raw in doc.get("techniques") or []:
            tech = _technique(raw, where)
            if tech.id in seen:
                raise CoverageError(f"{where}: technique {tech.id!r} already declared in {seen[tech.id]}")
            seen[tech.id] = where
            cov.techniques.append(tech)
        cov.files.append(Path(path))
    # after every file: a technique may name a source another file declares (breadth.yaml reuses ed2102.yaml's)
    for tech in cov.techniques:
        for sid in tech.cells:
            if sid not in cov.sources:
                raise CoverageError(
                    f"{tech.file}: technique {tech.id!r} names source {sid!r}, which no coverage file declares "
                    f"(declared: {', '.join(sorted(cov.sources)) or 'none'})"
                )
    return cov


__all__ = ["Coverage", "CoverageError", "Source", "Technique", "load_coverage"]
