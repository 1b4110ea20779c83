"""Event log throughput, all contenders on the same synthetic log in one run.

Writes a Sysmon/Security log with the project's EVTX writer (N records, a realistic mix of process
creation, process access, network, file and logon events), then measures records/s for:
  python-evtx parse only (XML per record; on the first --slow-records records, it is ~400x slower),
  evtx parse only (records_json + json.loads, one thread),
  triage read (parse + typed frames built column by column; and the previous record-by-record reader),
  triage analyze (read + the ED 21-02 Sigma pack), and with --sigma DIR also that rule set loaded.
Prints ratios against evtx parse-only and python-evtx, and peak RSS. Usage:
  python benchmarks/evtx_throughput.py [--records 200000] [--sigma PATH_TO_SIGMAHQ/rules/windows]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from triage.formats.evtx import ReadStats, iter_evtx
from triage.registry import signature_path
from triage.testing.evtx import Event, write_evtx

SYSMON = ("Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon/Operational")
IMAGES = [
    "C:\\Windows\\System32\\svchost.exe",
    "C:\\Windows\\System32\\cmd.exe",
    "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Bin\\MSExchangeHMWorker.exe",
    "C:\\Windows\\System32\\inetsrv\\w3wp.exe",
    "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
]


def make_events(n: int, seed: int = 1) -> list[Event]:
    rng = random.Random(seed)
    t0 = datetime(2021, 2, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        when = t0 + timedelta(seconds=i * 3)
        kind = rng.random()
        img = rng.choice(IMAGES)
        if kind < 0.4:
            out.append(
                Event(
                    event_id=1,
                    provider=SYSMON[0],
                    channel=SYSMON[1],
                    time_created=when,
                    version=5,
                    data={
                        "RuleName": "-",
                        "UtcTime": str(when),
                        "ProcessGuid": f"{{{i:08X}-0000-0000-0000-000000000000}}",
                        "ProcessId": 1000 + i % 5000,
                        "Image": img,
                        "CommandLine": f'"{img}" -k netsvcs -p -s Task{i % 97}',
                        "CurrentDirectory": "C:\\Windows\\system32\\",
                        "User": "NT AUTHORITY\\SYSTEM",
                        "LogonId": "0x3e7",
                        "IntegrityLevel": "System",
                        "Hashes": f"SHA256={rng.getrandbits(256):064X}",
                        "ParentImage": "C:\\Windows\\System32\\services.exe",
                        "ParentCommandLine": "services.exe",
                    },
                )
            )
        elif kind < 0.6:
            out.append(
                Event(
                    event_id=10,
                    provider=SYSMON[0],
                    channel=SYSMON[1],
                    time_created=when,
                    version=3,
                    data={
                        "SourceImage": img,
                        "TargetImage": "C:\\Windows\\System32\\csrss.exe",
                        "GrantedAccess": "0x1000",
                        "CallTrace": "C:\\Windows\\SYSTEM32\\ntdll.dll+9c584|UNKNOWN(00007FF)",
                        "SourceProcessId": i % 9000,
                    },
                )
            )
        elif kind < 0.8:
            out.append(
                Event(
                    event_id=3,
                    provider=SYSMON[0],
                    channel=SYSMON[1],
                    time_created=when,
                    version=5,
                    data={
                        "Image": img,
                        "Protocol": "tcp",
                        "Initiated": "true",
                        "SourceIp": "10.0.0.5",
                        "DestinationIp": f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                        "DestinationPort": 443,
                    },
                )
            )
        else:
            out.append(
                Event(
                    event_id=11,
                    provider=SYSMON[0],
                    channel=SYSMON[1],
                    time_created=when,
                    version=2,
                    data={
                        "Image": img,
                        "TargetFilename": f"C:\\Windows\\Temp\\tmp{i:06d}.tmp",
                        "CreationUtcTime": str(when),
                    },
                )
            )
    return out


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_log(path: Path, records: int) -> float:
    """Write the synthetic log of ``records`` records; returns the seconds it took."""
    t = time.perf_counter()
    write_evtx(path, make_events(records))
    return time.perf_counter() - t


def measure(path: Path, slow_records: int = 2_000, sigma: list[str] | None = None) -> dict[str, float]:
    """Records/s of every contender over the log at ``path``, all in this process, in this run.

    Keys: ``python-evtx parse only`` (first ``slow_records`` records), ``evtx parse only``,
    ``triage read (flattened frames)``, ``triage analyze, ED 21-02 pack`` and, with ``sigma``,
    ``triage analyze, pack + --sigma``.
    """
    rates: dict[str, float] = {}

    import Evtx.Evtx as pyevtx

    t = time.perf_counter()
    n = 0
    with pyevtx.Evtx(str(path)) as log:
        for rec in log.records():
            rec.xml()
            n += 1
            if n >= slow_records:
                break
    rates["python-evtx parse only"] = n / (time.perf_counter() - t)

    from evtx import PyEvtxParser

    t = time.perf_counter()
    n = sum(1 for r in PyEvtxParser(str(path), number_of_threads=1).records_json() if json.loads(r["data"]))
    rates["evtx parse only"] = n / (time.perf_counter() - t)

    t = time.perf_counter()
    n = sum(len(f) for f in iter_evtx(path, ReadStats()))
    rates["triage read (columnar frames)"] = n / (time.perf_counter() - t)

    t = time.perf_counter()
    n = sum(len(f) for f in iter_evtx(path, ReadStats(), columnar=False))
    rates["triage read (record by record)"] = n / (time.perf_counter() - t)

    from triage.sigma import load_rules

    sets = {"triage analyze, ED 21-02 pack": [signature_path("sigma/ed2102")]}
    if sigma:
        sets["triage analyze, pack + --sigma"] = [signature_path("sigma/ed2102"), *map(Path, sigma)]
    for label, paths in sets.items():
        t = time.perf_counter()
        ruleset = load_rules(paths)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        n = matches = 0
        for frame in iter_evtx(path, ReadStats()):
            n += len(frame)
            matches += len(ruleset.evaluate(frame))
        rates[label] = n / (time.perf_counter() - t)
        print(f"{label}: {len(ruleset.loaded)} rules loaded in {load_s:.1f} s, {matches} matches", file=sys.stderr)
    return rates


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--slow-records", type=int, default=2_000, help="records python-evtx is timed on")
    ap.add_argument("--sigma", action="append", default=[], help="extra Sigma rule folders (SigmaHQ rules/windows)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.evtx"
        secs = write_log(path, args.records)
        print(f"wrote {args.records:,} records, {path.stat().st_size / 1e6:.1f} MB in {secs:.1f} s", file=sys.stderr)
        rates = measure(path, args.slow_records, args.sigma)
    base, slow = rates["evtx parse only"], rates["python-evtx parse only"]
    print(f"{'contender':<36} {'records/s':>12} {'x evtx':>8} {'x python-evtx':>14}")
    for name, rate in rates.items():
        print(f"{name:<36} {rate:12,.0f} {rate / base:8.2f} {rate / slow:14.1f}")
    print(f"peak RSS {rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
