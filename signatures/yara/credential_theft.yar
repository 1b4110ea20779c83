/*
    triage project: credential theft artefacts left on ProxyLogon-era Exchange servers.
    Meta block as in webshells_aspx.yar.
*/

rule TRIAGE_CRED_Lsass_Minidump
{
    meta:
        id = "TRIAGE-YARA-040"
        title = "Minidump of the lsass process"
        description = "A file with the minidump header (MDMP) whose module list names lsasrv.dll, or lsass.exe together with an authentication package (msv1_0, wdigest, kerberos, samsrv): a memory dump of lsass, as procdump -ma lsass.exe or comsvcs.dll MiniDump write it. It holds credentials to reuse."
        severity = "critical"
        confidence = "high"
        mitre = "T1003.001"
        cve = ""
        ed2102_steps = "9"
        author = "triage project"
        date = "2026-11-25"
        reference = "https://www.microsoft.com/security/blog/2021/03/02/hafnium-targeting-exchange-servers/"

    strings:
        $lsasrv = "lsasrv.dll" wide nocase
        $lsass = "lsass.exe" wide nocase
        $pkg_msv = "msv1_0.dll" wide nocase
        $pkg_wdigest = "wdigest.dll" wide nocase
        $pkg_kerberos = "kerberos.dll" wide nocase
        $pkg_samsrv = "samsrv.dll" wide nocase

    condition:
        uint32(0) == 0x504D444D and ($lsasrv or ($lsass and any of ($pkg_*)))
}

rule TRIAGE_CRED_Mimikatz_Strings
{
    meta:
        id = "TRIAGE-YARA-060"
        title = "Mimikatz binary, script or output"
        description = "Mimikatz module commands (sekurlsa::, lsadump::, kerberos::golden ...) next to the tool's own names, or several module commands together: the tool, a PowerShell port of it, or a log of its use."
        severity = "critical"
        confidence = "high"
        mitre = "T1003.001,T1003.002,T1003.006"
        cve = ""
        ed2102_steps = "9,10"
        author = "triage project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/software/S0002/"

    strings:
        $cmd_sekurlsa = "sekurlsa::" ascii wide nocase
        $cmd_lsadump = "lsadump::" ascii wide nocase
        $cmd_golden = "kerberos::golden" ascii wide nocase
        $cmd_ptt = "kerberos::ptt" ascii wide nocase
        $cmd_debug = "privilege::debug" ascii wide nocase
        $cmd_elevate = "token::elevate" ascii wide nocase
        $cmd_dpapi = "dpapi::" ascii wide nocase
        $cmd_memssp = "misc::memssp" ascii wide nocase
        $id_name = "mimikatz" ascii wide nocase
        $id_author = "gentilkiwi" ascii wide nocase
        $id_delpy = "Benjamin DELPY" ascii wide nocase
        $id_lib = "mimilib" ascii wide nocase
        $id_drv = "mimidrv" ascii wide nocase

    condition:
        (any of ($id_*) and any of ($cmd_*)) or 3 of ($cmd_*)
}
