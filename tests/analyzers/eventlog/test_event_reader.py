from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from analyzers.eventlog.reader import iter_json_events
from triage.formats.evtx import ReadStats, _iter_evtx_python, _iter_evtx_rust, iter_evtx

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="third-party corpus ../shared/corpus is absent")


def _read(path: Path, **kw) -> tuple[pd.DataFrame, ReadStats]:
    stats = ReadStats()
    frames = list(iter_evtx(path, stats, **kw))
    return pd.concat(frames, ignore_index=True), stats


@needs_corpus
def test_bad_chunk_keeps_every_readable_record() -> None:
    df, stats = _read(CORPUS / "evtx/baseline/OMB_sample_with_a_bad_chunk_magic.evtx", batch=100)
    assert len(df) == stats.records == 270
    assert stats.bad_chunks == 2
    assert any("chunk number 6" in w for w in stats.warnings) and any("chunk number 10" in w for w in stats.warnings)
    assert stats.backend == "evtx"


@needs_corpus
def test_security_log_columns_and_types() -> None:
    df, stats = _read(CORPUS / "evtx/baseline/PYE_security.evtx")
    assert len(df) == 2261 and stats.channels == {"Security": 2261}
    first = df.sort_values("EventRecordID").iloc[0]
    assert (int(first["EventRecordID"]), int(first["EventID"])) == (1, 4608)
    assert str(first["TimeCreated"]) == "2016-07-08 18:12:51.681640+00:00"
    assert first["Provider"] == "Microsoft-Windows-Security-Auditing"
    assert str(df["EventID"].dtype) == "Int64" and str(df["TimeCreated"].dtype) == "datetime64[us, UTC]"
    logon = df[df["EventID"] == 4624].sort_values("EventRecordID").iloc[0]
    assert (logon["LogonType"], logon["TargetUserName"]) == ("0", "SYSTEM")  # EventData fields are columns


@needs_corpus
def test_classic_unnamed_data_and_qualifiers() -> None:
    df, _ = _read(CORPUS / "evtx/webshell_exchange/OMB_MSExchange_Management_wec.evtx")
    row = df.iloc[0]
    assert (row["Channel"], int(row["EventID"]), int(row["Qualifiers"])) == ("MSExchange Management", 1, 16384)
    assert row["Data"].splitlines()[0] == "Set-Mailbox"
    assert "-ForwardingSmtpAddress" in row["Data"]


@needs_corpus
@pytest.mark.parametrize(
    "name",
    [
        "webshell_exchange/EAS_privexchange_dirkjan.evtx",
        "webshell_exchange/MTR_ID4756-Exchange_admin_group_change.evtx",
        "credential_access/EAS_sysmon_10_11_lsass_memdump.evtx",
    ],
)
def test_rust_and_python_backends_agree(name: str) -> None:
    path = CORPUS / "evtx" / name
    fast = list(_iter_evtx_rust(path, ReadStats()))
    slow = list(_iter_evtx_python(path, ReadStats()))
    assert len(fast) == len(slow) > 0

    def norm(row: dict) -> dict:
        # XML parsing turns CRLF inside values into LF (XML line-end normalisation): compare without CR
        out = {
            k: (str(v).replace("\r\n", "\n") if v is not None else None) for k, v in row.items() if k != "TimeCreated"
        }
        return {k: v for k, v in out.items() if v not in (None, "")}

    for a, b in zip(
        sorted(fast, key=lambda r: int(r["EventRecordID"])),
        sorted(slow, key=lambda r: int(r["EventRecordID"])),
        strict=True,
    ):
        assert norm(a) == norm(b)
        # python-evtx truncates the 100 ns FILETIME to microseconds, evtx rounds: at most 1 us apart
        delta = abs(pd.Timestamp(a["TimeCreated"]) - pd.Timestamp(b["TimeCreated"]))
        assert delta <= pd.Timedelta(microseconds=1)


@needs_corpus
def test_otrf_json_export() -> None:
    stats = ReadStats()
    df = pd.concat(list(iter_json_events(CORPUS / "events_json/OTR_psh_lsass_memory_dump_comsvcs.json.xz", stats)))
    assert len(df) == 184
    assert stats.channels == {"Microsoft-Windows-Sysmon/Operational": 148, "Security": 36}
    dump = df[df["CommandLine"].fillna("").str.contains("comsvcs", case=False)]
    assert len(dump) == 2
    assert sorted(dump["EventID"].astype(int)) == [1, 4688]
    assert (dump["Image"].fillna(dump["NewProcessName"]).str.lower().str.endswith("rundll32.exe")).all()
    # the rendered message is kept for every record, and carries the payload too
    assert df["Message"].notna().all() and dump["Message"].str.contains("comsvcs", case=False).all()
    assert stats.bad_records == 0 and not stats.warnings and stats.compression == "xz"


def test_json_shapes_and_malformed_lines(tmp_path: Path) -> None:
    lines = [
        {
            "@timestamp": "2021-03-03T02:14:07.123Z",
            "winlog": {
                "event_id": 4688,
                "channel": "Security",
                "provider_name": "Microsoft-Windows-Security-Auditing",
                "computer_name": "EXCH01",
                "record_id": 77,
                "event_data": {"NewProcessName": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "cmd /c whoami"},
            },
        },
        {
            "EventID": 1,
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "SourceName": "Microsoft-Windows-Sysmon",
            "Hostname": "EXCH01",
            "TimeCreated": "2021-03-03 02:15:00.000",
            "Image": "C:\\w\\cmd.exe",
            "Message": "Process Create",
        },
        {
            "Event": {
                "System": {
                    "EventID": 7045,
                    "Channel": "System",
                    "Provider": {"#attributes": {"Name": "SCM"}},
                    "TimeCreated": {"#attributes": {"SystemTime": "2021-03-04T00:00:00Z"}},
                    "EventRecordID": 5,
                },
                "EventData": {"ServiceName": "evil", "ImagePath": "cmd /c x"},
            }
        },
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n{broken json\n[1,2]\n\n"
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(text.encode()))
    stats = ReadStats()
    df = pd.concat(list(iter_json_events(path, stats)), ignore_index=True)
    assert list(df["EventID"]) == [4688, 1, 7045]
    assert list(df["Channel"]) == ["Security", "Microsoft-Windows-Sysmon/Operational", "System"]
    assert df.loc[0, "CommandLine"] == "cmd /c whoami" and int(df.loc[0, "EventRecordID"]) == 77
    assert df.loc[1, "Image"] == "C:\\w\\cmd.exe" and df.loc[1, "Message"] == "Process Create"
    assert (df.loc[2, "ServiceName"], df.loc[2, "Provider"]) == ("evil", "SCM")
    assert str(df.loc[0, "TimeCreated"]) == "2021-03-03 02:14:07.123000+00:00"
    assert stats.bad_records == 2 and any("not JSON" in w for w in stats.warnings)


def test_garbage_file_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "Security.evtx"
    path.write_bytes(b"ElfFile\x00" + b"\xff" * 5000)
    stats = ReadStats()
    assert list(iter_evtx(path, stats)) == []
    assert stats.records == 0 and stats.warnings


# -- synthetic logs from the project's own EVTX writer ------------------------------------------------------
def _log(n: int = 300) -> bytes:
    from datetime import UTC, datetime, timedelta

    from triage.testing.evtx import Event, evtx_bytes

    t0 = datetime(2021, 3, 3, 2, 0, tzinfo=UTC)
    events = [
        Event(
            event_id=4688,
            provider="Microsoft-Windows-Security-Auditing",
            channel="Security",
            time_created=t0 + timedelta(seconds=i),
            data={"NewProcessName": "C:\\Windows\\cmd.exe", "CommandLine": f"cmd /c step {i}"},
        )
        for i in range(n)
    ]
    return evtx_bytes(events, chunk_records=100)


def _ids(path: Path) -> tuple[list[int], ReadStats]:
    stats = ReadStats()
    frames = list(iter_evtx(path, stats))
    ids = sorted(int(i) for f in frames for i in f["EventRecordID"])
    return ids, stats


def test_synthetic_log_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "Security.evtx"
    path.write_bytes(_log())
    ids, stats = _ids(path)
    assert ids == list(range(1, 301)) and not stats.warnings
    df = pd.concat(list(iter_evtx(path, ReadStats(), batch=64)), ignore_index=True)
    assert df.loc[299, "CommandLine"] == "cmd /c step 299"
    assert str(df.loc[0, "TimeCreated"]) == "2021-03-03 02:00:00+00:00"


def test_corrupt_middle_chunk_keeps_the_others(tmp_path: Path) -> None:
    from triage.testing.evtx import corrupt_chunk

    path = tmp_path / "Security.evtx"
    path.write_bytes(corrupt_chunk(_log(), 1))
    ids, stats = _ids(path)
    assert ids == [*range(1, 101), *range(201, 301)]
    assert stats.bad_chunks == 1 and "chunk number 1" in stats.warnings[0]


def test_truncated_log_recovers_the_partial_chunk(tmp_path: Path) -> None:
    data = _log()
    path = tmp_path / "Security.evtx"
    path.write_bytes(data[: 4096 + 65536 + 20000])  # cut 20,000 bytes into the second chunk
    ids, stats = _ids(path)
    assert ids[:100] == list(range(1, 101)) and len(ids) > 100  # records before the cut come back
    assert ids == list(range(1, ids[-1] + 1))
    assert stats.truncated and any("truncated" in w for w in stats.warnings)


def test_broken_file_header_falls_back_to_python_evtx(tmp_path: Path) -> None:
    data = bytearray(_log())
    data[0:8] = b"NOTAFILE"
    path = tmp_path / "Security.evtx"
    path.write_bytes(bytes(data))
    ids, stats = _ids(path)
    assert ids == list(range(1, 301))
    assert stats.backend == "python-evtx" and "falling back to python-evtx" in stats.warnings[0]
