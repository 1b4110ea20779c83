"""Host facts, planted hives giving exactly their findings, corpus hives, dirty and truncated hives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from registry_support import corpus_hive, make_unit, run

from analyzers.registry.checks import RegistryRules
from analyzers.registry.hostinfo import RegistryHostInfo
from triage.formats.hive import Hive, rust_available
from triage.testing.hives import (
    Account,
    ExchangeInstall,
    amcache_hive,
    dirty_pair,
    ntuser_hive,
    planted_amcache,
    planted_ntuser,
    planted_sam,
    planted_software,
    planted_system,
    sam_hive,
    software_hive,
    system_hive,
)

CFG = "C:/Windows/System32/config/"
NTUSER = "C:/Users/exadmin/NTUSER.DAT"
AMCACHE = "C:/Windows/AppCompat/Programs/Amcache.hve"


def benign_files() -> dict[str, bytes]:
    return {
        CFG + "SYSTEM": system_hive().to_bytes(),
        CFG + "SOFTWARE": software_hive(exchange=ExchangeInstall()).to_bytes(),
        CFG + "SAM": sam_hive().to_bytes(),
        NTUSER: ntuser_hive().to_bytes(),
        AMCACHE: amcache_hive(
            [(r"C:\Windows\System32\inetsrv\w3wp.exe", __import__("datetime").datetime(2020, 1, 1))]
        ).to_bytes(),
    }


def planted_files() -> dict[str, bytes]:
    return {
        CFG + "SYSTEM": planted_system().to_bytes(),
        CFG + "SYSTEM.LOG1": b"",
        CFG + "SOFTWARE": planted_software().to_bytes(),
        CFG + "SAM": planted_sam().to_bytes(),
        NTUSER: planted_ntuser().to_bytes(),
        AMCACHE: planted_amcache().to_bytes(),
        CFG + "RegBack/SYSTEM": planted_system().to_bytes(),  # backups are not analysed twice
    }


PLANTED = sorted(
    [
        ("TRIAGE-REG-ACC-001", "HKLM\\SAM\\SAM\\Domains\\Account\\Users\\000003E9 (support)"),
        ("TRIAGE-REG-ACC-002", "HKLM\\SAM\\SAM\\Domains\\Account\\Users\\000003EA (svc$)"),
        ("TRIAGE-REG-ACC-003", "HKLM\\SAM\\SAM\\Domains\\Account\\Users\\000001F5 (Guest)"),
        ("TRIAGE-REG-ACC-004", "HKLM\\SAM\\SAM\\Domains\\Account\\Users\\000001F4 (LocalAdm)"),
        ("TRIAGE-REG-CRED-001", "HKLM\\SYSTEM\\ControlSet001\\Control\\SecurityProviders\\WDigest\\UseLogonCredential"),
        ("TRIAGE-REG-CRED-002", "HKLM\\SYSTEM\\ControlSet001\\Control\\Lsa\\RunAsPPL"),
        ("TRIAGE-REG-CRED-003", "HKLM\\SYSTEM\\ControlSet001\\Control\\Lsa\\Security Packages"),
        ("TRIAGE-REG-EXE-002", "shimcache:C:\\Windows\\Temp\\procdump64.exe"),
        ("TRIAGE-REG-EXE-003", "userassist:exadmin:C:\\Users\\exadmin\\Downloads\\mimikatz_trunk\\x64\\mimikatz.exe"),
        ("TRIAGE-REG-EXE-004", "amcache:c:\\programdata\\nc.exe"),
        ("TRIAGE-REG-EXE-006", "userassist:exadmin:C:\\Tools\\PsExec64.exe"),
        (
            "TRIAGE-REG-EXE-008",
            "bam:S-1-5-21-1004336348-1177238915-682003330-500:\\Device\\HarddiskVolume2\\ProgramData\\7z.exe",
        ),
        (
            "TRIAGE-REG-EXE-009",
            "amcache:c:\\program files\\microsoft\\exchange server\\v15\\frontend\\httpproxy\\owa\\auth\\cw.exe",
        ),
        ("TRIAGE-REG-EXE-011", "amcache:c:\\programdata\\nc.exe"),
        (
            "TRIAGE-REG-EXE-012",
            "bam:S-1-5-21-1004336348-1177238915-682003330-500:\\Device\\HarddiskVolume2\\ProgramData\\7z.exe",
        ),
        ("TRIAGE-REG-EXE-012", "shimcache:C:\\Windows\\Temp\\procdump64.exe"),
        ("TRIAGE-REG-LAT-001", "HKLM\\SYSTEM\\ControlSet001\\Control\\Terminal Server\\fDenyTSConnections"),
        ("TRIAGE-REG-PER-002", "HKU\\exadmin\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\Updater"),
        ("TRIAGE-REG-PER-003", "HKLM\\SYSTEM\\ControlSet001\\Services\\WinUpdSvc\\ImagePath"),
        ("TRIAGE-REG-PER-004", "HKLM\\SYSTEM\\ControlSet001\\Services\\xK7qZ2pLm9\\ImagePath"),
        ("TRIAGE-REG-PER-005", "HKLM\\SYSTEM\\ControlSet001\\Services\\xK7qZ2pLm9\\ImagePath"),
        ("TRIAGE-REG-PER-008", "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon\\Userinit"),
        (
            "TRIAGE-REG-PER-009",
            "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Image File Execution Options\\sethc.exe\\Debugger",
        ),
        (
            "TRIAGE-REG-PER-010",
            "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\SilentProcessExit\\lsass.exe\\MonitorProcess",
        ),
        ("TRIAGE-REG-PER-011", "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Windows\\AppInit_DLLs"),
        (
            "TRIAGE-REG-PER-012",
            "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Schedule\\TaskCache\\Tasks"
            "\\{0D3B57D8-2E4F-4A1B-8C9D-7E6F5A4B3C2D}\\Actions",
        ),
        ("TRIAGE-REG-PER-013", "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\OneDriveUpdate"),
    ]
)


@pytest.mark.parametrize("backend", ["python", "rust"])
def test_planted_hives_give_exactly_their_findings(tmp_path: Path, backend: str) -> None:
    if backend == "rust" and not rust_available():
        pytest.skip("regipy-rs is not installed")
    an = RegistryRules({"backend": backend})
    unit = make_unit(tmp_path, an, planted_files())
    got = run(an, unit)
    assert sorted((f.rule_id, f.location) for f in got) == PLANTED
    assert unit.warnings == []
    by_rule = {f.rule_id: f for f in got}
    wd = by_rule["TRIAGE-REG-CRED-001"]
    assert (wd.severity, wd.mitre, wd.ed2102_steps) == ("medium", ("T1003.001", "T1112"), ("9",))
    assert wd.evidence_path.endswith("registry_hive/C/Windows/System32/config/SYSTEM")
    assert json.loads(wd.attributes)["data"] == 1 and wd.ts is not None and wd.ts_desc == "Key last written"
    acc = by_rule["TRIAGE-REG-ACC-001"]
    assert str(acc.ts) == "2021-03-03 02:31:00+00:00" and acc.ts_desc == "Account created"
    assert json.loads(acc.attributes)["last_login"] == "2021-03-03T02:35:00+00:00"
    task = by_rule["TRIAGE-REG-PER-012"]
    assert json.loads(task.attributes)["values"] == {"Path": "\\Microsoft\\Windows\\VSPerfMon\\Updater"}
    assert "DownloadString" in task.message
    ua = by_rule["TRIAGE-REG-EXE-003"]
    attrs = json.loads(ua.attributes)
    assert (attrs["run_count"], attrs["user"], ua.ts_desc) == (2, "exadmin", "Last run (UserAssist)")


def test_benign_hives_give_no_rule_findings(tmp_path: Path) -> None:
    an = RegistryRules()
    unit = make_unit(tmp_path, an, benign_files())
    assert run(an, unit) == []
    assert unit.warnings == []


def test_host_facts(tmp_path: Path) -> None:
    an = RegistryHostInfo()
    unit = make_unit(tmp_path, an, benign_files())
    got = {f.rule_id: f for f in run(an, unit)}
    assert sorted(got) == [
        "TRIAGE-HOST-001",
        "TRIAGE-HOST-002",
        "TRIAGE-HOST-003",
        "TRIAGE-HOST-004",
        "TRIAGE-HOST-005",
        "TRIAGE-HOST-006",
        "TRIAGE-HOST-007",
    ]
    name = json.loads(got["TRIAGE-HOST-001"].attributes)
    assert (name["computer_name"], name["fqdn"], name["ip_addresses"]) == (
        "EXCH01",
        "exch01.corp.example",
        ["10.0.0.10", "192.168.50.23"],
    )
    os_ = json.loads(got["TRIAGE-HOST-002"].attributes)
    assert os_["os"] == "Windows Server 2016 Standard (build 14393.4169)" and os_["install_time"].startswith("2019-06")
    tz = json.loads(got["TRIAGE-HOST-003"].attributes)
    assert (tz["time_zone"], tz["bias_minutes"]) == ("W. Europe Standard Time", -60)
    sw = json.loads(got["TRIAGE-HOST-005"].attributes)
    assert "Microsoft Exchange Server 2016" in {p["name"] for p in sw["programs"]}
    assert str(got["TRIAGE-HOST-006"].ts) == "2021-02-27 03:58:40+00:00"
    accts = json.loads(got["TRIAGE-HOST-007"].attributes)["accounts"]
    assert [(a["username"], a["rid"], a["disabled"]) for a in accts] == [
        ("Administrator", 500, False),
        ("Guest", 501, True),
        ("DefaultAccount", 503, True),
    ]
    assert all(f.severity == "info" for f in got.values())
    itfs = [f for f in run(an, make_unit(tmp_path / "b", an, benign_files())) if f.rule_id == "TRIAGE-HOST-004"]
    assert sorted(json.loads(f.attributes)["ip_addresses"][0] for f in itfs) == ["10.0.0.10", "192.168.50.23"]


# -- corpus hives (third-party, read-only) ----------------------------------------------------------------

# Facts the regipy test SYSTEM hive really holds (checked by hand): WDigest UseLogonCredential=1 in
# ControlSet001 and PSEXESVC.EXE in its ShimCache. They are true findings of a posture and a tool name, so
# by the severity policy (signatures/SEVERITY.md) medium, not high: these benign hives give no high.
CORPUS_TRUE_HIGH: set[tuple[str, str]] = set()
CORPUS_TRUE_MEDIUM = {
    ("TRIAGE-REG-CRED-001", "HKLM\\SYSTEM\\ControlSet001\\Control\\SecurityProviders\\WDigest\\UseLogonCredential"),
    ("TRIAGE-REG-EXE-005", "shimcache:\\??\\C:\\Windows\\PSEXESVC.EXE"),
}


@pytest.mark.corpus
def test_corpus_hives_parse_without_false_high_findings(tmp_path: Path) -> None:
    names = {
        "RGP_SYSTEM": CFG + "SYSTEM",
        "RGP_SAM": CFG + "SAM",
        "RGP_SECURITY": CFG + "SECURITY",
        "RGP_NTUSER.DAT": "C:/Users/vibranium/NTUSER.DAT",
        "RGP_amcache.hve": AMCACHE,
        "PLS_NTUSER-RunTests.DAT": "C:/Users/plaso/NTUSER.DAT",
    }
    files = {}
    for name, logical in names.items():
        path = corpus_hive(name, tmp_path / "src")
        if path is None:
            pytest.skip("the shared corpus (../shared/corpus/hives) is not present")
        files[logical] = path.read_bytes()
    rules = RegistryRules()
    unit = make_unit(tmp_path, rules, files, host="CORPUS")
    got = run(rules, unit)
    high = {(f.rule_id, f.location) for f in got if f.severity in ("high", "critical")}
    assert high == CORPUS_TRUE_HIGH
    assert {(f.rule_id, f.location) for f in got if f.severity == "medium"} >= CORPUS_TRUE_MEDIUM
    # the dirty Amcache hive (no logs in the corpus) is read as it is, with a warning
    assert [w.split(": hive is dirty")[0] for w in unit.warnings if "no usable transaction log" in w] == [AMCACHE]
    with Hive(tmp_path / "src" / "RGP_SECURITY") as sec:  # no rule reads SECURITY; it parses all the same
        assert sec.hive_type == "security" and sec.subkey_names("Policy")
        assert "no usable transaction log" in sec.warnings[0]
    facts = {f.rule_id: f for f in run(RegistryHostInfo(), make_unit(tmp_path / "h", RegistryHostInfo(), files))}
    assert json.loads(facts["TRIAGE-HOST-007"].attributes)["count"] == 3
    assert {a["username"] for a in json.loads(facts["TRIAGE-HOST-007"].attributes)["accounts"]} == {
        "Administrator",
        "Guest",
        "Preston",
    }
    assert json.loads(facts["TRIAGE-HOST-001"].attributes)["computer_name"]


@pytest.mark.corpus
@pytest.mark.skipif(not rust_available(), reason="regipy-rs is not installed")
@pytest.mark.parametrize("name", ["RGP_SAM", "RGP_NTUSER.DAT", "PLS_NTUSER-RunTests.DAT", "RGP_SECURITY"])
def test_backends_agree_on_corpus_hives(tmp_path: Path, name: str) -> None:
    """Every key, value and timestamp read the same through regipy-rs and through our pure-Python path."""
    path = corpus_hive(name, tmp_path)
    if path is None:
        pytest.skip("the shared corpus is not present")
    with Hive(path, backend="rust") as rs, Hive(path, backend="python") as py:
        stack = [""]
        while stack:
            key = stack.pop()
            a, b = rs.key(key), py.key(key)
            assert a is not None and b is not None
            assert (a.name, a.ts, a.subkey_count) == (b.name, b.ts, b.subkey_count), key
            for n in a.values:
                va, vb = a.values[n], b.values[n]
                if va.type in ("REG_SZ", "REG_DWORD", "REG_QWORD", "REG_EXPAND_SZ", "REG_BINARY", "REG_MULTI_SZ"):
                    assert (va.name, va.type, va.data) == (vb.name, vb.type, vb.data), f"{key}\\{n}"
            assert set(a.values) == set(b.values)
            assert rs.subkey_names(key) == py.subkey_names(key)
            stack.extend(f"{key}\\{s}" if key else s for s in rs.subkey_names(key))


# -- dirty and damaged hives ---------------------------------------------------------------------------


def test_dirty_hive_with_log_changes_what_is_read(tmp_path: Path) -> None:
    old = system_hive()
    new = system_hive()
    new.set_value(r"ControlSet001\Control\SecurityProviders\WDigest", "UseLogonCredential", 1)
    hive_bytes, log1 = dirty_pair(old, new)
    files = {CFG + "SYSTEM": hive_bytes, CFG + "SYSTEM.LOG1": log1, CFG + "SYSTEM.LOG2": b""}
    an = RegistryRules()
    unit = make_unit(tmp_path, an, files)
    got = [(f.rule_id, f.severity) for f in run(an, unit)]
    assert got == [("TRIAGE-REG-CRED-001", "medium")]
    (warning,) = unit.warnings
    assert "hive was dirty (primary sequence 2 != secondary 1); applied SYSTEM.LOG1" in warning
    assert "evidence file is unchanged" in warning
    stored = next(m for m in unit.members if m.relpath.endswith("/SYSTEM"))
    assert unit.member_path(stored).read_bytes() == hive_bytes  # never written to
    # without the log the primary file is read as it is, and says so
    unit = make_unit(tmp_path / "nolog", an, {CFG + "SYSTEM": hive_bytes})
    assert run(an, unit) == []
    assert "no usable transaction log (none collected)" in unit.warnings[0]


def test_stale_log_is_not_applied(tmp_path: Path) -> None:
    old, new = system_hive(), system_hive()
    new.set_value(r"ControlSet001\Control\SecurityProviders\WDigest", "UseLogonCredential", 1)
    hive_bytes, log1 = dirty_pair(old, new)
    stale = bytearray(log1)
    stale[524:528] = (0).to_bytes(4, "little")  # an entry older than the primary's secondary sequence
    (tmp_path / "SYSTEM").write_bytes(hive_bytes)
    (tmp_path / "SYSTEM.LOG1").write_bytes(bytes(stale))
    with Hive(tmp_path / "SYSTEM", logs=[tmp_path / "SYSTEM.LOG1"]) as h:
        assert h.applied_logs == [] and "no usable transaction log (SYSTEM.LOG1)" in h.warnings[0]


def test_truncated_and_garbage_hives_warn_not_crash(tmp_path: Path) -> None:
    data = planted_system().to_bytes()
    files = {
        CFG + "SYSTEM": data[: len(data) // 2],
        CFG + "SOFTWARE": data[: 4096 + 200],
        CFG + "SAM": b"not a hive at all" * 100,
        NTUSER: b"",
        AMCACHE: bytes(4096),
    }
    for an in (RegistryRules(), RegistryHostInfo()):
        unit = make_unit(tmp_path / an.name, an, files)
        run(an, unit)  # must not raise
        text = "\n".join(unit.warnings)
        assert "C:/Windows/System32/config/SYSTEM: truncated:" in text
        assert "C:/Windows/System32/config/SAM: not a registry hive" in text
        if an.name == "registry_rules":  # host facts do not read user hives
            assert "C:/Users/exadmin/NTUSER.DAT: not a registry hive" in text


def test_hive_reads_what_survives_truncation(tmp_path: Path) -> None:
    """Keys stored before the cut are still read when the damage lies elsewhere."""
    data = planted_system().to_bytes()
    cut = bytearray(data)
    # zero a page in the middle: keys stored there are lost, the rest stays readable
    mid = 4096 + ((len(data) - 4096) // 2 // 4096) * 4096
    cut[mid : mid + 4096] = bytes(4096)
    (tmp_path / "SYSTEM").write_bytes(bytes(cut))
    with Hive(tmp_path / "SYSTEM", hive_type="system", backend="python") as h:
        assert h.ok and h.value("Select", "Current") == 1
        assert h.hive_type == "system"


def test_user_of_profiles() -> None:
    from analyzers.registry.hostset import user_of

    assert user_of("C:/Users/alice/NTUSER.DAT") == "alice"
    assert user_of("C:/Windows/ServiceProfiles/NetworkService/NTUSER.DAT") == "NetworkService"
    assert user_of("C:/Windows/System32/config/systemprofile/NTUSER.DAT") == "systemprofile"


def test_accounts_sam_parsing() -> None:
    from analyzers.registry.artifacts import sam_accounts
    from triage.testing.hives import sam_f, sam_v

    acct = Account("bob", 1010, logins=7, full_name="Bob B", comment="x")
    assert len(sam_f(acct)) == 80 and sam_v(acct)[0xCC:].startswith("".encode("utf-16-le"))
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = sam_hive([acct]).write(Path(d) / "SAM")
        with Hive(p) as h:
            (rec,) = sam_accounts(h)
    assert (rec["username"], rec["rid"], rec["full_name"], rec["comment"], rec["login_count"]) == (
        "bob",
        1010,
        "Bob B",
        "x",
        7,
    )


def test_declared_host_facts_read_from_the_findings(tmp_path: Path) -> None:
    """The report reads host facts through RegistryHostInfo.host_facts: the keys it declares are there."""
    from triage.hostfacts import HostFacts

    an = RegistryHostInfo()
    unit = make_unit(tmp_path, an, benign_files())
    facts = HostFacts()
    for f in run(an, unit):
        facts.read(RegistryHostInfo.host_facts, f.rule_id, json.loads(f.attributes))
    assert (facts.hostname, facts.fqdn, facts.internal_ips) == (
        "EXCH01",
        "exch01.corp.example",
        ["10.0.0.10", "192.168.50.23"],
    )
    assert facts.os == "Windows Server 2016 Standard (build 14393)"
