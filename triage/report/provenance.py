"""Where a report comes from: tool and library versions, rule-set hashes, command line, times, custody head."""

from __future__ import annotations

import functools
import hashlib
import logging
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from triage import TOOL_NAME, __version__
from triage.case import Case
from triage.custody import load_json
from triage.hashing import hash_file
from triage.report.context import ReportContext, parse_attributes

log = logging.getLogger(__name__)
LIBRARIES = ("pandas", "pyarrow", "orjson", "jinja2", "regipy", "PyYAML")  # what the report is written with
# keys of analyzer options (in run records that carry them) that name extra rule files or folders
RULE_OPTION_KEYS = ("sigma", "yara", "rules", "rule_dirs")


def hash_tree(root: Path) -> dict[str, Any]:
    """sha256 of every file under ``root`` (caches left out) and one hash over the list.

    The digests come from :func:`triage.sigma.cache.file_digests`, which reads a file again only when its size,
    times or inode changed since it was hashed (by this process, the analysis, or an earlier command): the
    report of a small case then stats the 600 built-in rule files instead of hashing them.
    """
    from triage.sigma.cache import file_digests

    files = []
    if root.is_file():
        paths = [root]
        base = root.parent
    else:
        paths = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        base = root
    agg = hashlib.sha256()
    for p, known in zip(paths, file_digests(paths), strict=True):
        if known is not None:
            digest = known.hex()
        else:  # unreadable: hashed here for the reason
            try:
                digest = hash_file(p, ("sha256",))[1]["sha256"]
            except OSError as exc:
                digest = f"unreadable: {exc}"
        rel = p.relative_to(base).as_posix()
        files.append({"path": rel, "sha256": digest, "size": p.stat().st_size if p.exists() else None})
        agg.update(f"{rel}\0{digest}\n".encode("utf-8", "surrogateescape"))
    return {"path": str(root), "files": files, "count": len(files), "sha256": agg.hexdigest()}


@functools.cache
def library_versions() -> dict[str, str | None]:
    """The installed version of each library the report is written with (read once per process: the
    libraries a running process writes with do not change under it)."""
    libs: dict[str, str | None] = {}
    for lib in LIBRARIES:
        try:
            libs[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            libs[lib] = None
    return libs


def _signatures_dir() -> Path | None:
    try:
        from triage.registry import signature_path

        return signature_path("")
    except Exception as exc:  # an odd install must not stop the report
        log.warning("signatures folder not found: %s", exc)
        return None


def custody_head(case_path: Path) -> dict[str, Any]:
    """The custody chain's newest event (sequence number and hash) before this report was recorded."""
    try:
        raw = (case_path / "custody.head").read_bytes().strip()
        head = load_json(raw) if raw else {}
        return {"seq": head.get("seq"), "hash": head.get("hash")}
    except (OSError, ValueError):
        return {"seq": None, "hash": None}


def _run_records(case_path: Path) -> list[dict[str, Any]]:
    out = []
    for p in sorted((case_path / "runs").glob("*.json")):
        try:
            rec = load_json(p.read_text())
        except (OSError, ValueError):
            continue
        rec["_file"] = p.name
        rec["_sha256"] = hash_file(p, ("sha256",))[1]["sha256"]
        out.append(rec)
    return out


def _extra_rule_dirs(records: list[dict[str, Any]], runs: pd.DataFrame, given: tuple[str, ...]) -> list[str]:
    dirs: list[str] = list(given)

    def take(options: Any) -> None:
        if not isinstance(options, dict):
            return
        for opts in options.values():
            if not isinstance(opts, dict):
                continue
            for key in RULE_OPTION_KEYS:
                vals = opts.get(key)
                for v in [vals] if isinstance(vals, str) else vals or []:
                    if isinstance(v, str) and v not in dirs:
                        dirs.append(v)

    for rec in records:
        take(rec.get("options"))
    if "options" in runs:
        for o in runs["options"].dropna():
            take({"_": o} if isinstance(o, dict) else None)
    return dirs


def rules_referenced(ctx: ReportContext) -> list[dict[str, Any]]:
    """Rule files named by findings (``attributes.rule_file`` / ``rule_sha256``), one entry per rule."""
    df = ctx.findings
    if not len(df):
        return []
    firsts = df.drop_duplicates("rule_id")
    out = []
    for r in firsts.itertuples(index=False):
        attrs = parse_attributes(r.attributes)
        if attrs.get("rule_file") or attrs.get("rule_sha256"):
            out.append(
                {
                    "rule_id": str(r.rule_id),
                    "analyzer": str(r.analyzer),
                    "rule_file": str(attrs.get("rule_file", "")),
                    "rule_sha256": str(attrs.get("rule_sha256", "")),
                }
            )
    return out


def provenance(case: Case, ctx: ReportContext) -> dict[str, Any]:
    """Everything needed to say which tool, rules and inputs produced this report."""
    records = _run_records(case.path)
    rule_sets = []
    sig = _signatures_dir()
    if sig is not None and sig.exists():
        rule_sets.append({"name": "signatures (built in)", **hash_tree(sig)})
    for d in _extra_rule_dirs(records, ctx.runs, ctx.options.rule_dirs):
        p = Path(d)
        if p.exists():
            rule_sets.append({"name": f"extra rules {p.name}", **hash_tree(p)})
        else:
            rule_sets.append({"name": f"extra rules {p.name}", "path": d, "files": [], "count": 0, "sha256": None})
    libs = library_versions()
    analyzers: dict[str, dict[str, Any]] = {}
    if len(ctx.runs):
        for r in ctx.runs.itertuples(index=False):
            a = analyzers.setdefault(str(r.analyzer), {"versions": set(), "fingerprints": set()})
            a["versions"].add(str(getattr(r, "analyzer_version", "")))
            fp = getattr(r, "fingerprint", None)
            if isinstance(fp, str) and fp:
                a["fingerprints"].add(fp)
    manifest_sha = None
    if case.manifest_path.exists():
        manifest_sha = hash_file(case.manifest_path, ("sha256",))[1]["sha256"]
    return {
        "tool": TOOL_NAME,
        "tool_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "libraries": dict(libs),
        "command_line": ctx.options.command_line or shlex.join(sys.argv),
        "generated": ctx.generated,
        "case": {
            "case_id": ctx.case_id,
            "created": ctx.case_info.get("created"),
            "examiner": ctx.case_info.get("examiner"),
            "created_with": f"{ctx.case_info.get('tool', '')} {ctx.case_info.get('tool_version', '')}".strip(),
            "description": ctx.case_info.get("description", ""),
        },
        "manifest_sha256": manifest_sha,
        "custody_head": custody_head(case.path),
        "directive_file": ctx.directive.path,
        "directive_sha256": hash_file(Path(ctx.directive.path), ("sha256",))[1]["sha256"]
        if ctx.directive.path and Path(ctx.directive.path).exists()
        else None,
        "analyze_runs": [
            {
                "run_id": r.get("run_id"),
                "started": r.get("started"),
                "finished": r.get("finished"),
                "analyzers": r.get("analyzers", {}),
                "statuses": r.get("statuses", {}),
                "findings": r.get("findings"),
                "record": f"runs/{r['_file']}",
                "record_sha256": r["_sha256"],
            }
            for r in records
        ],
        "analyzers": {
            k: {"versions": sorted(v["versions"]), "fingerprints": sorted(v["fingerprints"])}
            for k, v in sorted(analyzers.items())
        },
        "rule_sets": rule_sets,
        "rules_referenced": rules_referenced(ctx),
    }
