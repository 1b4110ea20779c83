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
engines are compared instead.

``--decide`` measures what the analyzer's default engine rests on (issue 15): a generated web root (mostly small
``.aspx``/``.js``/``.css``/``.html`` files, some big bundles and images, the project's web shell family samples),
then per rule set (own; own + corpus; own + signature-base when ``$TRIAGE_SIGNATURE_BASE`` names its ``yara``
folder) and per rule file: each file compiled alone in yara-x (relaxed regex dialect where strict rejects it) and in
yara-python, CPU seconds to scan a sample of the web root, the matches of both, and the engine that wins. The
table ends with the decision per set. ``--command`` times the whole command a user runs,
``triage analyze --only yara -j N`` over a collected copy of the web root against ``yara -r -p N`` with the same
rules on the same files, alternating rounds, ratio per round, median, same match count. Usage:

  python benchmarks/yara_scan.py [--pages 1500] [--big-mb 24] [--yara DIR ... | --own-only] [--jobs 2] [--repeat 2]
  python benchmarks/yara_scan.py --decide [--webroot-files 6000] [--sample 6]
  python benchmarks/yara_scan.py --command [--webroot-files 6000] [--rounds 3] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
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
    compile_rules,
    engine_versions,
    file_externals,
    find_rule_files,
    load_rules,
)

CORPUS_RULES = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "yara"
SIGNATURE_BASE_ENV = "TRIAGE_SIGNATURE_BASE"  # a signature-base checkout's yara/ folder (not shipped, not fetched)
TRIAGE = Path(sys.executable).with_name("triage")
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


# -- a web root of thousands of files ----------------------------------------------------------------------
_JS = (
    *("function", "return", "var", "this", "null", "true", "false", "new", "typeof", "if", "else", "for", "while"),
    *("e", "t", "n", "r", "i", "o", "a", "s", "u", "l", "c", "d", "prototype", "length", "push", "call", "apply"),
    *("document", "window", "getElementById", "addEventListener", "innerHTML", "style", "className", "ajax"),
    *("owa", "mailbox", "calendar", "folder", "message", "json", "url", "data", "value", "items", "options"),
)
_PUNCT = ("(", ")", "{", "}", ";", ",", ".", "=", "==", "+", "&&", "||", "!", "[", "]", ":", "?", '"x"', "0", "1")
_CSS = ("div", ".ms-Button", "#owaRoot", "span", "color:#333", "margin:0", "padding:4px", "font-size:12px")
_HTML = ('<div class="row">', "<span>", "</span>", "</div>", '<a href="/owa/">', "</a>", "<p>", "</p>", "text")
# size classes (KiB) and weights: mostly a few KiB, a few bundles of MiBs (mean ~54 KiB, like a real web root)
_SIZES = ((1, 20), (2, 15), (4, 20), (8, 15), (16, 12), (32, 8), (64, 5), (256, 3), (1024, 1.5), (4096, 0.5))
_EXTS = (
    (".aspx", 30),
    (".js", 25),
    (".css", 15),
    (".html", 15),
    (".png", 5),
    (".ascx", 5),
    (".config", 2),
    (".txt", 3),
)
_HEADS = {
    ".aspx": b'<%@ Page Language="C#" AutoEventWireup="true" Inherits="Owa.Page" %>\r\n<html><body>',
    ".ascx": b'<%@ Control Language="C#" %>\r\n<div>',
    ".html": b"<!DOCTYPE html><html><body>",
    ".config": b'<?xml version="1.0"?>\r\n<configuration><appSettings>',
}


def _text_pool(rng: random.Random, tokens: tuple[str, ...], n: int, sep: str = "") -> bytes:
    return sep.join(rng.choice(tokens) for _ in range(n)).encode()


# a web root of a few hundred bigger files (bundles, big pages, images of 256 KiB - 8 MiB)
BIG_SIZES = ((256, 30), (512, 25), (1024, 25), (2048, 12), (4096, 6), (8192, 2))


def make_webroot(
    root: Path, files: int = 6000, seed: int = 15, sizes: tuple[tuple[int, float], ...] = _SIZES
) -> list[Path]:
    """A volume whose ``inetpub/wwwroot`` holds ``files`` web files plus the project's web shell family samples.

    Contents are minified-looking JavaScript, CSS, HTML and pages (sliced from generated pools, so making 300 MB
    takes seconds) and random bytes behind a PNG header; the shells go to ``aspnet_client/system_web``. ``sizes``:
    (KiB, weight) classes of the file sizes (default: mostly a few KiB; :data:`BIG_SIZES` for bigger files).
    """
    from triage.testing.webshells import family_samples

    rng = random.Random(seed)
    web = root / "inetpub" / "wwwroot"
    js = _text_pool(rng, _JS + _PUNCT, 300_000)
    pools = {
        ".js": js,
        ".css": _text_pool(rng, (*_CSS, "{", "}", ";"), 150_000, " "),
        ".html": _text_pool(rng, (*_HTML, "\r\n"), 150_000),
        ".txt": _text_pool(rng, WORDS, 150_000, " "),
    }
    pools[".aspx"] = pools[".ascx"] = pools[".config"] = pools[".html"][: len(js) // 2] + js[: len(js) // 2]
    ks, kw = zip(*sizes, strict=True)
    es, ew = zip(*_EXTS, strict=True)
    out = []
    for i in range(files):
        ext, n = rng.choices(es, ew)[0], rng.choices(ks, kw)[0] * 1024
        d = web / f"site{i % 7}" / f"dir{(i // 7) % 40:02d}"
        d.mkdir(parents=True, exist_ok=True)
        if ext == ".png":
            body = b"\x89PNG\r\n\x1a\n" + rng.randbytes(n)
        else:
            pool_ = pools[ext]
            start = rng.randrange(len(pool_))
            body = _HEADS.get(ext, b"") + (pool_[start:] + pool_ * (1 + n // len(pool_)))[:n]
        p = d / f"f{i:05d}{ext}"
        p.write_bytes(body)
        out.append(p)
    for sample in family_samples():
        p = web / "aspnet_client" / "system_web" / sample.name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(sample.data)
        out.append(p)
    return out


def rule_sets(own_only: bool = False) -> dict[str, list[RuleFile]]:
    """The rule sets measured: own; own + corpus (when present); own + signature-base (``$TRIAGE_SIGNATURE_BASE``)."""

    def with_extra(extra: list[str]) -> list[RuleFile]:
        taken: set[str] = set()
        return find_rule_files(own_rule_paths(), "triage", taken) + find_rule_files(extra, "third_party", taken)

    sets = {"own": with_extra([])}
    if own_only:
        return sets
    if CORPUS_RULES.is_dir():
        sets["own + corpus"] = with_extra([str(CORPUS_RULES)])
    else:
        print(f"(own + corpus skipped: no {CORPUS_RULES})")
    sb = os.environ.get(SIGNATURE_BASE_ENV)
    if sb and Path(sb).is_dir():
        sets["own + signature-base"] = with_extra([sb])
    else:
        print(f"(own + signature-base skipped: set ${SIGNATURE_BASE_ENV} to a signature-base yara/ folder)")
    return sets


def _cpu_scan(compiled: CompiledRules, root: Path, files: list[Path]) -> tuple[float, set[tuple[str, str]]]:
    c0 = time.process_time()
    found = scan_all(compiled, root, files)
    return time.process_time() - c0, found


def decide(name: str, rule_files: list[RuleFile], root: Path, files: list[Path], slack: float = 1.25) -> dict:
    """Per rule file: CPU seconds of each engine over ``files`` and the winner; then the set's decision.

    A file goes to yara-python only when yara-x (strict, else relaxed) is more than ``slack`` times slower, or
    rejects it in both dialects. Returns ``{"files": [...], "yara_python": [paths], "totals": {...}}``.
    """
    rows = []
    print(f"\nengine per rule file, {name}: {len(rule_files)} files, scanning {len(files)} web root files")
    print(f"  {'rule file':<44} {'yara-x':>9} {'yara-py':>9} {'ratio':>6}  matches  choice")
    for rf in rule_files:
        yx = compile_rules([rf], engine=YARA_X, fallback=RELAXED_FIRST)
        yp = compile_rules([rf], engine=YARA_PYTHON, fallback=OTHER_ENGINE)
        yx_eng, yp_eng = yx.files[0].engine, yp.files[0].engine
        yx_cpu, yx_found = _cpu_scan(yx, root, files) if yx_eng.startswith(YARA_X) else (float("inf"), set())
        yp_cpu, yp_found = _cpu_scan(yp, root, files) if yp_eng == YARA_PYTHON else (float("inf"), set())
        if yx_eng.startswith(YARA_X) and yp_eng == YARA_PYTHON and yx_found != yp_found:
            print(f"  MISMATCH {rf.path.name}: {sorted(yx_found ^ yp_found)[:5]}")
        choice = YARA_PYTHON if yx_cpu > slack * yp_cpu else (yx_eng or "skipped")
        ratio = yx_cpu / yp_cpu if yp_cpu not in (0.0, float("inf")) else float("nan")
        rows.append(
            {
                "file": rf.path.name,
                "path": str(rf.path),
                "yara_x_engine": yx_eng,
                "yara_x_cpu": yx_cpu,
                "yara_python_cpu": yp_cpu,
                "matches": len(yx_found | yp_found),
                "choice": choice,
            }
        )
        print(
            f"  {rf.path.name[:44]:<44} {yx_cpu:9.3f} {yp_cpu:9.3f} {ratio:6.2f}  {len(yx_found | yp_found):7d}  "
            f"{choice}"
        )
    finite = [r for r in rows if r["yara_x_cpu"] != float("inf") and r["yara_python_cpu"] != float("inf")]
    tot_x = sum(r["yara_x_cpu"] for r in finite)
    tot_p = sum(r["yara_python_cpu"] for r in finite)
    slow = [r["path"] for r in rows if r["choice"] == YARA_PYTHON]
    print(
        f"  total over files both engines compile: yara-x {tot_x:.2f} CPU s, yara-python {tot_p:.2f} CPU s "
        f"(yara-python / yara-x {tot_p / tot_x if tot_x else float('nan'):.2f})"
    )
    if slow:
        print(
            f"  decision, {name}: yara-x (relaxed-first) except {len(slow)} file(s) for yara-python: "
            + ", ".join(Path(p).name for p in slow)
        )
    else:
        print(f"  decision, {name}: yara-x (relaxed-first) for every file; no file is faster in yara-python")
    return {"files": rows, "yara_python": slow, "totals": {"yara_x_cpu": tot_x, "yara_python_cpu": tot_p}}


def _triage_analyze(case: Path, extra: list[str], jobs: int) -> int:
    cmd = [str(TRIAGE), "analyze", str(case), "--only", "yara", "-j", str(jobs), "--force", "-q", "--json"]
    for d in extra:
        cmd += ["--yara", d]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(json.loads(out)["findings"])


def triage_pairs(case: Path) -> set[tuple[str, str]]:
    """(path below the volume root, rule) of every ``yara`` finding in the case (read after the timed rounds)."""
    from triage.case import Case
    from triage.report import load_findings

    df = load_findings(Case.open(case))
    out = set()
    for attrs in df.loc[df["analyzer"] == "yara", "attributes"]:
        a = json.loads(attrs)
        out.add((a["path"].split(":/", 1)[-1].lstrip("/"), a["rule"]))
    return out


def _cli_cmd(rule_files: list[RuleFile], target: Path, jobs: int) -> list[str]:
    defines = [
        a for name in ("filename", "filepath", "extension", "filetype", "owner", "md5") for a in ("-d", f"{name}=")
    ]
    sources = [f"{f.namespace}:{f.path}" for f in rule_files]
    return ["yara", "-r", "-w", "-p", str(jobs), *defines, *sources, str(target)]


def cli_pairs(rule_files: list[RuleFile], vol: Path, target: Path, jobs: int) -> set[tuple[str, str]]:
    """(path below the volume root, rule) of every match ``yara -r`` reports."""
    found = cli_matches(_cli_cmd(rule_files, target, jobs))
    return {(Path(path).relative_to(vol).as_posix(), rule) for path, rule in found}


def _engine_only(rule_files: list[RuleFile], vol: Path, files: list[Path], jobs: int) -> set[tuple[str, str]]:
    """The engine alone: the compiled set from the cache in ``jobs`` forked processes, every file through
    ``CompiledRules.scan`` (no case, no records): what is left of triage's time when the bookkeeping is gone."""
    chunks = [files[i::jobs] for i in range(jobs)]
    with ProcessPoolExecutor(jobs, mp_context=get_context("fork")) as ex:
        parts = ex.map(_worker_scan, [(rule_files, YARA_X, RELAXED_FIRST, str(vol), c) for c in chunks])
        found = set().union(*parts)
    return {(Path(path).relative_to(vol).as_posix(), rule) for path, rule in found}


def _children_cpu() -> float:
    """User + system CPU seconds of this process's waited-for children so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measure_command(
    name: str,
    rule_files: list[RuleFile],
    extra: list[str],
    case: Path,
    vol: Path,
    target: Path,
    jobs: int,
    rounds: int,
    files: list[Path] | None = None,
) -> dict | None:
    """``triage analyze --only yara -j N`` against ``yara -r -p N``: alternating rounds, ratio per round, median.

    With ``files`` an engine-only row runs in the same rounds (the compiled set in N forked processes, no case).
    Checks that triage and ``yara`` report the same (file, rule) pairs; returns the medians and the check.
    """
    if not shutil.which("yara"):
        print(f"  {name}: yara CLI not installed (apt-get install -y yara): row skipped")
        return None
    contenders = {
        "yara": lambda: subprocess.run(_cli_cmd(rule_files, target, jobs), check=True, capture_output=True),
        "triage": lambda: _triage_analyze(case, extra, jobs),
    }
    if files is not None:
        contenders["engine only"] = lambda: _engine_only(rule_files, vol, files, jobs)
    for fn in contenders.values():  # warm-up: fills the compiled-rule cache, as a first run would; page cache
        fn()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    cpus: dict[str, list[float]] = {k: [] for k in contenders}  # CPU s of the processes it ran (load-proof-ish)
    for r in range(rounds):
        for label in list(contenders) if r % 2 == 0 else list(reversed(contenders)):
            c0, t0 = _children_cpu(), time.perf_counter()
            contenders[label]()
            times[label].append(time.perf_counter() - t0)
            cpus[label].append(_children_cpu() - c0)
    ours, theirs = triage_pairs(case), cli_pairs(rule_files, vol, target, jobs)
    ratios = [t / c for t, c in zip(times["triage"], times["yara"], strict=True)]
    out = {
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
        "triage_s": statistics.median(times["triage"]),
        "yara_s": statistics.median(times["yara"]),
        "triage_cpu_s": statistics.median(cpus["triage"]),
        "yara_cpu_s": statistics.median(cpus["yara"]),
        "cpu_ratio_median": statistics.median(t / c for t, c in zip(cpus["triage"], cpus["yara"], strict=True)),
        "load_average": os.getloadavg()[0],
        "triage_pairs": len(ours),
        "cli_pairs": len(theirs),
        "same_pairs": ours == theirs,
        "differ": sorted(ours ^ theirs)[:10],
    }
    line = (
        f"  {name:<22} triage {out['triage_s']:7.2f} s  yara -r -p {jobs} {out['yara_s']:6.2f} s  "
        f"triage/yara {out['ratio_median']:5.2f} (rounds {', '.join(f'{r:.2f}' for r in ratios)})  "
        f"CPU s {out['triage_cpu_s']:.2f} / {out['yara_cpu_s']:.2f} = {out['cpu_ratio_median']:.2f}  "
        f"load {out['load_average']:.1f}"
    )
    if files is not None:
        eng = [e / c for e, c in zip(times["engine only"], times["yara"], strict=True)]
        out["engine_ratio_median"] = statistics.median(eng)
        out["engine_s"] = statistics.median(times["engine only"])
        line += f"  engine only/yara {out['engine_ratio_median']:5.2f}"
    print(line + f"  (file, rule) pairs {len(ours)} / {len(theirs)}" + ("" if ours == theirs else "  PAIRS DIFFER"))
    if ours != theirs:
        print(f"    differing pairs (first 10): {out['differ']}")
    return out


def command_rows(
    work: Path, jobs: int, rounds: int, small_files: int = 6000, big_files: int = 300, own_only: bool = False
) -> list[dict]:
    """The whole-command rows of issue 15: per web root (small files; bigger files) and rule set (own; own +
    third-party), triage / ``yara -r -p N`` medians with the engine-only ratio and the pair check."""
    rows = []
    for label, count, sizes in (("small files", small_files, _SIZES), ("bigger files", big_files, BIG_SIZES)):
        vol = work / label.replace(" ", "-")
        files = make_webroot(vol, count, sizes=sizes)
        target = vol / "inetpub" / "wwwroot"
        total = sum(p.stat().st_size for p in files)
        print(f"\nweb root, {label}: {len(files)} files, {total / 2**20:.0f} MiB")
        case = work / f"case-{label.replace(' ', '-')}"
        subprocess.run(
            [str(TRIAGE), "collect", str(vol), "--case", str(case), "--as", "volume", "--host", "WEB01", "-q"],
            check=True,
            capture_output=True,
        )
        for name, rfs in rule_sets(own_only).items():
            extra = [str(CORPUS_RULES)] if "corpus" in name else []
            extra += [os.environ[SIGNATURE_BASE_ENV]] if "signature-base" in name else []
            res = measure_command(name, rfs, extra, case, vol, target, jobs, rounds, files)
            if res is not None:
                rows.append(res | {"web root": label, "files": len(files), "mib": total / 2**20, "rules": name})
        for dirpath, dirs, _ in os.walk(case):  # the collected case is read-only evidence: make it removable
            for d in dirs:
                os.chmod(os.path.join(dirpath, d), 0o755)
    return rows


def main_webroot(args: argparse.Namespace) -> int:
    """``--decide`` and ``--command``: the web root measurements."""
    with tempfile.TemporaryDirectory(prefix="triage-yara-webroot-", dir=os.environ.get("TMPDIR")) as tmp:
        tmpd = Path(tmp)
        os.environ["TRIAGE_YARA_CACHE"] = str(tmpd / "cache")
        print(f"engines {engine_versions()}")
        if args.decide:
            vol = tmpd / "vol"
            files = make_webroot(vol, args.webroot_files)
            total = sum(p.stat().st_size for p in files)
            print(f"web root: {len(files)} files, {total / 2**20:.0f} MiB")
            sample = [p for i, p in enumerate(files) if i % args.sample == 0 or "aspnet_client" in p.parts]
            for name, rfs in rule_sets(args.own_only).items():
                decide(name, rfs, vol, sample)
        if args.command:
            print(
                f"\nwhole command, {args.rounds} alternating rounds, ratio per round (triage / yara; <= 1: triage "
                "as fast or faster)"
            )
            rows = command_rows(
                tmpd / "command", args.jobs, args.rounds, args.webroot_files, args.big_files, args.own_only
            )
            if not all(r["same_pairs"] for r in rows):
                print("the (file, rule) pairs of triage and yara differ (see above)")
                return 1
        print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=1500, help="number of server pages (1-64 KiB each)")
    ap.add_argument("--big-mb", type=int, default=24, help="size of each of the 4 logs and 2 binaries, MiB")
    ap.add_argument("--yara", action="append", default=None, metavar="DIR", help="third-party rule sets")
    ap.add_argument("--own-only", action="store_true", help="only the project's rules (no third-party sets)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes for the pool row")
    ap.add_argument("--repeat", type=int, default=2, help="runs per contender (best time counts)")
    ap.add_argument("--decide", action="store_true", help="per rule file engine table on a generated web root")
    ap.add_argument("--command", action="store_true", help="whole-command rows: triage analyze vs yara -r -p N")
    ap.add_argument("--webroot-files", type=int, default=6000, help="files of the generated web root")
    ap.add_argument("--big-files", type=int, default=300, help="--command: files of the web root of bigger files")
    ap.add_argument("--sample", type=int, default=6, help="--decide scans every Nth web root file (and the shells)")
    ap.add_argument("--rounds", type=int, default=3, help="--command: alternating rounds")
    args = ap.parse_args()
    if args.command:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from startup import compile_project

        compile_project()  # as an installed copy has it: no triage run pays for compiling (PYTHONDONTWRITEBYTECODE)
    if args.decide or args.command:
        return main_webroot(args)

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
