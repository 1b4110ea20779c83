"""Sigma rule tags split by namespace (ATT&CK, CVE, ED 21-02 step): shared by rules and correlations."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_TECHNIQUE = re.compile(r"^t(\d{4})(?:\.(\d{3}))?$", re.IGNORECASE)
_CVE = re.compile(r"^(\d{4})[-_.](\d{4,})$")
_STEP = re.compile(r"^(?:step)?[-_]?(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedTags:
    """Rule tags split by namespace."""

    mitre: tuple[str, ...] = ()  # ATT&CK technique ids, e.g. "T1003.001"
    tactics: tuple[str, ...] = ()  # ATT&CK tactic names, e.g. "credential-access"
    cve: tuple[str, ...] = ()  # e.g. "CVE-2021-26857"
    ed2102_steps: tuple[int, ...] = ()  # ED 21-02 checklist step numbers


def parse_tags(tags: Iterable[str]) -> ParsedTags:
    """Split Sigma tags: ``attack.t1003.001`` -> T1003.001, ``attack.<tactic>``, ``cve.2021-26857`` ->
    CVE-2021-26857, ``ed2102.step3`` / ``ed2102.3`` -> 3. Other tags are ignored here.
    """
    mitre: list[str] = []
    tactics: list[str] = []
    cves: list[str] = []
    steps: list[int] = []
    for tag in tags:
        namespace, _, name = str(tag).strip().partition(".")
        namespace = namespace.lower()
        if namespace == "attack":
            m = _TECHNIQUE.match(name)
            if m:
                mitre.append(f"T{m.group(1)}" + (f".{m.group(2)}" if m.group(2) else ""))
            elif name and not re.match(r"^[gs]\d{4}$", name, re.IGNORECASE):
                tactics.append(name.lower().replace("_", "-"))
        elif namespace == "cve":
            m = _CVE.match(name)
            if m:
                cves.append(f"CVE-{m.group(1)}-{m.group(2)}")
        elif namespace == "ed2102":
            m = _STEP.match(name)
            if m:
                steps.append(int(m.group(1)))

    def uniq(items: list[Any]) -> tuple[Any, ...]:
        return tuple(dict.fromkeys(items))

    return ParsedTags(uniq(mitre), uniq(tactics), uniq(cves), tuple(sorted(set(steps))))
