"""Fuzz every analyzer through the runner: seeded mutations of small built inputs, each unit under a bound.

Default: a few hundred mutated files (``TRIAGE_FUZZ_CASES``, default 200; ``TRIAGE_FUZZ_SEED`` picks
another run). Every mutated file is collected into one case beside an intact compromised volume; all
units run together under a time and memory bound. Every unit must end as a run record
(success, no_findings, skipped or error) within its bound, and the intact host's findings must be
exactly those of a run without the mutants. Units that error are printed (``pytest -s``) with the
case number and seed that rebuild their input: those are parser bugs the bound contained.

Long run: ``TRIAGE_FUZZ_CASES=3000 pytest tests/fuzz -s``.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from collectors.collect import collect_files, collect_volume
from collectors.sources import open_source_path
from triage.case import Case
from triage.executors import UnitLimits
from triage.finding import RUN_STATUSES
from triage.report import load_findings
from triage.results import unit_records
from triage.runner import analyze_case
from triage.testing.volume import VolumeSpec, build_volume

from .mutate import mutate, seed_inputs

CASES = int(os.environ.get("TRIAGE_FUZZ_CASES", "200"))
SEED = int(os.environ.get("TRIAGE_FUZZ_SEED", "2102"))
LIMITS = UnitLimits(time_s=float(os.environ.get("TRIAGE_FUZZ_UNIT_TIME", "60")), memory_bytes=1 << 30)
PER_HOST = 8  # mutants per host: host-scope units (proxylogon, registry) each see a few bad inputs at once
INTACT = "EXCH01"
# a raw memory image would run Volatility for minutes per mutant: memory images are fuzzed as minidumps
SKIP = ("memory_image",)


def _findings_of(case: Case, host: str) -> list[tuple[str, str]]:
    df = load_findings(case)
    df = df[df["host"] == host]
    return sorted(zip(df["analyzer"], df["finding_id"], strict=True))


@pytest.fixture(scope="module")
def intact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str]]]:
    """A case holding the compromised volume, analysed once: its findings are what must survive the fuzz."""
    root = tmp_path_factory.mktemp("fuzz-intact")
    vol = build_volume(root / "vol", VolumeSpec())
    case = Case.create_or_open(root / "case", examiner="fuzz", case_id="CASE-FUZZ")
    collect_volume(case, open_source_path(str(vol)), host=INTACT)
    analyze_case(case, jobs=2, limits=LIMITS)
    want = _findings_of(case, INTACT)
    assert want, "the intact volume gives findings"
    return case.path, want


@pytest.mark.slow
def test_every_unit_ends_within_its_bound(intact: tuple[Path, list[tuple[str, str]]], tmp_path: Path) -> None:
    template, want = intact
    shutil.copytree(template, tmp_path / "case", symlinks=True)
    case = Case.open(tmp_path / "case")
    seeds = seed_inputs()
    kinds = sorted(seeds)
    where: dict[str, tuple[str, int]] = {}  # file name -> (kind, case number)
    for i in range(CASES):
        kind = kinds[i % len(kinds)]
        name, data = seeds[kind][(i // len(kinds)) % len(seeds[kind])]
        folder = tmp_path / "src" / f"FUZZ{i // PER_HOST:03d}" / kind
        folder.mkdir(parents=True, exist_ok=True)
        fname = f"c{i:05d}-{name}"
        (folder / fname).write_bytes(mutate(data, i, SEED))
        where[fname] = (kind, i)
    for host_dir in sorted((tmp_path / "src").iterdir()):
        for kind_dir in sorted(host_dir.iterdir()):
            collect_files(case, open_source_path(str(kind_dir), "files"), host=host_dir.name, kind=kind_dir.name)

    s = analyze_case(case, jobs=2, limits=LIMITS, force=True)

    records = [rec for _, rec in unit_records(case.path)]  # single and batch records
    ran = [r for r in records if r.get("run_id") == s.run_id]
    assert len(ran) == s.planned == sum(s.statuses.values()), "every planned unit has its record"
    assert {r["status"] for r in ran} <= set(RUN_STATUSES)
    too_long = [r for r in ran if r["duration_s"] > LIMITS.time_s + 5]
    assert not too_long, too_long
    # what the bound contained: one line per failed unit, with what rebuilds its input
    rows = {r.artifact_id: r for r in case.evidence()}
    errors = Counter()
    for r in sorted((r for r in ran if r["status"] == "error"), key=lambda r: (r["analyzer"], r["evidence_id"])):
        row = rows.get(r["evidence_id"])
        src = Path(row.source_path).name if row else r["host"]
        kind, number = where.get(src, ("host", -1))
        errors[r["analyzer"]] += 1
        print(f"FUZZ-ERROR {r['analyzer']} {kind} case={number} seed={SEED} file={src}: {r['message'][:200]}")
    print(f"fuzz: {CASES} mutants, {s.planned} units, statuses {dict(s.statuses)}, errors by analyzer {dict(errors)}")
    # the intact host's findings are untouched by hundreds of hostile neighbours
    assert _findings_of(case, INTACT) == want
