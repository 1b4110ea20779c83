"""Finding severities, least to most severe (no imports: the command line reads them at start-up)."""

from __future__ import annotations

SEVERITIES = ("info", "low", "medium", "high", "critical")
