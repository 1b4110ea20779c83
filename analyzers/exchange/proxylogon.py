"""Test-ProxyLogon.ps1's checks, offline and line for line, as pure functions plus one host analyzer.

Each check reads what the script reads and keeps what it keeps (``microsoft/CSS-Exchange``
``Security/src/Test-ProxyLogon.ps1``, the version after the 2021-03-18 CVE-2021-27065 fix):

* CVE-2021-26855: every ``*.log`` under ``Logging/HttpProxy`` holding ``ServerInfo~``; rows whose
  ``AnchorMailbox`` is ``-like 'ServerInfo~*/*'`` and neither ``-like 'ServerInfo~*/autodiscover*'``
  nor ``-like 'ServerInfo~localhost*/*'`` (``-like`` ignores case).
* CVE-2021-26857: Application log events of provider ``MSExchange Unified Messaging`` at level 2
  whose message is ``-like '*System.InvalidCastException*'`` (offline, the message is the event's
  insertion strings).
* CVE-2021-26858: lines of ``Logging/OABGeneratorLog/**`` with ``Download failed and temporary file
  (.*?) needs to be removed`` whose path does not start with ``'<install>ClientAccess\\OAB``.
* CVE-2021-27065: HttpProxy ``Ecp`` rows ``-like 'ServerInfo~*/*Reset*VirtualDirectory#'`` with
  ``HttpStatus`` 200 (Reset-VDir), and ``Logging/ECP/Server/*.log`` files with a line matching
  ``Set-.+VirtualDirectory.+?(?=Url).+<\\w+.*>(.*?)<\\/\\w+>.+?(?=VirtualDirectory)`` (Set-VDir;
  the script reports the file on its first match; this reports the first match and counts all).
* Log age per folder. The script takes the oldest file *creation time*; collection does not keep
  creation times, so the oldest record time (or ``#Date`` header) of each folder stands in for it.

The ``ServerInfo~`` pre-filter is applied per line (a row cannot match without it), which is
exactly equivalent to the script's per-file grep followed by ``Import-Csv`` of the whole file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from analyzers.exchange.common import (
    ED_WINDOW_START,
    MAX_PER_CHECK,
    LogFile,
    file_failed,
    iso,
    report_parse_problems,
    safe_ts,
    short,
    unit_files,
)
from analyzers.exchange.logs import (
    ECP,
    HTTPPROXY,
    OAB,
    LogReader,
    ParseStats,
    httpproxy_folder,
    install_root,
    like,
    line_time,
    time_span,
)
from triage.errors import Skip
from triage.finding import Finding, RuleMeta
from triage.indicators import rule_metas
from triage.lazyimport import lazy_module
from triage.registry import Analyzer, Unit, register

if TYPE_CHECKING:
    import pandas as pd
else:  # loaded on first use: a host whose evidence gives this module no work skips without them
    pd = lazy_module("pandas")

# id, title, level, CVEs, steps, tags and references of each finding (data: one RuleMeta per rule)
RULES = rule_metas("rulemeta/proxylogon.yaml")
NOTHING_TO_CHECK = "no Exchange logs and no CVE-2021-26857 events on this host"

TPL_COLUMNS = (
    "DateTime", "RequestId", "ClientIpAddress", "UrlHost", "UrlStem", "RoutingHint", "UserAgent", "AnchorMailbox",
    "HttpStatus",
)  # fmt: skip
SERVERINFO = b"serverinfo~"
CVE26855_LIKE = "ServerInfo~*/*"
CVE26855_NOT_LIKE = ("ServerInfo~*/autodiscover*", "ServerInfo~localhost*/*")
RESET_VDIR_LIKE = "ServerInfo~*/*Reset*VirtualDirectory#"
SET_VDIR = re.compile(r"Set-.+VirtualDirectory.+?(?=Url).+<\w+.*>(.*?)<\/\w+>.+?(?=VirtualDirectory)", re.IGNORECASE)
OAB_DOWNLOAD = re.compile(r"Download failed and temporary file (.*?) needs to be removed", re.IGNORECASE)
OAB_NEEDLE = b"download failed and temporary file"
UM_PROVIDER = "MSExchange Unified Messaging"
UM_MESSAGE = "System.InvalidCastException"
_TAG_OPEN = re.compile(r"<\w")
_TAG_CLOSE = re.compile(r"</\w")
_WEB_FOLDERS = re.compile(r"\\(inetpub|wwwroot|aspnet_client|FrontEnd\\HttpProxy|owa|ecp)\\", re.IGNORECASE)

# Test-ProxyLogon's LogAgeDays columns and the folders they come from.
LOG_AGE_FOLDERS: tuple[tuple[str, str, str], ...] = (
    ("OabGen", OAB, ""),
    ("Ecp", ECP, ""),
    ("AutoDProxy", HTTPPROXY, "Autodiscover"),
    ("EasProxy", HTTPPROXY, "Eas"),
    ("EcpProxy", HTTPPROXY, "Ecp"),
    ("EwsProxy", HTTPPROXY, "Ews"),
    ("MapiProxy", HTTPPROXY, "Mapi"),
    ("OabProxy", HTTPPROXY, "Oab"),
    ("OwaProxy", HTTPPROXY, "Owa"),
    ("OwaCalendarProxy", HTTPPROXY, "OwaCalendar"),
    ("PowershellProxy", HTTPPROXY, "PowerShell"),
    ("RpcHttpProxy", HTTPPROXY, "RpcHttp"),
)
FOLDER_PATHS = {
    "OabGen": "Logging\\OABGeneratorLog",
    "Ecp": "Logging\\ECP\\Server\\*.log",
    **{name: f"Logging\\HttpProxy\\{sub}" for name, kind, sub in LOG_AGE_FOLDERS if kind == HTTPPROXY},
}


def _is_log(f: LogFile) -> bool:
    return f.name.lower().endswith(".log")


# -- the checks -----------------------------------------------------------------------------------
def mask_26855(anchor: pd.Series) -> pd.Series:
    """Rows Test-ProxyLogon reports for CVE-2021-26855, from the AnchorMailbox column."""
    hit = like(anchor, CVE26855_LIKE)
    for pattern in CVE26855_NOT_LIKE:
        hit &= ~like(anchor, pattern)
    return hit


def mask_reset_vdir(anchor: pd.Series, status: pd.Series) -> pd.Series:
    """Rows Test-ProxyLogon reports as CVE-2021-27065 Reset-VDir (HttpStatus compared as the text 200)."""
    return like(anchor, RESET_VDIR_LIKE) & (status.fillna("").astype("str") == "200")


@dataclass
class HttpProxyScan:
    """The HttpProxy part of the checks: hits of both CVEs and the files the pre-filter kept."""

    hits_26855: pd.DataFrame
    hits_reset: pd.DataFrame
    files_26855: list[str] = field(default_factory=list)  # files holding ServerInfo~ (the script's FileList)
    files_reset: list[str] = field(default_factory=list)
    stats: dict[str, ParseStats] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # not *.log, so the script does not read them


def _hit_frame(frames: list[pd.DataFrame]) -> pd.DataFrame:
    cols = [*TPL_COLUMNS, "file", "line", "folder", "header_source"]
    if not frames:
        return pd.DataFrame({c: pd.Series([], dtype="str") for c in cols})
    return pd.concat(frames, ignore_index=True)[cols]


def scan_httpproxy(
    files: Iterable[LogFile], *, prefilter: bool = True, failures: list[str] | None = None
) -> HttpProxyScan:
    """CVE-2021-26855 and CVE-2021-27065 Reset-VDir over HttpProxy logs.

    ``prefilter=False`` parses every row (for measuring what the pre-filter saves); results are equal.
    """
    h26855: list[pd.DataFrame] = []
    hreset: list[pd.DataFrame] = []
    scan = HttpProxyScan(_hit_frame([]), _hit_frame([]))
    for f in files:
        if f.logtype != HTTPPROXY:
            continue
        if not _is_log(f):
            scan.skipped.append(f.logical)
            continue
        seen_serverinfo = reset_hit = False
        try:
            reader = LogReader(f.path, HTTPPROXY)
            scan.stats[f.logical] = reader.stats
            folder = httpproxy_folder(f.logical)
            is_ecp = folder.lower() == "ecp"
            frames = reader.matching_frames([SERVERINFO], TPL_COLUMNS) if prefilter else reader.frames(TPL_COLUMNS)
            for df in frames:
                for c in TPL_COLUMNS:
                    if c not in df.columns:
                        df[c] = pd.Series([None] * len(df), index=df.index, dtype="str")
                anchor = df["AnchorMailbox"]
                if prefilter:
                    seen_serverinfo = True
                elif not seen_serverinfo:
                    seen_serverinfo = bool(anchor.fillna("").str.contains("serverinfo~", case=False, regex=False).any())
                extra = {"file": f.logical, "folder": folder, "header_source": reader.stats.header_source}
                m = mask_26855(anchor)
                if m.any():
                    h26855.append(df.loc[m].assign(**extra, line=df.loc[m, "_line"]))
                if is_ecp:
                    r = mask_reset_vdir(anchor, df["HttpStatus"])
                    if r.any():
                        reset_hit = True
                        hreset.append(df.loc[r].assign(**extra, line=df.loc[r, "_line"]))
        except Exception as exc:  # one unreadable log costs only itself
            file_failed(failures, f.logical, exc)
        if seen_serverinfo:
            scan.files_26855.append(f.logical)
        if reset_hit:
            scan.files_reset.append(f.logical)
    scan.hits_26855 = _hit_frame(h26855)
    scan.hits_reset = _hit_frame(hreset)
    return scan


@dataclass
class OabHit:
    """One CVE-2021-26858 download path outside the OAB folder."""

    download_path: str
    file: str
    line: int
    ts: pd.Timestamp | None
    text: str
    install_root: str
    row: Any = None


def check_26858(
    files: Iterable[LogFile], stats: dict[str, ParseStats] | None = None, failures: list[str] | None = None
) -> list[OabHit]:
    """CVE-2021-26858: OAB generator download failures whose temporary file is outside ClientAccess\\OAB."""
    out: list[OabHit] = []
    for f in files:
        if f.logtype != OAB:
            continue
        root = install_root(f.logical) or ""
        expected = ("'" + root + "ClientAccess\\OAB").lower()
        reader = LogReader(f.path, OAB)
        if stats is not None:
            stats[f.logical] = reader.stats
        try:
            for line_no, text in reader.matching_lines([OAB_NEEDLE]):
                m = OAB_DOWNLOAD.search(text)
                if m is None:
                    continue
                path = m.group(1)
                if path.lower().startswith(expected):
                    continue
                out.append(OabHit(path, f.logical, line_no, line_time(text, OAB), text, root, f.row))
        except Exception as exc:  # one unreadable log costs only itself
            file_failed(failures, f.logical, exc)
    return out


@dataclass
class SetVDirHit:
    """One ECP Server log with a URL property holding a tag (CVE-2021-27065 Set-VDir)."""

    file: str
    first_line: int
    first_ts: pd.Timestamp | None
    first_text: str
    captured: str
    match_count: int
    lines: list[int]
    row: Any = None


def _maybe_set_vdir(text: str) -> bool:
    # the regex needs all of these; checking first keeps its backtracking away from ordinary lines
    low = text.lower()
    return (
        "set-" in low
        and "url" in low
        and low.count("virtualdirectory") >= 2
        and bool(_TAG_OPEN.search(text))
        and bool(_TAG_CLOSE.search(text))
    )


def check_27065_set(
    files: Iterable[LogFile], stats: dict[str, ParseStats] | None = None, failures: list[str] | None = None
) -> list[SetVDirHit]:
    """CVE-2021-27065 Set-VDir: ECP Server logs with a ``Set-*VirtualDirectory`` URL holding a tag."""
    out: list[SetVDirHit] = []
    for f in files:
        if f.logtype != ECP or not _is_log(f):
            continue
        reader = LogReader(f.path, ECP)
        if stats is not None:
            stats[f.logical] = reader.stats
        hit: SetVDirHit | None = None
        try:
            for line_no, text in reader.matching_lines([b"virtualdirectory"]):
                if not _maybe_set_vdir(text):
                    continue
                m = SET_VDIR.search(text)
                if m is None:
                    continue
                if hit is None:
                    hit = SetVDirHit(f.logical, line_no, line_time(text, ECP), text, m.group(1), 0, [], f.row)
                hit.match_count += 1
                if len(hit.lines) < 50:
                    hit.lines.append(line_no)
        except Exception as exc:  # one unreadable log costs only itself
            file_failed(failures, f.logical, exc)
        if hit is not None:
            out.append(hit)
    return out


def _application_log(f: LogFile) -> bool:
    return f.kind == "evtx" and f.logical.lower().endswith("application.evtx")


def check_26857(files: Iterable[LogFile], warnings: list[str] | None = None) -> pd.DataFrame:
    """CVE-2021-26857: UM errors with InvalidCastException in the Application event log(s)."""
    from triage.formats.evtx import SYSTEM_COLUMNS, ReadStats, iter_evtx

    cols = ["TimeCreated", "MachineName", "Message", "EventID", "EventRecordID", "Provider", "Level", "file"]
    found: list[pd.DataFrame] = []
    for f in files:
        if not _application_log(f):
            continue
        rs = ReadStats()
        try:
            for frame in iter_evtx(f.path, rs):
                provider = frame["Provider"].fillna("").astype("str").str.lower() == UM_PROVIDER.lower()
                sel = provider & (frame["Level"] == 2).fillna(False)
                if not sel.any():
                    continue
                sub = frame.loc[sel]
                data_cols = [c for c in sub.columns if c not in SYSTEM_COLUMNS]
                message = (
                    sub[data_cols].fillna("").astype("str").agg("\n".join, axis=1)
                    if data_cols
                    else pd.Series([""] * len(sub), index=sub.index, dtype="str")
                )
                hit = like(message, f"*{UM_MESSAGE}*")
                if hit.any():
                    found.append(
                        pd.DataFrame(
                            {
                                "TimeCreated": sub.loc[hit, "TimeCreated"],
                                "MachineName": sub.loc[hit, "Computer"],
                                "Message": message[hit],
                                "EventID": sub.loc[hit, "EventID"],
                                "EventRecordID": sub.loc[hit, "EventRecordID"],
                                "Provider": sub.loc[hit, "Provider"],
                                "Level": sub.loc[hit, "Level"],
                                "file": f.logical,
                            }
                        )
                    )
        except Exception as exc:  # one unreadable event log costs only itself
            file_failed(warnings, f.logical, exc)
        if warnings is not None:
            warnings.extend(f"{f.logical}: {w}" for w in rs.warnings[:20])
    if not found:
        return pd.DataFrame({c: [] for c in cols})
    return pd.concat(found, ignore_index=True)[cols]


@dataclass
class FolderAge:
    """Coverage of one Test-ProxyLogon log folder."""

    name: str
    folder: str
    files: list[LogFile] = field(default_factory=list)
    earliest: pd.Timestamp | None = None
    earliest_source: str = ""
    earliest_file: str = ""
    latest: pd.Timestamp | None = None
    reference: pd.Timestamp | None = None
    bytes: int = 0

    @property
    def age_days(self) -> float | None:
        """Days from the oldest record to the collection (the script's LogAgeDays value)."""
        if self.earliest is None or self.reference is None:
            return None
        return round((self.reference - self.earliest).total_seconds() / 86400, 1)

    @property
    def reaches_window_start(self) -> bool:
        """Whether the folder's logs go back to 2021-01-01, the start of the ED 21-02 window."""
        return self.earliest is not None and self.earliest <= ED_WINDOW_START


def _folder_of(f: LogFile) -> str | None:
    if f.logtype == OAB:
        return "OabGen"
    if f.logtype == ECP:
        return "Ecp" if _is_log(f) else None
    if f.logtype == HTTPPROXY:
        sub = httpproxy_folder(f.logical).lower()
        for name, kind, folder in LOG_AGE_FOLDERS:
            if kind == HTTPPROXY and folder.lower() == sub:
                return name
    return None


def log_age(files: Iterable[LogFile], failures: list[str] | None = None) -> dict[str, FolderAge]:
    """Oldest and newest record time per Test-ProxyLogon log folder, and its age at collection time."""
    ages = {name: FolderAge(name, FOLDER_PATHS[name]) for name, _, _ in LOG_AGE_FOLDERS}
    for f in files:
        name = _folder_of(f)
        if name is None:
            continue
        age = ages[name]
        age.files.append(f)
        age.bytes += (f.row.size or 0) if f.row is not None else 0
        try:
            span = time_span(f.path, f.logtype)
        except Exception as exc:  # an unreadable log has no span; the others still count
            file_failed(failures, f.logical, exc)
            continue
        if span.first is not None and (age.earliest is None or span.first < age.earliest):
            age.earliest, age.earliest_source, age.earliest_file = span.first, span.first_source, f.logical
        if span.last is not None and (age.latest is None or span.last > age.latest):
            age.latest = span.last
        collected = getattr(f.row, "collected_at", "") if f.row is not None else ""
        if collected:
            ref = pd.Timestamp(collected)
            ref = ref.tz_localize("UTC") if ref.tzinfo is None else ref.tz_convert("UTC")
            age.reference = ref if age.reference is None or ref > age.reference else age.reference
    return ages


@dataclass
class TplResult:
    """Everything the checks found on one host, shaped like the script's result object."""

    http: HttpProxyScan
    cve26857: pd.DataFrame
    cve26858: list[OabHit]
    set_vdir: list[SetVDirHit]
    ages: dict[str, FolderAge]
    stats: dict[str, ParseStats]
    warnings: list[str]

    @property
    def issues_found(self) -> bool:
        """The script's IssuesFound: any hit of any CVE check."""
        return bool(
            len(self.http.hits_26855)
            or len(self.cve26857)
            or self.cve26858
            or len(self.http.hits_reset)
            or self.set_vdir
        )

    def as_script_result(self, computer: str) -> dict[str, Any]:
        """The counts and lists of the script's result object (hits themselves are separate findings)."""
        return {
            "ComputerName": computer,
            "Cve26855": {"Hits": len(self.http.hits_26855), "FileList": self.http.files_26855},
            "Cve26857": len(self.cve26857),
            "Cve26858": {
                "downloadPaths": [h.download_path for h in self.cve26858],
                "filePaths": sorted({h.file for h in self.cve26858}),
            },
            "Cve27065": {
                "resetVDirHits": len(self.http.hits_reset),
                "resetVDirFiles": self.http.files_reset,
                "setVDirMaliciousUrlLogs": [h.file for h in self.set_vdir],
            },
            "LogAgeDays": {name: ("" if a.age_days is None else f"{a.age_days:.1f}") for name, a in self.ages.items()},
            "IssuesFound": self.issues_found,
            # the script's suspicious-file sweep (lsass dumps, ProgramData archives) is not repeated here
            "Suspicious": "see the webshell_locations analyzer (TRIAGE-SUS-*), which sweeps on every run",
        }


def test_proxylogon(files: list[LogFile], *, prefilter: bool = True) -> TplResult:
    """Run every check over one host's logs and event logs."""
    warnings: list[str] = []
    http = scan_httpproxy(files, prefilter=prefilter, failures=warnings)
    stats = dict(http.stats)
    oab = check_26858(files, stats, warnings)
    set_vdir = check_27065_set(files, stats, warnings)
    um = check_26857(files, warnings)
    return TplResult(http, um, oab, set_vdir, log_age(files, warnings), stats, warnings)


test_proxylogon.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite the name


# -- findings -------------------------------------------------------------------------------------
def _backend(anchor: str) -> str:
    rest = anchor.split("~", 1)[-1]
    return rest.split("@", 1)[-1] if "@" in rest else rest


def _tpl_attrs(row: pd.Series) -> dict[str, Any]:
    out: dict[str, Any] = {c: ("" if pd.isna(row.get(c)) else str(row.get(c))) for c in TPL_COLUMNS}
    out.update({"file": row["file"], "line": int(row["line"]), "folder": row["folder"],
                "header_source": row["header_source"]})
    return out


@register
class ProxyLogonChecks(Analyzer):
    """Test-ProxyLogon.ps1 parity: CVE-2021-26855/26857/26858/27065 log checks and log age per folder."""

    name = "proxylogon"
    version = "1.0"
    in_process = True  # no C engine: a few small units may run in the command's process
    consumes = ("exchange_log", "evtx")
    scope = "host"

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        """Every check over the host's logs and Application event log; hits, log age, a summary."""
        files = unit_files(unit)
        has_exchange = any(f.kind == "exchange_log" for f in files)
        if not has_exchange and not any(f.logtype in (HTTPPROXY, OAB, ECP) or _application_log(f) for f in files):
            # no file any check reads (a host with only a Security.evtx): the skip below, without the checks
            # (and the libraries they load)
            raise Skip(NOTHING_TO_CHECK)
        result = test_proxylogon(files)
        report_parse_problems(unit, result.stats.items())
        for w in result.warnings:
            unit.warn(w)
        if result.http.skipped:
            unit.warn(f"{len(result.http.skipped)} HttpProxy files not named *.log were not read (as the script)")
        if not has_exchange and not len(result.cve26857):
            raise Skip(NOTHING_TO_CHECK)
        yield from self._26855(unit, result)
        yield from self._reset(unit, result)
        yield from self._set(unit, result)
        yield from self._26858(unit, result)
        yield from self._26857(unit, files, result)
        if has_exchange:
            yield from self._ages(unit, result)
            yield self._summary(unit, result)

    def _overflow(self, unit: Unit, rule: RuleMeta, title: str, n: int) -> Finding:
        """The count of a check's hits beyond the listed ones: the check's id and level under a short title, step 8
        only (no tags or citations: the listed findings carry them)."""
        return unit.finding(
            RuleMeta(id=rule.id, title=title, severity=rule.severity, steps=("8",)),
            title=f"{title}: {n - MAX_PER_CHECK} more hits not listed one by one",
            message=f"{n} hits in all; the first {MAX_PER_CHECK} are individual findings.",
            location="overflow",
            attributes={"total_hits": n, "listed": MAX_PER_CHECK},
        )

    def _26855(self, unit: Unit, result: TplResult) -> Iterator[Finding]:
        hits = result.http.hits_26855
        by_file = {f.logical: f.row for f in unit_files(unit)}
        for i, (_, row) in enumerate(hits.iterrows()):
            if i >= MAX_PER_CHECK:
                yield self._overflow(unit, RULES["TPL-CVE-2021-26855"], "CVE-2021-26855 SSRF (Test-ProxyLogon)",
                                     len(hits))  # fmt: skip
                break
            attrs = _tpl_attrs(row)
            backend = _backend(attrs["AnchorMailbox"])
            yield unit.finding(
                RULES["TPL-CVE-2021-26855"],
                title=f"CVE-2021-26855 SSRF from {attrs['ClientIpAddress'] or '?'} to {short(backend, 120)} "
                f"(HTTP {attrs['HttpStatus'] or '?'})",
                message=(
                    f"HttpProxy/{attrs['folder']} request {attrs['RequestId']} at {attrs['DateTime']} from "
                    f"{attrs['ClientIpAddress']} for {attrs['UrlStem']} carried AnchorMailbox "
                    f"'{short(attrs['AnchorMailbox'])}', which is like 'ServerInfo~*/*' and is neither an "
                    "autodiscover nor a localhost target: the X-BEResource cookie sent the front end to a back-end "
                    f"URL of the attacker's choosing (status {attrs['HttpStatus']}, user agent "
                    f"'{short(attrs['UserAgent'], 120)}')."
                ),
                location=f"{attrs['file']}:{attrs['line']}",
                evidence=by_file.get(attrs["file"]),
                ts=safe_ts(attrs["DateTime"]),
                ts_desc="HttpProxy request time",
                attributes=attrs | {"check": "Get-Cve26855"},
            )

    def _reset(self, unit: Unit, result: TplResult) -> Iterator[Finding]:
        hits = result.http.hits_reset
        by_file = {f.logical: f.row for f in unit_files(unit)}
        for i, (_, row) in enumerate(hits.iterrows()):
            if i >= MAX_PER_CHECK:
                yield self._overflow(unit, RULES["TPL-CVE-2021-27065-RESET"], "CVE-2021-27065 Reset-VDir",
                                     len(hits))  # fmt: skip
                break
            attrs = _tpl_attrs(row)
            yield unit.finding(
                RULES["TPL-CVE-2021-27065-RESET"],
                title=f"CVE-2021-27065 virtual directory reset from {attrs['ClientIpAddress'] or '?'} answered 200",
                message=(
                    f"HttpProxy/Ecp request {attrs['RequestId']} at {attrs['DateTime']} from "
                    f"{attrs['ClientIpAddress']} reached '{short(_backend(attrs['AnchorMailbox']))}' and got 200. "
                    "Resetting a virtual directory through the SSRF writes its configuration, with the URL the "
                    "attacker set, to a file path of their choosing: the way ProxyLogon web shells were written."
                ),
                location=f"{attrs['file']}:{attrs['line']}",
                evidence=by_file.get(attrs["file"]),
                ts=safe_ts(attrs["DateTime"]),
                ts_desc="HttpProxy request time",
                attributes=attrs | {"check": "Get-Cve27065 resetVDirHits"},
            )

    def _set(self, unit: Unit, result: TplResult) -> Iterator[Finding]:
        for hit in result.set_vdir:
            yield unit.finding(
                RULES["TPL-CVE-2021-27065-SET"],
                title=f"CVE-2021-27065: virtual directory URL set to markup in {hit.file.rsplit('/', 1)[-1]}",
                message=(
                    f"{hit.file} line {hit.first_line} ({iso(hit.first_ts) or 'no time'}) sets a virtual directory "
                    f"URL holding a tag; inside it: '{short(hit.captured, 200)}'. {hit.match_count} line(s) of "
                    "this log match. Exported by a reset, such a configuration is an ASPX web shell."
                ),
                location=f"{hit.file}:{hit.first_line}",
                evidence=hit.row,
                ts=hit.first_ts,
                ts_desc="ECP log record time",
                attributes={
                    "file": hit.file,
                    "first_line": hit.first_line,
                    "first_ts": iso(hit.first_ts),
                    "match": short(hit.first_text, 4000),
                    "captured": short(hit.captured, 2000),
                    "match_count": hit.match_count,
                    "lines": hit.lines,
                    "check": "Get-Cve27065 setVDirMaliciousUrlLogs",
                },
            )

    def _26858(self, unit: Unit, result: TplResult) -> Iterator[Finding]:
        for i, hit in enumerate(result.cve26858):
            if i >= MAX_PER_CHECK:
                yield self._overflow(unit, RULES["TPL-CVE-2021-26858"], "CVE-2021-26858 OAB download path",
                                     len(result.cve26858))  # fmt: skip
                break
            web = bool(_WEB_FOLDERS.search(hit.download_path))
            yield unit.finding(
                RULES["TPL-CVE-2021-26858"],
                severity="critical" if web else "high",
                title=f"CVE-2021-26858: OAB generator wrote {short(hit.download_path, 150)}",
                message=(
                    f"{hit.file} line {hit.line} ({iso(hit.ts) or 'no time'}): the OAB generator reports a temporary "
                    f"download file {hit.download_path}, outside '{hit.install_root}ClientAccess\\OAB' where it "
                    "belongs: the arbitrary file write of CVE-2021-26858"
                    + (", into a web-served folder (likely a web shell)." if web else ".")
                ),
                location=f"{hit.file}:{hit.line}",
                evidence=hit.row,
                ts=hit.ts,
                ts_desc="OAB generator log record time",
                attributes={
                    "downloadPath": hit.download_path,
                    "file": hit.file,
                    "line": hit.line,
                    "ts": iso(hit.ts),
                    "install_root": hit.install_root,
                    "text": short(hit.text, 2000),
                    "check": "Get-Cve26858",
                },
            )

    def _26857(self, unit: Unit, files: list[LogFile], result: TplResult) -> Iterator[Finding]:
        by_file = {f.logical: f.row for f in files}
        for i, (_, ev) in enumerate(result.cve26857.iterrows()):
            if i >= MAX_PER_CHECK:
                yield self._overflow(unit, RULES["TPL-CVE-2021-26857"], "CVE-2021-26857 UM event",
                                     len(result.cve26857))  # fmt: skip
                break
            ts = ev["TimeCreated"]
            yield unit.finding(
                RULES["TPL-CVE-2021-26857"],
                title=f"CVE-2021-26857: UM error with InvalidCastException on {ev['MachineName'] or unit.host}",
                message=(
                    f"Application log event {ev['EventID']} (record {ev['EventRecordID']}) of '{UM_PROVIDER}' at "
                    f"level 2, {iso(ts)}, mentions {UM_MESSAGE}: the deserialization exploit of the Unified "
                    f"Messaging service fails this way. Message: {short(ev['Message'], 300)}"
                ),
                location=f"{ev['file']}#{ev['EventRecordID']}",
                evidence=by_file.get(ev["file"]),
                ts=ts,
                ts_desc="Event time",
                attributes={
                    "TimeCreated": iso(ts),
                    "MachineName": str(ev["MachineName"]),
                    "Message": short(ev["Message"], 4000),
                    "EventID": int(ev["EventID"]) if pd.notna(ev["EventID"]) else None,
                    "EventRecordID": int(ev["EventRecordID"]) if pd.notna(ev["EventRecordID"]) else None,
                    "Provider": str(ev["Provider"]),
                    "file": ev["file"],
                    "check": "Get-Cve26857",
                },
            )

    def _ages(self, unit: Unit, result: TplResult) -> Iterator[Finding]:
        for name, age in result.ages.items():
            malformed = sum(result.stats[f.logical].malformed_lines for f in age.files if f.logical in result.stats)
            attrs: dict[str, Any] = {
                "column": name,
                "folder": age.folder,
                "files": len(age.files),
                "bytes": age.bytes,
                "earliest": iso(age.earliest),
                "earliest_source": age.earliest_source,
                "earliest_file": age.earliest_file,
                "latest": iso(age.latest),
                "log_age_days": age.age_days,
                "reference_time": iso(age.reference),
                "reaches_window_start": age.reaches_window_start,
                "window_start": ED_WINDOW_START.isoformat(),
                "malformed_lines_in_lines_read": malformed,
                "method": "oldest record time or #Date header (collection does not keep file creation times)",
            }
            if not age.files:
                title = f"No {age.folder} logs collected: no coverage for {name}"
                message = (
                    f"No log under <install>\\{age.folder} was collected on {unit.host}, so Test-ProxyLogon's "
                    f"{name} column would be empty and nothing in these logs can be checked."
                )
            else:
                gap = "" if age.reaches_window_start else " (does not reach back to 2021-01-01)"
                title = f"{name} logs cover {iso(age.earliest)[:10]} to {iso(age.latest)[:10]}{gap}"
                message = (
                    f"{len(age.files)} file(s) under <install>\\{age.folder}; the oldest record is "
                    f"{iso(age.earliest)} (from the {age.earliest_source} of {age.earliest_file}), the newest "
                    f"{iso(age.latest)}. Test-ProxyLogon's log age uses file creation times, which collection does "
                    "not preserve, so the oldest record time stands in: "
                    f"{age.age_days} days before collection ({iso(age.reference)}). "
                    + (
                        "The logs reach back to the start of the ED 21-02 window (2021-01-01)."
                        if age.reaches_window_start
                        else "The logs start after 2021-01-01: activity before "
                        f"{iso(age.earliest)[:10]} is not covered, so no hit there is weak evidence."
                    )
                )
            yield unit.finding(
                RULES["TPL-LOGAGE"],
                title=title,
                message=message,
                location=f"logage:{name}",
                ts=age.earliest,
                ts_desc="Oldest log record",
                tags=RULES["TPL-LOGAGE"].tags + (() if age.reaches_window_start else ("coverage-gap",)),
                attributes=attrs,
            )

    def _summary(self, unit: Unit, result: TplResult) -> Finding:
        res = result.as_script_result(unit.host)
        if result.issues_found:
            parts = [
                f"CVE-2021-26855 {len(result.http.hits_26855)} hits",
                f"CVE-2021-26857 {len(result.cve26857)} events",
                f"CVE-2021-26858 {len(result.cve26858)} paths",
                f"CVE-2021-27065 {len(result.http.hits_reset)} resets and {len(result.set_vdir)} ECP logs",
            ]
            title = "Test-ProxyLogon checks re-run offline (not the script): suspicious activity found"
            message = f"On {unit.host}: " + "; ".join(parts) + ". Each hit is its own finding."
        else:
            title = "Test-ProxyLogon checks re-run offline (not the script): nothing suspicious detected"
            message = (
                f"On {unit.host} no HttpProxy, OAB generator, ECP or Application log entry matches the script's "
                "checks (see the log age findings for how far back that holds)."
            )
        unread = [w.split(": reading stopped", 1)[0] for w in result.warnings if ": reading stopped at an error" in w]
        if unread:
            names = ", ".join(short(u, 120) for u in unread[:5])
            message += f" {len(unread)} file(s) could not be read to the end, so this covers the rest only: {names}"
            res["unread_files"] = unread
        return unit.finding(
            RULES["TPL-SUMMARY"],
            title=title,
            message=message,
            location="summary",
            attributes=res,
        )


__all__ = [
    "LOG_AGE_FOLDERS",
    "TPL_COLUMNS",
    "FolderAge",
    "HttpProxyScan",
    "OabHit",
    "ProxyLogonChecks",
    "SetVDirHit",
    "TplResult",
    "check_26857",
    "check_26858",
    "check_27065_set",
    "log_age",
    "mask_26855",
    "mask_reset_vdir",
    "scan_httpproxy",
    "test_proxylogon",
]
