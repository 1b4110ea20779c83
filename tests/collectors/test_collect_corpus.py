"""Collecting real third-party Windows data (../shared/corpus) laid out as a Windows volume.

The corpus is only read (through O_NOATIME where allowed) and copied into tmp_path; it is checked
unchanged afterwards. Expected hashes come from hashlib over the corpus bytes and, for files kept
byte-identical to upstream (mode ``raw``), from the corpus's own MANIFEST.md as well.
"""

from __future__ import annotations

import errno
import hashlib
import lzma
import os
import re
from pathlib import Path

import pytest
from collectors_support import collect, rows_by_outcome, sha256, stored_rows

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason=f"shared corpus not present at {CORPUS}"),
]

IIS_LOGS = ("PLS_iis10.log", "PLS_iis7_owa.log")


def read_corpus(path: Path) -> bytes:
    """Read without moving the corpus file's access time where the kernel lets us."""
    flags = os.O_RDONLY | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | getattr(os, "O_NOATIME", 0))
    except PermissionError:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def manifest_table() -> dict[str, dict[str, str]]:
    """path -> {mode, size, sha256, content_sha256} from the corpus MANIFEST.md 'Files' table."""
    out = {}
    for line in (CORPUS / "MANIFEST.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `") or line.count("|") < 8:
            continue
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) < 6 or not re.fullmatch(r"`[^`]+`", cols[0]) or "/" not in cols[0]:
            continue
        hashes = re.findall(r"`([0-9a-f]{64})`", cols[5])
        if not hashes:
            continue
        out[cols[0].strip("`")] = {
            "mode": cols[3],
            "size": cols[4].replace(",", ""),
            "sha256": hashes[0],
            "content_sha256": hashes[1] if len(hashes) > 1 else hashes[0],
        }
    return out


def manifest_total(folder: str) -> int:
    m = re.search(rf"^\| `{re.escape(folder)}/` \| (\d+) \|", (CORPUS / "MANIFEST.md").read_text(), re.M)
    assert m, f"no total for {folder}/ in MANIFEST.md"
    return int(m.group(1))


def corpus_state(paths: list[Path]) -> dict[str, tuple[str, int, int, int]]:
    return {str(p): (sha256(read_corpus(p)), p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_mode) for p in paths}


@pytest.fixture(scope="module")
def layout() -> dict[str, Path]:
    """Volume-relative path -> the corpus file whose bytes go there (SYSTEM is the decompressed xz)."""
    out: dict[str, Path] = {}
    for evtx in sorted((CORPUS / "evtx").rglob("*.evtx")):
        out[f"Windows/System32/winevt/Logs/{evtx.parent.name}__{evtx.name}"] = evtx
    out["Users/alice/NTUSER.DAT"] = CORPUS / "hives" / "PLS_NTUSER-RunTests.DAT"
    out["Windows/System32/config/SYSTEM"] = CORPUS / "hives" / "RGP_SYSTEM.xz"
    for shell in sorted((CORPUS / "webshells").iterdir()):
        out[f"inetpub/wwwroot/aspnet_client/{shell.name}"] = shell
    for log in IIS_LOGS:
        out[f"inetpub/logs/LogFiles/W3SVC1/{log}"] = CORPUS / "logs" / log
    return out


@pytest.fixture(scope="module")
def collected(layout, tmp_path_factory):
    from triage.case import Case

    used = sorted(set(layout.values()))
    before = corpus_state(used)
    root = tmp_path_factory.mktemp("corpus")
    vol = root / "vol"
    content: dict[str, bytes] = {}
    for rel, corpus_file in layout.items():
        data = read_corpus(corpus_file)
        if corpus_file.suffix == ".xz":
            data = lzma.decompress(data)
        content[rel] = data
        (vol / rel).parent.mkdir(parents=True, exist_ok=True)
        (vol / rel).write_bytes(data)
    case = Case.create_or_open(root / "case", examiner="pytest")
    src, stats = collect(case, vol)
    return {
        "vol": vol,
        "source_type": src.source_type,
        "case": case,
        "stats": stats,
        "content": content,
        "before": before,
        "after": corpus_state(used),
    }


def test_counts_per_kind(collected):
    n_evtx = len(list((CORPUS / "evtx").rglob("*.evtx")))
    assert n_evtx == manifest_total("evtx") == 32
    n_shells = len(list((CORPUS / "webshells").iterdir()))
    assert n_shells == manifest_total("webshells") == 6
    stats = collected["stats"]
    assert collected["source_type"] == "volume"
    assert dict(stats.kinds) == {"evtx": n_evtx, "registry_hive": 2, "web_file": n_shells, "iis_log": 2}
    assert stats.files == n_evtx + 2 + n_shells + 2
    assert stats.outcomes["failure"] == 0
    assert stats.bytes == sum(len(b) for b in collected["content"].values())


def test_every_stored_hash_is_the_corpus_hash(collected, layout):
    case, content = collected["case"], collected["content"]
    rows = {r.source_path: r for r in stored_rows(case)}
    assert set(rows) == {str(collected["vol"] / rel) for rel in layout}
    manifest = manifest_table()
    checked_against_manifest = 0
    for rel, corpus_file in layout.items():
        row = rows[str(collected["vol"] / rel)]
        data = content[rel]
        assert row.sha256 == sha256(data), rel
        assert row.md5 == hashlib.md5(data).hexdigest(), rel
        assert row.size == len(data), rel
        assert row.relpath == f"evidence/{row.source_host}/{row.kind}/C/{rel}"
        assert (case.path / row.relpath).read_bytes() == data
        entry = manifest[corpus_file.relative_to(CORPUS).as_posix()]
        if entry["mode"] == "raw":
            assert row.sha256 == entry["sha256"], rel
            assert row.size == int(entry["size"]), rel
            checked_against_manifest += 1
        else:  # the SYSTEM hive: xz as stored upstream; the manifest gives the decompressed content hash
            assert corpus_file.name == "RGP_SYSTEM.xz"
            assert row.sha256 == entry["content_sha256"]
            assert sha256(read_corpus(corpus_file)) == entry["sha256"]
    assert checked_against_manifest == len(layout) - 1


def test_host_name_is_what_regipy_reads_from_the_current_control_set(collected):
    from regipy.plugins.system.computer_name import ComputerNamePlugin
    from regipy.registry import RegistryHive

    hive = RegistryHive(str(collected["vol"] / "Windows/System32/config/SYSTEM"))
    current = hive.get_key(r"\Select").get_value("Current")
    plugin = ComputerNamePlugin(hive, as_json=True)
    plugin.run()
    control_sets = hive.get_control_sets(r"Control\ComputerName\ComputerName")
    names = dict(zip(control_sets, (e["name"] for e in plugin.entries), strict=True))
    expected = names[rf"\ControlSet{current:03d}\Control\ComputerName\ComputerName"]
    assert len(set(names.values())) == 2  # the two control sets disagree: the current one must win
    assert collected["stats"].hosts == {expected}
    assert expected == "WKS-WIN732BITA"
    assert {r.source_host for r in collected["case"].manifest()} == {expected}


def test_no_exchange_is_reported_as_missing(collected):
    stats, case = collected["stats"], collected["case"]
    assert stats.exchange["how"] == "none"
    assert "no SOFTWARE hive in the source" in stats.exchange["detail"]
    missing = [r for r in rows_by_outcome(case, "missing") if r.family.startswith("exchange")]
    # one row per declared Exchange path (binary 1, logs 3, auth folders 2, other virtual directories 2)
    assert len(missing) == 8
    assert all(r.details.startswith("Exchange install root not found") for r in missing)


def test_the_corpus_is_unchanged(collected):
    assert collected["after"] == collected["before"]
    manifest = manifest_table()
    for path, (digest, size, _, _) in collected["after"].items():
        entry = manifest[Path(path).relative_to(CORPUS).as_posix()]
        assert digest == entry["sha256"], path
        assert size == int(entry["size"]), path
