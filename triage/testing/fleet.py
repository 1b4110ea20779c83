"""A synthetic fleet of Exchange servers: one source per host, with known verdicts, for tests and benchmarks.

``build_fleet(out, hosts)`` writes N small server sources made by :mod:`triage.testing.volume` with distinct
computer names (the SYSTEM hive's ComputerName), a mix of Exchange 2013/2016/2019 builds below, at and past
the March 2021 security update, some with the ProxyLogon intrusion on disk and some clean, and optionally a
memory image per host named ``<HOST>-memory.raw``. It returns what a triage of each host should find, so
tests can compare the fleet report with it. Deterministic for a given seed.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from triage.testing.volume import VolumeSpec, build_volume, memory_image_bytes, to_kape, to_velociraptor

# (product, CU, ExSetup.exe build, status by the March/April 2021 table in signatures/registry/exchange_builds.yaml)
# status: vulnerable = no March 2021 SU; march_only = ProxyLogon fixed, April 2021 SU missing; patched = both.
BUILDS: tuple[tuple[str, str, tuple[int, int, int, int], str], ...] = (
    ("2013", "CU23", (15, 0, 1497, 2), "vulnerable"),
    ("2013", "CU23", (15, 0, 1497, 12), "march_only"),
    ("2013", "CU23", (15, 0, 1497, 15), "patched"),
    ("2016", "CU19", (15, 1, 2176, 2), "vulnerable"),
    ("2016", "CU19", (15, 1, 2176, 9), "march_only"),
    ("2016", "CU19", (15, 1, 2176, 12), "patched"),
    ("2016", "CU20", (15, 1, 2242, 4), "march_only"),
    ("2016", "CU20", (15, 1, 2242, 8), "patched"),
    ("2019", "CU8", (15, 2, 792, 3), "vulnerable"),
    ("2019", "CU8", (15, 2, 792, 10), "march_only"),
    ("2019", "CU8", (15, 2, 792, 13), "patched"),
    ("2019", "CU9", (15, 2, 858, 5), "march_only"),
    ("2019", "CU9", (15, 2, 858, 10), "patched"),
)
VERSIONS = ("2013", "2016", "2019")
STATUSES = ("vulnerable", "march_only", "patched")
LAYOUTS = ("volume", "kape", "velociraptor", "velociraptor-zip", "e01")  # e01: needs mkntfs, ntfs-3g, ewf-tools


@dataclass(frozen=True)
class FleetHost:
    """One synthetic server and what its triage should yield."""

    name: str  # ComputerName in the SYSTEM hive (and the Velociraptor client name)
    version: str  # Exchange product: "2013", "2016" or "2019"
    cu: str
    build: str  # ExSetup.exe version, e.g. "15.1.2176.9"
    build_status: str  # vulnerable | march_only | patched
    compromised: bool  # the ProxyLogon intrusion (web shell, SSRF log line, lsass dump) is on disk
    layout: str  # volume | kape | velociraptor | velociraptor-zip | e01
    source: Path
    memory: Path | None = None

    @property
    def patched(self) -> bool:
        """The March 2021 SU (ProxyLogon fixes) is present."""
        return self.build_status in ("march_only", "patched")

    @property
    def updated(self) -> bool:
        """The April 2021 SU is present too: "updated" in Supplemental Direction v2's sense."""
        return self.build_status == "patched"

    event_logs: bool = False  # the volume holds event logs (else a clean host lacks evidence for a verdict)

    @property
    def verdict(self) -> str:
        if self.compromised:
            return "compromised"
        return "no indications found" if self.event_logs else "insufficient evidence"

    @property
    def to_disconnect(self) -> bool:
        """ED 21-02 action 3 (compromised) or Supplemental Direction v2 (not updated) removes the server."""
        return self.compromised or not self.updated


def _pick(rng: random.Random, n: int, k: int) -> set[int]:
    return set(rng.sample(range(n), k)) if k else set()


def build_fleet(
    out: Path,
    hosts: int,
    *,
    seed: int = 0,
    compromised: float = 0.34,
    memory: int = 0,
    layouts: Sequence[str] = ("volume",),
    names: Sequence[str] | None = None,
    prefix: str = "EXCH",
    event_logs: bool = False,
    all_hives: bool = False,
    memory_size: int = 4 << 20,
    extra_files: Mapping[str, Mapping[str, bytes]] | None = None,
) -> list[FleetHost]:
    """Write ``hosts`` server sources under ``out`` and return what each should yield.

    ``compromised``: share of compromised hosts (at least one, and at least one clean host, when there are
    two or more); ``memory``: how many hosts also get ``<HOST>-memory.raw`` (a raw image with the intrusion's
    strings when the host is compromised, zeros otherwise); ``layouts`` are cycled over the hosts;
    ``names`` replace the generated ``EXCH01``, ``EXCH02``...; ``extra_files`` adds files (volume-relative
    path -> bytes) to the named hosts. Versions cycle over 2013/2016/2019 in a
    seeded order and every build status appears once there are three hosts or more.
    """
    if hosts < 1:
        raise ValueError("a fleet has at least one host")
    bad = [x for x in layouts if x not in LAYOUTS]
    if bad or not layouts:
        raise ValueError(f"unknown layouts {bad}; use {', '.join(LAYOUTS)}")
    names = list(names) if names is not None else [f"{prefix}{i + 1:02d}" for i in range(hosts)]
    if len(names) != hosts or len({n.casefold() for n in names}) != hosts:
        raise ValueError("names: one distinct name per host")
    rng = random.Random(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    versions = [VERSIONS[(i + seed) % 3] for i in range(hosts)]
    statuses = [STATUSES[i % 3] for i in range(hosts)]
    rng.shuffle(statuses)
    n_bad = min(hosts - 1, max(1, round(hosts * compromised))) if hosts > 1 else int(compromised >= 0.5)
    bad_hosts = _pick(rng, hosts, n_bad)
    with_memory = _pick(rng, hosts, min(memory, hosts))
    fleet = []
    for i, name in enumerate(names):
        choices = [b for b in BUILDS if b[0] == versions[i] and b[3] == statuses[i]]
        product, cu, build, status = choices[rng.randrange(len(choices))]
        spec = VolumeSpec(
            hostname=name,
            exchange_build=build,
            compromised=i in bad_hosts,
            event_logs=event_logs,
            all_hives=all_hives,
            extra_files=dict((extra_files or {}).get(name, {})),
        )
        layout = layouts[i % len(layouts)]
        source = _write_source(out, f"host{i + 1:02d}", spec, layout)
        image = None
        if i in with_memory:
            image = out / f"{name}-memory.raw"
            image.write_bytes(memory_image_bytes(memory_size) if spec.compromised else bytes(memory_size))
        fleet.append(
            FleetHost(
                name=name,
                version=product,
                cu=cu,
                build=".".join(map(str, build)),
                build_status=status,
                compromised=spec.compromised,
                layout=layout,
                source=source,
                memory=image,
                event_logs=event_logs,
            )
        )
    return fleet


def _write_source(out: Path, stem: str, spec: VolumeSpec, layout: str) -> Path:
    if layout == "volume":
        return build_volume(out / stem, spec)
    staging = build_volume(out / f".{stem}-staging", spec)
    try:
        if layout == "kape":
            return to_kape(staging, out / f"{stem}-kape")
        if layout == "velociraptor":
            return to_velociraptor(staging, out / f"{stem}-vr", hostname=spec.hostname)
        if layout == "e01":  # an NTFS disk image of the volume (triage.testing.diskimage)
            from triage.testing.diskimage import build_image, tools_missing

            why = tools_missing()
            if why:
                raise RuntimeError(f"cannot build an e01 host: {why}")
            paths, _ = build_image([staging], out / f"{stem}.E01", "e01")
            return paths[0]
        return to_velociraptor(staging, out / f"{stem}-vr.zip", as_zip=True, hostname=spec.hostname)
    finally:
        shutil.rmtree(staging)


def fleet_totals(fleet: Sequence[FleetHost]) -> dict[str, int]:
    """The Supplemental Direction v2 counts the fleet report should give for ``fleet``."""
    return {
        "exchange_servers": len(fleet),
        "exchange_2013": sum(h.version == "2013" for h in fleet),
        "exchange_2016": sum(h.version == "2016" for h in fleet),
        "exchange_2019": sum(h.version == "2019" for h in fleet),
        "updated": sum(h.updated for h in fleet),
        "not_updated": sum(not h.updated for h in fleet),
        "compromised": sum(h.compromised for h in fleet),
        "to_disconnect": sum(h.to_disconnect for h in fleet),
    }
