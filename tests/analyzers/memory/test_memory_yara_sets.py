"""``--yara`` sets over raw memory images: third-party rules reach the raw scan, through the compiled-rule cache."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from memory_support import plant_sparse, wide

from analyzers.memory import yararules
from analyzers.memory.analyzer import MemoryAnalyzer
from analyzers.yara import engine
from collectors.collect import collect_files
from collectors.sources import open_source_path
from triage.case import Case
from triage.runner import analyze_case, result_paths

MARKER = "zq-implant-beacon-7731"
# written in the style of third-party sets: a score instead of a severity, no id, libyara's lenient regex dialect
# in the second file (a '{' after '$' unescaped, which strict yara-x rejects)
THIRD_PARTY = {
    "implant_strings.yar": f"""
rule ThirdParty_Implant_Beacon {{
    meta:
        description = "test-only rule: the implant's beacon marker"
        score = 80
    strings:
        $a = "{MARKER}" ascii wide
    condition:
        $a
}}
""",
    "legacy_regex.yar": r"""
rule ThirdParty_Legacy_Template {
    meta:
        description = "test-only rule with a regex only libyara's dialect accepts"
    strings:
        $t = /\${\$zq[0-9]{4}}/
    condition:
        $t
}
""",
}


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    d = tmp_path / "thirdparty"
    d.mkdir()
    for name, text in THIRD_PARTY.items():
        (d / name).write_text(text)
    return d


@pytest.fixture
def image_case(tmp_path: Path) -> Case:
    img = plant_sparse(
        tmp_path / "EXCH01.raw",
        4 << 20,
        {0x12_3450: wide(f"GET /owa/auth/x.aspx {MARKER}"), 0x20_0010: b"tpl ${$zq2021} end"},
    )
    case = Case.create_or_open(tmp_path / "case", examiner="pytest", case_id="MEM-YARA-SETS")
    collect_files(case, open_source_path(str(img), "memory"), host="EXCH01")
    return case


def _rules(case: Case) -> dict[str, str]:
    frames = [pd.read_parquet(p) for p in sorted((case.path / "results" / "memory").glob("*.parquet"))]
    df = pd.concat(frames, ignore_index=True)
    return dict(zip(df.rule_id, df.location, strict=True))


def test_yara_sets_reach_the_raw_memory_scan(image_case: Case, rules_dir: Path) -> None:
    analyze_case(image_case, only=("memory",), jobs=1, options={"memory": {"volatility": False}})
    assert not any("ThirdParty" in r for r in _rules(image_case))  # the project's rules alone do not know it

    opts = {"memory": {"volatility": False, "yara": [str(rules_dir)]}}
    analyze_case(image_case, only=("memory",), jobs=1, options=opts)  # a new fingerprint: the unit reruns
    found = _rules(image_case)
    # wide string at 0x123450 + len("GET /owa/auth/x.aspx ") * 2
    assert found["MEM-YARA-ThirdParty_Implant_Beacon"] == f"offset:{0x12_3450 + 42:#x}"
    assert found["MEM-YARA-ThirdParty_Legacy_Template"] == f"offset:{0x20_0014:#x}"
    image = next(r for r in image_case.evidence() if r.kind == "memory_image")
    run = json.loads(result_paths(image_case.path, "memory", image.artifact_id)[1].read_text())
    assert run["status"] == "success" and not [w for w in run["warnings"] if "left out" in w]


def test_memory_rules_load_from_the_shared_cache(rules_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TRIAGE_YARA_CACHE", str(tmp_path / "ycache"))
    files = yararules.rule_files([rules_dir])
    first = yararules.compile_rules(files)
    assert first.cache["hit"] is False and first.problems == []

    def no_compiling(*a: object, **k: object) -> None:
        raise AssertionError("compiled although the cache holds the rules")

    monkeypatch.setattr(engine, "compile_rules", no_compiling)
    second = yararules.compile_rules(files)
    assert second.cache["hit"] is True and second.cache["key"] == first.cache["key"]
    assert set(second.meta) == set(first.meta) and any(k.endswith(".ThirdParty_Implant_Beacon") for k in second.meta)
    assert second.meta[next(k for k in second.meta if "Beacon" in k)]["_file"].endswith("implant_strings.yar")


def test_the_yara_option_is_declared_and_fingerprinted(rules_dir: Path) -> None:
    from triage.app import RuleInputs, analyzer_options

    opts = analyzer_options(RuleInputs(yara=(str(rules_dir),)))
    assert opts["memory"]["yara"] == opts["yara"]["yara"] == [str(rules_dir)]
    plain = MemoryAnalyzer({}).fingerprint()
    with_set = MemoryAnalyzer({"yara": [str(rules_dir)]})
    assert with_set.fingerprint() != plain
    assert rules_dir / "implant_strings.yar" in with_set.rule_paths()
    before = with_set.fingerprint()
    (rules_dir / "implant_strings.yar").write_text(THIRD_PARTY["implant_strings.yar"].replace("80", "60"))
    MemoryAnalyzer._fp_cache.clear()
    assert MemoryAnalyzer({"yara": [str(rules_dir)]}).fingerprint() != before  # an edited rule reruns images
