"""Template helpers of the vendor pages."""

from __future__ import annotations

from django import template

from apps.core.money import format_amount

register = template.Library()


@register.simple_tag
def money(amount: int, currency: str) -> str:
    """``{% money transfer.amount transfer.currency %}`` → ``12.34 USD`` (minor units in)."""
    return format_amount(int(amount), currency)
