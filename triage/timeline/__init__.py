"""The super-timeline: every parsed event of a case in one time-ordered stream, with findings as tags.

:func:`build_timeline` reads the case's sources (:mod:`triage.timeline.events`), tags the events findings rest
on (:mod:`triage.timeline.tags`) and writes Timesketch JSONL and a plaso-style CSV
(:mod:`triage.timeline.writers`) in bounded memory (:mod:`triage.timeline.build`).
"""

from __future__ import annotations

from triage.timeline.build import FORMATS, OUTPUT_NAMES, TimelineOptions, TimelineResult, build_timeline

__all__ = ["FORMATS", "OUTPUT_NAMES", "TimelineOptions", "TimelineResult", "build_timeline"]
