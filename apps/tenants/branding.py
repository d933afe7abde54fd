"""How a marketplace looks on the pages its customers and vendors see (vendor onboarding, the
hosted checkout, the payment-authentication page): one reading of its branding for every page."""

from __future__ import annotations

import re
from typing import Any

DEFAULT_COLOR = "#4f46e5"  # a neutral indigo, when the marketplace's colour is unset or malformed
_HEX = re.compile(r"^#([0-9a-fA-F]{6})$")


def marketplace_brand(marketplace: Any) -> dict[str, str]:
    """The marketplace's name, colour (a safe CSS hex colour), a readable text colour on it, a
    light tint, its initial and its logo URL (http(s) only, else empty) for the templates."""
    color = getattr(marketplace, "brand_color", "") or ""
    if not _HEX.match(color):
        color = DEFAULT_COLOR
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    name = getattr(marketplace, "name", "") or ""
    logo = getattr(marketplace, "logo_url", "") or ""
    return {
        "name": name or "Marketplace",
        "color": color.lower(),
        "on_color": "#111827" if luminance > 160 else "#ffffff",
        "tint": f"rgba({r}, {g}, {b}, 0.08)",
        "initial": (name or "M")[:1].upper(),
        "logo_url": logo if logo.startswith(("https://", "http://")) else "",
    }
