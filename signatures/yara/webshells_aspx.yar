/*
    triage project: server-side web shells seen in ProxyLogon (ED 21-02) intrusions.

    Every rule carries the same meta block (id, title, description, severity, confidence, mitre, cve,
    ed2102_steps, author, date, reference); tests/yara checks it and runs each rule over positive and
    negative samples in both YARA engines. Severity uses the finding scale: info|low|medium|high|critical;
    mitre, cve and ed2102_steps are comma-separated lists (cve may be empty).
    The file analyzer (analyzers/yara) loads the .yar files of this folder; signatures/yara/memory/ holds
    the memory analyzer's own indicators.
*/

rule TRIAGE_WEBSHELL_Chopper_JScript_Eval
{
    meta:
        id = "TRIAGE-YARA-001"
        title = "China Chopper style JScript eval of request input"
        description = "A server page passes a request value to the JScript eval with the 'unsafe' flag: the one-line China Chopper form that HAFNIUM wrote into OAB exports and stand-alone .aspx pages."
        severity = "critical"
        confidence = "high"
        mitre = "T1505.003"
        cve = "CVE-2021-27065,CVE-2021-26858"
        ed2102_steps = "8,10"
        author = "triage project"
        date = "2026-11-25"
        reference = "https://www.cisa.gov/news-events/cybersecurity-advisories/aa21-062a"

    strings:
        $eval_request = /eval\s{0,8}\(\s{0,8}(this\.)?Request\s{0,4}(\.\s{0,4}(Item|Form|QueryString|Params|Headers|Cookies)\s{0,4})?[\[\(]/ nocase
        $unsafe_flag = /["']unsafe["']/ nocase

    condition:
        filesize < 1MB and $eval_request and $unsafe_flag
}

rule TRIAGE_WEBSHELL_CSharp_Request_OneLiner
{
    meta:
        id = "TRIAGE-YARA-002"
        title = "C# one-line web shell writing or loading request data"
        description = "A small C# page saves request data to a path the request names, or loads request bytes as an assembly: the C# relatives of the China Chopper one-liner used to stage second-stage shells."
        severity = "high"
        confidence = "medium"
        mitre = "T1505.003"
        cve = "CVE-2021-27065,CVE-2021-26858"
        ed2102_steps = "8,10"
        author = "triage project"
        date = "2026-11-25"
        reference = "https://www.microsoft.com/security/blog/2021/03/02/hafnium-targeting-exchange-servers/"

    strings:
        $tag = "<%"
        $writer = /StreamWriter\s{0,4}\(\s{0,4}(Server\.MapPath\s{0,4}\(\s{0,4})?Request\s{0,4}(\.\s{0,4}(Form|QueryString|Params|Item))?\s{0,4}\[/ nocase
        $save_as = /\.SaveAs\s{0,4}\([^;]{0,160}Request\s{0,4}(\.\s{0,4}(Form|QueryString|Params|Item))?\s{0,4}\[/ nocase
        $write_all = /File\.WriteAll(Bytes|Text)\s{0,4}\([^;]{0,160}Request\s{0,4}(\.\s{0,4}(Form|QueryString|Params|Item))?\s{0,4}\[/ nocase
        $load_request = /Assembly\s{0,4}\.\s{0,4}Load\s{0,4}\(\s{0,4}Request\s{0,4}\.\s{0,4}BinaryRead/ nocase

    condition:
        filesize < 16KB and $tag and any of ($writer, $save_as, $write_all, $load_request)
}

rule TRIAGE_WEBSHELL_ASP_Execute_Request
{
    meta:
        id = "TRIAGE-YARA-003"
        title = "Classic ASP page executing request input"
        description = "A classic ASP (VBScript) page runs request input through eval/execute, directly or behind unescape(): the ASP form of the China Chopper server side."
        severity = "critical"
        confidence = "high"
        mitre = "T1505.003"
        cve = ""
        ed2102_steps = "8,10"
        author = "triage project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/software/S0020/"

    strings:
        $tag = "<%"
        $direct_eval = /eval[\s(]{1,8}request\s{0,4}(\.\s{0,4}(form|querystring|item))?\s{0,4}\(/ nocase
        $direct_execute = /execute(global)?[\s(]{1,8}request\s{0,4}(\.\s{0,4}(form|querystring|item))?\s{0,4}\(/ nocase
        $unescaped = /\b(eval|execute|executeglobal)\s{0,4}\(\s{0,4}unescape\s{0,4}\(/ nocase
        $encoded = /eval(%20|\+)request(%28|\()/ nocase

    condition:
        filesize < 512KB and $tag and any of ($direct_*, $unescaped, $encoded)
}

rule TRIAGE_WEBSHELL_OAB_Export_Script
{
    meta:
        id = "TRIAGE-YARA-010"
        title = "Exported OAB virtual directory settings carrying a server script (CVE-2021-27065)"
        description = "The text of an OAB virtual directory export whose ExternalUrl or InternalUrl holds a server-side script block. CVE-2021-27065 abused Set-OabVirtualDirectory and Reset-OABVirtualDirectory to write exactly this file as an .aspx page."
        severity = "critical"
        confidence = "high"
        mitre = "T1505.003,T1190"
        cve = "CVE-2021-27065"
        ed2102_steps = "8,10"
        author = "triage project"
        date = "2026-11-25"
        reference = "https://www.volexity.com/blog/2021/03/02/active-exploitation-of-microsoft-exchange-zero-day-vulnerabilities/"

    strings:
        $url_script = /(External|Internal)Url\s{0,40}:\s{0,10}[^\r\n]{0,200}<script[^>\r\n]{0,120}runat\s{0,4}=\s{0,4}["']?server/ nocase
        $url_fake_host = /(External|Internal)Url\s{0,40}:\s{0,10}https?:\/\/[a-z0-9.\-]{1,40}\/<script/ nocase
        $oab_1 = "OfflineAddressBook" nocase
        $oab_2 = "PollInterval" nocase
        $oab_3 = "InternalAuthenticationMethods" nocase
        $oab_4 = "ExtendedProtectionTokenChecking" nocase
        $oab_5 = "OAB (Default Web Site)" nocase
        $oab_6 = "RequireSSL" nocase

    condition:
        filesize < 256KB and ($url_script or $url_fake_host) and any of ($oab_*)
}

rule TRIAGE_WEBSHELL_Socket_Tunnel
{
    meta:
        id = "TRIAGE-YARA-020"
        title = "Server page tunnelling TCP sockets over HTTP (reGeorg/Tunna style)"
        description = "A server page opens TCP sockets to a target it reads from the request, keeps them across requests and relays bytes between the socket and the HTTP request/response: the design of reGeorg, Neo-reGeorg and Tunna pivots."
        severity = "critical"
        confidence = "high"
        mitre = "T1505.003,T1090.001,T1572"
        cve = ""
        ed2102_steps = "8,10"
        author = "triage project"
        date = "2026-11-25"
        reference = "https://www.cisa.gov/news-events/cybersecurity-advisories/aa21-062a"

    strings:
        $page_directive = /<%\s{0,8}@\s{0,8}(page|webhandler|webservice|control)\b/ nocase
        $page_server = /runat\s{0,4}=\s{0,4}["']?server/ nocase
        $new_socket = /new\s+(System\.Net\.Sockets\.)?(Socket|TcpClient)\s{0,4}\(/ nocase
        $in_stream = "Request.InputStream" nocase
        $in_binary = "Request.BinaryRead" nocase
        $in_header = /X-(CMD|TARGET|PORT|STATUS|ERROR)["']/
        $keep_session = /Session\s{0,4}(\[|\.Add\s{0,4}\()/
        $out_binary = "Response.BinaryWrite" nocase
        $out_stream = "Response.OutputStream.Write" nocase

    condition:
        filesize < 512KB and ($page_directive or $page_server) and $new_socket
        and any of ($in_*) and any of ($keep_session, $out_binary, $out_stream)
}

rule TRIAGE_WEBSHELL_Process_From_Page
{
    meta:
        id = "TRIAGE-YARA-021"
        title = "Server page starting processes and capturing their output"
        description = "An ASP.NET page builds a process (ProcessStartInfo or Process.Start) and reads its standard output or runs cmd.exe/powershell.exe: the command console of AspxSpy-style and cmd.aspx web shells, but also of an admin page running fixed commands. Medium on its own; the webshell_heuristics analyzer raises it when request input reaches the process."
        severity = "medium"
        confidence = "medium"
        mitre = "T1505.003,T1059.003"
        cve = ""
        ed2102_steps = "8,10"
        author = "triage project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1505/003/"

    strings:
        $page_directive = /<%\s{0,8}@\s{0,8}(page|webhandler|webservice|control)\b/ nocase
        $page_server = /runat\s{0,4}=\s{0,4}["']?server/ nocase
        $start_info = "ProcessStartInfo"
        $start_call = /Process\s{0,4}\.\s{0,4}Start\s{0,4}\(/
        $start_object = /new\s+(System\.Diagnostics\.)?Process\s{0,4}\(\s{0,4}\)/ nocase
        $redirect = "RedirectStandardOutput" nocase
        $shell_cmd = "cmd.exe" nocase
        $shell_ps = "powershell.exe" nocase

    condition:
        filesize < 2MB and ($page_directive or $page_server) and any of ($start_*)
        and ($redirect or $shell_cmd or $shell_ps)
}

rule TRIAGE_WEBSHELL_AspxSpy_Markers
{
    meta:
        id = "TRIAGE-YARA-022"
        title = "AspxSpy web shell markers"
        description = "Control names and the cookie/product name of the AspxSpy family (file manager, registry reader, port scanner and command console in one page), a shell seen after ProxyLogon exploitation."
        severity = "critical"
        confidence = "high"
        mitre = "T1505.003"
        cve = ""
        ed2102_steps = "8,10"
        author = "triage project"
        date = "2026-11-25"
        reference = "https://www.microsoft.com/security/blog/2021/03/25/analyzing-attacks-taking-advantage-of-the-exchange-server-vulnerabilities/"

    strings:
        $name = "ASPXSpy" nocase
        $ctl_1 = "Bin_Listdir"
        $ctl_2 = "Bin_Regread"
        $ctl_3 = "Bin_Createfile"
        $ctl_4 = "Bin_Editfile"
        $ctl_5 = "Bin_CFile"
        $ctl_6 = "Bin_PostBack"
        $ctl_7 = "Bin_Button"

    condition:
        filesize < 2MB and (($name and 2 of ($ctl_*)) or 4 of ($ctl_*))
}

rule TRIAGE_WEBSHELL_Encrypted_Assembly_Loader
{
    meta:
        id = "TRIAGE-YARA-030"
        title = "Page decrypting the request body and loading it as an assembly (Behinder/Godzilla style)"
        description = "A server page reads the request body or a request field, decrypts it (AES/Rijndael or a XOR loop) and passes the bytes to Assembly.Load: the in-memory payload loader of Behinder (Bingxie) and Godzilla, which leaves no command text on disk."
        severity = "critical"
        confidence = "high"
        mitre = "T1505.003,T1620,T1027"
        cve = ""
        ed2102_steps = "8,10"
        author = "triage project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1620/"

    strings:
        $load = /Assembly\s{0,4}\.\s{0,4}Load\s{0,4}\(/
        $in_binary = "Request.BinaryRead" nocase
        $in_stream = "Request.InputStream" nocase
        $in_base64 = /FromBase64String\s{0,4}\(\s{0,4}(Context\.|HttpContext\.Current\.)?Request/ nocase
        $in_field = /Request\s{0,4}(\.\s{0,4}(Form|Item|Params))?\s{0,4}\[/
        $dec_decryptor = "CreateDecryptor"
        $dec_final = "TransformFinalBlock"
        $dec_rijndael = "RijndaelManaged"
        $dec_aes = /Aes(Managed|CryptoServiceProvider|\.Create)/
        // a byte-wise XOR loop: C# needs a (byte) cast around x[i] ^ k[j], or the compound form x[i] ^= k[j]
        $dec_xor_cast = /\(byte\)\s{0,4}\(\s{0,4}\w{1,16}\s{0,4}\[[^\]\r\n]{1,24}\]\s{0,4}\^/
        $dec_xor_assign = /\^=[ \t]{0,4}\w{1,16}[ \t]{0,4}\[/

    condition:
        filesize < 512KB and $load and any of ($in_*) and any of ($dec_*)
}

rule TRIAGE_WEBSHELL_Eval_Request_Any
{
    meta:
        id = "TRIAGE-YARA-004"
        title = "Server script evaluating request input"
        description = "Server code hands request input straight to eval, Execute or ExecuteGlobal, whatever the spacing, case or request collection (Request.Item/Form/QueryString/Params, Request(...), Request[...]): the China Chopper and AntSword server side in JScript, VBScript and classic ASP, with or without the 'unsafe' flag."
        severity = "critical"
        confidence = "high"
        mitre = "T1505.003,T1059"
        cve = ""
        ed2102_steps = "8,10"
        author = "triage project"
        date = "2026-12-07"
        reference = "https://attack.mitre.org/techniques/T1505/003/"

    strings:
        $server_block = "<%"
        $server_script = /runat\s{0,4}=\s{0,4}["']?server/ nocase
        $eval_request = /(^|[^.\w])(eval|execute|executeglobal)[\s(]{1,8}(this\s{0,4}\.\s{0,4})?request\s{0,4}(\.\s{0,4}(item|form|querystring|params|cookies|headers)\s{0,4})?[\[(]/ nocase

    condition:
        filesize < 2MB and any of ($server_*) and $eval_request
}

rule TRIAGE_WEBSHELL_JScriptEvaluate_Request
{
    meta:
        id = "TRIAGE-YARA-005"
        title = "C# or VB page calling the JScript evaluator on request input"
        description = "A C# or VB.NET page creates a JScript engine (VsaEngine) and calls Microsoft.JScript.Eval.JScriptEvaluate while reading request input: the C# and VB forms of China Chopper, which evaluate whatever code the client posts."
        severity = "critical"
        confidence = "high"
        mitre = "T1505.003,T1059"
        cve = ""
        ed2102_steps = "8,10"
        author = "triage project"
        date = "2026-12-07"
        reference = "https://attack.mitre.org/software/S0020/"

    strings:
        $evaluate = /JScriptEvaluate\s{0,4}\(/ nocase
        $engine = "VsaEngine" nocase
        $request = /Request\s{0,4}(\.\s{0,4}(Item|Form|QueryString|Params|Headers|Cookies)\s{0,4})?[\[(]/ nocase
        $page = /<%|runat\s{0,4}=\s{0,4}["']?server/ nocase

    condition:
        filesize < 2MB and $page and $evaluate and $engine and $request
}

rule TRIAGE_WEBSHELL_Reflective_Assembly_Load
{
    meta:
        id = "TRIAGE-YARA-031"
        title = "Page loading request bytes as an assembly through reflection"
        description = "A server page looks up Assembly.Load by name through reflection (GetMethod(\"Load\")) and invokes it while reading the request body or a request field: the Behinder and Godzilla loader written so that the words Assembly.Load never appear together."
        severity = "critical"
        confidence = "high"
        mitre = "T1505.003,T1620"
        cve = ""
        ed2102_steps = "8,10"
        author = "triage project"
        date = "2026-12-07"
        reference = "https://attack.mitre.org/techniques/T1620/"

    strings:
        $get_load = /GetMethod\s{0,4}\(\s{0,4}["']Load["']/ nocase
        $invoke = /\.\s{0,4}Invoke\s{0,4}\(/
        $in_binary = "Request.BinaryRead" nocase
        $in_stream = "Request.InputStream" nocase
        $in_field = /Request\s{0,4}(\.\s{0,4}(Form|Item|Params|Cookies|Headers))?\s{0,4}\[/ nocase
        $page = /<%|runat\s{0,4}=\s{0,4}["']?server/ nocase

    condition:
        filesize < 1MB and $page and $get_load and $invoke and any of ($in_*)
}

rule TRIAGE_WEBSHELL_PowerShell_Runspace_Page
{
    meta:
        id = "TRIAGE-YARA-023"
        title = "Server page running PowerShell in a runspace"
        description = "A server page creates a PowerShell runspace or PowerShell object and adds a script to it: the Antak web shell design, which gives a PowerShell console through the browser. Exchange and IIS pages do not host PowerShell."
        severity = "high"
        confidence = "medium"
        mitre = "T1505.003,T1059.001"
        cve = ""
        ed2102_steps = "8,10"
        author = "triage project"
        date = "2026-12-07"
        reference = "https://attack.mitre.org/techniques/T1505/003/"

    strings:
        $page = /<%\s{0,8}@\s{0,8}(page|webhandler|webservice)\b|runat\s{0,4}=\s{0,4}["']?server/ nocase
        $host_factory = "RunspaceFactory" nocase
        $host_create = /PowerShell\s{0,4}\.\s{0,4}Create\s{0,4}\(/ nocase
        $run_script = /\.\s{0,4}AddScript\s{0,4}\(/ nocase
        $run_pipeline = /\.\s{0,4}CreatePipeline\s{0,4}\(/ nocase

    condition:
        filesize < 2MB and $page and any of ($host_*) and any of ($run_*)
}
