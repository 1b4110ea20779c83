"""The super-timeline streams: eight times the events, the same peak memory (each build in its own process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from triage.cli import main
from triage.errors import ExitCode
from triage.testing.volume import httpproxy_log

ROWS_PER_LOG = 25_000
# build_timeline with small batches and runs, so the large case spills 20 runs and merges them in two levels
PROBE = """
import json, os, resource, sys
from triage.case import Case
from triage.timeline import TimelineOptions, build_timeline
case = Case.open(sys.argv[1])
with case.writer():
    res = build_timeline(case, TimelineOptions(batch=5_000, run_rows=20_000))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"events": res.events, "peak": peak, "bytes": sum(os.path.getsize(p) for p in res.outputs.values())}))
"""


def _log_bytes() -> bytes:
    base = {"ClientIpAddress": "10.0.0.9", "UrlHost": "mail.corp.example", "Method": "GET", "HttpStatus": "200"}
    base |= {"UserAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "AnchorMailbox": "SMTP:alice@corp.example"}
    rows = [
        base
        | {"DateTime": f"2021-03-03T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.{i % 997:03d}Z"}
        | {"UrlStem": f"/owa/{i % 977}.js"}
        for i in range(ROWS_PER_LOG)
    ]
    return httpproxy_log(rows)


def _case(root: Path, logs: int, data: bytes) -> Path:
    folder = root / f"logs{logs}"
    folder.mkdir()
    for i in range(logs):  # the same rows under different names: each file is collected and read
        (folder / f"HttpProxy_20210303{i:02d}-1.LOG").write_bytes(data)
    case = root / f"case{logs}"
    assert main(["collect", str(folder), "--case", str(case), "--host", "EXCH01", "-q"]) == ExitCode.OK
    return case


def _measure(case: Path) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(case)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_eight_times_the_events_in_the_same_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _log_bytes()
    small, large = _measure(_case(tmp_path, 2, data)), _measure(_case(tmp_path, 16, data))
    capsys.readouterr()
    # every row is on the timeline (plus each log file's two source times)
    assert small["events"] == 2 * (ROWS_PER_LOG + 2) and large["events"] == 16 * (ROWS_PER_LOG + 2)
    assert large["bytes"] > 7 * small["bytes"]  # eight times the output ...
    grew = large["peak"] - small["peak"]
    # ... in the same memory: holding the large timeline whole would take well over 100 MB more
    assert grew < 40 << 20, f"peak grew by {grew >> 20} MiB for 8x the events ({small['peak'] >> 20} MiB before)"
