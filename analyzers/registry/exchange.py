"""Exchange install, build and patch verdict from the SOFTWARE hive and ExSetup.exe (ED 21-02 steps 1, 14, 26, 32).

Where the build is recorded (ED2102-REFERENCE 3.7): ``Microsoft\\ExchangeServer\\v15\\Setup`` (``v14`` for
Exchange 2010) holds the cumulative update (MsiProductMajor/Minor/BuildMajor/BuildMinor) and the install
path; security updates leave ``Microsoft\\Updates\\Exchange 20xx\\<KB>`` (PackageName, InstalledDate) and
Uninstall entries named ``Security Update for Exchange Server* (KBnnnnnnn)``; ExSetup.exe's version resource
carries the security-update revision and is authoritative when collected. The verdict compares the build
with the March and April 2021 security update table in ``signatures/registry/exchange_builds.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from analyzers.registry.hostset import HiveFile, HostHives
from triage.case import ManifestRow
from triage.finding import Finding
from triage.formats.hive import Hive
from triage.hostfacts import FactSource
from triage.indicators import rule_metas
from triage.registry import Analyzer, Unit, logical_path, register, signature_path

BUILDS_FILE = "registry/exchange_builds.yaml"
# id, title, level, steps and tags of each finding this analyzer writes (data: one RuleMeta per rule)
RULES = rule_metas("rulemeta/registry_exchange.yaml")
KB_RX = re.compile(r"\b(KB\d{7})\b", re.IGNORECASE)
SU_NAME_RX = re.compile(r"^(?:Security )?Update (?:Rollup \d+ )?for (?:Microsoft )?Exchange Server", re.IGNORECASE)

Version = tuple[int, int, int, int]


def version_str(v: Version | None) -> str:
    return ".".join(str(x) for x in v) if v else ""


@dataclass(frozen=True)
class CuRow:
    """One cumulative update of the build table."""

    product: str
    cu: str
    build: int
    rtm: int
    mar21su: int | None  # None: the CU shipped with the March fixes ('included')
    apr21su: int | None  # None: no April 2021 SU for this CU
    support: str


@dataclass
class BuildTable:
    """The contents of ``exchange_builds.yaml``."""

    updates: dict[str, dict[str, Any]]
    products: dict[str, str]
    rows: list[CuRow]
    e2010_fixed: Version

    def kbs(self, update: str) -> set[str]:
        return {k.upper() for k in self.updates[update]["kb"]}

    def cves(self, update: str) -> list[str]:
        return list(self.updates[update]["cves"])


def load_build_table(path: Path | None = None) -> BuildTable:
    """Load and check the build table."""
    path = path or signature_path(BUILDS_FILE)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    rows = []
    for i, r in enumerate(doc["builds"]):
        missing = {"product", "cu", "build", "rtm", "mar21su", "support"} - set(r)
        if missing:
            raise ValueError(f"{path.name}: build row {i}: missing {sorted(missing)}")
        mar = r["mar21su"]
        rows.append(
            CuRow(
                product=str(r["product"]),
                cu=str(r["cu"]),
                build=int(r["build"]),
                rtm=int(r["rtm"]),
                mar21su=None if mar == "included" else int(mar),
                apr21su=int(r["apr21su"]) if r.get("apr21su") is not None else None,
                support=str(r["support"]),
            )
        )
    fixed = tuple(int(x) for x in doc["exchange2010"]["fixed_build"])
    return BuildTable(doc["updates"], {str(k): str(v) for k, v in doc["products"].items()}, rows, fixed)  # type: ignore[arg-type]


@dataclass
class Verdict:
    """What the build means for the March and April 2021 updates."""

    product: str
    version: Version
    cu: str = ""
    status: str = ""  # vulnerable | march_only | patched | e2010_vulnerable | e2010_patched | unknown
    march_fixed: bool = False
    april_fixed: bool = False
    april_available: bool = True
    out_of_support: str = ""  # why the CU/version is out of support, if it is
    fixed_by: list[str] = field(default_factory=list)  # update names whose fixes are present
    missing: list[str] = field(default_factory=list)  # update names needed
    cves: list[str] = field(default_factory=list)  # CVEs still open
    needed_build: str = ""
    basis: str = ""


def assess(version: Version, kbs: set[str], table: BuildTable) -> Verdict:
    """Verdict for ``version`` (from ExSetup.exe, or the Setup key) given installed update KBs.

    ``kbs`` count only when the version comes from the registry: the Setup key keeps the CU's RTM
    revision, so an installed SU shows only as its KB there.
    """
    major, minor, build, rev = version
    product = table.products.get(f"{major}.{minor}", "")
    v = Verdict(product=product, version=version)
    kbs = {k.upper() for k in kbs}
    if product == "2010":
        v.out_of_support = "Exchange 2010 left support on 2020-10-13"
        fixed = version >= table.e2010_fixed or bool(kbs & table.kbs("Mar21SU_E2010"))
        v.status = "e2010_patched" if fixed else "e2010_vulnerable"
        v.march_fixed = fixed
        v.april_available = False
        if fixed:
            v.fixed_by.append("Mar21SU_E2010")
        else:
            v.missing.append("Mar21SU_E2010")
            v.cves = table.cves("Mar21SU_E2010")
            v.needed_build = version_str(table.e2010_fixed)
        return v
    if not product:
        v.status = "unknown"
        v.basis = f"version {version_str(version)} is not Exchange 2010-2019"
        return v
    rows = sorted((r for r in table.rows if r.product == product), key=lambda r: r.build)
    row = next((r for r in rows if r.build == build), None)
    if row is None:
        if build > rows[-1].build:
            v.cu, v.status, v.march_fixed, v.april_fixed = "newer than the table", "patched", True, True
            v.fixed_by = ["Mar21SU", "Apr21SU"]
            v.basis = f"CU build {build} is newer than every CU listed for Exchange {product}; it includes both"
        elif build < rows[0].build:
            v.cu, v.status = "older than the table", "vulnerable"
            v.out_of_support = "CU too old for any March 2021 security update"
            v.april_available = False
            v.missing = ["Mar21SU", "Apr21SU"]
            v.cves = table.cves("Mar21SU") + table.cves("Apr21SU")
            v.basis = f"CU build {build} predates {rows[0].cu}; no security update exists for it"
        else:
            v.cu, v.status = "unrecognised", "unknown"
            v.basis = f"build {build} is not a known Exchange {product} CU; cannot tell if it is patched"
        return v
    v.cu = row.cu
    via_kb = bool(kbs)
    march = row.mar21su is None or rev >= row.mar21su or bool(kbs & table.kbs("Mar21SU"))
    april = row.apr21su is not None and (rev >= row.apr21su or bool(kbs & table.kbs("Apr21SU")))
    march = march or april  # an April SU is only installable on top of the March fixes of its CU
    v.march_fixed, v.april_fixed, v.april_available = march, april, row.apr21su is not None
    if row.support == "march_special":
        v.out_of_support = f"Exchange {product} {row.cu} is out of support: only the special March 2021 SU exists"
    elif row.apr21su is None:
        v.out_of_support = f"Exchange {product} {row.cu} got no April 2021 SU: a supported CU is needed"
    v.fixed_by = [n for n, ok in (("Mar21SU", march), ("Apr21SU", april)) if ok]
    v.missing = [n for n, ok in (("Mar21SU", march), ("Apr21SU", april)) if not ok]
    if not march:
        v.status = "vulnerable"
        v.cves = table.cves("Mar21SU") + table.cves("Apr21SU")
        v.needed_build = f"15.{minor}.{build}.{row.mar21su}"
    elif not april:
        v.status = "march_only"
        v.cves = table.cves("Apr21SU")
        v.needed_build = f"15.{minor}.{build}.{row.apr21su}" if row.apr21su is not None else "a supported CU"
    else:
        v.status = "patched"
    v.basis = f"{row.cu} revision {rev}" + (f" with {', '.join(sorted(kbs))}" if via_kb else "")
    return v


# -- reading -------------------------------------------------------------------------------------------


@dataclass
class ExchangeRegistry:
    """What the SOFTWARE hive says about Exchange."""

    setup_key: str
    version: Version | None
    install_path: str
    setup_ts: datetime | None
    updates: list[dict[str, Any]]
    kbs: set[str]


def read_exchange(hive: Hive) -> ExchangeRegistry | None:
    """Exchange facts from a SOFTWARE hive; None when no Setup key exists."""
    for major in ("v15", "v14"):
        path = rf"Microsoft\ExchangeServer\{major}\Setup"
        k = hive.key(path)
        if k is None:
            continue
        parts = [k.get(n) for n in ("MsiProductMajor", "MsiProductMinor", "MsiBuildMajor", "MsiBuildMinor")]
        version = tuple(int(p) for p in parts) if all(isinstance(p, int) for p in parts) else None
        updates = list(_updates(hive))
        kbs = {u["kb"] for u in updates if u.get("kb")}
        return ExchangeRegistry(path, version, str(k.get("MsiInstallPath") or ""), k.ts, updates, kbs)  # type: ignore[arg-type]
    return None


def _updates(hive: Hive) -> Iterator[dict[str, Any]]:
    """Installed Exchange updates: ``Microsoft\\Updates\\Exchange*`` and matching Uninstall entries."""
    for product in hive.subkey_names(r"Microsoft\Updates"):
        if not product.lower().startswith("exchange"):
            continue
        base = rf"Microsoft\Updates\{product}"
        for k in hive.subkeys(base):
            keys = [k] if k.has("PackageName") else list(hive.subkeys(k.path))  # 2013 nests them under SP1
            for u in keys:
                name = str(u.get("PackageName") or "")
                m = KB_RX.search(name) or KB_RX.search(u.name)
                yield {
                    "source": "Updates",
                    "key": u.path,
                    "package": name,
                    "kb": m.group(1).upper() if m else "",
                    "installed": u.get("InstalledDate"),
                    "ts": u.ts,
                }
    for hive_path in (
        r"Microsoft\Windows\CurrentVersion\Uninstall",
        r"WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall",
    ):
        for k in hive.subkeys(hive_path):
            name = k.get("DisplayName")
            if isinstance(name, str) and SU_NAME_RX.search(name):
                m = KB_RX.search(name)
                if m:
                    yield {
                        "source": "Uninstall",
                        "key": k.path,
                        "package": name,
                        "kb": m.group(1).upper(),
                        "installed": k.get("InstallDate"),
                        "ts": k.ts,
                    }


def read_pe_version(path: Path) -> tuple[Version | None, dict[str, str], str]:
    """(fixed file version, version strings, problem) of a PE file's version resource."""
    try:
        import pefile
    except ImportError:
        return None, {}, "pefile is not installed"
    try:
        pe = pefile.PE(str(path), fast_load=True)
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_RESOURCE"]])
    except Exception as exc:  # pefile raises PEFormatError and others on damaged files
        return None, {}, f"not a readable PE file: {exc}"
    strings: dict[str, str] = {}
    for info in getattr(pe, "FileInfo", None) or []:
        for entry in info:
            for table in getattr(entry, "StringTable", []) or []:
                for k, val in table.entries.items():
                    strings[k.decode("utf-8", "replace")] = val.decode("utf-8", "replace")
    fixed = getattr(pe, "VS_FIXEDFILEINFO", None)
    if fixed:
        f = fixed[0]
        ver = (f.FileVersionMS >> 16, f.FileVersionMS & 0xFFFF, f.FileVersionLS >> 16, f.FileVersionLS & 0xFFFF)
        return ver, strings, ""
    text = strings.get("ProductVersion") or strings.get("FileVersion") or ""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)\.(\d+)", text)
    if m:
        return tuple(int(x) for x in m.groups()), strings, ""  # type: ignore[return-value]
    return None, strings, "no version resource"


def _msert(hive: Hive) -> dict[str, Any] | None:
    k = hive.key(r"MSERTBootstrap\PatchState")
    if k is None:
        return None
    values = {v.name: v.data for v in k.values.values()}
    return {
        "key": k.path,
        "ts": k.ts,
        "values": {n: d if not isinstance(d, bytes) else d.hex() for n, d in values.items()},
    }


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    for fmt in ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M:%S %p", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


# -- analyzer ------------------------------------------------------------------------------------------


@register
class RegistryExchange(Analyzer):
    """Exchange install, build and March/April 2021 patch verdict from SOFTWARE and ExSetup.exe; MSERT/EOMT traces."""

    name = "registry_exchange"
    version = "1.0"
    consumes = ("registry_hive", "exchange_binary")
    rules = (BUILDS_FILE,)
    scope = "host"
    # the install and verdict findings (tags exchange,build) carry the product, CU and build
    host_facts = (
        FactSource(
            ("TRIAGE-EXCH-",),
            {"exchange_version": ("product",), "exchange_cu": ("cu",), "exchange_build": ("build",)},
        ),
    )

    def load_rules(self) -> BuildTable:
        return load_build_table()

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        table: BuildTable = self.ruleset
        binaries = [m for m in unit.members if m.kind == "exchange_binary" and m.outcome == "success"]
        exsetup = next((m for m in binaries if logical_path(m).lower().endswith("/exsetup.exe")), None)
        with HostHives(unit, backend=self.options.get("backend", "auto")) as hh:
            f, hive = hh.first("software")
            reg = read_exchange(hive) if hive is not None else None
            if hive is not None:
                yield from self._msert(unit, f, hive)  # type: ignore[arg-type]
        file_ver: Version | None = None
        strings: dict[str, str] = {}
        if exsetup is not None:
            file_ver, strings, problem = read_pe_version(unit.member_path(exsetup))
            if problem:
                unit.warn(
                    f"{logical_path(exsetup)}: cannot read the version resource ({problem}); "
                    "the verdict rests on the registry"
                )
        if reg is None and file_ver is None:
            return
        yield from self._verdict(unit, table, f, reg, exsetup, file_ver, strings)

    def _msert(self, unit: Unit, f: HiveFile, hive: Hive) -> Iterator[Finding]:
        info = _msert(hive)
        if info is None:
            return
        stamp = _parse_time(info["values"].get("Timestamp")) or info["ts"]
        yield unit.finding(
            RULES["TRIAGE-EXCH-007"],
            title="MSERT/EOMT run recorded (MSERTBootstrap\\PatchState)",
            message=(
                f"{f.root}\\{info['key']} holds the EOMT/MSERT stage record "
                f"({', '.join(f'{k}={v}' for k, v in info['values'].items())}). Evidence for ED 21-02 step 20; "
                "the scan results are in %SystemRoot%\\debug\\msert.log."
            ),
            location=f"{f.root}\\{info['key']}",
            evidence=f.row,
            ts=stamp,
            ts_desc="MSERT/EOMT timestamp" if stamp is not info["ts"] else "Key last written",
            attributes={"key": info["key"], **info["values"]},
        )

    def _verdict(
        self,
        unit: Unit,
        table: BuildTable,
        f: HiveFile | None,
        reg: ExchangeRegistry | None,
        exsetup: ManifestRow | None,
        file_ver: Version | None,
        strings: dict[str, str],
    ) -> Iterator[Finding]:
        reg_ver = reg.version if reg else None
        kbs = reg.kbs if reg else set()
        reg_verdict = assess(reg_ver, kbs, table) if reg_ver else None
        file_verdict = assess(file_ver, set(), table) if file_ver else None
        verdict = file_verdict or reg_verdict
        if verdict is None:  # a Setup key without usable version values
            unit.warn(f"{reg.setup_key if reg else 'Exchange'}: no MsiProductMajor/Minor/BuildMajor/BuildMinor values")
            verdict = Verdict(product="", version=(0, 0, 0, 0), status="unknown", basis="no version recorded")
        basis = "ExSetup.exe version resource" if file_verdict else "registry (Setup key and installed updates)"
        ev = f.row if (f is not None and reg is not None and not file_verdict) else (exsetup or (f.row if f else None))
        root = f.root if f else "HKLM\\SOFTWARE"
        location = f"{root}\\{reg.setup_key}" if reg else logical_path(exsetup) if exsetup else ""
        version = verdict.version
        attrs: dict[str, Any] = {
            "product": f"Exchange Server {verdict.product}" if verdict.product else "unknown",
            "cu": verdict.cu,
            "build": version_str(version),
            "status": verdict.status,
            "version_source": basis,
            "registry_build": version_str(reg_ver),
            "file_build": version_str(file_ver),
            "file_product_version": strings.get("ProductVersion", ""),
            "install_path": reg.install_path if reg else "",
            "installed_updates": [
                {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in u.items()}
                for u in (reg.updates if reg else [])
            ],
            "fixed_by": verdict.fixed_by,
            "missing": verdict.missing,
            "open_cves": verdict.cves,
            "needed_build": verdict.needed_build,
            "out_of_support": verdict.out_of_support,
            "basis": verdict.basis,
        }
        name = f"Exchange {verdict.product} {verdict.cu} ({version_str(version)})".replace("  ", " ")
        common: dict[str, Any] = {"evidence": ev, "location": location, "attributes": attrs}
        ts = reg.setup_ts if reg else None
        yield unit.finding(
            RULES["TRIAGE-EXCH-001"],
            title=f"{name} installed at {attrs['install_path'] or '?'}",
            message=(
                f"{name}; build from the {basis}; install path {attrs['install_path'] or 'unknown'}; "
                f"installed updates: {', '.join(sorted(kbs)) or 'none recorded'}."
            ),
            ts=ts,
            ts_desc="Setup key last written" if ts else "",
            **common,
        )
        if reg_verdict and file_verdict and (reg_ver[:3] != file_ver[:3] or reg_verdict.status != file_verdict.status):  # type: ignore[index]
            yield unit.finding(
                RULES["TRIAGE-EXCH-006"],
                title=f"Registry says {version_str(reg_ver)} ({reg_verdict.status}), "
                f"ExSetup.exe says {version_str(file_ver)} ({file_verdict.status})",
                message=(
                    "The Setup key and installed-update records do not match ExSetup.exe's version resource; "
                    "the file is authoritative for the security-update level. A partial or failed update, "
                    "a restored registry or a replaced binary can cause this."
                ),
                **{
                    **common,
                    "attributes": {**attrs, "registry_status": reg_verdict.status, "file_status": file_verdict.status},
                },
            )
        yield from self._status_findings(unit, verdict, name, common)

    def _status_findings(self, unit: Unit, v: Verdict, name: str, common: dict[str, Any]) -> Iterator[Finding]:
        table: BuildTable = self.ruleset
        if v.status == "vulnerable":
            yield unit.finding(
                RULES["TRIAGE-EXCH-002"],
                title=f"{name} lacks the March 2021 security update",
                message=(
                    f"{name} is below the March 2021 SU ({v.needed_build or 'no SU exists for this CU'}): "
                    "vulnerable to CVE-2021-26855/26857/26858/27065 (ProxyLogon). Follow ED 21-02 action 1-3: "
                    "triage for compromise before patching."
                ),
                cve=v.cves,
                **common,
            )
        elif v.status == "march_only":
            yield unit.finding(
                RULES["TRIAGE-EXCH-003"],
                title=f"{name} has the March fixes but not the April 2021 SU",
                message=(
                    f"{name} is patched for ProxyLogon but not for CVE-2021-28480..28483; Supplemental "
                    f"Direction v2 required the April 2021 SU by 2021-04-16 (needs {v.needed_build})."
                ),
                cve=v.cves,
                **common,
            )
        elif v.status == "patched":
            yield unit.finding(
                RULES["TRIAGE-EXCH-004"],
                title=f"{name} has the March and April 2021 fixes",
                message=f"{name}: {v.basis}. Patching does not remove a compromise that happened before it.",
                **common,
            )
        elif v.status == "e2010_vulnerable":
            yield unit.finding(
                RULES["TRIAGE-EXCH-008"],
                title=f"{name} lacks Update Rollup 32 ({', '.join(sorted(table.kbs('Mar21SU_E2010')))})",
                message=(
                    f"{name} is below {v.needed_build}: exposed to CVE-2021-26857 (Exchange 2010 is not "
                    "affected by the rest of the ProxyLogon chain)."
                ),
                cve=v.cves,
                **common,
            )
        elif v.status == "unknown":
            yield unit.finding(
                RULES["TRIAGE-EXCH-009"],
                title=f"{name}: patch level cannot be determined",
                message=f"{v.basis}. Check the build by hand against Microsoft's Exchange build list.",
                **common,
            )
        if v.out_of_support:
            yield unit.finding(
                RULES["TRIAGE-EXCH-005"],
                title=f"{name}: {v.out_of_support}",
                message=(
                    f"{v.out_of_support}. Supplemental Direction v1 (hardening 3) requires vendor-supported "
                    "versions; special March SUs for old CUs fix only the ProxyLogon chain."
                ),
                **common,
            )
