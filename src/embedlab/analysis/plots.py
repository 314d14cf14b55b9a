"""Self-contained SVG plots (no JavaScript, no network): scatter with hover text, overlaid
histograms with a threshold line, line charts, heat maps and horizontal bars.

Each function returns an ``<svg class="plot">`` string; hover text uses SVG ``<title>``
elements, which every browser shows as a tooltip.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np

__all__ = ["bars", "heatmap", "histograms", "lines", "scatter"]

PALETTE = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22",
)  # fmt: skip
W, H, PAD = 640, 400, 48


def _frame(body: str, title: str, xlabel: str, ylabel: str, w: int = W, h: int = H) -> str:
    return (
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" '
        f'width="{w}" height="{h}" role="img" aria-label="{escape(title)}">'
        f'<text x="{w / 2}" y="18" text-anchor="middle" class="t">{escape(title)}</text>'
        f'<text x="{w / 2}" y="{h - 6}" text-anchor="middle" class="l">{escape(xlabel)}</text>'
        f'<text x="12" y="{h / 2}" text-anchor="middle" class="l" '
        f'transform="rotate(-90 12 {h / 2})">{escape(ylabel)}</text>'
        f'<rect x="{PAD}" y="{PAD / 2 + 8}" width="{w - 1.5 * PAD}" height="{h - 1.5 * PAD}" '
        f'fill="none" stroke="#ccc"/>{body}</svg>'
    )


def _scale(values: np.ndarray, lo: float, hi: float, a: float, b: float) -> np.ndarray:
    span = hi - lo if hi > lo else 1.0
    return a + (values - lo) / span * (b - a)


def _axes_ticks(lo: float, hi: float, horizontal: bool, w: int = W, h: int = H) -> str:
    out = []
    for v in np.linspace(lo, hi, 5):
        if horizontal:
            x = _scale(np.array([v]), lo, hi, PAD, w - PAD / 2)[0]
            out.append(
                f'<text x="{x:.1f}" y="{h - PAD + 16}" text-anchor="middle" '
                f'class="k">{v:.3g}</text>'
            )
        else:
            y = _scale(np.array([v]), lo, hi, h - PAD + 8, PAD / 2 + 8)[0]
            out.append(
                f'<text x="{PAD - 4}" y="{y:.1f}" text-anchor="end" class="k">{v:.3g}</text>'
            )
    return "".join(out)


def scatter(
    xy: np.ndarray,
    groups: Sequence[str],
    hover: Sequence[str],
    *,
    title: str,
    highlight: str | None = None,
) -> str:
    """2-D points coloured by group; ``highlight`` group drawn as black crosses on top."""
    xy = np.asarray(xy, dtype=float)
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    px = _scale(xy[:, 0], x0, x1, PAD + 4, W - PAD / 2 - 4)
    py = _scale(xy[:, 1], y0, y1, H - PAD + 4, PAD / 2 + 12)
    names = sorted(set(groups) - {highlight})
    colour = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(names)}
    dots, crosses = [], []
    for x, y, g, t in zip(px, py, groups, hover, strict=True):  # one SVG element per point
        tip = f"<title>{escape(t)}</title>"
        if g == highlight:
            crosses.append(
                f'<path d="M{x - 3:.1f},{y - 3:.1f}l6,6m0,-6l-6,6" stroke="#000" '
                f'stroke-width="1.4">{tip}</path>'
            )
        else:
            dots.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.6" fill="{colour[g]}" '
                f'fill-opacity="0.75">{tip}</circle>'
            )
    return _frame("".join(dots + crosses), title, "component 1", "component 2")


def histograms(
    series: dict[str, np.ndarray],
    *,
    title: str,
    xlabel: str,
    threshold: float | None = None,
    bins: int = 40,
) -> str:
    """Overlaid density histograms of each named series, with an optional vertical line."""
    allv = np.concatenate([np.asarray(v, float) for v in series.values() if len(v)])
    lo, hi = float(allv.min()), float(allv.max())
    if threshold is not None and not np.isfinite(threshold):
        threshold = None  # nothing is rejected: there is no line to draw
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    dens = {k: np.histogram(v, edges, density=True)[0] for k, v in series.items() if len(v)}
    top = max(float(d.max()) for d in dens.values()) or 1.0
    body = []
    colours = ("#4e79a7", "#e15759", "#59a14f", "#f28e2b")
    for i, (name, d) in enumerate(dens.items()):
        c = colours[i % len(colours)]
        xs = _scale(edges, lo, hi, PAD, W - PAD / 2)
        ys = _scale(d, 0, top, H - PAD + 8, PAD / 2 + 8)
        for j, v in enumerate(d):
            if v > 0:
                body.append(
                    f'<rect x="{xs[j]:.1f}" y="{ys[j]:.1f}" width="{xs[j + 1] - xs[j]:.1f}" '
                    f'height="{H - PAD + 8 - ys[j]:.1f}" fill="{c}" fill-opacity="0.45">'
                    f"<title>{escape(name)}: {edges[j]:.3g}–{edges[j + 1]:.3g}</title></rect>"
                )
        body.append(
            f'<rect x="{W - 190}" y="{40 + 18 * i}" width="12" height="12" fill="{c}"/>'
            f'<text x="{W - 172}" y="{50 + 18 * i}" class="k">{escape(name)} '
            f"({len(series[name])})</text>"
        )
    if threshold is not None:
        x = _scale(np.array([threshold]), lo, hi, PAD, W - PAD / 2)[0]
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PAD / 2 + 8}" y2="{H - PAD + 8}" '
            f'stroke="#000" stroke-dasharray="4 3"><title>threshold {threshold:.4g}</title>'
            f'</line><text x="{x + 4:.1f}" y="{H - PAD - 4}" class="k">threshold</text>'
        )
    body.append(_axes_ticks(lo, hi, True))
    return _frame("".join(body), title, xlabel, "density")


def lines(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    diagonal: bool = False,
) -> str:
    """Line chart of named (x, y) curves on [0, 1] × [0, 1] (e.g. ROC)."""
    body = []
    if diagonal:
        body.append(
            f'<line x1="{PAD}" y1="{H - PAD + 8}" x2="{W - PAD / 2}" y2="{PAD / 2 + 8}" '
            'stroke="#bbb" stroke-dasharray="3 3"/>'
        )
    for i, (name, (x, y)) in enumerate(curves.items()):
        px = _scale(np.asarray(x, float), 0, 1, PAD, W - PAD / 2)
        py = _scale(np.asarray(y, float), 0, 1, H - PAD + 8, PAD / 2 + 8)
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py, strict=True))
        c = PALETTE[i % len(PALETTE)]
        body.append(
            f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2">'
            f"<title>{escape(name)}</title></polyline>"
            f'<text x="{W - 200}" y="{H - PAD - 10 - 16 * i}" class="k" fill="{c}">'
            f"{escape(name)}</text>"
        )
    body.append(_axes_ticks(0, 1, True) + _axes_ticks(0, 1, False))
    return _frame("".join(body), title, xlabel, ylabel)


def heatmap(
    values: np.ndarray,
    rows: Sequence[str],
    cols: Sequence[str],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    fmt: str = "{:.3f}",
) -> str:
    """A grid of cells shaded by value (higher = darker), each labelled and hoverable."""
    v = np.asarray(values, float)
    finite = v[np.isfinite(v)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    cw = (W - 1.5 * PAD) / max(len(cols), 1)
    ch = (H - 2 * PAD) / max(len(rows), 1)
    body = []
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            x, y = PAD + j * cw, PAD / 2 + 8 + i * ch
            val = v[i, j]
            if np.isfinite(val):
                shade = (val - lo) / (hi - lo) if hi > lo else 1.0
                red, grn, blu = (int(c - k * shade) for c, k in ((240, 190), (244, 130), (250, 80)))
                fill = f"rgb({red},{grn},{blu})"
                text = fmt.format(val)
            else:
                fill, text = "#f4f4f4", "–"
            ink = "#fff" if np.isfinite(val) and (val - lo) / ((hi - lo) or 1) > 0.6 else "#222"
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{cw:.1f}" height="{ch:.1f}" '
                f'fill="{fill}" stroke="#fff"><title>{escape(str(r))} × {escape(str(c))}: '
                f"{text}</title></rect>"
                f'<text x="{x + cw / 2:.1f}" y="{y + ch / 2 + 4:.1f}" text-anchor="middle" '
                f'class="k" fill="{ink}">{text}</text>'
            )
        body.append(
            f'<text x="{PAD - 4}" y="{PAD / 2 + 8 + (i + 0.5) * ch + 4:.1f}" '
            f'text-anchor="end" class="k">{escape(str(r))}</text>'
        )
    for j, c in enumerate(cols):
        body.append(
            f'<text x="{PAD + (j + 0.5) * cw:.1f}" y="{H - PAD + 22}" text-anchor="middle" '
            f'class="k">{escape(str(c))}</text>'
        )
    return _frame("".join(body), title, xlabel, ylabel)


def bars(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str) -> str:
    """Horizontal bars on [0, 1], one per label, in the given order."""
    n = len(labels)
    h = 40 + 16 * n + 40
    left = 170
    body = []
    for i, (lab, val) in enumerate(zip(labels, values, strict=True)):
        y = 34 + 16 * i
        wbar = (W - left - 30) * max(0.0, min(1.0, float(val)))
        body.append(
            f'<text x="{left - 6}" y="{y + 11}" text-anchor="end" class="k">'
            f"{escape(str(lab)[:28])}</text>"
            f'<rect x="{left}" y="{y}" width="{wbar:.1f}" height="12" fill="#4e79a7">'
            f"<title>{escape(str(lab))}: {float(val):.3f}</title></rect>"
            f'<text x="{left + wbar + 4:.1f}" y="{y + 11}" class="k">{float(val):.2f}</text>'
        )
    return (
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" '
        f'width="{W}" height="{h}" role="img" aria-label="{escape(title)}">'
        f'<text x="{W / 2}" y="18" text-anchor="middle" class="t">{escape(title)}</text>'
        f'{"".join(body)}<text x="{W / 2}" y="{h - 6}" text-anchor="middle" class="l">'
        f"{escape(xlabel)}</text></svg>"
    )
