"""Web shell and staging locations: files where a stock Exchange/IIS server has none.

Rules are data (``signatures/webshell/locations.yaml``); this module only compiles and applies them.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from triage.finding import Finding, RuleMeta
from triage.indicators import indicator_list, stock_pages
from triage.registry import Analyzer, Unit, register, signature_path

RULE_FILE = "webshell/locations.yaml"
KNOWN_KEYS = {
    "id",
    "title",
    "description",
    "severity",
    "confidence",
    "kinds",
    "path",
    "name",
    "name_regex",
    "not_name",
    "not_stock",
    "ext",
    "magic",
    "mitre",
    "cve",
    "steps",
    "tests",
    "references",
}
SELECTORS = ("path", "name", "name_regex", "ext", "magic")


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a '/'-path glob ('**' any depth, '*' and '?' within a name) to a case-insensitive regex."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class LocationRule(RuleMeta):
    """One compiled location rule: its metadata (:class:`RuleMeta`) and what it matches."""

    kinds: frozenset[str]
    paths: tuple[re.Pattern[str], ...]
    names: tuple[str, ...]
    name_regex: re.Pattern[str] | None
    not_names: frozenset[str]
    exts: frozenset[str]
    magic: bytes
    tests: dict[str, list[str]]

    def matches(self, logical: str, kind: str, head: bytes) -> bool:
        if self.kinds and kind not in self.kinds:
            return False
        name = PurePosixPath(logical).name
        if self.paths and not any(p.match(logical) for p in self.paths):
            return False
        if self.exts and PurePosixPath(name).suffix.lower() not in self.exts:
            return False
        if self.names and not any(fnmatch.fnmatchcase(name.casefold(), n.casefold()) for n in self.names):
            return False
        if self.name_regex is not None and not self.name_regex.search(name):
            return False
        if name.casefold() in self.not_names:
            return False
        return not self.magic or head.startswith(self.magic)


def _listed(value: Any, path: Path, rid: str) -> tuple[str, ...]:
    """A rule's list of values, or the shared indicator list it names as ``"@name"``."""
    if isinstance(value, str) and value.startswith("@"):
        try:
            return indicator_list(value[1:])
        except KeyError:
            raise ValueError(f"{path}: rule {rid}: unknown list {value!r}") from None
    return tuple(str(v) for v in value)


def load_rules(path: Path | None = None) -> list[LocationRule]:
    """Load and validate the rule file; a bad rule is an error naming its id and the problem."""
    path = path or signature_path(RULE_FILE)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    stock = {k: [s.casefold() for s in v] for k, v in stock_pages().items()}
    rules = []
    seen = set()
    for raw in doc.get("rules", []):
        rid = raw.get("id", "?")
        unknown = set(raw) - KNOWN_KEYS
        if unknown:
            raise ValueError(f"{path}: rule {rid}: unknown keys {sorted(unknown)}")
        if rid in seen:
            raise ValueError(f"{path}: rule id {rid} used twice")
        seen.add(rid)
        if not any(raw.get(k) for k in SELECTORS):
            raise ValueError(f"{path}: rule {rid}: no selector ({', '.join(SELECTORS)})")
        not_names = {n.casefold() for n in raw.get("not_name", [])}
        if raw.get("not_stock"):
            if raw["not_stock"] not in stock:
                raise ValueError(f"{path}: rule {rid}: unknown stock list {raw['not_stock']!r}")
            not_names |= set(stock[raw["not_stock"]])
        rules.append(
            LocationRule(
                id=rid,
                title=raw["title"],
                description=" ".join(str(raw.get("description", "")).split()),
                severity=raw["severity"],
                confidence=raw.get("confidence", "medium"),
                kinds=frozenset(raw.get("kinds", [])),
                paths=tuple(glob_regex(p) for p in raw.get("path", [])),
                names=_listed(raw.get("name", []), path, rid),
                name_regex=re.compile(raw["name_regex"], re.IGNORECASE) if raw.get("name_regex") else None,
                not_names=frozenset(not_names),
                exts=frozenset(e.lower() for e in _listed(raw.get("ext", []), path, rid)),
                magic=bytes.fromhex(raw.get("magic", "")),
                mitre=tuple(raw.get("mitre", [])),
                cve=tuple(raw.get("cve", [])),
                steps=tuple(raw.get("steps", [])),
                tests=raw.get("tests", {}),
            )
        )
    return rules


def match_all(rules: Iterable[LocationRule], logical: str, kind: str, head: bytes) -> Iterator[LocationRule]:
    return (r for r in rules if r.matches(logical, kind, head))


@register
class WebShellLocations(Analyzer):
    """Flags files in web shell and staging locations (aspnet_client, owa/ecp auth, lsass dumps, ProgramData)."""

    name = "webshell_locations"
    version = "1.0"
    consumes = ("web_file", "suspicious_file")
    rules = (RULE_FILE,)

    def load_rules(self) -> list[LocationRule]:
        return load_rules()

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        logical = unit.logical_path
        head = b""
        needs_head = any(r.magic for r in self.ruleset)
        if needs_head:
            try:
                with open(unit.path, "rb") as fh:
                    head = fh.read(16)
            except OSError as exc:
                unit.warn(f"cannot read the file head for magic checks: {exc}")
        ev = unit.evidence
        for rule in match_all(self.ruleset, logical, ev.kind, head):
            attrs: dict[str, Any] = {
                "path": logical,
                "size": ev.size,
                "sha256": ev.sha256,
                "md5": ev.md5,
                "source_path": ev.source_path,
                "modified": ev.source_mtime,
            }
            yield unit.finding(
                rule,
                title=f"{rule.title}: {PurePosixPath(logical).name}",
                message=f"{logical} ({ev.size} bytes, sha256 {ev.sha256}). {rule.description}",
                location=logical,
                ts=ev.source_mtime,
                ts_desc="File modified (source)",
                tags=["webshell" if rule.id.startswith("TRIAGE-WEB") else "staging"],
                attributes=attrs,
            )
