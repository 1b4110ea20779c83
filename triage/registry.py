"""The analyzer registry: declared units, found by importing packages, never by scanning the cwd.

An analyzer is a subclass of :class:`Analyzer` decorated with :func:`register`. Built-ins live in
``analyzers``; third parties register through the ``analyzers`` entry point group or
``--plugin module_or_file.py``. An import failure is recorded (``import_failures()``), never raised.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import pkgutil
import stat
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from triage.case import Case, ManifestRow
from triage.finding import Finding, RuleMeta
from triage.hostfacts import FactSource

log = logging.getLogger(__name__)

_REGISTRY: dict[str, type[Analyzer]] = {}
_IMPORT_FAILURES: dict[str, str] = {}
_DISCOVERED: set[str] = set()
ENTRY_POINT_GROUP = "triage.analyzers"


@dataclass(frozen=True)
class Option:
    """One analyzer option: where its value comes from and how it is checked.

    ``name`` is the key in the analyzer's ``options`` dict. ``flag``: the command-line flag (``""``:
    ``--<name>`` with ``_`` as ``-``; ``None``: no flag, config file or environment only). ``path``: the values
    are files or folders that must exist; they are made absolute (relative config-file entries are relative to
    the config file). ``repeatable``: the flag may be given several times and the value is a list.
    Precedence: the command line, then ``env``, then ``config_key`` in the config file, then ``default``
    (``None``: the option is left out and the analyzer uses its own default).
    """

    name: str
    help: str
    type: Callable[[str], Any] = str
    default: Any = None
    flag: str | None = ""
    metavar: str | None = None
    config_key: str | None = None
    env: str | None = None
    repeatable: bool = False
    path: bool = False

    @property
    def cli_flag(self) -> str | None:
        if self.flag is None:
            return None
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        """The attribute of the parsed namespace (or the key of a mapping) that holds the flag's value."""
        flag = self.cli_flag
        return flag.lstrip("-").replace("-", "_") if flag else self.name

    def label(self) -> str:
        """How messages name the option: its flag, else its config key, else its name."""
        return self.cli_flag or self.config_key or self.name


@dataclass
class Unit:
    """One unit of work: an analyzer over one evidence item, with what it may read."""

    case_id: str
    case_dir: Path
    host: str
    evidence: ManifestRow
    path: Path
    analyzer: Analyzer
    warnings: list[str] = field(default_factory=list)
    # host-scope analyzers get every consumed artifact of the host here (evidence is then the group)
    members: list[ManifestRow] = field(default_factory=list)
    # where progress reports go (the runner forwards them to the caller); None: nobody is listening
    on_progress: Callable[[float, float, str], None] | None = None
    # side outputs stored so far: case-relative path -> sha256 (listed in the unit's run record)
    outputs: dict[str, str] = field(default_factory=dict)

    def member_path(self, row: ManifestRow) -> Path:
        """Where a member artifact's bytes are (in the case, or at a referenced source)."""
        if row.storage == "reference":
            return Path(str(row.extra.get("reference_path", row.source_path)))
        return self.case_dir / (row.relpath or "")

    def progress(self, done: float, total: float = 0.0, text: str = "") -> None:
        """Report how far a long unit is (``total`` 0: unknown); a failing listener never fails the unit."""
        if self.on_progress is None:
            return
        try:
            self.on_progress(done, total, text)
        except Exception as exc:  # a closed pipe to the parent, a broken display
            log.debug("progress report of %s dropped: %s", self.analyzer.name, exc)

    # -- side outputs: tables a unit keeps beside its findings, under results/<analyzer>/<evidence_id>/ -----
    def output_path(self, name: str) -> Path:
        """Where the side output ``name`` (declared in the analyzer's ``side_outputs``) is stored."""
        if (
            "/" in name
            or "\\" in name
            or name.startswith(".")
            or not any(fnmatch.fnmatchcase(name, pattern) for pattern in self.analyzer.side_outputs)
        ):
            raise ValueError(f"{self.analyzer.name}: side output {name!r} is not declared in side_outputs")
        return self.case_dir / "results" / self.analyzer.name / self.evidence.artifact_id / name

    def output_temp(self, name: str) -> Path:
        """A temporary file to write the side output ``name`` into (a child process may write it), then
        :meth:`commit_output`. Temporary names start with a dot: never taken for a result, removed on rerun."""
        final = self.output_path(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        return final.with_name(f".{name}.tmp-{os.getpid()}")

    def commit_output(self, name: str, temp: Path) -> str:
        """Move a written side output into place (atomic rename), hash it, list it in the run record."""
        from triage.custody import kill_point
        from triage.hashing import hash_file

        final = self.output_path(name)
        kill_point("side_output")  # the suite kills here: a table is whole or absent, never half written
        os.replace(temp, final)
        digest = hash_file(final, ("sha256",))[1]["sha256"]
        self.outputs[final.relative_to(self.case_dir).as_posix()] = digest
        return digest

    def write_output(self, name: str, data: bytes) -> str:
        """Store a small side output (e.g. an index) through a temporary file; return its sha256."""
        temp = self.output_temp(name)
        with open(temp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return self.commit_output(name, temp)

    def warn(self, message: str) -> None:
        """Record a warning in the unit's run record (bad input is data, not a crash)."""
        self.warnings.append(message)
        log.warning("%s on %s: %s", self.analyzer.name, self.evidence.relpath, message)

    @property
    def logical_path(self) -> str:
        """The artifact's path on the source host (``C:/inetpub/...``), from the manifest."""
        return logical_path(self.evidence)

    def finding(
        self,
        rule: RuleMeta | None = None,
        *,
        title: str,
        message: str,
        location: str = "",
        evidence: ManifestRow | None = None,
        **kw: Any,
    ) -> Finding:
        """A finding with the analyzer and evidence fields filled in (``evidence``: a member artifact).

        ``rule`` fills rule id and title, severity, confidence and the list fields; keywords given here
        (``rule_id=``, ``tags=`` ...) take precedence. Without a rule, ``rule_id``, ``rule_title`` and
        ``severity`` are keywords."""
        fields = self.finding_fields(rule, title=title, message=message, location=location, evidence=evidence, **kw)
        return Finding(**fields)

    def finding_fields(self, rule: RuleMeta | None = None, **kw: Any) -> dict[str, Any]:
        """The keywords :meth:`finding` (same arguments) gives :class:`Finding`, as a dict: what
        :class:`triage.results.FindingColumns` stores as a row without making the Finding."""
        ev = kw.pop("evidence", None) or self.evidence
        common = rule.fields() if rule is not None else {}
        fixed = {
            "analyzer": self.analyzer.name,
            "analyzer_version": self.analyzer.version,
            "title": kw.pop("title"),
            "message": kw.pop("message"),
            "evidence_id": ev.artifact_id,
            "evidence_path": ev.relpath or ev.source_path,  # a host group: "N artifacts of HOST"
            "evidence_sha256": ev.sha256 or "",
            "location": kw.pop("location", ""),
            "host": self.host,
            "case_id": self.case_id,
        }
        given = common | kw
        if not fixed.keys().isdisjoint(given):  # as a keyword given twice: these are the unit's to fill
            raise TypeError(f"finding fields filled by the unit: {sorted(fixed.keys() & given.keys())}")
        return fixed | given


def logical_path(row: ManifestRow) -> str:
    """Rebuild ``C:/dir/file`` from a stored relpath ``evidence/<host>/<kind>/C/dir/file``."""
    if not row.relpath:
        return ""
    parts = row.relpath.split("/")[3:]
    if parts and len(parts[0]) == 1 and parts[0].isalpha():
        return parts[0] + ":/" + "/".join(parts[1:])
    return "/".join(parts)


class Analyzer:
    """Base class of analyzers. Subclasses declare name, version, consumes, rules and a docstring."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = ""
    consumes: ClassVar[tuple[str, ...]] = ()
    rules: ClassVar[tuple[str, ...]] = ()  # files or folders under signatures/ this analyzer loads
    # analyzers whose results this one reads (e.g. the memory tables a host join needs): the runner runs them first,
    # and a host-scope unit of this one is redone when their results change (triage.runner: stages)
    after: ClassVar[tuple[str, ...]] = ()
    # 'artifact': one unit per evidence item; 'host': one unit per host over all its consumed items
    # (for checks that join files, such as log age per folder or a request traced across logs)
    scope: ClassVar[str] = "artifact"
    # whether the runner may run several small artifacts of this analyzer in one batch unit (one worker, one
    # result file; triage.runner). False for an analyzer whose every artifact is big or long (memory images)
    batch: ClassVar[bool] = True
    # batches per worker under the default sizing (None: BatchLimits.per_worker): an analyzer whose batches carry
    # a cost per batch (rules evaluated once per batch frame) asks for fewer, bigger ones
    batch_per_worker: ClassVar[int | None] = None
    # whether a handful of its small units may run in the command's own process (triage.executors, in_process_small)
    # instead of a pool worker: only for code that cannot take the process down (pure Python, Rust parsers);
    # an analyzer driving a C engine over hostile bytes (YARA, libyal, Volatility) keeps every unit in a worker
    in_process: ClassVar[bool] = False
    # seconds one unit may take by default; None: the runner's default (an explicit --unit-time-limit wins)
    unit_time_limit: ClassVar[float | None] = None
    # which of its findings carry host facts (host name, OS and Exchange builds ...) under which attribute
    host_facts: ClassVar[tuple[FactSource, ...]] = ()
    # options the analyzer takes; `triage analyze` gets a flag (and config key) for each (triage.options)
    options_declared: ClassVar[tuple[Option, ...]] = ()
    # the option (of `options_declared`) that names extra rule files, loaded once per run by preload_rules
    rule_option: ClassVar[str] = ""
    # file name patterns of the side outputs a unit stores under results/<analyzer>/<evidence_id>/ (Unit.output_*)
    side_outputs: ClassVar[tuple[str, ...]] = ()
    _loaded_rules: Any = None

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options: dict[str, Any] = dict(options or {})

    def rule_paths(self) -> list[Path]:
        """Every rule file this analyzer loads: its own under signatures/, plus any from options."""
        out: list[Path] = []
        for rel in self.rules:
            p = signature_path(rel)
            out.extend(sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p])
        return out

    def fingerprint(self) -> str:
        """Hash of what decides the results besides the evidence: version, rule bytes, options.

        A finished unit is reused only while its fingerprint is unchanged, so editing a rule or
        adding a rule directory reruns exactly the units it can affect.
        """
        h = hashlib.sha256(f"{self.name}\x00{self.version}\x00".encode())
        h.update(json.dumps(self.options, sort_keys=True, default=str).encode())
        from triage.sigma.cache import file_digests  # each rule file read once per process, not per use

        paths = self.rule_paths()
        for p, digest in zip(paths, file_digests(paths), strict=True):
            h.update(str(p.name).encode() + b"\x00")
            h.update(digest if digest is not None else b"unreadable")
        return h.hexdigest()[:32]

    def run_fingerprint(self, run_id: str) -> str:
        """:meth:`fingerprint`, computed once per run and process.

        The runner asks for every unit; with a large ``--sigma`` folder, listing and hashing thousands of rule
        files per unit cost more than analysing a small log. Within one run the rules in use are the ones
        loaded at its start, so one value per run is also the more truthful one. Without a run id it is
        computed afresh (a long-lived worker must notice rules edited between commands).
        """
        memo = self.__dict__.get("_run_fingerprint")
        if run_id and memo is not None and memo[0] == run_id:
            return str(memo[1])
        value = self.fingerprint()
        if run_id:
            self.__dict__["_run_fingerprint"] = (run_id, value)
        return value

    def load_rules(self) -> Any:
        """Load and validate rule files once per process; override in analyzers that have rules."""
        return None

    @classmethod
    def preload_rules(cls, case: Case, options: dict[str, Any]) -> dict[str, Any] | None:
        """Before the units run, when ``rule_option`` is given: load (and cache) the rule sets once and record
        in the case what loaded and what was skipped; return that summary (None: nothing to report)."""
        return None

    @property
    def ruleset(self) -> Any:
        if self._loaded_rules is None:
            self._loaded_rules = self.load_rules()
        return self._loaded_rules

    def analyze(self, unit: Unit) -> Iterable[Finding]:
        """Yield findings for one evidence item. Raise :class:`triage.errors.Skip` for a soft no."""
        raise NotImplementedError

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "version": cls.version,
            "consumes": list(cls.consumes),
            "rules": list(cls.rules),
            "options": [o.name for o in cls.options_declared],
            "doc": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
        }


def register(cls: type[Analyzer]) -> type[Analyzer]:
    """Class decorator adding an analyzer to the registry (checks the declaration)."""
    problems = [f"no {a}" for a in ("name", "version") if not getattr(cls, a)]
    if not cls.consumes:
        problems.append("no evidence kinds in 'consumes'")
    if not isinstance(cls.after, tuple) or cls.name in cls.after:
        problems.append("'after' must be a tuple of other analyzers' names")
    if cls.scope not in ("artifact", "host"):
        problems.append(f"scope must be 'artifact' or 'host', not {cls.scope!r}")
    if not (cls.__doc__ or "").strip():
        problems.append("no docstring")
    if problems:
        raise TypeError(f"analyzer {cls.__qualname__}: {', '.join(problems)}")
    other = _REGISTRY.get(cls.name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise TypeError(f"analyzer name {cls.name!r} is taken by {other.__module__}.{other.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def signature_path(relative: str) -> Path:
    """A path to a file under the installed ``signatures/`` folder."""
    return Path(str(resources.files("signatures").joinpath(relative)))


def _import(name: str) -> None:
    if name in _DISCOVERED:
        return
    _DISCOVERED.add(name)
    from triage.lazyimport import settled_imports

    try:
        with settled_imports():
            _import_module(name)
    except Exception:  # a broken plugin must not stop the others
        _IMPORT_FAILURES[name] = traceback.format_exc(limit=5)
        log.warning("analyzer module %s failed to import: %s", name, _IMPORT_FAILURES[name].strip().splitlines()[-1])


def _import_module(name: str) -> None:
    """Import an analyzer module by name, or a plugin file by path."""
    if name.endswith(".py") and os.path.exists(name):
        mod_name = f"triage_plugin_{Path(name).stem}"
        spec = importlib.util.spec_from_file_location(mod_name, name)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
    else:
        importlib.import_module(name)


def _record_walk_failure(name: str) -> None:
    """pkgutil.walk_packages calls this when a subpackage cannot be imported; keep it like any other failure."""
    if name not in _IMPORT_FAILURES:
        _IMPORT_FAILURES[name] = traceback.format_exc(limit=5)
        log.warning("analyzer package %s failed to import", name)


_EP_MODULES: list[str] | None = None  # this process's answer of entry_point_modules()
_EP_CACHE = "entry_points.json"
_EP_CACHE_ENTRIES = 8


def _cache_dir() -> Path:
    """The user cache folder (``$TRIAGE_CACHE_DIR``, else ``~/.cache/triage``)."""
    base = os.environ.get("TRIAGE_CACHE_DIR")
    return Path(base) if base else Path.home() / ".cache" / "triage"


# what the metadata scan reads in a folder on sys.path (an .egg folder's metadata is its EGG-INFO)
_METADATA = (".dist-info", ".egg-info", ".egg-link", ".egg")


def _installed_key() -> list[list[Any]]:
    """What the installed distributions' metadata is now: every ``*.dist-info``/``*.egg-info`` on ``sys.path``
    with its modification time (installing, removing or reinstalling a distribution changes it), and the
    entries themselves (a file entry, a zip or an egg, with its modification time). Cheaper than the scan it stands
    for, which reads every distribution's metadata. A folder's own time is left out: it changes with any file made
    in it (the current folder of ``python -m triage``), while its distributions are listed one by one. A folder
    that holds no distribution, or a missing entry, adds nothing: it changes no answer, and the folders that
    differ from one process to the next (each dask worker's scratch folder, a test's folder) would otherwise
    each make a key of their own and push the command line's out of the cache."""
    key: list[list[Any]] = []
    for entry in sys.path:
        where = entry or os.getcwd()
        try:
            st = os.stat(where)
            if not stat.S_ISDIR(st.st_mode):
                key.append([where, st.st_mtime_ns])
                continue
            with os.scandir(where) as it:
                metas = sorted(e.name for e in it if e.name.endswith(_METADATA) or e.name == "EGG-INFO")
            if metas:
                key.append([where, "dir"])
            for name in metas:
                key.append([name, os.stat(os.path.join(where, name)).st_mtime_ns])
        except OSError:
            continue  # nothing the scan could read either
    return key


def entry_point_modules() -> list[str]:
    """The modules third-party analyzers register from (the ``triage.analyzers`` entry points).

    Scanning the installed distributions' entry points reads the metadata of every one of them; the answer is
    kept for the process and in the user cache folder, keyed by :func:`_installed_key`, so a command pays the
    scan only after something was installed or removed. A cache that cannot be read or written is ignored.
    """
    global _EP_MODULES
    if _EP_MODULES is not None:
        return list(_EP_MODULES)
    key = _installed_key()
    path = _cache_dir() / _EP_CACHE
    entries: list[dict[str, Any]] = []
    try:
        # one entry per recent key: the console script, ``python -m`` and ``python -c`` see different sys.paths
        entries = [e for e in json.loads(path.read_bytes()).get("entries", []) if isinstance(e, dict)]
        for entry in entries:
            if entry.get("key") == key and isinstance(entry.get("modules"), list):
                _EP_MODULES = [str(m) for m in entry["modules"]]
                return list(_EP_MODULES)
    except (OSError, ValueError, AttributeError):
        entries = []
    from importlib import metadata

    try:
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # pragma: no cover - broken metadata of some installed dist
        eps = ()  # type: ignore[assignment]
    _EP_MODULES = [ep.value.split(":")[0] for ep in eps]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{_EP_CACHE}.{os.getpid()}")
        keep = [{"key": key, "modules": _EP_MODULES}, *entries[: _EP_CACHE_ENTRIES - 1]]
        tmp.write_text(json.dumps({"entries": keep}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("entry point cache not written: %s", exc)
    return list(_EP_MODULES)


def _import_plugins(plugins: Iterable[str]) -> None:
    """Import the third-party analyzers: entry points, ``TRIAGE_PLUGINS`` and the ``--plugin`` modules given."""
    for module in entry_point_modules():
        _import(module)
    env = os.environ.get("TRIAGE_PLUGINS", "")
    for name in [*plugins, *[p for p in env.split(os.pathsep) if p]]:
        _import(name)


def discover(plugins: Iterable[str] = ()) -> dict[str, type[Analyzer]]:
    """Import every built-in analyzer module, entry points and extra plugin modules; return the registry.

    Commands that only need what analyzers declare use :func:`declarations` (no import of analyzer modules)
    and :func:`load` (the one analyzer a unit runs); ``triage list`` and the conformance test import them all.
    """
    import analyzers as pkg

    # every module of every subpackage, so an analyzer may live anywhere below analyzers/ without an edit
    # to a package __init__; a subpackage whose import fails is recorded once and its children skipped
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".", onerror=_record_walk_failure):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            _import(info.name)
    _import_plugins(plugins)
    return dict(_REGISTRY)


# -- declarations without imports --------------------------------------------------------------------------
# ``analyzers/index.json`` holds what each built-in analyzer declares (name, module, version, consumes, scope,
# options ...), generated from the classes (``python -m triage.registry --write-index``) with a digest of
# every module's source. When the digest matches the installed sources, the command line, the planner and the
# report read the declarations from it and import an analyzer's module only when a unit of it runs; when
# it does not (a module edited without regenerating), every module is imported as before. A test keeps
# the checked-in index equal to the classes.
INDEX_NAME = "index.json"
_TYPES: dict[str, Callable[[str], Any]] = {"str": str, "int": int, "float": float, "bool": bool}
_INDEX_CACHE: dict[str, Declared] | None = None
_INDEX_READ = False


def _type_name(t: Callable[[str], Any]) -> str:
    for name, known in _TYPES.items():
        if t is known:
            return name
    return f"{t.__module__}:{t.__qualname__}"


def _type_of(name: str) -> Callable[[str], Any]:
    if name in _TYPES:
        return _TYPES[name]
    module, _, qual = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Declared:
    """What an analyzer class declares, readable without importing its module (same attribute names)."""

    name: str
    module: str
    version: str
    consumes: tuple[str, ...]
    scope: str = "artifact"
    batch: bool = True
    in_process: bool = False
    after: tuple[str, ...] = ()
    unit_time_limit: float | None = None
    rule_option: str = ""
    rules: tuple[str, ...] = ()
    options_declared: tuple[Option, ...] = ()
    host_facts: tuple[FactSource, ...] = ()
    doc: str = ""

    @classmethod
    def of(cls, analyzer: type[Analyzer]) -> Declared:
        """The declarations of a registered class."""
        return cls(
            name=analyzer.name,
            module=analyzer.__module__,
            version=analyzer.version,
            consumes=tuple(analyzer.consumes),
            scope=analyzer.scope,
            batch=bool(analyzer.batch),
            in_process=bool(analyzer.in_process),
            after=tuple(analyzer.after),
            unit_time_limit=analyzer.unit_time_limit,
            rule_option=analyzer.rule_option,
            rules=tuple(analyzer.rules),
            options_declared=tuple(analyzer.options_declared),
            host_facts=tuple(analyzer.host_facts),
            doc=analyzer.describe()["doc"],
        )

    def as_json(self) -> dict[str, Any]:
        """A JSON-able form (option types by name)."""
        d = {k: v for k, v in self.__dict__.items() if k not in ("options_declared", "host_facts")}
        d["options_declared"] = [{**o.__dict__, "type": _type_name(o.type)} for o in self.options_declared]
        d["host_facts"] = [
            {"rules": list(f.rules), "facts": {k: list(v) for k, v in f.facts.items()}} for f in self.host_facts
        ]
        return json.loads(json.dumps(d))

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Declared:
        """Back from :meth:`as_json`."""
        return cls(
            **{k: v for k, v in d.items() if k not in ("options_declared", "host_facts", "consumes", "rules", "after")},
            consumes=tuple(d["consumes"]),
            rules=tuple(d.get("rules", ())),
            after=tuple(d.get("after", ())),
            options_declared=tuple(Option(**{**o, "type": _type_of(o["type"])}) for o in d.get("options_declared", ())),
            host_facts=tuple(
                FactSource(tuple(f["rules"]), {k: tuple(v) for k, v in f["facts"].items()})
                for f in d.get("host_facts", ())
            ),
        )


def _package_dir() -> Path | None:
    spec = importlib.util.find_spec("analyzers")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def source_digest(root: Path) -> str:
    """SHA-256 over the relative path and bytes of every module below ``root`` (what the index describes)."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        h.update(path.relative_to(root).as_posix().encode() + b"\x00")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def build_index() -> dict[str, Any]:
    """The index of the built-in analyzers, from their classes (imports every module)."""
    discover()
    root = _package_dir()
    if root is None:
        raise RuntimeError("the analyzers package is not installed")
    builtin = {n: c for n, c in _REGISTRY.items() if c.__module__.split(".")[0] == "analyzers"}
    return {
        "digest": source_digest(root),
        "analyzers": {n: Declared.of(c).as_json() for n, c in sorted(builtin.items())},
    }


def write_index() -> Path:
    """Regenerate ``analyzers/index.json`` from the classes."""
    root = _package_dir()
    if root is None:
        raise RuntimeError("the analyzers package is not installed")
    path = root / INDEX_NAME
    path.write_text(json.dumps(build_index(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_index() -> dict[str, Declared] | None:
    """The built-in declarations from ``analyzers/index.json``; None when it is missing, unreadable or stale
    (its digest is not that of the installed sources). Read once per process."""
    global _INDEX_CACHE, _INDEX_READ
    if _INDEX_READ:
        return _INDEX_CACHE
    _INDEX_READ = True
    root = _package_dir()
    try:
        if root is None:
            return None
        data = json.loads((root / INDEX_NAME).read_text(encoding="utf-8"))
        if data.get("digest") != source_digest(root):
            log.debug("analyzers/%s is stale: importing every analyzer module", INDEX_NAME)
            return None
        _INDEX_CACHE = {n: Declared.from_json(d) for n, d in data["analyzers"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError) as exc:
        log.debug("analyzer index not used: %s", exc)
        _INDEX_CACHE = None
    return _INDEX_CACHE


def declarations(plugins: Iterable[str] = ()) -> dict[str, Declared]:
    """Every analyzer's declarations by name, sorted: built-ins from the index (no module imported), plugins
    (entry points, ``TRIAGE_PLUGINS``, ``plugins``) imported; classes already registered take precedence.
    Without a usable index, every module is imported (:func:`discover`)."""
    index = read_index()
    if index is None:
        discover(plugins)
        index = {}
    else:
        _import_plugins(plugins)
    out = dict(index)
    out.update({n: Declared.of(c) for n, c in _REGISTRY.items()})
    return dict(sorted(out.items()))


def load(name: str, plugins: Iterable[str] = ()) -> type[Analyzer]:
    """The class of analyzer ``name``, importing only its module when the index names it (else every module).

    Raises KeyError when no module registers it (an import failure is in :func:`import_failures`).
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    index = read_index()
    if index is not None and name in index:
        _import(index[name].module)
        if name in _REGISTRY:
            return _REGISTRY[name]
    discover(plugins)
    if name not in _REGISTRY:
        raise KeyError(
            f"no analyzer named {name!r}"
            + (
                f" ({_IMPORT_FAILURES[index[name].module].strip().splitlines()[-1]})"
                if index and name in index and index[name].module in _IMPORT_FAILURES
                else ""
            )
        )
    return _REGISTRY[name]


def analyzers() -> dict[str, type[Analyzer]]:
    return dict(_REGISTRY)


def import_failures() -> dict[str, str]:
    return dict(_IMPORT_FAILURES)


def iter_selected(
    only: Iterable[str] = (), skip: Iterable[str] = (), declared: dict[str, Declared] | None = None
) -> Iterator[Declared]:
    """Analyzers after --only/--skip, sorted by name; unknown names are a usage error.

    ``declared``: the declarations to choose from (default: :func:`declarations`).
    """
    from triage.errors import UsageError

    declared = declarations() if declared is None else declared
    only, skip = list(only), list(skip)
    unknown = [n for n in [*only, *skip] if n not in declared]
    if unknown:
        raise UsageError(f"unknown analyzer(s): {', '.join(unknown)}; known: {', '.join(sorted(declared))}")
    for name in sorted(declared):
        if (not only or name in only) and name not in skip:
            yield declared[name]


def registry_snapshot() -> str:
    return json.dumps({n: c.describe() for n, c in sorted(_REGISTRY.items())}, sort_keys=True)


if __name__ == "__main__":  # python -m triage.registry [--write-index]
    import argparse

    from triage import registry as _registry  # the imported module: analyzers register there, not in __main__

    ap = argparse.ArgumentParser(description="the analyzer index (analyzers/index.json)")
    ap.add_argument("--write-index", action="store_true", help="regenerate it from the analyzer classes")
    if ap.parse_args().write_index:
        print(_registry.write_index())
    else:
        ok = _registry.read_index() is not None
        print("analyzers/index.json is " + ("current" if ok else "missing or stale: run --write-index"))
        sys.exit(0 if ok else 1)
