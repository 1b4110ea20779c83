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
written as plain JSON, property for property as the ``stix2`` library serialises them (its property order,
its timestamp precision, its deterministic ``file`` ids): importing and validating through that library
cost a quarter of a second per command and seconds per thousand objects. The tests validate our output
with ``stix2``.
"""

from __future__ import annotations

import json
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


SPEC_VERSION = "2.1"
# the namespace STIX 2.1 fixes for the deterministic ids of cyber observables (SCOs)
SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")


def stix_time(value: Any, *, millis: bool = False) -> str:
    """A STIX timestamp: UTC, ``Z``, the fraction without trailing zeros; ``millis``: at least three digits
    (``created``/``modified``), as the spec and the ``stix2`` library write them."""
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    frac = f"{ts.microsecond:06d}".rstrip("0")
    if millis:
        frac = frac.ljust(3, "0")
    return ts.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def file_sco(name: str, hashes: dict[str, str]) -> dict[str, Any]:
    """A ``file`` observable with its deterministic id (UUIDv5 over the canonical JSON of one hash, MD5
    first, and the name: STIX 2.1 section 2.9)."""
    one = next(({k: hashes[k]} for k in ("MD5", "SHA-1", "SHA-256", "SHA-512") if k in hashes), None)
    contributing = json.dumps({"hashes": one, "name": name}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    sid = f"file--{uuid.uuid5(SCO_NAMESPACE, contributing)}"
    return {"type": "file", "spec_version": SPEC_VERSION, "id": sid, "hashes": hashes, "name": name}


def _sdo(kind: str, sid: str, common: dict[str, Any], **props: Any) -> dict[str, Any]:
    """A domain or relationship object: the common properties first, then ``props`` in the order given
    (the spec's), ``None`` left out."""
    obj = {"type": kind, "spec_version": SPEC_VERSION, "id": sid, **common}
    obj.update((k, v) for k, v in props.items() if v is not None)
    return obj


class Bundle:
    """A STIX bundle of plain objects; :meth:`serialize` writes it as ``stix2`` would (compact)."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.id = f"bundle--{uuid.uuid4()}"
        self.objects = objects

    def serialize(self, pretty: bool = False) -> str:
        body = {"type": "bundle", "id": self.id, "objects": self.objects}
        return json.dumps(body, indent=4 if pretty else None)


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


# the finding columns build_bundle reads, itself or through the context's derived views (a forked copy that only
# writes the bundle lets go of the others)
STIX_COLUMNS = (
    "host",
    "tags",
    "ed2102_steps",
    "severity",
    "ts",
    "evidence_id",
    "rule_id",
    "rule_title",
    "analyzer",
    "location",
    "evidence_path",
    "evidence_sha256",
    "attributes",
    "cve",
    "mitre",
    "references",
)


def build_bundle(ctx: ReportContext, rule_roots: list[Path] | None = None) -> tuple[Bundle, dict[str, int]]:
    """The bundle and counts of what is in it (``observed_omitted``: file observations over the cap)."""
    df = ctx.findings
    created = stix_time(ctx.generated, millis=True)  # created/modified: at least milliseconds
    now = stix_time(ctx.generated)  # the same time in a timestamp of any precision
    producer_id = _sid("identity", ctx, "producer")
    producer = _sdo(
        "identity",
        producer_id,
        {"created": created, "modified": created},
        name=f"{TOOL_NAME} {__version__}",
        description=f"ED 21-02 triage report of case {ctx.case_id}",
        identity_class="system",
    )
    objects: list[dict[str, Any]] = [producer]
    by = {"created_by_ref": producer_id, "created": created, "modified": created}
    host_ids: dict[str, str] = {}
    for host in ctx.hosts:
        ident = _sdo(
            "identity",
            _sid("identity", ctx, "host", host),
            by,
            name=host,
            description="Server examined in this case",
            identity_class="system",
        )
        host_ids[host] = ident["id"]
        objects.append(ident)
    counts = {"indicators": 0, "sightings": 0, "observed_data": 0, "observed_omitted": 0}
    if not len(df):
        return _finish(ctx, objects, producer_id, by, now), counts
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
        return _finish(ctx, objects, producer_id, by, now), counts
    frame["is_file"] = frame["kind"].isin(FILE_KINDS)
    frame["name"] = ""
    loc = frame["location"].where(frame["location"] != "", frame["evidence_path"])
    frame.loc[frame["is_file"], "name"] = _file_names(loc[frame["is_file"]])
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
            sco = file_sco(r.name or r.sha256, hashes)
            if sco["id"] not in sco_seen:
                sco_seen.add(sco["id"])
                objects.append(sco)
            first = stix_time(r.first) if _ts(r.first) else now
            last = stix_time(r.last) if _ts(r.last) else first
            od = _sdo(
                "observed-data",
                _sid("observed-data", ctx, r.host, r.sha256, r.name),
                by,
                first_observed=first,
                last_observed=last,
                number_observed=1,
                object_refs=[sco["id"]],
            )
            objects.append(od)
            od_ids[(r.host, r.sha256, r.name)] = od["id"]
            counts["observed_data"] += 1
        for r in groups.itertuples(index=False):
            od_id = od_ids.get((r.host, r.sha256, r.name))
            if od_id:
                observed.setdefault((r.rule_id, r.host), []).append(od_id)
    texts = RuleTexts(rule_roots or [])
    # same rows, same order as `frame`; only the columns an indicator reads (a take of every column per rule
    # cost most of the bundle on a large case)
    full = df.loc[keep, ["rule_title", "analyzer", "attributes", "rule_id", "cve", "mitre", "references"]]
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
        indicator = _sdo(
            "indicator",
            _sid("indicator", ctx, "rule", rid),
            by,
            name=f"{rid}: {r.rule_title}" if isinstance(r.rule_title, str) else rid,
            description=f"Rule {rid} of the {r.analyzer} analyzer fired in case {ctx.case_id}. {how}",
            indicator_types=["malicious-activity" if int(sub["sev"].max()) >= 3 else "anomalous-activity"],
            pattern=pattern,
            pattern_type=ptype,
            pattern_version=SPEC_VERSION if ptype == "stix" else None,
            valid_from=stix_time(first_ts) if first_ts is not None else now,
            external_references=_ext_refs(
                _split(rule_rows["cve"].dropna().unique()),
                _split(rule_rows["mitre"].dropna().unique()),
                _split(rule_rows["references"].dropna().unique())[:10],
            )
            or None,
        )
        objects.append(indicator)
        counts["indicators"] += 1
        for host, hsub in sub.groupby("host", sort=False):
            first, last = _ts(hsub["ts"].min()), _ts(hsub["ts"].max())
            od_refs = observed.get((rid, str(host)), [])[:100]
            objects.append(
                _sdo(
                    "sighting",
                    _sid("sighting", ctx, "rule", rid, str(host)),
                    by,
                    first_seen=stix_time(first) if first is not None else None,
                    last_seen=stix_time(last) if first is not None else None,
                    count=min(len(hsub), COUNT_MAX),
                    sighting_of_ref=indicator["id"],
                    observed_data_refs=od_refs or None,
                    where_sighted_refs=[host_ids[str(host)]],
                )
            )
            counts["sightings"] += 1
    return _finish(ctx, objects, producer_id, by, now), counts


def _file_names(paths: pd.Series) -> list[str]:
    """:func:`file_name` of each path, computed once per distinct path."""
    codes, uniques = pd.factorize(paths)
    names = np.array([file_name(str(u)) for u in uniques], dtype=object)
    return names[codes].tolist() if len(uniques) else [""] * len(paths)


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
        names = [n for n in dict.fromkeys(file_name(p) for p in pd.unique(sub["evidence_path"])) if n]
        how = "The rule matched records inside these evidence files; the pattern names the files, not the records"
    if not names:
        return None, "", ""
    if len(names) > MAX_PATTERN_NAMES:
        how += f" (the first {MAX_PATTERN_NAMES} of {len(names)})"
        names = names[:MAX_PATTERN_NAMES]
    return " OR ".join(f"[file:name = {stix_string(n)}]" for n in names), "stix", how + "."


def _finish(
    ctx: ReportContext, objects: list[dict[str, Any]], producer_id: str, by: dict[str, Any], now: str
) -> Bundle:
    refs = [o["id"] for o in objects if o["id"] != producer_id]
    if refs:
        objects.append(
            _sdo(
                "report",
                _sid("report", ctx, "report"),
                by,
                name=f"ED 21-02 triage of case {ctx.case_id}",
                description="Findings of an offline forensic triage along CISA Emergency Directive 21-02.",
                report_types=["indicator", "observed-data"],
                published=now,
                object_refs=refs,
            )
        )
    return Bundle(objects)
