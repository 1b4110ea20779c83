"""The ``--yara`` option, declared once for the two analyzers that apply third-party YARA sets (light: no engine)."""

from __future__ import annotations

from triage.registry import Option

YARA_SETS = Option(
    "yara",
    help="also load these YARA rule files or folders (e.g. signature-base yara/), unmodified: over "
    "collected files (yara) and raw memory images (memory)",
    metavar="DIR",
    repeatable=True,
    path=True,
)
