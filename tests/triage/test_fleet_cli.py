"""``triage run`` over many hosts: host assignment, one verifiable case per host, fleet report, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from triage.cli import main
from triage.errors import ExitCode, UsageError
from triage.fleet import assign_hosts, is_fleet_folder, open_sources, plan_sources
from triage.testing.fleet import build_fleet, fleet_totals
from triage.testing.snapshot import tree_snapshot
from triage.testing.volume import VolumeSpec, build_volume

# enough to tell the verdict (web shell, lsass dump, SSRF line) and the build, and fast
ONLY = "registry_exchange,registry_hostinfo,webshell_locations,proxylogon"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Four hosts, one of each source layout, one with a memory image named after it; run once."""
    base = tmp_path_factory.mktemp("fleet")
    hosts = build_fleet(
        base / "src", 4, seed=3, layouts=("volume", "kape", "velociraptor", "velociraptor-zip"), memory=1
    )
    before = tree_snapshot(base / "src")
    args = [str(h.source) for h in hosts] + [str(h.memory) for h in hosts if h.memory]
    out_dir = base / "out"
    code, out = _run(["run", *args, "--case", str(out_dir), "--only", ONLY, "-j", "2", "--case-id", "FLEET-T"])
    return {"hosts": hosts, "dir": out_dir, "code": code, "out": out, "before": before, "src": base / "src"}


def _run(argv: list[str]) -> tuple[int, dict]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main([*argv, "--json", "-q"])
    text = buf.getvalue()
    return code, (json.loads(text) if text.strip() else {})


def test_fleet_builder_is_deterministic_and_mixed(tmp_path: Path) -> None:
    a = build_fleet(tmp_path / "a", 6, seed=11)
    b = build_fleet(tmp_path / "b", 6, seed=11)
    strip = [(h.name, h.version, h.build, h.build_status, h.compromised) for h in a]
    assert strip == [(h.name, h.version, h.build, h.build_status, h.compromised) for h in b]
    snap_a = {k: v[0] for k, v in tree_snapshot(tmp_path / "a").items()}
    snap_b = {k: v[0] for k, v in tree_snapshot(tmp_path / "b").items()}
    assert snap_a == snap_b  # same bytes in every file
    assert {h.version for h in a} == {"2013", "2016", "2019"}
    assert {h.build_status for h in a} == {"vulnerable", "march_only", "patched"}
    assert 1 <= sum(h.compromised for h in a) <= 5
    assert [h.name for h in a] == [f"EXCH{i:02d}" for i in range(1, 7)]
    c = build_fleet(tmp_path / "c", 6, seed=12)
    assert [(h.build, h.compromised) for h in c] != [(h.build, h.compromised) for h in a]


def test_fleet_run_makes_one_case_per_host(fleet) -> None:
    # the synthetic hosts hold no event logs: clean ones get "insufficient evidence", so the run exits 4
    assert fleet["code"] == ExitCode.INSUFFICIENT
    root: Path = fleet["dir"]
    names = sorted(h.name for h in fleet["hosts"])
    assert sorted(p.name for p in (root / "hosts").iterdir()) == names
    assert not (root / "case.json").exists() and is_fleet_folder(root)
    index = json.loads((root / "fleet" / "index.json").read_text())
    assert index["fleet_id"] == "FLEET-T"
    assert index["hosts"] == {n: f"hosts/{n}" for n in names}
    for h in fleet["hosts"]:
        case_dir = root / "hosts" / h.name
        info = json.loads((case_dir / "case.json").read_text())
        assert info["case_id"] == f"FLEET-T-{h.name}"
        rows = [json.loads(line) for line in (case_dir / "manifest.jsonl").read_text().splitlines()]
        assert {r["source_host"] for r in rows} == {h.name}  # nothing of another host leaked in
        kinds = {r["kind"] for r in rows if r["outcome"] == "success"}
        assert ("memory_image" in kinds) == (h.memory is not None)
        for name in ("report.html", "findings.parquet", "ledger.json", "cisa_template.csv"):
            assert (case_dir / "report" / name).is_file()
        host_out = fleet["out"]["hosts"][h.name]
        assert host_out["collect"]["hosts"] == [h.name]
        assert host_out["report"]["hosts"][h.name]["verdict"] == h.verdict
        assert host_out["analyze"]["statuses"].get("error", 0) == 0
    # the memory image went to the host its file name starts with, and only there
    (with_mem,) = [h for h in fleet["hosts"] if h.memory]
    ledger = json.loads((root / "hosts" / with_mem.name / "report" / "ledger.json").read_text())
    step3 = {e["host"]: e["status"] for e in ledger["entries"] if e["step"] == "3"}
    assert step3 == {with_mem.name: "done"}


def test_fleet_report_matches_what_the_fleet_holds(fleet) -> None:
    root: Path = fleet["dir"]
    doc = json.loads((root / "fleet" / "fleet.json").read_text())
    rows = {r["host"]: r for r in doc["hosts"]}
    for h in fleet["hosts"]:
        r = rows[h.name]
        assert r["verdict"] == h.verdict, h
        assert r["exchange_version"] == h.version
        assert r["exchange_cu"] == h.cu
        assert r["exchange_build"] == h.build
        assert r["build_status"] == h.build_status
        assert r["patched_march_2021"] == ("yes" if h.patched else "no")
        assert r["updated_april_2021"] == ("yes" if h.updated else "no")
        assert r["to_disconnect"] is h.to_disconnect
        assert r["report"] == f"../hosts/{h.name}/report/report.html"
        assert (root / "fleet" / r["report"]).is_file()
        if h.compromised:
            assert r["counts"]["critical"] >= 1 and r["top"][0]["severity"] == "critical"
            assert "CVE-2021-26855" in r["cves"]
        else:
            assert r["indications"] == 0 and r["top"] == []
        assert r["problems"] == []
    expected = fleet_totals(fleet["hosts"])
    counts = doc["totals"]["counts"]
    for key, value in expected.items():
        assert counts[key] == value, key
    assert fleet["out"]["fleet_report"]["totals"] == counts
    cisa = (root / "fleet" / "cisa_fleet.csv").read_text().splitlines()
    assert cisa[0] == '"item","count","hosts","note"'
    by_item = {line.split(",")[0].strip('"'): line for line in cisa[1:]}
    assert by_item["Total hosted Exchange servers"].split(",")[1] == str(expected["exchange_servers"])
    assert by_item["To disconnect"].split(",")[1] == str(expected["to_disconnect"])
    assert by_item["Updated (April 2021 security update deployed)"].split(",")[1] == str(expected["updated"])


def test_fleet_sources_untouched_and_host_cases_verify(fleet, tmp_path: Path) -> None:
    assert tree_snapshot(fleet["src"]) == fleet["before"]
    code, out = _run(["verify", str(fleet["dir"])])
    assert code == ExitCode.OK and out["ok"] is True
    assert sorted(out["hosts"]) == sorted(h.name for h in fleet["hosts"])
    assert all(r["artifacts_checked"] > 5 for r in out["hosts"].values())
    # one changed byte in one host case fails the fleet verify with exit 3
    copy = tmp_path / "copy"
    shutil.copytree(fleet["dir"], copy)
    victim = next((copy / "hosts" / "EXCH02" / "evidence").rglob("SOFTWARE"))
    victim.chmod(stat.S_IWUSR | stat.S_IRUSR)
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    code, out = _run(["verify", str(copy)])
    assert code == ExitCode.INTEGRITY
    assert [h for h, r in out["hosts"].items() if not r["ok"]] == ["EXCH02"]


def test_fleet_report_rebuild_and_fail_on(fleet) -> None:
    root: Path = fleet["dir"]
    first = json.loads((root / "fleet" / "fleet.json").read_text())
    code, out = _run(["report", str(root), "--fail-on", "critical"])
    # some host is compromised (critical lsass dump): the whole fleet fails on critical
    assert code == ExitCode.FINDINGS
    assert sorted(out["hosts"]) == sorted(h.name for h in fleet["hosts"])
    again = json.loads((root / "fleet" / "fleet.json").read_text())
    assert again["generated"] != first["generated"]
    assert again["totals"] == first["totals"]


def test_single_host_run_keeps_the_case_layout(tmp_path: Path) -> None:
    vol = build_volume(tmp_path / "vol", VolumeSpec(hostname="SOLO01"))
    mem = tmp_path / "memory.raw"
    mem.write_bytes(bytes(4096))
    code, out = _run(["run", str(vol), str(mem), "--case", str(tmp_path / "case"), "--only", "registry_hostinfo"])
    assert code == ExitCode.INSUFFICIENT  # --only one registry analyzer: no verdict can rest on that
    assert set(out) == {"collect", "analyze", "report"}
    assert out["collect"]["hosts"] == ["SOLO01"]
    assert out["collect"]["kinds"]["memory_image"] == 1
    case = tmp_path / "case"
    assert {"case.json", "manifest.jsonl", "custody.jsonl", "evidence", "report"} <= {p.name for p in case.iterdir()}
    assert not (case / "hosts").exists() and not (case / "fleet").exists()
    assert not is_fleet_folder(case)
    # a single-host case is never turned into a fleet folder by a later run over two hosts
    other = build_volume(tmp_path / "vol2", VolumeSpec(hostname="SOLO02"))
    code, _ = _run(["run", str(vol), str(other), "--case", str(case), "--only", "registry_hostinfo"])
    assert code == ExitCode.USAGE
    assert not (case / "hosts").exists()


def test_host_assignment_rules(tmp_path: Path) -> None:
    a = build_volume(tmp_path / "a", VolumeSpec(hostname="EXCH01", compromised=False))
    b = build_volume(tmp_path / "b", VolumeSpec(hostname="EXCH10", compromised=False))
    for name in ("EXCH01-memory.raw", "exch10_mem.raw", "EXCH1.raw", "dump.raw", "EXCH01=x.raw"):
        (tmp_path / name).write_bytes(b"\0" * 64)
    plan = plan_sources([str(a), str(b), str(tmp_path / "EXCH01-memory.raw"), str(tmp_path / "exch10_mem.raw")], "auto")
    assert {h: [os.path.basename(s.location) for s in srcs] for h, srcs in plan.hosts.items()} == {
        "EXCH01": ["a", "EXCH01-memory.raw"],
        "EXCH10": ["b", "exch10_mem.raw"],
    }
    assert plan.fleet
    plan.close()
    # HOST=PATH names the host; a path that exists with '=' in its name stays a path
    plan = plan_sources([str(a), str(b), f"EXCH10={tmp_path / 'dump.raw'}", str(tmp_path / "EXCH01=x.raw")], "auto")
    assert [os.path.basename(s.location) for s in plan.hosts["EXCH10"]] == ["b", "dump.raw"]
    assert [os.path.basename(s.location) for s in plan.hosts["EXCH01"]] == ["a", "EXCH01=x.raw"]
    plan.close()
    # host names ignore case, as Windows computer names do
    plan = plan_sources([str(a), str(b), f"exch10={tmp_path / 'dump.raw'}"], "auto")
    assert [os.path.basename(s.location) for s in plan.hosts["EXCH10"]] == ["b", "dump.raw"]
    assert plan.host_for(plan.hosts["EXCH10"][1]) == "EXCH10"
    plan.close()
    # a new host named only on the command line makes a host of its own
    plan = plan_sources([str(a), f"MEMONLY={tmp_path / 'dump.raw'}"], "auto")
    assert list(plan.hosts) == ["EXCH01", "MEMONLY"] and plan.fleet
    plan.close()
    # no prefix, or a prefix that is no whole host name: a usage error naming the hosts
    for loose in ("dump.raw", "EXCH1.raw"):
        with pytest.raises(UsageError, match=r"cannot tell which host.*EXCH01, EXCH10"):
            plan_sources([str(a), str(b), str(tmp_path / loose)], "auto")
    # one host: loose files go with it whatever their name (the single-case rule)
    plan = plan_sources([str(a), str(tmp_path / "dump.raw")], "auto")
    assert not plan.fleet and list(plan.hosts) == ["EXCH01"]
    plan.close()
    # --host puts everything on one host
    plan = open_sources([str(a), str(b)], "auto")
    assert list(assign_hosts(plan, host="BOTH").hosts) == ["BOTH"]
    plan.close()


def test_unnamed_volume_in_a_fleet_needs_a_name(tmp_path: Path) -> None:
    a = build_volume(tmp_path / "a", VolumeSpec(hostname="EXCH01", compromised=False))
    b = build_volume(tmp_path / "b", VolumeSpec(hostname="X", compromised=False, write_system_hive=False))
    with pytest.raises(UsageError, match="name it as HOST=PATH"):
        plan_sources([str(a), str(b)], "auto")
    plan = plan_sources([str(a), f"EXCH02={b}"], "auto")
    assert list(plan.hosts) == ["EXCH01", "EXCH02"]
    plan.close()


def test_ambiguous_loose_file_stops_before_writing(tmp_path: Path) -> None:
    a = build_volume(tmp_path / "a", VolumeSpec(hostname="EXCH01", compromised=False))
    b = build_volume(tmp_path / "b", VolumeSpec(hostname="EXCH02", compromised=False))
    (tmp_path / "memory.raw").write_bytes(bytes(64))
    code, out = _run(["run", str(a), str(b), str(tmp_path / "memory.raw"), "--case", str(tmp_path / "out")])
    assert code == ExitCode.USAGE and out == {}
    assert not (tmp_path / "out").exists()


def test_disk_image_host_joins_the_fleet_by_its_hive(tmp_path: Path) -> None:
    from triage.testing.diskimage import tools_missing

    why = tools_missing()
    if why:
        pytest.skip(why)
    hosts = build_fleet(tmp_path / "src", 2, seed=2, layouts=("e01", "volume"))
    assert hosts[0].source.suffix == ".E01"
    out = tmp_path / "out"
    code, res = _run(["run", *(str(h.source) for h in hosts), "--case", str(out), "--only", "registry_exchange"])
    assert code == ExitCode.INSUFFICIENT  # --only the build check: no verdict can rest on that
    assert sorted(res["hosts"]) == ["EXCH01", "EXCH02"]
    rows = {r["host"]: r for r in json.loads((out / "fleet" / "fleet.json").read_text())["hosts"]}
    for h in hosts:
        assert (rows[h.name]["exchange_build"], rows[h.name]["build_status"]) == (h.build, h.build_status)
    src_types = {json.loads(line)["source_type"] for line in (out / "hosts" / "EXCH01" / "manifest.jsonl").open()}
    assert src_types == {"image"}


def test_fleet_on_a_local_dask_cluster_matches_the_pool_run(fleet, tmp_path: Path) -> None:
    """The same fleet through ``--cluster local:2``: the same findings per host, units run by dask workers."""
    pytest.importorskip("distributed")
    hosts = fleet["hosts"][:2]  # the volume and KAPE hosts: enough to put two cases on one cluster
    out_dir = tmp_path / "out"
    code, out = _run(
        ["run", *(str(h.source) for h in hosts), "--case", str(out_dir), "--only", ONLY, "--cluster", "local:2"]
    )
    if code == ExitCode.USAGE and "could not start a local dask cluster" in json.dumps(out):
        pytest.skip("no local dask cluster here (loopback down?)")
    assert code == ExitCode.INSUFFICIENT  # as the pool run: clean hosts without event logs
    import pandas as pd

    for h in hosts:
        ours, pool = out_dir / "hosts" / h.name, fleet["dir"] / "hosts" / h.name
        cols = ["rule_id", "severity", "title"]  # artifact ids differ between cases: each case makes its own
        a = pd.read_parquet(ours / "report" / "findings.parquet")[cols].sort_values(cols).reset_index(drop=True)
        b = pd.read_parquet(pool / "report" / "findings.parquet")[cols].sort_values(cols).reset_index(drop=True)
        assert len(a) > 0 and a.equals(b)
        [run_file] = (ours / "runs").glob("run-*.json")
        run = json.loads(run_file.read_text())
        assert run["executor"]["kind"] == "dask" and run["executor"]["workers"] == 2
        workers = {u["worker"] for u in run["units"]}
        assert workers and all(":" in w for w in workers)
    rows = {r["host"]: r for r in json.loads((out_dir / "fleet" / "fleet.json").read_text())["hosts"]}
    assert {n: rows[n]["verdict"] for n in rows} == {h.name: h.verdict for h in hosts}


def test_a_junk_host_costs_only_itself_and_the_fleet_exits_4(tmp_path: Path) -> None:
    """One host's sources hold nothing examinable: the other host is collected, analyzed and reported; exit 4."""
    good = build_volume(tmp_path / "vol", VolumeSpec(hostname="GOOD01", compromised=True))
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("collected by hand\n")
    out_dir = tmp_path / "out"
    code, out = _run(["run", str(good), f"JUNK02={junk}", "--case", str(out_dir), "--only", ONLY])
    assert code == ExitCode.FINDINGS or code == ExitCode.INSUFFICIENT, code
    assert out["hosts"]["JUNK02"]["collect"]["exit_code"] == ExitCode.INSUFFICIENT
    assert "nothing examinable" in out["hosts"]["JUNK02"]["collect"]["error"]
    assert out["hosts"]["GOOD01"]["report"]["hosts"]["GOOD01"]["verdict"] == "compromised"
    assert (out_dir / "hosts" / "GOOD01" / "report" / "report.html").is_file()
    # with no --fail-on, the junk host decides the exit: nothing examinable is never a clean 0
    assert code == ExitCode.INSUFFICIENT
