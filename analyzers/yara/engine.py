"""One small adapter over the two YARA engines: compile rule files with fallback, cache, scan.

``yara-x`` is the primary engine, chosen by measurement (``benchmarks/yara_scan.py --decide``: each rule file
alone in both engines over a generated 6,000-file web root): it needs 2.5x less CPU than ``yara-python``/libyara on
the project's rules and 2.3x less with the corpus's signature-base and NSA sets, and no rule file measured is
faster in libyara; 3-5x on big binaries. It compiles 5-10x slower, so compiled sets are cached on disk under a
hash of the rule bytes, the engine versions, the externals and the fallback order, compiled once (the command's
``preload_rules`` for ``--yara`` sets) and loaded by every worker. A rule file is compiled on its own terms:

1. with the preferred engine (``yara-x`` unless asked otherwise);
2. if that engine rejects it, with the other engine (``yara-python``, when installed);
3. if both reject it, with ``yara-x`` in relaxed regular-expression mode (libyara's lenient syntax);
4. if that fails too, it is skipped, and the compilers' messages say why.

With ``fallback="relaxed-first"`` steps 2 and 3 swap: a file that strict yara-x rejects for libyara-style
regular expressions then runs in yara-x too, which on the NSA web shell set scans about 3x faster than libyara.
When relaxed yara-x takes every yara-x file, they are compiled as one relaxed part (one scan per file, not two).

Compiled rules may therefore be held by up to three engine "parts"; a scan runs every part and merges the
matches. Third-party rule sets (signature-base, the NSA web shell rules) load unmodified, with the externals
they expect (``filename``, ``filepath``, ``extension``, ``filetype``, ``owner``, plus Loki's ``md5``).

Heavy imports (``yara_x``, ``yara``) happen inside functions, never at module import.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_FORMAT = "2"  # 2: relaxed-first sets hold one yara-x part where relaxed yara-x takes every file
EXTERNALS = ("filename", "filepath", "extension", "filetype", "owner", "md5")
RULE_SUFFIXES = (".yar", ".yara")
YARA_X = "yara-x"
YARA_X_RELAXED = "yara-x-relaxed"
YARA_PYTHON = "yara-python"
ENGINES = (YARA_X, YARA_PYTHON)
OTHER_ENGINE = "other-engine"  # a file yara-x rejects goes to yara-python, then to yara-x relaxed
RELAXED_FIRST = "relaxed-first"  # ... to yara-x relaxed, then to yara-python (one fast engine for nearly all)
FALLBACKS = (OTHER_ENGINE, RELAXED_FIRST)
MAX_MATCHES_PER_PATTERN = 1000  # bounds memory on logs where a short string matches everywhere
_RULE_DECL = re.compile(rb"^\s*(?:(?:private|global)\s+)*rule\s+\w+", re.MULTILINE)
# leading bytes -> the file type names Loki/THOR give the 'filetype' external (signature-base file-type list)
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "EXE"),
    (b"MDMP", "MDMP"),
    (b"PK\x03\x04", "ZIP"),
    (b"Rar!", "RAR"),
    (b"7z\xbc\xaf\x27\x1c", "7Z"),
    (b"MSCF", "CAB"),
    (b"GIF8", "GIF"),
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8\xff", "JPG"),
    (b"%PDF", "PDF"),
    (b"\xd0\xcf\x11\xe0", "OLE"),
    (b"\x1f\x8b", "GZIP"),
    (b"ElfFile", "EVTX"),
    (b"regf", "REGISTRY"),
)


class YaraUnavailable(RuntimeError):
    """Neither YARA engine can be imported."""


# -- rule files -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RuleFile:
    """A rule file to compile: where it is, its namespace, whose it is, and the bytes that were read."""

    path: Path
    namespace: str
    origin: str  # "triage" (signatures/yara) or "third_party" (--yara)
    data: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def rule_count(self) -> int:
        """Rules declared in the file by a text count (commented-out rules too); compiling gives the real count."""
        return len(_RULE_DECL.findall(self.data))


def rule_file_paths(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[Path, Path]]:
    """(root given, rule file) for every ``*.yar``/``*.yara`` under files or folders (recursively), sorted."""
    out: list[tuple[Path, Path]] = []
    for root in map(Path, paths):
        if root.is_dir():
            out.extend((root, p) for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in RULE_SUFFIXES)
        else:
            out.append((root, root))
    return out


def find_rule_files(
    paths: Iterable[str | os.PathLike[str]], origin: str, taken: set[str] | None = None
) -> list[RuleFile]:
    """Rule files under files or folders, read, each with a unique namespace (``<folder>/<stem>``)."""
    taken = taken if taken is not None else set()
    out: list[RuleFile] = []
    for root, p in rule_file_paths(paths):
        folder = "triage" if origin == "triage" else (root.name if root.is_dir() else p.parent.name)
        base = f"{folder}/{p.stem}"
        ns, i = base, 1
        while ns in taken:  # two sets may both hold an "apt_hafnium.yar"
            i += 1
            ns = f"{base}#{i}"
        taken.add(ns)
        out.append(RuleFile(path=p, namespace=ns, origin=origin, data=p.read_bytes()))
    return out


# -- compile results ---------------------------------------------------------------------------------------
@dataclass
class FileStatus:
    """How one rule file fared: compiled by which engine, or skipped and why."""

    path: str
    namespace: str
    origin: str
    sha256: str
    rules: int
    status: str  # compiled | skipped
    engine: str = ""
    message: str = ""  # the compiler errors that decided the outcome (also for files compiled by a fallback)
    warnings: list[str] = field(default_factory=list)


@dataclass
class StringHit:
    """One matched string instance."""

    identifier: str
    offset: int
    length: int


@dataclass
class Match:
    """One rule that matched, normalised across engines."""

    rule: str
    namespace: str
    engine: str
    tags: list[str]
    meta: dict[str, Any]
    strings: list[StringHit]
    string_count: int

    @property
    def first_offset(self) -> int | None:
        return min((s.offset for s in self.strings), default=None)


@dataclass
class _Part:
    engine: str
    namespaces: list[str]
    rules: Any = None
    scanner: Any = None
    # what the scanner was last given: set again only when it changes (six externals and a timeout per file
    # otherwise cost more than scanning a small page)
    timeout: int = -1
    globals_: dict[str, str] = field(default_factory=dict)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def engine_versions() -> dict[str, str]:
    """Installed engine versions (``absent`` when not installed); part of the cache key and fingerprints."""
    return {YARA_X: _version("yara-x"), YARA_PYTHON: _version("yara-python")}


def _import_yara_x() -> Any:
    try:
        import yara_x
    except ImportError:
        return None
    return yara_x


def _import_yara() -> Any:
    try:
        import yara
    except ImportError:
        return None
    # another module called 'yara' (e.g. a stray folder on sys.path) is not the engine
    return yara if hasattr(yara, "compile") else None


def _first_lines(text: str, n: int = 8) -> str:
    lines = [ln.rstrip() for ln in str(text).strip().splitlines()]
    return "\n".join(lines[:n])


def _warning_text(w: Any) -> str:
    if isinstance(w, dict):
        return f"{w.get('title') or w.get('code')} (line {w.get('line')})"
    return _first_lines(str(w), 1)


# -- compiling ---------------------------------------------------------------------------------------------
def _yx_compile(files: Sequence[RuleFile], relaxed: bool) -> tuple[Any, dict[str, str], dict[str, list[str]]]:
    """Compile with yara-x; returns (rules or None, errors by namespace, warnings by namespace)."""
    yara_x = _import_yara_x()
    if yara_x is None:
        return None, {f.namespace: "yara-x is not installed" for f in files}, {}
    errors: dict[str, str] = {}

    def add_all(batch: Sequence[RuleFile]) -> tuple[Any, dict[str, list[str]]]:
        comp = yara_x.Compiler(relaxed_re_syntax=relaxed)
        for name in EXTERNALS:
            comp.define_global(name, "")
        for d in sorted({str(f.path.parent) for f in batch}):
            comp.add_include_dir(d)
        warns: dict[str, list[str]] = {}
        for f in batch:
            try:
                text = f.data.decode("utf-8")
            except UnicodeDecodeError as exc:
                errors[f.namespace] = f"yara-x needs UTF-8 rule text: {exc}"
                continue
            comp.new_namespace(f.namespace)
            n_before = len(comp.warnings())
            try:
                comp.add_source(text, origin=str(f.path))
            except yara_x.CompileError as exc:
                errors[f.namespace] = _first_lines(str(exc))
            new = comp.warnings()[n_before:]
            if new:
                warns[f.namespace] = [_warning_text(w) for w in new]
        return comp, warns

    comp, warns = add_all(files)
    if errors:
        # a source that failed leaves its good rules in the compiler: start again from the good files only,
        # so a file is wholly in one engine or wholly in another (the build of the first pass is never paid)
        good = [f for f in files if f.namespace not in errors]
        if not good:
            return None, errors, {}
        comp, warns = add_all(good)
    return comp.build(), errors, warns


def _yp_compile(files: Sequence[RuleFile], counts: dict[str, int]) -> tuple[Any, dict[str, str]]:
    """Compile with yara-python: each file alone first (to blame the right one), then the good ones together."""
    yara = _import_yara()
    if yara is None:
        return None, {f.namespace: "yara-python is not installed" for f in files}
    externals = dict.fromkeys(EXTERNALS, "")
    errors: dict[str, str] = {}
    good: dict[str, str] = {}
    for f in files:
        try:
            alone = yara.compile(filepath=str(f.path), externals=externals)
        except yara.Error as exc:
            errors[f.namespace] = _first_lines(str(exc))
            continue
        good[f.namespace] = str(f.path)
        counts[f.namespace] = sum(1 for _ in alone)
    rules = yara.compile(filepaths=good, externals=externals) if good else None
    return rules, errors


class CompiledRules:
    """Compiled rule files, in one to three engine parts, ready to scan files and buffers."""

    def __init__(self, parts: list[_Part], files: list[FileStatus], cache: dict[str, Any]) -> None:
        self.parts = [p for p in parts if p.rules is not None]
        self.files = files
        self.cache = cache  # key, dir, hit, compile_s / load_s
        self._by_ns = {f.namespace: f for f in files}
        # asked per scanned file: listed once (a signature-base set has hundreds of rule files)
        self._compiled = [f for f in files if f.status == "compiled"]
        self._skipped = [f for f in files if f.status == "skipped"]

    @property
    def compiled(self) -> list[FileStatus]:
        return self._compiled

    @property
    def skipped(self) -> list[FileStatus]:
        return self._skipped

    def file_of(self, namespace: str) -> FileStatus | None:
        """The rule file a namespace was compiled from."""
        return self._by_ns.get(namespace)

    def report(self) -> dict[str, Any]:
        """JSON-ready summary: per file, which engine compiled it or why it was skipped."""
        return {
            "engines": engine_versions(),
            "cache": dict(self.cache),
            "compiled": len(self.compiled),
            "skipped": len(self.skipped),
            "by_engine": {
                e: sum(1 for f in self.compiled if f.engine == e) for e in (YARA_X, YARA_PYTHON, YARA_X_RELAXED)
            },
            "files": [asdict(f) for f in self.files],
        }

    # -- scanning ------------------------------------------------------------------------------------------
    def scan(
        self,
        target: str | os.PathLike[str] | bytes,
        externals: dict[str, str] | None = None,
        *,
        timeout: int = 60,
        max_strings: int = 10,
        warn: Callable[[str], None] | None = None,
    ) -> list[Match]:
        """Scan a file (path) or a buffer (bytes) with every part; a timeout in one part is a warning."""
        ext = {k: str(v) for k, v in (externals or {}).items() if k in EXTERNALS}
        out: list[Match] = []
        for part in self.parts:
            try:
                if part.engine == YARA_PYTHON:
                    out.extend(self._scan_yp(part, target, ext, timeout, max_strings))
                else:
                    out.extend(self._scan_yx(part, target, ext, timeout, max_strings))
            except Exception as exc:  # timeouts and engine scan errors: report and keep the other parts
                msg = f"{part.engine} scan failed ({type(exc).__name__}: {_first_lines(str(exc), 1)})"
                if warn:
                    warn(msg)
                else:
                    log.warning(msg)
        return out

    def _scan_yx(self, part: _Part, target: Any, ext: dict[str, str], timeout: int, max_strings: int) -> list[Match]:
        if part.scanner is None:
            yara_x = _import_yara_x()
            part.scanner = yara_x.Scanner(part.rules)
            part.scanner.max_matches_per_pattern(MAX_MATCHES_PER_PATTERN)
        sc = part.scanner
        if timeout != part.timeout:
            sc.set_timeout(timeout)
            part.timeout = timeout
        last = part.globals_
        for name in EXTERNALS:
            value = ext.get(name, "")
            if last.get(name) != value:
                sc.set_global(name, value)
                last[name] = value
        res = sc.scan(target) if isinstance(target, bytes | bytearray) else sc.scan_file(str(target))
        out = []
        for r in res.matching_rules:
            hits: list[StringHit] = []
            total = 0
            for p in r.patterns:
                total += len(p.matches)
                hits.extend(StringHit(p.identifier, m.offset, m.length) for m in p.matches[:3])
            hits.sort(key=lambda h: h.offset)
            meta: dict[str, Any] = {}
            for k, v in r.metadata:
                meta.setdefault(k, v.decode("latin-1") if isinstance(v, bytes) else v)
            out.append(Match(r.identifier, r.namespace, part.engine, list(r.tags), meta, hits[:max_strings], total))
        return out

    def _scan_yp(self, part: _Part, target: Any, ext: dict[str, str], timeout: int, max_strings: int) -> list[Match]:
        full = {name: ext.get(name, "") for name in EXTERNALS}
        if isinstance(target, bytes | bytearray):
            res = part.rules.match(data=bytes(target), externals=full, timeout=timeout)
        else:
            res = part.rules.match(str(target), externals=full, timeout=timeout)
        out = []
        for m in res:
            hits: list[StringHit] = []
            total = 0
            for s in m.strings:
                total += len(s.instances)
                hits.extend(StringHit(s.identifier, i.offset, i.matched_length) for i in s.instances[:3])
            hits.sort(key=lambda h: h.offset)
            meta = {k: (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in m.meta.items()}
            out.append(Match(m.rule, m.namespace, YARA_PYTHON, list(m.tags), meta, hits[:max_strings], total))
        return out


def engine_order(engine: str = YARA_X, fallback: str = OTHER_ENGINE) -> tuple[str, ...]:
    """The engines a rule file is tried with, in order (see the module docstring)."""
    if engine == YARA_X_RELAXED:  # one yara-x set taking libyara's regex dialect (scanners that take one set)
        return (YARA_X_RELAXED,)
    if engine not in ENGINES:
        raise ValueError(f"unknown YARA engine {engine!r}; choose from {', '.join(ENGINES)}")
    if fallback not in FALLBACKS:
        raise ValueError(f"unknown YARA fallback {fallback!r}; choose from {', '.join(FALLBACKS)}")
    if engine == YARA_PYTHON:
        return (YARA_PYTHON, YARA_X, YARA_X_RELAXED)
    if fallback == RELAXED_FIRST:
        return (YARA_X, YARA_X_RELAXED, YARA_PYTHON)
    return (YARA_X, YARA_PYTHON, YARA_X_RELAXED)


def _one_yara_x_part(parts: list[_Part], files: Sequence[RuleFile]) -> list[_Part]:
    """A strict and a relaxed yara-x part as one relaxed part, when relaxed yara-x compiles every file of both.

    Relaxed mode only widens the regular expressions it accepts, so the strict files' rules mean the same; one
    part is one scan per file instead of two (own + corpus rules over a web root: 3.95 CPU s instead of 6.17,
    same matches). Each file keeps the engine that judged it in its status; matches name the part's engine.
    """
    strict = [p for p in parts if p.engine == YARA_X]
    relaxed = [p for p in parts if p.engine == YARA_X_RELAXED]
    if not strict or not relaxed:
        return parts
    names = {ns for p in strict + relaxed for ns in p.namespaces}
    batch = [f for f in files if f.namespace in names]
    rules, errors, _ = _yx_compile(batch, relaxed=True)
    if errors or rules is None:  # some strict file means something else to the relaxed parser: keep two parts
        return parts
    merged = _Part(YARA_X_RELAXED, [f.namespace for f in batch], rules)
    return [p for p in parts if p.engine not in (YARA_X, YARA_X_RELAXED)] + [merged]


def compile_rules(files: Sequence[RuleFile], engine: str = YARA_X, fallback: str = OTHER_ENGINE) -> CompiledRules:
    """Compile rule files with the engines of :func:`engine_order`, each file by the first that takes it."""
    order = engine_order(engine, fallback)
    if _import_yara_x() is None and _import_yara() is None:
        raise YaraUnavailable("no YARA engine installed (pip install yara-x, or yara-python)")
    messages: dict[str, list[str]] = {f.namespace: [] for f in files}
    engine_of: dict[str, str] = {}
    warns: dict[str, list[str]] = {}
    parts: list[_Part] = []

    counts: dict[str, int] = {}  # rules per file as the engine compiled them (comments and all resolved)

    def run(eng: str, batch: list[RuleFile]) -> list[RuleFile]:
        if not batch:
            return []
        if eng == YARA_PYTHON:
            rules, errors = _yp_compile(batch, counts)
            w: dict[str, list[str]] = {}
        else:
            rules, errors, w = _yx_compile(batch, relaxed=eng == YARA_X_RELAXED)
            for r in rules or ():
                counts[r.namespace] = counts.get(r.namespace, 0) + 1
        for ns, msg in errors.items():
            messages[ns].append(f"{eng}: {msg}")
        ok = [f.namespace for f in batch if f.namespace not in errors]
        for ns in ok:
            engine_of[ns] = eng
            if w.get(ns):
                warns[ns] = w[ns]
        if rules is not None and ok:
            parts.append(_Part(eng, ok, rules))
        return [f for f in batch if f.namespace in errors]

    left = list(files)
    for eng in order:
        left = run(eng, left)
    if fallback == RELAXED_FIRST:
        parts = _one_yara_x_part(parts, files)
    statuses = [
        FileStatus(
            path=str(f.path),
            namespace=f.namespace,
            origin=f.origin,
            sha256=f.sha256,
            rules=counts.get(f.namespace, f.rule_count),
            status="compiled" if f.namespace in engine_of else "skipped",
            engine=engine_of.get(f.namespace, ""),
            message="\n".join(messages[f.namespace]),
            warnings=warns.get(f.namespace, [])[:20],
        )
        for f in files
    ]
    return CompiledRules(parts, statuses, {})


# -- the on-disk cache -------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$TRIAGE_YARA_CACHE``, else ``$TRIAGE_CACHE_DIR/yara``, else ``$XDG_CACHE_HOME/triage/yara``, else
    ``~/.cache/triage/yara``."""
    if os.environ.get("TRIAGE_YARA_CACHE"):
        return Path(os.environ["TRIAGE_YARA_CACHE"])
    if os.environ.get("TRIAGE_CACHE_DIR"):  # the project's one cache folder (sigma, volatility) holds this too
        return Path(os.environ["TRIAGE_CACHE_DIR"]) / "yara"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "triage" / "yara"


def ruleset_key(files: Sequence[RuleFile], engine: str, fallback: str = OTHER_ENGINE) -> str:
    """Hash of everything a compiled set depends on: rule bytes and namespaces, engines, externals."""
    order = ",".join(engine_order(engine, fallback))
    h = hashlib.sha256(f"triage-yara-cache\x00{CACHE_FORMAT}\x00{order}\x00".encode())
    h.update(json.dumps(engine_versions(), sort_keys=True).encode())
    h.update(",".join(EXTERNALS).encode())
    for f in files:
        h.update(f"\x00{f.namespace}\x00{f.origin}\x00{f.sha256}".encode())
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _serialize(part: _Part) -> bytes:
    buf = io.BytesIO()
    if part.engine == YARA_PYTHON:
        part.rules.save(file=buf)
    else:
        part.rules.serialize_into(buf)
    return buf.getvalue()


def _deserialize(engine: str, data: bytes) -> Any:
    if engine == YARA_PYTHON:
        yara = _import_yara()
        if yara is None:
            raise YaraUnavailable("yara-python is not installed")
        return yara.load(file=io.BytesIO(data))
    yara_x = _import_yara_x()
    if yara_x is None:
        raise YaraUnavailable("yara-x is not installed")
    return yara_x.Rules.deserialize_from(io.BytesIO(data))


def _save_cache(cache_dir: Path, key: str, compiled: CompiledRules) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, part in enumerate(compiled.parts):
        blob = _serialize(part)
        name = f"{key}.{i}.{part.engine}.bin"
        _atomic_write(cache_dir / name, blob)
        parts.append(
            {
                "engine": part.engine,
                "namespaces": part.namespaces,
                "file": name,
                "sha256": hashlib.sha256(blob).hexdigest(),
            }
        )
    index = {
        "format": CACHE_FORMAT,
        "key": key,
        "engines": engine_versions(),
        "parts": parts,
        "files": [asdict(f) for f in compiled.files],
    }
    # the index goes last: a reader that finds it finds every part it names
    _atomic_write(cache_dir / f"{key}.json", json.dumps(index, indent=1).encode())


def _load_cache(cache_dir: Path, key: str, files: Sequence[RuleFile]) -> CompiledRules | None:
    index_path = cache_dir / f"{key}.json"
    if not index_path.exists():
        return None
    index = json.loads(index_path.read_text())
    parts = []
    for p in index["parts"]:
        blob = (cache_dir / p["file"]).read_bytes()
        if hashlib.sha256(blob).hexdigest() != p["sha256"]:  # truncated or altered: compile again
            raise ValueError(f"cached part {p['file']} does not match its recorded hash")
        parts.append(_Part(p["engine"], list(p["namespaces"]), _deserialize(p["engine"], blob)))
    by_ns = {f.namespace: f for f in files}
    statuses = []
    for raw in index["files"]:
        st = FileStatus(**raw)
        if st.namespace in by_ns:  # paths as they are now (the same bytes may have moved)
            st.path = str(by_ns[st.namespace].path)
        statuses.append(st)
    return CompiledRules(parts, statuses, {})


def load_rules(
    files: Sequence[RuleFile],
    *,
    engine: str = YARA_X,
    fallback: str = OTHER_ENGINE,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> CompiledRules:
    """Compiled rules for these files, from the disk cache when it holds them, else compiled and stored."""
    key = ruleset_key(files, engine, fallback)
    cdir = Path(cache_dir) if cache_dir else default_cache_dir()
    if use_cache:
        t0 = time.perf_counter()
        try:
            hit = _load_cache(cdir, key, files)
        except Exception as exc:  # a damaged cache costs a compile, never the run
            log.warning("YARA rule cache %s unusable (%s); compiling", cdir / key, exc)
            hit = None
        if hit is not None:
            hit.cache = {"key": key, "dir": str(cdir), "hit": True, "load_s": round(time.perf_counter() - t0, 4)}
            return hit
    t0 = time.perf_counter()
    compiled = compile_rules(files, engine, fallback)
    compiled.cache = {"key": key, "dir": str(cdir), "hit": False, "compile_s": round(time.perf_counter() - t0, 4)}
    if use_cache:
        try:
            _save_cache(cdir, key, compiled)
        except OSError as exc:
            log.warning("cannot write the YARA rule cache in %s: %s", cdir, exc)
            compiled.cache["error"] = str(exc)
    return compiled


# -- externals ---------------------------------------------------------------------------------------------
def file_type(head: bytes) -> str:
    """The Loki/THOR-style type name of a file from its first bytes (``UNKNOWN`` when none fits)."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return "UNKNOWN"


def _windows_name(win: str) -> str:
    """The last part of a Windows path (``PureWindowsPath(win).name``) by string operations: called per file."""
    tail = win.rstrip("\\").rsplit("\\", 1)[-1]
    if len(tail) >= 2 and tail[1] == ":":  # a drive-relative path ("C:name") or a bare drive
        tail = tail[2:]
    return tail


def file_externals(logical_path: str, head: bytes = b"", md5: str | None = None, owner: str = "") -> dict[str, str]:
    """Externals as signature-base rules expect them, from the path on the source host.

    ``filepath`` is the full Windows path (backslashes), ``filename`` its last part, ``extension`` the
    lower-case suffix with its dot (``.aspx``), ``filetype`` from the magic bytes. The collection does not
    record file owners, so ``owner`` is empty unless given.
    """
    win = logical_path.replace("/", "\\")
    name = _windows_name(win)
    dot = name.rfind(".")
    suffix = name[dot:].lower() if 0 < dot < len(name) - 1 else ""  # as PurePath.suffix, without its parsing
    return {
        "filename": name,
        "filepath": win,
        "extension": suffix,
        "filetype": file_type(head),
        "owner": owner,
        "md5": (md5 or "").lower(),
    }


__all__ = [
    "ENGINES",
    "EXTERNALS",
    "FALLBACKS",
    "OTHER_ENGINE",
    "RELAXED_FIRST",
    "YARA_PYTHON",
    "YARA_X",
    "YARA_X_RELAXED",
    "CompiledRules",
    "FileStatus",
    "Match",
    "RuleFile",
    "StringHit",
    "YaraUnavailable",
    "compile_rules",
    "default_cache_dir",
    "engine_order",
    "engine_versions",
    "file_externals",
    "file_type",
    "find_rule_files",
    "load_rules",
    "rule_file_paths",
    "ruleset_key",
]
