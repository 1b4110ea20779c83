"""The super-timeline of a built case: its events, times and descriptions, Timesketch fields, window, tags, custody."""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.app.progress import NullProgress
from triage.app.timeline import TimelineRequest, timeline
from triage.case import Case, ManifestRow
from triage.cli import main
from triage.errors import ExitCode
from triage.finding import Finding, findings_frame
from triage.testing.eventjson import export_bytes, records
from triage.testing.evtx import Event, evtx_bytes
from triage.testing.volume import T0, VolumeSpec, build_volume, httpproxy_log
from triage.timeline import TimelineOptions, build_timeline
from triage.timeline.events import SourceStats, file_time_rows, memory_events
from triage.verify import verify_case

CHANNEL = "Microsoft-Windows-Sysmon/Operational"
TL_LOG = "Windows/System32/winevt/Logs/Timeline-Test.evtx"
PROXY_LOG = "Program Files/Microsoft/Exchange Server/V15/Logging/HttpProxy/Autodiscover/HttpProxy_2021030304-1.LOG"
EVTX_TIMES = [datetime(2021, 3, 3, 2, 10, s, 250_000, tzinfo=UTC) for s in (1, 2, 3)]
SSRF_TIME = "2021-03-03T04:05:06.789Z"


def _proxy_rows() -> list[dict[str, str]]:
    base = {"ClientIpAddress": "10.0.0.9", "UrlHost": "mail.corp.example", "Method": "GET", "HttpStatus": "200"}
    return [
        base | {"DateTime": "2021-03-03T04:00:00.000Z", "UrlStem": "/autodiscover/autodiscover.xml"},
        base | {"DateTime": SSRF_TIME, "UrlStem": "/ecp/x.js", "Method": "POST", "HttpStatus": "241"},
        base | {"DateTime": "not a time", "UrlStem": "/autodiscover/late.xml"},  # time unreadable: counted
    ]


def _spec() -> VolumeSpec:
    events = [
        Event(1, "Microsoft-Windows-Sysmon", CHANNEL, time_created=t, record_id=i + 1, data={"Image": f"C:\\p{i}.exe"})
        for i, t in enumerate(EVTX_TIMES)
    ]
    return VolumeSpec(
        all_hives=True,
        extra_files={TL_LOG: evtx_bytes(events), PROXY_LOG: httpproxy_log(_proxy_rows())},
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collected compromised volume (hives, logs, web files, one EVTX with known records); never modified."""
    root = tmp_path_factory.mktemp("tl")
    vol = build_volume(root / "vol", _spec())
    case = Case.create_or_open(root / "case", examiner="tester", case_id="CASE-TL")
    collect_volume(case, open_source_path(str(vol)), host=None)
    case.close()
    return root / "case"


@pytest.fixture
def case_dir(built: Path, tmp_path: Path) -> Path:
    """A private copy of the built case (tests write timeline/ and results/ into it)."""
    return Path(shutil.copytree(built, tmp_path / "case", symlinks=True))


def _build(case_dir: Path, **kw: Any):
    case = Case.open(case_dir)
    with case.writer():
        res = build_timeline(case, TimelineOptions(**kw))
    case.close()
    return res


def _is_our_record(e: dict[str, Any]) -> bool:
    return e["data_type"] == "windows:evtx:record" and e["filename"].endswith("Timeline-Test.evtx")


def _jsonl(case_dir: Path) -> list[dict[str, Any]]:
    text = (case_dir / "timeline" / "timeline.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def timesketch_problems(line: str) -> list[str]:
    """Timesketch's JSONL import requirements, checked on one line: a JSON object with a non-empty ``message``,
    ``datetime`` in ISO 8601 with a time zone, a non-empty ``timestamp_desc``; ``timestamp`` (if given) the same
    instant in microseconds; ``tag`` (if given) a list of strings; no nested objects (fields are flat)."""
    out: list[str] = []
    try:
        ev = json.loads(line)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    if not isinstance(ev, dict):
        return ["not a JSON object"]
    for name in ("message", "datetime", "timestamp_desc"):
        if not isinstance(ev.get(name), str) or not ev[name].strip():
            out.append(f"{name} missing or empty")
    try:
        when = datetime.fromisoformat(ev.get("datetime", ""))
        if when.tzinfo is None:
            out.append("datetime without a time zone")
        elif "timestamp" in ev:
            micros = round(when.timestamp() * 1_000_000)
            if not isinstance(ev["timestamp"], int) or ev["timestamp"] != micros:
                out.append(f"timestamp {ev['timestamp']} is not datetime in microseconds ({micros})")
    except (TypeError, ValueError):
        out.append(f"datetime {ev.get('datetime')!r} is not ISO 8601")
    if "tag" in ev and not (isinstance(ev["tag"], list) and all(isinstance(t, str) for t in ev["tag"])):
        out.append("tag is not a list of strings")
    out += [f"{k} is nested" for k, v in ev.items() if isinstance(v, dict)]
    return out


def test_validator_rejects_what_timesketch_rejects() -> None:
    good = {"message": "m", "datetime": "2021-03-03T02:10:01+00:00", "timestamp": 1614737401000000}
    good |= {"timestamp_desc": "Event Recorded", "tag": ["triage"]}
    assert timesketch_problems(json.dumps(good)) == []
    naive = good | {"datetime": "2021-03-03T02:10:01"}
    assert timesketch_problems(json.dumps(naive)) == ["datetime without a time zone"]
    assert timesketch_problems(json.dumps(good | {"tag": "triage,high"})) == ["tag is not a list of strings"]
    assert timesketch_problems(json.dumps({k: v for k, v in good.items() if k != "timestamp_desc"})) == [
        "timestamp_desc missing or empty"
    ]
    assert timesketch_problems(json.dumps(good | {"timestamp": 1})) != []


def test_timeline_holds_every_source_with_its_times(case_dir: Path) -> None:
    res = _build(case_dir)
    events = _jsonl(case_dir)
    assert len(events) == res.events == res.read - res.no_time
    # EVTX: the three records of the built log, at their exact times, with record numbers
    ours = [e for e in events if _is_our_record(e)]
    assert [e["record_number"] for e in ours] == [1, 2, 3]
    assert [e["datetime"] for e in ours] == [t.isoformat() for t in EVTX_TIMES]
    assert {e["timestamp_desc"] for e in ours} == {"Event Recorded"}
    assert ours[0]["data_type"] == "windows:evtx:record" and ours[0]["event_id"] == 1
    assert "Image=C:\\p0.exe" in ours[0]["message"] and ours[0]["channel"] == CHANNEL
    # web log rows: the SSRF request at its logged time; the row without a readable time is counted, not written
    proxy = [e for e in events if e["data_type"].endswith(":line") and e["filename"].endswith("0304-1.LOG")]
    assert [e["line"] for e in proxy] == [6, 7]
    ssrf = proxy[1]
    assert ssrf["datetime"] == "2021-03-03T04:05:06.789000+00:00" and ssrf["timestamp_desc"] == "Request Logged"
    assert ssrf["uri"] == "/ecp/x.js" and ssrf["status"] == "241" and ssrf["data_type"] == "exchange:httpproxy:line"
    assert res.sources["weblog"]["no_time"] == 1 == res.no_time
    # registry keys: last-write times of the built hives (the SOFTWARE hive's setup key)
    reg = [e for e in events if e["data_type"] == "windows:registry:key"]
    keys = {(e["hive"], e["registry_key"]): e for e in reg}
    assert len(keys) == len(reg)  # each key once
    setup = keys["SOFTWARE", "Microsoft\\ExchangeServer\\v15\\Setup"]
    assert setup["timestamp_desc"] == "Key Last Written" and setup["hive"] == "SOFTWARE"
    assert pd.Timestamp(setup["datetime"]) == pd.Timestamp(T0)
    # file times from the manifest: the web shell's source modification time
    shell = [e for e in events if e["data_type"] == "fs:stat" and e["filename"].endswith("Dk2jQ8ab.aspx")]
    assert {e["timestamp_desc"] for e in shell} >= {"Content Modification Time"}
    assert all(pd.Timestamp(e["datetime"]) == pd.Timestamp(T0) for e in shell)
    assert res.sources["evtx"]["items"] == 1 and res.sources["registry"]["events"] == len(reg)
    # one time-ordered stream
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)


def test_every_line_passes_timesketch_requirements_and_csv_matches(case_dir: Path) -> None:
    res = _build(case_dir)
    lines = (case_dir / "timeline" / "timeline.jsonl").read_text(encoding="utf-8").splitlines()
    problems = {i: p for i, line in enumerate(lines) if (p := timesketch_problems(line))}
    assert not problems, list(problems.items())[:5]
    with open(case_dir / "timeline" / "timeline.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:8] == [
        "datetime", "timestamp_desc", "source", "source_long", "message", "parser", "display_name", "tag",
    ]  # fmt: skip
    assert len(rows) == res.events
    events = _jsonl(case_dir)
    assert [r["datetime"] for r in rows] == [e["datetime"] for e in events]
    assert [r["message"].lstrip("'") for r in rows[:50]] == [e["message"] for e in events[:50]]


def test_window_keeps_only_events_inside_and_counts_the_rest(case_dir: Path) -> None:
    full = _build(case_dir)
    res = _build(case_dir, start=pd.Timestamp("2021-03-03T02:10:02Z"), end=pd.Timestamp("2021-03-03T04:05:06.789Z"))
    events = _jsonl(case_dir)
    assert events, "the window holds events"
    lo, hi = pd.Timestamp("2021-03-03T02:10:02Z"), pd.Timestamp("2021-03-03T04:05:06.789Z")
    assert all(lo <= pd.Timestamp(e["datetime"]) <= hi for e in events)
    assert res.events + res.outside_window == full.events
    ours = [e["record_number"] for e in events if _is_our_record(e)]
    assert ours == [2, 3]  # record 1 is a second before the window; the SSRF row is exactly at its end
    assert any(e.get("uri") == "/ecp/x.js" for e in events)


def _finding(row: ManifestRow, **kw: Any) -> Finding:
    base = dict(analyzer="tltest", analyzer_version="1", rule_id="R", rule_title="t", severity="high", title="t")
    base |= dict(message="m", evidence_id=row.artifact_id, evidence_path=row.relpath or "", host="EXCH01")
    base |= dict(evidence_sha256=row.sha256 or "", case_id="CASE-TL")
    return Finding(**(base | kw))  # type: ignore[arg-type]


def test_findings_tag_the_events_they_rest_on(case_dir: Path) -> None:
    case = Case.open(case_dir)
    rows = {r.source_path.replace("\\", "/").split("/vol/", 1)[-1]: r for r in case.evidence()}
    case.close()
    evtx, proxy, shell = rows[TL_LOG], rows[PROXY_LOG], rows["inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx"]
    logical_proxy = "C:/" + PROXY_LOG
    findings = [
        _finding(evtx, rule_id="SIGMA-1", severity="high", location=f"{CHANNEL}#2", ts=EVTX_TIMES[1]),
        _finding(evtx, rule_id="SIGMA-2", severity="low", location=f"{CHANNEL}#2", ts=EVTX_TIMES[1]),
        # a host-scope finding naming the log by path and line, not by its artifact
        _finding(evtx, rule_id="EXW-1", severity="critical", location=f"{logical_proxy}:7", ts=None),
        _finding(shell, rule_id="WEB-1", severity="medium", location="C:/inetpub/x.aspx", ts=T0),
        _finding(evtx, rule_id="LONE", severity="info", location="summary", ts=datetime(2021, 3, 3, 9, tzinfo=UTC)),
        _finding(evtx, rule_id="UNDATED", severity="info", location="coverage", ts=None),
    ]
    out = case_dir / "results" / "tltest"
    out.mkdir()
    findings_frame(findings).to_parquet(out / "x.parquet", index=False)

    res = _build(case_dir)
    events = _jsonl(case_dir)
    by_rec = {e["record_number"]: e for e in events if _is_our_record(e)}
    assert by_rec[2]["tag"] == ["triage", "SIGMA-1", "high", "SIGMA-2", "low"]
    assert by_rec[1]["tag"] == [] and by_rec[3]["tag"] == []
    ssrf = next(e for e in events if e.get("line") == 7 and e["evidence_id"] == proxy.artifact_id)
    assert ssrf["tag"] == ["triage", "EXW-1", "critical"]
    shell_events = [e for e in events if e["evidence_id"] == shell.artifact_id]
    assert shell_events and all(e["tag"] == ["triage", "WEB-1", "medium"] for e in shell_events)
    lone = [e for e in events if e["data_type"] == "triage:finding"]
    assert [(e["rule_id"], e["tag"], e["datetime"]) for e in lone] == [
        ("LONE", ["triage", "LONE", "info"], "2021-03-03T09:00:00.000000+00:00")
    ]
    assert res.findings == 6 and res.findings_tagging == 4 and res.findings_as_events == 1
    assert res.findings_undated == 1  # neither on an event nor with a time of its own: counted
    assert res.tagged_events == 2 + len(shell_events)


def test_recorded_in_custody_and_verified(case_dir: Path) -> None:
    res = _build(case_dir)
    case = Case.open(case_dir)
    last = list(case.custody.events())[-1]
    assert last["action"] == "timeline"
    assert last["details"]["outputs"] == {f"timeline/{k}": v for k, v in res.hashes.items()}
    assert verify_case(case, record=False).ok
    path = case_dir / "timeline" / "timeline.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"tag":[]', b'"tag":["x"]', 1))
    rep = verify_case(case, record=False)
    case.close()
    assert rep.exit_code == ExitCode.INTEGRITY
    where = "timeline/timeline.jsonl"
    assert any(p["where"] == where and "timeline file changed" in p["problem"] for p in rep.problems)


def test_cli_timesketch_only_json_summary(case_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["timeline", str(case_dir), "--format", "timesketch", "--from", "2021-03-03", "--json", "-q"])
    assert code == ExitCode.OK
    out = json.loads(capsys.readouterr().out)
    assert set(out["outputs"]) == {"timeline.jsonl"} and not (case_dir / "timeline" / "timeline.csv").exists()
    assert out["events"] == len(_jsonl(case_dir)) and out["no_time"] == 1
    assert main(["timeline", str(case_dir), "--from", "2021-03-04", "--to", "2021-03-03"]) == ExitCode.USAGE
    assert main(["timeline", str(case_dir), "--out", str(case_dir / "report")]) == ExitCode.USAGE
    assert main(["verify", str(case_dir), "-q"]) == ExitCode.OK


def test_unreadable_artifact_is_reported_with_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "SYSTEM_bad").write_bytes(b"regf" + bytes(range(256)) * 40)  # a hive by its magic, then garbage
    (loose / "Security.evtx").write_bytes(evtx_bytes([Event(4624, "x", "Security", time_created=EVTX_TIMES[0])]))
    (loose / "System.evtx").write_bytes(b"ElfFile\x00" + bytes(range(256)) * 64)  # an EVTX header, then garbage
    export = [Event(4688, "Microsoft-Windows-Security-Auditing", "Security", time_created=EVTX_TIMES[2])]
    (loose / "events.json").write_bytes(export_bytes(records(export, "winlogbeat")))  # a JSON event export
    case = tmp_path / "case"
    assert main(["collect", str(loose), "--case", str(case), "--host", "H", "-q"]) == ExitCode.OK
    capsys.readouterr()
    code = main(["timeline", str(case), "--json", "-q"])
    out = json.loads(capsys.readouterr().out)
    assert code == ExitCode.INSUFFICIENT
    assert out["unreadable"] == 2 and out["sources"]["registry"]["unreadable"] == 1
    assert out["sources"]["evtx"]["unreadable"] == 1 and out["sources"]["evtx"]["items"] == 3
    assert "could not be read" in out["exit_reason"]
    # the rest is still on the timeline: the EVTX record, the exported event, and the four files' source times
    assert out["sources"]["evtx"]["events"] == 2 and out["sources"]["file"]["events"] == 8 and out["events"] == 10
    lines = [json.loads(x) for x in (case / "timeline" / "timeline.jsonl").read_text(encoding="utf-8").splitlines()]
    exported = [e for e in lines if e["data_type"] == "windows:eventjson:record"]
    assert [(e["event_id"], e["datetime"]) for e in exported] == [(4688, EVTX_TIMES[2].isoformat())]


def test_ntfs_and_source_times_from_a_manifest_row() -> None:
    row = ManifestRow("A1", "web_file", "success", "H", "img#p2:/inetpub/x.aspx", "c", "1", "2021-03-04T00:00:00Z")
    row.source_mtime = "2021-03-03T02:00:00Z"
    row.extra = {
        "ntfs": {
            "si": {"created": "2019-01-01T00:00:00Z", "modified": "2021-03-03T02:00:00Z"},
            "fn": {"created": "2021-03-03T01:59:58.1234567Z", "accessed": "garbage"},
        }
    }
    got = list(file_time_rows(row))
    si = "$STANDARD_INFORMATION"
    assert (1546300800000000, f"Creation Time ({si})", "fs:ntfs:si", f"NTFS {si}") in got
    assert (1614736798123456, "Creation Time ($FILE_NAME)", "fs:ntfs:fn", "NTFS $FILE_NAME") in got
    assert (None, "Last Access Time ($FILE_NAME)", "fs:ntfs:fn", "NTFS $FILE_NAME") in got  # unreadable: counted
    assert (1614736800000000, "Content Modification Time", "fs:stat", "File stat (source, at collection)") in got
    assert len(got) == 5


def test_memory_process_start_times_from_side_tables(tmp_path: Path) -> None:
    case = Case.create_or_open(tmp_path / "case", examiner="t", case_id="M")
    folder = case.path / "results" / "memory" / "M1"
    folder.mkdir(parents=True)
    start = pd.Timestamp("2021-03-03T02:33:40Z")
    table = pa.table(
        {
            "PID": pa.array([4, 666], pa.int64()),
            "PPID": pa.array([0, 4], pa.int64()),
            "ImageFileName": ["System", "procdump64.exe"],
            "CreateTime": pa.array([start - pd.Timedelta(days=1), start], pa.timestamp("us", tz="UTC")),
            "ExitTime": pa.array([None, start + pd.Timedelta(seconds=5)], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, folder / "pslist.parquet")
    pq.write_table(table, folder / "psscan.parquet")  # the same processes again: not twice on the timeline
    (folder / "cmdline.parquet").write_bytes(b"not parquet")  # not a table the timeline reads
    stats = SourceStats()
    got = pa.concat_tables(list(memory_events(case, stats))).to_pylist()
    case.close()
    assert sorted((e["timestamp_desc"], e["pid"], e["image"]) for e in got) == [
        ("Process Exit Time", 666, "procdump64.exe"),
        ("Process Start Time", 4, "System"),
        ("Process Start Time", 666, "procdump64.exe"),
    ]
    dump = next(e for e in got if e["pid"] == 666 and e["timestamp_desc"] == "Process Start Time")
    assert pd.Timestamp(dump["ts"]) == start and dump["link_record"] == "M1#pid666"
    assert stats.items == 2 and not stats.failed


class _Recorder(NullProgress):
    def __init__(self) -> None:
        self.updates: list[tuple[int, int]] = []
        self.messages: list[str] = []

    @contextlib.contextmanager
    def units(self, description: str) -> Iterator[Callable[[int, int], None]]:
        yield lambda done, total: self.updates.append((done, total))

    def message(self, level: int, text: str, source: str = "triage") -> None:
        self.messages.append(text)


def test_app_layer_reports_artifact_progress_and_untimed_events(case_dir: Path) -> None:
    rec = _Recorder()
    s = timeline(TimelineRequest(case_dir, formats=("csv",)), rec)
    assert s.exit_code == ExitCode.OK and s.case_id == "CASE-TL"
    assert set(s.result.outputs) == {"timeline.csv"}
    done, total = rec.updates[-1]
    per_artifact = sum(s.result.sources[k]["items"] for k in ("evtx", "weblog", "registry"))
    assert done == total == per_artifact + 2 and s.result.sources["registry"]["items"] == 7  # + manifest, memory
    assert [d for d, _ in rec.updates] == sorted(d for d, _ in rec.updates)
    assert "1 events have no readable time: counted, not on the timeline" in rec.messages
