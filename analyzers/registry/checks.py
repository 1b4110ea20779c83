"""The ``registry_rules`` analyzer: the YAML rules of ``signatures/registry/`` over every hive of a host.

Persistence (Run keys, services, Winlogon, IFEO, SilentProcessExit, AppInit, scheduled tasks),
credential-theft posture (WDigest, LSA protection and packages, Restricted Admin), local accounts (SAM),
execution evidence (Amcache, ShimCache, BAM, UserAssist) and remote access (RDP). One finding per match,
with the key path and value in ``location``/``attributes`` and the key's last-write time as ``ts``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from analyzers.registry.hostset import HiveFile, HostHives
from analyzers.registry.rules import Match, RuleSet, as_text, evaluate, load_rule_files, match_attributes
from triage.finding import Finding
from triage.registry import Analyzer, Unit, register

RULE_FILES = (
    "registry/persistence.yaml",
    "registry/credential_access.yaml",
    "registry/accounts.yaml",
    "registry/execution.yaml",
)
TS_DESC = {
    "registry": "Key last written",
    "accounts": "Account created",
    "amcache": "Amcache entry written",
    "shimcache": "File modified (ShimCache)",
    "bam": "Last run (BAM)",
    "userassist": "Last run (UserAssist)",
}


def _short(v: Any, limit: int = 160) -> str:
    text = as_text(v) if not isinstance(v, list) else ", ".join(str(x) for x in v)
    text = (text or "").replace("\n", " | ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(m: Match) -> tuple[str, str, str]:
    """(title, message, ts_desc) of a match."""
    rule, rec = m.rule, m.record
    if rule.source == "registry":
        what = f"{rec['value_name']} = {_short(rec.get('data'))}" if rec.get("value_name") else rec["key_name"]
        desc = TS_DESC["registry"]
    elif rule.source == "accounts":
        what = f"{rec.get('username')} (RID {rec.get('rid')})"
        desc = TS_DESC["accounts"] if rec.get("created") else TS_DESC["registry"]
    else:
        what = rec["path"]
        desc = TS_DESC.get(rec["source"], "")
    detail = f"{m.location}" + (f" = {_short(rec.get('data'), 400)}" if rec.get("value_name") else "")
    return f"{rule.title}: {what}", f"{detail}. {rule.description}".strip(), desc


@register
class RegistryRules(Analyzer):
    """Persistence, credential-theft posture, accounts, execution evidence and RDP in a host's hives (YAML rules)."""

    name = "registry_rules"
    version = "1.0"
    consumes = ("registry_hive",)
    rules = RULE_FILES
    scope = "host"

    def load_rules(self) -> RuleSet:
        return load_rule_files(self.rule_paths())

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        ruleset: RuleSet = self.ruleset
        for problem in ruleset.problems:
            unit.warn(f"rule disabled: {problem}")
        wanted = {r.hive for r in ruleset.rules}
        with HostHives(unit, backend=self.options.get("backend", "auto")) as hh:
            for f in hh.files:
                if f.hive_type not in wanted:
                    continue
                hive = hh.open(f)
                if hive is None:
                    continue
                for m in evaluate(ruleset.rules, hive, root=f.root, user=f.user):
                    yield self._finding(unit, f, m)

    @staticmethod
    def _finding(unit: Unit, f: HiveFile, m: Match) -> Finding:
        title, message, ts_desc = describe(m)
        attrs = {"hive": f.logical, "hive_type": f.hive_type, **match_attributes(m)}
        if f.user:
            attrs["user"] = f.user
        rule = m.rule
        return unit.finding(
            rule,
            title=title,
            message=message,
            location=m.location,
            evidence=f.row,
            ts=m.ts,
            ts_desc=ts_desc if m.ts else "",
            attributes=attrs,
        )
