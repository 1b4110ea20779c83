"""The indicator lists and command-line rules under ``signatures/indicators/``, loaded once and cached.

One list of each indicator for the whole product: stock Exchange auth pages, server-page extensions, actor IPs,
user agents and web shell names (``exchange_web.yaml``, ``actors.yaml``), and the memory analyzer's command-line
rules (``cmdline.yaml``). Analyzers ask here instead of keeping their own copies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from triage.finding import RuleMeta
from triage.formats import yamldoc

INDICATOR_DIR = "indicators"
LIST_FILES = ("exchange_web.yaml", "actors.yaml")
CMDLINE_FILE = "cmdline.yaml"
# the URL folder each stock list lives in (under the Exchange front end's virtual directories)
STOCK_URL_FOLDERS = {"owa_auth": "/owa/auth/", "ecp_auth": "/ecp/auth/"}


class IndicatorError(ValueError):
    """An indicator file that does not have the expected shape."""


def indicator_path(name: str) -> Path:
    """The path of one file under ``signatures/indicators/``."""
    return Path(str(resources.files("signatures").joinpath(INDICATOR_DIR, name)))


@cache
def _doc(name: str) -> dict[str, Any]:
    doc = yamldoc.safe_load(indicator_path(name).read_text(encoding="utf-8")) or {}
    if not isinstance(doc, dict):
        raise IndicatorError(f"{name}: the top level must be a mapping")
    return doc


def _strings(name: str, key: str, values: Any) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str | int | float) for v in values):
        raise IndicatorError(f"{name}: {key} must be a list of strings")
    return tuple(str(v) for v in values)


@cache
def stock_pages() -> dict[str, tuple[str, ...]]:
    """The stock file names of each auth folder (``owa_auth``, ``ecp_auth``), spelled as shipped."""
    raw = _doc("exchange_web.yaml").get("stock") or {}
    return {str(k): _strings("exchange_web.yaml", f"stock.{k}", v) for k, v in raw.items()}


def stock_names(*folders: str) -> frozenset[str]:
    """Case-folded stock file names of the given auth folders (all of them when none is given)."""
    lists = stock_pages()
    return frozenset(n.casefold() for key in (folders or tuple(lists)) for n in lists[key])


@cache
def lists() -> dict[str, tuple[str, ...]]:
    """Every named list, by name: those of ``exchange_web.yaml`` and ``actors.yaml``, plus ``stock_auth_paths``
    (the URL path of each stock auth page, e.g. ``/owa/auth/logon.aspx``) for the log rules."""
    out: dict[str, tuple[str, ...]] = {}
    for file in LIST_FILES:
        for key, values in (_doc(file).get("lists") or {}).items():
            if key in out:
                raise IndicatorError(f"{file}: list {key} is defined twice")
            out[str(key)] = _strings(file, f"lists.{key}", values)
    out["stock_auth_paths"] = tuple(
        STOCK_URL_FOLDERS[key] + n for key, names in stock_pages().items() if key in STOCK_URL_FOLDERS for n in names
    )
    return out


def indicator_list(name: str) -> tuple[str, ...]:
    """One named list (``server_pages``, ``hafnium_ips``, ``shell_names`` ...); KeyError if there is none."""
    return lists()[name]


@cache
def server_pages() -> tuple[str, ...]:
    """The extensions (lower case, with the dot) IIS runs as server pages: the one list of them."""
    return tuple(e.lower() for e in indicator_list("server_pages"))


@cache
def hafnium_ips() -> frozenset[str]:
    """The HAFNIUM exploitation IPs published in AA21-062A."""
    return frozenset(indicator_list("hafnium_ips"))


@cache
def rule_metas(relative: str) -> dict[str, RuleMeta]:
    """The rule metadata of one data file under ``signatures/`` (a ``rules`` list of mappings), by rule id."""
    path = Path(str(resources.files("signatures").joinpath(relative)))
    doc = yamldoc.safe_load(path.read_text(encoding="utf-8")) or {}
    out: dict[str, RuleMeta] = {}
    for i, raw in enumerate(doc.get("rules") or [] if isinstance(doc, dict) else []):
        if not isinstance(raw, dict) or not raw.get("id") or raw["id"] in out:
            raise IndicatorError(f"{relative}: rule #{i + 1} has no id, or one used twice")
        try:
            out[str(raw["id"])] = RuleMeta.from_data(raw)
        except (TypeError, ValueError) as exc:
            raise IndicatorError(f"{relative}: rule {raw['id']}: {exc}") from exc
    return out


@dataclass(frozen=True, kw_only=True)
class CmdRule(RuleMeta):
    """A regex over command lines (``cmdline.yaml``): a hit unless ``unless`` also matches."""

    pattern: re.Pattern[str]
    unless: re.Pattern[str] | None = None

    def matches(self, text: str) -> bool:
        """Whether ``text`` (a command line or decoded script) is a hit of this rule."""
        return bool(self.pattern.search(text)) and not (self.unless is not None and self.unless.search(text))


def _regex(file: str, where: str, pattern: Any) -> re.Pattern[str]:
    try:
        return re.compile(str(pattern), re.IGNORECASE)
    except re.error as exc:
        raise IndicatorError(f"{file}: {where}: bad regex {pattern!r}: {exc}") from exc


@cache
def cmdline_rules() -> tuple[CmdRule, ...]:
    """The command-line rules, in file order (the first stands for ``procdump -ma <lsass pid>``)."""
    out: list[CmdRule] = []
    seen: set[str] = set()
    for i, raw in enumerate(_doc(CMDLINE_FILE).get("rules") or []):
        if not isinstance(raw, dict) or not all(raw.get(k) for k in ("id", "title", "severity", "pattern", "mitre")):
            raise IndicatorError(f"{CMDLINE_FILE}: rule #{i + 1} needs id, title, severity, pattern and mitre")
        rid = str(raw["id"])
        if rid in seen:
            raise IndicatorError(f"{CMDLINE_FILE}: rule id {rid} used twice")
        seen.add(rid)
        try:
            meta = RuleMeta.from_data(raw, steps="9,11", confidence="high")
        except (TypeError, ValueError) as exc:
            raise IndicatorError(f"{CMDLINE_FILE}: rule {rid}: {exc}") from exc
        out.append(
            CmdRule(
                **{f.name: getattr(meta, f.name) for f in fields(RuleMeta)},
                pattern=_regex(CMDLINE_FILE, rid, raw["pattern"]),
                unless=_regex(CMDLINE_FILE, rid, raw["unless"]) if raw.get("unless") else None,
            )
        )
    return tuple(out)
