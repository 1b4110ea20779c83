"""A synthetic Windows x64 memory image that Volatility 3 parses with its own automagic, and its symbol table.

``build_image(image_path, symbols_dir)`` writes a raw image of an Exchange server mid-intrusion (see
:mod:`triage.testing.winmem.scenario`) and the ISF for its made-up kernel; pass ``symbols_dir`` to Volatility
(``--symbols``) and it finds the layers, the kernel and the symbols with no hints.
"""

from __future__ import annotations

from triage.testing.winmem.image import PDB_AGE, PDB_GUID, PDB_NAME, WinMemImage, build_image
from triage.testing.winmem.scenario import DEFAULT, Process, Scenario

__all__ = ["DEFAULT", "PDB_AGE", "PDB_GUID", "PDB_NAME", "Process", "Scenario", "WinMemImage", "build_image"]
