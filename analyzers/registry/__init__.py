"""Registry analyzers: host facts, the Exchange build verdict and YAML rules over a host's hives.

Importing the package registers three host-scope analyzers (each unit sees every hive of one host, so a
hive's ``.LOG1``/``.LOG2`` travel with it): ``registry_hostinfo``, ``registry_exchange`` and
``registry_rules`` (modules :mod:`.hostinfo`, :mod:`.exchange`, :mod:`.checks`). Hive reading is in
:mod:`.hive` and :mod:`.hostset`, artifact decoders in :mod:`.artifacts`, the rule engine in :mod:`.rules`.
"""

from __future__ import annotations

from analyzers.registry import checks, exchange, hostinfo  # noqa: F401  (registration)
