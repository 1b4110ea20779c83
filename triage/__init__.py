"""triage: forensic triage of Windows/Exchange servers along CISA Emergency Directive 21-02."""

from __future__ import annotations

__version__ = "0.1.0"
TOOL_NAME = "triage"
