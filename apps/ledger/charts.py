"""Server-rendered SVG line charts (no JavaScript, no external assets)."""

from __future__ import annotations

from datetime import datetime

from django.utils.html import escape

from apps.core.money import format_amount


def line_chart_svg(
    points: list[tuple[datetime, int]], *, currency: str, width: int = 860, height: int = 320
) -> str:
    """A step chart of balances over time; amounts labelled in major units."""
    if not points:
        return '<p class="help">No postings yet.</p>'
    pad_l, pad_r, pad_t, pad_b = 110, 20, 20, 40
    xs = [p[0].timestamp() for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0, *ys), max(0, *ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1

    def sx(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * (width - pad_l - pad_r)

    def sy(y: float) -> float:
        return pad_t + (y1 - y) / (y1 - y0) * (height - pad_t - pad_b)

    path = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if i:
            path.append(f"L{sx(x):.1f},{sy(ys[i - 1]):.1f}")  # steps: balance holds until the next posting
        path.append(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}")
    ticks = []
    for k in range(5):
        v = y0 + (y1 - y0) * k / 4
        ticks.append(
            f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#e5e7eb"/>'
            f'<text x="{pad_l - 8}" y="{sy(v) + 4:.1f}" text-anchor="end" font-size="11" fill="#6b7280">'
            f"{escape(format_amount(round(v), currency))}</text>"
        )
    labels = (
        f'<text x="{pad_l}" y="{height - 12}" font-size="11" fill="#6b7280">{points[0][0]:%Y-%m-%d %H:%M}</text>'
        f'<text x="{width - pad_r}" y="{height - 12}" font-size="11" fill="#6b7280" text-anchor="end">'
        f"{points[-1][0]:%Y-%m-%d %H:%M}</text>"
    )
    zero = f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{sy(0):.1f}" y2="{sy(0):.1f}" stroke="#9ca3af"/>'
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="balance over time">{"".join(ticks)}{zero}'
        f'<path d="{" ".join(path)}" fill="none" stroke="#4f46e5" stroke-width="2"/>{labels}</svg>'
    )
