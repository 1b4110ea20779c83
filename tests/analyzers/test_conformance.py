"""Conformance of every registered analyzer: what it declares, the samples of its rules, its manners on bad input.

A new analyzer gets these checks without a line here: the tests walk the registry. The bad-input run collects,
for every evidence kind any analyzer consumes, an empty file, a truncated real artifact (made by the project's
builders in ``triage.testing``) and random bytes, one host per shape, and runs every analyzer over them through
the runner under a time bound. A unit may find nothing, skip with a reason, or warn; it may not raise.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from collectors.collect import collect_files
from collectors.sources import open_source_path
from triage import registry
from triage.case import Case
from triage.executors import UnitLimits
from triage.registry import Analyzer, signature_path
from triage.results import unit_records
from triage.runner import analyze_case

REPO = Path(__file__).resolve().parents[2]
SIGMA_SAMPLES = REPO / "signatures" / "sigma" / "samples"
UNIT_TIME_S = 60.0  # far above any unit's time on these few-KB inputs; a hang ends as a timeout, not a stall


def _analyzers() -> list[type[Analyzer]]:
    return [cls for _, cls in sorted(registry.discover().items())]


def _ids(classes: list[type[Analyzer]]) -> list[str]:
    return [cls.name for cls in classes]


ANALYZERS = _analyzers()


# -- declarations -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ANALYZERS, ids=_ids(ANALYZERS))
def test_declares_name_version_consumes_rules(cls: type[Analyzer]) -> None:
    assert isinstance(cls.name, str) and cls.name.isidentifier(), cls.name
    assert isinstance(cls.version, str) and cls.version[:1].isdigit(), cls.version
    assert isinstance(cls.consumes, tuple) and cls.consumes and all(isinstance(k, str) and k for k in cls.consumes)
    assert isinstance(cls.rules, tuple) and all(isinstance(r, str) for r in cls.rules)
    assert cls.scope in ("artifact", "host")
    for rel in cls.rules:
        assert signature_path(rel).exists(), f"{cls.name} declares rules {rel!r}, missing under signatures/"
    # stream 2 of issue 16 adds declared options; once there, each declares a name, a type and a help text
    for opt in getattr(cls, "options_declared", None) or getattr(cls, "option_specs", None) or ():
        assert getattr(opt, "name", "") and getattr(opt, "help", ""), f"{cls.name}: option {opt!r} undocumented"


def test_every_consumed_kind_is_a_kind_collectors_produce() -> None:
    """A consumed kind nobody collects would leave the analyzer silently idle."""
    from collectors.collect import ADS_KIND

    known = {ADS_KIND}  # alternate data streams and unrecognised loose files
    for data in ("collectors/artifacts.yaml", "signatures/formats.yaml"):  # path rules, content recognition
        doc = yaml.safe_load((REPO / data).read_text(encoding="utf-8"))
        known |= {str(a["kind"]) for a in _walk_dicts(doc) if a.get("kind")}
    for cls in ANALYZERS:
        assert set(cls.consumes) <= known, f"{cls.name} consumes {set(cls.consumes) - known}"


def _walk_dicts(node: object) -> list[dict]:
    out: list[dict] = []
    if isinstance(node, dict):
        out.append(node)
        for v in node.values():
            out.extend(_walk_dicts(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(_walk_dicts(v))
    return out


# -- rule samples -----------------------------------------------------------------------------------------------
# Where the project keeps each format's samples: Sigma in signatures/sigma/samples/*.yaml (rule id -> positive,
# negative event rows), YARA in tests/yara/yara_support.py (meta id -> positive, negative bytes; the memory rules,
# compiled apart by the memory analyzer, in tests/memory/memory_yara_samples.py), and the data-rule formats
# (registry, Exchange web logs, web-shell locations) inline, as each rule's tests.positive/negative.
YARA_SAMPLES = {  # sample file (wherever tools/mirror_tests.sh put it) -> the dict it declares
    next((REPO / "tests").rglob("yara_support.py")): "SAMPLES",
    next((REPO / "tests").rglob("memory_yara_samples.py")): "MEMORY_SAMPLES",
}
_YARA_META_ID = re.compile(r'^\s*id\s*=\s*"([^"]+)"', re.MULTILINE)


@functools.cache
def _sigma_samples() -> dict[str, dict]:
    merged: dict[str, dict] = {}
    for path in sorted(SIGMA_SAMPLES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        merged.update(doc.get("rules") or {})
        merged.update(doc.get("correlations") or {})  # correlation rules: event scenarios either side
    return merged


@functools.cache
def _yara_samples() -> dict[str, dict]:
    merged: dict[str, dict] = {}
    for path, name in YARA_SAMPLES.items():
        spec = importlib.util.spec_from_file_location(f"_conformance_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        merged.update(getattr(module, name))
    return merged


def _has_both(spec: object) -> bool:
    return isinstance(spec, dict) and bool(spec.get("positive")) and bool(spec.get("negative"))


def _rules_without_samples(path: Path) -> tuple[int, list[str]]:
    """(rules in the file, those lacking a positive or a negative sample) for one rule file of any format."""
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yar", ".yara"):
        ids = _YARA_META_ID.findall(text)
        return len(ids), [i for i in ids if not _has_both(_yara_samples().get(i))]
    if "sigma" in path.relative_to(signature_path(".")).parts:
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("id")]
        return len(docs), [str(d["id"]) for d in docs if not _has_both(_sigma_samples().get(str(d["id"])))]
    doc = yaml.safe_load(text)
    rules = doc.get("rules") if isinstance(doc, dict) else None
    if not isinstance(rules, list):
        return 0, []  # a data file (build tables, behaviour vocabulary): no rules of its own to sample
    return len(rules), [str(r.get("id")) for r in rules if not _has_both(r.get("tests"))]


# Gaps this test found, each an analyzer whose rules still lack samples; the mark goes when the samples come.
SAMPLE_GAPS: dict[str, str] = {}
_WITH_RULES = [c for c in ANALYZERS if c.rules]


@pytest.mark.parametrize(
    "cls",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=SAMPLE_GAPS[c.name]))
        if c.name in SAMPLE_GAPS
        else c
        for c in _WITH_RULES
    ],
    ids=_ids(_WITH_RULES),
)
def test_every_rule_has_positive_and_negative_samples(cls: type[Analyzer]) -> None:
    files = [p for p in cls().rule_paths() if p.suffix in (".yml", ".yaml", ".yar", ".yara")]
    assert files, f"{cls.name} declares rules {cls.rules} but none is a rule file"
    missing = []
    for path in files:
        _, lacking = _rules_without_samples(path)
        missing += [f"{path.relative_to(REPO)}: {rule_id}" for rule_id in lacking]
    assert not missing, f"{cls.name}: rules without positive and negative samples:\n" + "\n".join(missing)


def test_sample_check_sees_rules_of_each_format() -> None:
    """The check above counts rules in every format it claims to read (a parser slip would pass everything)."""
    counts = {
        rel: _rules_without_samples(signature_path(rel))[0]
        for rel in (
            "yara/webshells_aspx.yar",
            "yara/memory/minidump.yar",
            "registry/persistence.yaml",
            "exchange/weblog_indicators.yaml",
            "webshell/locations.yaml",
        )
    }
    sigma = next(iter(sorted(signature_path("sigma/ed2102").glob("*.yml"))))
    counts[sigma.name] = _rules_without_samples(sigma)[0]
    assert all(n >= 1 for n in counts.values()), counts
    assert _rules_without_samples(signature_path("registry/exchange_builds.yaml")) == (0, [])


# -- bad input --------------------------------------------------------------------------------------------------
def _real_samples() -> dict[str, tuple[str, bytes]]:
    """One real artifact per evidence kind, made by the project's builders (truncated below)."""
    from triage.testing.eventlogs import event_log_files
    from triage.testing.minidump import minidump
    from triage.testing.volume import VolumeSpec, volume_files

    files = {
        path.rsplit("/", 1)[1]: data for path, data in {**volume_files(VolumeSpec()), **event_log_files(True)}.items()
    }
    web_config = (
        b'<?xml version="1.0" encoding="UTF-8"?>\r\n<configuration><system.webServer><httpErrors errorMode="Custom"/>'
        b'<handlers><add name="aspx" path="*.aspx" verb="*" type="System.Web.UI.PageHandlerFactory"/></handlers>'
        b"</system.webServer></configuration>\r\n"
    )
    tpl_csv = (
        b'"DateTime","RequestId","ClientIpAddress","UrlHost","UrlStem","RoutingHint","UserAgent","AnchorMailbox"\r\n'
    )
    tpl_csv += (
        b'"2021-03-03T02:14:07.123Z","a1","203.0.113.7","mail.example.com","/ecp/y.js","",'
        b'"ExchangeServicesClient/0.0.0.0",""\r\n'
    )
    return {
        "registry_hive": ("SYSTEM", files["SYSTEM"]),
        "evtx": ("Security.evtx", files["Security.evtx"]),
        "event_json": ("events.jsonl", _event_json()),
        "exchange_log": ("HttpProxy_2021030302-1.LOG", files["HttpProxy_2021030302-1.LOG"]),
        "exchange_binary": ("ExSetup.exe", files["ExSetup.exe"]),
        "iis_log": ("u_ex210303.log", files["u_ex210303.log"]),
        "iis_config": ("web.config", web_config),
        "web_file": ("Dk2jQ8ab.aspx", files["Dk2jQ8ab.aspx"]),
        "suspicious_file": ("lsass.dmp", minidump()),
        "memory_image": ("EXCH01-memory.dmp", minidump()),
        "file": ("it.zip", files["it.zip"]),
        "testproxylogon_csv": ("EXCH01-Cve-2021-26855.csv", tpl_csv),
    }


def _event_json() -> bytes:
    record = {
        "@timestamp": "2021-03-03T02:14:07.123Z",
        "winlog": {
            "event_id": 4688,
            "channel": "Security",
            "computer_name": "EXCH01",
            "record_id": 7,
            "event_data": {"NewProcessName": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "cmd /c whoami"},
        },
    }
    return (json.dumps(record) + "\n").encode() * 4


SHAPES: dict[str, Callable[[str, bytes], bytes]] = {
    "EMPTY": lambda kind, real: b"",
    "TRUNCATED": lambda kind, real: real[: max(1, len(real) // 2)],
    "RANDOM": lambda kind, real: random.Random(f"conformance:{kind}").randbytes(4096),
}


@pytest.fixture(scope="module")
def bad_input_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Case, list[dict], set[str]]:
    """One case: per shape a host, per consumed kind one file of that shape; every analyzer run over it."""
    root = tmp_path_factory.mktemp("conformance")
    case = Case.create_or_open(root / "case", examiner="conformance", case_id="CASE-CONFORMANCE")
    kinds = sorted({k for cls in ANALYZERS for k in cls.consumes})
    samples = _real_samples()
    assert set(kinds) <= set(samples), f"no sample for consumed kinds {set(kinds) - set(samples)}: add one here"
    for host, shape in SHAPES.items():
        for kind in kinds:
            name, real = samples[kind]
            folder = root / "src" / host / kind
            folder.mkdir(parents=True)
            (folder / name).write_bytes(shape(kind, real))
            collect_files(case, open_source_path(str(folder), "files"), host=host, kind=kind)
    summary = analyze_case(case, jobs=2, limits=UnitLimits(time_s=UNIT_TIME_S, memory_bytes=1 << 30))
    records = [rec for _, rec in unit_records(case.path)]  # single and batch records
    ran = [r for r in records if r.get("run_id") == summary.run_id]
    assert len(ran) == summary.planned, "every planned unit has its run record"
    return case, ran, set(kinds)


@pytest.mark.slow
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("cls", ANALYZERS, ids=_ids(ANALYZERS))
def test_survives_bad_input(bad_input_run: tuple[Case, list[dict], set[str]], cls: type[Analyzer], shape: str) -> None:
    """Every unit of the analyzer on this host ran to an end that is not an exception, within the bound."""
    _, ran, _ = bad_input_run
    mine = [r for r in ran if r["analyzer"] == cls.name and r["host"] == shape]
    expected = 1 if cls.scope == "host" else len(cls.consumes)
    assert len(mine) == expected, f"{cls.name} on {shape}: {len(mine)} units, expected {expected}"
    raised = [f"{r['evidence_id']}: {r['message'][:300]}" for r in mine if r["status"] == "error"]
    assert not raised, f"{cls.name} raised on {shape.lower()} input:\n" + "\n".join(raised)
    assert {r["status"] for r in mine} <= {"success", "no_findings", "skipped"}
    assert all(r["duration_s"] <= UNIT_TIME_S for r in mine)
