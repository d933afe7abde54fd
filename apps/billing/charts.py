"""Server-rendered SVG bar chart of dunning recovery per month (no JavaScript)."""

from __future__ import annotations

from django.utils.html import escape


def recovery_chart_svg(months: list[dict], *, width: int = 860, height: int = 300) -> str:
    """Per month: invoices that failed their first try (grey) and those recovered (green), with
    the recovery rate above each pair."""
    if not months:
        return '<p class="help">No failed first tries yet.</p>'
    pad_l, pad_r, pad_t, pad_b = 50, 20, 30, 40
    top = max(1, *(m["failed"] for m in months))
    slot = (width - pad_l - pad_r) / len(months)
    bar = max(4.0, min(40.0, slot / 3))

    def y(v: int) -> float:
        return pad_t + (1 - v / top) * (height - pad_t - pad_b)

    parts = []
    for k in range(5):
        v = round(top * k / 4)
        parts.append(
            f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e5e7eb"/>'
            f'<text x="{pad_l - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11" fill="#6b7280">{v}</text>'
        )
    base = y(0)
    for i, m in enumerate(months):
        x = pad_l + slot * i + slot / 2
        parts.append(
            f'<rect x="{x - bar:.1f}" y="{y(m["failed"]):.1f}" width="{bar:.1f}" height="{base - y(m["failed"]):.1f}" '
            f'fill="#9ca3af"><title>{m["failed"]} failed first try</title></rect>'
            f'<rect x="{x:.1f}" y="{y(m["recovered"]):.1f}" width="{bar:.1f}" height="{base - y(m["recovered"]):.1f}" '
            f'fill="#16a34a"><title>{m["recovered"]} recovered</title></rect>'
            f'<text x="{x:.1f}" y="{y(m["failed"]) - 6:.1f}" text-anchor="middle" font-size="11" fill="#111827">'
            f"{float(m['recovery_rate']):.0%}</text>"
            f'<text x="{x:.1f}" y="{height - 14}" text-anchor="middle" font-size="11" fill="#6b7280">'
            f"{escape(m['month'])}</text>"
        )
    legend = (
        f'<rect x="{pad_l}" y="6" width="10" height="10" fill="#9ca3af"/>'
        f'<text x="{pad_l + 14}" y="15" font-size="11">failed first try</text>'
        f'<rect x="{pad_l + 120}" y="6" width="10" height="10" fill="#16a34a"/>'
        f'<text x="{pad_l + 134}" y="15" font-size="11">recovered by retries (rate above)</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="dunning recovery per month">{legend}{"".join(parts)}'
        f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{base:.1f}" y2="{base:.1f}" stroke="#9ca3af"/></svg>'
    )
