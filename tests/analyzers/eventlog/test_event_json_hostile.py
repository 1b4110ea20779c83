"""Hostile JSON exports and out-of-range EVTX values: each bad record or value costs only itself."""

from __future__ import annotations

import json
import lzma
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from analyzers.eventlog.jsonexport import JsonLimits
from analyzers.eventlog.reader import iter_json_events
from triage.formats.evtx import ReadStats, iter_evtx
from triage.testing.eventjson import export_bytes, records
from triage.testing.eventlogs import attack_events
from triage.testing.evtx import Event, evtx_bytes

GOOD = records(attack_events()["Sysmon"], "winlogbeat")  # six events, record ids 1..6

# one of each kind of bad record; each must cost exactly one warning and nothing else
BAD = {
    "5000-digit integer": '{"winlog": {"event_id": ' + "7" * 5000 + ', "channel": "Security"}}',
    "deep array": "[" * 100_000 + "]" * 100_000,
    "deep object": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "winlog is a string": '{"winlog": "string"}',
    "number": "42",
    "string": '"an event?"',
    "null": "null",
    "malformed object": '{"EventID": 1,, "Channel": "Security"}',
    "unknown shape": '{"hello": "world"}',
}


def _read(path: Path, limits: JsonLimits | None = None) -> tuple[pd.DataFrame | None, ReadStats]:
    stats = ReadStats()
    frames = list(iter_json_events(path, stats, limits=limits))
    return (pd.concat(frames, ignore_index=True) if frames else None), stats


def _interleave(bad: list[str]) -> list[str]:
    good = [json.dumps(d) for d in GOOD]
    out = []
    for i, g in enumerate(good):
        out.append(g)
        out.extend(bad[i :: len(good)])
    return out


@pytest.mark.parametrize("container", ["lines", "array"])
def test_bad_records_cost_only_themselves(tmp_path: Path, container: str) -> None:
    items = _interleave(list(BAD.values()))
    path = tmp_path / "mixed.json"
    if container == "lines":
        path.write_text("\n".join(items) + "\n", encoding="utf-8")
    else:
        path.write_text("[\n" + ",\n".join(items) + "\n]", encoding="utf-8")
    started = time.perf_counter()
    df, stats = _read(path)
    assert time.perf_counter() - started < 5
    assert df is not None and list(df["EventRecordID"]) == [1, 2, 3, 4, 5, 6]
    assert stats.records == 6 and stats.bad_records == len(BAD) == len(stats.warnings)
    assert sum("nested too deeply" in w for w in stats.warnings) == 2
    assert sum("not a JSON object" in w for w in stats.warnings) == 3  # 42, the string, null
    assert sum("known shape" in w for w in stats.warnings) == 2  # {"winlog": "string"}, {"hello": ...}
    assert not stats.truncated


def test_lone_surrogate_and_big_system_number_lose_only_the_value(tmp_path: Path) -> None:
    docs = [json.loads(json.dumps(d)) for d in GOOD]
    docs[2]["winlog"]["event_data"]["CommandLine"] = "cmd /c echo \ud800 done"  # json.dumps writes "\\ud800"
    docs[4]["winlog"]["record_id"] = 10**25  # beyond int64 (and beyond 64 bits)
    for container in ("lines", "array"):
        path = tmp_path / f"vals.{container}.json"
        path.write_text(
            "\n".join(json.dumps(d) for d in docs) if container == "lines" else json.dumps(docs), encoding="utf-8"
        )
        df, stats = _read(path)
        assert df is not None and stats.records == 6 and stats.bad_records == 0
        assert stats.bad_values == 2 and len(stats.warnings) == 2, stats.warnings
        assert df.loc[2, "CommandLine"] == "cmd /c echo \ufffd done"
        assert pd.isna(df.loc[4, "EventRecordID"]) and int(df.loc[5, "EventRecordID"]) == 6


@pytest.mark.parametrize("container", ["lines", "array"])
def test_record_size_cap(tmp_path: Path, container: str) -> None:
    docs = [json.loads(json.dumps(d)) for d in GOOD]
    docs[3]["winlog"]["event_data"]["CommandLine"] = "x" * 20_000
    path = tmp_path / "big.json"
    path.write_bytes(export_bytes(docs, container=container))
    df, stats = _read(path, JsonLimits(max_record_chars=8_000, chunk_bytes=1024))
    assert df is not None and list(df["EventRecordID"]) == [1, 2, 3, 5, 6]
    assert stats.bad_records == 1 and len(stats.warnings) == 1 and "larger than 8000" in stats.warnings[0]


def test_truncated_array_keeps_the_records_before_the_cut(tmp_path: Path) -> None:
    data = export_bytes(GOOD, container="array", indent=4)
    cut = data.index(b'"record_id": 5')
    path = tmp_path / "cut.json"
    path.write_bytes(data[:cut])
    df, stats = _read(path)
    assert df is not None and list(df["EventRecordID"]) == [1, 2, 3, 4]
    assert stats.truncated and stats.bad_records == 1 and "not closed" in stats.warnings[-1]


def test_gzip_members_and_xz_streams_concatenated(tmp_path: Path) -> None:
    half = [export_bytes(GOOD[:3], compress="gz"), export_bytes(GOOD[3:], compress="gz")]
    path = tmp_path / "cat.jsonl.gz"
    path.write_bytes(b"".join(half))
    df, stats = _read(path)
    assert df is not None and len(df) == 6 and not stats.warnings
    path = tmp_path / "cat.ndjson.xz"
    path.write_bytes(export_bytes(GOOD[:3], compress="xz") + export_bytes(GOOD[3:], compress="xz"))
    df, stats = _read(path)
    assert df is not None and len(df) == 6 and not stats.warnings
    path.write_bytes(export_bytes(GOOD, compress="xz")[:-200])  # cut inside the stream
    df, stats = _read(path)
    assert stats.truncated and stats.warnings


def _bomb(path: Path) -> Path:
    """``[`` then 1 GiB of spaces as concatenated xz streams (~0.2 MB; one 1 MiB stream compressed once)."""
    block = lzma.compress(b" " * (1 << 20))
    path.write_bytes(lzma.compress(b"[") + block * 1024)
    return path


# peak RSS from VmHWM: ru_maxrss would carry the forking pytest's peak across exec on Linux
_MEASURE = """
import re, sys, time
from triage.formats.evtx import ReadStats
from analyzers.eventlog.reader import iter_json_events
t = time.perf_counter(); s = ReadStats()
n = sum(len(f) for f in iter_json_events(sys.argv[1], s))
hwm = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print(time.perf_counter() - t, hwm, n, s.truncated, s.limit_hit)
"""


@pytest.mark.slow
def test_xz_bomb_is_bounded_in_time_and_memory(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "bomb.json.xz")
    assert bomb.stat().st_size < 400_000
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(bomb)], capture_output=True, text=True, timeout=60)
    seconds, rss_kib, n, truncated, limit_hit = out.stdout.split()
    assert float(seconds) < 10 and int(rss_kib) < 300 * 1024, out.stdout
    assert (n, truncated, limit_hit) == ("0", "True", "True")
    # a cap on the expanded bytes is honoured too, with its own warning
    _, stats = _read(bomb, JsonLimits(max_expanded_bytes=8 << 20))
    assert stats.limit_hit and any("limit 8388608" in w for w in stats.warnings)


def _overflow_log() -> bytes:
    t0 = datetime(2021, 3, 3, 2, 0, tzinfo=UTC)
    ids = [1, 2, 3, 2**64 - 2, 5, 6]  # record 4's identifier is beyond int64 (UInt64 on disk)
    events = [
        Event(
            event_id=1,
            provider="Microsoft-Windows-Sysmon",
            channel="Microsoft-Windows-Sysmon/Operational",
            time_created=t0 + timedelta(seconds=i),
            record_id=rid,
            data={"Image": "C:\\Windows\\System32\\cmd.exe", "CommandLine": f"cmd /c step {i}"},
        )
        for i, rid in enumerate(ids)
    ]
    return evtx_bytes(events)


def test_evtx_value_beyond_int64_loses_only_that_value(tmp_path: Path) -> None:
    path = tmp_path / "Sysmon.evtx"
    path.write_bytes(_overflow_log())
    stats = ReadStats()
    df = pd.concat(list(iter_evtx(path, stats)), ignore_index=True)
    assert len(df) == stats.records == 6 and stats.bad_values == 1
    assert [None if pd.isna(v) else int(v) for v in df["EventRecordID"]] == [1, 2, 3, None, 5, 6]
    assert df.loc[3, "CommandLine"] == "cmd /c step 3"
    assert len(stats.warnings) == 1 and "beyond int64" in stats.warnings[0]


def test_seeded_mutations_never_raise(tmp_path: Path) -> None:
    """Random byte damage to exports of every container and encoding: warnings, never an exception."""
    import random

    rng = random.Random(int(__import__("os").environ.get("TRIAGE_FUZZ_SEED", "2102")))
    cases = int(__import__("os").environ.get("TRIAGE_FUZZ_CASES", "80"))
    seeds = [
        export_bytes(GOOD, container="lines"),
        export_bytes(GOOD, container="array", indent=4, encoding="utf-16-le", bom=True),
        export_bytes(records(attack_events()["Security"], "powershell"), container="array", indent=4),
        export_bytes(records(attack_events()["Security"], "splunk")),
        export_bytes(GOOD, compress="gz"),
        export_bytes(GOOD, compress="xz"),
    ]
    path = tmp_path / "fuzz.json"
    for i in range(cases):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(data))
            op = rng.random()
            if op < 0.4:
                data[at] = rng.randrange(256)
            elif op < 0.6:
                data[at:at] = bytes(rng.choice(b'{}[]",:\\0\n ') for _ in range(rng.randint(1, 4)))
            elif op < 0.8:
                del data[at : at + rng.randint(1, 64)]
            else:
                del data[at:]
                break
        path.write_bytes(bytes(data))
        stats = ReadStats()
        started = time.process_time()  # the reader's own CPU time: a tight bound that holds beside other workers
        frames = list(iter_json_events(path, stats, limits=JsonLimits(max_record_chars=1 << 20)))
        assert time.process_time() - started < 2, i
        assert stats.records == sum(len(f) for f in frames) <= 40, i


def test_bad_pretty_object_among_concatenated_ones_costs_one_warning(tmp_path: Path) -> None:
    pretty = [export_bytes([d], container="object", indent=4).decode() for d in GOOD]
    pretty[2] = pretty[2].replace('"channel"', '"channel" "oops"', 1)  # a malformed object in the middle
    path = tmp_path / "pretty.json"
    path.write_text("\n".join(pretty) + "\n", encoding="utf-8")
    df, stats = _read(path)
    assert df is not None and list(df["EventRecordID"]) == [1, 2, 4, 5, 6]
    assert stats.bad_records == 1 and len(stats.warnings) == 1
