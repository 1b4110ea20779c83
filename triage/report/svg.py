"""Inline SVG charts of the reports: the attack timeline (lanes per evidence source) and the fleet's bar charts.

No script, fonts or remote loads are needed to see them; every text is escaped. The timeline is bounded whatever
the case size: findings are counted into cells (time bin x lane x severity), at most ``MAX_CELLS`` per cell set,
and the drawing shows at most ``MAX_BINS`` bins, so a case of a million findings draws as fast as one of ten.
The page's own script (``report.js``) redraws the same picture from the same cells when the reader zooms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from triage.finding import SEVERITIES

COLORS = {"info": "#8c96a3", "low": "#3f88c5", "medium": "#e0a100", "high": "#e2611e", "critical": "#b3152e"}
# (key, label, evidence kinds); a kind named nowhere is drawn in the "files" lane
LANES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("evtx", "event logs", ("evtx", "event_json")),
    ("web", "web logs", ("exchange_log", "iis_log", "weblog", "testproxylogon_csv")),
    ("files", "files", ()),
    ("registry", "registry", ("registry_hive", "registry")),
    ("memory", "memory", ("memory_image",)),
)
FILES_LANE = 2
LANE_OF_KIND = {kind: i for i, (_, _, kinds) in enumerate(LANES) for kind in kinds}
# bin widths (seconds), finest first: a cell set takes the finest that keeps it under MAX_CELLS cells, a view the
# finest that keeps it under MAX_BINS bins
WIDTHS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400, 30 * 86400,
          91 * 86400, 365 * 86400)  # fmt: skip
MAX_CELLS = 6000
MAX_BINS = 120
MIN_MARGIN = 900  # seconds either side of the attack window, at least
MARGIN_SHARE = 0.1  # of the window's length, either side
# drawing layout, shared with report.js through the embedded data
LAYOUT = {"width": 1100, "left": 104, "right": 14, "top": 8, "lane": 34, "axis": 20, "legend": 22}


def lane_of(kind: str | None) -> int:
    """The timeline lane of an evidence kind."""
    return LANE_OF_KIND.get(kind or "", FILES_LANE)


def attack_window(first: int, last: int) -> tuple[int, int]:
    """The attack window drawn by default: first to last detection, widened by a margin either side."""
    margin = max(MIN_MARGIN, math.ceil((last - first) * MARGIN_SHARE))
    return first - margin, last + margin


@dataclass
class CellSet:
    """Finding counts per (bin, lane, severity) over ``[start, end]`` at one bin width."""

    start: int
    end: int
    width: int
    t: np.ndarray  # bin start, epoch seconds
    lane: np.ndarray
    sev: np.ndarray
    n: np.ndarray

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.start,
            "to": self.end,
            "width": self.width,
            "t": self.t.tolist(),
            "l": self.lane.tolist(),
            "s": self.sev.tolist(),
            "n": self.n.tolist(),
        }


def _distinct(values: np.ndarray) -> int:
    """How many distinct values (by sorting: numpy's hashing unique is far slower on a million integers)."""
    if not len(values):
        return 0
    return int(np.count_nonzero(np.diff(np.sort(values)))) + 1


def cell_set(secs: np.ndarray, lanes: np.ndarray, sev: np.ndarray, start: int, end: int) -> CellSet:
    """The cells of the findings in ``[start, end]`` at the finest width giving at most ``MAX_CELLS`` cells."""
    keep = (secs >= start) & (secs <= end)
    rel, ln, sv = secs[keep] - start, lanes[keep].astype(np.int64), sev[keep].astype(np.int64)
    nl, ns = len(LANES), len(SEVERITIES)
    # one pass over all findings; every width below works on the distinct (second, lane, severity) rows
    base, counts = np.unique((rel * nl + ln) * ns + sv, return_counts=True)
    b_rel, b_lane, b_sev = base // (nl * ns), (base // ns) % nl, base % ns
    width = WIDTHS[-1]
    for w in WIDTHS:
        bins = b_rel // w  # sorted, as the distinct rows are ordered by time first
        if len(bins) and np.count_nonzero(np.diff(bins)) + 1 > MAX_CELLS:
            continue  # more bins than cells allowed: no need to count the cells
        if _distinct((bins * nl + b_lane) * ns + b_sev) <= MAX_CELLS:
            width = w
            break
    origin = start - start % width  # bins aligned to the epoch, so every view and set agree on their edges
    key = (((b_rel + start - origin) // width) * nl + b_lane) * ns + b_sev
    uniq, inv = np.unique(key, return_inverse=True)
    n = np.bincount(inv, weights=counts).astype(np.int64) if len(uniq) else np.zeros(0, dtype=np.int64)
    return CellSet(
        start=start,
        end=end,
        width=width,
        t=(uniq // (nl * ns)) * width + origin,
        lane=(uniq // ns) % nl,
        sev=uniq % ns,
        n=n,
    )


@dataclass
class Timeline:
    """What the report's timeline draws: the span of dated findings, the attack window, the cell sets."""

    dated: int = 0
    undated: int = 0
    span: tuple[int, int] | None = None  # first and last dated finding
    detections: tuple[int, int] | None = None  # first and last dated detection at medium or above
    window: tuple[int, int] | None = None  # the detections widened by the margin
    sets: list[CellSet] = field(default_factory=list)  # the whole span first, then the attack window
    marker: tuple[int, str] | None = None

    @property
    def default_range(self) -> tuple[int, int] | None:
        """The attack window where there is one, else the whole span (widened when it is one instant)."""
        if self.window:
            return self.window
        if self.span:
            lo, hi = self.span
            return (lo - MIN_MARGIN, hi + MIN_MARGIN) if hi - lo < 60 else (lo, hi)
        return None

    def as_json(self) -> dict[str, Any]:
        """The data ``report.js`` zooms over (the same cells the static drawing used)."""
        return {
            "lanes": [[k, label] for k, label, _ in LANES],
            "severities": list(SEVERITIES),
            "colors": COLORS,
            "span": self.span,
            "detections": self.detections,
            "window": self.window,
            "default": self.default_range,
            "marker": self.marker,
            "sets": [s.as_json() for s in self.sets],
            "widths": list(WIDTHS),
            "max_bins": MAX_BINS,
            "layout": LAYOUT,
        }


def build_timeline(
    ts: pd.Series,
    lanes: np.ndarray,
    severity_codes: np.ndarray,
    detection: np.ndarray,
    marker: tuple[pd.Timestamp, str] | None = None,
) -> Timeline:
    """Cells of the dated findings: ``lanes`` per finding (``lane_of``), ``detection`` marks the ones that set the
    attack window (indications at medium or above)."""
    valid = ts.notna().to_numpy()
    tl = Timeline(dated=int(valid.sum()), undated=int((~valid).sum()))
    if marker is not None:
        tl.marker = (int(marker[0].timestamp()), marker[1])
    if not tl.dated:
        return tl
    secs = (ts[valid].astype("int64") // 1_000_000).to_numpy()  # datetime64[us] -> seconds
    ln = np.asarray(lanes)[valid]
    sev = np.clip(np.asarray(severity_codes)[valid], 0, len(SEVERITIES) - 1)
    tl.span = (int(secs.min()), int(secs.max()))
    tl.sets.append(cell_set(secs, ln, sev, tl.span[0], tl.span[1]))
    det = secs[np.asarray(detection)[valid]]
    if len(det):
        tl.detections = (int(det.min()), int(det.max()))
        tl.window = attack_window(*tl.detections)
        if tl.sets[0].width > 1:  # the whole span was binned coarsely: keep finer cells for the window
            tl.sets.append(cell_set(secs, ln, sev, *tl.window))
    return tl


def _pick_set(tl: Timeline, lo: int, hi: int) -> CellSet:
    fits = [s for s in tl.sets if s.start <= lo and hi <= s.end] or [s for s in tl.sets if s.start < hi and lo < s.end]
    return min(fits or tl.sets, key=lambda s: s.width)


def view_width(lo: int, hi: int, finest: int) -> int:
    """The display bin width of a view: the finest that keeps it under ``MAX_BINS`` bins."""
    for w in WIDTHS:
        if w >= finest and (hi - lo) / w <= MAX_BINS:
            return w
    return WIDTHS[-1]


def _label(sec: int, span: int) -> str:
    fmt = "%Y-%m-%d %H:%M:%S" if span < 600 else "%Y-%m-%d %H:%M" if span < 30 * 86400 else "%Y-%m-%d"
    return pd.Timestamp(sec, unit="s", tz="UTC").strftime(fmt)


def width_name(w: int) -> str:
    """``30 s``, ``15 min``, ``6 h``, ``7 days``."""
    if w < 60:
        return f"{w} s"
    if w < 3600:
        return f"{w // 60} min"
    if w < 86400:
        return f"{w // 3600} h"
    return f"{w // 86400} day" + ("s" if w >= 2 * 86400 else "")


def timeline_svg(tl: Timeline, view: tuple[int, int] | None = None) -> str:
    """The timeline over ``view`` (default: the attack window) as an ``<svg>`` element, safe to embed as is."""
    lay = LAYOUT
    view = view or tl.default_range
    if view is None:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline-chart" class="timeline" viewBox="0 0 '
            f'{lay["width"]} 40" role="img" aria-label="no dated findings">'
            '<text x="8" y="24" fill="#555">No dated findings.</text></svg>'
        )
    lo, hi = view
    hi = max(hi, lo + 1)
    cs = _pick_set(tl, lo, hi)
    bw = view_width(lo, hi, cs.width)
    plot_w = lay["width"] - lay["left"] - lay["right"]
    height = lay["top"] + lay["lane"] * len(LANES) + lay["axis"] + lay["legend"]

    def x_of(sec: float) -> float:
        return lay["left"] + (sec - lo) / (hi - lo) * plot_w

    keep = (cs.t + cs.width > lo) & (cs.t <= hi)
    b = cs.t[keep] // bw
    counts: dict[tuple[int, int], np.ndarray] = {}
    cells = zip(b.tolist(), cs.lane[keep].tolist(), cs.sev[keep].tolist(), cs.n[keep].tolist(), strict=True)
    for bin_i, lane, sev, n in cells:
        counts.setdefault((bin_i, lane), np.zeros(len(SEVERITIES), dtype=np.int64))[sev] += n
    peak = max((int(v.sum()) for v in counts.values()), default=1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline-chart" class="timeline" '
        f'viewBox="0 0 {lay["width"]} {height}" role="img" data-from="{lo}" data-to="{hi}" data-bin="{bw}" '
        f'aria-label="findings per {escape(width_name(bw))} and source, {escape(_label(lo, 0))} to '
        f'{escape(_label(hi, 0))} UTC">'
    ]
    if tl.window and (tl.window[0] > lo or tl.window[1] < hi):
        wx0, wx1 = x_of(max(tl.window[0], lo)), x_of(min(tl.window[1], hi))
        if wx1 > wx0:
            parts.append(
                f'<rect class="attack-window" x="{wx0:.1f}" y="{lay["top"]}" width="{max(wx1 - wx0, 1):.1f}" '
                f'height="{lay["lane"] * len(LANES)}" fill="#fde9e4"><title>attack window</title></rect>'
            )
    for i, (key, label, _) in enumerate(LANES):
        y0 = lay["top"] + i * lay["lane"]
        parts.append(f'<g class="lane" data-lane="{key}">')
        parts.append(
            f'<line x1="{lay["left"]}" y1="{y0 + lay["lane"]}" x2="{lay["left"] + plot_w}" y2="{y0 + lay["lane"]}" '
            'stroke="#e3e3e3"/>'
            f'<text x="{lay["left"] - 8}" y="{y0 + lay["lane"] / 2 + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="#333">{escape(label)}</text>'
        )
        for (bin_i, lane), sevs in sorted(counts.items()):
            if lane != i:
                continue
            t0 = bin_i * bw
            x, x1 = x_of(max(t0, lo)), x_of(min(t0 + bw, hi))
            w = max(x1 - x - 0.5, 1.5)
            y = float(y0 + lay["lane"] - 2)
            total = int(sevs.sum())
            tip = f"{_label(t0, bw)} UTC, {width_name(bw)}: {total} {label} finding(s)"
            for s_idx, sev in enumerate(SEVERITIES):
                c = int(sevs[s_idx])
                if not c:
                    continue
                h = max((lay["lane"] - 6) * c / peak, 2.0)
                y -= h
                parts.append(
                    f'<rect class="bar sev-{sev}" x="{x:.2f}" y="{y:.2f}" width="{w:.2f}" height="{h:.2f}" '
                    f'fill="{COLORS[sev]}" data-t="{t0}" data-n="{c}"><title>{escape(tip)}; {c} {sev}</title></rect>'
                )
        parts.append("</g>")
    axis_y = lay["top"] + lay["lane"] * len(LANES)
    for k in range(6):
        sec = lo + (hi - lo) * k / 5
        anchor = "start" if k == 0 else "end" if k == 5 else "middle"
        parts.append(
            f'<text class="tick" x="{x_of(sec):.1f}" y="{axis_y + 14}" text-anchor="{anchor}" font-size="11" '
            f'fill="#555">{escape(_label(int(sec), hi - lo))}</text>'
        )
    if tl.marker and lo <= tl.marker[0] <= hi:
        mx = x_of(tl.marker[0])
        parts.append(
            f'<line class="marker" x1="{mx:.1f}" y1="{lay["top"]}" x2="{mx:.1f}" y2="{axis_y}" stroke="#333" '
            f'stroke-dasharray="4 3"><title>{escape(tl.marker[1])}</title></line>'
        )
    lx = lay["left"]
    for sev in reversed(SEVERITIES):
        parts.append(f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{COLORS[sev]}"/>')
        parts.append(f'<text x="{lx + 14}" y="{height - 5}" font-size="11" fill="#333">{sev}</text>')
        lx += 74
    parts.append(
        f'<text x="{lay["left"] + plot_w}" y="{height - 5}" text-anchor="end" font-size="11" fill="#555">'
        f"{escape(f'one bar per {width_name(bw)} and source, UTC')}</text></svg>"
    )
    return "".join(parts)


# -- fleet bar charts -------------------------------------------------------------------------------
def bar_chart_svg(
    chart_id: str,
    rows: list[tuple[str, list[tuple[str, int, str]]]],
    *,
    title: str,
    unit: str,
    scale_max: int | None = None,
) -> str:
    """Horizontal stacked bars: one row per label, each a list of (segment name, count, colour).

    Every segment carries ``data-row``, ``data-segment`` and ``data-count`` (what tests and readers check) and a
    tooltip; each row ends with its total.
    """
    left, right, row_h, top = 190, 60, 22, 6
    width = 760
    plot_w = width - left - right
    peak = scale_max or max((sum(c for _, c, _ in segs) for _, segs in rows), default=1) or 1
    height = top + row_h * max(len(rows), 1) + 6
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(chart_id)}" class="bars" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
    ]
    for i, (label, segs) in enumerate(rows):
        y = top + i * row_h
        shown = label if len(label) <= 28 else label[:27] + "\u2026"
        parts.append(
            f'<g class="bar-row" data-row="{escape(label)}"><text x="{left - 8}" y="{y + 15}" text-anchor="end" '
            f'font-size="12" fill="#333">{escape(shown)}<title>{escape(label)}</title></text>'
        )
        x = float(left)
        total = 0
        for name, count, color in segs:
            total += count
            if not count:
                continue
            w = plot_w * count / peak
            parts.append(
                f'<rect class="seg" x="{x:.2f}" y="{y + 3}" width="{max(w, 1.0):.2f}" height="{row_h - 6}" '
                f'fill="{color}" data-row="{escape(label)}" data-segment="{escape(name)}" data-count="{count}">'
                f"<title>{escape(f'{label}: {count} {unit} {name}')}</title></rect>"
            )
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 15}" font-size="12" fill="#333">{total}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
