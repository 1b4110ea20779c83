/*
    triage project: web.config files that turn IIS into a script host for odd extensions, or carry script.
    Meta block as in webshells_aspx.yar.
*/

rule TRIAGE_CONFIG_Handler_Remap_To_Script
{
    meta:
        id = "TRIAGE-YARA-080"
        title = "web.config mapping a non-script extension to a script engine"
        description = "A configuration file whose handlers, httpHandlers or buildProviders hand .config files, images or text files to a script engine (asp.dll, the ASP.NET page or handler factory, the page build provider): the web.config web shell trick, and a way to hide a page behind an inert-looking name."
        severity = "high"
        confidence = "high"
        mitre = "T1505.003,T1505.004"
        cve = ""
        ed2102_steps = "8,10"
        author = "triage project"
        date = "2026-12-07"
        reference = "https://attack.mitre.org/techniques/T1505/003/"

    strings:
        $configuration = "<configuration" nocase
        $remap_path = /<add\s[^<>]{0,300}\b(path|extension)\s{0,4}=\s{0,4}["'](\*?\.)?(config|web\.config|jpe?g|png|gif|ico|bmp|txt|css|js|html?|xml|json|log)["'][^<>]{0,300}(asp\.dll|PageHandlerFactory|SimpleHandlerFactory|PageBuildProvider|WebHandlerBuildProvider)/ nocase
        $remap_engine = /<add\s[^<>]{0,300}(asp\.dll|PageHandlerFactory|SimpleHandlerFactory|PageBuildProvider|WebHandlerBuildProvider)[^<>]{0,300}\b(path|extension)\s{0,4}=\s{0,4}["'](\*?\.)?(config|web\.config|jpe?g|png|gif|ico|bmp|txt|css|js|html?|xml|json|log)["']/ nocase

    condition:
        filesize < 1MB and $configuration and any of ($remap_*)
}

rule TRIAGE_CONFIG_Carries_Server_Script
{
    meta:
        id = "TRIAGE-YARA-081"
        title = "web.config carrying server-side script"
        description = "A configuration file that also holds a server code block (<% ... %> calling Response, Request, Execute, eval or a process) or a runat=server script: configuration has no use for code, which runs when a handler remap lets the file be requested."
        severity = "high"
        confidence = "high"
        mitre = "T1505.003"
        cve = ""
        ed2102_steps = "8,10"
        author = "triage project"
        date = "2026-12-07"
        reference = "https://attack.mitre.org/techniques/T1505/003/"

    strings:
        $configuration = "<configuration" nocase
        $code_block = /<%[^%<>]{0,120}(Response\s{0,4}\.|Request\s{0,4}[.(\[]|Execute|eval\s{0,4}\(|CreateObject|Process\s{0,4}\.)/ nocase
        $code_script = /<script\b[^>]{0,200}runat\s{0,4}=\s{0,4}["']?server/ nocase

    condition:
        filesize < 1MB and $configuration and any of ($code_*)
}
