from __future__ import annotations

import sys

from triage.cli import console

sys.exit(console())
