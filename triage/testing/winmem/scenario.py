"""What the synthetic Exchange server was running when its memory was taken (the ED 21-02 intrusion): the
processes with their command lines and modules, the handles, private memory, TCP connections, open files and
services the plugins report, and the time of the capture. The web shell is the page the volume builder
(triage.testing.volume) plants on the same host, so memory and disk tell one story."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from triage.testing.volume import OAB_SHELL

BOOT = datetime(2021, 3, 2, 23, 40, 5, tzinfo=UTC)
CAPTURE = datetime(2021, 3, 3, 3, 15, 0, tzinfo=UTC)
SYSTEM32 = "C:\\Windows\\System32"


@dataclass(frozen=True)
class Process:
    """One process of the scenario."""

    pid: int
    ppid: int
    name: str  # the image file name (EPROCESS keeps its first 14 characters)
    path: str = ""  # full image path; empty for System
    cmdline: str = ""
    created: datetime = BOOT
    hidden: bool = False  # unlinked from the active process list: only the pool scan finds it
    dlls: tuple[str, ...] = ()  # full paths after the image itself
    session: int | None = 0  # None: no session (System)

    @property
    def device_path(self) -> str:
        """The image path as the process-creation audit record keeps it (NT device form)."""
        return "\\Device\\HarddiskVolume2" + self.path[2:] if self.path[1:2] == ":" else self.path


COMMON_DLLS = (f"{SYSTEM32}\\ntdll.dll", f"{SYSTEM32}\\kernel32.dll", f"{SYSTEM32}\\KERNELBASE.dll")
W3WP_DLLS = (
    *COMMON_DLLS,
    "C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\clr.dll",
    "C:\\Windows\\System32\\inetsrv\\iiscore.dll",
)
LSASS_PID = 652
W3WP_PID = 4012
CMD_PID = 5120
POWERSHELL_PID = 5144
PROCDUMP_PID = 5400
HIDDEN_PID = 6248
SERVER_IP = "10.0.0.5"
HAFNIUM_IP = "103.77.192.219"  # one of the AA21-062A addresses (signatures/indicators/actors.yaml)
WEBSHELL = "\\inetpub\\wwwroot\\aspnet_client\\system_web\\Dk2jQ8ab.aspx"
APP_WEB_DLL = (
    "\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\Temporary ASP.NET Files\\root\\5f1d3a8c\\2b7e9c41"
    "\\App_Web_k3x9f2ma.dll"
)


def _t(minutes: float) -> datetime:
    return BOOT + timedelta(minutes=minutes)


@dataclass(frozen=True)
class Handle:
    """A process handle one process holds to another."""

    holder: int
    target: int
    access: int


@dataclass(frozen=True)
class Region:
    """Private memory of a process (a ``VadS`` VAD) and what its first bytes hold."""

    pid: int
    start: int
    size: int
    protection: int  # the VAD's MM_* protection index (1 read-only, 4 read/write, 6 execute/read/write)
    content: bytes = b""


@dataclass(frozen=True)
class Connection:
    """A TCP connection (IPv4) as tcpip.sys keeps it, owned by a process."""

    pid: int
    local: str
    local_port: int
    remote: str
    remote_port: int
    state: str = "ESTABLISHED"
    created: datetime = BOOT


@dataclass(frozen=True)
class Service:
    """A running Win32 service as services.exe's service database records it."""

    name: str
    display: str
    binary: str
    pid: int
    shared: bool = False  # SERVICE_WIN32_SHARE_PROCESS (svchost) rather than its own process


MM_READONLY, MM_READWRITE, MM_EXECUTE_READWRITE = 1, 4, 6
# a PE image written into w3wp's memory outside the loader: DOS header, stub and PE signature
INJECTED_PE = (
    b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"
    + bytes(44)
    + b"\x80\x00\x00\x00"
    + b"\x0e\x1f\xba\x0e\x00\xb4\x09\xcd\x21\xb8\x01\x4c\xcd\x21This program cannot be run in DOS mode.\r\r\n$"
).ljust(0x80, b"\x00") + b"PE\x00\x00\x64\x86"


@dataclass(frozen=True)
class Scenario:
    """The processes (in creation order), their handles and private memory, and the host's facts."""

    processes: tuple[Process, ...]
    handles: tuple[Handle, ...] = ()
    regions: tuple[Region, ...] = ()
    connections: tuple[Connection, ...] = ()
    files: tuple[str, ...] = ()  # paths of open file objects, as the kernel names them (no drive letter)
    services: tuple[Service, ...] = ()
    hostname: str = "EXCH01"
    build: int = 17763  # Windows Server 2019
    capture: datetime = CAPTURE

    def by_pid(self, pid: int) -> Process:
        """The process with ``pid``."""
        return next(p for p in self.processes if p.pid == pid)


W3WP_CMD = (
    'c:\\windows\\system32\\inetsrv\\w3wp.exe -ap "MSExchangeOWAAppPool" -v "v4.0" -c '
    '"C:\\Program Files\\Microsoft\\Exchange Server\\V15\\bin\\GenericAppPoolConfigWithGCServerEnabledFalse.config" '
    '-a \\\\.\\pipe\\iisipm5b8c6a33-1d0e-4b5e-9a53-2b0f1c3d4e5f -h "C:\\inetpub\\temp\\apppools\\MSExchangeOWAAppPool'
    '\\MSExchangeOWAAppPool.config" -w "" -m 0'
)
CMD_CMD = 'cmd.exe /c "cd /d c:\\root&procdump64.exe -accepteula -ma lsass.exe c:\\root\\lsass.dmp"'
POWERSHELL_CMD = (
    "powershell.exe -nop -c Add-PSSnapin Microsoft.Exchange.Management.PowerShell.SnapIn; "
    "New-MailboxExportRequest -Mailbox administrator -FilePath \\\\EXCH01\\c$\\root\\admin.pst"
)
PROCDUMP_CMD = "c:\\root\\procdump64.exe -accepteula -ma lsass.exe c:\\root\\lsass.dmp"

DEFAULT = Scenario(
    processes=(
        Process(4, 0, "System", session=None),
        Process(
            356,
            4,
            "smss.exe",
            f"{SYSTEM32}\\smss.exe",
            "\\SystemRoot\\System32\\smss.exe",
            _t(0.1),
            dlls=(f"{SYSTEM32}\\ntdll.dll",),
            session=None,
        ),
        Process(
            640,
            356,
            "services.exe",
            f"{SYSTEM32}\\services.exe",
            f"{SYSTEM32}\\services.exe",
            _t(0.4),
            dlls=COMMON_DLLS,
        ),
        Process(
            LSASS_PID,
            356,
            "lsass.exe",
            f"{SYSTEM32}\\lsass.exe",
            f"{SYSTEM32}\\lsass.exe",
            _t(0.4),
            dlls=(*COMMON_DLLS, f"{SYSTEM32}\\lsasrv.dll", f"{SYSTEM32}\\msv1_0.dll"),
        ),
        Process(W3WP_PID, 640, "w3wp.exe", f"{SYSTEM32}\\inetsrv\\w3wp.exe", W3WP_CMD, _t(5), dlls=W3WP_DLLS),
        Process(CMD_PID, W3WP_PID, "cmd.exe", f"{SYSTEM32}\\cmd.exe", CMD_CMD, _t(190), dlls=COMMON_DLLS),
        Process(
            POWERSHELL_PID,
            W3WP_PID,
            "powershell.exe",
            f"{SYSTEM32}\\WindowsPowerShell\\v1.0\\powershell.exe",
            POWERSHELL_CMD,
            _t(191),
            dlls=COMMON_DLLS,
        ),
        Process(
            PROCDUMP_PID,
            CMD_PID,
            "procdump64.exe",
            "C:\\root\\procdump64.exe",
            PROCDUMP_CMD,
            _t(192),
            dlls=(*COMMON_DLLS, f"{SYSTEM32}\\dbghelp.dll"),
        ),
        Process(
            HIDDEN_PID,
            W3WP_PID,
            "rundll32.exe",
            f"{SYSTEM32}\\rundll32.exe",
            f"{SYSTEM32}\\rundll32.exe",
            _t(193),
            hidden=True,
            dlls=COMMON_DLLS,
        ),
    ),
    handles=(
        Handle(640, LSASS_PID, 0x1478),  # services.exe: expected
        Handle(PROCDUMP_PID, LSASS_PID, 0x1FFFFF),  # PROCESS_ALL_ACCESS, for the full dump
    ),
    regions=(
        # the web shell page the worker compiled and ran, as a .NET string on its managed heap
        Region(W3WP_PID, 0x000001D000000000, 0x4000, MM_READWRITE, OAB_SHELL.encode("utf-16-le")),
        Region(W3WP_PID, 0x000001E000010000, 0x2000, MM_EXECUTE_READWRITE, INJECTED_PE),
    ),
    connections=(
        Connection(W3WP_PID, SERVER_IP, 443, HAFNIUM_IP, 49812, created=_t(189)),  # the exploit request
        Connection(W3WP_PID, SERVER_IP, 443, "10.0.0.20", 50233, created=_t(150)),  # a mail client
    ),
    files=(
        WEBSHELL,
        APP_WEB_DLL,
        "\\Windows\\System32\\inetsrv\\config\\applicationHost.config",
    ),
    services=(
        Service("W3SVC", "World Wide Web Publishing Service", f"{SYSTEM32}\\svchost.exe -k iissvcs", 1884, shared=True),
        Service("WAS", "Windows Process Activation Service", f"{SYSTEM32}\\svchost.exe -k iissvcs", 1884, shared=True),
        Service(
            "MSExchangeServiceHost",
            "Microsoft Exchange Service Host",
            '"C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Bin\\Microsoft.Exchange.ServiceHost.exe"',
            2316,
        ),
    ),
)
