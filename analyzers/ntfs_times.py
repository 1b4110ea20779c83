"""The ``ntfs_timestomp`` analyzer: web-facing pages whose NTFS times look forged.

Files collected from a disk image carry both sets of NTFS times in their manifest row (``extra.ntfs``):
``$STANDARD_INFORMATION`` (what Explorer shows, and what ``SetFileTime``/timestomp tools change) and
``$FILE_NAME`` (written by the kernel when the name is created, out of reach of user-mode tools). Two signals
on server pages and scripts (``.aspx .ashx .asmx .js``) under IIS or Exchange web folders:

* ``ntfs.timestomp.si_before_fn``: the $SI creation time is earlier than the $FN creation time. A file cannot
  be created before its name was; tools that back-date a web shell to the install date leave exactly this.
* ``ntfs.timestomp.si_zero_fraction``: the $SI creation and modification times have no sub-second part while
  the $FN creation time has one. Windows keeps 100 ns precision; whole seconds point at a tool that set them.

Rows without NTFS facts (folder, KAPE or Velociraptor sources) give no findings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from triage.errors import Skip
from triage.finding import Finding, RuleMeta
from triage.indicators import server_pages
from triage.registry import Analyzer, Unit, register

# server pages (signatures/indicators/exchange_web.yaml) and the scripts served next to them
PAGE_EXTS = frozenset({*server_pages(), ".js"})
WEB_DIRS = re.compile(r"(?:^|/)(?:inetpub|FrontEnd/HttpProxy|ClientAccess|aspnet_client)(?:/|$)", re.IGNORECASE)
_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,7}))?Z$")


def ticks(value: Any) -> int | None:
    """An ISO-8601 UTC time with up to 7 fraction digits as 100 ns ticks since 1970 (None if unusable)."""
    if not isinstance(value, str):
        return None
    m = _TIME.match(value)
    if not m:
        return None
    whole = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    frac = int((m.group(2) or "0").ljust(7, "0"))
    return int(whole.timestamp()) * 10**7 + frac


def is_web_page(logical: str) -> bool:
    """A server page or script below an IIS or Exchange web folder."""
    path = logical.replace("\\", "/")
    return PurePosixPath(path).suffix.lower() in PAGE_EXTS and bool(WEB_DIRS.search(path))


# what both rules share: timestomping a web shell (T1070.006, T1505.003), ED 21-02 steps 8 and 10
_COMMON: dict[str, Any] = {
    "mitre": ("T1070.006", "T1505.003"),
    "steps": ("8", "10"),
    "tags": ("webshell", "timestomp", "ntfs"),
}
RULES = {
    r.id: r
    for r in (
        RuleMeta(
            id="ntfs.timestomp.si_before_fn",
            title="Web page created before its name ($SI earlier than $FN)",
            severity="high",
            confidence="medium",
            description="The $STANDARD_INFORMATION creation time is earlier than the $FILE_NAME creation time. "
            "NTFS writes both when a file is created; only a tool setting times afterwards (timestomping, "
            "T1070.006) makes $SI older. Web shells are back-dated this way to blend in with the installation.",
            **_COMMON,
        ),
        RuleMeta(
            id="ntfs.timestomp.si_zero_fraction",
            title="Web page with whole-second $SI times",
            severity="medium",
            confidence="low",
            description="The $STANDARD_INFORMATION creation and modification times have no sub-second part while "
            "the $FILE_NAME creation time has one. NTFS keeps 100 ns precision; times set by a tool often lack "
            "it. Files restored from archives can look like this too: compare with the installation media.",
            **_COMMON,
        ),
    )
}


def signals(ntfs: dict[str, Any]) -> list[str]:
    """The rule ids one file's NTFS facts fire (``extra['ntfs']`` of its manifest row)."""
    si, fn = ntfs.get("si") or {}, ntfs.get("fn") or {}
    si_c, si_m, fn_c = ticks(si.get("created")), ticks(si.get("modified")), ticks(fn.get("created"))
    fired = []
    if si_c is not None and fn_c is not None and si_c < fn_c:
        fired.append("ntfs.timestomp.si_before_fn")
    if (
        si_c is not None
        and si_m is not None
        and fn_c is not None
        and si_c % 10**7 == 0
        and si_m % 10**7 == 0
        and fn_c % 10**7 != 0
    ):
        fired.append("ntfs.timestomp.si_zero_fraction")
    return fired


@register
class NtfsTimestomp(Analyzer):
    """Web pages from disk images whose $STANDARD_INFORMATION times look forged against $FILE_NAME."""

    name = "ntfs_timestomp"
    version = "1.0"
    in_process = True  # no C engine: a few small units may run in the command's process
    consumes = ("web_file", "suspicious_file", "file")

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        ev = unit.evidence
        ntfs = (ev.extra or {}).get("ntfs")
        logical = unit.logical_path or ev.source_path
        if not isinstance(ntfs, dict):
            # a folder, KAPE or Velociraptor copy keeps no $SI/$FN pair: say so rather than "nothing found"
            raise Skip("no NTFS $SI/$FN times for this file (only files collected from a disk image carry them)")
        if not is_web_page(logical):
            return
        si, fn = ntfs.get("si") or {}, ntfs.get("fn") or {}
        attrs = {
            "path": logical,
            "sha256": ev.sha256,
            "mft_entry": ntfs.get("mft_entry"),
            "si": si,
            "fn": fn,
            "source_path": ev.source_path,
        }
        for rule_id in signals(ntfs):
            rule = RULES[rule_id]
            name = PurePosixPath(logical.replace("\\", "/")).name
            yield unit.finding(
                rule,
                title=f"{rule.title}: {name}",
                message=(
                    f"{logical} (MFT entry {ntfs.get('mft_entry')}): $SI created {si.get('created')}, modified "
                    f"{si.get('modified')}; $FN created {fn.get('created')}. {rule.description}"
                ),
                location=logical,
                ts=fn.get("created", "").rstrip("Z")[:26] + "Z" if fn.get("created") else None,
                ts_desc="File created ($FILE_NAME)",
                attributes=attrs,
            )
