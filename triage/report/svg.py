"""The timeline chart: findings per time bin, stacked by severity, as inline SVG (no script, no fonts)."""

from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd

from triage.finding import SEVERITIES

COLORS = {"info": "#8c96a3", "low": "#3f88c5", "medium": "#e0a100", "high": "#e2611e", "critical": "#b3152e"}
# bin widths tried in order, the first giving at most MAX_BINS bins wins
BINS = (
    ("minute", 60),
    ("10 minutes", 600),
    ("hour", 3600),
    ("6 hours", 6 * 3600),
    ("day", 86400),
    ("week", 7 * 86400),
    ("30 days", 30 * 86400),
    ("quarter", 91 * 86400),
    ("year", 365 * 86400),
)
MAX_BINS = 72


def _fmt(sec: int, width: int) -> str:
    ts = pd.Timestamp(sec, unit="s", tz="UTC")
    if width < 86400:
        return ts.strftime("%Y-%m-%d %H:%M")
    return ts.strftime("%Y-%m-%d")


def timeline_bins(ts: pd.Series, severity_codes: np.ndarray) -> tuple[str, int, np.ndarray, np.ndarray]:
    """(bin name, bin width in seconds, bin starts (epoch s), counts[bin, severity]) of the dated findings."""
    valid = ts.notna().to_numpy()
    secs = (ts[valid].astype("int64") // 1_000_000).to_numpy()  # datetime64[us] -> seconds
    sev = severity_codes[valid]
    if not len(secs):
        return "", 0, np.zeros(0, dtype=np.int64), np.zeros((0, len(SEVERITIES)), dtype=np.int64)
    lo, hi = int(secs.min()), int(secs.max())
    name, width = BINS[-1]
    for cand_name, cand in BINS:
        if (hi // cand - lo // cand + 1) <= MAX_BINS:
            name, width = cand_name, cand
            break
    first = lo // width
    nbins = int(hi // width - first + 1)
    idx = (secs // width - first).astype(np.int64)
    sev = np.clip(sev, 0, len(SEVERITIES) - 1)
    counts = np.bincount(idx * len(SEVERITIES) + sev, minlength=nbins * len(SEVERITIES))
    starts = (np.arange(nbins, dtype=np.int64) + first) * width
    return name, width, starts, counts.reshape(nbins, len(SEVERITIES))


def timeline_svg(
    ts: pd.Series,
    severity_codes: np.ndarray,
    *,
    marker: pd.Timestamp | None = None,
    marker_label: str = "",
    width: int = 960,
    height: int = 240,
) -> str:
    """The chart as an ``<svg>`` element (text escaped; safe to embed as is)."""
    name, bin_w, starts, counts = timeline_bins(ts, severity_codes)
    if not len(starts):
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {width} 40" role="img" '
            'aria-label="no dated findings"><text x="8" y="24" fill="#555">No dated findings.</text></svg>'
        )
    left, right, top, bottom = 48, 12, 12, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = counts.sum(axis=1)
    peak = max(int(totals.max()), 1)
    n = len(starts)
    step = plot_w / n
    bar_w = max(step * 0.8, 1.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(f"findings per {name}, stacked by severity")}">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h - plot_h * frac
        label = round(peak * frac)
        parts.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#555">{label}</text>'
        )
    for i in range(n):
        x = left + i * step + (step - bar_w) / 2
        y = top + plot_h
        tip = [f"{_fmt(int(starts[i]), bin_w)} ({name}): {int(totals[i])} findings"]
        for s_idx, sev in enumerate(SEVERITIES):
            c = int(counts[i, s_idx])
            if not c:
                continue
            h = plot_h * c / peak
            y -= h
            tip.append(f"{c} {sev}")
            parts.append(
                f'<rect x="{x:.2f}" y="{y:.2f}" width="{bar_w:.2f}" height="{max(h, 0.5):.2f}" '
                f'fill="{COLORS[sev]}" class="bar sev-{sev}"><title>{escape(tip[0])}: {c} {sev}</title></rect>'
            )
    every = max(1, -(-n // 6))
    ticks = list(range(0, n, every))
    if n - 1 - ticks[-1] >= every * 0.75:  # the last bin gets a label only where it has room
        ticks.append(n - 1)
    for i in ticks:
        x = left + i * step + step / 2
        anchor = "end" if i == n - 1 and n > 1 else "start" if i == 0 and n > 1 else "middle"
        x = left + plot_w if anchor == "end" else left if anchor == "start" else x
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="{anchor}" font-size="11" fill="#555">'
            f"{escape(_fmt(int(starts[i]), bin_w))}</text>"
        )
    if marker is not None:
        msec = int(marker.timestamp())
        lo, hi = int(starts[0]), int(starts[-1]) + bin_w
        if lo <= msec <= hi:
            x = left + (msec - lo) / (hi - lo) * plot_w
            parts.append(
                f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#333" '
                'stroke-dasharray="4 3"/>'
                f'<text x="{x + 4:.1f}" y="{top + 10}" font-size="11" fill="#333">{escape(marker_label)}</text>'
            )
    lx = left
    for sev in reversed(SEVERITIES):
        parts.append(f'<rect x="{lx}" y="{height - 16}" width="10" height="10" fill="{COLORS[sev]}"/>')
        parts.append(f'<text x="{lx + 14}" y="{height - 7}" font-size="11" fill="#333">{sev}</text>')
        lx += 78
    parts.append(
        f'<text x="{left + plot_w}" y="{height - 7}" text-anchor="end" font-size="11" fill="#555">'
        f"{escape(f'one bar per {name}, UTC')}</text>"
    )
    parts.append("</svg>")
    return "".join(parts)
