"""Exchange ProxyLogon (ED 21-02) log analyzers.

Its modules register four analyzers:

* ``proxylogon`` (host scope: exchange_log, evtx): Test-ProxyLogon.ps1's checks and log age;
* ``exchange_weblogs`` (per log: exchange_log, iis_log): YAML web log indicators and log coverage;
* ``proxylogon_narrative`` (host scope: exchange_log, iis_log, evtx): one attack narrative per client;
* ``testproxylogon_output`` (per file: testproxylogon_csv): Test-ProxyLogon.ps1's own outputs in the evidence.

The readers (:mod:`.logs`), the rule engine (:mod:`.rules`) and the checks are plain functions that
work without the runner too.
"""

from __future__ import annotations

from typing import Any

# the classes load with their module on first use: a run imports only the analyzers that have work
# (triage.registry.load imports each analyzer's own module; discover() imports every module)
_CLASSES = {
    "AttackNarrative": "analyzers.exchange.narrative",
    "ProxyLogonChecks": "analyzers.exchange.proxylogon",
    "TestProxyLogonOutput": "analyzers.exchange.tploutput",
    "WebLogIndicators": "analyzers.exchange.weblogs",
}
__all__ = sorted(_CLASSES)


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        import importlib

        return getattr(importlib.import_module(_CLASSES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
