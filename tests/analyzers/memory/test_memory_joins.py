"""memory_joins: memory tables joined with the web roots, event logs, web logs and minidumps of the same host.

Every host here is built: a volume (``triage.testing.volume``) collected into a case, a Security log written by the
EVTX writer, and Volatility tables written exactly as the memory analyzer writes them (``tables.write_table`` plus
``index.json`` with each table's sha256). The memory analyzer itself is not run: its tables come from Volatility,
which cannot analyse these images.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analyzers.memory.tables import write_table
from analyzers.memory.vol import Column
from collectors.collect import collect_files, collect_volume
from collectors.sources import open_source_path
from triage.case import Case
from triage.results import unit_records
from triage.runner import analyze_case
from triage.testing.evtx import Event
from triage.testing.evtx import evtx_bytes as make_evtx
from triage.testing.volume import OAB_SHELL, VolumeSpec, build_volume

HOST = "EXCH01"
SECURITY = ("Microsoft-Windows-Security-Auditing", "Security")
W3WP, CMD, HIDDEN, PROCDUMP = 7312, 8120, 9044, 6120
SHELL_ON_DISK = r"\inetpub\wwwroot\aspnet_client\system_web\Dk2jQ8ab.aspx"
GONE = r"\inetpub\wwwroot\aspnet_client\system_web\errorEE.aspx"
APP_WEB = r"\Windows\Microsoft.NET\Framework64\v4.0.30319\Temporary ASP.NET Files\owa\1a2b\3c4d\App_Web_k3lmn0pq.dll"
EVIL_IP = "167.99.168.251"  # the HttpProxy log of the compromised volume holds a request from it


def _t(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2021, 3, 3, hh, mm, ss, tzinfo=UTC)


def _4688(rid: int, when: datetime, pid: int, image: str, cmd: str) -> Event:
    return Event(
        4688,
        *SECURITY,
        time_created=when,
        record_id=rid,
        data={
            "SubjectUserSid": "S-1-5-18",
            "NewProcessId": hex(pid),
            "NewProcessName": image,
            "ProcessId": "0x4",
            "CommandLine": cmd,
            "ParentProcessName": r"C:\Windows\System32\services.exe",
        },
    )


def security_log(*, cmd_event: bool, dump_event: bool, auditing_off: datetime | None = None) -> bytes:
    """01:00 to 04:00 on 2021-03-03, process creation audited (4688s present); ``auditing_off``: a 4719 that
    removes success auditing of Process Creation at that time."""
    events = []
    if auditing_off is not None:
        events.append(
            Event(
                4719,
                *SECURITY,
                time_created=auditing_off,
                record_id=99,
                data={
                    "SubjectUserSid": "S-1-5-18",
                    "CategoryId": "%%8274",
                    "SubcategoryId": "%%13312",
                    "SubcategoryGuid": "{0CCE922B-69AE-11D9-BED3-505054503030}",
                    "AuditPolicyChanges": "%%8448",
                },
            )
        )
    events += [
        Event(4624, *SECURITY, time_created=_t(1, 0), record_id=100, data={"TargetUserName": "SYSTEM"}),
        _4688(101, _t(2, 0), W3WP, r"C:\Windows\System32\inetsrv\w3wp.exe", "w3wp.exe -ap MSExchangeOWAAppPool"),
    ]
    if cmd_event:
        events.append(_4688(102, _t(2, 20, 1), CMD, r"C:\Windows\System32\cmd.exe", "cmd.exe /c whoami"))
    if dump_event:
        events.append(
            _4688(
                103,
                _t(2, 33, 30),
                PROCDUMP,
                r"C:\root\procdump64.exe",
                r"C:\root\procdump64.exe -accepteula -ma lsass.exe C:\windows\temp\lsass.dmp",
            )
        )
    events.append(Event(4624, *SECURITY, time_created=_t(4, 0), record_id=104, data={"TargetUserName": "SYSTEM"}))
    return make_evtx(events)


PROC_COLS = [
    Column(n, k)
    for n, k in (
        ("PID", "int"),
        ("PPID", "int"),
        ("ImageFileName", "str"),
        ("Offset(V)", "hex"),
        ("CreateTime", "datetime"),
        ("ExitTime", "datetime"),
    )
]


def _proc(pid: int, ppid: int, name: str, created: datetime) -> dict[str, Any]:
    return {"PID": pid, "PPID": ppid, "ImageFileName": name, "Offset(V)": 0xFFFF_A000_0000 + pid, "CreateTime": created}


def memory_tables(*, consistent: bool) -> dict[str, tuple[list[Column], list[dict[str, Any]]]]:
    """The tables a Volatility run over the host's memory gives (the columns the plugins declare)."""
    pslist = [
        _proc(4, 0, "System", _t(0, 5)),
        _proc(W3WP, 612, "w3wp.exe", _t(2, 0)),
        _proc(CMD, W3WP, "cmd.exe", _t(2, 20)),
    ]
    psscan = [*pslist, _proc(HIDDEN, W3WP, "powershell.exe", _t(5, 0))]  # after the log's last record: not covered
    files = [SHELL_ON_DISK, APP_WEB, r"\Program Files\Microsoft\Exchange Server\V15\Bin\ExSetup.exe"]
    if not consistent:
        files.append(GONE)
    shell_code = 'eval(Request.Item["qx7Hz"],"unsafe")' if not consistent else 'eval(Request["triage_demo"],"unsafe")'
    vad = [
        {
            "Offset": 0x1F0_0000 + i,
            "PID": W3WP,
            "ImageFileName": "w3wp.exe",
            "Rule": "webshell_code.TRIAGE_MEM_WebShell_Chopper_Eval",
            "Component": "$eval_unsafe",
            "Value": shell_code.encode("utf-16-le"),
        }
        for i in range(2)
    ]
    remote = EVIL_IP if not consistent else "8.8.8.8"
    net = [
        {
            "Offset": 1,
            "Proto": "TCPv4",
            "LocalAddr": "10.0.0.5",
            "LocalPort": 443,
            "ForeignAddr": remote,
            "ForeignPort": 51234,
            "State": "ESTABLISHED",
            "PID": W3WP,
            "Owner": "w3wp.exe",
            "Created": _t(2, 13),
        },
        {
            "Offset": 2,
            "Proto": "TCPv4",
            "LocalAddr": "10.0.0.5",
            "LocalPort": 443,
            "ForeignAddr": "10.0.0.20",
            "ForeignPort": 50000,
            "State": "ESTABLISHED",
            "PID": W3WP,
            "Owner": "w3wp.exe",
            "Created": _t(1, 0),
        },
    ]
    return {
        "pslist": (PROC_COLS, pslist),
        "psscan": (PROC_COLS, psscan),
        "cmdline": (
            [Column("PID", "int"), Column("Process", "str"), Column("Args", "str")],
            [{"PID": CMD, "Process": "cmd.exe", "Args": "cmd.exe /c whoami"}],
        ),
        "filescan": (
            [Column("Offset", "hex"), Column("Name", "str")],
            [{"Offset": 0x8000 + i, "Name": f} for i, f in enumerate(files)],
        ),
        "vadyarascan": (
            [
                Column(n, k)
                for n, k in (
                    ("Offset", "hex"),
                    ("PID", "int"),
                    ("ImageFileName", "str"),
                    ("Rule", "str"),
                    ("Component", "str"),
                    ("Value", "bytes"),
                )
            ],
            vad,
        ),
        "netscan": (
            [
                Column(n, k)
                for n, k in (
                    ("Offset", "hex"),
                    ("Proto", "str"),
                    ("LocalAddr", "str"),
                    ("LocalPort", "int"),
                    ("ForeignAddr", "str"),
                    ("ForeignPort", "int"),
                    ("State", "str"),
                    ("PID", "int"),
                    ("Owner", "str"),
                    ("Created", "datetime"),
                )
            ],
            net,
        ),
    }


def write_memory_tables(case: Case, evidence_id: str, tables: dict[str, tuple[list[Column], list[dict]]]) -> Path:
    """Tables and index as the memory analyzer leaves them under results/memory/<evidence_id>/."""
    folder = case.path / "results" / "memory" / evidence_id
    entries = {}
    for name, (cols, rows) in tables.items():
        digest = write_table(folder / f"{name}.parquet", cols, rows, {"plugin": name})
        entries[name] = {"status": "ok", "rows": len(rows), "file": f"{name}.parquet", "sha256": digest}
    (folder / "index.json").write_text(json.dumps({"tables": entries}))
    return folder


def _collect(case: Case, path: Path, as_type: str = "auto", *, volume: bool = False) -> None:
    """Collect ``path`` for HOST (a volume, or loose files/a memory image)."""
    src = open_source_path(str(path), as_type)
    try:
        (collect_volume if volume else collect_files)(case, src, host=HOST)
    finally:
        src.close()


def build_host(
    tmp_path: Path, *, consistent: bool, logs: bool = True, tables: bool = True, auditing_off: datetime | None = None
) -> Case:
    """A collected volume of EXCH01 (compromised unless consistent), its Security log and a memory image."""
    extra = {}
    if logs:
        extra["Windows/System32/winevt/Logs/Security.evtx"] = security_log(
            cmd_event=consistent, dump_event=not consistent, auditing_off=auditing_off
        )
    temp = "Windows/Microsoft.NET/Framework64/v4.0.30319/Temporary ASP.NET Files/owa"
    if consistent:  # memory and disk agree: the page w3wp ran is the one on disk, the assembly too
        extra["inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx"] = OAB_SHELL.encode()
        extra[f"{temp}/1a2b/3c4d/App_Web_k3lmn0pq.dll"] = b"MZ assembly"
    else:  # another compilation's assembly survives; the one memory names is gone with its folder
        extra[f"{temp}/9f9f/8e8e/App_Web_aaaaaaaa.dll"] = b"MZ assembly"
    vol = build_volume(tmp_path / "vol", VolumeSpec(compromised=not consistent, extra_files=extra))
    case = Case.create_or_open(tmp_path / "case", examiner="tester", case_id="CASE-JOIN")
    _collect(case, vol, volume=True)
    image = tmp_path / "exch01.mem"
    image.write_bytes(b"\x00" * 8192)
    _collect(case, image, "memory")
    (mem,) = case.evidence(kinds={"memory_image"})
    if tables:
        write_memory_tables(case, mem.artifact_id, memory_tables(consistent=consistent))
    return case


def join_findings(case: Case) -> pd.DataFrame:
    summary = analyze_case(case, only=("memory_joins",))
    assert summary.statuses.get("error", 0) == 0, summary.errors
    frames = [pd.read_parquet(p) for p in (case.path / "results" / "memory_joins").glob("*.parquet")]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["rule_id"])


def _attrs(row: pd.Series) -> dict[str, Any]:
    return json.loads(row["attributes"]) if isinstance(row["attributes"], str) else dict(row["attributes"])


@pytest.fixture(scope="module")
def inconsistent(tmp_path_factory: pytest.TempPathFactory) -> tuple[Case, pd.DataFrame]:
    case = build_host(tmp_path_factory.mktemp("bad"), consistent=False)
    return case, join_findings(case)


def test_each_inconsistency_is_a_finding_with_both_pieces_of_evidence(inconsistent):
    case, df = inconsistent
    by_rule = {r: df[df.rule_id == r] for r in df.rule_id.unique()}
    assert set(by_rule) == {
        "MEM-JOIN-WEB-NOT-ON-DISK",
        "MEM-JOIN-WEB-CODE-NOT-ON-DISK",
        "MEM-JOIN-PROC-NO-EVENT",
        "MEM-JOIN-NET-WEBLOG",
        "MEM-JOIN-DUMP-LOG",
        "MEM-JOIN-COVERAGE",
    }
    (mem,) = case.evidence(kinds={"memory_image"})
    rows = {r.relpath: r for r in case.evidence()}

    # a. the page the kernel had open is gone from its collected folder (the shell beside it is on disk: counted)
    gone, dll = sorted(by_rule["MEM-JOIN-WEB-NOT-ON-DISK"].itertuples(), key=lambda r: r.location)
    assert dll.location == "file:" + APP_WEB.lower() and json.loads(dll.attributes)["memory_offset"] == 0x8001
    a = json.loads(gone.attributes)
    assert gone.location == "file:" + GONE.lower()
    assert gone.evidence_id == mem.artifact_id and gone.evidence_sha256 == mem.sha256
    assert a["memory_path"] == GONE and a["memory_offset"] == 0x8003
    assert a["disk_files_in_folder"] == ["C:/inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx"]
    # web shell code in w3wp that no collected file holds; the shell page on disk is named with its hash
    (code,) = by_rule["MEM-JOIN-WEB-CODE-NOT-ON-DISK"].itertuples()
    c = json.loads(code.attributes)
    assert (c["pid"], c["process"], c["offsets"]) == (W3WP, "w3wp.exe", ["0x1f00000", "0x1f00001"])
    shell = next(r for r in rows.values() if r.relpath.endswith("Dk2jQ8ab.aspx"))
    assert {"path": SHELL_ON_DISK, "on_disk": True, "sha256": shell.sha256} in c["memory_pages"]
    assert {"path": GONE, "on_disk": False, "sha256": None} in c["memory_pages"]

    # b. cmd.exe started at 02:20 while the Security log (01:00-04:00, 4688s present) ran, with no 4688 for it
    (proc,) = by_rule["MEM-JOIN-PROC-NO-EVENT"].itertuples()
    p = json.loads(proc.attributes)
    assert (proc.location, p["pid"], p["ppid"], p["process"], p["cmdline"]) == (
        f"pid:{CMD}",
        CMD,
        W3WP,
        "cmd.exe",
        "cmd.exe /c whoami",
    )
    assert pd.Timestamp(proc.ts) == pd.Timestamp(_t(2, 20))
    (span,) = p["logs"]
    assert span["channel"] == "Security" and span["creation_events"] == 2
    assert (span["first"], span["last"]) == (_t(1, 0).isoformat(), _t(4, 0).isoformat())
    assert span["log"] == "C:/Windows/System32/winevt/Logs/Security.evtx"

    # c. the HAFNIUM address w3wp holds a connection with is the client of the logged ProxyLogon request
    (net,) = by_rule["MEM-JOIN-NET-WEBLOG"].itertuples()
    n = json.loads(net.attributes)
    assert (n["remote_address"], n["pid"], n["process"], n["requests"]) == (EVIL_IP, W3WP, "w3wp.exe", 1)
    (req,) = n["first_requests"]
    assert req["uri"] == "/ecp/y.js" and req["method"] == "POST" and req["log"].endswith("HttpProxy_2021030302-1.LOG")
    assert (
        isinstance(req["line"], int)
        and req["sha256"] == rows[next(k for k in rows if k.endswith("HttpProxy_2021030302-1.LOG"))].sha256
    )

    # the lsass dump on disk and the 4688 of procdump that wrote it
    (dump,) = by_rule["MEM-JOIN-DUMP-LOG"].itertuples()
    d = json.loads(dump.attributes)
    lsass = next(r for r in rows.values() if r.relpath.endswith("Temp/lsass.dmp"))
    assert (dump.evidence_id, dump.evidence_sha256, d["sha256"]) == (lsass.artifact_id, lsass.sha256, lsass.sha256)
    assert (d["process"], d["process_id"], d["tool"], d["holds_lsa_secrets"]) == ("lsass.exe", 644, "procdump", False)
    (record,) = d["records"]
    assert (record["record_id"], record["event_id"], record["pid"]) == (103, 4688, PROCDUMP)
    assert dump.severity == "critical"


def test_coverage_counts_matches_and_says_what_was_not_covered(inconsistent):
    _case, df = inconsistent
    (cov,) = df[df.rule_id == "MEM-JOIN-COVERAGE"].itertuples()
    joins = json.loads(cov.attributes)["joins"]
    assert joins["web_files"] | {"why": ""} == {
        "status": "ran",
        "matched": 1,
        "in_memory_not_on_disk": 2,
        "not_covered": 0,
        "why": "",
    }
    # w3wp has its 4688; the hidden powershell started at 05:00, after the last record: not covered, not reported
    assert (joins["processes"]["matched"], joins["processes"]["no_event"], joins["processes"]["not_covered"]) == (
        1,
        1,
        1,
    )
    assert "not covered" in joins["processes"]["why"]
    assert joins["network"]["status"] == joins["minidumps"]["status"] == "ran"


def test_consistent_host_gives_no_join_finding(tmp_path):
    case = build_host(tmp_path, consistent=True)
    df = join_findings(case)
    assert list(df.rule_id) == ["MEM-JOIN-COVERAGE"]
    joins = json.loads(df.iloc[0].attributes)["joins"]
    assert joins["web_files"]["matched"] == 2 and joins["web_files"]["in_memory_not_on_disk"] == 0
    assert joins["web_code"]["matched"] == 2  # the shell code in memory is the page's on disk (OAB_SHELL)
    assert 'eval(Request["triage_demo"],"unsafe")' in OAB_SHELL
    assert (joins["processes"]["matched"], joins["processes"]["no_event"]) == (2, 0)
    assert joins["minidumps"] == {"status": "not run", "why": "no minidump on disk"}


def test_missing_tables_and_logs_give_a_coverage_note_and_no_clean_claim(tmp_path):
    case = build_host(tmp_path, consistent=False, logs=False, tables=False)
    df = join_findings(case)
    assert list(df.rule_id) == ["MEM-JOIN-COVERAGE"]
    joins = json.loads(df.iloc[0].attributes)["joins"]
    assert joins["tables"]["status"] == "missing"
    for name in ("web_files", "web_code", "processes", "network"):
        assert joins[name]["status"] == "not run", name
    assert joins["processes"]["why"] == "no pslist or psscan table of a memory image"
    assert joins["minidumps"] == {"status": "not run", "why": "no event log of this host"}
    (rec,) = [r for _p, r in unit_records(case.path, ["memory_joins"])]
    assert any("no readable index of memory tables" in w for w in rec.get("warnings", []))


def test_tables_without_process_logs_are_not_covered(tmp_path):
    case = build_host(tmp_path, consistent=False, logs=False)
    df = join_findings(case)
    assert "MEM-JOIN-PROC-NO-EVENT" not in set(df.rule_id)
    (cov,) = df[df.rule_id == "MEM-JOIN-COVERAGE"].itertuples()
    assert json.loads(cov.attributes)["joins"]["processes"]["status"] == "not covered"


def test_a_table_changed_after_the_memory_run_is_left_out(tmp_path):
    case = build_host(tmp_path, consistent=False)
    (mem,) = case.evidence(kinds={"memory_image"})
    folder = case.path / "results" / "memory" / mem.artifact_id
    cols, rows = memory_tables(consistent=True)["pslist"]
    write_table(folder / "pslist.parquet", cols, rows)  # not the bytes index.json vouches for
    (folder / "psscan.parquet").unlink()
    df = join_findings(case)
    assert "MEM-JOIN-PROC-NO-EVENT" not in set(df.rule_id)
    (rec,) = [r for _p, r in unit_records(case.path, ["memory_joins"])]
    assert any("pslist.parquet differs from the hash its index records" in w for w in rec.get("warnings", []))


def test_host_without_memory_or_dump_is_skipped_with_a_reason(tmp_path):
    vol = build_volume(tmp_path / "vol", VolumeSpec(compromised=False))
    case = Case.create_or_open(tmp_path / "case", examiner="tester", case_id="CASE-JOIN")
    _collect(case, vol, volume=True)
    summary = analyze_case(case, only=("memory_joins",))
    assert summary.statuses == {"skipped": 1}
    (rec,) = [r for _p, r in unit_records(case.path, ["memory_joins"])]
    assert "no memory image or minidump" in rec["message"]


def test_rerun_after_new_memory_tables_redoes_the_join(tmp_path):
    case = build_host(tmp_path, consistent=False)
    first = analyze_case(case, only=("memory_joins",))
    again = analyze_case(case, only=("memory_joins",))
    assert (first.reused, again.reused) == (0, 1)
    # the memory analyzer runs (raw scan only: Volatility cannot read this image): new tables, a new join
    mem_run = analyze_case(case, only=("memory",), options={"memory": {"volatility": False}})
    assert mem_run.errors == [] and mem_run.statuses["success"] == 2  # the image and the lsass dump
    third = analyze_case(case, only=("memory_joins",))
    assert third.reused == 0 and third.statuses["success"] == 1


def test_process_started_while_auditing_was_off_is_not_covered(tmp_path):
    """A 4719 removing success auditing of Process Creation at 02:10: cmd.exe at 02:20 has no event to miss."""
    case = build_host(tmp_path, consistent=False, auditing_off=_t(2, 10))
    df = join_findings(case)
    assert "MEM-JOIN-PROC-NO-EVENT" not in set(df.rule_id)
    (cov,) = df[df.rule_id == "MEM-JOIN-COVERAGE"].itertuples()
    attrs = json.loads(cov.attributes)
    (log,) = attrs["logs"]
    assert log["auditing_off"] == [[_t(2, 10).isoformat(), None]]
    procs = attrs["joins"]["processes"]
    assert (procs["matched"], procs["no_event"], procs["not_covered"]) == (1, 0, 2)  # cmd.exe and the 05:00 one


def test_damaged_tables_cost_only_themselves(tmp_path):
    """A table whose times are text (the writer's fallback) and one that is not parquet at all, both with the
    hashes the index records: the join warns, reads the rest and does not fail."""
    case = build_host(tmp_path, consistent=False)
    (mem,) = case.evidence(kinds={"memory_image"})
    tables = memory_tables(consistent=False)
    cols, rows = tables["pslist"]
    tables["pslist"] = ([Column(c.name, "str") for c in cols], [{k: str(v) for k, v in r.items()} for r in rows])
    tables["psscan"] = tables["pslist"]
    folder = write_memory_tables(case, mem.artifact_id, tables)
    (folder / "netscan.parquet").write_bytes(b"PAR1 not really")
    index = json.loads((folder / "index.json").read_text())
    index["tables"]["netscan"]["sha256"] = hashlib.sha256(b"PAR1 not really").hexdigest()
    (folder / "index.json").write_text(json.dumps(index))
    df = join_findings(case)
    assert "MEM-JOIN-PROC-NO-EVENT" not in set(df.rule_id) and "MEM-JOIN-WEB-NOT-ON-DISK" in set(df.rule_id)
    joins = json.loads(df[df.rule_id == "MEM-JOIN-COVERAGE"].iloc[0].attributes)["joins"]
    assert joins["processes"]["kernel_or_untimed"] == 3 and joins["processes"]["no_event"] == 0
    assert joins["network"] == {"status": "not run", "why": "no netscan table of a memory image"}
    (rec,) = [r for _p, r in unit_records(case.path, ["memory_joins"])]
    assert rec["status"] == "success" and any("netscan.parquet" in w for w in rec["warnings"])


SYSMON = ("Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon/Operational")


def _sysmon(event_id: int, rid: int, when: datetime, data: dict[str, Any]) -> Event:
    return Event(event_id, *SYSMON, time_created=when, record_id=rid, data=data, version=5, user_sid="S-1-5-18")


def test_sysmon_alone_vouches_and_ties_a_dump_by_process_access(tmp_path):
    """No Security log: Sysmon 1 events match the memory processes; a Sysmon 10 of procdump opening lsass seconds
    before the dump was written ties the dump on disk to its making."""
    case = build_host(tmp_path, consistent=False, logs=False)
    events = [
        _sysmon(
            1,
            500,
            _t(2, 0),
            {
                "ProcessId": W3WP,
                "Image": r"C:\Windows\System32\inetsrv\w3wp.exe",
                "CommandLine": "w3wp.exe -ap MSExchangeOWAAppPool",
                "ParentProcessId": 612,
            },
        ),
        _sysmon(
            1,
            501,
            _t(2, 20),
            {
                "ProcessId": CMD,
                "Image": r"C:\Windows\System32\cmd.exe",
                "CommandLine": "cmd.exe /c whoami",
                "ParentProcessId": W3WP,
            },
        ),
        _sysmon(
            10,
            502,
            _t(2, 33, 40),
            {
                "SourceProcessId": PROCDUMP,
                "SourceImage": r"C:\root\procdump64.exe",
                "TargetProcessId": 644,
                "TargetImage": r"C:\Windows\system32\lsass.exe",
                "GrantedAccess": "0x1fffff",
            },
        ),
        _sysmon(
            1,
            503,
            _t(4, 0),
            {
                "ProcessId": 7000,
                "Image": r"C:\Windows\System32\conhost.exe",
                "CommandLine": "conhost.exe",
                "ParentProcessId": CMD,
            },
        ),
    ]
    path = tmp_path / "Microsoft-Windows-Sysmon%4Operational.evtx"
    path.write_bytes(make_evtx(events))
    _collect(case, path)
    df = join_findings(case)
    assert "MEM-JOIN-PROC-NO-EVENT" not in set(df.rule_id)
    joins = json.loads(df[df.rule_id == "MEM-JOIN-COVERAGE"].iloc[0].attributes)["joins"]
    assert (joins["processes"]["matched"], joins["processes"]["not_covered"]) == (2, 1)
    (dump,) = df[df.rule_id == "MEM-JOIN-DUMP-LOG"].itertuples()
    (record,) = json.loads(dump.attributes)["records"]
    assert (record["record_id"], record["event_id"], record["channel"]) == (502, 10, SYSMON[1])
    assert json.loads(dump.attributes)["tool"] == "procdump"


@pytest.mark.parametrize("system_time", [True, False])
def test_boot_processes_before_the_first_recorded_creation_are_not_covered(tmp_path, system_time):
    """A reboot inside the log's span: smss and lsass start before the event log service records anything, so no
    log ever holds their creation; only processes after the first creation recorded since the boot count. Without
    the System process's time the earliest process (smss) stands for the boot."""
    case = build_host(tmp_path, consistent=True, tables=False)
    tables = memory_tables(consistent=True)
    boot = [
        _proc(4, 0, "System", _t(1, 30)) | ({} if system_time else {"CreateTime": None}),
        _proc(356, 4, "smss.exe", _t(1, 30, 5)),
        _proc(652, 356, "lsass.exe", _t(1, 30, 20)),
    ]
    for name in ("pslist", "psscan"):
        cols, rows = tables[name]
        tables[name] = (cols, boot + [r for r in rows if r["PID"] != 4])
    (mem,) = case.evidence(kinds={"memory_image"})
    write_memory_tables(case, mem.artifact_id, tables)
    df = join_findings(case)
    assert "MEM-JOIN-PROC-NO-EVENT" not in set(df.rule_id)  # the first 4688 after the 01:30 boot is at 02:00
    joins = json.loads(df[df.rule_id == "MEM-JOIN-COVERAGE"].iloc[0].attributes)["joins"]
    assert (joins["processes"]["matched"], joins["processes"]["no_event"]) == (2, 0)
    assert joins["processes"]["not_covered"] >= 2  # smss and lsass (and the late powershell)
