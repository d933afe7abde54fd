"""What the vendor dashboard shows, read in one place (selectors for the page in ``views``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils.safestring import SafeString, mark_safe

from apps.core.money import format_amount
from apps.ledger.charts import line_chart_svg
from apps.ledger.models import Account
from apps.ledger.selectors import balance_history
from apps.vendors.models import Payout, Transfer, Vendor
from apps.vendors.selectors import vendor_balances

HISTORY_LIMIT = 25
STAGES = (
    ("available", "Available", "In your payout account, paid out on the next payout."),
    ("pending", "Pending", "Earned from sales, on its way to your payout account."),
    ("held", "Held", "Waiting until payouts are enabled or a hold is lifted."),
)


@dataclass(frozen=True)
class BalanceCard:
    key: str
    label: str
    help: str
    amounts: list[str]  # formatted, one per currency; ["0.00 USD"] when empty


@dataclass(frozen=True)
class Chart:
    title: str
    svg: SafeString


@dataclass(frozen=True)
class Dashboard:
    vendor: Vendor
    balances: list[BalanceCard]
    schedule: str  # the payout schedule in words
    upcoming: list[Payout]
    transfers: list[Transfer]
    payouts: list[Payout]
    charts: list[Chart] = field(default_factory=list)


def payout_schedule_in_words(vendor: Vendor) -> str:
    """``Weekly, when your available balance is at least 25.00 USD.`` and the like."""
    minimum = (
        f", when your available balance is at least {format_amount(vendor.payout_minimum, vendor.default_currency)}"
        if vendor.payout_minimum
        else ""
    )
    if vendor.payouts_held:
        return "Payouts are on hold by the marketplace; your balance keeps accruing until the hold is lifted."
    if not vendor.payouts_enabled:
        return "Payouts start once your payout account is verified."
    if vendor.payout_schedule == Vendor.PayoutSchedule.MANUAL:
        return f"Payouts are made by the marketplace on request{minimum}."
    return f"{vendor.get_payout_schedule_display().capitalize()} payouts of your available balance{minimum}."


def balance_charts(*, vendor: Vendor, currencies: list[str]) -> list[Chart]:
    """One step chart per stage (available, pending) and currency that has any postings, drawn
    server-side by the admin's chart helper (inline SVG, no JavaScript)."""
    codes = {f"vendor_payable:{vendor.id}": "Available", f"vendor_pending:{vendor.id}": "Pending"}
    accounts = Account.objects.filter(code__in=codes).values_list("code", "currency")
    known = {(code, currency.lower()) for code, currency in accounts}
    charts = []
    for currency in currencies:
        for code, label in codes.items():
            if (code, currency) not in known:
                continue
            points: list[tuple[datetime, int]] = balance_history(code=code, currency=currency.upper())
            if points:
                # The balance was zero before the first posting: start the line there.
                points = [(points[0][0] - timedelta(days=1), 0), *points]
                svg = line_chart_svg(points, currency=currency, width=640, height=260)
                charts.append(Chart(title=f"{label} ({currency.upper()})", svg=mark_safe(svg)))  # noqa: S308
    return charts


def vendor_dashboard(*, vendor: Vendor) -> Dashboard:
    balances = vendor_balances(vendor_id=vendor.id)
    currencies = sorted(
        {row["currency"] for rows in balances.values() for row in rows} | {vendor.default_currency}
    )
    cards = [
        BalanceCard(
            key=key,
            label=label,
            help=help_text,
            amounts=[format_amount(row["amount"], row["currency"]) for row in balances[key]]
            or [format_amount(0, vendor.default_currency)],
        )
        for key, label, help_text in STAGES
    ]
    payouts = Payout.objects.filter(vendor=vendor)
    return Dashboard(
        vendor=vendor,
        balances=cards,
        schedule=payout_schedule_in_words(vendor),
        upcoming=list(payouts.filter(status=Payout.Status.PENDING).order_by("arrival_date", "created_at")),
        transfers=list(Transfer.objects.filter(vendor=vendor)[:HISTORY_LIMIT]),
        payouts=list(payouts.exclude(status=Payout.Status.PENDING)[:HISTORY_LIMIT]),
        charts=balance_charts(vendor=vendor, currencies=currencies),
    )
