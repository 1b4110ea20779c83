/*
    Credential theft as it shows in memory: the command lines that dump lsass (procdump, comsvcs.dll
    MiniDump, rdrleakdiag) and mimikatz's own strings. Command lines live as UTF-16LE in process parameters,
    so every pattern is ascii and wide.
*/

rule TRIAGE_MEM_Lsass_Dump_CommandLine
{
    meta:
        id = "TRIAGE-YARA-MEM-010"
        title = "Command line that dumps lsass memory"
        description = "procdump -ma lsass, rundll32 comsvcs.dll MiniDump, rdrleakdiag /fullmemdmp or the CHIRP lsass string"
        severity = "critical"
        confidence = "high"
        mitre = "T1003.001"
        cve = ""
        ed2102_steps = "9,11"
        author = "triage project"
        date = "2026-11-25"
        scope = "memory"
        reference = "https://www.microsoft.com/security/blog/2021/03/02/hafnium-targeting-exchange-servers/"
    strings:
        $procdump = /procdump(64)?(\.exe)?["']?\s[^\r\n\x00]{0,120}[-\/]ma\s[^\r\n\x00]{0,60}lsass/ nocase ascii wide
        $comsvcs = /comsvcs(\.dll)?["']?\s{0,4},?\s{0,4}(MiniDump|#\+?24)\s/ nocase ascii wide
        $rdrleakdiag = /rdrleakdiag(\.exe)?\s[^\r\n\x00]{0,80}\/(fullmemdmp|memdmp)/ nocase ascii wide
        $chirp = "lsass.exe C:\\windows\\temp\\lsass" nocase ascii wide
        $out_minidump = /Out-Minidump[^\r\n\x00]{0,80}lsass/ nocase ascii wide
    condition:
        any of them
}

rule TRIAGE_MEM_Mimikatz_Strings
{
    meta:
        id = "TRIAGE-YARA-MEM-011"
        title = "mimikatz in memory"
        description = "Two or more of mimikatz's module commands, author strings or banner"
        severity = "critical"
        confidence = "medium"
        mitre = "T1003.001"
        cve = ""
        ed2102_steps = "9,11"
        author = "triage project"
        date = "2026-11-25"
        scope = "memory"
        reference = "https://attack.mitre.org/software/S0002/"
    strings:
        $cmd1 = "sekurlsa::logonpasswords" nocase ascii wide
        $cmd2 = "sekurlsa::minidump" nocase ascii wide
        $cmd3 = "lsadump::dcsync" nocase ascii wide
        $cmd4 = "lsadump::sam" nocase ascii wide
        $cmd5 = "privilege::debug" nocase ascii wide
        $author1 = "gentilkiwi" ascii wide
        $author2 = "Benjamin DELPY" ascii wide
        $banner = "mimikatz(commandline)" ascii wide
        $name = "mimikatz.exe" nocase ascii wide
    condition:
        2 of them
}
