"""Server-rendered inline SVG charts for the admin overview, drawn like the training's loss chart
(training.progress.loss_chart_svg): no script, no inline style, CSS classes only
(static/css/backoffice.css), a <title> on every mark so a pointer shows its value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH = 640
HEIGHT = 200
PAD = 32


@dataclass(frozen=True)
class Series:
    """One named row of values, one per day; `css` is its class (its colour in backoffice.css)."""

    name: str
    css: str
    values: Sequence[float]


def _number(value: float) -> str:
    return f"{value:,.2f}" if isinstance(value, float) and not value.is_integer() else f"{int(value):,}"


def _frame(label: str, days: Sequence[date], top: float, prefix: str, body: SafeString) -> SafeString:
    bottom = HEIGHT - PAD
    return format_html(
        '<svg viewBox="0 0 {w} {h}" role="img" aria-label="{label}">'
        '<line class="axis" x1="{p}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
        '<line class="axis" x1="{p}" y1="{p}" x2="{p}" y2="{bottom}"/>'
        '<text x="2" y="{ytop}">{prefix}{top}</text><text x="2" y="{ybottom}">0</text>'
        '<text x="{p}" y="{ylabel}">{first}</text><text x="{xlast}" y="{ylabel}">{last}</text>'
        "{body}</svg>",
        w=WIDTH,
        h=HEIGHT,
        label=label,
        p=PAD,
        bottom=bottom,
        right=WIDTH - PAD,
        ytop=PAD - 6,
        top=_number(top),
        prefix=prefix,
        ybottom=bottom + 4,
        ylabel=HEIGHT - 8,
        first=days[0].isoformat() if days else "",
        xlast=WIDTH - PAD - 70,
        last=days[-1].isoformat() if days else "",
        body=body,
    )


def stacked_bars_svg(
    label: str, days: Sequence[date], series: Sequence[Series], prefix: str = ""
) -> SafeString:
    """One bar a day, the series stacked in order; an empty chart still draws its axes."""
    totals = [sum(s.values[i] for s in series) for i in range(len(days))]
    top = max(totals, default=0) or 1
    slot = (WIDTH - 2 * PAD) / max(len(days), 1)
    scale = (HEIGHT - 2 * PAD) / top
    rects = []
    for i, day in enumerate(days):
        base: float = HEIGHT - PAD
        for s in series:
            value = s.values[i]
            if not value:
                continue
            height = value * scale
            base -= height
            rects.append(
                (
                    s.css,
                    f"{PAD + i * slot + 1:.1f}",
                    f"{base:.1f}",
                    f"{max(slot - 2, 1):.1f}",
                    f"{height:.1f}",
                    f"{day.isoformat()}: {prefix}{_number(value)} {s.name}",
                )
            )
    body = format_html_join(
        "",
        '<rect class="{}" x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>',
        rects,
    )
    return _frame(label, days, top, prefix, body)


def lines_svg(label: str, days: Sequence[date], series: Sequence[Series], prefix: str = "") -> SafeString:
    """One line a series over the days, with a dot (and its title) at each day that has a value."""
    top = max((v for s in series for v in s.values), default=0) or 1
    step = (WIDTH - 2 * PAD) / max(len(days) - 1, 1)
    scale = (HEIGHT - 2 * PAD) / top
    parts = []
    for s in series:
        coords = [(PAD + i * step, HEIGHT - PAD - v * scale) for i, v in enumerate(s.values)]
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        dots = format_html_join(
            "",
            '<circle class="{}" cx="{}" cy="{}" r="2.5"><title>{}</title></circle>',
            [
                (
                    s.css,
                    f"{x:.1f}",
                    f"{y:.1f}",
                    f"{days[i].isoformat()}: {prefix}{_number(s.values[i])} {s.name}",
                )
                for i, (x, y) in enumerate(coords)
                if s.values[i]
            ],
        )
        parts.append(format_html('<polyline class="line {}" points="{}"/>{}', s.css, points, dots))
    body = format_html_join("", "{}", [(p,) for p in parts])
    return _frame(label, days, top, prefix, body)


def share_bars_svg(label: str, rows: Sequence[tuple[str, int, int]]) -> SafeString:
    """Horizontal bars: (name, count, out of) each, drawn as the share count / out of."""
    row_height = 22
    height = max(len(rows), 1) * row_height + 8
    label_width = 150
    span = WIDTH - label_width - 90
    marks = []
    for i, (name, count, total) in enumerate(rows):
        share = count / total if total else 0.0
        y = 4 + i * row_height
        marks.append(
            format_html(
                '<text x="0" y="{ty}">{name}</text>'
                '<rect class="bar failed" x="{x}" y="{y}" width="{w}" height="{h}">'
                "<title>{name}: {count} of {total} ({pct}%)</title></rect>"
                '<text x="{tx}" y="{ty}">{count} ({pct}%)</text>',
                ty=y + 14,
                name=name,
                x=label_width,
                y=y,
                w=f"{max(share * span, 1):.1f}",
                h=row_height - 6,
                count=count,
                total=total,
                pct=f"{share * 100:.1f}",
                tx=f"{label_width + max(share * span, 1) + 6:.1f}",
            )
        )
    body = format_html_join("", "{}", [(m,) for m in marks])
    return format_html(
        '<svg viewBox="0 0 {w} {h}" role="img" aria-label="{label}">{body}</svg>',
        w=WIDTH,
        h=height,
        label=label,
        body=body,
    )
