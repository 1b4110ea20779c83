"""Host facts in the report: read where the producing analyzer declares them, never guessed."""

from __future__ import annotations

import pytest
from report_support import art, context, finding

from triage.hostfacts import FactSource
from triage.report.hosts import declared_fact_sources, host_facts


def test_analyzers_declare_their_host_facts() -> None:
    declared = declared_fact_sources()
    assert {"registry_hostinfo", "registry_exchange"} <= set(declared)
    assert any(s.applies("TRIAGE-HOST-001") for s in declared["registry_hostinfo"])
    assert any(s.applies("TRIAGE-EXCH-002") for s in declared["registry_exchange"])
    assert not any(s.applies("TRIAGE-EXCH") for s in declared["registry_exchange"])


def test_only_declared_facts_are_read() -> None:
    manifest = [art("H0", "registry_hive", "C:/Windows/System32/config/SYSTEM")]
    attrs = {"computer_name": "EX1", "fqdn": "ex1.corp.example", "ip_addresses": ["10.0.0.5"]}
    findings = [
        # a host-fact finding of an analyzer that declares nothing: its look-alike keys are not guessed at
        finding("TRIAGE-HOST-001", "H0", analyzer="probe", attributes={"ComputerName": "WRONG", "ips": "10.9.9.9"}),
        finding("TRIAGE-HOST-001", "H0", analyzer="registry_hostinfo", attributes=attrs, location="x"),
        finding(
            "TRIAGE-EXCH-001",
            "H0",
            analyzer="registry_exchange",
            tags="exchange,build",
            title="Exchange Server 2019 CU8 (15.2.792.3) installed",
            attributes={"product": "Exchange Server 2019", "cu": "CU8", "build": "15.2.792.3", "version": "9"},
        ),
    ]
    facts = host_facts(context(manifest, findings, []))["EX1"]
    assert (facts.hostname, facts.fqdn, facts.internal_ips) == ("EX1", "ex1.corp.example", ["10.0.0.5"])
    assert facts.exchange == "Exchange Server 2019 CU8 (15.2.792.3)"
    assert facts.build_verdict == "Exchange Server 2019 CU8 (15.2.792.3) installed"
    assert len(facts.sources) == 3


def test_a_source_names_only_known_facts() -> None:
    with pytest.raises(ValueError, match="unknown host facts"):
        FactSource(("TRIAGE-X-",), {"hostnme": ("name",)})
