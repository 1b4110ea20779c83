"""Test-ProxyLogon.ps1's own output files, found in the evidence: proof the script ran and of what it found.

The script (``microsoft/CSS-Exchange`` ``Security/src/Test-ProxyLogon.ps1``) writes per server, into its
``-OutPath`` (default ``Test-ProxyLogonLogs``):

* ``<Computer>-Cve-2021-26855.csv``: ``DateTime, RequestId, ClientIPAddress, UrlHost, UrlStem, RoutingHint,
  UserAgent, AnchorMailbox, HttpStatus`` (the SSRF hits);
* ``<Computer>-Cve-2021-26857.csv``: ``TimeCreated, MachineName, Message`` (the UM errors);
* ``<Computer>-Cve-2021-26858.log`` (the OAB logs with hits) and ``-Cve-2021-26858-DownloadPaths.log``;
* ``<Computer>-Cve-2021-27065.log`` (ECP logs with a script in a URL) and ``-Cve-2021-27065-ResetVDir.csv``;
* ``<Computer>-LogAgeDays.csv`` (oldest log per folder, in days) and ``<Computer>-other.csv`` (suspicious files).

Every such file gives one ``TPL-OUT-FILE`` finding (info: the script ran on that computer and wrote it,
with its row count), and every row of a hit file a ``TPL-OUT-*`` finding carrying the script's row as
its attributes. Columns are taken from each file's header line (``Export-Csv`` quoting, an optional
``#TYPE`` line, any order, UTF-8 or UTF-16); a file of unknown shape is skipped with the reason.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from analyzers.exchange.common import MAX_PER_CHECK, safe_ts, short
from triage.errors import Skip
from triage.finding import Finding, RuleMeta
from triage.formats.recognize import TPL_OUTPUT_NAME
from triage.indicators import rule_metas
from triage.registry import Analyzer, Unit, register

MAX_BYTES = 64 << 20  # the script's outputs are small; more than this is not one of them
_NAME = TPL_OUTPUT_NAME  # one list of the script's output names, shared with the recogniser
_WEB_FOLDERS = re.compile(r"\\(inetpub|wwwroot|aspnet_client|FrontEnd\\HttpProxy|owa|ecp)\\", re.IGNORECASE)


RULES = rule_metas("rulemeta/testproxylogon_output.yaml")


@dataclass(frozen=True)
class Output:
    """What one kind of script output means: its name in the script and the rule of its rows."""

    what: str
    rule: RuleMeta
    columns: tuple[str, ...] = ()  # the header that identifies the file when its name does not

    @property
    def rule_id(self) -> str:
        """The id of the rule of this output's rows."""
        return self.rule.id


OUTPUTS = {
    "cve-2021-26855": Output("Cve-2021-26855", RULES["TPL-OUT-CVE-2021-26855"],
                             ("AnchorMailbox", "UrlStem", "HttpStatus")),
    "cve-2021-27065-resetvdir": Output("Cve-2021-27065-ResetVDir", RULES["TPL-OUT-CVE-2021-27065-RESET"]),
    "cve-2021-26857": Output("Cve-2021-26857", RULES["TPL-OUT-CVE-2021-26857"], ("TimeCreated", "Message")),
    "cve-2021-26858": Output("Cve-2021-26858", RULES["TPL-OUT-CVE-2021-26858"]),
    "cve-2021-26858-downloadpaths": Output("Cve-2021-26858-DownloadPaths", RULES["TPL-OUT-CVE-2021-26858-PATH"]),
    "cve-2021-27065": Output("Cve-2021-27065", RULES["TPL-OUT-CVE-2021-27065"]),
    "logagedays": Output("LogAgeDays", RULES["TPL-OUT-LOGAGE"], ("OabGen", "EcpProxy")),
    "other": Output("other", RULES["TPL-OUT-SUSPICIOUS"]),
}  # fmt: skip


def _text(data: bytes) -> str:
    boms = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
    for bom, enc in boms:
        if data.startswith(bom):
            return data[len(bom) :].decode(enc, "replace")
    return data.decode("utf-8", "replace")


def read_table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """An ``Export-Csv`` file: its header (first line after an optional ``#TYPE``) and its rows by name."""
    lines = text.splitlines()
    while lines and (not lines[0].strip() or lines[0].startswith("#")):
        lines.pop(0)
    if not lines:
        return [], []
    reader = csv.reader(io.StringIO("\n".join(lines)), strict=False)
    header = [h.strip() for h in next(reader, [])]
    rows = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        rows.append({h: (values[i] if i < len(values) else "") for i, h in enumerate(header) if h})
    return header, rows


def identify(name: str, header: list[str]) -> tuple[str, Output | None]:
    """``(computer, output)`` from the file name, else from the header; ``(name, None)`` when unknown."""
    m = _NAME.match(name)
    if m:
        return m.group("computer"), OUTPUTS[m.group("what").lower()]
    low = {h.lower() for h in header}
    for out in OUTPUTS.values():
        if out.columns and all(c.lower() in low for c in out.columns):
            return "", out
    return "", None


def _get(row: dict[str, str], *names: str) -> str:
    low = {k.lower(): v for k, v in row.items()}
    for n in names:
        if n.lower() in low:
            return low[n.lower()]
    return ""


@register
class TestProxyLogonOutput(Analyzer):
    """Test-ProxyLogon.ps1 output files in the evidence: the script ran on that computer, and its hits."""

    __test__ = False  # not a pytest class despite the name

    name = "testproxylogon_output"
    version = "1.0"
    in_process = True  # no C engine: a few small units may run in the command's process
    consumes = ("testproxylogon_csv",)

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        """One finding for the file, one per hit row (capped), the script's values as attributes."""
        name = PurePosixPath(unit.logical_path or unit.evidence.source_path.replace("\\", "/")).name
        size = unit.path.stat().st_size
        if size > MAX_BYTES:
            raise Skip(f"{name}: {size} bytes, more than any Test-ProxyLogon output ({MAX_BYTES})")
        text = _text(unit.path.read_bytes())
        if name.lower().endswith((".log", ".txt")):
            header: list[str] = []
            rows = [{"Path": line.strip()} for line in text.splitlines() if line.strip()]
        else:
            try:
                header, rows = read_table(text)
            except csv.Error as exc:  # e.g. a field over the csv module's size limit: not the script's output
                raise Skip(f"{name}: not a readable CSV ({exc})") from exc
        computer, out = identify(name, header)
        if out is None:
            raise Skip(f"{name}: neither the name nor the header ({', '.join(header[:8])}) is a Test-ProxyLogon output")
        if not computer and rows:
            computer = _get(rows[0], "ComputerName", "MachineName")
        hits = 0 if out.rule_id == "TPL-OUT-LOGAGE" else len(rows)
        yield unit.finding(
            RULES["TPL-OUT-FILE"],
            title=f"Test-ProxyLogon.ps1 ran on {computer or 'a server'}: {name} ({hits} hit rows)"
            if out.rule_id != "TPL-OUT-LOGAGE"
            else f"Test-ProxyLogon.ps1 ran on {computer or 'a server'}: {name}",
            message=(
                f"{unit.logical_path or name} is the script's '{out.what}' output for computer "
                f"'{computer or '?'}' with {len(rows)} rows; columns: {', '.join(header) or '(one path per line)'}."
            ),
            location=f"{name}:file",
            attributes={
                "script_output": name,
                "output": out.what,
                "computer": computer,
                "rows": len(rows),
                "hits": hits,
                "columns": header,
            },
        )
        for i, row in enumerate(rows):
            if i >= MAX_PER_CHECK:
                yield unit.finding(
                    out.rule,
                    confidence="medium",
                    title=f"{out.rule.title}: {len(rows) - MAX_PER_CHECK} more rows not listed one by one",
                    message=f"{name} holds {len(rows)} rows; the first {MAX_PER_CHECK} are individual findings.",
                    location=f"{name}:overflow",
                    ed2102_steps=["22", "8"],
                    tags=["test-proxylogon", "testproxylogon_output", "overflow"],
                    references=(),
                    attributes={"rows": len(rows), "listed": MAX_PER_CHECK, "script_output": name},
                )
                break
            yield self._row(unit, name, computer, out, i, row)

    def _row(self, unit: Unit, name: str, computer: str, out: Output, i: int, row: dict[str, str]) -> Finding:
        attrs: dict[str, Any] = {k: short(v, 2000) for k, v in row.items()}
        attrs.update(script_output=name, computer=computer, row=i + 1)
        severity, ts, ts_desc = out.rule.severity, None, ""
        if out.rule_id in ("TPL-OUT-CVE-2021-26855", "TPL-OUT-CVE-2021-27065-RESET"):
            ip, stem, status = _get(row, "ClientIPAddress"), _get(row, "UrlStem"), _get(row, "HttpStatus")
            what = f"from {ip or '?'} for {short(stem, 120) or '?'} (HTTP {status or '?'}), AnchorMailbox " + short(
                _get(row, "AnchorMailbox"), 200
            )
            ts, ts_desc = safe_ts(_get(row, "DateTime")), "HttpProxy request time (script output)"
        elif out.rule_id == "TPL-OUT-CVE-2021-26857":
            what = short(_get(row, "Message"), 300)
            ts, ts_desc = safe_ts(_get(row, "TimeCreated")), "Event time (script output)"
        elif out.rule_id == "TPL-OUT-LOGAGE":
            what = ", ".join(f"{k} {v}" for k, v in row.items() if k)
        elif out.rule_id == "TPL-OUT-SUSPICIOUS":
            what = " ".join(v for v in (_get(row, "Type"), _get(row, "Path", "FullName", "Name")) if v) or str(row)
        else:
            path = _get(row, "Path")
            what = path
            if out.rule_id == "TPL-OUT-CVE-2021-26858-PATH" and _WEB_FOLDERS.search(path):
                severity = "critical"
        return unit.finding(
            out.rule,
            severity=severity,
            title=f"{out.rule.title}: {short(what, 160)}",
            message=f"{name} row {i + 1} (computer {computer or '?'}): {what}",
            location=f"{name}:{i + 1}",
            ts=ts,
            ts_desc=ts_desc,
            attributes=attrs,
        )


__all__ = ["OUTPUTS", "TestProxyLogonOutput", "identify", "read_table"]
