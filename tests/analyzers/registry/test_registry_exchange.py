"""The Exchange build verdict at every boundary of the March/April 2021 table, and the analyzer on built hives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from registry_support import make_unit, run

from analyzers.registry.exchange import RegistryExchange, assess, load_build_table, read_pe_version
from triage.testing.hives import (
    KB_APRIL,
    KB_MARCH,
    KB_MARCH_E2010,
    ExchangeInstall,
    exchange_at,
    exsetup_exe,
    software_hive,
)

TABLE = load_build_table()
MINOR = {"2013": 0, "2016": 1, "2019": 2}
SOFTWARE = "C:/Windows/System32/config/SOFTWARE"


def _cases():
    """(id, version, kbs, expected status, march fixed, april fixed) at each SU boundary of each CU."""
    for r in TABLE.rows:
        m = MINOR[r.product]
        v = lambda rev, m=m, r=r: (15, m, r.build, rev)  # noqa: E731
        tag = f"E{r.product}-{r.cu}"
        after_march = "march_only"  # March fixed; April needs its own SU (or none exists for the CU)
        if r.mar21su is None:  # CU shipped with the March fixes
            yield f"{tag}-rtm", v(r.rtm), set(), "march_only", True, False
        else:
            yield f"{tag}-rtm", v(r.rtm), set(), "vulnerable", False, False
            yield f"{tag}-below-mar", v(r.mar21su - 1), set(), "vulnerable", False, False
            yield f"{tag}-at-mar", v(r.mar21su), set(), after_march, True, False
            yield f"{tag}-above-mar", v(r.mar21su + 1), set(), after_march, True, False
            yield f"{tag}-kb-mar", v(r.rtm), {KB_MARCH}, after_march, True, False
        if r.apr21su is not None:
            yield f"{tag}-below-apr", v(r.apr21su - 1), set(), "march_only", True, False
            yield f"{tag}-at-apr", v(r.apr21su), set(), "patched", True, True
            yield f"{tag}-above-apr", v(r.apr21su + 1), set(), "patched", True, True
            yield f"{tag}-kb-apr", v(r.rtm), {KB_MARCH, KB_APRIL}, "patched", True, True
            yield f"{tag}-kb-apr-only", v(r.rtm), {KB_APRIL}, "patched", True, True
        else:
            # no April SU exists for this CU: even a later revision stays without the April fixes
            yield f"{tag}-no-apr-su", v((r.mar21su or r.rtm) + 50), {KB_APRIL}, "march_only", True, False


CASES = list(_cases())


@pytest.mark.parametrize(
    ("version", "kbs", "status", "march", "april"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_build_boundaries(version, kbs, status, march, april) -> None:
    v = assess(version, kbs, TABLE)
    assert (v.status, v.march_fixed, v.april_fixed) == (status, march, april), v
    if status == "vulnerable":
        assert "CVE-2021-26855" in v.cves and v.needed_build
    if status == "march_only":
        assert v.cves == ["CVE-2021-28480", "CVE-2021-28481", "CVE-2021-28482", "CVE-2021-28483"]


def test_support_flags() -> None:
    assert "special March 2021 SU" in assess((15, 1, 2044, 13), set(), TABLE).out_of_support  # E2016 CU17
    assert "special March 2021 SU" in assess((15, 0, 1395, 12), set(), TABLE).out_of_support  # E2013 CU21
    assert "no April 2021 SU" in assess((15, 1, 2106, 13), set(), TABLE).out_of_support  # E2016 CU18
    assert "no April 2021 SU" in assess((15, 2, 721, 13), set(), TABLE).out_of_support  # E2019 CU7
    assert assess((15, 1, 2176, 12), set(), TABLE).out_of_support == ""  # E2016 CU19 April SU
    assert assess((15, 2, 858, 10), set(), TABLE).out_of_support == ""  # E2019 CU9 April SU


def test_cus_outside_the_table_and_exchange_2010() -> None:
    old = assess((15, 1, 1261, 35), set(), TABLE)  # E2016 CU7: no SU was ever released
    assert old.status == "vulnerable" and old.out_of_support and not old.april_available
    new = assess((15, 1, 2308, 8), set(), TABLE)  # E2016 CU21 (June 2021) includes both updates
    assert new.status == "patched" and new.march_fixed and new.april_fixed
    assert assess((15, 2, 922, 7), set(), TABLE).status == "patched"  # E2019 CU10
    assert assess((15, 1, 2000, 1), set(), TABLE).status == "unknown"  # not a CU build
    e10 = assess((14, 3, 496, 0), set(), TABLE)  # Exchange 2010 SP3 RU31
    assert e10.status == "e2010_vulnerable" and e10.cves == ["CVE-2021-26857"] and e10.out_of_support
    assert assess((14, 3, 513, 0), set(), TABLE).status == "e2010_patched"  # RU32
    assert assess((14, 3, 496, 0), {KB_MARCH_E2010}, TABLE).status == "e2010_patched"


def _software(ex: ExchangeInstall | None, **kw) -> bytes:
    return software_hive(exchange=ex, **kw).to_bytes()


def _ids(findings) -> list[tuple[str, str]]:
    return sorted((f.rule_id, f.severity) for f in findings)


@pytest.mark.parametrize(
    ("install", "expected"),
    [
        (ExchangeInstall((15, 1, 2176, 2)), [("TRIAGE-EXCH-001", "info"), ("TRIAGE-EXCH-002", "high")]),
        (ExchangeInstall((15, 1, 2176, 2), (KB_MARCH,)), [("TRIAGE-EXCH-001", "info"), ("TRIAGE-EXCH-003", "medium")]),
        (
            ExchangeInstall((15, 1, 2176, 2), (KB_MARCH, KB_APRIL)),
            [("TRIAGE-EXCH-001", "info"), ("TRIAGE-EXCH-004", "info")],
        ),
        (
            ExchangeInstall((15, 0, 1497, 2), (KB_MARCH, KB_APRIL)),
            [("TRIAGE-EXCH-001", "info"), ("TRIAGE-EXCH-004", "info")],
        ),
        (ExchangeInstall((15, 2, 792, 3), (KB_MARCH,)), [("TRIAGE-EXCH-001", "info"), ("TRIAGE-EXCH-003", "medium")]),
        (
            ExchangeInstall((15, 2, 529, 5)),
            [("TRIAGE-EXCH-001", "info"), ("TRIAGE-EXCH-002", "high"), ("TRIAGE-EXCH-005", "medium")],
        ),
        (
            ExchangeInstall((15, 2, 529, 5), (KB_MARCH,)),
            [("TRIAGE-EXCH-001", "info"), ("TRIAGE-EXCH-003", "medium"), ("TRIAGE-EXCH-005", "medium")],
        ),
        (
            ExchangeInstall((14, 3, 496, 0), install_path=r"C:\Program Files\Microsoft\Exchange Server\V14"),
            [("TRIAGE-EXCH-001", "info"), ("TRIAGE-EXCH-005", "medium"), ("TRIAGE-EXCH-008", "medium")],
        ),
    ],
    ids=[
        "e16cu19-vuln",
        "e16cu19-march",
        "e16cu19-april",
        "e13cu23-april",
        "e19cu8-march",
        "e19cu4-vuln",
        "e19cu4-special",
        "e2010-ru31",
    ],
)
def test_analyzer_on_registry_only(tmp_path: Path, install: ExchangeInstall, expected) -> None:
    an = RegistryExchange()
    unit = make_unit(tmp_path, an, {SOFTWARE: _software(install)})
    got = run(an, unit)
    assert _ids(got) == expected
    inv = next(f for f in got if f.rule_id == "TRIAGE-EXCH-001")
    attrs = json.loads(inv.attributes)
    assert attrs["install_path"] == install.install_path + "\\"
    assert attrs["version_source"].startswith("registry")
    assert {u["kb"] for u in attrs["installed_updates"]} == set(install.updates)
    assert inv.location == f"HKLM\\SOFTWARE\\Microsoft\\ExchangeServer\\v{install.build[0]}\\Setup"
    assert inv.ts is not None


def test_exsetup_is_authoritative_and_disagreement_is_reported(tmp_path: Path) -> None:
    an = RegistryExchange()
    install = ExchangeInstall((15, 1, 2176, 2))  # registry: CU19 with no SU recorded
    exsetup = "C:/Program Files/Microsoft/Exchange Server/V15/Bin/ExSetup.exe"
    unit = make_unit(tmp_path, an, {SOFTWARE: _software(install), exsetup: exsetup_exe((15, 1, 2176, 12))})
    got = run(an, unit)
    assert _ids(got) == [("TRIAGE-EXCH-001", "info"), ("TRIAGE-EXCH-004", "info"), ("TRIAGE-EXCH-006", "low")]
    verdict = next(f for f in got if f.rule_id == "TRIAGE-EXCH-004")
    attrs = json.loads(verdict.attributes)
    assert attrs["file_build"] == "15.1.2176.12" and attrs["registry_build"] == "15.1.2176.2"
    assert attrs["file_product_version"] == "15.01.2176.012"
    assert verdict.evidence_path.endswith("ExSetup.exe")
    # agreeing sources: no disagreement finding
    install = ExchangeInstall((15, 1, 2176, 2), (KB_MARCH,))
    unit = make_unit(tmp_path / "b", an, {SOFTWARE: _software(install), exsetup: exsetup_exe((15, 1, 2176, 9))})
    assert _ids(run(an, unit)) == [("TRIAGE-EXCH-001", "info"), ("TRIAGE-EXCH-003", "medium")]


def test_unreadable_exsetup_is_a_warning(tmp_path: Path) -> None:
    an = RegistryExchange()
    exsetup = "C:/Program Files/Microsoft/Exchange Server/V15/Bin/ExSetup.exe"
    unit = make_unit(tmp_path, an, {SOFTWARE: _software(ExchangeInstall()), exsetup: b"MZ" + bytes(126)})
    assert _ids(run(an, unit)) == [("TRIAGE-EXCH-001", "info"), ("TRIAGE-EXCH-002", "high")]
    assert any("ExSetup.exe: cannot read the version resource" in w for w in unit.warnings)
    assert read_pe_version(Path(__file__))[0] is None


def test_file_only_and_no_exchange(tmp_path: Path) -> None:
    an = RegistryExchange()
    exsetup = "D:/Exchange/V15/Bin/ExSetup.exe"
    unit = make_unit(tmp_path, an, {exsetup: exsetup_exe((15, 2, 858, 5))})
    assert _ids(run(an, unit)) == [("TRIAGE-EXCH-001", "info"), ("TRIAGE-EXCH-003", "medium")]
    unit = make_unit(tmp_path / "none", an, {SOFTWARE: _software(None)})
    assert run(an, unit) == []


def test_msert_traces(tmp_path: Path) -> None:
    an = RegistryExchange()
    msert = {"Timestamp": "03/08/2021 14:02:11", "Stage1": "MSERT scan started", "Stage2": "Mitigation applied"}
    unit = make_unit(tmp_path, an, {SOFTWARE: _software(None, msert=msert)})
    (f,) = run(an, unit)
    assert f.rule_id == "TRIAGE-EXCH-007" and f.ed2102_steps == ("20",) and f.severity == "info"
    assert str(f.ts) == "2021-03-08 14:02:11+00:00"
    assert json.loads(f.attributes)["Stage2"] == "Mitigation applied"


@pytest.mark.parametrize("level", ["vulnerable", "march", "april"])
@pytest.mark.parametrize(
    ("product", "cu"), [("2013", "CU23"), ("2016", "CU19"), ("2016", "CU20"), ("2019", "CU8"), ("2019", "CU9")]
)
def test_built_software_hives_per_version_and_level(tmp_path: Path, product: str, cu: str, level: str) -> None:
    """Registry-only and registry + ExSetup.exe give the same verdict for each built install."""
    install, file_version = exchange_at(product, cu, level)
    expected = {"vulnerable": "TRIAGE-EXCH-002", "march": "TRIAGE-EXCH-003", "april": "TRIAGE-EXCH-004"}[level]
    if level == "vulnerable" and cu in ("CU20", "CU9"):
        expected = "TRIAGE-EXCH-003"  # these CUs shipped with the March fixes
    exsetup = "C:/Program Files/Microsoft/Exchange Server/V15/Bin/ExSetup.exe"
    an = RegistryExchange()
    for i, files in enumerate(
        ({SOFTWARE: _software(install)}, {SOFTWARE: _software(install), exsetup: exsetup_exe(file_version)})
    ):
        got = [f.rule_id for f in run(an, make_unit(tmp_path / str(i), an, files))]
        assert sorted(got) == sorted(["TRIAGE-EXCH-001", expected]), (i, got)


def test_setup_key_without_version(tmp_path: Path) -> None:
    from triage.testing.regf import HiveBuilder

    hb = HiveBuilder(file_name=r"\SystemRoot\System32\Config\SOFTWARE")
    hb.set_value(r"Microsoft\ExchangeServer\v15\Setup", "MsiInstallPath", "C:\\Exchange\\")
    an = RegistryExchange()
    unit = make_unit(tmp_path, an, {SOFTWARE: hb.to_bytes()})
    assert _ids(run(an, unit)) == [("TRIAGE-EXCH-001", "info"), ("TRIAGE-EXCH-009", "medium")]
    assert "no MsiProductMajor" in unit.warnings[0]
