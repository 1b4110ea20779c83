"""The YARA rules the memory analyzer scans with: the project's rule files plus its own memory indicators.

Rule files are ``signatures/yara/*.yar`` (the project's file rules, when present),
``signatures/yara/memory/*.yar`` (memory indicators) and any ``--yara`` set, each compiled into its own namespace
(``<folder>_<stem>``) into one yara-x rule set (libyara's lenient regular expressions accepted, as third-party sets
need: the raw scan and Volatility's vadyarascan each take one compiled set). Compiling goes through the YARA
analyzer's engine adapter, so the compiled set lands in, and is loaded from, the same on-disk cache
(:func:`analyzers.yara.engine.load_rules`): a worker loads, it does not compile again. A file that does not
compile is reported with its line and left out; the others still load.
Rules written for files may use the externals file scanners define (``filename``, ``filepath``, ``extension``,
``filetype``, ``owner``); here they are empty strings, so such conditions simply do not hold in memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage.registry import signature_path

PROJECT_DIR = "yara"
MEMORY_DIR = "yara/memory"
EXTERNALS = ("filename", "filepath", "extension", "filetype", "owner")
RULE_SUFFIXES = (".yar", ".yara")


def rule_files(extra: Iterable[Path | str] = ()) -> list[Path]:
    """The rule files in load order: project rules, memory rules, then any extra files or folders."""
    out: list[Path] = []
    for rel in (PROJECT_DIR, MEMORY_DIR):
        d = signature_path(rel)
        if d.is_dir():
            out.extend(sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in RULE_SUFFIXES))
    for e in extra:
        p = Path(e)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in RULE_SUFFIXES))
        elif p.is_file():
            out.append(p)
    return out


def _namespace(path: Path) -> str:
    return re.sub(r"\W", "_", f"{path.parent.name}_{path.stem}")


@dataclass
class MemoryRules:
    """Compiled rules with each rule's metadata, keyed ``namespace.identifier`` as scanners report them."""

    rules: Any  # yara_x.Rules
    meta: dict[str, dict[str, Any]]
    files: list[Path]
    problems: list[str] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)  # key, dir, hit, compile_s / load_s

    def serialize(self, path: Path) -> Path:
        """Write the compiled rules (Volatility's vadyarascan loads them as ``yara_compiled_file``)."""
        with open(path, "wb") as fh:
            self.rules.serialize_into(fh)
        return path

    def rule_meta(self, name: str) -> dict[str, Any]:
        """Metadata of ``namespace.identifier`` (or of a bare identifier when unique), else {}."""
        if name in self.meta:
            return self.meta[name]
        hits = [m for k, m in self.meta.items() if k.rsplit(".", 1)[-1] == name]
        return hits[0] if len(hits) == 1 else {}


def _unique_namespaces(files: Sequence[Path]) -> list[str]:
    out: list[str] = []
    for path in files:
        base = ns = _namespace(path)
        i = 1
        while ns in out:  # two sets may both hold an "apt_hafnium.yar" in a folder of the same name
            i += 1
            ns = f"{base}_{i}"
        out.append(ns)
    return out


def compile_rules(files: Sequence[Path], *, use_cache: bool = True) -> MemoryRules:
    """Compile ``files``; a file that fails is named in ``problems`` (file:line: message) and skipped.

    Through the compiled-rule cache of :mod:`analyzers.yara.engine` (keyed by the rule bytes, namespaces, engine
    and its version): the first process compiles and stores, the others load.
    """
    import yara_x  # the raw scan and vadyarascan need yara-x: without it, ImportError (the analyzer reports it)

    from analyzers.yara.engine import YARA_X_RELAXED, RuleFile, load_rules

    problems: list[str] = []
    readable: list[RuleFile] = []
    for path, ns in zip(files, _unique_namespaces(files), strict=True):
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            problems.append(f"{path}: unreadable: {exc}")
            continue
        origin = "triage" if _is_project(Path(path)) else "third_party"
        readable.append(RuleFile(path=Path(path), namespace=ns, origin=origin, data=data))
    compiled = load_rules(readable, engine=YARA_X_RELAXED, use_cache=use_cache)
    for st in compiled.skipped:
        where = re.search(r"--> .*?:(\d+):(\d+)", st.message)
        line = f":{where.group(1)}" if where else ""
        first = next((ln for ln in st.message.splitlines() if ln.strip()), "does not compile")
        problems.append(f"{st.path}{line}: {first.split(': ', 1)[-1]}")
    # nothing compiled: an empty set still scans (and the problems say why)
    rules = compiled.parts[0].rules if compiled.parts else yara_x.Compiler().build()
    by_ns = {f.namespace: f for f in readable}
    meta: dict[str, dict[str, Any]] = {}
    for rule in rules:
        d = dict(rule.metadata)
        d["_tags"] = list(rule.tags)
        d["_namespace"] = rule.namespace
        if rule.namespace in by_ns:
            d["_file"] = str(by_ns[rule.namespace].path)
        meta[f"{rule.namespace}.{rule.identifier}"] = d
    good = [Path(st.path) for st in compiled.compiled]
    return MemoryRules(rules=rules, meta=meta, files=good, problems=problems, cache=dict(compiled.cache))


def _is_project(path: Path) -> bool:
    try:
        path.resolve().relative_to(signature_path(PROJECT_DIR).resolve())
    except ValueError:
        return False
    return True
