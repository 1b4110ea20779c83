"""``triage seal`` and ``triage export`` against what an examiner would otherwise run, timed in the same run.

A case with ``--mb`` MB of evidence (a compromised volume plus random loose files) is collected and reported once.
Then, in alternating rounds (the order flips each round), each command as a user runs it (a new process) against
its baseline:

* seal: ``triage seal --key --cert`` (verifies the whole case, hashes the report, results and run files, signs a
  CMS signature) against ``sha256sum`` over the evidence and the report files and ``openssl cms -sign`` over that
  list;
* export: ``triage export --to X.zip`` (verifies the whole case, writes a deterministic zip with MANIFEST.json and
  SHA256SUMS) against ``sha256sum`` over the evidence, ``sha256sum`` over the package files and ``zip -X -r``.

Ratios are per round (triage / baseline), the median reported. Machines here are noisy: compare ratios.
Usage: python benchmarks/seal_export.py [--mb 256] [--rounds 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from triage.testing.pki import issue, make_ca
from triage.testing.volume import VolumeSpec, build_volume

TRIAGE = [sys.executable, "-m", "triage"]
TOOLS = ("openssl", "sha256sum", "zip")


@dataclass
class Row:
    """One measured command against its baseline."""

    measure: str
    baseline: str
    triage_s: float  # median seconds
    baseline_s: float
    ratio: float  # median of the per-round ratios
    rounds: int


def build_case(root: Path, mb: int) -> Path:
    """Collect a volume and ``mb`` MB of loose random files into a case and report it."""
    volume = build_volume(root / "vol", VolumeSpec())
    loose = root / "loose"
    loose.mkdir()
    chunk = 8 << 20
    left, i = mb << 20, 0
    while left > 0:
        n = min(chunk, left)
        (loose / f"blob{i:04d}.bin").write_bytes(os.urandom(n))
        left, i = left - n, i + 1
    case = root / "case"
    for args in (["collect", str(volume), "--case", str(case)], ["collect", str(loose), "--case", str(case)]):
        subprocess.run([*TRIAGE, *args, "-q"], check=False, capture_output=True)
    subprocess.run([*TRIAGE, "report", str(case), "-q"], check=False, capture_output=True)
    return case


def _files(case: Path, *subs: str) -> list[str]:
    return sorted(str(p) for sub in subs for p in (case / sub).rglob("*") if p.is_file())


def _run(cmd: list[str], **kw: object) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - t


def measure(rounds: int, mb: int, work: Path) -> list[Row]:
    """Alternating rounds of each command and its baseline; per-round ratios and their median."""
    case = build_case(work, mb)
    ca = make_ca(work)
    signer = issue(ca, work, "Bench Examiner")
    assert signer.cert_path is not None
    times: dict[str, tuple[list[float], list[float]]] = {"seal": ([], []), "export": ([], [])}

    def seal() -> float:
        args = ["seal", str(case), "--key", str(signer.key_path), "--cert", str(signer.cert_path), "--by", "Bench"]
        return _run([*TRIAGE, *args, "-q"])

    def seal_baseline(k: int) -> float:
        t = time.perf_counter()
        listing = work / f"sums-{k}.txt"
        with open(listing, "wb") as fh:
            subprocess.run(["sha256sum", *_files(case, "evidence", "report")], check=True, stdout=fh)
        sig = ["openssl", "cms", "-sign", "-binary", "-in", str(listing), "-signer", str(signer.cert_path)]
        subprocess.run([*sig, "-inkey", str(signer.key_path), "-outform", "DER", "-out", f"{listing}.p7s"], check=True)
        return time.perf_counter() - t

    def export(k: int) -> float:
        return _run([*TRIAGE, "export", str(case), "--to", str(work / f"pkg-{k}.zip"), "-q"])

    def export_baseline(k: int) -> float:
        t = time.perf_counter()
        subprocess.run(["sha256sum", *_files(case, "evidence")], check=True, capture_output=True)
        names = [
            "case.json",
            "manifest.jsonl",
            "custody.jsonl",
            *(p[len(str(case)) + 1 :] for p in _files(case, "report", "seal")),
        ]
        with open(work / f"SUMS-{k}", "wb") as fh:
            subprocess.run(["sha256sum", *names], cwd=case, check=True, stdout=fh)
        subprocess.run(["zip", "-X", "-q", "-r", str(work / f"base-{k}.zip"), *names], cwd=case, check=True)
        return time.perf_counter() - t

    seal()  # the first seal, so that every timed one is a reseal (the same work each round)
    for k in range(rounds):
        pairs: list[tuple[str, Callable[[], float], Callable[[], float]]] = [
            ("seal", seal, partial(seal_baseline, k)),
            ("export", partial(export, k), partial(export_baseline, k)),
        ]
        for name, ours, theirs in pairs:
            if k % 2:
                b, t = theirs(), ours()
            else:
                t, b = ours(), theirs()
            times[name][0].append(t)
            times[name][1].append(b)
    labels = {
        "seal": ("triage seal (verify + hash + CMS sign)", "sha256sum evidence+report, openssl cms -sign"),
        "export": ("triage export (verify + deterministic zip)", "sha256sum evidence+package, zip -X -r"),
    }
    rows = []
    for name, (mine, base) in times.items():
        ratios = [a / b for a, b in zip(mine, base, strict=True)]
        rows.append(
            Row(
                labels[name][0],
                labels[name][1],
                round(statistics.median(mine), 3),
                round(statistics.median(base), 3),
                round(statistics.median(ratios), 2),
                rounds,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--mb", type=int, default=256, help="MB of loose evidence in the case")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", type=Path, help="write the rows as JSON here")
    args = p.parse_args(argv)
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        print(f"skipped: baseline tools not installed: {', '.join(missing)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="triage-bench-seal-") as tmp:
        rows = measure(args.rounds, args.mb, Path(tmp))
    print(f"| measure | baseline | triage s | baseline s | ratio (median of {args.rounds} rounds) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.measure} | {r.baseline} | {r.triage_s} | {r.baseline_s} | {r.ratio} |")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
