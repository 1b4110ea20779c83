"""Memory images and process minidumps: Volatility 3 as a library (offline symbols), derived findings,
symbol-free YARA over the raw image, and lsass dumps on disk or carved from memory.

Importing the package registers the ``memory`` analyzer; volatility3 and yara-x are imported only when a
unit runs. Modules: :mod:`.vol` (the adapter, ``run_vol3``), :mod:`.derive` (findings from tables),
:mod:`.rawscan` (chunked YARA), :mod:`.minidump`, :mod:`.isolate` (time limits), :mod:`.analyzer`.
"""

from __future__ import annotations

from analyzers.memory import analyzer  # noqa: F401  (registration)
