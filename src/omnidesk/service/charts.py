"""Charts as SVG, written on the server: no script and nothing loaded from
elsewhere, so the reports page works offline, under a strict CSP, and in a
mail or a printout. Every text is escaped; colours are presentation
attributes (an inline ``style`` would need ``'unsafe-inline'``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#2b59c3", "#d9730d", "#1e8e3e", "#c0392b", "#7b4bb7", "#0f8b8d", "#8a6d3b", "#5d6b82")
W, H = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 14, 46


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.1f}"


def _short(label: str) -> str:
    # 2026-03-04 -> 03-04; 2026-03 -> 2026-03
    return label[5:] if len(label) == 10 else label


def _frame(title: str, body: list[str], legend: Sequence[tuple[str, str]]) -> str:
    leg = []
    x = LEFT
    for name, color in legend:
        leg.append(
            f'<rect x="{x}" y="{H - 14}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="{H - 5}" font-size="11" fill="#445">{escape(name)}</text>'
        )
        x += 22 + 7 * len(name)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img"'
        f' class="chart" aria-label="{escape(title)}" font-family="system-ui, sans-serif">'
        f"<title>{escape(title)}</title>" + "".join(body) + "".join(leg) + "</svg>"
    )


def _axes(labels: Sequence[str], top: float, bottom: float = 0.0) -> tuple[list[str], float]:
    """Grid, y ticks and x labels; returns the parts and the x step."""
    plot_w = W - LEFT - RIGHT
    plot_h = H - TOP - BOTTOM
    parts = []
    for i in range(5):
        v = bottom + (top - bottom) * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#e3e7ee"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end"'
            f' fill="#687385">{_fmt(v)}</text>'
        )
    n = max(len(labels), 1)
    step = plot_w / n
    every = max(1, math.ceil(n / 10))
    for i, label in enumerate(labels):
        if i % every:
            continue
        x = LEFT + step * (i + 0.5)
        parts.append(
            f'<text x="{x:.1f}" y="{H - BOTTOM + 14}" font-size="10" text-anchor="middle"'
            f' fill="#687385">{escape(_short(label))}</text>'
        )
    return parts, step


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
) -> str:
    """Lines over time; a missing value (None) breaks the line."""
    values = [v for _, vs in series for v in vs if v is not None]
    lo = min(0.0, min(values, default=0.0))
    top = _nice_max(max(values, default=0.0))
    parts, step = _axes(labels, top, lo)
    plot_h = H - TOP - BOTTOM
    legend = []
    for k, (name, vs) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        legend.append((name, color))
        run: list[str] = []
        for i, v in enumerate(vs):
            if v is None:
                if len(run) > 1:
                    parts.append(_polyline(run, color))
                run = []
                continue
            x = LEFT + step * (i + 0.5)
            y = TOP + plot_h - plot_h * (v - lo) / ((top - lo) or 1)
            run.append(f"{x:.1f},{y:.1f}")
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.2" fill="{color}">'
                f"<title>{escape(labels[i])}: {_fmt(v)}</title></circle>"
            )
        if len(run) > 1:
            parts.append(_polyline(run, color))
    if not values:
        parts.append(_empty())
    return _frame(title, parts, legend)


def _polyline(points: list[str], color: str) -> str:
    return (
        f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}"'
        ' stroke-width="2" stroke-linejoin="round"/>'
    )


def _empty() -> str:
    return (
        f'<text x="{W / 2}" y="{H / 2}" font-size="13" text-anchor="middle" fill="#8a94a6">'
        "no data in this period</text>"
    )


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
) -> str:
    """Stacked bars, one per label."""
    totals = [sum(vs[i] for _, vs in series) for i in range(len(labels))]
    top = _nice_max(max(totals, default=0.0))
    parts, step = _axes(labels, top)
    plot_h = H - TOP - BOTTOM
    width = max(2.0, step * 0.7)
    legend = []
    base = [0.0] * len(labels)
    for k, (name, vs) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        legend.append((name, color))
        for i, v in enumerate(vs):
            if not v:
                continue
            h = plot_h * v / top
            x = LEFT + step * i + (step - width) / 2
            y = TOP + plot_h - plot_h * base[i] / top - h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}"'
                f' fill="{color}"><title>{escape(labels[i])} {escape(name)}: {_fmt(v)}</title>'
                "</rect>"
            )
            base[i] += v
    if not any(totals):
        parts.append(_empty())
    return _frame(title, parts, legend if len(series) > 1 else [])
