"""Batches and the heuristics' pre-filter never lose a match: the same findings as one unit per file, and the
same (file, rule) pairs as the engine over each file on its own."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from analyzers.yara.content import YaraScan
from analyzers.yara.engine import file_externals
from analyzers.yara.heuristics import SNIFF_BYTES, inspect, needs_content
from collectors.collect import collect_files
from collectors.sources import open_source_path
from triage.case import Case
from triage.report import load_findings
from triage.runner import BatchLimits, analyze_case
from triage.testing.webshells import family_samples

pytestmark = pytest.mark.slow  # two analyses of one collection with a pool of two workers

ANALYZERS = ("yara", "webshell_heuristics")
# a page whose server code starts past the heuristics' sniffed head: only a full read finds its flow
LATE_PAGE = (
    b'<%@ Page Language="C#" %>\r\n<html><body>'
    + b"<p>stock text</p>\r\n" * (SNIFF_BYTES // 18 + 10)
    + b'<% System.Diagnostics.Process.Start("cmd.exe", "/c " + Request["c"]); %></body></html>\r\n'
)


def _webroot(root: Path, pages: int = 60, seed: int = 15) -> Path:
    """Stock-looking pages, scripts and images (two of them over the sniffed head), with every shell family planted."""
    rng = random.Random(seed)
    web = root / "wwwroot"
    for i in range(pages):
        ext = rng.choice((".aspx", ".js", ".css", ".png"))
        body = bytes(rng.choice(b"abcdefgh <>{}();=\r\n") for _ in range(rng.choice((200, 2000, 9000))))
        head = b'<%@ Page Language="C#" %>\r\n' if ext == ".aspx" else b"\x89PNG\r\n\x1a\n" if ext == ".png" else b""
        d = web / f"d{i % 4}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:03d}{ext}").write_bytes(head + body)
    (web / "bundle.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.randbytes(SNIFF_BYTES + 4096))
    (web / "late.txt").write_bytes(LATE_PAGE)  # a page by its content only, and that content is past the head
    for s in family_samples():
        p = web / "aspnet_client" / s.family / s.name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(s.data)
    return web


def _keys(case: Case) -> set[tuple[str, str, str, str]]:
    df = load_findings(case)
    return {
        (a, r, json.loads(attrs)["path"], fid)
        for a, r, attrs, fid in zip(df["analyzer"], df["rule_id"], df["attributes"], df["finding_id"], strict=True)
    }


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[Case, Case, Path]:
    """One collection analyzed in batches (2 workers) and, in a copy, one unit per file."""
    root = tmp_path_factory.mktemp("batches")
    web = _webroot(root / "src")
    case = Case.create_or_open(root / "batched", examiner="tester", case_id="CASE-BATCH")
    collect_files(case, open_source_path(str(web), "files"), host="WEB01", kind="web_file")
    case.close()
    shutil.copytree(root / "batched", root / "single", symlinks=True)
    batched, single = Case.open(root / "batched"), Case.open(root / "single")
    s1 = analyze_case(batched, jobs=2, only=ANALYZERS, batching=BatchLimits(count=16, per_worker=1))
    s2 = analyze_case(single, jobs=2, only=ANALYZERS, batching=BatchLimits(count=1))
    assert not s1.errors and not s2.errors
    return batched, single, web


def test_batches_find_what_one_unit_per_file_finds(both: tuple[Case, Case, Path]) -> None:
    batched, single, _ = both
    got, want = _keys(batched), _keys(single)
    assert got == want
    # the comparison has teeth: every planted family is found, by YARA and by the heuristics
    paths = {p for _, _, p, _ in got}
    for s in family_samples():
        assert any(p.endswith(f"/{s.family}/{s.name}") for p in paths), s.name
    assert {a for a, _, _, _ in got} == set(ANALYZERS)
    assert any(a == "webshell_heuristics" and p.endswith("/late.txt") for a, _, p, _ in got)
    assert batched.path.joinpath("results", "yara").is_dir()
    assert len(list((batched.path / "results" / "yara").glob("*.batch.json"))) >= 2


def test_yara_pairs_match_the_engine_per_file(both: tuple[Case, Case, Path]) -> None:
    """The analyzer's (file, rule) pairs are the engine's over each source file scanned alone."""
    batched, _, web = both
    compiled = YaraScan({}).ruleset
    want = set()
    for p in sorted(x for x in web.rglob("*") if x.is_file()):
        rel = p.relative_to(web).as_posix()
        for m in compiled.scan(p, file_externals(rel, p.read_bytes()[:16])):
            want.add((rel, m.rule))
    rels = {rel for rel, _ in want}
    got = set()
    df = load_findings(batched)
    for attrs in df.loc[df["analyzer"] == "yara", "attributes"]:
        a = json.loads(attrs)  # the logical path is the collection's folder name, then the path below it
        got.add((next((r for r in rels if a["path"].endswith("/" + r)), a["path"]), a["rule"]))
    assert want and got == want


def test_prefilter_reads_on_only_what_can_be_a_page() -> None:
    head = LATE_PAGE[:SNIFF_BYTES]
    assert needs_content(head, "wwwroot/late.txt")  # a directive in the head: read on
    assert needs_content(b"", "x/page.aspx") and needs_content(b"", "x/web.config")
    assert needs_content(b"\xff\xfe<\x00%\x00", "x/blob.bin")  # UTF-16: judged by its decoded text
    assert not needs_content(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "x/img.png")
    # what the full read finds, and the head alone misses (so the pre-filter must not cut a page short)
    assert inspect(LATE_PAGE, "late.txt").flows
    assert not inspect(head, "late.txt").flows
