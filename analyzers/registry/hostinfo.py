"""Host facts from the SYSTEM, SOFTWARE and SAM hives, as ``info`` findings for the inventory (ED step 1).

Computer name and domain, OS product and build, time zone, network interfaces with their addresses,
installed programs, last shutdown time and local accounts. Each fact is one finding with the details in
``attributes`` (rule ids ``TRIAGE-HOST-00n``), so the report's inventory reads them from the findings table.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from analyzers.registry.artifacts import sam_accounts
from analyzers.registry.hostset import HiveFile, HostHives
from analyzers.registry.rules import scalar
from triage.finding import Finding
from triage.formats.hive import Hive
from triage.formats.times import filetime_to_dt
from triage.hostfacts import FactSource
from triage.indicators import rule_metas
from triage.registry import Analyzer, Unit, register

RULES = rule_metas("rulemeta/registry_hostinfo.yaml")
UNINSTALL = (r"Microsoft\Windows\CurrentVersion\Uninstall", r"WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall")


def _s(v: Any) -> str:
    if isinstance(v, list):
        return ",".join(str(x) for x in v if x)
    return "" if v is None else str(v)


def _signed(v: Any) -> int | None:
    return struct.unpack("<i", struct.pack("<I", v & 0xFFFFFFFF))[0] if isinstance(v, int) else None


def computer(system: Hive) -> dict[str, Any]:
    """Computer name, host name and domain from SYSTEM."""
    tcp = system.key(system.resolve(r"CurrentControlSet\Services\Tcpip\Parameters"))
    return {
        "computer_name": _s(
            system.value(system.resolve(r"CurrentControlSet\Control\ComputerName\ComputerName"), "ComputerName")
        ),
        "hostname": _s(tcp.get("Hostname")) if tcp else "",
        "domain": _s(tcp.get("Domain") or tcp.get("NV Domain")) if tcp else "",
        "control_set": system.control_set(),
    }


def os_info(software: Hive) -> tuple[dict[str, Any], datetime | None]:
    """OS product, build and install time from SOFTWARE ``Windows NT\\CurrentVersion``."""
    k = software.key(r"Microsoft\Windows NT\CurrentVersion")
    if k is None:
        return {}, None
    names = (
        "ProductName",
        "EditionID",
        "InstallationType",
        "CurrentVersion",
        "CurrentBuild",
        "CurrentBuildNumber",
        "UBR",
        "ReleaseId",
        "DisplayVersion",
        "RegisteredOwner",
        "RegisteredOrganization",
        "SystemRoot",
    )
    out: dict[str, Any] = {n: scalar(k.get(n)) for n in names if k.has(n)}
    installed = None
    if isinstance(k.get("InstallTime"), int):
        installed = filetime_to_dt(k.get("InstallTime"))
    elif isinstance(k.get("InstallDate"), int):
        installed = datetime.fromtimestamp(k.get("InstallDate"), UTC)
    if installed:
        out["install_time"] = installed.isoformat()
    build = out.get("CurrentBuild") or out.get("CurrentBuildNumber")
    out["os"] = f"{out.get('ProductName', 'Windows')} (build {build}{'.' + str(out['UBR']) if 'UBR' in out else ''})"
    return out, installed


def time_zone(system: Hive) -> tuple[dict[str, Any], datetime | None]:
    k = system.key(system.resolve(r"CurrentControlSet\Control\TimeZoneInformation"))
    if k is None:
        return {}, None
    out = {
        "time_zone": _s(k.get("TimeZoneKeyName") or k.get("StandardName")),
        "bias_minutes": _signed(k.get("Bias")),
        "active_bias_minutes": _signed(k.get("ActiveTimeBias")),
        "daylight_bias_minutes": _signed(k.get("DaylightBias")),
        "dynamic_daylight_disabled": k.get("DynamicDaylightTimeDisabled"),
    }
    return out, k.ts


def interfaces(system: Hive) -> Iterator[tuple[dict[str, Any], datetime | None, str]]:
    base = system.resolve(r"CurrentControlSet\Services\Tcpip\Parameters\Interfaces")
    for k in system.subkeys(base):

        def many(name: str, key: Any = k) -> list[str]:
            v = key.get(name)
            items = v if isinstance(v, list) else [v] if v else []
            return [str(x) for x in items if x and str(x) != "0.0.0.0"]

        ips = many("IPAddress") + many("DhcpIPAddress")
        rec = {
            "interface": k.name,
            "ip_addresses": ips,
            "subnet_masks": many("SubnetMask") + many("DhcpSubnetMask"),
            "gateways": many("DefaultGateway") + many("DhcpDefaultGateway"),
            "dhcp": bool(k.get("EnableDHCP")),
            "dhcp_server": _s(k.get("DhcpServer")),
            "dns_servers": [
                s
                for s in (_s(k.get("NameServer")) + "," + _s(k.get("DhcpNameServer"))).replace(" ", ",").split(",")
                if s
            ],
            "domain": _s(k.get("Domain") or k.get("DhcpDomain")),
        }
        if ips or rec["dns_servers"] or rec["gateways"]:
            yield rec, k.ts, k.path


def installed_programs(software: Hive) -> list[dict[str, Any]]:
    out = []
    for base in UNINSTALL:
        for k in software.subkeys(base):
            name = k.get("DisplayName")
            if not isinstance(name, str) or not name:
                continue
            out.append(
                {
                    "name": name,
                    "version": _s(k.get("DisplayVersion")),
                    "publisher": _s(k.get("Publisher")),
                    "install_date": _s(k.get("InstallDate")),
                    "install_location": _s(k.get("InstallLocation")),
                    "key": k.path,
                    "key_last_written": k.ts.isoformat() if k.ts else None,
                }
            )
    return sorted(out, key=lambda p: p["name"].lower())


def shutdown_time(system: Hive) -> tuple[datetime | None, str]:
    path = system.resolve(r"CurrentControlSet\Control\Windows")
    raw = system.value(path, "ShutdownTime")
    if isinstance(raw, bytes | bytearray) and len(raw) >= 8:
        return filetime_to_dt(struct.unpack_from("<Q", raw)[0]), path
    return None, path


@register
class RegistryHostInfo(Analyzer):
    """Host facts from the hives: computer name, OS, time zone, interfaces and IPs, software, shutdown, accounts."""

    name = "registry_hostinfo"
    version = "1.0"
    consumes = ("registry_hive",)
    scope = "host"
    host_facts = (
        FactSource(
            ("TRIAGE-HOST-001",),
            {
                "hostname": ("computer_name", "hostname"),
                "domain": ("domain",),
                "fqdn": ("fqdn",),
                "internal_ips": ("ip_addresses",),
            },
        ),
        FactSource(
            ("TRIAGE-HOST-002",),
            {"os_version": ("ProductName", "os"), "os_build": ("CurrentBuild", "CurrentBuildNumber")},
        ),
        FactSource(("TRIAGE-HOST-004",), {"domain": ("domain",), "internal_ips": ("ip_addresses",)}),
    )

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        with HostHives(unit, backend=self.options.get("backend", "auto")) as hh:
            f, system = hh.first("system")
            if system is not None:
                yield from self._system(unit, f, system)  # type: ignore[arg-type]
            f, software = hh.first("software")
            if software is not None:
                yield from self._software(unit, f, software)  # type: ignore[arg-type]
            f, sam = hh.first("sam")
            if sam is not None:
                yield from self._sam(unit, f, sam)  # type: ignore[arg-type]

    def _fact(
        self,
        unit: Unit,
        f: HiveFile,
        rid: str,
        title: str,
        message: str,
        location: str,
        attrs: dict[str, Any],
        ts: datetime | None = None,
        ts_desc: str = "Key last written",
    ) -> Finding:
        return unit.finding(
            RULES[rid],
            title=title,
            message=message,
            location=location,
            evidence=f.row,
            ts=ts,
            ts_desc=ts_desc if ts else "",
            attributes=attrs,
        )

    def _system(self, unit: Unit, f: HiveFile, system: Hive) -> Iterator[Finding]:
        facts = computer(system)
        cn_key = system.resolve(r"CurrentControlSet\Control\ComputerName\ComputerName")
        tz_key = system.resolve(r"CurrentControlSet\Control\TimeZoneInformation")
        ips: list[str] = []
        itfs = list(interfaces(system))
        for rec, _, _ in itfs:
            ips.extend(rec["ip_addresses"])
        if facts["computer_name"] or facts["hostname"]:
            fqdn = ".".join(p for p in (facts["hostname"] or facts["computer_name"].lower(), facts["domain"]) if p)
            yield self._fact(
                unit,
                f,
                "TRIAGE-HOST-001",
                f"Computer name: {facts['computer_name']} ({fqdn})",
                f"Computer name {facts['computer_name']}, FQDN {fqdn}, addresses {', '.join(ips) or '-'}.",
                f"{f.root}\\{cn_key}",
                {**facts, "fqdn": fqdn, "ip_addresses": ips},
            )
        tz, tz_ts = time_zone(system)
        if tz:
            yield self._fact(
                unit,
                f,
                "TRIAGE-HOST-003",
                f"Time zone: {tz['time_zone']}",
                f"Time zone {tz['time_zone']} (bias {tz['bias_minutes']} min). Local times in logs of this "
                "host are to be read with it.",
                f"{f.root}\\{tz_key}",
                tz,
                tz_ts,
            )
        for rec, ts, path in itfs:
            yield self._fact(
                unit,
                f,
                "TRIAGE-HOST-004",
                f"Network interface: {', '.join(rec['ip_addresses']) or '-'}",
                f"Interface {rec['interface']}: addresses {', '.join(rec['ip_addresses']) or '-'}, "
                f"gateways {', '.join(rec['gateways']) or '-'}, DNS {', '.join(rec['dns_servers']) or '-'}"
                f"{' (DHCP)' if rec['dhcp'] else ''}.",
                f"{f.root}\\{path}",
                rec,
                ts,
            )
        when, path = shutdown_time(system)
        if when:
            yield self._fact(
                unit,
                f,
                "TRIAGE-HOST-006",
                f"Last shutdown: {when.isoformat()}",
                f"The system last shut down cleanly at {when.isoformat()} (Control\\Windows ShutdownTime).",
                f"{f.root}\\{path}\\ShutdownTime",
                {"shutdown_time": when.isoformat()},
                when,
                "Last shutdown",
            )

    def _software(self, unit: Unit, f: HiveFile, software: Hive) -> Iterator[Finding]:
        info, installed = os_info(software)
        if info:
            yield self._fact(
                unit,
                f,
                "TRIAGE-HOST-002",
                f"Operating system: {info['os']}",
                f"{info['os']}, edition {info.get('EditionID', '?')}, installed "
                f"{info.get('install_time', 'at an unknown time')}.",
                f"{f.root}\\Microsoft\\Windows NT\\CurrentVersion",
                info,
                installed,
                "OS installed",
            )
        programs = installed_programs(software)
        if programs:
            yield self._fact(
                unit,
                f,
                "TRIAGE-HOST-005",
                f"Installed software: {len(programs)} programs",
                "Programs registered for uninstall: "
                + "; ".join(f"{p['name']} {p['version']}".strip() for p in programs[:40])
                + (" ..." if len(programs) > 40 else ""),
                f"{f.root}\\{UNINSTALL[0]}",
                {"count": len(programs), "programs": programs},
            )

    def _sam(self, unit: Unit, f: HiveFile, sam: Hive) -> Iterator[Finding]:
        accounts = sam_accounts(sam)
        if not accounts:
            return
        rows = [{k: scalar(v) for k, v in a.items()} for a in accounts]
        yield self._fact(
            unit,
            f,
            "TRIAGE-HOST-007",
            f"Local accounts: {len(rows)}",
            "Local accounts (created / last logon): "
            + "; ".join(
                f"{a['username']} (RID {a['rid']}, {a.get('created') or '?'} / {a.get('last_login') or 'never'}"
                f"{', disabled' if a.get('disabled') else ''})"
                for a in rows
            ),
            f"{f.root}\\SAM\\Domains\\Account\\Users",
            {"count": len(rows), "accounts": rows},
        )
