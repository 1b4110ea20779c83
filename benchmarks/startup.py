"""Start-up cost: ``triage --help``, ``triage --version`` and ``triage run`` of a tiny EVTX, whole processes.

Each round runs every contender once, in turn (alternating, so load changes hit all alike): ``python -c pass``
(the interpreter alone), ``triage --help``, ``triage --version``, a parse-only pass over the tiny EVTX
(``evtx`` in a fresh interpreter) and ``triage run`` of it into a new case. Per round, each command's time is
divided by its baseline's (``--help``/``--version`` by ``python -c pass``; ``run`` by the parse-only pass);
the median over the rounds is printed, with the median seconds. ``--importtime`` also prints the ten
slowest imports of ``triage --help`` (``python -X importtime``).

The project's modules are byte-compiled first (``compileall``), as ``pip install`` does: a checkout run with
``PYTHONDONTWRITEBYTECODE`` set would otherwise compile every module in every measured command.
Usage: python benchmarks/startup.py [--rounds 5] [--importtime]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PARSE = "import sys, evtx\nfor r in evtx.PyEvtxParser(sys.argv[1]).records_json():\n    pass\n"


def tiny_evtx(path: Path, events: int = 4) -> Path:
    """A Security log of a few logons (the shape of the issue's 4-event file)."""
    from triage.testing.evtx import logon_log

    return logon_log(path, events)


def _triage() -> list[str]:
    exe = Path(sys.executable).with_name("triage")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from triage.cli import console; sys.exit(console())"]


CPU: dict[str, list[float]] = {}  # command -> CPU seconds (user + system) of its whole process tree, per round


def _time(cmd: list[str], ok: tuple[int, ...] = (0,), name: str = "") -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    took = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # a process's reaped children count in it
    if name:
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        CPU.setdefault(name, []).append(cpu)
    if r.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}")
    return took


def compile_project() -> None:
    """Byte-compile the installed triage packages (what an installed copy has), quietly."""
    import importlib.util

    dirs = []
    for name in ("triage", "analyzers", "collectors"):
        spec = importlib.util.find_spec(name)
        dirs += list(spec.submodule_search_locations or []) if spec else []
    subprocess.run([sys.executable, "-m", "compileall", "-q", *dirs], stdout=subprocess.DEVNULL, check=False)


def measure(work: Path, rounds: int = 5) -> dict[str, dict[str, float]]:
    """Median seconds and median per-round ratio (command / baseline) of each start-up measure."""
    compile_project()
    log = tiny_evtx(work / "Security.evtx")
    tri = _triage()
    times: dict[str, list[float]] = {k: [] for k in ("pass", "help", "version", "parse", "run")}
    for r in range(rounds):
        times["pass"].append(_time([sys.executable, "-c", "pass"], name="pass"))
        times["help"].append(_time([*tri, "--help"], name="help"))
        times["version"].append(_time([*tri, "--version"], name="version"))
        times["parse"].append(_time([sys.executable, "-c", PARSE, str(log)], name="parse"))
        case = work / f"case{r}"
        # exit 4: a lone event log is insufficient evidence for a verdict; the run itself succeeded
        run = [*tri, "run", str(log), "--case", str(case), "--examiner", "bench", "-q"]
        times["run"].append(_time(run, (0, 4), name="run"))
        shutil.rmtree(case, ignore_errors=True)
    base = {"help": "pass", "version": "pass", "run": "parse"}
    out: dict[str, dict[str, float]] = {}
    for name, b in base.items():
        ratios = [t / max(tb, 1e-9) for t, tb in zip(times[name], times[b], strict=True)]
        out[name] = {
            "seconds": statistics.median(times[name]),
            "baseline_seconds": statistics.median(times[b]),
            "ratio": statistics.median(ratios),
            "cpu_seconds": statistics.median(CPU[name]),
            "baseline_cpu_seconds": statistics.median(CPU[b]),
            "rounds": times[name],
        }
    return out


def slowest_imports(n: int = 10) -> list[tuple[int, str]]:
    """The ``n`` largest cumulative import times (µs) of ``triage --help``."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "from triage.cli import main; main(['--help'])"],
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in r.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    return sorted(rows, reverse=True)[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--importtime", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="triage-startup-", dir=os.environ.get("TMPDIR")) as tmp:
        res = measure(Path(tmp), args.rounds)
    labels = {
        "help": ("triage --help", "python -c pass"),
        "version": ("triage --version", "python -c pass"),
        "run": ("triage run, 4-event EVTX", "evtx parse-only"),
    }
    print(f"{args.rounds} alternating rounds, median of per-round ratios (load {os.getloadavg()[0]:.1f} at the end)")
    print("  (CPU: user + system seconds of the command's whole process tree, median)")
    for key, (what, base) in labels.items():
        m = res[key]
        print(
            f"  {what:28s} {m['seconds']:6.2f} s (CPU {m['cpu_seconds']:5.2f})   {base:16s} "
            f"{m['baseline_seconds']:6.3f} s (CPU {m['baseline_cpu_seconds']:5.2f})   {m['ratio']:6.1f}x   "
            f"rounds: {', '.join(f'{t:.2f}' for t in m['rounds'])}"
        )
    if args.importtime:
        print("slowest imports of triage --help (cumulative µs):")
        for us, name in slowest_imports():
            print(f"  {us:9,d} {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
