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

rule TRIAGE_COMPILED_AppWeb_Request_Dangerous_API
{
    meta:
        id = "TRIAGE-YARA-071"
        title = "Compiled App_Web assembly reading the request and calling a web shell API"
        description = "A PE file named as an ASP.NET dynamic compilation (App_Web_) that references System.Web, reads the request (get_Request) and imports an API web shells use: the JScript evaluator, process start, reflection (GetMethod/Invoke/CreateInstance), decryption, sockets or a PowerShell runspace. Compiled stock pages read the request but do not call these."
        severity = "high"
        confidence = "medium"
        mitre = "T1505.003"
        cve = ""
        ed2102_steps = "8,10"
        author = "triage project"
        date = "2026-12-07"
        reference = "https://attack.mitre.org/techniques/T1505/003/"

    strings:
        $app_web = "App_Web_" ascii wide
        $system_web = "System.Web" ascii
        $get_request = "get_Request" ascii
        $api_eval = "JScriptEvaluate" ascii
        $api_process = "ProcessStartInfo" ascii
        $api_reflect = "GetMethod" ascii
        $api_instance = "CreateInstance" ascii
        $api_decrypt = "CreateDecryptor" ascii
        $api_tcp = "TcpClient" ascii
        $api_socket = "System.Net.Sockets" ascii
        $api_runspace = "RunspaceFactory" ascii
        $api_ps = "AddScript" ascii

    condition:
        uint16(0) == 0x5A4D and filesize < 8MB and $app_web and $system_web and $get_request and any of ($api_*)
}
