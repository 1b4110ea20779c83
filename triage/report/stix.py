"""A STIX 2.1 bundle of what the case saw, for sharing with CISA or an ISAC.

- an ``identity`` per host (identity_class ``system``) and one for the producing tool;
- an ``indicator`` per rule that fired. Sigma and YARA rules travel verbatim (``pattern_type`` sigma or
  yara) when the rule file is found with the hash the finding recorded; every other rule, and any rule
  whose text cannot be found, gets a STIX pattern over the file names it matched (never invented
  rule text);
- a ``sighting`` of each indicator per host with count, first_seen, last_seen and where_sighted_refs;
- ``observed-data`` with a ``file`` SCO (name, hashes) for findings about files;
- a ``report`` tying it together.

Identifiers are UUIDv5 from the case id, so rebuilding the report gives the same ids. Objects are
built with the ``stix2`` library, which validates them (patterns included) as they are made.
"""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pandas as pd

from triage import TOOL_NAME, __version__
from triage.report.context import ReportContext, parse_attributes

log = logging.getLogger(__name__)
NAMESPACE = uuid.UUID("7b2d5c1e-6a3f-4d8e-9c51-2f0e8a4b6d13")
FILE_KINDS = ("web_file", "suspicious_file", "exchange_binary", "file", "memory_dump")
MAX_PATTERN_NAMES = 10  # names per indicator pattern (pattern validation cost grows with them)
COUNT_MAX = 999_999_999
IP_SAMPLE = 200  # findings per rule searched for client addresses
_IP_KEY = re.compile(r"(?i)(client.?ip|c-ip|src.?ip|source.?ip|remote.?ip|^ip$|ipaddress$)")
_IPV4 = re.compile(r"(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}")


def _sid(kind: str, ctx: ReportContext, *parts: str) -> str:
    return f"{kind}--{uuid.uuid5(NAMESPACE, chr(31).join((ctx.case_id, *parts)))}"


def stix_string(value: str) -> str:
    """A STIX pattern string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def file_name(path: str) -> str:
    """The file name of a case or logical path, with the case's percent-encoding undone."""
    base = re.split(r"[/\\]", path.rstrip("/\\"))[-1] if path else ""
    return unquote(base)


def extract_yara_rule(text: str, name: str) -> str | None:
    """The source of one YARA rule from a rule file (braces inside strings, comments and hex strings kept)."""
    m = re.search(rf"(?m)^[ \t]*((?:(?:private|global)\s+)*rule\s+{re.escape(name)}\b)", text)
    if not m:
        return None
    i, depth, started = m.end(), 0, False
    n = len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
            continue
        if text.startswith("/*", i):
            i = text.find("*/", i + 2)
            i = n if i < 0 else i + 2
            continue
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "/" and re.search(r"=\s*$", text[max(0, i - 8) : i]):  # a regex string: $re = /.../
            i += 1
            while i < n and text[i] != "/":
                i += 2 if text[i] == "\\" else 1
        elif c == "{":
            depth += 1
            started = True
        elif c == "}":
            depth -= 1
            if started and depth == 0:
                return text[m.start(1) : i + 1]
        i += 1
    return None


def is_sigma(text: str) -> bool:
    """Whether YAML text is a Sigma rule (its mandatory title, logsource and detection are there)."""
    import yaml

    from triage.formats import yamldoc

    try:
        docs = [d for d in yamldoc.safe_load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError:
        return False
    return bool(docs) and all(k in docs[0] for k in ("title", "logsource", "detection"))


class RuleTexts:
    """Finds the text of Sigma and YARA rules that findings name, checked against the recorded hash."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = [r for r in roots if r.exists()]
        self._cache: dict[str, list[Path]] = {}

    def _candidates(self, name: str) -> list[Path]:
        if name not in self._cache:
            found: list[Path] = []
            for root in self.roots:
                if root.is_file():
                    found += [root] if root.name == name else []
                else:
                    found += sorted(root.rglob(name))
            self._cache[name] = found
        return self._cache[name]

    def find(self, rule_file: str, sha256: str) -> str | None:
        """The file's text if a file of that name has that sha256 (no hash recorded: the first by name)."""
        import hashlib

        name = Path(rule_file.replace("\\", "/")).name
        if not name:
            return None
        for p in self._candidates(name):
            try:
                data = p.read_bytes()
            except OSError:
                continue
            if not sha256 or hashlib.sha256(data).hexdigest() == sha256:
                return data.decode("utf-8", errors="replace")
        return None


def _ts(value: Any) -> Any:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).to_pydatetime()


def _ext_refs(cves: list[str], mitre: list[str], refs: list[str]) -> list[dict[str, str]]:
    out = [{"source_name": "cve", "external_id": c} for c in cves]
    out += [{"source_name": "mitre-attack", "external_id": t} for t in mitre]
    out += [{"source_name": "reference", "url": u} for u in refs if u.startswith(("http://", "https://"))]
    return out


def _split(values: Any) -> list[str]:
    out: list[str] = []
    for v in values:
        if isinstance(v, str):
            for p in v.split(","):
                if p.strip() and p.strip() not in out:
                    out.append(p.strip())
    return out


def build_bundle(ctx: ReportContext, rule_roots: list[Path] | None = None) -> tuple[Any, dict[str, int]]:
    """The bundle and counts of what is in it (``observed_omitted``: file observations over the cap)."""
    import stix2

    df = ctx.findings
    created = pd.Timestamp(ctx.generated).to_pydatetime()
    common = {"created": created, "modified": created}
    producer = stix2.Identity(
        id=_sid("identity", ctx, "producer"),
        name=f"{TOOL_NAME} {__version__}",
        identity_class="system",
        description=f"ED 21-02 triage report of case {ctx.case_id}",
        **common,
    )
    objects: list[Any] = [producer]
    by = {"created_by_ref": producer.id, **common}
    host_ids: dict[str, str] = {}
    for host in ctx.hosts:
        ident = stix2.Identity(
            id=_sid("identity", ctx, "host", host),
            name=host,
            identity_class="system",
            description="Server examined in this case",
            **by,
        )
        host_ids[host] = ident.id
        objects.append(ident)
    counts = {"indicators": 0, "sightings": 0, "observed_data": 0, "observed_omitted": 0}
    if not len(df):
        return _finish(stix2, ctx, objects, producer, by, counts)
    # every finding outside the ignored families (host facts, build verdicts, coverage) is a sighting
    fam = np.zeros(len(df), dtype=bool)
    combos, codes = ctx.combos
    for name in ctx.directive.ignore_families:
        fam |= ctx.directive.family(name).mask(combos).to_numpy()[codes]
    keep = ~fam
    kinds = df["evidence_id"].astype(str).map(ctx.kind_of).fillna("")
    frame = pd.DataFrame(
        {
            "rule_id": df["rule_id"].fillna("").astype(str),
            "host": ctx.host_column,
            "ts": df["ts"],
            "kind": kinds,
            "location": df["location"].fillna("").astype(str),
            "evidence_path": df["evidence_path"].fillna("").astype(str),
            "sha256": df["evidence_sha256"].fillna("").astype(str),
            "attributes": df["attributes"],
            "sev": ctx.severity_codes,
        }
    )[keep]
    if not len(frame):
        return _finish(stix2, ctx, objects, producer, by, counts)
    frame["is_file"] = frame["kind"].isin(FILE_KINDS)
    frame["name"] = ""
    loc = frame["location"].where(frame["location"] != "", frame["evidence_path"])
    frame.loc[frame["is_file"], "name"] = loc[frame["is_file"]].map(file_name)
    # observed-data: one per (host, file hash, name), the worst first, up to the cap
    observed: dict[tuple[str, str], list[str]] = {}
    files = frame[frame["is_file"] & (frame["sha256"] != "")]
    if len(files):
        groups = (
            files.groupby(["host", "sha256", "name", "rule_id"], sort=False)
            .agg(n=("sev", "size"), sev=("sev", "max"), first=("ts", "min"), last=("ts", "max"))
            .reset_index()
        )
        per_file = (
            groups.groupby(["host", "sha256", "name"], sort=False)
            .agg(n=("n", "max"), sev=("sev", "max"), first=("first", "min"), last=("last", "max"))
            .reset_index()
            .sort_values(["sev", "n"], ascending=False)
        )
        cap = ctx.options.stix_max_observed
        counts["observed_omitted"] = max(0, len(per_file) - cap)
        known = ctx.manifest.dropna(subset=["sha256", "md5"])
        md5_of = {str(k): str(v) for k, v in zip(known["sha256"], known["md5"], strict=False)}
        od_ids: dict[tuple[str, str, str], str] = {}
        sco_seen: set[str] = set()
        for r in per_file.head(cap).itertuples(index=False):
            hashes = {"SHA-256": r.sha256}
            md5 = md5_of.get(r.sha256)
            if md5 and re.fullmatch(r"[0-9a-f]{32}", md5):
                hashes["MD5"] = md5
            sco = stix2.File(name=r.name or r.sha256, hashes=hashes)
            if sco.id not in sco_seen:
                sco_seen.add(sco.id)
                objects.append(sco)
            first = _ts(r.first) or created
            last = _ts(r.last) or first
            od = stix2.ObservedData(
                id=_sid("observed-data", ctx, r.host, r.sha256, r.name),
                first_observed=first,
                last_observed=last,
                number_observed=1,
                object_refs=[sco.id],
                **by,
            )
            objects.append(od)
            od_ids[(r.host, r.sha256, r.name)] = od.id
            counts["observed_data"] += 1
        for r in groups.itertuples(index=False):
            od_id = od_ids.get((r.host, r.sha256, r.name))
            if od_id:
                observed.setdefault((r.rule_id, r.host), []).append(od_id)
    texts = RuleTexts(rule_roots or [])
    full = df[keep]  # same rows, same order as `frame`
    positions = frame.reset_index(drop=True).groupby("rule_id", sort=False).indices  # rule -> row positions
    for rid, pos in positions.items():
        rid = str(rid)
        sub = frame.iloc[pos]
        rule_rows = full.iloc[pos]
        r = next(rule_rows.head(1).itertuples(index=False))
        pattern, ptype, how = _pattern(texts, r, sub)
        if pattern is None:
            counts.setdefault("indicators_without_pattern", 0)
            counts["indicators_without_pattern"] += 1
            continue
        first_ts = _ts(sub["ts"].min())
        indicator = stix2.Indicator(
            id=_sid("indicator", ctx, "rule", rid),
            name=f"{rid}: {r.rule_title}" if isinstance(r.rule_title, str) else rid,
            description=f"Rule {rid} of the {r.analyzer} analyzer fired in case {ctx.case_id}. {how}",
            pattern=pattern,
            pattern_type=ptype,
            valid_from=first_ts or created,
            indicator_types=["malicious-activity" if int(sub["sev"].max()) >= 3 else "anomalous-activity"],
            external_references=_ext_refs(
                _split(rule_rows["cve"].dropna().unique()),
                _split(rule_rows["mitre"].dropna().unique()),
                _split(rule_rows["references"].dropna().unique())[:10],
            )
            or None,
            **by,
        )
        objects.append(indicator)
        counts["indicators"] += 1
        for host, hsub in sub.groupby("host", sort=False):
            first, last = _ts(hsub["ts"].min()), _ts(hsub["ts"].max())
            kw: dict[str, Any] = {}
            if first is not None:
                kw.update(first_seen=first, last_seen=last)
            od_refs = observed.get((rid, str(host)), [])[:100]
            if od_refs:
                kw["observed_data_refs"] = od_refs
            objects.append(
                stix2.Sighting(
                    id=_sid("sighting", ctx, "rule", rid, str(host)),
                    sighting_of_ref=indicator.id,
                    count=min(len(hsub), COUNT_MAX),
                    where_sighted_refs=[host_ids[str(host)]],
                    **kw,
                    **by,
                )
            )
            counts["sightings"] += 1
    return _finish(stix2, ctx, objects, producer, by, counts)


def _client_ips(attributes: pd.Series) -> list[str]:
    """IPv4 client addresses named in findings' attributes (``ClientIpAddress``, ``client_ip``, ``c-ip`` ...)."""
    out: list[str] = []
    for raw in attributes:
        for key, value in parse_attributes(raw).items():
            if isinstance(value, str) and _IP_KEY.search(str(key)) and _IPV4.fullmatch(value) and value not in out:
                out.append(value)
    return out


def _pattern(texts: RuleTexts, first: Any, sub: pd.DataFrame) -> tuple[str | None, str, str]:
    """(pattern, pattern_type, how it was made) for one rule."""
    attrs = parse_attributes(first.attributes)
    rule_file = str(attrs.get("rule_file") or "")
    low = rule_file.lower()
    if low.endswith((".yml", ".yaml")):
        text = texts.find(rule_file, str(attrs.get("rule_sha256") or ""))
        if text and is_sigma(text):
            return text, "sigma", f"The pattern is the Sigma rule file {Path(rule_file).name} as loaded."
    if low.endswith((".yar", ".yara")):
        text = texts.find(rule_file, str(attrs.get("rule_sha256") or ""))
        name = str(attrs.get("rule") or attrs.get("rule_name") or first.rule_id)
        rule = extract_yara_rule(text, name) if text else None
        if rule:
            return rule, "yara", f"The pattern is YARA rule {name} from {Path(rule_file).name}."
    names = [n for n in pd.unique(sub.loc[sub["is_file"], "name"]) if n]
    how = "The pattern lists the names of the files the rule matched"
    if not names:
        ips = _client_ips(sub["attributes"].head(IP_SAMPLE))
        if ips:
            note = f" (the first {MAX_PATTERN_NAMES} of {len(ips)})" if len(ips) > MAX_PATTERN_NAMES else ""
            pattern = " OR ".join(f"[ipv4-addr:value = {stix_string(ip)}]" for ip in ips[:MAX_PATTERN_NAMES])
            return pattern, "stix", f"The pattern lists the client addresses of the matched records{note}."
    if not names:
        # not about a file: the evidence files whose records the rule matched
        names = [n for n in pd.unique(sub["evidence_path"].map(file_name)) if n]
        how = "The rule matched records inside these evidence files; the pattern names the files, not the records"
    if not names:
        return None, "", ""
    if len(names) > MAX_PATTERN_NAMES:
        how += f" (the first {MAX_PATTERN_NAMES} of {len(names)})"
        names = names[:MAX_PATTERN_NAMES]
    return " OR ".join(f"[file:name = {stix_string(n)}]" for n in names), "stix", how + "."


def _finish(stix2: Any, ctx: ReportContext, objects: list[Any], producer: Any, by: dict[str, Any], counts: dict) -> Any:
    refs = [o.id for o in objects if o.id != producer.id]
    if refs:
        objects.append(
            stix2.Report(
                id=_sid("report", ctx, "report"),
                name=f"ED 21-02 triage of case {ctx.case_id}",
                description="Findings of an offline forensic triage along CISA Emergency Directive 21-02.",
                published=by["created"],
                report_types=["indicator", "observed-data"],
                object_refs=refs,
                **by,
            )
        )
    return stix2.Bundle(objects=objects, allow_custom=False), counts
