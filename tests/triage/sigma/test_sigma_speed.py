"""Scale check (not timed): 200k events x 300 rules evaluate to exactly the expected matches.

Rows alternate between Sysmon EID 1 and Security 4688 (so both process_creation sources run), every rule
keys on a tool number ``k`` (row ``i`` runs tool ``i % 500``) and excludes parents under Program Files
(rows with ``i % 3 == 0``). The rules use different shapes for the same logic (endswith + contains list,
wildcard + ``|re``, ``|contains|all`` + startswith, keyword-free numeric selection), so the expected match
set of rule ``k`` is ``i % 500 == k and i % 3 != 0`` whichever way it is written.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sigma_support import SYSMON, rule_text

from triage.sigma import load_rules

N_ROWS = 200_000
N_RULES = 300
TOOLS = 500


def _events() -> pd.DataFrame:
    i = np.arange(N_ROWS)
    tool = i % TOOLS
    security = i % 4 == 3
    images = np.char.add(np.char.add("C:\\Windows\\System32\\tool", tool.astype(str)), ".exe")
    cmd = [f"tool{t}.exe -arg {a} --mode m{m} --pid {p}" for t, a, m, p in zip(tool, i % 1000, i % 7, i, strict=True)]
    parents = np.where(i % 3 == 0, "C:\\Program Files\\Vendor\\svc.exe", "C:\\Windows\\explorer.exe")
    image_col = pd.Series(images, dtype="str")
    parent_col = pd.Series(parents, dtype="str")
    return pd.DataFrame(
        {
            "EventRecordID": pd.Series(i + 1, dtype="Int64"),
            "Channel": pd.Series(np.where(security, "Security", SYSMON), dtype="str"),
            "EventID": pd.Series(np.where(security, 4688, 1), dtype="Int64"),
            "Computer": pd.Series(["host1"] * N_ROWS, dtype="str"),
            "Image": image_col.where(~security),
            "ParentImage": parent_col.where(~security),
            "NewProcessName": image_col.where(security),
            "ParentProcessName": parent_col.where(security),
            "CommandLine": pd.Series(cmd, dtype="str"),
            "ProcessId": pd.Series((i % 65536).astype(str), dtype="str"),
        }
    )


def _rule(k: int) -> str:
    shape = k % 4
    if shape == 0:
        body = f"""
        sel_img:
          Image|endswith: '\\tool{k}.exe'
        sel_cli:
          CommandLine|contains: [' -arg {k} ', ' -arg {k + TOOLS} ']
        filter:
          ParentImage|startswith: 'C:\\Program Files\\'
        condition: all of sel_* and not filter
        """
    elif shape == 1:
        body = f"""
        sel:
          Image: '*\\tool{k}.exe'
          CommandLine|re: '^tool{k}\\.exe -arg [0-9]+ '
        filter:
          ParentImage|contains: 'program files'
        condition: sel and not filter
        """
    elif shape == 2:
        body = f"""
        sel:
          Image|startswith: 'C:\\Windows\\'
          CommandLine|contains|all: ['tool{k}.exe', '--mode m']
        filter:
          ParentImage|endswith: '\\svc.exe'
        condition: sel and not filter
        """
    else:
        body = f"""
        sel:
          CommandLine|startswith: 'tool{k}.exe '
          ProcessId|gte: 0
        filter_a:
          ParentImage|startswith: 'C:\\Program'
        filter_b:
          ParentImage|endswith: '\\svc.exe'
        condition: sel and not (filter_a and filter_b)
        """
    return rule_text(body, title=f"speed {k}", rule_id=f"00000000-0000-4000-8000-{k:012d}")


def test_200k_rows_by_300_rules(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    for k in range(N_RULES):
        (folder / f"speed_{k:03d}.yml").write_text(_rule(k), encoding="utf-8")
    ruleset = load_rules([folder])
    assert ruleset.counts == {"files": N_RULES, "loaded": N_RULES, "skipped": 0}

    df = _events()
    start = time.perf_counter()
    matches = ruleset.evaluate(df)
    elapsed = time.perf_counter() - start

    i = np.arange(N_ROWS)
    keep = i % 3 != 0
    expected_total = sum(int(((i % TOOLS == k) & keep).sum()) for k in range(N_RULES))
    assert len(matches) == expected_total
    per_rule = matches.groupby("rule_id")["row"].size()
    for k in (0, 1, 2, 3, 149, 298, 299):
        rows = matches.loc[matches["rule_id"] == f"00000000-0000-4000-8000-{k:012d}", "row"].to_numpy()
        assert np.array_equal(rows, np.flatnonzero((i % TOOLS == k) & keep)), k
    assert per_rule.size == N_RULES
    assert (df["Channel"].iloc[matches["row"]] == "Security").any()  # 4688 rows matched through aliases
    print(f"\n{N_ROWS} rows x {N_RULES} rules: {elapsed:.2f}s, {N_ROWS * N_RULES / elapsed / 1e6:.1f}M row-rules/s")
