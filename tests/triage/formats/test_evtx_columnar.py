"""The columnar EVTX reader gives exactly the frames of the record-by-record reader it replaced.

Built logs (the project's EVTX writer: every value type, UserData, classic unnamed data, field names that collide
with system columns, broken and truncated files), hand-written parser JSON of hostile shapes, and every corpus
EVTX file when the corpus is present.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from triage.formats.evtx import ReadStats, _loads, flatten_event, frame_from_json, iter_evtx, to_frame
from triage.testing.evtx import Event, corrupt_chunk, evtx_bytes

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not (CORPUS / "evtx").is_dir(), reason="third-party corpus ../shared/corpus absent")
T0 = datetime(2021, 3, 3, 2, 0, tzinfo=UTC)


def _both(path: Path, batch: int = 20_000) -> tuple[pd.DataFrame | None, pd.DataFrame | None, ReadStats, ReadStats]:
    old, new = ReadStats(), ReadStats()
    a = list(iter_evtx(path, old, batch, columnar=False))
    b = list(iter_evtx(path, new, batch))
    return (
        pd.concat(a, ignore_index=True) if a else None,
        pd.concat(b, ignore_index=True) if b else None,
        old,
        new,
    )


def _assert_same(path: Path, batch: int = 20_000) -> ReadStats:
    a, b, old, new = _both(path, batch)
    if a is None or b is None:
        assert a is None and b is None
    else:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    for name in ("records", "bad_records", "bad_chunks", "bad_values", "truncated", "channels", "first", "last"):
        assert getattr(old, name) == getattr(new, name), name
    assert new.backend == old.backend
    return new


def _mixed_events(n: int = 240) -> list[Event]:
    """Several templates a log really mixes, values of every type the writer has, and awkward names."""
    events: list[Event] = []
    for i in range(n):
        t = T0 + timedelta(seconds=i)
        kind = i % 6
        if kind == 0:
            events.append(
                Event(
                    1,
                    "Microsoft-Windows-Sysmon",
                    "Microsoft-Windows-Sysmon/Operational",
                    time_created=t,
                    data={"Image": "C:\\w\\cmd.exe", "CommandLine": f"cmd /c echo {i} \u00e9\u4e2d", "ProcessId": i},
                )
            )
        elif kind == 1:  # a number beyond uint32, a negative one, a NULL and an empty string
            events.append(
                Event(
                    3,
                    "Microsoft-Windows-Sysmon",
                    "Microsoft-Windows-Sysmon/Operational",
                    time_created=t,
                    data={"DestinationPort": 443, "Big": 1 << 40, "Neg": -5, "Empty": "", "Null": None},
                )
            )
        elif kind == 2:  # data fields named like system columns
            events.append(
                Event(
                    4688,
                    "Microsoft-Windows-Security-Auditing",
                    "Security",
                    time_created=t,
                    user_sid="S-1-5-18",
                    data={"EventID": "shadow", "Channel": "x", "NewProcessName": "C:\\w\\a.exe"},
                )
            )
        elif kind == 3:  # classic unnamed data, with qualifiers and an event source name
            events.append(
                Event(
                    1,
                    "MSExchange CmdletLogs",
                    "MSExchange Management",
                    time_created=t,
                    qualifiers=16384,
                    event_source_name="MSExchange CmdletLogs",
                    data=["Set-OabVirtualDirectory", f"-ExternalUrl 'http://x/{i}'", None],
                )
            )
        elif kind == 4:  # UserData
            events.append(
                Event(
                    1102,
                    "Microsoft-Windows-Eventlog",
                    "Security",
                    time_created=t,
                    user_data=("LogFileCleared", {"SubjectUserName": "admin", "SubjectLogonId": 999}),
                )
            )
        else:  # no data at all, and the same template with a field missing
            data: dict[str, str | int | None] = {} if i % 12 == 5 else {"Image": "C:\\w\\x.exe"}
            events.append(Event(7045, "Service Control Manager", "System", time_created=t, data=data))
    return events


def test_built_log_of_mixed_templates_reads_identically(tmp_path: Path) -> None:
    path = tmp_path / "mixed.evtx"
    path.write_bytes(evtx_bytes(_mixed_events(), chunk_records=50))
    stats = _assert_same(path, batch=64)
    assert stats.records == 240 and not stats.bad_records
    df = pd.concat(list(iter_evtx(path, ReadStats())), ignore_index=True)
    assert df.loc[1, "Big"] == str(1 << 40) and df.loc[1, "Neg"] == "-5" and df.loc[1, "Empty"] == ""
    assert df.loc[2, "EventData_EventID"] == "shadow" and int(df.loc[2, "EventID"]) == 4688
    assert df.loc[3, "Data"].splitlines()[0] == "Set-OabVirtualDirectory" and int(df.loc[3, "Qualifiers"]) == 16384
    assert df.loc[4, "SubjectUserName"] == "admin"
    assert list(df["EventRecordID"]) == list(range(1, 241))


def test_broken_logs_read_identically(tmp_path: Path) -> None:
    data = evtx_bytes(_mixed_events(300), chunk_records=50)
    corrupt = tmp_path / "corrupt.evtx"
    corrupt.write_bytes(corrupt_chunk(data, 2))
    stats = _assert_same(corrupt, batch=100)
    assert stats.bad_chunks == 1 and stats.records == 250
    cut = tmp_path / "cut.evtx"
    cut.write_bytes(data[: 4096 + 5 * 65536 + 6000])  # ends 6000 bytes into the sixth chunk
    stats = _assert_same(cut)
    assert stats.truncated and 250 < stats.records < 300 and stats.bad_records == 1  # the record the cut went through
    garbage = tmp_path / "garbage.evtx"
    garbage.write_bytes(b"ElfFile\x00" + b"\xff" * 5000)
    stats = _assert_same(garbage)
    assert stats.records == 0 and stats.warnings


def _system(**extra: object) -> dict:
    system = {
        "Provider_attributes": {"Name": "P"},
        "EventID": 1,
        "TimeCreated_attributes": {"SystemTime": "2021-03-03T02:00:00.000000Z"},
        "EventRecordID": 7,
        "Channel": "Security",
        "Computer": "H",
    }
    return system | extra


def test_hostile_json_costs_only_the_record() -> None:
    docs = [
        {"Event": {"System": _system(), "EventData": {"A": "x", "B": 3}}},
        {"Event": {"System": _system(EventRecordID=8), "EventData": {"A": 1.5, "B": True}}},  # float and bool values
        {"Event": {"System": _system(EventRecordID=9), "EventData": {"A": ["l1", "l2"], "B": {"#text": "t"}}}},
        {"Event": {"System": _system(EventRecordID=1 << 64, EventID="0x10"), "EventData": {"A": 1 << 70}}},
        {"Event": {"System": _system(Computer=5, Level=None), "EventData": {"A": "y", "B": "4"}}},
        {"Event": {"System": {"EventID": {"#text": 4624}, "Channel": "Security"}, "EventData": {"A": "z"}}},
        {"Event": {"System": _system(), "EventData": {"A": "dup", "EventData_EventID": "1", "EventID": "2"}}},
    ]
    texts = [(i, json.dumps(d)) for i, d in enumerate(docs)]
    texts.insert(3, (99, '{"Event": {"System": '))  # a record the parser could not finish
    texts.insert(5, (98, "[1, 2]"))  # JSON, but no event
    stats = ReadStats()
    frame = frame_from_json(texts, stats)
    assert frame is not None
    # the reference parses as the reader does (orjson, when installed, reads an int beyond 64 bits as a float)
    reference = to_frame([flatten_event(_loads(json.dumps(d))) for d in docs])
    pd.testing.assert_frame_equal(frame, reference, check_exact=True)
    assert stats.bad_records == 2 and any("record 99" in w for w in stats.warnings)
    assert any("record 98" in w for w in stats.warnings)
    assert frame.loc[1, "A"] == "1.5" and frame.loc[1, "B"] == "true" and frame.loc[2, "A"] == "l1\nl2"
    assert pd.isna(frame.loc[3, "EventRecordID"]) and frame.loc[3, "A"] == reference.loc[3, "A"]


def test_one_pass_keeps_the_warning_order() -> None:
    """Records are parsed and taken apart in one pass; still, warnings of unparseable records come first, then
    those of records that cannot be taken apart, each kind in record order (what the reader always said)."""
    good = json.dumps({"Event": {"System": _system(), "EventData": {"A": "x"}}})
    texts = [(1, "[1, 2]"), (2, good), (3, '{"Event": '), (4, "7"), (5, "{")]
    stats = ReadStats()
    frame = frame_from_json(texts, stats)
    assert frame is not None and list(frame["A"]) == ["x"]
    assert stats.bad_records == 4
    assert [w.split(":")[0] for w in stats.warnings] == ["record 3", "record 5", "record 1", "record 4"]


def test_keep_filters_and_empty_batches() -> None:
    texts = [(i, json.dumps({"Event": {"System": _system(EventRecordID=i)}})) for i in range(3)]
    frame = frame_from_json(texts, ReadStats(), keep=lambda row: row["EventRecordID"] != 0)
    assert frame is not None and list(frame["EventRecordID"]) == [1, 2]
    assert frame_from_json([], ReadStats()) is None
    assert frame_from_json([(1, "{")], ReadStats()) is None


@needs_corpus
@pytest.mark.slow
def test_corpus_logs_read_identically() -> None:
    files = sorted((CORPUS / "evtx").rglob("*.evtx"))
    assert files
    for path in files:
        _assert_same(path, batch=500)


def test_sparse_columns_are_scattered_to_their_rows() -> None:
    """A data column built from the values of some rows (several templates, interleaved, nulls among them) holds
    each value at its row and null elsewhere: what a list of the rows gives."""
    import numpy as np
    import pyarrow as pa

    from triage.formats.evtx import _scatter

    n = 11
    first = (np.array([1, 4, 5, 9], dtype=np.int64), pa.array(["a", None, "", "d\u00e9"], type=pa.large_string()))
    second = (np.array([0, 7], dtype=np.int64), pa.array(["x", "y"], type=pa.large_string()))
    cases = [
        [first],
        [first, second],  # interleaved: sorted by row
        [(np.array([0, 1], dtype=np.int64), pa.array(["p", "q"], type=pa.large_string()))],  # ends early
        [(np.array([n - 1], dtype=np.int64), pa.array(["z"], type=pa.large_string()))],  # only the last row
        [(np.arange(n, dtype=np.int64), pa.array([str(i) for i in range(n)], type=pa.large_string()))],
        [(np.array([2, 3], dtype=np.int64), pa.array(["skip", "s", "t"], type=pa.large_string()).slice(1))],
    ]
    for pieces in cases:
        expected: list[str | None] = [None] * n
        for rows, values in pieces:
            for row, value in zip(rows.tolist(), values.to_pylist(), strict=True):
                expected[row] = value
        got = _scatter(pieces, n)
        got.validate(full=True)
        assert got.to_pylist() == expected
        assert got.null_count == expected.count(None)


@pytest.mark.parametrize("slots", [1, 23, 1 << 20])
def test_many_sparse_columns_built_together(monkeypatch: pytest.MonkeyPatch, slots: int) -> None:
    """Columns built many at once (in groups of about ``slots`` row slots) are each the column built alone: values
    at their rows, nulls elsewhere, each column's buffers its own (sizes and slices as if built alone)."""
    import numpy as np
    import pyarrow as pa

    from triage.formats import evtx

    monkeypatch.setattr(evtx, "_SCATTER_SLOTS", slots)
    n = 9
    text = pa.large_string()
    columns = [
        [(np.array([8], dtype=np.int64), pa.array(["last"], type=text))],
        [(np.arange(n, dtype=np.int64), pa.array([f"v{i}" for i in range(n)], type=text))],  # every row: as given
        [
            (np.array([2, 6], dtype=np.int64), pa.array(["\u00e9t\u00e9", None], type=text)),
            (np.array([0, 3], dtype=np.int64), pa.array(["", "x" * 70], type=text)),
        ],
        [(np.array([1, 4, 5], dtype=np.int64), pa.array(["drop", "a", "b", "c"], type=text).slice(1))],
        [(np.array([0], dtype=np.int64), pa.array([None], type=text))],
    ]
    got = evtx._scatter_columns(columns, n)
    assert got[1] is columns[1][0][1]
    for pieces, arr in zip(columns, got, strict=True):
        expected: list[str | None] = [None] * n
        for rows, values in pieces:
            for row, value in zip(rows.tolist(), values.to_pylist(), strict=True):
                expected[row] = value
        arr.validate(full=True)
        assert arr.to_pylist() == expected
        assert arr.null_count == expected.count(None)
        assert arr.buffers()[2].size == sum(len(v.encode()) for v in expected if v is not None)


@pytest.mark.parametrize(
    "values",
    [
        (1, " 2 ", None, "+3", "-4", "0"),  # ints with decimal texts among them: the texts converted
        (1, str(1 << 63), None),  # a text beyond int64: dropped, warned
        (1 << 63, 5),  # an int beyond int64
        (1, "0x10", None, "7"),  # a form only the general conversion reads
        (True, 2),  # a bool is not a number here
        (None, None),
    ],
)
def test_system_numbers_as_the_general_conversion(values: tuple[object, ...]) -> None:
    """System numbers given as ints and texts mixed (records of other shapes in a batch) become what pandas'
    conversion of the column gives (the record-by-record reader's), with the same warnings."""
    from triage.formats.evtx import _int64_column, _int_array

    fast, general = ReadStats(), ReadStats()
    got = _int_array(values, "ProcessID", fast).to_pylist()
    expected = _int64_column(pd.Series(list(values)), "ProcessID", general)
    assert got == [None if pd.isna(v) else int(v) for v in expected]
    assert (fast.bad_values, fast.warnings) == (general.bad_values, general.warnings)
