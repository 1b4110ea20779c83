"""YARA file scanning: the triage engine adapter against the ``yara`` command-line tool, same files and rules.

Writes a synthetic evidence set (server pages, IIS-style logs, binaries, a few planted shells), takes the project's
rules plus the third-party sets given with ``--yara`` (default: the shared corpus rule folder when present), and
times in one run:

  yara CLI            ``yara -r -p 1`` (one thread) and ``yara -r`` (its default threads), rules from source
  yara CLI -C         the same with rules precompiled by ``yarac`` (no compile inside the timed run)
  triage, 1 process   rules loaded from the compiled-rule cache, every file through ``CompiledRules.scan``, for
                      the default (yara-x, files it rejects in yara-python), relaxed-first (those files in yara-x
                      relaxed instead) and yara-python first
  triage, N processes the same split over ``--jobs`` forked workers (each loads the cache once), as the runner does

It checks that every contender reports the same (file, rule) pairs, prints ratios against the CLI (above 1 means
triage is faster), and prints compile times without the cache and with it (cold write, warm load).

If the ``yara`` tool is missing (``apt-get install -y yara``) the CLI rows are skipped and the two Python
engines are compared instead. Usage:

  python benchmarks/yara_scan.py [--pages 1500] [--big-mb 24] [--yara DIR ... | --own-only] [--jobs 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from analyzers.yara.content import own_rule_paths
from analyzers.yara.engine import (
    OTHER_ENGINE,
    RELAXED_FIRST,
    YARA_PYTHON,
    YARA_X,
    CompiledRules,
    RuleFile,
    engine_versions,
    file_externals,
    find_rule_files,
    load_rules,
)

CORPUS_RULES = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "yara"
WORDS = (
    *("the", "page", "load", "request", "response", "server", "script", "runat", "div", "span", "table", "form"),
    *("input", "button", "label", "asp", "net", "web", "config", "session", "user", "mailbox", "owa", "ecp"),
    *("exchange", "calendar", "contact", "message", "folder"),
)
PLANTED = {
    "chopper.aspx": b'<%@ Page Language="Jscript"%><%eval(Request.Item["b"],"unsafe");%>',
    "cmd.aspx": b'<%@ Page Language="C#"%><script runat="server">void R(string a){var p=new System.Diagnostics.'
    b'ProcessStartInfo("cmd.exe","/c "+a);p.RedirectStandardOutput=true;System.Diagnostics.Process.Start(p);}'
    b"</script>",
    "oab.aspx": b'OfflineAddressBook\r\nExternalUrl : http://f/<script language="JScript" runat="server">'
    b'function Page_Load(){eval(Request["b"],"unsafe");}</script>\r\n',
}


def make_files(root: Path, pages: int, big_mb: int, seed: int = 7) -> list[Path]:
    """Pages of 1-64 KiB, four IIS-style logs and two binaries of ``big_mb`` MiB each, three planted shells."""
    rng = random.Random(seed)
    out = []
    web = root / "inetpub" / "wwwroot" / "app"
    web.mkdir(parents=True)
    for i in range(pages):
        n = rng.choice((1, 4, 16, 64)) * 1024
        body = " ".join(rng.choice(WORDS) for _ in range(n // 6)).encode()
        p = web / f"page{i:05d}.aspx"
        p.write_bytes(b'<%@ Page Language="C#" %>\r\n<html><body>' + body[:n] + b"</body></html>\r\n")
        out.append(p)
    logs = root / "inetpub" / "logs" / "LogFiles" / "W3SVC1"
    logs.mkdir(parents=True)
    line = b"2021-03-03 02:10:11 10.0.0.5 GET /owa/auth/logon.aspx - 443 - 10.0.0.20 Mozilla/5.0 - 200 0 0 15\r\n"
    for i in range(4):
        p = logs / f"u_ex2103{i:02d}.log"
        p.write_bytes(line * (big_mb * 1024 * 1024 // len(line)))
        out.append(p)
    bins = root / "Windows" / "Temp"
    bins.mkdir(parents=True)
    for i in range(2):
        p = bins / f"blob{i}.bin"
        p.write_bytes(b"MZ" + rng.randbytes(big_mb * 1024 * 1024))
        out.append(p)
    for name, data in PLANTED.items():
        p = root / "inetpub" / "wwwroot" / "aspnet_client" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        out.append(p)
    return sorted(out)


def logical(root: Path, p: Path) -> str:
    return "C:/" + p.relative_to(root).as_posix()


def scan_all(compiled: CompiledRules, root: Path, files: list[Path]) -> set[tuple[str, str]]:
    found = set()
    for p in files:
        with open(p, "rb") as fh:
            head = fh.read(16)
        for m in compiled.scan(p, file_externals(logical(root, p), head)):
            found.add((str(p), m.rule))
    return found


_WORKER: dict[str, object] = {}
# label -> (engine tried first, fallback order); the first is the analyzer's default
CONFIGS = {
    "yara-x, fallback yara-python": (YARA_X, OTHER_ENGINE),
    "yara-x, relaxed-first": (YARA_X, RELAXED_FIRST),
    "yara-python first": (YARA_PYTHON, OTHER_ENGINE),
}


def _worker_scan(args: tuple[list[RuleFile], str, str, str, list[Path]]) -> set[tuple[str, str]]:
    files, engine, fallback, root, chunk = args
    if "rules" not in _WORKER:  # once per worker process, from the cache
        _WORKER["rules"] = load_rules(files, engine=engine, fallback=fallback)
    return scan_all(_WORKER["rules"], Path(root), chunk)  # type: ignore[arg-type]


def timed(label: str, fn, results: dict[str, tuple[float, float, set[tuple[str, str]]]], repeat: int) -> None:
    """Best wall time and best CPU time (this process and its children) of ``repeat`` runs."""
    walls, cpus, found = [], [], set()
    for _ in range(repeat):
        r0, c0, t0 = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
            time.perf_counter(),
        )
        found = fn()
        walls.append(time.perf_counter() - t0)
        r1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(
            sum(getattr(b, f) - getattr(a, f) for a, b in ((r0, r1), (c0, c1)) for f in ("ru_utime", "ru_stime"))
        )
    results[label] = (min(walls), min(cpus), found)
    print(f"  {label:<34} wall {min(walls):7.3f} s  cpu {min(cpus):7.3f} s  {len(found)} matches")


def cli_matches(cmd: list[str]) -> set[tuple[str, str]]:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    found = set()
    for line in out.splitlines():
        rule, _, path = line.partition(" ")
        found.add((path, rule.split(":")[-1]))
    return found


def measure_scan(
    tmpd: Path,
    root: Path,
    files: list[Path],
    rule_files: list[RuleFile],
    jobs: int,
    repeat: int,
    configs: dict[str, tuple[str, str]] | None = None,
    cli_skip: set[str] | None = None,
) -> dict[str, tuple[float, float, set[tuple[str, str]]]]:
    """(best wall s, best CPU s, matches) per contender: the yara CLI (when installed) and triage.

    Rows: ``yara CLI -p 1``, ``yara CLI (default threads)``, the same with ``-C`` when ``yarac`` exists, and per
    config ``triage <label>, 1 process`` plus, for yara-x first configs, ``triage <label>, <jobs> processes``.
    ``cli_skip``: paths of rule files the CLI is not given (those triage skipped as not compiling). The
    compiled-rule cache must already be warm in ``$TRIAGE_YARA_CACHE`` for the timings to match a real run's.
    """
    configs = configs or CONFIGS
    results: dict[str, tuple[float, float, set[tuple[str, str]]]] = {}
    yara_cli = shutil.which("yara")
    if yara_cli:
        defines = [
            a for name in ("filename", "filepath", "extension", "filetype", "owner", "md5") for a in ("-d", f"{name}=")
        ]
        sources = [f"{f.namespace}:{f.path}" for f in rule_files if str(f.path) not in (cli_skip or set())]
        base = [yara_cli, "-r", "-w", "-e", *defines]
        compiled_bin = tmpd / "rules.yarc"
        if shutil.which("yarac"):
            subprocess.run(["yarac", "-w", *defines, *sources, str(compiled_bin)], check=True)
        timed("yara CLI -p 1", lambda: cli_matches([*base, "-p", "1", *sources, str(root)]), results, repeat)
        timed("yara CLI (default threads)", lambda: cli_matches([*base, *sources, str(root)]), results, repeat)
        if compiled_bin.exists():
            timed(
                "yara CLI -C -p 1",
                lambda: cli_matches([*base, "-p", "1", "-C", str(compiled_bin), str(root)]),
                results,
                repeat,
            )
            timed(
                "yara CLI -C (default threads)",
                lambda: cli_matches([*base, "-C", str(compiled_bin), str(root)]),
                results,
                repeat,
            )

    def ours(engine: str, fallback: str) -> set[tuple[str, str]]:
        # loading the compiled set from the cache is part of the timed run, as it is for yara -C
        return scan_all(load_rules(rule_files, engine=engine, fallback=fallback), root, files)

    def pool(engine: str, fallback: str) -> set[tuple[str, str]]:
        chunks = [files[i::jobs] for i in range(jobs)]
        with ProcessPoolExecutor(jobs, mp_context=get_context("fork")) as ex:
            parts = ex.map(_worker_scan, [(rule_files, engine, fallback, str(root), c) for c in chunks])
            return set().union(*parts)

    for label, (engine, fallback) in configs.items():
        timed(f"triage {label}, 1 process", lambda e=engine, f=fallback: ours(e, f), results, repeat)
        if engine == YARA_X:
            timed(f"triage {label}, {jobs} processes", lambda e=engine, f=fallback: pool(e, f), results, repeat)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=1500, help="number of server pages (1-64 KiB each)")
    ap.add_argument("--big-mb", type=int, default=24, help="size of each of the 4 logs and 2 binaries, MiB")
    ap.add_argument("--yara", action="append", default=None, metavar="DIR", help="third-party rule sets")
    ap.add_argument("--own-only", action="store_true", help="only the project's rules (no third-party sets)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes for the pool row")
    ap.add_argument("--repeat", type=int, default=2, help="runs per contender (best time counts)")
    args = ap.parse_args()

    extra = args.yara if args.yara is not None else ([str(CORPUS_RULES)] if CORPUS_RULES.is_dir() else [])
    extra = [] if args.own_only else extra
    taken: set[str] = set()
    rule_files = find_rule_files(own_rule_paths(), "triage", taken) + find_rule_files(extra, "third_party", taken)
    print(f"engines: {engine_versions()}; yara CLI: {shutil.which('yara') or 'not installed'}")
    print(f"rules: {len(rule_files)} files ({', '.join(f.path.name for f in rule_files)})")

    with tempfile.TemporaryDirectory(prefix="triage-yara-bench-") as tmp:
        tmpd = Path(tmp)
        root = tmpd / "C"
        files = make_files(root, args.pages, args.big_mb)
        total = sum(p.stat().st_size for p in files)
        print(f"files: {len(files)}, {total / 2**20:.1f} MiB\n")
        cache = tmpd / "cache"
        os.environ["TRIAGE_YARA_CACHE"] = str(cache)  # the pool's workers find the same cache

        print("compile (all rule files):")
        for label, (engine, fallback) in CONFIGS.items():
            t0 = time.perf_counter()
            c = load_rules(rule_files, engine=engine, fallback=fallback, use_cache=False)
            nocache = time.perf_counter() - t0
            t0 = time.perf_counter()
            load_rules(rule_files, engine=engine, fallback=fallback, cache_dir=cache)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            warm = load_rules(rule_files, engine=engine, fallback=fallback, cache_dir=cache)
            hit = time.perf_counter() - t0
            assert warm.cache["hit"]
            by = ", ".join(f"{k} {v}" for k, v in c.report()["by_engine"].items() if v)
            print(
                f"  {label:<24} no cache {nocache:.3f} s | cache miss (compile + write) {cold:.3f} s | "
                f"cache hit {hit:.3f} s ({nocache / hit:.1f}x faster than compiling) [{by}]"
            )
        skipped = [f for f in warm.files if f.status == "skipped"]
        if skipped:
            print(f"  skipped rule files: {', '.join(Path(f.path).name for f in skipped)}")

        print("\nscan (same files, same rules):")
        cli_skip = {str(f.path) for f in skipped}
        results = measure_scan(tmpd, root, files, rule_files, args.jobs, args.repeat, cli_skip=cli_skip)
        yara_cli = shutil.which("yara")

        default = next(iter(CONFIGS))
        reference = results[f"triage {default}, 1 process"][2]
        for label, (_, _, found) in results.items():
            if found != reference:
                print(f"  MISMATCH {label}: {sorted(found ^ reference)[:10]}")
        print("\nratios (the other's time / triage's time; above 1: triage is faster):")
        for label, (engine, _) in CONFIGS.items():
            if engine != YARA_X:
                continue
            one = results[f"triage {label}, 1 process"]
            many = results[f"triage {label}, {args.jobs} processes"]
            print(f" triage {label}:")
            for other, (wall, cpu, _) in results.items():
                if other.startswith("yara CLI"):
                    mine, mine_label = (one, "1 process") if "-p 1" in other else (many, f"{args.jobs} processes")
                    print(
                        f"  {other:<30} / triage {mine_label:<12} wall {wall / mine[0]:5.2f}  cpu {cpu / mine[1]:5.2f}"
                    )
        one = results[f"triage {default}, 1 process"]
        for label in CONFIGS:
            if label != default:
                r = results[f"triage {label}, 1 process"]
                print(
                    f"  triage {label} / triage {default} (1 process): "
                    f"wall {r[0] / one[0]:5.2f}  cpu {r[1] / one[1]:5.2f}"
                )
        if not yara_cli:
            print("  (yara CLI not installed: apt-get install -y yara; compared the two Python engines only)")
        for label in CONFIGS:
            r = results[f"triage {label}, 1 process"]
            print(
                f"throughput, triage {label}, 1 process: {total / 2**20 / r[0]:.0f} MiB/s wall, "
                f"{total / 2**20 / r[1]:.0f} MiB/s cpu"
            )
        print(
            f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (wall times suffer "
            "when it is above the core count; CPU times much less)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
