"""What a server page does: request input reaching code evaluation, assembly loading, processes, sockets and
file writes, directly or through variables, function parameters and object properties.

This is a lexical taint analysis, not a parser: it works the same on C#, VB.NET, JScript and VBScript, on
fragments and on broken code, and is bounded (every regex quantifier is bounded, the fixpoint has a round
limit, the code is capped). Before it runs, the code is normalised so that obfuscation does not hide the words
(:func:`normalise`). The sources, sinks and finding classes are data: ``signatures/webshell/behaviour.yaml``.

Also here: ``web.config`` checks (handlers or build providers that hand odd extensions to a script engine,
server script carried in the config itself) and the reading of ``.compiled`` records of Temporary ASP.NET
Files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from triage.registry import signature_path

RULE_FILE = "webshell/behaviour.yaml"
MAX_CODE = 512 * 1024  # characters of code analysed; larger pages are cut (and the caller warns)
MAX_ARGS = 600  # characters of an argument list or statement looked at
MAX_ROUNDS = 8  # taint propagation rounds
MAX_NAMES = 400  # tainted names kept (a generated file could have thousands of assignments)
# names that must never carry taint: everything would hang off them
NOT_TAINTABLE = frozenset(
    {"this", "me", "page", "response", "server", "context", "httpcontext", "current", "request", "e", "sender"}
)


@dataclass(frozen=True)
class Sink:
    """One sink pattern from the rule file."""

    cls: str
    pattern: re.Pattern[str]
    args: str = "call"  # call | statement | rhs
    receiver: bool = False
    first_arg: bool = False
    requires: re.Pattern[str] | None = None


@dataclass(frozen=True)
class FlowClass:
    """A finding class: one rule id per kind of sink."""

    name: str
    id: str
    title: str
    severity: str
    mitre: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class Rules:
    """The compiled behaviour rules."""

    named: re.Pattern[str]
    upload: re.Pattern[str]
    control_declaration: re.Pattern[str]
    control_value: str
    sinks: tuple[Sink, ...]
    classes: dict[str, FlowClass]


def load_rules(path: Path | None = None) -> Rules:
    """Load and check the behaviour rule file; a bad entry is a ValueError naming it."""
    path = path or signature_path(RULE_FILE)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    src = doc["sources"]
    classes = {}
    for name, c in doc["classes"].items():
        if c["severity"] not in ("info", "low", "medium", "high", "critical"):
            raise ValueError(f"{path}: class {name}: bad severity {c['severity']!r}")
        classes[name] = FlowClass(
            name, c["id"], c["title"], c["severity"], tuple(c["mitre"]), " ".join(c["description"].split())
        )
    sinks = []
    for i, s in enumerate(doc["sinks"]):
        if s["class"] not in classes:
            raise ValueError(f"{path}: sink {i}: unknown class {s['class']!r}")
        if s.get("args", "call") not in ("call", "statement", "rhs"):
            raise ValueError(f"{path}: sink {i}: unknown args mode {s['args']!r}")
        sinks.append(
            Sink(
                cls=s["class"],
                pattern=re.compile(s["pattern"], re.I),
                args=s.get("args", "call"),
                receiver=bool(s.get("receiver")),
                first_arg=bool(s.get("first_arg")),
                requires=re.compile(s["requires"], re.I) if s.get("requires") else None,
            )
        )
    return Rules(
        named=re.compile(src["named"].replace(" ", ""), re.I),
        upload=re.compile(src["upload"].strip(), re.I),
        control_declaration=re.compile(src["control_declaration"].strip(), re.I),
        control_value=src["control_value"].strip(),
        sinks=tuple(sinks),
        classes=classes,
    )


@lru_cache(maxsize=1)
def default_rules() -> Rules:
    """The rule file shipped with the project, loaded once per process."""
    return load_rules()


# --- normalisation -----------------------------------------------------------------------------------------

_BLOCK_COMMENT = re.compile(
    r"/\*.{0,20000}?\*/|<%--.{0,20000}?--%>|<!--(?=[^>]{0,20}#?\s*(?:include|--)).{0,2000}?-->", re.S
)
_LINE_COMMENT = re.compile(r"(?m)(^|[\s;{}])//[^\n]{0,2000}")
_VB_COMMENT = re.compile(r"(?im)^[ \t]{0,40}(?:'|rem[ \t])[^\n]{0,2000}")
_UNICODE_ESC = re.compile(r"\\u\{?([0-9a-fA-F]{4})\}?")
_HEX_ESC = re.compile(r"\\x([0-9a-fA-F]{2})")
_UNESCAPE = re.compile(r"\bunescape\s*\(\s*([\"'])([^\"'\n]{0,4000})\1\s*\)", re.I)
_PERCENT = re.compile(r"%(?:u([0-9a-fA-F]{4})|([0-9a-fA-F]{2}))")
_CHR = re.compile(
    r"\bchr[wb]?\s*\(\s*(\d{1,5})\s*\)|\(\s*char\s*\)\s*(\d{1,5})|\bconvert\s*\.\s*tochar\s*\(\s*(\d{1,5})\s*\)", re.I
)
_FROMCHARCODE = re.compile(r"\bstring\s*\.\s*fromcharcode\s*\(\s*([\d\s,]{1,2000})\)", re.I)
_CONCAT_DQ = re.compile(r'"([^"\n]{0,4000})"[ \t]*(?:\+|&)[ \t]*(?:_[ \t]*\r?\n[ \t]*)?"([^"\n]{0,4000})"')
_CONCAT_SQ = re.compile(r"'([^'\n]{0,4000})'[ \t]*\+[ \t]*'([^'\n]{0,4000})'")
_VB_HINT = re.compile(r"language\s*=\s*[\"']?(?:vb|vbscript)\b", re.I)


def _char(code: str) -> str:
    n = int(code)
    return chr(n) if 32 <= n < 127 else " "


def _quoted(text: str) -> str:
    # a folded character or decoded escape must not close the literal it sits in
    return '"' + text.replace('"', "'") + '"'


def is_vb(code: str, ext: str) -> bool:
    """Whether the code is VB.NET or VBScript (its comment character is the quote)."""
    if _VB_HINT.search(code[:4000]):
        return True
    # classic ASP defaults to VBScript unless a directive names JScript
    return ext in (".asp", ".asa", ".vb", ".vbhtml") and not re.search(r"language\s*=\s*[\"']?j", code[:4000], re.I)


def normalise(code: str, vb: bool = False) -> str:
    """Remove comments, decode escapes, fold character codes and join adjacent literals; bounded work."""
    code = code[:MAX_CODE]
    code = _BLOCK_COMMENT.sub(" ", code)
    code = _LINE_COMMENT.sub(lambda m: m.group(1), code)
    if vb:
        code = _VB_COMMENT.sub("", code)
    code = _UNICODE_ESC.sub(lambda m: _char(str(int(m.group(1), 16))), code)
    code = _HEX_ESC.sub(lambda m: _char(str(int(m.group(1), 16))), code)
    code = _UNESCAPE.sub(
        lambda m: (
            "(" + _quoted(_PERCENT.sub(lambda p: _char(str(int(p.group(1) or p.group(2), 16))), m.group(2))) + ")"
        ),
        code,
    )
    code = _FROMCHARCODE.sub(lambda m: _quoted("".join(_char(c) for c in re.findall(r"\d{1,5}", m.group(1)))), code)
    code = _CHR.sub(lambda m: _quoted(_char(m.group(1) or m.group(2) or m.group(3))), code)
    for _ in range(64):  # "e" + "v" + "a" + "l" folds one pair per pass per chain; bounded
        folded = _CONCAT_DQ.sub(lambda m: '"' + m.group(1) + m.group(2) + '"', code)
        folded = _CONCAT_SQ.sub(lambda m: "'" + m.group(1) + m.group(2) + "'", folded) if not vb else folded
        if folded == code:
            break
        code = folded
    return code


def _literal_spans(code: str, vb: bool) -> list[tuple[int, int]]:
    pat = r'"(?:[^"\\\n]|\\.|""){0,4000}"' if vb else r'"(?:[^"\\\n]|\\.){0,4000}"|\'(?:[^\'\\\n]|\\.){0,4000}\''
    return [m.span() for m in re.finditer(pat, code)]


def _inside(spans: list[tuple[int, int]], pos: int) -> bool:
    # spans are sorted and disjoint: binary search
    lo, hi = 0, len(spans)
    while lo < hi:
        mid = (lo + hi) // 2
        s, e = spans[mid]
        if pos < s:
            hi = mid
        elif pos >= e:
            lo = mid + 1
        else:
            return True
    return False


# --- argument extraction -----------------------------------------------------------------------------------


def call_args(code: str, start: int) -> str:
    """The text of a balanced argument list whose '(' is at or just before ``start`` (bounded)."""
    open_at = code.rfind("(", max(0, start - 2), start + 1)
    if open_at < 0:
        open_at = code.find("(", start, start + 4)
        if open_at < 0:
            return ""
    depth = 0
    end = min(len(code), open_at + MAX_ARGS)
    for i in range(open_at, end):
        ch = code[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return code[open_at + 1 : i]
    return code[open_at + 1 : end]


_STATEMENT = re.compile(r"[^;:\n]{0,600}")  # MAX_ARGS


def statement(code: str, start: int) -> str:
    """The rest of a statement from ``start``: up to ';', ':', a line end or '%>' (bounded)."""
    m = _STATEMENT.match(code, start)
    text = m.group(0) if m else ""
    return text.split("%>", 1)[0]


def first_argument(args: str) -> str:
    """The first top-level comma-separated argument."""
    depth = 0
    for i, ch in enumerate(args):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            return args[:i]
    return args


_RECEIVER = re.compile(r"(\w{1,64})\s*(?:\[[^\]\n]{0,60}\]\s*)?$")


def receiver(code: str, start: int) -> str:
    """The identifier a method is called on (``p`` in ``p.Start()``), or ''."""
    m = _RECEIVER.search(code[max(0, start - 100) : start])
    return m.group(1) if m else ""


# --- taint ---------------------------------------------------------------------------------------------------

_ASSIGN = re.compile(
    r"(?=(?<![\w.])(?<!\.\s)([A-Za-z_]\w{0,63})(?:\s*\.\s*\w{1,64}){0,4}\s*(?:\[[^\]\n]{0,80}\]|\([^)\n]{0,80}\))?"
    r"(?:\s+as\s+[\w.]{1,80}(?:\s*\(\s*\))?)?\s*(?:[+&|^]?=(?![=>])|\s+as\s+new\b)([^;\n]{1,600}))",
    re.I,
)
_FUNC_DEF = re.compile(
    r"(?:\b(function|sub)|\b(\w{1,40})(?:<[^>\n]{0,60}>)?(?:\s*\[\s*\])?)\s+([A-Za-z_]\w{0,63})\s*\(([^)\n]{0,400})\)",
    re.I,
)
# words before a name( that make it a call or an expression, not a definition
_NOT_TYPE = frozenset(
    {"new", "return", "as", "else", "await", "throw", "typeof", "in", "is", "of", "call", "set", "dim"}
)


def _definitions(code: str) -> list[tuple[str, list[str]]]:
    """(name, parameter names) of function definitions in C#, VB and JScript."""
    out = []
    for m in _FUNC_DEF.finditer(code):
        keyword, typ, name, params = m.groups()
        if not keyword:
            if typ.lower() in _NOT_TYPE:
                continue
            parts = [p for p in params.split(",") if p.strip()]
            # a C# definition declares each parameter with a type: two words at least
            if any(len(re.findall(r"\w+", p.split("=", 1)[0])) < 2 for p in parts):
                continue
        out.append((name, _param_names(params)))
    return out


_WEBMETHOD = re.compile(
    r"(?:\[\s*(?:system\s*\.\s*web\s*\.\s*services\s*\.\s*)?webmethod\b[^\]]{0,200}\]|\bwebmethodattribute\b)"
    r"[^(]{0,200}\(([^)]{0,400})\)",
    re.I,
)
_OUT_READ = re.compile(r"\b(\w{1,64})\s*(?:\.\s*\w{1,64}\s*){0,3}\.\s*read\s*\(\s*(\w{1,64})", re.I)
_CODE_WORDS = frozenset(
    {"byval", "byref", "as", "string", "object", "int", "byte", "var", "ref", "out", "params", "optional", "in", "new"}
)


def _param_names(params: str) -> list[str]:
    names = []
    for part in params.split(","):
        part = re.sub(r"\bas\b.*$", "", part.strip(), flags=re.I | re.S)  # VB: name As Type
        part = part.split("=", 1)[0].split(":", 1)[0]  # C# default values, JScript.NET "name : Type"
        words = [w for w in re.findall(r"[A-Za-z_]\w{0,63}", part) if w.lower() not in _CODE_WORDS]
        if words:
            names.append(words[-1])
    return names


def _names_regex(names: set[str]) -> re.Pattern[str] | None:
    if not names:
        return None
    # a name, not a member of something else (x.Value is not the variable value)
    alts = "|".join(sorted(map(re.escape, names), key=len, reverse=True))
    return re.compile(r"(?<![\w.])(?<!\.\s)(?:" + alts + r")\b", re.I)


def tainted_names(code: str, source: re.Pattern[str], controls: list[str], webmethod_params: list[str]) -> set[str]:
    """Identifiers that hold request input after propagation through assignments, calls and reads."""
    names: set[str] = {c.lower() for c in controls if c.lower() not in NOT_TAINTABLE}
    names |= {p.lower() for p in webmethod_params if p.lower() not in NOT_TAINTABLE}
    assigns = [(m.group(1).lower(), m.group(2)) for m in _ASSIGN.finditer(code)]
    funcs = _definitions(code)
    reads = [(m.group(1).lower(), m.group(2).lower()) for m in _OUT_READ.finditer(code)]
    for _ in range(MAX_ROUNDS):
        before = len(names)
        rx = _names_regex(names)

        def hot(text: str, rx: re.Pattern[str] | None = rx) -> bool:
            return bool(source.search(text) or (rx is not None and rx.search(text)))

        for lhs, rhs in assigns:
            if lhs not in names and lhs not in NOT_TAINTABLE and hot(rhs):
                names.add(lhs)
        for obj, target in reads:  # Request.InputStream.Read(buf, ...) fills buf
            if target not in names and target not in NOT_TAINTABLE and (obj == "request" or obj in names):
                names.add(target)
        for fname, params in funcs:
            if all(p.lower() in names for p in params):
                continue
            for call in re.finditer(r"\b" + re.escape(fname) + r"\s*\(", code, re.I):
                if hot(call_args(code, call.end() - 1)):
                    names.update(p.lower() for p in params if p.lower() not in NOT_TAINTABLE)
                    break
        if len(names) == before or len(names) > MAX_NAMES:
            break
    return names


# --- analysis ------------------------------------------------------------------------------------------------


@dataclass
class Flow:
    """One sink reached by request input."""

    cls: str
    sink: str  # the matched sink text
    offset: int  # in the normalised code
    argument: str  # the tainted argument text (shortened)
    via: list[str] = field(default_factory=list)  # tainted names seen in the argument

    def as_dict(self) -> dict[str, Any]:
        return {"class": self.cls, "sink": self.sink, "offset": self.offset, "argument": self.argument, "via": self.via}


def analyse(
    code: str, vb: bool = False, handler: bool = False, markup: str = "", rules: Rules | None = None
) -> list[Flow]:
    """Flows of request input into sinks in one piece of server code (already extracted from the page).

    ``handler`` marks ``.asmx``/WebService code, whose [WebMethod] parameters are request input; ``markup`` is
    the whole page, whose form controls (``<asp:TextBox id=...>``) carry posted-back input.
    Returns at most one flow per sink class (the first), in class order of the rule file.
    """
    rules = rules or default_rules()
    norm = normalise(code, vb)
    controls = [m.group(1) for m in rules.control_declaration.finditer((markup or code)[:MAX_CODE])]
    webparams = (
        [n for m in _WEBMETHOD.finditer(norm) for n in _param_names(m.group(1))]
        if handler or "webmethod" in norm.lower()
        else []
    )
    control_rx = (
        re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(set(controls)))) + r")" + rules.control_value, re.I)
        if controls
        else None
    )
    named = _either(rules.named, control_rx)
    everything = _either(named, rules.upload)
    taint_all = tainted_names(norm, everything, [], webparams)
    taint_named = tainted_names(norm, named, [], webparams)
    rx_all, rx_named = _names_regex(taint_all), _names_regex(taint_named)
    spans = _literal_spans(norm, vb)
    found: dict[str, Flow] = {}
    for sink in rules.sinks:
        if sink.cls in found:
            continue
        if sink.requires is not None and not sink.requires.search(norm):
            continue
        for m in sink.pattern.finditer(norm):
            if _inside(spans, m.start()):
                continue
            if sink.args == "statement" or sink.args == "rhs":
                arg = statement(norm, m.end())
            else:
                arg = call_args(norm, m.end() - 1)
            if sink.first_arg:
                arg = first_argument(arg)
            text = arg
            if sink.receiver:
                text = receiver(norm, m.start()) + " " + arg
            src, rx = (named, rx_named) if sink.first_arg or sink.cls == "file_write" else (everything, rx_all)
            hit_src = src.search(text)
            hit_names = sorted({h.lower() for h in rx.findall(text)}) if rx is not None else []
            if hit_src or hit_names:
                found[sink.cls] = Flow(
                    cls=sink.cls,
                    sink=" ".join(m.group(0).split())[:60],
                    offset=m.start(),
                    argument=" ".join(arg.split())[:160],
                    via=hit_names[:8],
                )
                break
    order = list(rules.classes)
    return sorted(found.values(), key=lambda f: order.index(f.cls))


def _either(a: re.Pattern[str], b: re.Pattern[str] | None) -> re.Pattern[str]:
    return a if b is None else re.compile(f"(?:{a.pattern})|(?:{b.pattern})", re.I)


# --- web.config ----------------------------------------------------------------------------------------------

# extensions IIS and ASP.NET hand to script engines out of the box; a mapping of anything else is a remap
SCRIPT_EXTS = frozenset(
    {
        "asp",
        "aspx",
        "ashx",
        "asmx",
        "axd",
        "svc",
        "cshtml",
        "vbhtml",
        "soap",
        "rem",
        "xamlx",
        "xoml",
        "asa",
        "asax",
        "cer",
        "cdx",
        "ascx",
        "master",
        "shtml",
        "shtm",
        "stm",
        "php",
        "cgi",
        "idc",
        "config",
        "*",
    }
)
ENGINE_WORDS = re.compile(
    r"asp\.dll|aspnet_isapi\.dll|pagehandlerfactory|simplehandlerfactory|webservicehandlerfactory|"
    r"pagebuildprovider|webhandlerbuildprovider|isapimodule|cgimodule|fastcgimodule|php-cgi|cmd\.exe|powershell",
    re.I,
)
_ADD_TAG = re.compile(r"<\s{0,4}add\b([^>]{0,1500})>", re.I)
_ATTR = re.compile(
    r"\b(path|extension|scriptprocessor|type|modules|verb|name)\s{0,4}=\s{0,4}[\"']([^\"']{0,400})[\"']", re.I
)
_SECTION = re.compile(
    r"<\s{0,4}(handlers|httphandlers|buildproviders|scriptmaps)\b.{0,100000}?</\s{0,4}\1\s{0,4}>", re.I | re.S
)
_CONFIG_CODE = re.compile(
    r"<%(?![@-]).{1,100000}?%>|<script\b[^>]{0,200}\brunat\s{0,4}=\s{0,4}[\"']?server.{0,100000}?</script", re.I | re.S
)
_REMOVE_CONFIG_FILTER = re.compile(
    r"<\s{0,4}remove\s+(?:fileextension|segment)\s{0,4}=\s{0,4}[\"'](?:\.config|web\.config)[\"']", re.I
)


@dataclass
class ConfigSignals:
    """What a configuration file does to script handling."""

    remaps: list[dict[str, str]] = field(default_factory=list)  # odd extension -> script engine
    inline_code: str = ""  # first server-code block found in the config (shortened)
    unblocks_config: bool = False  # requestFiltering lets .config files be served

    def as_dict(self) -> dict[str, Any]:
        return {"remaps": self.remaps, "inline_code": self.inline_code, "unblocks_config": self.unblocks_config}


def _path_exts(value: str) -> list[str]:
    out = []
    for part in re.split(r"[,;\s]+", value):
        part = part.strip().lower()
        if not part:
            continue
        ext = part.rsplit(".", 1)[-1] if "." in part else part.lstrip("*")
        out.append(ext or "*")
    return out


def config_signals(text: str) -> ConfigSignals:
    """Handler/build-provider remaps of non-script extensions to script engines, and script inside the config."""
    s = ConfigSignals()
    for sec in _SECTION.finditer(text):
        for tag in _ADD_TAG.finditer(sec.group(0)):
            attrs = {k.lower(): v for k, v in _ATTR.findall(tag.group(1))}
            engine = " ".join(attrs.get(k, "") for k in ("scriptprocessor", "type", "modules"))
            if not ENGINE_WORDS.search(engine):
                continue
            target = attrs.get("path") or attrs.get("extension") or ""
            odd = [e for e in _path_exts(target) if e not in SCRIPT_EXTS or e == "config"]
            if odd:
                s.remaps.append({"section": sec.group(1), "path": target[:80], "engine": engine.strip()[:120]})
    code = _CONFIG_CODE.search(text)
    if code:
        s.inline_code = " ".join(code.group(0).split())[:200]
    s.unblocks_config = bool(_REMOVE_CONFIG_FILTER.search(text))
    return s


# --- Temporary ASP.NET Files ---------------------------------------------------------------------------------

_PRESERVE = re.compile(r"<preserve\b[^>]{0,2000}\bvirtualPath\s*=\s*\"([^\"]{1,1000})\"[^>]{0,2000}>", re.I)
_ASSEMBLY_ATTR = re.compile(r"\bassembly\s*=\s*\"([^\"]{1,200})\"", re.I)


def compiled_record(text: str) -> tuple[str, str] | None:
    """(virtual path, assembly name) of a ``.compiled`` preserve record of Temporary ASP.NET Files, else None."""
    m = _PRESERVE.search(text)
    if not m:
        return None
    a = _ASSEMBLY_ATTR.search(m.group(0))
    return m.group(1), a.group(1) if a else ""
