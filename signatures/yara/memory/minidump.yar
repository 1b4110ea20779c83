/*
    A minidump file header (MINIDUMP_HEADER: 'MDMP', version 0xA793, stream count, stream directory at
    0x20). In a memory image this is a dump file in the file cache or being written; the memory analyzer
    parses what follows (meta carve = "minidump") to tell an lsass dump from any other process's.
*/

rule TRIAGE_MEM_Minidump_Header
{
    meta:
        id = "TRIAGE-YARA-MEM-012"
        title = "Minidump file header"
        description = "A user-mode minidump header; the analyzer parses its module list to name the dumped process"
        severity = "low"
        confidence = "medium"
        mitre = "T1003.001"
        cve = ""
        ed2102_steps = "9,11"
        author = "triage project"
        date = "2026-11-25"
        scope = "memory"
        carve = "minidump"
        reference = "https://learn.microsoft.com/en-us/windows/win32/api/minidumpapiset/ns-minidumpapiset-minidump_header"
    strings:
        $mdmp = { 4D 44 4D 50 93 A7 ?? ?? ?? 00 00 00 20 00 00 00 }
    condition:
        $mdmp
}
