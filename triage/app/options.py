"""Analyzer options from what the examiner names, and the rule sets loaded up front: the app layer's side.

The analyzers declare their options and rule-set loading (:mod:`triage.options`); this module only carries
the values of a request to them, for a case and a fleet alike. It names no analyzer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from triage.app.progress import Progress
from triage.case import Case
from triage.errors import UsageError

AnalyzerOptions = dict[str, dict[str, Any]]


class RuleInputs:
    """Values of the analyzers' declared options by flag destination (``sigma=[DIR]``, ``yara=[DIR]``,
    ``symbols=[DIR]``, a plugin's own ...), plus extra analyzer plugins (module names or ``.py`` files).

    Options left out come from the environment, the config file or the analyzer's default.
    """

    def __init__(self, plugins: tuple[str, ...] | list[str] = (), **values: Any) -> None:
        self.plugins: tuple[str, ...] = tuple(plugins)
        self.values: dict[str, Any] = {k: v for k, v in values.items() if v not in (None, (), [])}

    def __repr__(self) -> str:
        return f"RuleInputs(plugins={self.plugins!r}, values={self.values!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RuleInputs) and (self.plugins, self.values) == (other.plugins, other.values)

    __hash__ = None  # type: ignore[assignment]


def analyzer_options(inputs: RuleInputs, config: Mapping[str, Any] | None = None) -> AnalyzerOptions:
    """Per-analyzer options; a named path that does not exist is a usage error (before anything runs)."""
    from triage.options import analyzer_options as declared_analyzer_options
    from triage.registry import declarations

    # --plugin analyzers too (by absolute path, as the runner imports them): their config keys count
    plugins = [os.path.abspath(p) if p.endswith(".py") else p for p in inputs.plugins]
    missing = [p for p in inputs.plugins if p.endswith(".py") and not os.path.isfile(p)]
    if missing:
        raise UsageError(f"--plugin: no such file: {', '.join(missing)}")
    declarations(tuple(plugins))  # imports the plugins (their options count); built-ins come from the index
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in inputs.values.items()}
    return declared_analyzer_options(values, config)


def preload_rules(case: Case, options: AnalyzerOptions, progress: Progress) -> dict[str, dict[str, Any]]:
    """Load the extra rule sets once up front (each analyzer that declares a rule option records in the case
    what loaded and what not). Returns rule option -> load summary (``sigma``, ``yara``)."""
    from triage.options import preload_rules as declared_preload

    out = declared_preload(case, options)
    for info in out.values():
        message = info.pop("message", None) if isinstance(info, dict) else None
        if message:  # an analyzer's own words on what loaded, shown through the caller's progress sink
            progress.message(logging.INFO, str(message))
    return out
