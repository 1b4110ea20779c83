/*
    Web shell code as it sits in memory: the page source w3wp.exe compiled, the request it served, or the
    Exchange configuration that carried it (CVE-2021-27065 wrote a China Chopper one-liner into the OAB
    virtual directory's ExternalUrl, then exported that configuration as an .aspx file).
    Patterns are ascii and wide (UTF-16LE): .NET keeps strings as UTF-16 in memory.
    Meta block as in ../webshells_aspx.yar (ids TRIAGE-YARA-MEM-nnn), plus scope = "memory" (and carve = "minidump" where the analyzer parses what follows).
*/

rule TRIAGE_MEM_WebShell_Chopper_Eval
{
    meta:
        id = "TRIAGE-YARA-MEM-001"
        title = "China Chopper style eval of a request field"
        description = "Server-side JScript that evaluates a request parameter with the 'unsafe' flag, the HAFNIUM one-liner"
        severity = "critical"
        confidence = "high"
        mitre = "T1505.003"
        cve = "CVE-2021-27065"
        ed2102_steps = "8,11"
        author = "triage project"
        date = "2026-11-25"
        scope = "memory"
        reference = "https://www.cisa.gov/news-events/cybersecurity-advisories/aa21-062a"
    strings:
        $eval_unsafe = /eval\s{0,4}\(\s{0,4}Request(\.Item)?\s{0,4}\[\s{0,4}["'][^"'\r\n]{1,64}["']\s{0,4}\]\s{0,4},\s{0,4}["']unsafe["']/ nocase ascii wide
        $eval_item = /<%@\s{0,4}Page\s{1,4}Language\s{0,4}=\s{0,4}["']?Jscript["']?\s{0,4}%>\s{0,4}<%\s{0,4}eval\s{0,4}\(\s{0,4}Request/ nocase ascii wide
    condition:
        any of them
}

rule TRIAGE_MEM_WebShell_Writer_Form
{
    meta:
        id = "TRIAGE-YARA-MEM-002"
        title = "Web shell file writer fed from a request form field"
        description = "C# page code writing a file whose name or body comes from Request.Form (CISA MAR-10328929 style)"
        severity = "high"
        confidence = "medium"
        mitre = "T1505.003"
        cve = "CVE-2021-27065"
        ed2102_steps = "8,11"
        author = "triage project"
        date = "2026-11-25"
        scope = "memory"
        reference = "https://www.cisa.gov/news-events/analysis-reports/ar21-072d"
    strings:
        $writer = /IO\.StreamWriter\s{0,4}\(\s{0,4}Request\.Form\s{0,4}\[/ nocase ascii wide
        $file_write = /File\.WriteAllBytes\s{0,4}\(\s{0,4}Request\.(Form|QueryString)\s{0,4}\[/ nocase ascii wide
    condition:
        any of them
}

rule TRIAGE_MEM_OAB_ExternalUrl_Script
{
    meta:
        id = "TRIAGE-YARA-MEM-003"
        title = "OAB virtual directory ExternalUrl carrying a script (CVE-2021-27065 payload)"
        description = "Set-OabVirtualDirectory -ExternalUrl 'http://f/<script ... runat=server>' or its ECP log and exported-config forms"
        severity = "critical"
        confidence = "high"
        mitre = "T1190,T1505.003"
        cve = "CVE-2021-27065"
        ed2102_steps = "8,11"
        author = "triage project"
        date = "2026-11-25"
        scope = "memory"
        reference = "https://www.cisa.gov/news-events/cybersecurity-advisories/aa21-062a"
    strings:
        $url_script = /https?:\/\/[a-z0-9.]{1,20}\/<script[^>]{0,80}runat\s{0,4}=\s{0,4}["']{0,2}server/ nocase ascii wide
        $set_vdir = /Set-OabVirtualDirectory[^\r\n\x00]{0,200}ExternalUrl[^\r\n\x00]{0,40}<script/ nocase ascii wide
        $ecp_log = "S:CMD=Set-OabVirtualDirectory.ExternalUrl='" nocase ascii wide
    condition:
        any of them
}

rule TRIAGE_MEM_WebShell_Tunnel_reGeorg
{
    meta:
        id = "TRIAGE-YARA-MEM-004"
        title = "reGeorg-style HTTP tunnel page"
        description = "The reGeorg HTTP tunnel page: its status line, or its X-CMD, X-TARGET and X-STATUS header names together"
        severity = "high"
        confidence = "medium"
        mitre = "T1505.003,T1090"
        cve = ""
        ed2102_steps = "8,11"
        author = "triage project"
        date = "2026-11-25"
        scope = "memory"
        reference = "https://github.com/sensepost/reGeorg"
    strings:
        $status = "Georg says, 'All seems fine'" ascii wide
        $hdr_cmd = "X-CMD" ascii wide
        $hdr_target = "X-TARGET" ascii wide
        $hdr_status = "X-STATUS" ascii wide
    condition:
        $status or all of ($hdr_*)
}
