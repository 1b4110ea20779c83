"""Names of the sealing step that the command line needs before anything is sealed (no cryptography import)."""

from __future__ import annotations

PASSPHRASE_ENV = "TRIAGE_SEAL_PASSPHRASE"  # the key's passphrase; never an argument (process lists show those)
