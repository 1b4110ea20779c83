"""Per-family web shell detection by content: the project's own YARA rules and the webshell_heuristics analyzer
over the test families of ``triage.testing.webshells`` (base forms, obfuscated variants, a hex-escaped tiny page,
GIF-prefixed copies), the benign look-alikes, and the corpus web shells when present.

Each file is judged by content alone at a place outside any web folder (``D:/backup/``); a family counts a file as
caught when the best severity is at least medium, and as high when it is high or critical. ``--rules DIR`` takes
the YARA rules from another folder (e.g. an older checkout's ``signatures/yara``) and ``--obfuscation-only``
reduces the heuristics to the obfuscation signals the analyzer had before the behaviour analysis, which together
give the "before" column. Also times the heuristics per file. Usage:

  python benchmarks/webshell_families.py [--rules DIR] [--obfuscation-only] [--variants 3] [--seed 2021]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from analyzers.yara.content import own_rule_paths, severity_for
from analyzers.yara.engine import YARA_X, compile_rules, file_externals, find_rule_files
from analyzers.yara.heuristics import PAGE_EXTS, SIGNALS, inspect, measure
from triage.testing.webshells import benign_samples, family_samples, hex_escaped_tiny, variants, with_gif_header

RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
PLACE = "D:/backup/"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "webshells"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=Path, help="folder of .yar files instead of signatures/yara")
    ap.add_argument("--obfuscation-only", action="store_true", help="heuristics as before: obfuscation signals")
    ap.add_argument("--variants", type=int, default=3)
    ap.add_argument("--seed", type=int, default=2021)
    args = ap.parse_args()
    paths = sorted(args.rules.glob("*.yar")) if args.rules else own_rule_paths()
    rules = compile_rules(find_rule_files(paths, "triage"), engine=YARA_X)

    heur_s: list[float] = []

    def best(name: str, data: bytes) -> int:
        hits = [severity_for(m.meta, own=True) for m in rules.scan(data, file_externals(PLACE + name, data[:16]))]
        t = time.perf_counter()
        if args.obfuscation_only:
            ext = Path(name).suffix.lower()
            fired = measure(data, ext).hits if ext in PAGE_EXTS else []
        else:
            fired = inspect(data, PLACE + name).hits
        heur_s.append(time.perf_counter() - t)
        hits += [SIGNALS[r].severity for r in fired]
        return max((RANK[h] for h in hits), default=-1)

    base = family_samples()
    samples = [
        *base,
        *variants(args.variants, seed=args.seed),
        hex_escaped_tiny(),
        *(with_gif_header(s) for s in base if s.name.endswith((".aspx", ".asp"))),
    ]
    table: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for s in samples:
        b = best(s.name.rsplit("/", 1)[-1], s.data)
        row = table[s.family]
        row[0] += 1
        row[1] += b >= RANK["medium"]
        row[2] += b >= RANK["high"]
    if CORPUS.is_dir():
        for p in sorted(CORPUS.iterdir()):
            b = best(p.name, p.read_bytes())
            row = table["corpus"]
            row[0] += 1
            row[1] += b >= RANK["medium"]
            row[2] += b >= RANK["high"]
    print(f"{'family':15s} {'files':>5s} {'>=medium':>9s} {'>=high':>7s}")
    total = [0, 0, 0]
    for fam, (n, med, high) in table.items():
        print(f"{fam:15s} {n:5d} {med:9d} {high:7d}")
        if fam != "corpus":
            total = [total[0] + n, total[1] + med, total[2] + high]
    print(f"{'all families':15s} {total[0]:5d} {total[1]:9d} {total[2]:7d}")
    benign = {s.name: best(s.name.rsplit("/", 1)[-1], s.data) for s in benign_samples()}
    print("benign >= high:", sorted(n for n, b in benign.items() if b >= RANK["high"]) or "none")
    print("benign medium: ", sorted(n for n, b in benign.items() if b == RANK["medium"]) or "none")
    heur_s.sort()
    print(f"heuristics per file: median {heur_s[len(heur_s) // 2] * 1000:.1f} ms, max {heur_s[-1] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
