"""The YARA rules the memory analyzer scans with: the project's rule files plus its own memory indicators.

Rule files are ``signatures/yara/*.yar`` (the project's file rules, when present) and
``signatures/yara/memory/*.yar`` (memory indicators), each compiled into its own namespace (``<folder>_<stem>``)
with yara-x. A file that does not compile is reported with its line and left out; the others still load.
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


def _compiler(yara_x: Any) -> Any:
    c = yara_x.Compiler()
    for ext in EXTERNALS:
        c.define_global(ext, "")
    return c


def compile_rules(files: Sequence[Path]) -> MemoryRules:
    """Compile ``files``; a file that fails is named in ``problems`` (file:line: message) and skipped."""
    import yara_x

    good: list[tuple[Path, str]] = []
    problems: list[str] = []
    for path in files:
        try:
            source = path.read_text(encoding="utf-8", errors="replace")
            probe = _compiler(yara_x)
            probe.new_namespace(_namespace(path))
            probe.add_source(source, origin=str(path))
            probe.build()
        except yara_x.CompileError as exc:
            first = str(exc).strip().splitlines()
            where = re.search(r"--> .*?:(\d+):(\d+)", str(exc))
            line = f":{where.group(1)}" if where else ""
            problems.append(f"{path}{line}: {first[0] if first else exc}")
            continue
        except OSError as exc:
            problems.append(f"{path}: unreadable: {exc}")
            continue
        good.append((path, source))
    compiler = _compiler(yara_x)
    for path, source in good:
        compiler.new_namespace(_namespace(path))
        compiler.add_source(source, origin=str(path))
    rules = compiler.build()
    meta: dict[str, dict[str, Any]] = {}
    for rule in rules:
        d = dict(rule.metadata)
        d["_tags"] = list(rule.tags)
        d["_namespace"] = rule.namespace
        meta[f"{rule.namespace}.{rule.identifier}"] = d
    for path, _ in good:
        ns = _namespace(path)
        for key, d in meta.items():
            if key.startswith(ns + "."):
                d["_file"] = str(path)
    return MemoryRules(rules=rules, meta=meta, files=[p for p, _ in good], problems=problems)
