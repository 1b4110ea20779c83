"""Same findings before and after a change: the event-log findings of a case as (artifact, rule id, location).

``save`` writes the current findings of ``results/eventlog/`` of a case to a JSON file; ``compare`` reads two such
files and prints what only one of them has (a location is ``Channel#record`` for a rule match, so the comparison
is rule ids x record ids per log). Exit 1 when they differ.

Usage::

    python benchmarks/eventlog_same_findings.py save CASE before.json
    python benchmarks/eventlog_same_findings.py compare before.json after.json
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path


def findings_of(case: Path) -> list[tuple[str, str, str]]:
    """Every event-log finding of the case as ``(evidence_id, rule_id, location)``, sorted."""
    import pandas as pd

    out: list[tuple[str, str, str]] = []
    for f in sorted((case / "results" / "eventlog").glob("*.parquet")):
        df = pd.read_parquet(f, columns=["evidence_id", "rule_id", "location"])
        out += [tuple(map(str, t)) for t in df.itertuples(index=False)]  # type: ignore[misc]
    return sorted(out)


def compare(before: list[tuple[str, str, str]], after: list[tuple[str, str, str]]) -> dict[str, object]:
    """Counts and the differences (as multisets: a finding given twice counts twice)."""
    a, b = Counter(map(tuple, before)), Counter(map(tuple, after))
    gone, new = a - b, b - a
    return {
        "before": sum(a.values()),
        "after": sum(b.values()),
        "rules_before": len({r for _, r, _ in a}),
        "rules_after": len({r for _, r, _ in b}),
        "only_before": sorted(gone.elements())[:50],
        "only_after": sorted(new.elements())[:50],
        "same": not gone and not new,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 3 and args[0] == "save":
        Path(args[2]).write_text(json.dumps(findings_of(Path(args[1]))))
        return 0
    if len(args) == 3 and args[0] == "compare":
        result = compare(json.loads(Path(args[1]).read_text()), json.loads(Path(args[2]).read_text()))
        print(json.dumps(result, indent=1))
        return 0 if result["same"] else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
