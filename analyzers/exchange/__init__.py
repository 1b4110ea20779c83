"""Exchange ProxyLogon (ED 21-02) log analyzers.

Importing the package registers four analyzers:

* ``proxylogon`` (host scope: exchange_log, evtx): Test-ProxyLogon.ps1's checks and log age;
* ``exchange_weblogs`` (per log: exchange_log, iis_log): YAML web log indicators and log coverage;
* ``proxylogon_narrative`` (host scope: exchange_log, iis_log, evtx): one attack narrative per client;
* ``testproxylogon_output`` (per file: testproxylogon_csv): Test-ProxyLogon.ps1's own outputs in the evidence.

The readers (:mod:`.logs`), the rule engine (:mod:`.rules`) and the checks are plain functions that
work without the runner too.
"""

from __future__ import annotations

from analyzers.exchange.narrative import AttackNarrative
from analyzers.exchange.proxylogon import ProxyLogonChecks
from analyzers.exchange.tploutput import TestProxyLogonOutput
from analyzers.exchange.weblogs import WebLogIndicators

__all__ = ["AttackNarrative", "ProxyLogonChecks", "TestProxyLogonOutput", "WebLogIndicators"]
