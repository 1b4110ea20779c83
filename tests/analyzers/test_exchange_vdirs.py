"""Exchange virtual directories beyond the auth folders (ClientAccess/*, FrontEnd/HttpProxy/*) are collected as
web files; stock files there stay quiet, a page planted there is found."""

from __future__ import annotations

import pytest

from analyzers.yara.heuristics import in_stock_tree
from triage.case import Case
from triage.cli import main
from triage.errors import ExitCode
from triage.report import load_findings
from triage.testing.volume import OAB_SHELL, VolumeSpec, build_volume

EX = "Program Files/Microsoft/Exchange Server/V15"
PAGE = b'<%@ Page Language="C#" AutoEventWireup="true" %>\r\n<html><body>Outlook</body></html>\r\n'
CONFIG = b'<?xml version="1.0"?>\r\n<configuration><appSettings><add key="a" value="b"/></appSettings></configuration>'
# stock-like files (builder content, written inside the ED 21-02 window like the March 2021 update's)
STOCK = {
    f"{EX}/FrontEnd/HttpProxy/SharedWebConfig.config": CONFIG,
    f"{EX}/FrontEnd/HttpProxy/owa/web.config": CONFIG,
    f"{EX}/FrontEnd/HttpProxy/ecp/web.config": CONFIG,
    f"{EX}/ClientAccess/SharedWebConfig.config": CONFIG,
    f"{EX}/ClientAccess/Owa/web.config": CONFIG,
    f"{EX}/ClientAccess/ecp/default.aspx": PAGE,
    f"{EX}/ClientAccess/ecp/About.aspx": PAGE,
    f"{EX}/ClientAccess/exchweb/ews/Exchange.asmx": b'<%@ WebService Language="C#" Class="EWS.Service" %>\r\n',
    f"{EX}/ClientAccess/Oab/web.config": CONFIG,
    f"{EX}/ClientAccess/Owa/prem/15.1.2176.2/scripts/boot.js": b"window.boot=function(){return 1;};\r\n",
}
PLANTED = {
    f"{EX}/ClientAccess/Oab/Yt4kWq2r.aspx": OAB_SHELL.encode(),  # an OAB export web shell (China Chopper)
    f"{EX}/FrontEnd/HttpProxy/owa/shellex.aspx": PAGE,  # a published ProxyLogon web shell name
}
NOT_WEB = {f"{EX}/ClientAccess/Owa/bin/Microsoft.Exchange.Clients.Owa2.Server.dll": b"MZ" + bytes(200)}


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    base = tmp_path_factory.mktemp("vdirs")
    spec = VolumeSpec(compromised=False, extra_files={**STOCK, **PLANTED, **NOT_WEB})
    vol = build_volume(base / "vol", spec)
    case_dir = base / "case"
    assert main(["collect", str(vol), "--case", str(case_dir), "-q"]) == ExitCode.OK
    only = "webshell_locations,webshell_heuristics"
    assert main(["analyze", str(case_dir), "--only", only, "-j", "1", "-q"]) == ExitCode.OK
    return Case.open(case_dir)


def test_vdir_files_are_collected_as_web_files(case: Case) -> None:
    rows = {r.relpath.split("/C/", 1)[-1]: r for r in case.manifest() if r.outcome == "success" and r.relpath}
    for rel in (*STOCK, *PLANTED):
        assert rel in rows, rel
        assert rows[rel].kind == "web_file" and rows[rel].family == "exchange_vdirs", rel
    assert not set(NOT_WEB) & set(rows)  # binaries are not web files
    # the auth folders keep their own family (declared first)
    assert rows[f"{EX}/FrontEnd/HttpProxy/owa/auth/logon.aspx"].family == "exchange_web"


def test_stock_vdir_files_quiet_planted_ones_found(case: Case) -> None:
    df = load_findings(case)
    by_file: dict[str, set[str]] = {}
    for loc, rule in zip(df["location"], df["rule_id"], strict=True):
        by_file.setdefault(str(loc).replace("\\", "/").split(":/", 1)[-1], set()).add(str(rule))
    noisy = {rel: rules for rel, rules in by_file.items() if rel in STOCK}
    assert not noisy, noisy
    assert "TRIAGE-WSH-030" in by_file[f"{EX}/ClientAccess/Oab/Yt4kWq2r.aspx"]  # request input to eval
    assert "TRIAGE-WEB-005" in by_file[f"{EX}/FrontEnd/HttpProxy/owa/shellex.aspx"]
    # the auth folders keep the time pointer: a stock auth page written in the window is still a low pointer
    assert "TRIAGE-WSH-001" in by_file[f"{EX}/FrontEnd/HttpProxy/owa/auth/logon.aspx"]


def test_stock_trees_exclude_the_auth_folders() -> None:
    assert in_stock_tree(f"C:/{EX}/ClientAccess/ecp/default.aspx")
    assert in_stock_tree("D:\\Exchange\\FrontEnd\\HttpProxy\\owa\\web.config")
    assert not in_stock_tree(f"C:/{EX}/FrontEnd/HttpProxy/owa/auth/x.aspx")
    assert not in_stock_tree(f"C:/{EX}/FrontEnd/HttpProxy/ecp/auth/x.aspx")
    assert not in_stock_tree("C:/inetpub/wwwroot/aspnet_client/x.aspx")
