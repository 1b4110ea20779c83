"""A short ED 21-02 ledger summary for the terminal, from ``report/ledger.json``.

``python -m triage.report.summary CASE`` prints it for an existing report (the demo target uses it).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from triage.custody import load_json

MAX_HOSTS = 20
ORDER = ("done", "not done", "needs manual attestation", "not applicable")


def ledger_summary_lines(ledger: dict[str, Any], max_hosts: int = MAX_HOSTS) -> list[str]:
    """Per host: verdict, status counts, the ledger's completeness and the steps that are not done."""
    tally: dict[str, dict[str, int]] = ledger.get("tally", {})
    verdicts: dict[str, dict[str, Any]] = ledger.get("verdicts", {})
    completeness: dict[str, dict[str, Any]] = ledger.get("completeness", {})
    not_done: dict[str, list[str]] = defaultdict(list)
    steps = 0
    for e in ledger.get("entries", []):
        if e.get("status") == "not done":
            label = f"{e['step']} {e.get('short') or ''}".strip()
            not_done[e["host"]].append(label)
    if tally:
        steps = max(sum(t.values()) for t in tally.values())
    lines = [f"ED 21-02 ledger: {steps} steps per host (detail: report.html, ledger.csv, ledger.json)"]
    hosts = sorted(tally)
    for host in hosts[:max_hosts]:
        v = verdicts.get(host, {})
        verdict = v.get("verdict", "?") + (f" ({', '.join(v['cves'])})" if v.get("cves") else "")
        counts = ", ".join(f"{tally[host][s]} {s}" for s in ORDER if tally[host].get(s))
        lines.append(f"  {host}: {verdict}; {counts}")
        if v.get("missing"):
            lines.append(f"    no verdict without: {'; '.join(v['missing'])}")
        c = completeness.get(host)
        if c:
            attested = f"; {len(c['attested'])} attested" if c.get("attested") else ""
            lines.append(f"    ledger {c['text']}{attested}")
            if c.get("conflicts"):
                lines.append(f"    evidence and attestation disagree on: {', '.join(c['conflicts'])}")
        if not_done[host]:
            lines.append(f"    not done: {', '.join(not_done[host])}")
    if len(hosts) > max_hosts:
        lines.append(f"  ... {len(hosts) - max_hosts} more hosts in ledger.csv")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m triage.report.summary CASE", file=sys.stderr)
        return 2
    path = Path(args[0]) / "report" / "ledger.json"
    try:
        ledger = load_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"no ledger at {path}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(ledger_summary_lines(ledger)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
