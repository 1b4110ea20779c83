"""Helpers of the registry tests: host-scope units over files written to a temporary case folder."""

from __future__ import annotations

import hashlib
import lzma
import shutil
from pathlib import Path

from triage.case import ManifestRow
from triage.finding import Finding
from triage.registry import Analyzer, Unit

REPO = Path(__file__).resolve().parents[3]
CORPUS_HIVES = REPO.parent / "shared" / "corpus" / "hives"
KINDS = {"exsetup.exe": "exchange_binary"}


def make_unit(tmp_path: Path, analyzer: Analyzer, files: dict[str, bytes], host: str = "EXCH01") -> Unit:
    """A host-scope unit whose members are ``files`` (logical path ``C:/...`` -> bytes)."""
    case_dir = tmp_path / "case"
    rows = []
    for i, (logical, data) in enumerate(sorted(files.items())):
        kind = KINDS.get(logical.rsplit("/", 1)[-1].lower(), "registry_hive")
        drive, rest = logical.split(":/", 1)
        relpath = f"evidence/{host}/{kind}/{drive}/{rest}"
        path = case_dir / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o444)
        rows.append(
            ManifestRow(
                artifact_id=f"A{i:05d}",
                kind=kind,
                outcome="success",
                source_host=host,
                source_path=logical.replace("/", "\\"),
                collector="test",
                collector_version="1",
                collected_at="2021-03-04T10:00:00Z",
                relpath=relpath,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    group = ManifestRow(
        artifact_id="Hgroup",
        kind="host",
        outcome="success",
        source_host=host,
        source_path="",
        collector="triage.runner",
        collector_version="1",
        collected_at="",
        relpath="",
        sha256="0" * 64,
    )
    return Unit(
        case_id="CASE-T", case_dir=case_dir, host=host, evidence=group, path=case_dir, analyzer=analyzer, members=rows
    )


def run(analyzer: Analyzer, unit: Unit) -> list[Finding]:
    return list(analyzer.analyze(unit))


def corpus_hive(name: str, tmp_path: Path) -> Path | None:
    """A corpus hive copied (decompressed if .xz) into ``tmp_path``; None when the corpus is absent."""
    for candidate in (CORPUS_HIVES / f"{name}.xz", CORPUS_HIVES / name):
        if candidate.exists():
            tmp_path.mkdir(parents=True, exist_ok=True)
            out = tmp_path / name
            if candidate.suffix == ".xz":
                out.write_bytes(lzma.decompress(candidate.read_bytes()))
            else:
                shutil.copyfile(candidate, out)
            return out
    return None
