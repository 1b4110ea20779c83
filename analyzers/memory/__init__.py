"""Memory images and process minidumps: Volatility 3 as a library (offline symbols), derived findings,
symbol-free YARA over the raw image, and lsass dumps on disk or carved from memory.

The ``memory`` analyzer (:mod:`.analyzer`) and ``memory_joins`` (:mod:`.joins`) register when their own modules
are imported (``triage.registry.load`` imports only the analyzers with work; ``discover()`` walks every module),
so importing the joins does not pull in the memory analyzer and its YARA sets; volatility3 and yara-x are imported
only when a unit runs. Modules: :mod:`.vol` (the adapter, ``run_vol3``), :mod:`.derive` (findings from tables),
:mod:`.rawscan` (chunked YARA), :mod:`.minidump`, :mod:`.isolate` (time limits), :mod:`.analyzer`.
"""

from __future__ import annotations
