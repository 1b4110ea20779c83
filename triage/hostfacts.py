"""Host facts: the typed record the report's inventory shows, and where analyzers declare they put them.

An analyzer that learns facts about a server (host name, domain, addresses, OS and Exchange builds) writes
them as findings and declares, in its class attribute ``host_facts``, which of its rules carry which fact
under which attribute key (:class:`FactSource`). The report reads exactly those keys; nothing is guessed
from attribute names. Cases written before the declarations existed read the same way: the attributes of
those findings are unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# the facts a source may declare (the fields of HostFacts that come from evidence)
FACTS = (
    "hostname",
    "fqdn",
    "domain",
    "internal_ips",
    "external_ips",
    "exchange_version",
    "exchange_cu",
    "exchange_build",
    "os_version",
    "os_build",
)
LIST_FACTS = ("internal_ips", "external_ips")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")


def _scalar_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(_scalar_text(v) for v in value if v not in (None, ""))
    if isinstance(value, dict):
        return ""
    return str(value).strip()


@dataclass(frozen=True)
class FactSource:
    """Which findings of an analyzer carry host facts: ``rules`` (ids, or prefixes ending in ``-``) and, per
    fact, the attribute keys holding it, in order of preference (the first non-empty one wins)."""

    rules: tuple[str, ...]
    facts: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        unknown = set(self.facts) - set(FACTS)
        if unknown:
            raise ValueError(f"unknown host facts {sorted(unknown)} (known: {', '.join(FACTS)})")

    def applies(self, rule_id: str) -> bool:
        """Whether findings of ``rule_id`` carry the facts of this source."""
        return any(rule_id == r or (r.endswith("-") and rule_id.startswith(r)) for r in self.rules)

    def read(self, attrs: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
        """``(fact, value)`` for every declared key present in a finding's attributes."""
        for fact, keys in self.facts.items():
            for key in keys:
                if key in attrs:
                    yield fact, attrs[key]


@dataclass
class HostFacts:
    """What the evidence says about a server, for the inventory and the CISA rows."""

    hostname: str = ""
    fqdn: str = ""
    domain: str = ""
    internal_ips: list[str] = field(default_factory=list)
    external_ips: list[str] = field(default_factory=list)
    exchange_version: str = ""
    exchange_cu: str = ""
    exchange_build: str = ""
    os_version: str = ""
    os_build: str = ""
    build_verdict: str = ""
    build_severity: str = ""
    build_cves: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # finding ids the facts come from

    def add(self, fact: str, value: Any) -> None:
        """Fold one value in: a scalar fact keeps its first non-empty value, address lists collect them all."""
        if fact in LIST_FACTS:
            items = value if isinstance(value, list | tuple) else _IPV4.findall(str(value)) or [str(value)]
            target: list[str] = getattr(self, fact)
            for item in items:
                text = _scalar_text(item)
                if text and text not in target:
                    target.append(text)
            return
        text = _scalar_text(value)
        if text and not getattr(self, fact):
            setattr(self, fact, text)

    def read(self, sources: tuple[FactSource, ...], rule_id: str, attrs: Mapping[str, Any]) -> None:
        """Fold in the facts that the declared ``sources`` place in one finding of ``rule_id``."""
        for source in sources:
            if source.applies(rule_id):
                for fact, value in source.read(attrs):
                    self.add(fact, value)

    @property
    def exchange(self) -> str:
        """Exchange version as a person reads it: ``Exchange Server 2016 CU19 (15.1.2176.2)``."""
        text = self.exchange_version
        if self.exchange_cu and self.exchange_cu not in text:
            text = f"{text} {self.exchange_cu}".strip()
        if self.exchange_build and self.exchange_build not in text:
            text = f"{text} ({self.exchange_build})" if text else self.exchange_build
        return text

    @property
    def os(self) -> str:
        """The OS as a person reads it: ``Windows Server 2016 Standard (build 14393)``."""
        if self.os_version and self.os_build and self.os_build not in self.os_version:
            return f"{self.os_version} (build {self.os_build})"
        return self.os_version or (f"build {self.os_build}" if self.os_build else "")

    def as_dict(self) -> dict[str, Any]:
        """The facts as JSON-ready data, with the readable ``exchange`` and ``os`` lines."""
        d = dict(self.__dict__)
        d.update(exchange=self.exchange, os=self.os)
        return d
