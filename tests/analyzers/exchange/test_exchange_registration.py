"""The four Exchange analyzers are registered as declared units."""

from __future__ import annotations

from triage import registry


def test_declarations() -> None:
    found = registry.discover()
    assert "analyzers.exchange" not in registry.import_failures()
    got = {n: (c.scope, c.consumes, c.rules) for n, c in found.items() if n in {"proxylogon", "exchange_weblogs",
                                                                               "proxylogon_narrative",
                                                                               "testproxylogon_output"}}  # fmt: skip
    assert got == {
        "proxylogon": ("host", ("exchange_log", "evtx"), ()),
        "exchange_weblogs": ("artifact", ("exchange_log", "iis_log"), ("exchange",)),
        "proxylogon_narrative": ("host", ("exchange_log", "iis_log", "evtx"), ("exchange",)),
        "testproxylogon_output": ("artifact", ("testproxylogon_csv",), ()),
    }
    for name in got:
        cls = found[name]
        assert cls.version and (cls.__doc__ or "").strip()
        inst = cls()
        assert inst.fingerprint() == cls().fingerprint()
        if cls.rules:
            assert [p.name for p in inst.rule_paths()] == ["weblog_indicators.yaml"]
            assert inst.ruleset.errors == [] and len(inst.ruleset.rules) == 18
