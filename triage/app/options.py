"""Analyzer options from the rule and symbol folders an examiner names, and the rule sets loaded up front.

Both live here once, for a case and a fleet alike. (Analyzers are to declare their options and rule-set
loading in the registry; then these two functions ask the registry instead of naming analyzers.)
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from triage.app.progress import Progress
from triage.case import Case
from triage.errors import UsageError

AnalyzerOptions = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class RuleInputs:
    """Extra rule and symbol folders and plugins named by the examiner (``--sigma``, ``--yara``, ...)."""

    sigma: tuple[str, ...] = ()
    yara: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()


def _existing(flag: str, paths: Sequence[str]) -> list[str]:
    missing = [d for d in paths if not os.path.exists(d)]
    if missing:
        raise UsageError(f"{flag}: no such file or folder: {', '.join(missing)}")
    return [os.path.abspath(d) for d in paths]


def analyzer_options(inputs: RuleInputs) -> AnalyzerOptions:
    """Per-analyzer options; a named path that does not exist is a usage error (before anything runs)."""
    opts: AnalyzerOptions = {}
    if inputs.sigma:
        opts["eventlog"] = {"sigma": _existing("--sigma", inputs.sigma)}
        opts["weblog_sigma"] = dict(opts["eventlog"])  # the sets' webserver/proxy rules over IIS/HttpProxy logs
    if inputs.yara:
        opts["yara"] = {"yara": _existing("--yara", inputs.yara)}
    if inputs.symbols:  # else the memory analyzer reads $TRIAGE_SYMBOLS and the config file
        opts["memory"] = {"symbols": _existing("--symbols", inputs.symbols)}
    missing = [p for p in inputs.plugins if p.endswith(".py") and not os.path.isfile(p)]
    if missing:
        raise UsageError(f"--plugin: no such file: {', '.join(missing)}")
    return opts


def preload_rules(case: Case, options: AnalyzerOptions, progress: Progress) -> dict[str, dict[str, Any]]:
    """Load the extra rule sets once up front and record in the case what loaded and what not.

    Returns engine -> load summary (``sigma``, ``yara``), for the analyze summary.
    """
    out: dict[str, dict[str, Any]] = {}
    if "eventlog" in options:
        out["sigma"] = _preload_sigma(case, options["eventlog"]["sigma"], progress)
    if "yara" in options:  # compile once (filling the rule cache) and record per file what loaded
        from analyzers.yara.content import report_rule_load

        out["yara"] = report_rule_load(case, options["yara"]["yara"])
    return out


def _preload_sigma(case: Case, dirs: list[str], progress: Progress) -> dict[str, Any]:
    """Load the extra Sigma sets: record what loaded, what was skipped and why."""
    from triage.hashing import sha256_bytes
    from triage.registry import discover, import_failures

    # the rules the analyzer itself loads (its own definition of the set): loaded here once up front
    analyzer = discover().get("eventlog")
    if analyzer is None:
        why = import_failures().get("analyzers.eventlog", "not registered").strip().splitlines()[-1]
        raise UsageError(f"--sigma: the eventlog analyzer is not available ({why})")
    ruleset = analyzer({"sigma": dirs}).load_rules()
    reasons = Counter(s.reason.split(":")[0][:80] for s in ruleset.skipped)
    info = {
        "loaded": len(ruleset.loaded),
        "correlations": len(ruleset.correlations),
        "skipped": len(ruleset.skipped),
        "sources": dirs,
        "skip_reasons": dict(reasons.most_common(10)),
    }
    out = case.path / "runs" / "sigma-rules.json"
    out.write_text(json.dumps(info | {"skipped_rules": [s._asdict() for s in ruleset.skipped]}, indent=1, default=str))
    record = {"record": out.relative_to(case.path).as_posix(), "record_sha256": sha256_bytes(out.read_bytes())}
    case.custody.append("rules_loaded", engine="sigma", **info, **record)
    why = ", ".join(f"{k}: {v}" for k, v in reasons.most_common(3)) or "none"
    progress.message(
        logging.INFO,
        f"Sigma rules: {info['loaded']} loaded (and {info['correlations']} correlation rules), "
        f"{info['skipped']} skipped ({why}); details in {out}",
    )
    return info
