"""The engine adapter: per-file fallback between engines, skipped files with messages, the disk cache, externals."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzers.yara import engine
from analyzers.yara.content import severity_for
from analyzers.yara.engine import (
    RELAXED_FIRST,
    YARA_PYTHON,
    YARA_X,
    YARA_X_RELAXED,
    compile_rules,
    engine_order,
    file_externals,
    find_rule_files,
    load_rules,
    ruleset_key,
)

GOOD = b'rule Good_Rule { meta: score = 70 strings: $a = "marker-good" condition: $a }\n'
# libyara reads '{' after '$' as a literal; yara-x wants it escaped (the NSA 'extended' set has this form)
YARAX_REJECTS = (
    b'rule Legacy_Regex { meta: description = "lenient regex" strings: $v = /\\${\\$[0-9a-zA-z]+}/ condition: $v }\n'
)
BROKEN = b'rule Broken_Rule { strings: $a = "x" condition: $a and no_such_identifier }\n'
EXTERNALS_RULE = b"""
rule Uses_Externals {
    strings: $s = "<%"
    condition: $s and extension == ".aspx" and filename matches /^[a-z0-9]{8}\\.aspx$/is
        and filepath contains "\\\\aspnet_client\\\\" and filetype == "UNKNOWN" and owner == ""
}
"""


def _rules_dir(tmp_path: Path, files: dict[str, bytes]) -> Path:
    d = tmp_path / "thirdparty"
    d.mkdir()
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d


def test_fallback_per_file_and_skipped_with_messages(tmp_path: Path) -> None:
    d = _rules_dir(tmp_path, {"a_good.yar": GOOD, "b_legacy.yar": YARAX_REJECTS, "c_broken.yara": BROKEN})
    compiled = compile_rules(find_rule_files([d], "third_party"), engine=YARA_X)
    by_name = {Path(f.path).name: f for f in compiled.files}
    assert by_name["a_good.yar"].engine == YARA_X and by_name["a_good.yar"].message == ""
    legacy = by_name["b_legacy.yar"]
    assert legacy.status == "compiled" and legacy.engine == YARA_PYTHON
    assert "yara-x: error[E014]" in legacy.message  # why it fell back
    broken = by_name["c_broken.yara"]
    assert broken.status == "skipped" and broken.engine == ""
    assert all(f"{e}:" in broken.message for e in (YARA_X, YARA_PYTHON, YARA_X_RELAXED))
    assert "no_such_identifier" in broken.message
    assert [f.namespace for f in compiled.skipped] == ["thirdparty/c_broken"]
    hits = compiled.scan(b"xx marker-good ${$abc} yy")
    assert sorted((m.rule, m.engine) for m in hits) == [("Good_Rule", YARA_X), ("Legacy_Regex", YARA_PYTHON)]
    assert compiled.report()["by_engine"] == {YARA_X: 1, YARA_PYTHON: 1, YARA_X_RELAXED: 0}


def test_preferring_yara_python(tmp_path: Path) -> None:
    d = _rules_dir(tmp_path, {"a_good.yar": GOOD, "b_legacy.yar": YARAX_REJECTS})
    compiled = compile_rules(find_rule_files([d], "third_party"), engine=YARA_PYTHON)
    assert {f.engine for f in compiled.files} == {YARA_PYTHON}
    assert {m.rule for m in compiled.scan(b"marker-good ${$q}")} == {"Good_Rule", "Legacy_Regex"}


def test_relaxed_yara_x_when_yara_python_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_import_yara", lambda: None)
    d = _rules_dir(tmp_path, {"b_legacy.yar": YARAX_REJECTS})
    (status,) = compile_rules(find_rule_files([d], "third_party")).files
    assert status.engine == YARA_X_RELAXED
    assert "yara-python: yara-python is not installed" in status.message


def test_relaxed_first_keeps_legacy_files_in_yara_x(tmp_path: Path) -> None:
    d = _rules_dir(tmp_path, {"a_good.yar": GOOD, "b_legacy.yar": YARAX_REJECTS, "c_broken.yar": BROKEN})
    compiled = compile_rules(find_rule_files([d], "third_party"), fallback=RELAXED_FIRST)
    assert [f.engine for f in compiled.files] == [YARA_X, YARA_X_RELAXED, ""]
    # relaxed yara-x takes the strict file too: one part, one scan per file
    assert [(p.engine, sorted(p.namespaces)) for p in compiled.parts] == [
        (YARA_X_RELAXED, [f.namespace for f in compiled.files if f.engine])
    ]
    assert sorted(m.rule for m in compiled.scan(b"marker-good ${$abc}")) == ["Good_Rule", "Legacy_Regex"]
    assert engine_order(YARA_PYTHON, RELAXED_FIRST) == (YARA_PYTHON, YARA_X, YARA_X_RELAXED)
    with pytest.raises(ValueError):
        engine_order(YARA_X, "sideways")


def test_a_failed_file_leaves_no_rules_behind(tmp_path: Path) -> None:
    """yara-x keeps the good rules of a source that failed: the adapter rebuilds so a file is all-or-nothing."""
    mixed = b'rule Half_Good { strings: $a = "half-good" condition: $a }\n' + BROKEN
    d = _rules_dir(tmp_path, {"mixed.yar": mixed, "good.yar": GOOD})
    compiled = compile_rules(find_rule_files([d], "third_party"))
    assert [Path(f.path).name for f in compiled.skipped] == ["mixed.yar"]
    assert [m.rule for m in compiled.scan(b"half-good marker-good")] == ["Good_Rule"]


def test_cache_is_hit_on_the_second_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _rules_dir(tmp_path, {"a_good.yar": GOOD, "b_legacy.yar": YARAX_REJECTS, "c_broken.yar": BROKEN})
    files = find_rule_files([d], "third_party")
    cache = tmp_path / "cache"
    first = load_rules(files, cache_dir=cache)
    assert first.cache["hit"] is False and first.cache["compile_s"] > 0
    key = ruleset_key(files, YARA_X)
    assert (cache / f"{key}.json").exists() and len(list(cache.glob(f"{key}.*.bin"))) == 2  # yara-x + yara-python

    def no_compiling(*a: object, **k: object) -> None:
        raise AssertionError("compiled although the cache holds the rules")

    monkeypatch.setattr(engine, "compile_rules", no_compiling)
    second = load_rules(find_rule_files([d], "third_party"), cache_dir=cache)
    assert second.cache["hit"] is True
    assert [(f.namespace, f.status, f.engine, f.message) for f in second.files] == [
        (f.namespace, f.status, f.engine, f.message) for f in first.files
    ]
    data = b"marker-good ${$x}"
    assert sorted(m.rule for m in second.scan(data)) == sorted(m.rule for m in first.scan(data))


def test_changed_rules_or_damaged_cache_compile_again(tmp_path: Path) -> None:
    d = _rules_dir(tmp_path, {"a_good.yar": GOOD})
    cache = tmp_path / "cache"
    files = find_rule_files([d], "third_party")
    load_rules(files, cache_dir=cache)
    (d / "a_good.yar").write_bytes(GOOD.replace(b"marker-good", b"marker-new"))
    changed = load_rules(find_rule_files([d], "third_party"), cache_dir=cache)
    assert changed.cache["hit"] is False and [m.rule for m in changed.scan(b"marker-new")] == ["Good_Rule"]
    for blob in cache.glob("*.bin"):
        blob.write_bytes(blob.read_bytes()[:20])  # truncated: the recorded hash no longer fits
    again = load_rules(find_rule_files([d], "third_party"), cache_dir=cache)
    assert again.cache["hit"] is False and [m.rule for m in again.scan(b"marker-new")] == ["Good_Rule"]


def test_no_cache_writes_nothing(tmp_path: Path) -> None:
    d = _rules_dir(tmp_path, {"a_good.yar": GOOD})
    compiled = load_rules(find_rule_files([d], "third_party"), cache_dir=tmp_path / "c", use_cache=False)
    assert compiled.cache["hit"] is False and not (tmp_path / "c").exists()


def test_file_externals_follow_loki() -> None:
    ext = file_externals("C:/inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.ASPX", b"<%@", "ABCDEF")
    assert ext == {
        "filename": "Dk2jQ8ab.ASPX",
        "filepath": "C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\Dk2jQ8ab.ASPX",
        "extension": ".aspx",
        "filetype": "UNKNOWN",
        "owner": "",
        "md5": "abcdef",
    }
    assert file_externals("C:/x/a.dll", b"MZ\x90\x00")["filetype"] == "EXE"
    assert file_externals("C:/root/l.dmp", b"MDMP\x93\xa7")["filetype"] == "MDMP"
    assert file_externals("")["filename"] == "" and file_externals("")["extension"] == ""


@pytest.mark.parametrize("first", [YARA_X, YARA_PYTHON])
def test_externals_are_set_per_scan(tmp_path: Path, first: str) -> None:
    d = _rules_dir(tmp_path, {"ext.yar": EXTERNALS_RULE})
    compiled = compile_rules(find_rule_files([d], "third_party"), engine=first)
    page = b'<%@ Page Language="C#" %>'
    hit = file_externals("C:/inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx", page[:16])
    assert [m.rule for m in compiled.scan(page, hit)] == ["Uses_Externals"]
    for other in ("C:/inetpub/wwwroot/aspnet_client/logon.aspx", "C:/inetpub/wwwroot/Dk2jQ8ab.aspx"):
        assert compiled.scan(page, file_externals(other, page[:16])) == []
    assert compiled.scan(page, file_externals("C:/inetpub/wwwroot/aspnet_client/x/Dk2jQ8ab.aspx", b"MZ")) == []


def test_severity_from_meta() -> None:
    assert severity_for({"severity": "HIGH"}, own=False) == "high"
    assert severity_for({"severity": "informational"}, own=False) == "info"
    assert severity_for({"score": 85}, own=False) == "high"
    assert severity_for({"score": "70"}, own=False) == "medium"
    assert severity_for({"score": 50}, own=False) == "low"
    assert severity_for({"score": 10}, own=False) == "info"
    assert severity_for({"score": "n/a"}, own=False) == "medium"
    assert severity_for({}, own=False) == "medium"
    assert severity_for({}, own=True) == "high"


def test_namespaces_stay_unique_across_sets(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "yara", tmp_path / "b" / "yara"
    for d in (a, b):
        d.mkdir(parents=True)
        (d / "apt.yar").write_bytes(GOOD)
    taken: set[str] = set()
    files = find_rule_files([a], "third_party", taken) + find_rule_files([b], "third_party", taken)
    assert [f.namespace for f in files] == ["yara/apt", "yara/apt#2"]
    compiled = compile_rules(files)
    assert sorted(m.namespace for m in compiled.scan(b"marker-good")) == ["yara/apt", "yara/apt#2"]


@pytest.mark.parametrize("damage", ["truncated part", "missing part", "garbled index"])
def test_a_corrupt_cache_entry_is_ignored_with_a_warning_and_rebuilt(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    d = _rules_dir(tmp_path, {"a_good.yar": GOOD, "b_legacy.yar": YARAX_REJECTS})
    cache = tmp_path / "cache"
    files = find_rule_files([d], "third_party")
    key = ruleset_key(files, YARA_X)
    load_rules(files, cache_dir=cache)
    blob = sorted(cache.glob(f"{key}.*.bin"))[0]
    if damage == "truncated part":
        blob.write_bytes(blob.read_bytes()[:20])
    elif damage == "missing part":
        blob.unlink()
    else:
        (cache / f"{key}.json").write_text("{not json")
    with caplog.at_level("WARNING", logger=engine.__name__):
        again = load_rules(find_rule_files([d], "third_party"), cache_dir=cache)
    assert again.cache["hit"] is False  # compiled, not loaded from the damaged entry
    assert any("unusable" in r.getMessage() and key in r.getMessage() for r in caplog.records)
    assert sorted(m.rule for m in again.scan(b"marker-good ${$x}")) == ["Good_Rule", "Legacy_Regex"]
    rebuilt = load_rules(find_rule_files([d], "third_party"), cache_dir=cache)  # the entry was written again
    assert rebuilt.cache["hit"] is True
    assert sorted(m.rule for m in rebuilt.scan(b"marker-good ${$x}")) == ["Good_Rule", "Legacy_Regex"]


def test_cache_key_follows_rule_bytes_engine_version_and_externals(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    d = _rules_dir(tmp_path, {"a_good.yar": GOOD})
    files = find_rule_files([d], "third_party")
    base = ruleset_key(files, YARA_X)
    assert ruleset_key(files, YARA_PYTHON) != base
    monkeypatch.setattr(engine, "engine_versions", lambda: {YARA_X: "0.0.1", YARA_PYTHON: "4.5.4"})
    assert ruleset_key(files, YARA_X) != base  # an engine upgrade never loads the old engine's blob
    monkeypatch.undo()
    monkeypatch.setattr(engine, "EXTERNALS", (*engine.EXTERNALS, "sha256"))
    assert ruleset_key(files, YARA_X) != base
    monkeypatch.undo()
    (d / "a_good.yar").write_bytes(GOOD + b"\n")
    assert ruleset_key(find_rule_files([d], "third_party"), YARA_X) != base


def test_fingerprint_follows_rule_edits_on_the_same_object(tmp_path: Path) -> None:
    """One analyzer object (a long-lived worker) sees a rule edited between runs; within a run it is asked once."""
    from analyzers.yara.content import YaraScan

    d = _rules_dir(tmp_path, {"a_good.yar": GOOD})
    scan = YaraScan({"yara": [str(d)]})
    first = scan.run_fingerprint("run-1")
    (d / "a_good.yar").write_bytes(GOOD.replace(b"marker-good", b"marker-new"))
    assert scan.run_fingerprint("run-1") == first  # the rules loaded at the run's start
    assert scan.run_fingerprint("run-2") != first
    assert scan.fingerprint() != YaraScan({}).fingerprint()


def test_excerpts_from_bytes_read_once_equal_those_read_from_the_file(tmp_path: Path) -> None:
    """Small files are scanned from the bytes read once, big ones by path: the matches and excerpts agree."""
    from analyzers.yara.content import _read_excerpts

    d = _rules_dir(tmp_path, {"a_good.yar": GOOD})
    compiled = compile_rules(find_rule_files([d], "third_party"))
    page = tmp_path / "page.aspx"
    data = b"\x00\xffhead " * 100 + b"marker-good" + b" tail\\x" * 50
    page.write_bytes(data)
    by_bytes = compiled.scan(data)
    by_path = compiled.scan(page)
    assert [(m.rule, [(h.offset, h.length) for h in m.strings]) for m in by_bytes] == [
        (m.rule, [(h.offset, h.length) for h in m.strings]) for m in by_path
    ] == [("Good_Rule", [(700, 11)])]
    assert _read_excerpts(data, by_bytes[0]) == _read_excerpts(page, by_path[0])
    assert _read_excerpts(data, by_bytes[0])[0]["data"] == "marker-good"
