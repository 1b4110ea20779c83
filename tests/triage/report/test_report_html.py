"""The HTML report read as markup: self-contained, strict CSP, and every hostile string escaped."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

from report_support import EVIL_HOST, SCRIPT, SHELL_NAME

from triage.report.html import script_json

# every element the template itself writes; a hostile string that became markup would add others
OUR_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "div", "nav", "a", "main",
    "noscript", "p", "section", "span", "dl", "dt", "dd", "strong", "ul", "li", "table", "thead", "tbody", "tr",
    "th", "td", "details", "summary", "em", "br", "label", "input", "select", "option", "script", "pre",
    "svg", "line", "text", "rect", "g", "button", "ol",
}  # fmt: skip


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.data: dict[str, list[str]] = {}
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._in = tag + (f":{dict(attrs).get('id')}" if dict(attrs).get("type") == "application/json" else "")

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.data.setdefault(self._in, []).append(data)


def _strings(value: object):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _page(hostile_report) -> str:
    case, _res = hostile_report
    return (case.path / "report" / "report.html").read_text(encoding="utf-8")


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_page_is_self_contained_with_a_strict_csp(hostile_report) -> None:
    page = _page(hostile_report)
    p = Tags()
    p.feed(page)
    csp = next(a["content"] for t, a in p.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert csp.startswith("default-src 'none';") and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    (css,) = p.data["style"]
    (js,) = p.data["script"]
    assert f"script-src {_sha(js)};" in csp and f"style-src {_sha(css)};" in csp
    for tag, attrs in p.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), f"<{tag} {name}=...> event handler in the page"
            if name in ("src", "href", "action", "srcset", "xlink:href"):
                assert str(value).startswith("#"), f"<{tag} {name}={value!r}> loads or links outside the page"
    assert not re.search(r"url\(|@import", css)


def test_hostile_strings_stay_text(hostile_report) -> None:
    page = _page(hostile_report)
    p = Tags()
    p.feed(page)
    assert {t for t, _ in p.tags} <= OUR_TAGS  # no <img>, <b>, <iframe> ... made from evidence
    scripts = [a for t, a in p.tags if t == "script"]
    # the data blocks (findings, timeline) and one script of our own, last
    assert [a.get("type") for a in scripts] == ["application/json", "application/json", None]
    assert "<img src=x" not in page and SCRIPT not in page and "<b>EVIL" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;.aspx" in page  # shown, escaped (manifest source path)
    assert "&lt;b&gt;EVIL&lt;/b&gt;&#34;&#39;" in page  # the hostile host name as a card and ledger column
    # the embedded data cannot end its block, and decodes back to the exact strings
    (raw,) = p.data["script:findings-data"]
    assert "<" not in raw and ">" not in raw and "&" not in raw
    data = json.loads(raw)
    values = set(_strings(data["rows"]))  # attributes are [key, value] rows
    assert any(SCRIPT in v for v in values)
    assert any("</script><!--<script>" in v for v in values)
    assert EVIL_HOST in values
    assert any(SHELL_NAME in v for v in values)


def test_script_json_is_inert() -> None:
    text = str(script_json({"a": "</script><!-- <script>x</script> ]]> & \u2028"}))
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)["a"] == "</script><!-- <script>x</script> ]]> & \u2028"


def test_sections_and_truncation_notice(hostile_report) -> None:
    page = _page(hostile_report)
    for anchor in ("verdicts", "ledger", "timeline", "narratives", "findings", "rules", "hosts", "runs", "manifest",
                   "provenance"):  # fmt: skip
        assert f'<section id="{anchor}">' in page
    assert '<span class="verdict verdict-compromised">compromised</span>' in page
    assert "Custody head" in page and "signatures (built in)" in page
    assert "ValueError: &lt;script&gt;" in page  # the failed unit's message, escaped
