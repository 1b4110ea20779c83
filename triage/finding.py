"""The one finding schema, its dtype map, and the run record of an analysis unit."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from triage.severities import SEVERITIES

if TYPE_CHECKING:
    import pandas as pd

    SEVERITY_DTYPE: pd.CategoricalDtype
    FINDING_DTYPES: dict[str, Any]
RUN_STATUSES = ("success", "no_findings", "skipped", "error")


# Lone surrogates: U+DC80..U+DCFF carry undecodable bytes (os.fsdecode, surrogateescape); others come from
# JSON escapes or UTF-16 without its pair. No UTF-8 writer (parquet, JSON, HTML, XLSX) accepts any of them.
_SURROGATE = re.compile("[\ud800-\udfff]")
_PLAIN = (int, float, bool)  # JSON scalars that hold no text


def raw_bytes(text: str) -> bytes:
    """The bytes a str stands for: UTF-8, with surrogate-escaped bytes restored and other lone surrogates kept."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        out = bytearray()
        for ch in text:
            code = ord(ch)
            if 0xDC80 <= code <= 0xDCFF:
                out.append(code - 0xDC00)
            else:
                out += ch.encode("utf-8", "surrogatepass")
        return bytes(out)


def _escape_surrogate(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def storable(text: str) -> str:
    """Any str made safe for every output: lone surrogates shown escaped (``shell\\xff.aspx``).

    The one place where evidence text becomes storable; where it changed anything, the raw bytes are
    kept alongside (see :func:`storable_value`), so nothing is lost.
    """
    if text.isascii():  # constant time in CPython, and nearly every string is: no surrogate to look for
        return text
    return _SURROGATE.sub(_escape_surrogate, text) if _SURROGATE.search(text) else text


def storable_value(value: Any, raw: dict[str, str] | None = None, where: str = "") -> Any:
    """``value`` (str, or JSON-like lists and dicts of them) with every str made :func:`storable`.

    Each str that changed has its raw bytes put in ``raw`` as hex, keyed by its path (``where``, ``a.b[2]``).
    """
    if isinstance(value, str):
        if value.isascii():
            return value
        safe = storable(value)
        if safe is not value and safe != value and raw is not None:
            raw[where or "value"] = raw_bytes(value).hex()
        return safe
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            key = storable(str(k))
            # the path text is only needed where a str may change: plain values and ASCII text skip building it
            if v is None or type(v) in _PLAIN or (type(v) is str and v.isascii()):
                out[key] = v
            else:
                out[key] = storable_value(v, raw, f"{where}.{key}" if where else key)
        return out
    if isinstance(value, list | tuple):
        return [storable_value(v, raw, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def finding_id(analyzer: str, rule_id: str, evidence_sha256: str, location: str) -> str:
    """The dedupe key: the same rule on the same bytes at the same place is the same finding."""
    return hashlib.sha256(raw_bytes("\x1f".join((analyzer, rule_id, evidence_sha256, location)))).hexdigest()[:32]


def _utc(ts: datetime | str | None) -> datetime | None:
    if ts is None or ts == "":
        return None
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """A flat, typed record of something an analyzer found. Scalars only; details go in ``attributes``."""

    analyzer: str
    analyzer_version: str
    rule_id: str
    rule_title: str
    severity: str
    title: str
    message: str
    evidence_id: str
    evidence_path: str
    evidence_sha256: str
    location: str = ""
    host: str = ""
    case_id: str = ""
    confidence: str = "medium"  # low | medium | high
    ts: datetime | None = None
    ts_desc: str = ""
    # list fields: any sequence of strings in, a tuple in memory, one comma-separated string in storage
    # (Finding.storable); a str is taken as that stored form, so rows read back from a case still build
    mitre: Sequence[str] = ()  # technique ids, e.g. ("T1505.003",)
    cve: Sequence[str] = ()
    ed2102_steps: Sequence[str] = ()  # checklist step numbers
    tags: Sequence[str] = ()
    references: Sequence[str] = ()
    attributes: str = "{}"  # JSON object with the per-source details
    finding_id: str = field(default="")

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")
        object.__setattr__(self, "ts", _utc(self.ts))
        if not self.finding_id:  # from the raw text: the same bytes give the same id
            object.__setattr__(
                self,
                "finding_id",
                finding_id(self.analyzer, self.rule_id, self.evidence_sha256, self.location),
            )
        # evidence text (file names, log fields) may hold bytes no UTF-8 writer takes: escape them for
        # display and keep the raw bytes as hex in attributes["raw_hex"], keyed by field (attributes.path)
        raw: dict[str, str] = {}
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            # isascii first: constant time, and a surrogate is never ASCII (nearly every field is)
            if isinstance(value, str) and not value.isascii() and _SURROGATE.search(value):
                object.__setattr__(self, name, storable_value(value, raw, name))
        for name in LIST_FIELDS:
            value = getattr(self, name)
            # joined first: the stored text, and its raw bytes under the field's own name, as before lists
            text = value if isinstance(value, str) else ",".join(str(v) for v in value)
            if not text.isascii() and _SURROGATE.search(text):
                text = storable_value(text, raw, name)
            object.__setattr__(self, name, tuple(text.split(",")) if text else ())
        attrs: Any = self.attributes
        if isinstance(attrs, str) and (raw or _SURROGATE.search(attrs) or "\\ud" in attrs.lower()):
            from triage.custody import load_json

            try:  # JSON text may also carry lone surrogates as \\udcxx escapes
                attrs = load_json(attrs) if attrs.strip() else {}
            except ValueError:  # not JSON: keep it as one escaped string
                attrs = {"text": attrs}
        if not isinstance(attrs, str):
            attr_raw: dict[str, str] = {}
            attrs = storable_value(attrs, attr_raw)
            raw.update({f"attributes.{k}": v for k, v in attr_raw.items()})
            if raw:
                if not isinstance(attrs, dict):
                    attrs = {"value": attrs}
                given = attrs.get("raw_hex")
                attrs["raw_hex"] = {**given, **raw} if isinstance(given, dict) else raw
            text = json.dumps(attrs, sort_keys=True, default=_json_default, ensure_ascii=False)
            object.__setattr__(self, "attributes", text)

    def storable(self) -> dict[str, Any]:
        """The finding as one storage row: every column, list fields joined with commas (the parquet form)."""
        row = {name: getattr(self, name) for name in FINDING_COLUMNS}
        for name in LIST_FIELDS:
            row[name] = ",".join(row[name])
        return row


def _json_default(value: Any) -> str:
    return storable(str(value))


FINDING_COLUMNS = [f.name for f in fields(Finding)]
LIST_FIELDS = ("mitre", "cve", "ed2102_steps", "tags", "references")
_TEXT_FIELDS = tuple(n for n in FINDING_COLUMNS if n not in ("ts", "attributes", "severity", *LIST_FIELDS))


def __getattr__(name: str) -> Any:
    # the frame dtypes need pandas, loaded on first use: collect and verify never build a frame
    if name in ("SEVERITY_DTYPE", "FINDING_DTYPES"):
        import pandas as pd

        sev = pd.CategoricalDtype(list(SEVERITIES), ordered=True)
        # One dtype map builds every frame, empty ones included, so concatenation never changes types.
        dtypes: dict[str, Any] = {name: "string" for name in FINDING_COLUMNS}
        dtypes.update({"severity": sev, "ts": "datetime64[us, UTC]"})
        globals().update(SEVERITY_DTYPE=sev, FINDING_DTYPES=dtypes)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def findings_frame(findings: Iterable[Finding | dict[str, Any]]) -> pd.DataFrame:
    """Build the canonical findings DataFrame (typed, ordered columns) from records."""
    # dict rows have not passed Finding's checks: make their text storable here
    import pandas as pd

    rows = [f.storable() if isinstance(f, Finding) else _dict_row(f) for f in findings]
    if not rows:  # most units find nothing: a cached typed frame saves ~13 ms of dtype casts per unit
        global _EMPTY
        if _EMPTY is None:
            _EMPTY = coerce_findings(pd.DataFrame(columns=FINDING_COLUMNS))
        return _EMPTY.copy()
    df = pd.DataFrame.from_records(rows, columns=FINDING_COLUMNS)
    return coerce_findings(df)


_EMPTY: pd.DataFrame | None = None


def _dict_row(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = storable_value(dict(row))
    for name in LIST_FIELDS:
        if isinstance(out.get(name), list):
            out[name] = ",".join(str(v) for v in out[name])
    return out


def coerce_findings(df: pd.DataFrame) -> pd.DataFrame:
    """Give any frame of findings the canonical columns and dtypes."""
    for col in FINDING_COLUMNS:
        if col not in df.columns:
            df[col] = None
    df = df[FINDING_COLUMNS].copy()
    import pandas as pd

    df["ts"] = pd.to_datetime(df["ts"], utc=True, errors="coerce").astype("datetime64[us, UTC]")
    for col, dtype in __getattr__("FINDING_DTYPES").items():
        if col != "ts":
            df[col] = df[col].astype(dtype)
    return df


def _texts(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(value.split(","))
    return tuple(str(v) for v in value)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleMeta:
    """What every finding of one rule shares: id, title, level, description and tags (MITRE, CVE, ED 21-02
    steps, free tags, references). Loaded from rule data; :meth:`fields` fills a finding's common fields."""

    id: str
    title: str
    severity: str
    confidence: str = "medium"
    description: str = ""
    mitre: tuple[str, ...] = ()
    cve: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    references: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"rule {self.id}: severity {self.severity!r} is not one of {SEVERITIES}")
        for name in ("mitre", "cve", "steps", "tags", "references"):
            object.__setattr__(self, name, _texts(getattr(self, name)))

    @classmethod
    def from_data(cls, raw: dict[str, Any], **defaults: Any) -> RuleMeta:
        """A rule's metadata from its data (a YAML mapping); ``defaults`` for the keys it leaves out."""
        known = {"id", "title", "severity", "confidence", "description", "mitre", "cve", "steps", "tags", "references"}
        values = {**defaults, **{k: v for k, v in raw.items() if k in known and v is not None}}
        values["description"] = " ".join(str(values.get("description", "")).split())
        return cls(**values)

    def fields(self) -> dict[str, Any]:
        """The finding fields this rule fills: rule id and title, severity, confidence and the list fields."""
        return {
            "rule_id": self.id,
            "rule_title": self.title,
            "severity": self.severity,
            "confidence": self.confidence,
            "mitre": self.mitre,
            "cve": self.cve,
            "ed2102_steps": self.steps,
            "tags": self.tags,
            "references": self.references,
        }


@dataclass
class RunRecord:
    """What happened when one analyzer ran over one evidence item."""

    analyzer: str
    analyzer_version: str
    evidence_id: str
    evidence_sha256: str
    host: str
    status: str
    started: str
    finished: str
    duration_s: float
    findings: int = 0
    warnings: list[str] = field(default_factory=list)
    message: str = ""
    traceback: str = ""
    result_path: str = ""
    result_sha256: str = ""
    fingerprint: str = ""  # analyzer version + rules + options (see Analyzer.fingerprint)
    worker: str = ""  # host:pid of the process that ran the unit ("" in records of older versions)
    run_id: str = ""  # the analyze run that wrote this record (runs/<run_id>.json)
    # side outputs the unit stored (Unit.commit_output): [{"path": case-relative, "sha256": ...}]
    outputs: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data; evidence text made storable (raw bytes under ``raw_hex``)."""
        raw: dict[str, str] = {}
        # fields one level deep: storable_value copies the lists and dicts itself (asdict's deep copy would be a
        # second copy, a large part of a small file's bookkeeping in a batch)
        d = storable_value({name: getattr(self, name) for name in _RUN_FIELDS}, raw)
        if raw:
            d["raw_hex"] = raw
        return d


_RUN_FIELDS = tuple(f.name for f in fields(RunRecord))  # to_dict runs per artifact: not fields() each time
