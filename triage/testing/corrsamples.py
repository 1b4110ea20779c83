"""Correlation samples: bursts of events described by count and spacing, expanded into timed rows and EVTX.

The samples files (``signatures/sigma/samples/*.yaml``) map rule ids to single ``positive``/``negative`` rows
under ``rules:``. Correlation rules need many events with times, so ``correlations:`` holds scenarios::

    correlations:
      <correlation rule id>:
        rule: corr_bruteforce_failed_logons_by_source      # file stem
        positive:                                          # each scenario must give exactly ``hits`` hits (1)
        - name: 25 failures in 2.5 minutes
          events:
          - row: {Channel: Security, Provider: ..., EventID: 4625, TargetUserName: "user{i}"}
            repeat: 25                                     # events (default 1)
            every: 6s                                      # spacing (s, m, h; default 1s)
            at: 0s                                         # offset of the first one from the scenario start
        negative:                                          # each must give no hit
        - name: ...
          events: [...]

``{i}`` in a string value is replaced by the event's number within its ``repeat`` (0-based), so one line can
describe many distinct accounts, objects or services. Old samples files need no change.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from triage.testing.evtx import Event

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
ENVELOPE = ("Channel", "Provider", "EventID", "Level", "Computer")


def duration(text: Any) -> timedelta:
    """``"6s"``, ``"2m"``, ``"1h"`` or a number of seconds as a timedelta."""
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def expand(scenario: dict[str, Any], start: datetime) -> list[dict[str, Any]]:
    """A scenario's events as flat rows with ``TimeCreated``, in the order written (not sorted by time)."""
    rows: list[dict[str, Any]] = []
    for spec in scenario.get("events") or []:
        repeat = int(spec.get("repeat", 1))
        every = duration(spec.get("every", "1s"))
        at = start + duration(spec.get("at", 0))
        for i in range(repeat):
            row = {k: (v.replace("{i}", str(i)) if isinstance(v, str) else v) for k, v in spec["row"].items()}
            row["TimeCreated"] = at + i * every
            rows.append(row)
    return rows


def to_events(rows: list[dict[str, Any]], first_record: int = 1) -> list[Event]:
    """Rows as EVTX records for the project's EVTX writer (record ids numbered from ``first_record``)."""
    events = []
    for n, row in enumerate(rows):
        payload = {k: str(v) for k, v in row.items() if k not in ENVELOPE and k != "TimeCreated"}
        # classic events (SQL Server, ...) carry unnamed EventData, which the reader joins into ``Data``
        data: dict[str, Any] | list[Any] = payload["Data"].split("\n") if set(payload) == {"Data"} else payload
        computer = str(row["Computer"]) if "Computer" in row else Event.computer
        events.append(
            Event(
                int(row["EventID"]),
                str(row["Provider"]),
                str(row["Channel"]),
                computer,
                time_created=row["TimeCreated"],
                record_id=first_record + n,
                level=int(row.get("Level", 4)),
                data=data,
            )
        )
    return events


__all__ = ["duration", "expand", "to_events"]
