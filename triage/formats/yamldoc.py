"""YAML documents of the project's own data (rules, indicators, directive, formats): parsed with libyaml.

PyYAML's C loader (``CSafeLoader``, when PyYAML was built with libyaml) builds the same objects as its pure
Python ``SafeLoader`` about seven times faster; every command parses a dozen of these files, so it is a
visible part of a small run's fixed cost. Without libyaml the pure Python loader is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str | bytes | Any) -> Any:
    """One YAML document (text or an open file), safe types only."""
    return yaml.load(text, Loader=Loader)


def safe_load_all(text: str | bytes | Any) -> Iterator[Any]:
    """Every document of a YAML stream, safe types only."""
    return yaml.load_all(text, Loader=Loader)
