"""Sigma rule engine: SigmaHQ-format rules (parsed with pySigma) matched vectorised over flattened events.

Public API::

    load_rules(paths, *, logsources=None) -> RuleSet
    RuleSet.evaluate(df) -> DataFrame[rule_id, rule_title, level, tags, rule_path, row]
    RuleSet.iter_matches(df) -> Iterator[(CompiledRule, row positions)]
    load_logsources(path=None) -> LogsourceMap
"""

from __future__ import annotations

from triage.sigma.engine import (
    MATCH_COLUMNS,
    CompiledRule,
    RuleSet,
    RuleWarning,
    RuntimeFailure,
    SkippedRule,
    iter_rule_files,
    load_rules,
)
from triage.sigma.logsources import (
    LogsourceEntry,
    LogsourceError,
    LogsourceMap,
    SourceVariant,
    default_logsources_path,
    load_logsources,
)
from triage.sigma.tags import ParsedTags, parse_tags

__all__ = [
    "MATCH_COLUMNS",
    "CompiledRule",
    "LogsourceEntry",
    "LogsourceError",
    "LogsourceMap",
    "ParsedTags",
    "RuleSet",
    "RuleWarning",
    "RuntimeFailure",
    "SkippedRule",
    "SourceVariant",
    "default_logsources_path",
    "iter_rule_files",
    "load_logsources",
    "load_rules",
    "parse_tags",
]
