"""Metrics over the lineage: one small SVG chart per metric, points linked to versions,
each joined to its first parent (so a branch reads as its own line)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

from markupsafe import Markup

from ..records import Version

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 520, 190, 64, 14, 14, 30
X_LABELS = 12  # up to this many versions each get a label on the x axis


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def metric_chart(versions: Sequence[Version], metric: str,
                 href: Callable[[Version], str]) -> Markup:
    pts = [(v, float(v.metrics[metric])) for v in versions
           if isinstance(v.metrics.get(metric), int | float)
           and not isinstance(v.metrics.get(metric), bool)
           and math.isfinite(float(v.metrics[metric]))]
    if not pts:
        return Markup("")
    pts.sort(key=lambda p: p[0].number)
    n_lo, n_hi = pts[0][0].number, pts[-1][0].number
    y_lo, y_hi = min(p[1] for p in pts), max(p[1] for p in pts)
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 1, y_hi + 1

    def sx(n: int) -> float:
        span = max(1, n_hi - n_lo)
        return PAD_L + (n - n_lo) * (W - PAD_L - PAD_R) / span

    def sy(y: float) -> float:
        return H - PAD_B - (y - y_lo) * (H - PAD_T - PAD_B) / (y_hi - y_lo)

    best = max(pts, key=lambda p: p[1])
    desc = (f"{metric} over {len(pts)} versions, from v{n_lo} to v{n_hi}; lowest "
            f"{_fmt(min(p[1] for p in pts))}, highest {_fmt(best[1])} at v{best[0].number}")
    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" '
           f'role="group" aria-label="{escape(desc)}">',
           f"<desc>{escape(desc)}</desc>",
           f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" '
           'class="axis"/>',
           f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" class="axis"/>',
           f'<text x="{PAD_L - 4}" y="{sy(y_hi) + 4:.1f}" class="tick" text-anchor="end">'
           f"{_fmt(y_hi)}</text>",
           f'<text x="{PAD_L - 4}" y="{sy(y_lo) + 4:.1f}" class="tick" text-anchor="end">'
           f"{_fmt(y_lo)}</text>",
           ]
    # Every version's number under its point when they fit, else the ends and middle.
    numbers = sorted({v.number for v, _ in pts})
    shown = numbers if len(numbers) <= X_LABELS else [
        numbers[0], numbers[len(numbers) // 2], numbers[-1]]
    for i, n in enumerate(shown):
        anchor = "start" if i == 0 and len(shown) > 1 else (
            "end" if i == len(shown) - 1 and len(shown) > 1 else "middle")
        out.append(f'<text x="{sx(n):.1f}" y="{H - 6}" class="tick" '
                   f'text-anchor="{anchor}">v{n}</text>')
    where = {v.id: (sx(v.number), sy(y)) for v, y in pts}
    lines = []
    for v, _ in pts:
        if v.parents and v.parents[0] in where:
            (x0, y0), (x1, y1) = where[v.parents[0]], where[v.id]
            lines.append(f"M{x0:.1f},{y0:.1f}L{x1:.1f},{y1:.1f}")
    if lines:
        out.append(f'<path class="series" d="{"".join(lines)}" aria-hidden="true"/>')
    for v, y in pts:
        x, yy = where[v.id]
        label = f"v{v.number}: {metric} = {_fmt(y)}"
        out.append(f'<a href="{escape(href(v))}" aria-label="{escape(label)}">'
                   f"<title>{escape(label)}</title>"
                   f'<circle cx="{x:.1f}" cy="{yy:.1f}" r="3.5" class="point"/></a>')
    out.append("</svg>")
    return Markup("".join(out))
