"""Line charts as inline SVG, drawn here: no plotting library, nothing fetched."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .parts import COLOURS, LABELS, WARN_COLOUR, _esc, _figure
from .rundir import RunData, _series

MAX_PATH_POINTS = 2000  # per curve; more is invisible at chart width and only adds bytes
MAX_MARKERS = 150  # hover targets per curve


@dataclass
class Line:
    label: str
    colour: str
    points: list[tuple[float, float | None]]
    dashed: bool = False


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [i * step for i in range(first, last + 1)]


def _tick_text(t: float) -> str:
    if abs(t) < 1e-12:
        return "0"
    if abs(t) >= 10_000 and float(t).is_integer():
        return f"{t / 1000:g}k"
    return f"{t:.4g}"


def _span(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    return lo, hi


def svg_chart(title: str, lines: Sequence[Line], marks: Sequence[tuple[float, str, str]] = (),
              width: int = 560, height: int = 250) -> str:
    """A line chart as inline SVG; hovering a point shows its value (native tooltips).

    ``marks`` are vertical lines (step, colour, tooltip), e.g. training-health warnings.
    Gaps (None values) break the line. Returns "" when there is nothing to draw.
    """
    pts = [(x, y) for ln in lines for x, y in ln.points if y is not None]
    if not pts:
        return ""
    left, right, top, bottom = 58, 14, 12, 30
    xt = _ticks(*_span([x for x, _ in pts] + [m[0] for m in marks]))
    yt = _ticks(*_span([y for _, y in pts]))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * ph

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{_esc(title)}">']
    for t in yt:
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{sy(t):.1f}" '
                   f'y2="{sy(t):.1f}"/><text class="tick" x="{left - 6}" y="{sy(t) + 4:.1f}" '
                   f'text-anchor="end">{_tick_text(t)}</text>')
    for t in xt:
        out.append(f'<line class="grid" x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" '
                   f'y2="{top + ph}"/><text class="tick" x="{sx(t):.1f}" y="{height - 10}" '
                   f'text-anchor="middle">{_tick_text(t)}</text>')
    for step, colour, tip in marks:
        out.append(f'<line class="mark" x1="{sx(step):.1f}" x2="{sx(step):.1f}" y1="{top}" '
                   f'y2="{top + ph}" stroke="{colour}"><title>{_esc(tip)}</title></line>')
    for ln in lines:
        points = ln.points
        if len(points) > MAX_PATH_POINTS:
            stride = math.ceil(len(points) / MAX_PATH_POINTS)
            points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
        d, pen_down = [], False
        for x, y in points:
            if y is None:
                pen_down = False
                continue
            d.append(f"{'L' if pen_down else 'M'}{sx(x):.1f} {sy(y):.1f}")
            pen_down = True
        dash = ' stroke-dasharray="6 4"' if ln.dashed else ""
        out.append(f'<path class="line" d="{" ".join(d)}" stroke="{ln.colour}"{dash}>'
                   f'<title>{_esc(ln.label)}</title></path>')
        finite = [(x, y) for x, y in ln.points if y is not None]
        # few points: always show the dots (an eval metric measured 3 times has no "line")
        cls = "pt on" if len(finite) <= 30 else "pt"
        for x, y in finite[::max(1, math.ceil(len(finite) / MAX_MARKERS))]:
            out.append(f'<circle class="{cls}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" '
                       f'fill="{ln.colour}"><title>{_esc(ln.label)}, iteration {x:.0f}: '
                       f'{y:.5g}</title></circle>')
    out.append(f'<rect class="frame" x="{left}" y="{top}" width="{pw}" height="{ph}"/></svg>')
    return "".join(out)


def _pair_chart(title: str, runs: list[RunData], keys: tuple[str, str], marks: bool) -> str:
    """Two related curves (D/G losses, D(x)/D(G(z))): by colour for one run; for several,
    colour is the run and solid/dashed tells the two apart."""
    lines, legend = [], []
    for i, run in enumerate(runs):
        for j, key in enumerate(keys):
            s = _series(run.train, key)
            if not s:
                continue
            if len(runs) == 1:
                colour, dashed, label = COLOURS[j], False, LABELS[key]
                legend.append((label, colour, dashed))
            else:
                colour, dashed = COLOURS[i % len(COLOURS)], j == 1
                label = f"{run.name}: {LABELS[key]}"
            lines.append(Line(label, colour, s, dashed))
    if len(runs) > 1:
        legend = [(f"{LABELS[k]} ({'dashed' if j else 'solid'})", "#444", j == 1)
                  for j, k in enumerate(keys)]
    warn_marks = []
    if marks:
        for i, run in enumerate(runs):
            colour = WARN_COLOUR if len(runs) == 1 else COLOURS[i % len(COLOURS)]
            for w in run.warnings:
                tip = f"{run.name}, iteration {w['step']}: {w.get('warning')}: " \
                      f"{w.get('message', '')}"
                warn_marks.append((float(w["step"]), colour, tip))
    return _figure(title, svg_chart(title, lines, warn_marks), legend)


def _key_charts(runs: list[RunData], rows_of: str, keys: list[str]) -> str:
    """One small chart per key, one line per run."""
    figs = []
    for key in keys:
        lines = [Line(run.name if len(runs) > 1 else LABELS.get(key, key),
                      COLOURS[i % len(COLOURS)], _series(getattr(run, rows_of), key))
                 for i, run in enumerate(runs)]
        title = LABELS.get(key, key)
        figs.append(_figure(title, svg_chart(title, [ln for ln in lines if ln.points],
                                             width=420, height=220)))
    return "".join(figs)
