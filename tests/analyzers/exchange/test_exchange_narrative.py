"""The per-client attack narrative: steps joined across HttpProxy, IIS and ECP logs, in time order."""

from __future__ import annotations

from pathlib import Path

import pytest
from exchange_support import story_files

from analyzers.exchange.narrative import Narrative, build_narratives, describe_step
from analyzers.exchange.rules import load_rules

S = "-5c1e-4b7a-9d3f-0a1b2c3d4e5f"
ATTACKER_STEPS = [
    ("2021-03-03T06:40:03.000Z", "", "POST", "/owa/auth/Current/themes/resources/logon.css"),
    ("2021-03-03T06:49:42.162Z", "a0000001" + S, "POST", "/ecp/y.js"),  # autodiscover: excluded by the script
    ("2021-03-03T06:49:43.699Z", "a0000002" + S, "POST", "/ecp/y.js"),  # /mapi/emsmdb
    ("2021-03-03T06:49:46.210Z", "a0000003" + S, "POST", "/ecp/y.js"),  # proxyLogon.ecp 241
    ("2021-03-03T06:49:51.389Z", "a0000004" + S, "POST", "/ecp/y.js"),  # GetObject; ECP logs it first
    ("2021-03-03T06:49:53.772Z", "a0000005" + S, "POST", "/ecp/y.js"),  # SetObject + Set-OabVirtualDirectory
    ("2021-03-03T06:49:56.120Z", "a0000006" + S, "POST", "/ecp/y.js"),  # ResetOABVirtualDirectory 200
    ("2021-03-03T06:50:00.717Z", "a0000007" + S, "POST", "/ecp/y.js"),  # ExternalUrl $null
    ("2021-03-03T06:50:00.934Z", "a0000008" + S, "", "/ecp/DDI/DDIService.svc/SetObject"),  # Remove- (ECP only)
    ("2021-03-03T06:50:08.396Z", "a0000009" + S, "", "/ecp/DDI/DDIService.svc/SetObject"),  # New- (ECP only)
    ("2021-03-03T06:50:30.000Z", "", "GET", "/aspnet_client/discover.aspx"),
    ("2021-03-03T06:51:02.000Z", "", "POST", "/aspnet_client/system_web/Dk2jQ8ab.aspx"),
    ("2021-03-03T06:59:13.030Z", "a0000016" + S, "POST", "/ecp/y.js"),
    ("2021-03-03T06:59:14.518Z", "a0000017" + S, "POST", "/ecp/y.js"),
    ("2021-03-03T06:59:17.960Z", "a0000018" + S, "POST", "/ecp/y.js"),
    ("2021-03-03T06:59:19.101Z", "a0000019" + S, "POST", "/ecp/y.js"),  # reset answered 500
    ("2021-03-03T06:59:20.359Z", "a0000020" + S, "POST", "/ecp/y.js"),
    ("2021-03-03T06:59:23.212Z", "a0000021" + S, "POST", "/ecp/y.js"),
]


@pytest.fixture(scope="module", params=["clean-files", "hostile-files"])
def narratives(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Narrative]:
    _, files = story_files(tmp_path_factory.mktemp("n"), hostile=request.param == "hostile-files")
    found, _ = build_narratives(files, load_rules())
    return {n.client_ip: n for n in found}


def test_one_narrative_per_seed_client(narratives: dict[str, Narrative]) -> None:
    assert sorted(narratives) == ["157.230.221.198", "45.77.204.11"]


def test_attacker_steps_in_order(narratives: dict[str, Narrative]) -> None:
    n = narratives["157.230.221.198"]
    got = [(s["ts"], s["request_id"], s["method"], s["uri_stem"]) for s in n.steps]
    assert got == ATTACKER_STEPS
    by_id = {s["request_id"]: s for s in n.steps if s["request_id"]}
    assert by_id["a0000005" + S]["sources"] == ["ECP", "HttpProxy/Ecp", "IIS/W3SVC1", "IIS/W3SVC2"]
    assert by_id["a0000005" + S]["cmd"].startswith("Set-OabVirtualDirectory.ExternalUrl='http://f/<script")
    assert by_id["a0000003" + S]["labels"][0] == "proxyLogon.ecp reached through the SSRF cookie"
    assert by_id["a0000003" + S]["backend"] == "EXCH01.corp.example:444/ecp/proxyLogon.ecp?#"
    assert by_id["a0000003" + S]["status"] == "241"
    assert "CVE-2021-27065 Reset-VDir answered 200 (Test-ProxyLogon)" in by_id["a0000006" + S]["labels"]
    assert "CVE-2021-27065 Reset-VDir answered 200 (Test-ProxyLogon)" not in by_id["a0000019" + S]["labels"]
    assert "TPL-CVE-2021-26855" not in by_id["a0000001" + S]["rule_ids"]  # autodiscover only
    assert by_id["a0000008" + S]["rule_ids"] == ["TRIAGE-EXW-018"]  # clean-up, joined by its canary
    shell = n.steps[11]
    assert (shell["status"], shell["user_agent"]) == ("200", "antSword/v2.1")
    assert "Web shell client user agent (antSword)" in shell["labels"]
    assert n.canaries == ["8BeqP3mWYd1L8vH5fR2sN6.Jk4", "M1xSq0nDuwEy7Tb2kQ4GcZ8a.Ux1"]
    assert describe_step(n.steps[3]).startswith(
        "2021-03-03T06:49:46.210Z [HttpProxy/Ecp, IIS/W3SVC1, IIS/W3SVC2] POST /ecp/y.js -> "
        "EXCH01.corp.example:444/ecp/proxyLogon.ecp?# (241) - proxyLogon.ecp reached through the SSRF cookie"
    )


def test_related_requests_and_host_events(narratives: dict[str, Narrative]) -> None:
    n = narratives["157.230.221.198"]
    assert [(r["ts"], r["client_ip"], r["method"], r["uri_stem"], r["uri_query"], r["status"]) for r in n.related] == [
        ("2021-03-05T03:10:00.000Z", "139.162.202.236", "POST", "/aspnet_client/system_web/Dk2jQ8ab.aspx",
         "proxy&port=3389", "200"),
    ]  # fmt: skip
    assert [(e["ts"], e["what"].split(":")[0]) for e in n.host_events] == [
        ("2021-03-03T06:45:12.000Z", "CVE-2021-26857 Unified Messaging error"),
        ("2021-03-03T06:49:53.900Z", "MSExchange Management cmdlet"),
        ("2021-03-03T06:52:30.412Z", "CVE-2021-26858 OAB generator wrote 'C"),
    ]
    assert n.shell_names == ["dk2jq8ab.aspx"]


def test_second_client(narratives: dict[str, Narrative]) -> None:
    n = narratives["45.77.204.11"]
    assert [(s["ts"], s["request_id"], s["sources"], s["status"]) for s in n.steps] == [
        ("2021-03-03T07:15:20.005Z", "d0000001" + S, ["HttpProxy/Owa", "IIS/W3SVC1"], "500")
    ]
    assert n.steps[0]["backend"] == "EXCH01.corp.example:444/ews/exchange.asmx?#"
    assert sorted(r["client_ip"] for r in n.related) == ["139.162.202.236", "157.230.221.198"]


def test_no_narrative_without_seeds(tmp_path: Path) -> None:
    _, files = story_files(tmp_path, attack=False)
    found, _ = build_narratives(files, load_rules())
    assert found == []
