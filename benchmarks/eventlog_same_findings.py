"""Same findings before and after a change: the event-log findings of a case as (artifact, rule id, location).

``save`` writes the current findings of ``results/eventlog/`` of a case to a JSON file; ``compare`` reads two such
files and prints what only one of them has (a location is ``Channel#record`` for a rule match, so the comparison
is rule ids x record ids per log). Exit 1 when they differ.

With ``--full`` each finding is compared whole: also its severity, title, message, time and attributes (the
matched event's fields, coverage counts, correlation bursts), so a change of reading path must give the same text.

Usage::

    python benchmarks/eventlog_same_findings.py save [--full] CASE before.json
    python benchmarks/eventlog_same_findings.py compare before.json after.json
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

KEY = ["evidence_id", "rule_id", "location"]
FULL = [*KEY, "severity", "title", "message", "ts", "attributes"]


def findings_of(case: Path, full: bool = False) -> list[tuple[str, ...]]:
    """Every event-log finding of the case as ``(evidence_id, rule_id, location)`` (with ``full``: and its
    severity, title, message, time and attributes as text), sorted."""
    import pandas as pd

    out: list[tuple[str, ...]] = []
    for f in sorted((case / "results" / "eventlog").glob("*.parquet")):
        df = pd.read_parquet(f, columns=FULL if full else KEY)
        out += [tuple(map(str, t)) for t in df.itertuples(index=False)]
    return sorted(out)


def compare(before: list[tuple[str, ...]], after: list[tuple[str, ...]]) -> dict[str, object]:
    """Counts and the differences (as multisets: a finding given twice counts twice)."""
    a, b = Counter(map(tuple, before)), Counter(map(tuple, after))
    gone, new = a - b, b - a
    return {
        "before": sum(a.values()),
        "after": sum(b.values()),
        "rules_before": len({t[1] for t in a}),
        "rules_after": len({t[1] for t in b}),
        "only_before": sorted(gone.elements())[:50],
        "only_after": sorted(new.elements())[:50],
        "same": not gone and not new,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    full = "--full" in args
    args = [a for a in args if a != "--full"]
    if len(args) == 3 and args[0] == "save":
        Path(args[2]).write_text(json.dumps(findings_of(Path(args[1]), full)))
        return 0
    if len(args) == 3 and args[0] == "compare":
        result = compare(json.loads(Path(args[1]).read_text()), json.loads(Path(args[2]).read_text()))
        print(json.dumps(result, indent=1))
        return 0 if result["same"] else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
