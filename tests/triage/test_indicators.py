"""The shared indicator lists (signatures/indicators): one list of each, used by every analyzer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import analyzers
import triage
from analyzers.exchange import narrative
from analyzers.memory import derive
from analyzers.yara import heuristics
from triage import indicators
from triage.formats import recognize

ROOTS = (Path(triage.__file__).parent, Path(analyzers.__file__).parent)


def test_lists_load_with_their_contents() -> None:
    assert "103.77.192.219" in indicators.hafnium_ips() and len(indicators.hafnium_ips()) == 15
    assert indicators.server_pages()[0] == ".aspx" and ".cer" in indicators.server_pages()
    assert indicators.stock_names("ecp_auth") == {"timeoutlogoff.aspx"}
    assert "/owa/auth/logon.aspx" in indicators.indicator_list("stock_auth_paths")
    assert "OutlookEN.aspx" in indicators.indicator_list("shell_names")
    ids = [r.id for r in indicators.cmdline_rules()]
    assert ids[0] == "MEM-CMD-PROCDUMP-LSASS" and len(ids) == len(set(ids)) == 10


def test_every_analyzer_uses_the_one_list() -> None:
    assert indicators.hafnium_ips() == derive.HAFNIUM_IPS
    assert set(derive.SERVER_PAGES) == set(heuristics.PAGE_EXTS) == set(recognize.SERVER_PAGE_EXTENSIONS)
    assert heuristics._stock_auth_pages() == derive.OWA_AUTH_STOCK | derive.ECP_AUTH_STOCK
    assert derive.CMD_RULES is indicators.cmdline_rules()
    assert narrative._STOCK.match("/OWA/auth/LogOn.aspx") and not narrative._STOCK.match("/owa/auth/x.aspx")


@pytest.mark.parametrize("literal", ["103.77.192.219", "SvmFeedback", "fullmemdmp", '".cshtml"'])
def test_no_copy_of_an_indicator_in_the_code(literal: str) -> None:
    # the builders under triage/testing write evidence that holds indicators on purpose
    hits = [
        str(p)
        for root in ROOTS
        for p in root.rglob("*.py")
        if "testing" not in p.parts and literal.lower() in p.read_text(encoding="utf-8").lower()
    ]
    assert not hits


def test_command_line_rules_interpreter() -> None:
    rows = [
        {"PID": 7, "Process": "rundll32.exe", "Args": r"rundll32 C:\w\comsvcs.dll, MiniDump 624 x full"},
        {"PID": 8, "Process": "powershell.exe", "Args": "add-pssnapin microsoft.exchange.powershell.snapin; "
         "get-exchangeserver ([environment]::machinename)"},
    ]  # fmt: skip
    hits = derive.command_lines(rows)
    assert [(h.rule_id, h.location, h.severity, h.mitre) for h in hits] == [
        ("MEM-CMD-COMSVCS-MINIDUMP", "pid:7", "critical", "T1003.001")
    ]


def test_a_bad_rule_file_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "cmdline.yaml").write_text("rules:\n  - {id: X, title: t, severity: high, pattern: '(', mitre: T1}\n")
    monkeypatch.setattr(indicators, "indicator_path", lambda name: tmp_path / name)
    indicators._doc.cache_clear()
    indicators.cmdline_rules.cache_clear()
    try:
        with pytest.raises(indicators.IndicatorError, match=re.escape("X: bad regex")):
            indicators.cmdline_rules()
    finally:
        monkeypatch.undo()
        indicators._doc.cache_clear()
        indicators.cmdline_rules.cache_clear()


def test_rule_metadata_files_load_as_rule_meta() -> None:
    from analyzers.exchange.common import AA21_062A, TPL_REFERENCE
    from analyzers.exchange.proxylogon import RULES as TPL
    from analyzers.registry.exchange import RULES as EXCH

    assert sorted(EXCH) == [f"TRIAGE-EXCH-00{i}" for i in range(1, 10)]
    assert EXCH["TRIAGE-EXCH-002"].steps == ("1", "14", "32") and EXCH["TRIAGE-EXCH-002"].mitre == ("T1190",)
    assert all(TPL_REFERENCE in r.references for r in TPL.values())  # the same URL as the code's constant
    assert TPL["TPL-CVE-2021-26855"].references == (TPL_REFERENCE, AA21_062A)
    assert TPL["TPL-CVE-2021-26858"].severity == "high"  # raised to critical in code for web folders


def test_a_bad_rule_metadata_entry_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("rules:\n  - {id: X-1, title: t, severity: severe}\n")
    monkeypatch.setattr(indicators.resources, "files", lambda _pkg: tmp_path)
    with pytest.raises(indicators.IndicatorError, match="X-1"):
        indicators.rule_metas.__wrapped__("x.yaml")
