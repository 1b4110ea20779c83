"""Seeded mutations of small evidence files, and the seed inputs the project's builders make.

Each mutation is a pure function of (seed bytes, case number, run seed), so a failing case is rebuilt
exactly from the numbers in its name (``<kind>-<case>-<seed>``).
"""

from __future__ import annotations

import gzip
import json
import random
import struct
from collections.abc import Callable

INTERESTING_32 = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)


def _flip(data: bytearray, rng: random.Random) -> None:
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)


def _bytes(data: bytearray, rng: random.Random) -> None:
    for _ in range(rng.randint(1, 16)):
        data[rng.randrange(len(data))] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x25, 0x0A, 0x22, 0x5C, rng.randrange(256)))


def _int32(data: bytearray, rng: random.Random) -> None:
    # a length, count or offset field made huge, zero or negative: what makes parsers loop or allocate
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(0, max(1, len(data) - 4)) & ~3
        struct.pack_into("<I", data, i, rng.choice(INTERESTING_32))


def _truncate(data: bytearray, rng: random.Random) -> None:
    del data[rng.randrange(len(data)) :]


def _splice(data: bytearray, rng: random.Random) -> None:
    # a region repeated or moved: duplicated headers, records pointing at the wrong place
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, 512))
    data[rng.randrange(len(data)) : rng.randrange(len(data))] = data[a:b] * rng.randint(1, 4)


def _junk(data: bytearray, rng: random.Random) -> None:
    at = rng.randrange(len(data) + 1)
    data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 256)))


def _text(data: bytearray, rng: random.Random) -> None:
    # for line formats: a field of undecodable bytes, a huge line, bidi controls, formula starts
    bad = rng.choice(
        (b"\xff\xfe\xfd", b"\x00" * 64, "\u202e".encode(), b"=cmd|' /C calc'!A0;", b"A" * 70000, b"%FF%00", b"\r\r\n")
    )
    at = rng.randrange(len(data) + 1)
    data[at:at] = bad


MUTATORS: tuple[Callable[[bytearray, random.Random], None], ...] = (
    _flip,
    _bytes,
    _int32,
    _truncate,
    _splice,
    _junk,
    _text,
)


def mutate(seed: bytes, case: int, run_seed: int) -> bytes:
    """One to three mutations of ``seed``, chosen by ``(case, run_seed)``."""
    rng = random.Random(f"{run_seed}:{case}")
    data = bytearray(seed or b"\x00")
    for _ in range(rng.randint(1, 3)):
        if not data:
            data = bytearray(b"\x00")
        rng.choice(MUTATORS)(data, rng)
    return bytes(data)


def json_export() -> bytes:
    """A small event export in the shapes the JSON reader takes (Winlogbeat, flat, EVTX-as-JSON)."""
    lines = [
        {
            "@timestamp": "2021-03-03T02:14:07.123Z",
            "winlog": {
                "event_id": 4688,
                "channel": "Security",
                "provider_name": "Microsoft-Windows-Security-Auditing",
                "computer_name": "EXCH01",
                "record_id": 77,
                "event_data": {
                    "NewProcessName": "C:\\Windows\\System32\\cmd.exe",
                    "ParentProcessName": "C:\\Windows\\System32\\inetsrv\\w3wp.exe",
                    "CommandLine": "cmd /c whoami",
                },
            },
        },
        {
            "EventID": 1,
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "Hostname": "EXCH01",
            "TimeCreated": "2021-03-03 02:15:00.000",
            "Image": "C:\\w\\cmd.exe",
        },
        {
            "Event": {
                "System": {
                    "EventID": 7045,
                    "Channel": "System",
                    "TimeCreated": {"#attributes": {"SystemTime": "2021-03-04T00:00:00Z"}},
                    "EventRecordID": 5,
                },
                "EventData": {"ServiceName": "evil", "ImagePath": "cmd /c x"},
            }
        },
    ]
    return ("\n".join(json.dumps(x) for x in lines) + "\n").encode()


def seed_inputs() -> dict[str, list[tuple[str, bytes]]]:
    """Per evidence kind, the (file name, bytes) the builders make: what the mutations start from."""
    from triage.testing.eventlogs import event_log_files
    from triage.testing.minidump import minidump
    from triage.testing.volume import VolumeSpec, volume_files, zip_bytes

    vol = volume_files(VolumeSpec())
    evtx = event_log_files(True)
    by_name = {path.rsplit("/", 1)[1]: data for path, data in {**vol, **evtx}.items()}
    dump = minidump()
    return {
        "evtx": [(n, by_name[n]) for n in ("Security.evtx", "Microsoft-Windows-Sysmon%4Operational.evtx")],
        "event_json": [("events.jsonl", json_export()), ("events.jsonl.gz", gzip.compress(json_export(), mtime=0))],
        "exchange_log": [
            (n, by_name[n])
            for n in ("HttpProxy_2021030302-1.LOG", "ECPServer20210303-1.LOG", "OABGeneratorLog_20210303-1.LOG")
        ],
        "iis_log": [("u_ex210303.log", by_name["u_ex210303.log"])],
        "registry_hive": [("SYSTEM", by_name["SYSTEM"]), ("SOFTWARE", by_name["SOFTWARE"])],
        "web_file": [("Dk2jQ8ab.aspx", by_name["Dk2jQ8ab.aspx"]), ("iisstart.htm", by_name["iisstart.htm"])],
        "suspicious_file": [
            ("lsass.dmp", dump),
            ("it.zip", zip_bytes({"lsass.dmp": dump, "a.aspx": by_name["Dk2jQ8ab.aspx"]})),
        ],
    }
