"""Findings derived from Volatility tables: pure functions over lists of row dicts in Volatility 3's column
shapes (``PID``, ``PPID``, ``ImageFileName``, ``CreateTime`` ... as the plugins' TreeGrids name them).

Nothing here imports volatility3; tests feed these functions hand-written rows. Each returns
:class:`Indicator` records the analyzer turns into findings.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from pathlib import PureWindowsPath
from typing import Any

from triage.finding import SEVERITIES, RuleMeta
from triage.indicators import CmdRule, cmdline_rules, hafnium_ips, rule_metas, server_pages, stock_names

Row = Mapping[str, Any]
# the constant metadata of the derived findings (signatures/rulemeta/memory.yaml); a few take their severity,
# confidence or title from what was seen, by dataclasses.replace on the rule
RULES = rule_metas("rulemeta/memory.yaml")

# HAFNIUM infrastructure published by Volexity via CISA AA21-062A (ED2102-REFERENCE 3.2): signatures/indicators
HAFNIUM_IPS = hafnium_ips()
EPROCESS_NAME_LEN = 14  # EPROCESS.ImageFileName keeps 14 characters: UMWorkerProcess.exe shows as UMWorkerProces

WEB_WORKERS = ("w3wp.exe",)
UM_WORKERS = ("umworkerprocess.exe",)
UM_BENIGN_CHILDREN = ("wermgr.exe", "werfault.exe")
SHELLS = (
    "cmd.exe",
    "powershell.exe",
    "pwsh.exe",
    "powershell_ise.exe",
    "cscript.exe",
    "wscript.exe",
    "mshta.exe",
    "rundll32.exe",
    "regsvr32.exe",
    "certutil.exe",
    "bitsadmin.exe",
    "net.exe",
    "net1.exe",
    "whoami.exe",
    "nltest.exe",
    "systeminfo.exe",
    "tasklist.exe",
    "ipconfig.exe",
    "quser.exe",
    "query.exe",
    "wmic.exe",
    "reg.exe",
    "schtasks.exe",
    "vssadmin.exe",
    "makecab.exe",
    "procdump.exe",
    "procdump64.exe",
    "7z.exe",
    "7za.exe",
    "rar.exe",
    "attrib.exe",
)
# processes that hold handles to lsass as part of the OS, its security products or the hypervisor tools
LSASS_HANDLE_EXPECTED = (
    "lsass.exe",
    "csrss.exe",
    "wininit.exe",
    "services.exe",
    "svchost.exe",
    "lsm.exe",
    "smss.exe",
    "system",
    "wmiprvse.exe",
    "msmpeng.exe",
    "mssense.exe",
    "sensecncproxy.exe",
    "nissrv.exe",
    "sysmon.exe",
    "sysmon64.exe",
    "csfalconservice.exe",
    "csfalconcontainer.exe",
    "xagt.exe",
    "sentinelagent.exe",
    "cb.exe",
    "repmgr.exe",
    "cylancesvc.exe",
    "vmtoolsd.exe",
    "taskmgr.exe",  # interactive, but flagged separately when it holds read access (below)
)
PROCESS_VM_READ = 0x0010
PROCESS_ALL_ACCESS = 0x1FFFFF
NET_SHELLS = ("powershell.exe", "pwsh.exe", "cmd.exe", "rundll32.exe", "mshta.exe", "certutil.exe")
LIVE_STATES = {"ESTABLISHED", "SYN_SENT", "SYN_RCVD", "CLOSE_WAIT", "FIN_WAIT1", "FIN_WAIT2", "LAST_ACK", "CLOSING"}


@dataclass
class Indicator:
    """One derived observation, ready to become a finding: its rule (id, title, level, steps, tags ...) and what
    was seen."""

    rule: RuleMeta
    title: str
    message: str
    location: str
    ts: datetime | None = None
    ts_desc: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def rule_id(self) -> str:
        return self.rule.id

    @property
    def rule_title(self) -> str:
        return self.rule.title

    @property
    def severity(self) -> str:
        return self.rule.severity

    @property
    def confidence(self) -> str:
        return self.rule.confidence

    @property
    def mitre(self) -> str:
        return ",".join(self.rule.mitre)

    @property
    def cve(self) -> str:
        return ",".join(self.rule.cve)

    @property
    def steps(self) -> str:
        return ",".join(self.rule.steps)

    @property
    def tags(self) -> str:
        return ",".join(self.rule.tags)


def _csv(value: Any) -> tuple[str, ...]:
    text = str(value or "")
    return tuple(text.split(",")) if text else ()


def yara_rule_meta(
    prefix: str, rule: str, meta: Mapping[str, Any], title: str, tags: Sequence[str], *, cite: bool = False
) -> RuleMeta:
    """The metadata of findings from one memory YARA rule (``MEM-YARA-<name>`` over the raw image,
    ``MEM-VADYARA-<name>`` from vadyarascan): id from the rule's name, level, confidence, MITRE, CVE and ED 21-02
    steps (11 unless given) from its meta; with ``cite``, its ``reference`` too."""
    sev = str(meta.get("severity") or "medium").lower()
    return RuleMeta(
        id=f"{prefix}-{rule.rsplit('.', 1)[-1]}",
        title=title,
        severity=sev if sev in SEVERITIES else "medium",
        confidence=str(meta.get("confidence") or "medium"),
        mitre=_csv(meta.get("mitre")),
        cve=_csv(meta.get("cve")),
        steps=_csv(meta.get("ed2102_steps") or meta.get("ed2102_step") or "11"),
        tags=tuple(tags),
        references=_csv(meta.get("reference")) if cite else (),
    )


# -- helpers --------------------------------------------------------------------------------------------
def base_name(name: Any) -> str:
    """The lower-case file name of a process name or path (``C:\\x\\W3WP.EXE`` -> ``w3wp.exe``)."""
    if not name:
        return ""
    return PureWindowsPath(str(name).strip().strip('"')).name.lower()


def name_is(name: Any, *targets: str) -> bool:
    """Whether a process name is one of ``targets``, allowing EPROCESS's 14-character truncation."""
    n = base_name(name)
    if not n:
        return False
    for t in targets:
        t = t.lower()
        if n == t or (len(n) >= EPROCESS_NAME_LEN and t.startswith(n)):
            return True
    return False


def _offset(row: Row) -> int | None:
    for k, v in row.items():
        if k.startswith("Offset") and isinstance(v, int):
            return v
    return None


def _short(text: Any, limit: int = 600) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= limit else s[: limit - 3] + "..."


@dataclass
class Proc:
    """A process as the process listings know it."""

    pid: int
    ppid: int | None
    name: str
    created: datetime | None
    exited: datetime | None
    in_pslist: bool = False
    in_psscan: bool = False
    offset: int | None = None
    cmdline: str = ""


def processes(pslist: Sequence[Row] = (), psscan: Sequence[Row] = (), cmdline: Sequence[Row] = ()) -> list[Proc]:
    """Processes from pslist and psscan merged by (PID, CreateTime), with command lines by PID."""
    merged: dict[tuple[int, Any], Proc] = {}
    for rows, attr in ((pslist, "in_pslist"), (psscan, "in_psscan")):
        for r in rows:
            pid = r.get("PID")
            if pid is None:
                continue
            key = (pid, r.get("CreateTime"))
            p = merged.get(key)
            if p is None:
                p = merged[key] = Proc(
                    pid,
                    r.get("PPID"),
                    r.get("ImageFileName") or "",
                    r.get("CreateTime"),
                    r.get("ExitTime"),
                    offset=_offset(r),
                )
            setattr(p, attr, True)
            if not p.name and r.get("ImageFileName"):
                p.name = r["ImageFileName"]
    args = {r.get("PID"): r.get("Args") for r in cmdline if r.get("Args")}
    for p in merged.values():
        p.cmdline = args.get(p.pid) or ""
    return list(merged.values())


def _parent(child: Proc, by_pid: Mapping[int, list[Proc]]) -> Proc | None:
    """The parent: a process with the child's PPID that started before it (PIDs are reused)."""
    cands = by_pid.get(child.ppid or -1, [])
    created = child.created
    if created is not None:
        timed = [p for p in cands if p.created is None or p.created <= created]
        cands = sorted(timed, key=lambda p: p.created or datetime.min.replace(tzinfo=created.tzinfo))
        return cands[-1] if cands else None
    return cands[0] if cands else None


# -- 1. web and UM workers with shell children -------------------------------------------------------------
def shell_children(pslist: Sequence[Row], psscan: Sequence[Row] = (), cmdline: Sequence[Row] = ()) -> list[Indicator]:
    """w3wp.exe starting a shell or recon tool, or UMWorkerProcess.exe starting anything but WER."""
    procs = processes(pslist, psscan, cmdline)
    by_pid: dict[int, list[Proc]] = defaultdict(list)
    for p in procs:
        by_pid[p.pid].append(p)
    out = []
    for child in procs:
        parent = _parent(child, by_pid)
        if parent is None:
            continue
        if name_is(parent.name, *WEB_WORKERS) and name_is(child.name, *SHELLS):
            rule, what = RULES["MEM-W3WP-SHELL-CHILD"], "IIS worker (w3wp.exe) started"
        elif name_is(parent.name, *UM_WORKERS) and not name_is(child.name, *UM_BENIGN_CHILDREN):
            rule, what = RULES["MEM-UMWORKER-CHILD"], "Unified Messaging worker started"
        else:
            continue
        out.append(
            Indicator(
                rule,
                title=f"{base_name(parent.name)} (PID {parent.pid}) started {base_name(child.name)} (PID {child.pid})",
                message=f"{what} {child.name} (PID {child.pid})"
                + (f" with command line: {_short(child.cmdline)}" if child.cmdline else "")
                + ": a web shell or exploited worker running commands.",
                location=f"pid:{child.pid}",
                ts=child.created,
                ts_desc="process created",
                attributes={
                    "parent_pid": parent.pid,
                    "parent": parent.name,
                    "parent_cmdline": _short(parent.cmdline),
                    "pid": child.pid,
                    "process": child.name,
                    "cmdline": _short(child.cmdline, 2000),
                    "created": child.created,
                    "exited": child.exited,
                },
            )
        )
    return out


# -- 2. command lines ---------------------------------------------------------------------------------------
def _rx(p: str) -> re.Pattern[str]:
    return re.compile(p, re.IGNORECASE)


# the rules are data (signatures/indicators/cmdline.yaml); command_lines() below is their interpreter
CMD_RULES: tuple[CmdRule, ...] = cmdline_rules()
_ENCODED = _rx(r"\s-(?:e|en|enc|enco|encod|encode|encoded|encodedc\w*)\s+([A-Za-z0-9+/=]{16,})")


def decode_powershell(cmdline: str) -> str:
    """The script of a ``powershell -EncodedCommand <base64 UTF-16LE>`` command line, or ''."""
    m = _ENCODED.search(cmdline or "")
    if not m:
        return ""
    try:
        return base64.b64decode(m.group(1) + "=" * (-len(m.group(1)) % 4)).decode("utf-16-le", "replace")
    except (binascii.Error, ValueError):
        return ""


@cache
def cmdline_meta(rule: CmdRule) -> RuleMeta:
    """What a memory finding of one command-line rule carries: its id, title, level, MITRE and steps, tagged as
    a Volatility command line (the rule's own CVE, tags and references are not shown here)."""
    return RuleMeta(
        id=rule.id,
        title=rule.title,
        severity=rule.severity,
        confidence=rule.confidence,
        mitre=rule.mitre,
        steps=rule.steps,
        tags=("memory", "volatility", "cmdline"),
    )


def command_lines(
    cmdline: Sequence[Row], pslist: Sequence[Row] = (), rules: Sequence[CmdRule] = CMD_RULES
) -> list[Indicator]:
    """Command lines that dump lsass, run mimikatz, stage archives in ProgramData, export mailboxes ...

    ``procdump -ma <pid>`` counts as an lsass dump when that PID is lsass in ``pslist``. Encoded PowerShell is
    decoded and checked too.
    """
    lsass_pids = {r.get("PID") for r in pslist if name_is(r.get("ImageFileName"), "lsass.exe")}
    out = []
    seen: set[tuple[str, Any]] = set()
    for r in cmdline:
        args = r.get("Args")
        if not args:
            continue
        texts = [("command line", str(args))]
        decoded = decode_powershell(str(args))
        if decoded:
            texts.append(("decoded -EncodedCommand", decoded))
        hits: list[tuple[CmdRule, str]] = []
        for how, text in texts:
            for rule in rules:
                if rule.matches(text):
                    hits.append((rule, how))
            if lsass_pids and re.search(r"procdump", text, re.I):
                m = re.search(r"[-/]ma\s+(\d+)\b", text, re.I)
                if m and int(m.group(1)) in lsass_pids:
                    hits.append((CMD_RULES[0], how))
        for rule, how in hits:
            key = (rule.id, r.get("PID"))
            if key in seen:
                continue
            seen.add(key)
            out.append(
                Indicator(
                    cmdline_meta(rule),
                    title=f"{rule.title}: {base_name(r.get('Process'))} PID {r.get('PID')}",
                    message=f"{r.get('Process')} (PID {r.get('PID')}) {how}: {_short(args)}"
                    + (f" -> {_short(decoded)}" if how.startswith("decoded") else ""),
                    location=f"pid:{r.get('PID')}",
                    attributes={
                        "pid": r.get("PID"),
                        "process": r.get("Process"),
                        "args": _short(args, 4000),
                        "decoded": _short(decoded, 4000) if decoded else None,
                        "matched_in": how,
                    },
                )
            )
    return out


# -- 3. handles to lsass ---------------------------------------------------------------------------------
_LSASS_HANDLE = re.compile(r"^lsass\.exe\s+Pid\s+(\d+)", re.IGNORECASE)


def lsass_handles(handles: Sequence[Row], pslist: Sequence[Row] = ()) -> list[Indicator]:
    """Process handles to lsass that can read its memory, held by processes that have no business doing so."""
    lsass_pids = {r.get("PID") for r in pslist if name_is(r.get("ImageFileName"), "lsass.exe")}
    grouped: dict[tuple[Any, Any], list[Row]] = defaultdict(list)
    for r in handles:
        if str(r.get("Type") or "").lower() != "process":
            continue
        m = _LSASS_HANDLE.match(str(r.get("Name") or ""))
        if not m or (lsass_pids and int(m.group(1)) not in lsass_pids):
            continue
        access = r.get("GrantedAccess") or 0
        if not access & PROCESS_VM_READ:
            continue
        holder = r.get("Process")
        if name_is(holder, *LSASS_HANDLE_EXPECTED) and not name_is(holder, "taskmgr.exe"):
            continue
        grouped[(r.get("PID"), holder)].append(r)
    out = []
    for (pid, holder), rows in grouped.items():
        access = max(int(r.get("GrantedAccess") or 0) for r in rows)
        strong = name_is(
            holder,
            *WEB_WORKERS,
            *UM_WORKERS,
            "rundll32.exe",
            "procdump.exe",
            "procdump64.exe",
            "powershell.exe",
            "cmd.exe",
            "rdrleakdiag.exe",
            "taskmgr.exe",
        )
        out.append(
            Indicator(
                replace(RULES["MEM-LSASS-HANDLE"], severity="critical", confidence="high")
                if strong
                else RULES["MEM-LSASS-HANDLE"],
                title=f"{holder} (PID {pid}) holds lsass open with access {access:#x}",
                message=f"{holder} (PID {pid}) has {len(rows)} process handle(s) to {rows[0].get('Name')} granting "
                f"{access:#x} (includes PROCESS_VM_READ): what a credential dumper needs.",
                location=f"pid:{pid}",
                attributes={
                    "pid": pid,
                    "process": holder,
                    "target": rows[0].get("Name"),
                    "granted_access": access,
                    "handle_values": [r.get("HandleValue") for r in rows][:20],
                },
            )
        )
    return out


# -- 4. injected code ---------------------------------------------------------------------------------------
def injected_code(malfind: Sequence[Row]) -> list[Indicator]:
    """malfind regions in lsass (any) and in w3wp/UMWorkerProcess (high when a PE header, else medium: .NET's
    JIT heaps in w3wp are executable private memory too); other processes go into one info summary."""
    by_proc: dict[tuple[Any, Any], list[Row]] = defaultdict(list)
    for r in malfind:
        by_proc[(r.get("PID"), r.get("Process"))].append(r)
    out = []
    others = []
    for (pid, proc), rows in by_proc.items():
        pe = [r for r in rows if isinstance(r.get("Hexdump"), bytes | bytearray) and bytes(r["Hexdump"][:2]) == b"MZ"]
        if name_is(proc, "lsass.exe"):  # credentials: step 9 too
            rule = replace(RULES["MEM-MALFIND"], severity="critical", confidence="high", steps=("9", "11"))
        elif name_is(proc, *WEB_WORKERS, *UM_WORKERS):
            rule = replace(RULES["MEM-MALFIND"], severity="high", confidence="high") if pe else RULES["MEM-MALFIND"]
        else:
            others.append((pid, proc, len(rows), len(pe)))
            continue
        starts = [r.get("Start VPN") for r in rows]
        out.append(
            Indicator(
                rule,
                title=f"{proc} (PID {pid}): {len(rows)} suspicious executable region(s)"
                + (f", {len(pe)} starting with a PE header" if pe else ""),
                message=f"malfind found {len(rows)} private executable region(s) in {proc} (PID {pid})"
                + (f", {len(pe)} holding an MZ header (a loaded PE outside the loader)" if pe else "")
                + ". Protections: "
                + ", ".join(sorted({str(r.get("Protection")) for r in rows}))[:200]
                + ".",
                location=f"pid:{pid}",
                attributes={
                    "pid": pid,
                    "process": proc,
                    "regions": len(rows),
                    "pe_regions": len(pe),
                    "starts": [hex(s) for s in starts if isinstance(s, int)][:20],
                },
            )
        )
    if others:
        total = sum(n for _, _, n, _ in others)
        out.append(
            Indicator(
                RULES["MEM-MALFIND-OTHER"],
                title=f"malfind: {total} region(s) in {len(others)} other process(es)",
                message="Executable private regions outside lsass and the Exchange workers (often JIT code): "
                + ", ".join(f"{p} ({pid}): {n}" for pid, p, n, _ in sorted(others, key=lambda o: -o[2])[:15]),
                location="malfind:other",
                attributes={
                    "processes": [
                        {"pid": pid, "process": p, "regions": n, "pe_regions": pe} for pid, p, n, pe in others
                    ][:200]
                },
            )
        )
    return out


# -- 5. network ----------------------------------------------------------------------------------------------
def _ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(str(value).strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


def network(netscan: Sequence[Row], bad_ips: Iterable[str] = HAFNIUM_IPS) -> list[Indicator]:
    """Connections to the published HAFNIUM addresses (any process), and from w3wp/PowerShell/shells to public
    addresses (w3wp's connections to its own LAN, the back end on 444 and AD are its everyday work)."""
    bad = {str(_ip(b)) for b in bad_ips if _ip(b)}
    out = []
    for r in netscan:
        remote = _ip(r.get("ForeignAddr"))
        if remote is None or remote.is_unspecified:
            continue
        owner, pid = r.get("Owner"), r.get("PID")
        state = str(r.get("State") or "")
        where = f"{r.get('LocalAddr')}:{r.get('LocalPort')} -> {remote}:{r.get('ForeignPort')}"
        attrs = {
            "pid": pid,
            "process": owner,
            "proto": r.get("Proto"),
            "local": f"{r.get('LocalAddr')}:{r.get('LocalPort')}",
            "remote": f"{remote}:{r.get('ForeignPort')}",
            "state": state,
            "created": r.get("Created"),
        }
        if str(remote) in bad:
            out.append(
                Indicator(
                    RULES["MEM-NET-HAFNIUM-IP"],
                    title=f"{owner or 'unknown process'} (PID {pid}) connected to HAFNIUM address {remote}",
                    message=f"{r.get('Proto')} {where} ({state or 'no state'}) owned by {owner} (PID {pid}); "
                    f"{remote} is in the CISA AA21-062A / Volexity HAFNIUM list.",
                    location=f"net:{remote}:{r.get('ForeignPort')}:pid:{pid}",
                    ts=r.get("Created"),
                    ts_desc="connection created" if r.get("Created") else "",
                    attributes=attrs,
                )
            )
            continue
        if not remote.is_global or remote.is_multicast:  # LAN, loopback, CGNAT, documentation ranges
            continue
        if state and state.upper() not in LIVE_STATES:
            continue
        if name_is(owner, *WEB_WORKERS, *UM_WORKERS):
            rule, why = RULES["MEM-NET-W3WP-PUBLIC"], "an Exchange worker talking to the Internet"
        elif name_is(owner, *NET_SHELLS):
            rule, why = RULES["MEM-NET-SHELL-PUBLIC"], "a shell or script host talking to the Internet"
        else:
            continue
        out.append(
            Indicator(
                replace(rule, title=f"Connection from {base_name(owner)} to a public address"),
                title=f"{owner} (PID {pid}) connected to {remote}:{r.get('ForeignPort')}",
                message=f"{r.get('Proto')} {where} ({state}) owned by {owner} (PID {pid}): {why}.",
                location=f"net:{remote}:{r.get('ForeignPort')}:pid:{pid}",
                ts=r.get("Created"),
                ts_desc="connection created" if r.get("Created") else "",
                attributes=attrs,
            )
        )
    return out


# -- 6. hidden processes ------------------------------------------------------------------------------------------
def hidden_processes(pslist: Sequence[Row], psscan: Sequence[Row]) -> list[Indicator]:
    """Processes psscan carves that the active process list does not hold and that have not exited: unlinked
    (DKOM) or the list walk broke. Exited ones are normal and are not reported."""
    if not pslist:  # without a process list there is nothing to compare with
        return []
    listed = {(r.get("PID"), r.get("CreateTime")) for r in pslist}
    listed_pids = {r.get("PID") for r in pslist}
    out = []
    for r in psscan:
        pid, created = r.get("PID"), r.get("CreateTime")
        if (pid, created) in listed or r.get("ExitTime") is not None:
            continue
        if created is None and pid in listed_pids:
            continue
        out.append(
            Indicator(
                RULES["MEM-PROC-HIDDEN"],
                title=f"{r.get('ImageFileName')} (PID {pid}) is not in the process list",
                message=f"psscan found {r.get('ImageFileName')} (PID {pid}, parent {r.get('PPID')}) with no exit time, "
                "but the kernel's active process list does not link it: a hidden (unlinked) process, or a torn list.",
                location=f"pid:{pid}",
                ts=created,
                ts_desc="process created" if created else "",
                attributes={
                    "pid": pid,
                    "ppid": r.get("PPID"),
                    "process": r.get("ImageFileName"),
                    "created": created,
                    "offset": _offset(r),
                },
            )
        )
    return out


# -- 7. services ---------------------------------------------------------------------------------------------
_USER_WRITABLE = re.compile(
    r"\\(?:programdata|users|windows\\temp|temp|perflogs|inetpub|\$recycle\.bin|appdata)\\", re.IGNORECASE
)
_SCRIPTY = re.compile(
    r"(?:cmd(?:\.exe)?\s+/[ck]|powershell|pwsh|mshta|rundll32|regsvr32|wscript|cscript|certutil|bitsadmin"
    r"|\s-e(?:nc(?:odedcommand)?)?\s+[A-Za-z0-9+/=]{16,}|%comspec%)",
    re.IGNORECASE,
)
_KNOWN_BAD_SERVICES = re.compile(r"^(?:psexesvc|paexec\w*|remcomsvc|csexecsvc|winexesvc|vsperfmon)$", re.IGNORECASE)


def suspicious_services(svcscan: Sequence[Row]) -> list[Indicator]:
    """Services whose binary lives in a user-writable place, runs a shell or script host, or whose name is a
    remote-execution tool's (PsExec, PAExec, RemCom ...)."""
    out = []
    seen: set[tuple[Any, Any]] = set()
    for r in svcscan:
        name = str(r.get("Name") or "")
        binary = str(r.get("Binary") or r.get("Binary (Registry)") or "")
        dll = str(r.get("Dll") or "")
        reasons = []
        if _KNOWN_BAD_SERVICES.match(name):
            reasons.append("remote-execution tool service name")
        if _USER_WRITABLE.search(binary) or _USER_WRITABLE.search(dll):
            reasons.append("binary in a user-writable folder")
        if _SCRIPTY.search(binary):
            reasons.append("runs a shell or script host")
        if not reasons or (name, binary) in seen:
            continue
        seen.add((name, binary))
        rule = RULES["MEM-SERVICE-SUSPICIOUS"]
        if len(reasons) > 1 or "runs a shell or script host" in reasons:
            rule = replace(rule, severity="high")
        out.append(
            Indicator(
                rule,
                title=f"Service {name}: {', '.join(reasons)}",
                message=f"Service {name} ({r.get('Display')}) state {r.get('State')}, start {r.get('Start')}: "
                f"binary {_short(binary, 300)}" + (f", dll {dll}" if dll else "") + f" ({'; '.join(reasons)}).",
                location=f"service:{name}",
                attributes={
                    "name": name,
                    "display": r.get("Display"),
                    "binary": binary,
                    "dll": dll or None,
                    "state": r.get("State"),
                    "start": r.get("Start"),
                    "pid": r.get("PID"),
                    "reasons": reasons,
                },
            )
        )
    return out


# -- 8. web shells in the file cache ----------------------------------------------------------------------------
OWA_AUTH_STOCK = stock_names("owa_auth")
ECP_AUTH_STOCK = stock_names("ecp_auth")
SERVER_PAGES = server_pages()
_APP_WEB = re.compile(r"\\temporary asp\.net files\\.*\\app_web_[a-z0-9]{7,8}\.dll$", re.IGNORECASE)


def _web_place(path: str) -> str | None:
    """Why a server page at ``path`` (backslashes, lower case) is where web shells go, or None."""
    name = path.rsplit("\\", 1)[-1]
    if not name.endswith(SERVER_PAGES):
        return None
    if "\\aspnet_client\\" in path:
        return "aspnet_client"
    if "\\ecp\\auth\\" in path:
        return None if name in ECP_AUTH_STOCK else "ecp/auth"
    if "\\owa\\auth\\" in path:
        rest = path.split("\\owa\\auth\\", 1)[1]
        if "\\" not in rest:
            return None if name in OWA_AUTH_STOCK else "owa/auth"
        return "owa/auth (versioned or Current folder)" if name.endswith(".aspx") else None
    return None


def webshell_files(filescan: Sequence[Row]) -> list[Indicator]:
    """Server pages in aspnet_client, ecp/auth (but TimeoutLogoff.aspx), owa/auth (non-stock) and compiled
    App_Web_*.dll in Temporary ASP.NET Files, as the kernel's file objects name them."""
    pages: dict[str, tuple[str, Row]] = {}
    app_web: dict[str, Row] = {}
    for r in filescan:
        raw = str(r.get("Name") or "")
        path = raw.replace("/", "\\").lower()
        if not path:
            continue
        place = _web_place(path)
        if place:
            pages.setdefault(path, (place, r))
        elif _APP_WEB.search(path):
            app_web.setdefault(path, r)
    out = []
    for path, (place, r) in sorted(pages.items()):
        out.append(
            Indicator(
                RULES["MEM-FILE-WEBSHELL"],
                title=f"Server page in {place}: {r.get('Name')}",
                message=f"The kernel has a file object for {r.get('Name')} ({place}), a place where ProxyLogon web "
                "shells were written. Dump it with windows.dumpfiles and compare with the disk copy.",
                location=f"file:{path}",
                attributes={"path": r.get("Name"), "place": place, "offset": _offset(r)},
            )
        )
    if app_web:
        names = sorted(str(r.get("Name")) for r in app_web.values())
        out.append(
            Indicator(
                RULES["MEM-FILE-APPWEB-DLL"],
                title=f"{len(names)} App_Web_*.dll assemblies in Temporary ASP.NET Files are open",
                message="ASP.NET compiles every page it serves into App_Web_*.dll, web shells included. Dump these "
                "with windows.dumpfiles and scan them with the YARA rules: "
                + ", ".join(names[:10])
                + (" ..." if len(names) > 10 else ""),
                location="file:app_web",
                attributes={"files": names[:500], "count": len(names)},
            )
        )
    return out


# -- 9. YARA over process memory ---------------------------------------------------------------------------------
def vad_yara(rows: Sequence[Row], meta_of: Any) -> list[Indicator]:
    """vadyarascan hits grouped by rule and process; severity from the rule's meta (``meta_of(rule) -> dict``)."""
    groups: dict[tuple[Any, Any, Any], list[Row]] = defaultdict(list)
    for r in rows:
        meta = meta_of(str(r.get("Rule") or "")) or {}
        if meta.get("carve"):
            continue
        groups[(r.get("Rule"), r.get("PID"), r.get("ImageFileName"))].append(r)
    out = []
    for (rule, pid, proc), hits in groups.items():
        meta = meta_of(str(rule)) or {}
        title = str(meta.get("title") or rule)
        samples = []
        for h in hits[:5]:
            v = h.get("Value")
            samples.append(v[:80].decode("latin-1") if isinstance(v, bytes | bytearray) else _short(v, 80))
        out.append(
            Indicator(
                yara_rule_meta("MEM-VADYARA", str(rule), meta, title, ("memory", "volatility", "yara")),
                title=f"{title} in {proc} (PID {pid})",
                message=f"YARA rule {rule} matched {len(hits)} time(s) in the memory of {proc} (PID {pid}).",
                location=f"pid:{pid}:rule:{rule}",
                attributes={
                    "rule": rule,
                    "pid": pid,
                    "process": proc,
                    "hits": len(hits),
                    "offsets": [hex(h["Offset"]) for h in hits[:20] if isinstance(h.get("Offset"), int)],
                    "samples": samples,
                    "rule_file": meta.get("_file"),
                },
            )
        )
    return out


def derive_all(tables: Mapping[str, Sequence[Row]], meta_of: Any = None) -> list[Indicator]:
    """Every derivation over the tables that are present (keys as the analyzer names tables: pslist, psscan ...)."""
    t = {k: list(v) for k, v in tables.items()}
    pslist, psscan, cmdline = t.get("pslist", []), t.get("psscan", []), t.get("cmdline", [])
    if not cmdline and t.get("pstree"):
        cmdline = [{"PID": r.get("PID"), "Process": r.get("ImageFileName"), "Args": r.get("Cmd")} for r in t["pstree"]]
    out: list[Indicator] = []
    out += shell_children(pslist or t.get("pstree", []), psscan, cmdline)
    out += command_lines(cmdline, pslist or psscan)
    out += lsass_handles(t.get("handles", []), pslist or psscan)
    out += injected_code(t.get("malfind", []))
    out += network(t.get("netscan", []))
    out += hidden_processes(pslist, psscan)
    out += suspicious_services(t.get("svcscan", []))
    out += webshell_files(t.get("filescan", []))
    if meta_of is not None:
        out += vad_yara(t.get("vadyarascan", []), meta_of)
    return out
