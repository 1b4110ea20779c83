"""JSON event exports: every flavour gives what the EVTX gives; bad records cost only themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from analyzers.eventlog.reader import iter_json_events
from triage.formats.evtx import ReadStats, iter_evtx
from triage.registry import signature_path
from triage.testing.eventjson import FLAVOURS, export_bytes, records
from triage.testing.eventlogs import attack_events
from triage.testing.evtx import evtx_bytes


@pytest.fixture(scope="module")
def ruleset():
    from triage.sigma import load_rules

    return load_rules([signature_path("sigma/ed2102")])


@pytest.fixture(scope="module")
def logs():
    return attack_events()


def _findings(frames: list[pd.DataFrame], ruleset) -> set[tuple[str, str, int | None, str]]:
    from triage.sigma.correlation import Correlator

    out = set()
    for df in frames:
        # what the analyzer reports: correlation building blocks (generate: false) stay silent
        for m in Correlator(ruleset).visible(ruleset.evaluate(df)).itertuples(index=False):
            ev = df.iloc[int(m.row)]
            rid = None if pd.isna(ev["EventRecordID"]) else int(ev["EventRecordID"])
            out.add((m.rule_id, str(ev["TimeCreated"]), rid, str(ev["Channel"])))
    return out


def _read_json(path: Path) -> tuple[list[pd.DataFrame], ReadStats]:
    stats = ReadStats()
    return list(iter_json_events(path, stats)), stats


# Splunk's classic (non-XML) events carry their fields under Splunk's own names: only the message and
# the system values are faithful, so field rules cannot match; that flavour is checked on the message.
EQUAL = [f for f in FLAVOURS if f != "splunk_classic"]
CONTAINERS = {
    "velociraptor": {"container": "lines"},
    "evtx_dump": {"container": "lines", "compress": "gz"},
    "winlogbeat": {"container": "lines", "compress": "xz"},
    "winlogbeat6": {"container": "lines", "compress": "gz"},
    "otrf": {"container": "lines", "compress": "xz"},
    "splunk": {"container": "lines"},
    # PowerShell 5: pretty-printed array, Out-File's default UTF-16 LE with a BOM
    "powershell": {"container": "array", "indent": 4, "encoding": "utf-16-le", "bom": True},
}


@pytest.mark.parametrize("flavour", EQUAL)
def test_every_flavour_gives_the_evtx_findings(tmp_path: Path, flavour: str, ruleset, logs) -> None:
    total = 0
    for name, events in logs.items():
        evtx = tmp_path / f"{name}.evtx"
        evtx.write_bytes(evtx_bytes(events))
        expected = _findings(list(iter_evtx(evtx, ReadStats())), ruleset)
        export = tmp_path / f"{name}.{flavour}.json"
        export.write_bytes(export_bytes(records(events, flavour), **CONTAINERS[flavour]))
        frames, stats = _read_json(export)
        assert stats.records == len(events) and stats.bad_records == 0 and not stats.warnings, stats.warnings
        assert _findings(frames, ruleset) == expected, name
        total += len(expected)
    assert total >= 12  # the attack story: OAB script URL, UM error, w3wp shell, lsass dump, service, ...


def test_oab_cmdlet_found_through_the_message_alone(tmp_path: Path, ruleset, logs) -> None:
    # OTRF/NXLog gives a classic MSExchange Management event only as its rendered message
    events = logs["MSExchange Management"]
    docs = records(events, "otrf")
    assert all("Data" not in d and "param1" not in d for d in docs)
    for flavour, container in (("otrf", "lines"), ("splunk_classic", "array")):
        path = tmp_path / f"mgmt.{flavour}.json"
        path.write_bytes(export_bytes(records(events, flavour), container=container))
        frames, _ = _read_json(path)
        got = _findings(frames, ruleset)
        assert ("16c640e4-f213-45b4-ac2a-26724f41d719", "2021-03-03 02:14:30+00:00", 1, "MSExchange Management") in got
        assert "Set-OabVirtualDirectory" in frames[0].loc[0, "Message"]


def test_classic_unnamed_data_is_newline_joined_as_on_evtx(tmp_path: Path, logs) -> None:
    events = logs["MSExchange Management"]
    evtx = tmp_path / "m.evtx"
    evtx.write_bytes(evtx_bytes(events))
    want = list(pd.concat(list(iter_evtx(evtx, ReadStats())))["Data"])
    for flavour in ("velociraptor", "evtx_dump", "winlogbeat", "splunk", "powershell"):
        path = tmp_path / f"m.{flavour}.json"
        path.write_bytes(export_bytes(records(events, flavour), container="array"))
        frames, _ = _read_json(path)
        assert list(pd.concat(frames)["Data"]) == want, flavour


def test_system_columns_agree_across_flavours(tmp_path: Path, logs) -> None:
    events = logs["Sysmon"]
    evtx = tmp_path / "s.evtx"
    evtx.write_bytes(evtx_bytes(events))
    cols = ["EventRecordID", "TimeCreated", "EventID", "Provider", "Channel", "Computer", "Image", "CommandLine"]
    want = pd.concat(list(iter_evtx(evtx, ReadStats())), ignore_index=True)[cols]
    for flavour in EQUAL:
        path = tmp_path / f"s.{flavour}.json"
        path.write_bytes(export_bytes(records(events, flavour)))
        frames, _ = _read_json(path)
        got = pd.concat(frames, ignore_index=True)
        pd.testing.assert_frame_equal(got[cols], want, check_dtype=False, obj=flavour)
        if flavour == "evtx_dump":  # the evtx tool does not render messages
            continue
        assert got["Message"].str.contains("\nImage: |\nTargetImage: |\nTargetFilename: ").all(), flavour


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [("utf-8", True), ("utf-16-le", True), ("utf-16-le", False), ("utf-16-be", True), ("utf-16-be", False)],
)
@pytest.mark.parametrize("container", ["lines", "array"])
def test_encodings(tmp_path: Path, logs, encoding: str, bom: bool, container: str) -> None:
    events = logs["Security"]
    docs = records(events, "powershell")
    docs[0]["Message"] += " caf\u00e9 \u8b66\u544a \U0001f600"  # non-ASCII, outside the BMP too
    path = tmp_path / "sec.json"
    path.write_bytes(export_bytes(docs, container=container, encoding=encoding, bom=bom, indent=4))
    frames, stats = _read_json(path)
    df = pd.concat(frames, ignore_index=True)
    assert len(df) == len(events) and not stats.warnings
    assert stats.encoding == encoding + (" (BOM)" if bom else "")
    assert df.loc[0, "Message"].endswith(" caf\u00e9 \u8b66\u544a \U0001f600")
    assert list(df["EventID"]) == [e.event_id for e in events]


def test_one_object_and_concatenated_pretty_objects(tmp_path: Path, logs) -> None:
    events = logs["System"]
    one = tmp_path / "one.json"
    one.write_bytes(export_bytes(records(events[-1:], "powershell"), container="object", indent=4))
    frames, stats = _read_json(one)
    assert stats.records == 1 and int(frames[0].loc[0, "EventID"]) == 7045 and not stats.warnings
    many = tmp_path / "many.json"
    many.write_bytes(
        b"".join(export_bytes([d], container="object", indent=2) + b"\n" for d in records(events, "velociraptor"))
    )
    frames, stats = _read_json(many)
    assert stats.records == len(events) and not stats.warnings


def test_splunk_and_elastic_envelopes(tmp_path: Path, logs) -> None:
    events = logs["Sysmon"]
    results = [d["result"] for d in records(events, "splunk")]
    rest = tmp_path / "splunk_rest.json"
    rest.write_text(json.dumps({"preview": False, "init_offset": 0, "messages": [], "results": results}))
    frames, stats = _read_json(rest)
    assert stats.records == len(events) and not stats.warnings
    hits = [
        {"_index": "winlogbeat-1", "_id": str(i), "_source": d} for i, d in enumerate(records(events, "winlogbeat"))
    ]
    es = tmp_path / "elastic.json"
    es.write_text(json.dumps({"took": 3, "hits": {"total": {"value": len(hits)}, "hits": hits}}))
    frames, stats = _read_json(es)
    assert stats.records == len(events) and not stats.warnings
    lines = tmp_path / "elastic_lines.json"
    lines.write_text("".join(json.dumps(h) + "\n" for h in hits))
    frames, stats = _read_json(lines)
    assert stats.records == len(events) and list(pd.concat(frames)["EventRecordID"]) == list(range(1, len(events) + 1))


@pytest.mark.parametrize("name", ["export.json", "export.ndjson", "export.jsonl.xz", "export.json.gz", "noextension"])
def test_exports_are_read_by_content_whatever_the_name(tmp_path: Path, logs, name: str) -> None:
    from analyzers.eventlog.reader import iter_events

    compress = "xz" if name.endswith(".xz") else "gz" if name.endswith(".gz") else None
    path = tmp_path / name
    path.write_bytes(export_bytes(records(logs["System"], "winlogbeat"), compress=compress))
    stats = ReadStats()
    frames = list(iter_events(path, "event_json", stats))
    assert (
        stats.records == len(logs["System"])
        and not stats.warnings
        and stats.compression == {"xz": "xz", "gz": "gzip", None: ""}[compress]
    )
    assert int(frames[-1].iloc[-1]["EventID"]) == 7045


def test_plain_ecs_documents_keep_ids_host_time_and_message(tmp_path: Path, logs) -> None:
    docs = records(logs["MSExchange Management"], "winlogbeat")
    for d in docs:
        del d["winlog"]  # what a shipper without the Windows module sends
    path = tmp_path / "ecs.json"
    path.write_bytes(export_bytes(docs))
    frames, stats = _read_json(path)
    df = pd.concat(frames, ignore_index=True)
    assert stats.records == 2 and not stats.warnings
    assert list(df["EventID"]) == [1, 1] and set(df["Computer"]) == {"EXCH01.corp.example"}
    assert (
        str(df.loc[0, "TimeCreated"]) == "2021-03-03 02:14:30+00:00"
        and "Set-OabVirtualDirectory" in df.loc[0, "Message"]
    )


def test_flat_rows_with_logname_and_providername(tmp_path: Path) -> None:
    row = {
        "EventID": 7045,
        "LogName": "System",
        "ProviderName": "Service Control Manager",
        "MachineName": "EXCH01",
        "TimeCreated": "2021-03-03T02:50:00Z",
        "ServiceName": "x",
        "ImagePath": "cmd /c calc",
    }
    path = tmp_path / "flat.json"
    path.write_text(json.dumps([row]))
    frames, stats = _read_json(path)
    df = frames[0]
    assert stats.records == 1 and not stats.warnings
    got = (df.loc[0, "Channel"], df.loc[0, "Provider"], df.loc[0, "Computer"], df.loc[0, "ImagePath"])
    assert got == ("System", "Service Control Manager", "EXCH01", "cmd /c calc")
