"""Bar charts as small SVG files, with no plotting library: a few panels of labelled bars.

    from svgplot import Panel, bar_chart
    Path("docs/img/x.svg").write_text(bar_chart([Panel("MB/s", {"a": 1.0, "b": 2.0})]))
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

__all__ = ["Panel", "bar_chart"]

_COLORS = ["#3b7dd8", "#9a9a9a", "#5f5f5f", "#d8903b"]


@dataclass(frozen=True)
class Panel:
    title: str
    values: dict[str, float]
    lower_is_better: bool = False


def bar_chart(panels: list[Panel], *, title: str = "", width: int = 260, height: int = 200) -> str:
    """One row of panels; each bar is labelled with its value."""
    top = 28 if title else 8
    total_width = width * len(panels)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_width}" '
        f'height="{height + top}" font-family="sans-serif" font-size="11">',
        f'<rect width="{total_width}" height="{height + top}" fill="white"/>',
    ]
    if title:
        out.append(f'<text x="{total_width / 2}" y="18" text-anchor="middle" font-size="13" '
                   f'font-weight="bold">{escape(title)}</text>')
    for i, panel in enumerate(panels):
        x0 = i * width
        plot_top, plot_bottom = top + 22, top + height - 30
        out.append(f'<text x="{x0 + width / 2}" y="{top + 12}" text-anchor="middle" '
                   f'font-weight="bold">{escape(panel.title)}'
                   f'{" (lower is better)" if panel.lower_is_better else ""}</text>')
        peak = max(panel.values.values(), default=0) or 1.0
        n = max(len(panel.values), 1)
        slot = (width - 30) / n
        for j, (label, value) in enumerate(panel.values.items()):
            bar_h = (plot_bottom - plot_top) * value / peak
            x = x0 + 15 + j * slot + slot * 0.15
            w = slot * 0.7
            y = plot_bottom - bar_h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bar_h:.1f}" '
                       f'fill="{_COLORS[j % len(_COLORS)]}"/>')
            out.append(f'<text x="{x + w / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">'
                       f'{value:,.1f}</text>')
            out.append(f'<text x="{x + w / 2:.1f}" y="{plot_bottom + 14}" text-anchor="middle">'
                       f'{escape(label)}</text>')
        out.append(f'<line x1="{x0 + 10}" y1="{plot_bottom}" x2="{x0 + width - 10}" '
                   f'y2="{plot_bottom}" stroke="#333"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
