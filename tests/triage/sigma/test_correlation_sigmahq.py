"""SigmaHQ correlation rules load and run unmodified (the checkout comes from TRIAGE_SIGMAHQ; skipped without it)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from triage.sigma import load_rules
from triage.sigma.correlation import SUPPORTED_TYPES, Correlator

ENV = "TRIAGE_SIGMAHQ"


def _checkout() -> Path:
    root = os.environ.get(ENV)
    if not root or not Path(root).is_dir():
        pytest.skip(f"{ENV} (a SigmaHQ/sigma checkout) not set")
    return Path(root)


def test_sigmahq_correlation_rules_load_with_their_base_rules():
    root = _checkout()
    texts = {p: p.read_text(encoding="utf-8", errors="replace") for p in root.glob("rules*/**/*.yml")}
    files = [p for p, text in texts.items() if "\ncorrelation:" in text]
    if not files:
        pytest.skip(f"this SigmaHQ checkout ({root}) holds no correlation rules")
    refs: set[str] = set()
    types: dict[str, str] = {}
    for path in files:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and isinstance(doc.get("correlation"), dict):
                refs.update(str(r) for r in doc["correlation"].get("rules") or [])
                types[str(doc.get("id"))] = str(doc["correlation"].get("type"))
    # the base rules: files whose id or name is referenced (SigmaHQ keeps them apart from the correlations)
    pattern = re.compile(r"^(?:id|name):\s*['\"]?([^'\"\s]+)", re.MULTILINE)
    bases = [p for p, text in texts.items() if p not in files and refs & set(pattern.findall(text))]
    ruleset = load_rules([*files, *bases])
    loaded = {c.id for c in ruleset.correlations}
    for rid, ctype in types.items():
        if ctype in SUPPORTED_TYPES:
            reasons = [s.reason for s in ruleset.skipped if s.rule_id == rid]
            assert rid in loaded, f"{rid} ({ctype}) not loaded: {reasons}"
    assert Correlator(ruleset).finish() == []  # nothing added: nothing found, and nothing raised
