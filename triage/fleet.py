"""Many hosts in one command: sources assigned to hosts, one complete case per host, and a fleet report.

``triage run`` recognises every source first, then assigns it to a host:

- volumes, KAPE outputs, Velociraptor collections and disk images: by the computer name in their SYSTEM
  hive, else the collection's host name;
- memory images and loose files: by ``HOST=PATH`` on the command line, or by a file name that starts with
  exactly one known host name followed by a non-alphanumeric character (``EXCH01-memory.raw``); with
  several hosts and no such match the command stops with a usage error listing the hosts.
  ``HOST=PATH`` also names the host of a volume whose hive does not.

One host keeps the single-case layout. Several hosts (or a ``--case`` folder that already is a fleet) make
a fleet folder::

    DIR/fleet/index.json       fleet id, examiner, tool version, host -> host case folder
    DIR/hosts/<HOST>/          a complete case per host (collect, analyze, report, verify as usual)
    DIR/fleet/                 fleet.json, fleet.csv, fleet.html, cisa_fleet.csv (triage.report.fleet)

Hosts are collected one after another (I/O bound); the analysis of all host cases goes to one executor.
This module plans hosts and keeps the fleet folder; the commands over a fleet are :mod:`triage.app.fleet`.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triage.case import safe_host
from triage.custody import load_json
from triage.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from collectors.sources import Source

INDEX = Path("fleet") / "index.json"


# -- sources -> hosts -------------------------------------------------------------------------------
def split_source_arg(arg: str) -> tuple[str | None, str]:
    """``HOST=PATH`` -> (HOST, PATH); a path that exists as given (even with ``=`` in it) stays a path."""
    if os.path.lexists(arg) or "=" not in arg:
        return None, arg
    host, path = arg.split("=", 1)
    if not host.strip() or not path or "/" in host or os.sep in host:
        return None, arg
    return host.strip(), path


@dataclass
class SourcePlan:
    """The recognised sources and the host each belongs to."""

    sources: list[Source]
    explicit: dict[int, str] = field(default_factory=dict)  # id(source) -> host named on the command line
    hosts: dict[str, list[Source]] = field(default_factory=dict)  # host -> its sources (fleet planning)
    unnamed: list[Source] = field(default_factory=list)  # volumes without a name, loose files without a host

    @property
    def fleet(self) -> bool:
        """More than one host: the run makes one case per host."""
        return len(self.hosts) + (1 if self.unnamed and not self.hosts else 0) > 1

    def host_for(self, src: Source) -> str | None:
        return self.explicit.get(id(src))

    def close(self) -> None:
        for src in self.sources:
            src.close()


def open_sources(args: list[str], as_type: str) -> SourcePlan:
    """Recognise every source (``HOST=PATH`` allowed); usage errors before anything is written."""
    from collectors.sources import open_source_path  # here: analyze and report only ask is_fleet_folder

    plan = SourcePlan([])
    try:
        for arg in args:
            host, path = split_source_arg(arg)
            src = open_source_path(path, as_type)
            plan.sources.append(src)
            if host:
                plan.explicit[id(src)] = safe_host(host)
    except BaseException:
        plan.close()
        raise
    return plan


def _volume_name(src: Source) -> str | None:
    from collectors.hostinfo import computer_name

    sysdrive = next((d for d, r in src.drives.items() if r.child("Windows") is not None), next(iter(src.drives)))
    name = computer_name(src.drives[sysdrive]) or src.host_hint
    return safe_host(name) if name else None


def _prefix_matches(name: str, hosts: list[str]) -> list[str]:
    base = name.casefold()
    out = []
    for h in hosts:
        key = h.casefold()
        if base.startswith(key) and (len(base) == len(key) or not base[len(key)].isalnum()):
            out.append(h)
    return out


def assign_hosts(plan: SourcePlan, host: str | None = None) -> SourcePlan:
    """Fill ``plan.hosts``: which host each source belongs to (``--host`` puts everything on one host)."""
    plan.hosts.clear()
    plan.unnamed.clear()
    if host:
        plan.hosts[safe_host(host)] = list(plan.sources)
        return plan
    loose: list[Source] = []
    for src in plan.sources:
        name = plan.host_for(src)
        if name is None and src.drives:
            name = _volume_name(src)
        if name is None:
            (plan.unnamed if src.drives else loose).append(src)
        else:
            # Windows computer names ignore case: EXCH01 from a hive and exch01=PATH are one host
            name = next((h for h in plan.hosts if h.casefold() == name.casefold()), name)
            if id(src) in plan.explicit:
                plan.explicit[id(src)] = name  # collected under the spelling the host already has
            plan.hosts.setdefault(name, []).append(src)
    known = list(plan.hosts)
    for src in loose:
        if len(known) <= 1:
            # one host (or none): loose files go with it, as a single-host run always did
            (plan.hosts[known[0]] if known else plan.unnamed).append(src)
            continue
        matches = _prefix_matches(os.path.basename(src.location.rstrip("/")), known)
        if len(matches) != 1:
            why = "starts with several host names" if matches else "does not start with a host name"
            raise UsageError(
                f"{src.location}: cannot tell which host this {src.source_type} source belongs to (its name {why}); "
                f"name it as HOST=PATH or give it a name starting with one of the hosts: {', '.join(known)}"
            )
        plan.hosts[matches[0]].append(src)
    if plan.unnamed and known:
        names = ", ".join(s.location for s in plan.unnamed)
        raise UsageError(
            f"no host name in the SYSTEM hive or the collection of {names}; with several hosts in one run, "
            f"name it as HOST=PATH (hosts so far: {', '.join(known)})"
        )
    return plan


def plan_sources(args: list[str], as_type: str, host: str | None = None) -> SourcePlan:
    """Open and assign the sources of a ``triage run``."""
    plan = open_sources(args, as_type)
    try:
        return assign_hosts(plan, host)
    except BaseException:
        plan.close()
        raise


# -- fleet folders ----------------------------------------------------------------------------------
def is_fleet_folder(path: str | os.PathLike[str]) -> bool:
    """A folder made by a fleet run: ``fleet/index.json`` or host cases under ``hosts/``, no ``case.json``."""
    p = Path(path)
    if (p / "case.json").exists():
        return False
    if (p / INDEX).is_file():
        return True
    hosts = p / "hosts"
    return hosts.is_dir() and any((d / "case.json").is_file() for d in hosts.iterdir())


def host_cases(root: Path) -> dict[str, Path]:
    """Host name -> host case folder, from the index (and any host case folder not in it)."""
    out: dict[str, Path] = {}
    try:
        index = load_json((root / INDEX).read_text(encoding="utf-8"))
        for host, rel in index.get("hosts", {}).items():
            out[str(host)] = root / rel
    except (OSError, ValueError):
        pass
    if (root / "hosts").is_dir():
        known = {p.resolve() for p in out.values()}
        for d in sorted((root / "hosts").iterdir()):
            if (d / "case.json").is_file() and d.resolve() not in known:
                out[d.name] = d
    return out


def open_index(root: Path, fleet_id: str | None = None, examiner: str | None = None) -> dict[str, Any]:
    """The fleet index of ``root`` (a new one, with ``fleet_id`` and ``examiner``, when there is none yet)."""
    if (root / "case.json").exists():
        raise UsageError(
            f"{root} is a single-host case folder; a run over several hosts needs a new --case folder "
            "(it becomes a fleet folder with one case per host)"
        )
    if root.exists() and any(root.iterdir()) and not is_fleet_folder(root):
        raise UsageError(f"{root} exists, is not empty and is not a case or fleet folder")
    try:
        return dict(json.loads((root / INDEX).read_text(encoding="utf-8")))
    except FileNotFoundError:
        pass
    except ValueError as exc:
        raise UsageError(f"{root / INDEX} is not valid JSON: {exc}") from None
    from triage import __version__
    from triage.custody import CustodyLog

    return {
        "fleet_id": fleet_id or f"FLEET-{datetime.now(UTC):%Y%m%d}-{uuid.uuid4().hex[:8]}",
        "examiner": examiner or os.environ.get("TRIAGE_EXAMINER") or CustodyLog(root).actor,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "tool_version": __version__,
        "hosts": {},
    }


def write_index(root: Path, index: dict[str, Any]) -> None:
    """Write the fleet index atomically (whole or absent for a concurrent reader)."""
    path = root / INDEX
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def fleet_id_of(root: Path) -> str:
    """The fleet id recorded in the index ("" when there is none)."""
    try:
        return str(load_json((root / INDEX).read_text(encoding="utf-8")).get("fleet_id", ""))
    except (OSError, ValueError):
        return ""


# A fleet's verify exit code is the worst of its host cases' own codes, in this order: a change or a damaged
# case (3) outweighs files a collection could not write (5), which outweighs a command that never finished
# (6): tampering must never be reported as a mere interruption. Any other code a host case ends with (a
# usage error while opening it) ranks just below 3.
VERIFY_SEVERITY = (ExitCode.INTEGRITY, ExitCode.COLLECTION_FAILED, ExitCode.INCOMPLETE, ExitCode.OK)


def worst_verify_code(codes: list[ExitCode]) -> ExitCode:
    """The fleet's verify exit code from its host cases' codes (``VERIFY_SEVERITY``; an empty fleet is 3)."""
    if not codes:
        return ExitCode.INTEGRITY  # nothing verified is not a clean verify

    def rank(code: ExitCode) -> float:
        return VERIFY_SEVERITY.index(code) if code in VERIFY_SEVERITY else 0.5

    return min(codes, key=rank)
