"""Findings on the timeline: each finding tags the events it rests on; a finding that rests on none is an event.

A finding says what it rests on through its evidence item and its ``location``, in the shapes the analyzers
write: ``<Channel or file>#<record>`` (an EVTX record), ``<log path>:<line>`` (a web log row), ``pid:<n>`` (a
memory process), a registry key path, or a file path with the finding's time. Those become the same join keys
the event sources write in ``link_record`` (``<evidence_id>#<record, line, pid or key>``, or ``<evidence_id>@<µs>``
for a file's times) and ``link_path`` (``<logical path>#<n>``, or the path alone for a file): by evidence id and
by path, so a host-scope finding that names the file but not the artifact still lands.

Tags are Timesketch's ``tag`` list: ``["triage", "<rule_id>", "<severity>"]`` per finding, merged when
several findings rest on one event.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from triage.timeline.events import table

_NUMBERED = re.compile(r"^(?P<prefix>.*)[#:](?P<n>\d+)$")
_PID = re.compile(r"^pid[:= ](?P<n>\d+)$", re.IGNORECASE)
TAG = "triage"


def finding_tags(rule_id: Any, severity: Any) -> list[str]:
    """The tag list of one finding."""
    out = [TAG]
    for v in (rule_id, severity):
        if isinstance(v, str) and v and v not in out:
            out.append(v)
    return out


def finding_keys(evidence_id: str, location: str, ts_us: int | None) -> list[str]:
    """The join keys one finding may match (see the module docstring)."""
    loc = (location or "").strip()
    keys: list[str] = []
    m = _PID.match(loc)
    if m:
        return [f"{evidence_id}#pid{m.group('n')}"]
    m = _NUMBERED.match(loc)
    if m:
        n = m.group("n")
        keys.append(f"{evidence_id}#{n}")
        prefix = m.group("prefix").strip()
        if "/" in prefix or "\\" in prefix:  # a file path, not a channel name
            keys.append(f"{prefix.replace(chr(92), '/').lower()}#{n}")
        return keys
    if loc and "/" not in loc and ":" not in loc:  # a registry key path
        keys.append(f"{evidence_id}#{loc.strip(chr(92)).lower()}")
    if ts_us is not None:
        keys.append(f"{evidence_id}@{ts_us}")  # a file's time: the event at the finding's time
    elif loc:
        keys.append(loc.replace("\\", "/").lower())  # every time of the file
    return keys


class FindingIndex:
    """The case's findings by join key; tags event batches and keeps which findings matched."""

    def __init__(self, findings: pd.DataFrame) -> None:
        self.findings = findings.reset_index(drop=True)
        n = len(self.findings)
        self.tags: list[list[str]] = []
        self.by_key: dict[str, list[int]] = {}
        self.matched = np.zeros(n, dtype=bool)
        for i, f in enumerate(self.findings.itertuples(index=False)):
            self.tags.append(finding_tags(f.rule_id, None if pd.isna(f.severity) else str(f.severity)))
            t = None if pd.isna(f.ts) else int(pd.Timestamp(f.ts).value // 1000)
            for k in finding_keys(str(f.evidence_id or ""), str(f.location or ""), t):
                self.by_key.setdefault(k, []).append(i)
        self._keys = pa.array(list(self.by_key), pa.string())
        self.tagged_events = 0

    def tag(self, t: pa.Table) -> pa.Table:
        """The batch with its ``tag`` column filled: the tags of the findings resting on each event."""
        n = t.num_rows
        if not len(self._keys) or not n:
            return t.set_column(t.schema.get_field_index("tag"), "tag", pa.array([[]] * n, pa.list_(pa.string())))
        hits: dict[int, list[str]] = {}
        for col in ("link_record", "link_path"):
            keys = t[col]
            mask = pc.fill_null(pc.is_in(keys, value_set=self._keys), False)
            rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
            if not len(rows):
                continue
            values = pc.take(keys, pa.array(rows)).to_pylist()
            for r, k in zip(rows.tolist(), values, strict=True):
                for i in self.by_key.get(k, ()):
                    self.matched[i] = True
                    tags = hits.setdefault(r, [TAG])
                    tags.extend(x for x in self.tags[i] if x not in tags)
        self.tagged_events += len(hits)
        column = [hits.get(r, []) for r in range(n)] if hits else [[]] * n
        return t.set_column(t.schema.get_field_index("tag"), "tag", pa.array(column, pa.list_(pa.string())))

    def unmatched(self) -> tuple[pa.Table, int]:
        """The findings no event carries, as events of their own; and how many of them have no time."""
        f = self.findings[~self.matched]
        undated = int(f["ts"].isna().sum()) if len(f) else 0
        f = f[f["ts"].notna()] if len(f) else f
        n = len(f)
        if not n:
            return table(0, {}), undated
        sev = f["severity"].astype("string").fillna("")
        title = f["rule_title"].astype("string").fillna("")
        title = title.where(title != "", f["title"].astype("string").fillna(""))
        desc = f["ts_desc"].astype("string").fillna("")
        out = table(
            n,
            {
                "ts": f["ts"],
                "timestamp_desc": desc.where(desc != "", "Finding Time"),
                "message": "[" + sev + "] " + title + ": " + f["message"].astype("string").fillna("").str.slice(0, 500),
                "data_type": "triage:finding",
                "source": "TRIAGE",
                "source_long": "triage finding (" + f["analyzer"].astype("string").fillna("") + ")",
                "parser": "triage.report",
                "host": f["host"].astype("string"),
                "evidence_id": f["evidence_id"].astype("string"),
                "path": f["evidence_path"].astype("string"),
                "rule_id": f["rule_id"].astype("string"),
                "severity": sev,
                "finding_id": f["finding_id"].astype("string"),
            },
        )
        tags = [self.tags[i] for i in np.flatnonzero(~self.matched) if not pd.isna(self.findings["ts"].iloc[i])]
        return out.set_column(out.schema.get_field_index("tag"), "tag", pa.array(tags, pa.list_(pa.string()))), undated
