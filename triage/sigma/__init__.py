"""Sigma rule engine: SigmaHQ-format rules (parsed with pySigma) matched vectorised over flattened events.

Public API::

    load_rules(paths, *, logsources=None) -> RuleSet
    RuleSet.evaluate(df) -> DataFrame[rule_id, rule_title, level, tags, rule_path, row]
    RuleSet.match_arrays(df) -> (rule ids, rows) as numpy arrays (no pandas)
    RuleSet.iter_matches(df) -> Iterator[(CompiledRule, row positions)]
    load_logsources(path=None) -> LogsourceMap

The names are imported on first use: importing a submodule (``triage.sigma.cache`` for rule-file digests, say)
does not load the engine and its libraries.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    **dict.fromkeys(
        (
            "MATCH_COLUMNS",
            "CompiledRule",
            "RuleSet",
            "RuleWarning",
            "RuntimeFailure",
            "SkippedRule",
            "iter_rule_files",
            "load_rules",
        ),
        "triage.sigma.engine",
    ),
    **dict.fromkeys(
        (
            "LogsourceEntry",
            "LogsourceError",
            "LogsourceMap",
            "SourceVariant",
            "default_logsources_path",
            "load_logsources",
        ),
        "triage.sigma.logsources",
    ),
    **dict.fromkeys(("ParsedTags", "parse_tags"), "triage.sigma.tags"),
}

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
