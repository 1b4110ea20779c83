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
MAX_ITEMS = 20000  # assignments, calls and reads looked at per file: bounded work on generated or hostile code
MAX_SINK_MATCHES = 2000  # matches of one sink pattern looked at per file
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
    keys: tuple[str, ...] = ()  # lower-case words one of which the code must hold for the pattern to run


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
                keys=tuple(str(k).lower() for k in s.get("keys", [])),
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

# one linear pass over literals and comments: a literal is kept whole (a "/*" inside it opens nothing), a comment
# becomes a space; unclosed ones run to the end of the line (literals) or of the code (block comments)
_C_TOKENS = re.compile(
    r'"(?:[^"\\\n]|\\.)*"?|\'(?:[^\'\\\n]|\\.)*\'?|/\*[^*]*(?:\*(?!/)[^*]*)*(?:\*/)?|//[^\n]*|<%--(?:[^-]|-(?!-%>))*(?:--%>)?'
)
_VB_TOKENS = re.compile(r'"(?:[^"\n]|"")*"?|\'[^\n]*|(?i:\brem\b)[ \t][^\n]*|<%--(?:[^-]|-(?!-%>))*(?:--%>)?')
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


def strip_comments(code: str, vb: bool) -> str:
    """Comments out, literals kept (C#/JScript: // and /* */; VB/VBScript: ' and REM; both: <%-- --%>)."""

    def keep_literal(m: re.Match[str]) -> str:
        t = m.group(0)
        return t if t[:1] == '"' or (t[:1] == "'" and not vb) else " "

    return (_VB_TOKENS if vb else _C_TOKENS).sub(keep_literal, code)


def strip_blocks(text: str, start: str, end: str) -> str:
    """Remove start..end blocks (an unclosed one runs to the end) in one linear pass."""
    out, pos = [], 0
    while True:
        i = text.find(start, pos)
        if i < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:i] + " ")
        j = text.find(end, i + len(start))
        if j < 0:
            return "".join(out)
        pos = j + len(end)


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


def normalise(code: str, vb: bool = False, comments: bool = True) -> str:
    """Remove comments, decode escapes, fold character codes and join adjacent literals; bounded work.

    ``comments=False`` keeps comments: a comment opener inside a string literal ("/*") must not hide code, so
    :func:`analyse` also reads the code with comments left in.
    """
    code = code[:MAX_CODE]
    if comments:
        code = strip_comments(code, vb)
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


_BRACKET = re.compile(r"[()\[\]{}]")


def call_args(code: str, start: int) -> str:
    """The text of a balanced argument list whose '(' is at or just before ``start`` (bounded)."""
    open_at = code.rfind("(", max(0, start - 2), start + 1)
    if open_at < 0:
        open_at = code.find("(", start, start + 4)
        if open_at < 0:
            return ""
    depth = 0
    end = min(len(code), open_at + MAX_ARGS)
    for m in _BRACKET.finditer(code, open_at, end):
        if m.group(0) in "([{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return code[open_at + 1 : m.start()]
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

# an assignment: found by its operator, then the target read backwards from it
_ASSIGN_OP = re.compile(r"[+&|^]?=(?![=>])|\s(?i:as)\s+(?i:new)\b")
# the target read backwards (the text before the operator, reversed): optional "As Type", an index or call,
# members, then the name, which must not itself be a member of something
_ASSIGN_TARGET_REV = re.compile(
    r"\s{0,8}(?:(?:\)\s{0,8}\(\s{0,8})?[\w.]{1,80}\s{1,8}sa\s{1,8})?(?:\][^\[\n]{0,80}\[|\)[^(\n]{0,80}\()?\s{0,8}"
    r"(?:\w{1,64}\s{0,8}\.\s{0,8}){0,4}(\w{0,63}[A-Za-z_])(?![\w.])(?!\s\.)",
    re.I,
)
_RHS = re.compile(r"[^;\n]{1,600}")


def assignments(code: str) -> list[tuple[str, str]]:
    """(target name, right-hand side) of assignments: ``x = ...``, ``a.b[c] = ...``, ``Dim x As T = ...``."""
    out: list[tuple[str, str]] = []
    for op in _ASSIGN_OP.finditer(code):
        if len(out) >= MAX_ITEMS:
            break
        before = code[max(0, op.start() - 200) : op.start()]
        if op.group(0)[:1] in "+&|^" and before[-1:] in "=!<>":  # never part of a comparison
            continue
        if before[-1:] in "=!<>":
            continue
        t = _ASSIGN_TARGET_REV.match(before[::-1])
        rhs = _RHS.match(code, op.end())
        if t and rhs:
            out.append((t.group(1)[::-1], rhs.group(0)))
            # a second declaration on the same line (byte[] k = ..., body = Request...) hides in the rhs
    return out


# read backwards from a "(": the name called or defined, then (for a definition) the keyword or type before it
_CALL_REV = re.compile(
    r"\s{0,20}(\w{0,63}[A-Za-z_])(?!\w)(?:\s{1,8}(?:\]\s{0,4}\[\s{0,4})?(?:>[^<\n]{0,60}<)?(\w{1,40}))?"
)
# words before a name( that make it a call or an expression, not a definition
_NOT_TYPE = frozenset(
    {
        "new",
        "return",
        "as",
        "else",
        "await",
        "throw",
        "typeof",
        "in",
        "is",
        "of",
        "call",
        "set",
        "dim",
        "and",
        "or",
        "not",
        "if",
        "then",
        "do",
        "case",
        "to",
        "step",
        "each",
        "using",
        "lock",
        "yield",
        "goto",
        "sizeof",
        "nameof",
    }
)
_KEYWORDS = frozenset(
    {"if", "while", "for", "foreach", "switch", "catch", "using", "lock", "return", "sizeof", "typeof"}
)


def call_sites(code: str) -> list[tuple[str, str, int]]:
    """(name, word before it, position of its '(') of every ``name(`` in the code, found from each '('."""
    out: list[tuple[str, str, int]] = []
    pos = code.find("(")
    for _ in range(2 * MAX_ITEMS):  # parentheses looked at: bounded
        if pos < 0 or len(out) >= MAX_ITEMS:
            break
        m = _CALL_REV.match(code[max(0, pos - 160) : pos][::-1])
        if m:
            out.append((m.group(1)[::-1], (m.group(2) or "")[::-1], pos))
        pos = code.find("(", pos + 1)
    return out


def _definitions(code: str, sites: list[tuple[str, str, int]]) -> list[tuple[str, list[str]]]:
    """(name, parameter names) of function definitions in C#, VB and JScript, from the call sites."""
    out = []
    for name, before, pos in sites:
        word = before.lower()
        if not word or word in _NOT_TYPE or name.lower() in _KEYWORDS:
            continue
        params = call_args(code, pos)
        if word not in ("function", "sub"):
            parts = [p for p in params.split(",") if p.strip()]
            # a C# definition declares each parameter with a type: two words at least
            if any(len(re.findall(r"\w+", p.split("=", 1)[0])) < 2 for p in parts):
                continue
        out.append((name, _param_names(params)))
        if len(out) >= 2000:
            break
    return out


_WEBMETHOD = re.compile(
    r"(?:\[\s*(?:system\s*\.\s*web\s*\.\s*services\s*\.\s*)?webmethod\b[^\]]{0,200}\]|\bwebmethodattribute\b)"
    r"[^(]{0,200}\(([^)]{0,400})\)",
    re.I,
)
_OUT_READ = re.compile(r"\.\s{0,8}read\s{0,8}\(\s{0,8}(\w{1,64})", re.I)
_CHAIN_REV = re.compile(r"\s{0,8}(?:\w{1,64}\s{0,8}\.\s{0,8}){0,3}(\w{1,64})(?![\w.])")
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


_IDENT = re.compile(r"(?<![\w.])(?<!\.\s)([A-Za-z_]\w{0,63})")


_SOURCE_WORDS = ("request", "text", "value")  # every source pattern holds one of these words


def may_hold_source(text: str) -> bool:
    """A cheap test before the source patterns run: they all contain request, .Text or .Value."""
    low = text.lower()
    return any(w in low for w in _SOURCE_WORDS)


def idents(text: str) -> frozenset[str]:
    """Lower-cased names in a piece of code, not members of something else (x.Value is not the variable value)."""
    return frozenset(m.lower() for m in _IDENT.findall(text))


@dataclass(frozen=True)
class _Expr:
    """An expression seen once: whether it holds a request source, and the names it uses."""

    source: bool
    names: frozenset[str]

    def hot(self, tainted: set[str]) -> bool:
        return self.source or not self.names.isdisjoint(tainted)


@dataclass
class Facts:
    """What the taint propagation needs from one piece of code, read once."""

    assigns: list[tuple[str, str]]  # (target, right-hand side)
    calls: list[tuple[str, str]]  # (function name, argument text) of calls to functions defined here
    params: dict[str, set[str]]  # function name -> parameter names
    reads: list[tuple[str, str]]  # (stream object, buffer) of X.Read(buffer, ...)


def facts(code: str) -> Facts:
    """Assignments, calls of local functions, their parameters and stream reads of the code."""
    sites = call_sites(code)
    params: dict[str, set[str]] = {}
    for name, names in _definitions(code, sites):
        params.setdefault(name.lower(), set()).update(n.lower() for n in names if n.lower() not in NOT_TAINTABLE)
    calls = [(n.lower(), call_args(code, pos)) for n, _, pos in sites if n.lower() in params]
    reads: list[tuple[str, str]] = []
    for m in _OUT_READ.finditer(code):
        if len(reads) >= MAX_ITEMS:
            break
        obj = _CHAIN_REV.match(code[max(0, m.start() - 200) : m.start()][::-1])
        if obj and m.group(1).lower() not in NOT_TAINTABLE:
            reads.append((obj.group(1)[::-1].lower(), m.group(1).lower()))
    assigns = [(lhs.lower(), rhs) for lhs, rhs in assignments(code) if lhs.lower() not in NOT_TAINTABLE]
    return Facts(assigns, calls, params, reads)


def tainted_names(f: Facts, source: re.Pattern[str], seeds: list[str]) -> set[str]:
    """Identifiers that hold request input after propagation through assignments, calls and reads.

    Every expression is read once (its source hit and names), then propagation is set arithmetic, so the
    work is linear in the code whatever the number of rounds.
    """
    names: set[str] = {p.lower() for p in seeds if p.lower() not in NOT_TAINTABLE}

    def expr(text: str) -> _Expr:
        return _Expr(may_hold_source(text) and bool(source.search(text)), idents(text))

    assigns = [(lhs, expr(rhs)) for lhs, rhs in f.assigns]
    calls = [(name, expr(args)) for name, args in f.calls]
    for _ in range(MAX_ROUNDS):
        before = len(names)
        for lhs, rhs in assigns:
            if lhs not in names and rhs.hot(names):
                names.add(lhs)
        for obj, target in f.reads:  # Request.InputStream.Read(buf, ...) fills buf
            if obj == "request" or obj in names:
                names.add(target)
        for fname, args in calls:  # a call with request input taints the function's parameters
            if args.hot(names):
                names.update(f.params[fname])
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
    controls = sorted({m.group(1) for m in rules.control_declaration.finditer((markup or code)[:MAX_CODE])})[:500]
    control_rx = (
        re.compile(r"\b(?:" + "|".join(map(re.escape, controls)) + r")" + rules.control_value, re.I)
        if controls
        else None
    )
    named = _either(rules.named, control_rx)
    everything = _either(named, rules.upload)
    found: dict[str, Flow] = {}
    for flow in _flows(normalise(code, vb), vb, handler, rules, named, everything):
        found.setdefault(flow.cls, flow)
    order = list(rules.classes)
    return sorted(found.values(), key=lambda f: order.index(f.cls))


def _flows(
    norm: str, vb: bool, handler: bool, rules: Rules, named: re.Pattern[str], everything: re.Pattern[str]
) -> list[Flow]:
    webparams = (
        [n for m in _WEBMETHOD.finditer(norm) for n in _param_names(m.group(1))]
        if handler or "webmethod" in norm.lower()
        else []
    )
    fx = facts(norm)
    taint_all = tainted_names(fx, everything, webparams)
    taint_named = tainted_names(fx, named, webparams)
    spans = _literal_spans(norm, vb)
    found: dict[str, Flow] = {}
    lower = norm.lower()
    for sink in (*rules.sinks, *_alias_sinks(norm)):
        if sink.cls in found:
            continue
        if sink.keys and not any(k in lower for k in sink.keys):
            continue
        if sink.requires is not None and not sink.requires.search(norm):
            continue
        for i, m in enumerate(sink.pattern.finditer(norm)):
            if i >= MAX_SINK_MATCHES:
                break
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
            src, taint = (named, taint_named) if sink.first_arg or sink.cls == "file_write" else (everything, taint_all)
            hit_src = may_hold_source(text) and src.search(text)
            hit_names = sorted(idents(text) & taint)
            if hit_src or hit_names:
                found[sink.cls] = Flow(
                    cls=sink.cls,
                    sink=" ".join(m.group(0).split())[:60],
                    offset=m.start(),
                    argument=" ".join(arg.split())[:160],
                    via=hit_names[:8],
                )
                break
    return list(found.values())


_EVAL_ALIAS = re.compile(
    r"(?<![\w.])([A-Za-z_]\w{0,63})\s{0,8}=\s{0,8}(?:[\"']eval[\"']|(?:this\s{0,4}\.\s{0,4})?eval\b(?!\s{0,8}\())", re.I
)


def _alias_sinks(norm: str) -> list[Sink]:
    """Eval under another name: ``var f = eval; f(x)`` or ``var n = "eval"; this[n](x)`` (after escapes are decoded)."""
    names = {m.group(1) for m in _EVAL_ALIAS.finditer(norm)}
    return [
        Sink(
            cls="eval",
            pattern=re.compile(
                r"(?:\[\s{0,8}" + re.escape(n) + r"\s{0,8}\]|(?<![\w.])" + re.escape(n) + r")\s{0,8}\(", re.I
            ),
        )
        for n in sorted(names)[:20]
        if n.lower() not in NOT_TAINTABLE
    ]


def _either(a: re.Pattern[str], b: re.Pattern[str] | None) -> re.Pattern[str]:
    return a if b is None else re.compile(f"(?:{a.pattern})|(?:{b.pattern})", re.I)


# --- web.config ----------------------------------------------------------------------------------------------

# extensions IIS and ASP.NET hand to script engines out of the box; a mapping of anything else is a remap
SCRIPT_EXTS = frozenset(
    {
        # ASP.NET and classic ASP
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
        "config",
        "*",
        # IIS's own stock maps in applicationHost.config (ISAPI-dll, CGI-exe, SSI, IDC) and IIS 6 script maps
        "dll",
        "exe",
        "shtml",
        "shtm",
        "stm",
        "idc",
        "htr",
        "ida",
        "idq",
        "htw",
        "printer",
        "php",
        "cgi",
    }
)
ENGINE_WORDS = re.compile(
    r"asp\.dll|aspnet_isapi\.dll|pagehandlerfactory|simplehandlerfactory|webservicehandlerfactory|"
    r"pagebuildprovider|webhandlerbuildprovider|isapimodule|cgimodule|fastcgimodule|php-cgi|cmd\.exe|powershell",
    re.I,
)
_ADD_TAG = re.compile(r"<\s{0,4}add\b([^<>]{0,1500})>", re.I)
_ATTR = re.compile(
    r"\b(path|extension|scriptprocessor|type|modules|verb|name)\s{0,4}=\s{0,4}[\"']([^\"']{0,400})[\"']", re.I
)
_SECTION_OPEN = re.compile(r"<\s{0,4}(handlers|httphandlers|buildproviders|scriptmaps)\b", re.I)
_SERVER_SCRIPT_OPEN = re.compile(r"<script\b[^<>]{0,200}\brunat\s{0,4}=\s{0,4}[\"']?server", re.I)
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


_CODE_OPEN = re.compile(r"<%(?!\s{0,8}@)(?!--)")


def blocks(text: str, lower: str, opener: re.Pattern[str], closer: Any, limit: int = 10000) -> list[tuple[str, str]]:
    """(opener's first group or match, body) of each block from ``opener`` to its closing token, linear time.

    ``closer(match)`` gives the lower-case closing token; an unclosed block runs to the end of the text.
    """
    out: list[tuple[str, str]] = []
    pos = 0
    while len(out) < limit:
        m = opener.search(text, pos)
        if not m:
            break
        close = closer(m)
        j = lower.find(close, m.end())
        head = (m.group(1) if m.re.groups else m.group(0)).lower()
        if j < 0:
            out.append((head, text[m.end() :]))
            break
        out.append((head, text[m.end() : j]))
        pos = j + len(close)
    return out


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
    lower = text.lower()
    for name, body in blocks(text, lower, _SECTION_OPEN, lambda m: "</" + m.group(1).lower()):
        for tag in _ADD_TAG.finditer(body):
            attrs = {k.lower(): v for k, v in _ATTR.findall(tag.group(1))}
            engine = " ".join(attrs.get(k, "") for k in ("scriptprocessor", "type", "modules"))
            if not ENGINE_WORDS.search(engine):
                continue
            target = attrs.get("path") or attrs.get("extension") or ""
            odd = [e for e in _path_exts(target) if e not in SCRIPT_EXTS or e == "config"]
            if odd:
                s.remaps.append({"section": name, "path": target[:80], "engine": engine.strip()[:120]})
    code = next(iter(blocks(text, lower, _CODE_OPEN, lambda m: "%>", limit=1)), None)
    script = next(iter(blocks(text, lower, _SERVER_SCRIPT_OPEN, lambda m: "</script", limit=1)), None)
    first = code or script
    if first:
        s.inline_code = " ".join(first[1].split())[:200]
    s.unblocks_config = bool(_REMOVE_CONFIG_FILTER.search(text))
    return s


# --- Temporary ASP.NET Files ---------------------------------------------------------------------------------

_PRESERVE = re.compile(r"<preserve\b[^<>]{0,2000}\bvirtualPath\s*=\s*\"([^\"<>]{1,1000})\"[^<>]{0,2000}>", re.I)
_ASSEMBLY_ATTR = re.compile(r"\bassembly\s*=\s*\"([^\"]{1,200})\"", re.I)


def compiled_record(text: str) -> tuple[str, str] | None:
    """(virtual path, assembly name) of a ``.compiled`` preserve record of Temporary ASP.NET Files, else None."""
    m = _PRESERVE.search(text)
    if not m:
        return None
    a = _ASSEMBLY_ATTR.search(m.group(0))
    return m.group(1), a.group(1) if a else ""
