"""Inline SVG charts for the HTML report: line charts (learning curves) and stacked
horizontal bars (class make-up, time per phase). Plain SVG, no script."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Bar", "Series", "line_chart", "nice_ticks", "stacked_bars"]

FONT = 'font-family="system-ui, sans-serif" font-size="11"'


@dataclass
class Series:
    """One line: ``points`` (x, y), its colour and name."""

    name: str
    points: Sequence[tuple[float, float]]
    color: str


@dataclass
class Bar:
    """One stacked bar: a label on its left, ``(name, value, colour)`` parts, a note on
    its right."""

    label: str
    parts: Sequence[tuple[str, float, str]]
    note: str = ""


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values covering ``low .. high`` (steps of 1, 2 or 5 x 10^n)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0) * 0.1
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(low / step + 1e-9) * step
    ticks = []
    value = start
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:g}"


def line_chart(
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    ceilings: Sequence[tuple[str, float]] = (),
    x_scale: float = 1.0,
    width: int = 640,
    height: int = 340,
) -> str:
    """An SVG line chart; ``x_scale`` multiplies x for display (100 for percent).
    ``ceilings`` are dashed horizontal lines (a full-data run)."""
    left, right, top, bottom = 56, 16, 14, 42
    xs = [x * x_scale for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points] + [v for _, v in ceilings]
    if not xs:
        xs = [0.0, 1.0 * x_scale]
    if not ys:
        ys = [0.0, 1.0]
    x_ticks = nice_ticks(min(0.0, min(xs)), max(xs))
    y_ticks = nice_ticks(max(0.0, min(ys) - 0.02), max(ys) + 0.02)
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x * x_scale - x0) / ((x1 - x0) or 1) * plot_w

    def py(y: float) -> float:
        return top + (1 - (y - y0) / ((y1 - y0) or 1)) * plot_h

    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" class="chart" {FONT}>']
    for t in y_ticks:
        y = py(t)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{_fmt(t)}</text>')
    for t in x_ticks:
        x = left + (t - x0) / ((x1 - x0) or 1) * plot_w
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#f0f0f0"/>')
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle" fill="#555">{_fmt(t)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" fill="#333">'
               f"{escape(x_label)}</text>")
    out.append(f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle" '
               f'fill="#333">{escape(y_label)}</text>')
    for name, value in ceilings:
        y = py(value)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#222" '
                   f'stroke-dasharray="6 4"><title>{escape(name)}: {value:.4f}</title></line>')
        out.append(f'<text x="{left + 6}" y="{y - 5:.1f}" fill="#222">'
                   f"{escape(name)} {value:.3f}</text>")
    for s in series:
        pts = sorted(s.points)
        if not pts:
            continue
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline class="series" data-name="{escape(s.name)}" points="{coords}" fill="none" '
                   f'stroke="{s.color}" stroke-width="2"/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{s.color}">'
                       f"<title>{escape(s.name)}: {_fmt(round(x * x_scale, 3))}, {y:.4f}</title></circle>")
    out.append("</svg>")
    return "".join(out)


def stacked_bars(bars: Sequence[Bar], *, unit: str = "", relative: bool = True, width: int = 640) -> str:
    """Horizontal stacked bars, one per row; ``relative`` scales each bar to 100 %,
    otherwise every bar shares the largest total's scale."""
    label_w, note_w, row_h, gap = 96, 110, 18, 6
    plot_w = width - label_w - note_w
    height = len(bars) * (row_h + gap) + gap
    largest = max((sum(v for _, v, _ in b.parts) for b in bars), default=0.0) or 1.0
    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" class="chart bars" {FONT}>']
    for row, bar in enumerate(bars):
        y = gap + row * (row_h + gap)
        total = sum(v for _, v, _ in bar.parts)
        scale = plot_w / (total if relative else largest) if total > 0 else 0.0
        out.append(f'<text x="{label_w - 6}" y="{y + row_h - 5}" text-anchor="end" fill="#333">'
                   f"{escape(bar.label)}</text>")
        x = float(label_w)
        for name, value, color in bar.parts:
            if value <= 0:
                continue
            w = value * scale
            share = f" ({100 * value / total:.1f}%)" if total else ""
            out.append(f'<rect x="{x:.2f}" y="{y}" width="{max(w, 0.5):.2f}" height="{row_h}" fill="{color}">'
                       f"<title>{escape(name)}: {value:g}{unit}{share}</title></rect>")
            x += w
        if bar.note:
            out.append(f'<text x="{label_w + plot_w + 6}" y="{y + row_h - 5}" fill="#555">{escape(bar.note)}</text>')
    out.append("</svg>")
    return "".join(out)
