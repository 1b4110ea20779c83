/*
    triage project: web shells compiled by ASP.NET into Temporary ASP.NET Files (App_Web_*.dll).
    Meta block as in webshells_aspx.yar.
*/

rule TRIAGE_COMPILED_AppWeb_Webshell
{
    meta:
        id = "TRIAGE-YARA-070"
        title = "Compiled App_Web assembly of a web shell page"
        description = "A PE file named as an ASP.NET dynamic compilation (App_Web_ module name) that calls the JScript evaluator with the 'unsafe' flag, starts processes with redirected output, or decrypts request bytes: the compiled form of a web shell page, kept in Temporary ASP.NET Files even after the page is deleted."
        severity = "critical"
        confidence = "high"
        mitre = "T1505.003"
        cve = "CVE-2021-27065,CVE-2021-26858"
        ed2102_steps = "8,10"
        author = "triage project"
        date = "2026-11-25"
        reference = "https://www.cisa.gov/news-events/cybersecurity-advisories/aa21-062a"

    strings:
        $app_web = "App_Web_" ascii wide
        $js_evaluate = "JScriptEvaluate" ascii
        $js_unsafe = "unsafe" wide
        $proc_info = "ProcessStartInfo" ascii
        $proc_redirect = "set_RedirectStandardOutput" ascii
        $proc_cmd = "cmd.exe" wide nocase
        $load_read = "BinaryRead" ascii
        $load_decrypt = "CreateDecryptor" ascii
        $load_assembly = "System.Reflection.Assembly" ascii

    condition:
        uint16(0) == 0x5A4D and filesize < 8MB and $app_web and (
            ($js_evaluate and $js_unsafe)
            or ($proc_info and ($proc_redirect or $proc_cmd))
            or ($load_read and $load_decrypt and $load_assembly)
        )
}
