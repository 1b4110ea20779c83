"""Fixtures for the Sigma engine tests (helpers live in ``sigma_support``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# pySigma parses the rules; without it (not yet a declared dependency everywhere) these tests cannot run.
pytest.importorskip("sigma", reason="pySigma (package 'pysigma') is not installed")

from sigma_support import PROC, frame, rule_text

from triage.sigma import RuleSet, load_rules


@pytest.fixture
def write_rules(tmp_path: Path) -> Callable[..., Path]:
    """Write rule texts as r0.yml, r1.yml, ... into a fresh folder (one per call) and return it."""
    counter = {"n": 0, "calls": 0}

    def _write(*texts: str, folder: str | None = None) -> Path:
        counter["calls"] += 1
        d = tmp_path / (folder or f"rules{counter['calls']}")
        d.mkdir(parents=True, exist_ok=True)
        for text in texts:
            (d / f"r{counter['n']}.yml").write_text(text, encoding="utf-8")
            counter["n"] += 1
        return d

    return _write


@pytest.fixture
def sigma_rows(write_rules: Callable[..., Path]) -> Callable[..., list[int]]:
    """Load one inline rule, evaluate it on ``rows``, return the matched row positions (sorted)."""

    def _run(
        detection: str, rows: list[dict[str, Any]], *, logsource: str = PROC, object_dtype: bool = False
    ) -> list[int]:
        folder = write_rules(rule_text(detection, logsource=logsource))
        ruleset = load_rules([folder])
        assert not ruleset.skipped, ruleset.skipped
        assert len(ruleset) == 1
        matches = ruleset.evaluate(frame(rows, object_dtype=object_dtype))
        return sorted(matches["row"].tolist())

    return _run


@pytest.fixture
def load_texts(write_rules: Callable[..., Path]) -> Callable[..., RuleSet]:
    """Write rule texts and load the folder."""

    def _load(*texts: str, **kwargs: Any) -> RuleSet:
        return load_rules([write_rules(*texts)], **kwargs)

    return _load
