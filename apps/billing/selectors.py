"""Reads: the catalog, subscriptions and invoices (the lists return unevaluated querysets, which
the API's pagination orders and slices), and dunning recovery analytics.

An invoice *failed its first try* when its first attempt (one confirm through the mesh, which may
already fail over between gateways) did not collect it; it was *recovered* when a later attempt
did. Amounts are per currency (never added across currencies); rates are recovered / failed
counts, as decimal strings with 4 places. ``cross_gateway`` counts recoveries paid at a gateway
other than the one that declined the first try."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from apps.billing.models import Invoice, InvoiceAttempt, InvoiceLine, Price, Product, Subscription, TaxRate
from apps.billing.notifications import card_update_subscription
from apps.core.queries import filter_given
from apps.payments.failovers import DIRECT, IMPOSSIBLE, VAULT, RoundRows
from apps.payments.selectors import payment_rounds, payments_unreachable_rounds

# --------------------------------------------------------------------------- catalog


def products_query() -> QuerySet[Product]:
    return Product.objects.all()


def product_get(*, product_id: str) -> Product | None:
    return Product.objects.filter(pk=product_id).first()


def prices_query(*, product: str | None = None, active: bool | None = None) -> QuerySet[Price]:
    return filter_given(Price.objects.all(), product_id=product, active=active)


def price_get(*, price_id: str) -> Price | None:
    return Price.objects.filter(pk=price_id).first()


def tax_rates_query() -> QuerySet[TaxRate]:
    return TaxRate.objects.all()


# --------------------------------------------------------------------------- subscriptions


def subscriptions_query(
    *, status: str | None = None, customer: str | None = None, price: str | None = None
) -> QuerySet[Subscription]:
    return filter_given(Subscription.objects.all(), status=status, customer_id=customer, price_id=price)


def subscription_get(*, subscription_id: str) -> Subscription | None:
    return Subscription.objects.filter(pk=subscription_id).first()


def latest_invoice_ids(*, subscription_ids: list[str]) -> dict[str, str]:
    """Each subscription's latest invoice (of the latest period), for those that have one."""
    rows = (
        Invoice.objects.filter(subscription_id__in=set(subscription_ids))
        .order_by("subscription_id", "-period_start")
        .distinct("subscription_id")
        .values_list("subscription_id", "id")
    )
    return dict(rows)


def card_update_subscription_get(*, token: str) -> Subscription | None:
    """The subscription a card-update link's token names (genuine, unexpired, of this
    marketplace), with its price and product, or None."""
    subscription_id = card_update_subscription(token)
    if not subscription_id:
        return None
    return Subscription.objects.select_related("price__product").filter(pk=subscription_id).first()


# --------------------------------------------------------------------------- invoices


def invoices_query(
    *, status: str | None = None, subscription: str | None = None, customer: str | None = None
) -> QuerySet[Invoice]:
    """Invoices with their lines and attempts prefetched."""
    return filter_given(
        Invoice.objects.prefetch_related("lines", "attempts"),
        status=status,
        subscription_id=subscription,
        customer_id=customer,
    )


def invoice_get(*, invoice_id: str) -> Invoice | None:
    """The invoice with its lines and attempts prefetched, or None."""
    return invoices_query().filter(pk=invoice_id).first()


def hosted_invoice_get(*, access_token: str) -> Invoice | None:
    """The invoice a hosted-invoice link names, with its subscription's price and product and its
    lines (in order), or None."""
    lines = Prefetch("lines", queryset=InvoiceLine.objects.order_by("id"))
    return (
        Invoice.objects.select_related("subscription__price__product")
        .prefetch_related(lines)
        .filter(access_token=access_token)
        .first()
    )


def open_invoices(*, subscription_id: str) -> QuerySet[Invoice]:
    return Invoice.objects.filter(subscription_id=subscription_id, status=Invoice.Status.OPEN)


# --------------------------------------------------------------------------- recovery analytics


def _rate(recovered: int, failed: int) -> str:
    if not failed:
        return "0.0000"
    return str((Decimal(recovered) / Decimal(failed)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN))


class _Bucket:
    def __init__(self) -> None:
        self.failed = 0
        self.recovered = 0
        self.cross_gateway = 0
        self.open = 0
        self.failed_amount: dict[str, int] = defaultdict(int)
        self.recovered_amount: dict[str, int] = defaultdict(int)

    def add(self, row: dict) -> None:
        cur = row["currency"].lower()
        self.failed += 1
        self.failed_amount[cur] += row["amount"]
        if row["recovered"]:
            self.recovered += 1
            self.recovered_amount[cur] += row["amount"]
            self.cross_gateway += row["cross_gateway"]
        elif row["status"] == Invoice.Status.OPEN:
            self.open += 1

    def as_dict(self) -> dict:
        return {
            "failed": self.failed,
            "recovered": self.recovered,
            "recovery_rate": _rate(self.recovered, self.failed),
            "cross_gateway": self.cross_gateway,
            "still_open": self.open,
            "failed_amount": [{"currency": c, "amount": a} for c, a in sorted(self.failed_amount.items())],
            "recovered_amount": [
                {"currency": c, "amount": a} for c, a in sorted(self.recovered_amount.items())
            ],
        }


def failed_first_try_rows(*, since: datetime | None = None, invoice_ids=None) -> list[dict]:
    """One row per invoice whose first attempt failed: month, decline code and gateway of that
    failure, whether (and where) a later attempt collected it."""
    firsts = InvoiceAttempt.objects.filter(number=1, status=InvoiceAttempt.Status.FAILED)
    if since is not None:
        firsts = firsts.filter(started_at__gte=since)
    if invoice_ids is not None:
        firsts = firsts.filter(invoice_id__in=invoice_ids)
    rows = list(
        firsts.values(
            "invoice_id",
            "started_at",
            "decline_code",
            "gateway",
            "invoice__currency",
            "invoice__amount_due",
            "invoice__status",
        )
    )
    winners = dict(
        InvoiceAttempt.objects.filter(
            invoice_id__in=[r["invoice_id"] for r in rows], status=InvoiceAttempt.Status.SUCCEEDED
        ).values_list("invoice_id", "gateway")
    )
    out = []
    for r in rows:
        paid_at = winners.get(r["invoice_id"])
        out.append(
            {
                "invoice": r["invoice_id"],
                "month": r["started_at"].strftime("%Y-%m"),
                "decline_code": r["decline_code"] or "unknown",
                "gateway": r["gateway"] or "none",
                "currency": r["invoice__currency"],
                "amount": r["invoice__amount_due"],
                "status": r["invoice__status"],
                "recovered": paid_at is not None,
                "paid_by": paid_at,
                "cross_gateway": int(paid_at is not None and bool(paid_at) and paid_at != r["gateway"]),
            }
        )
    return out


SAME_GATEWAY = "same_gateway"
RECOVERY_ROUTES = (DIRECT, VAULT, SAME_GATEWAY, IMPOSSIBLE)


def recoveries_count(
    rows: Iterable[dict], *, last_rounds: Mapping[str, RoundRows], unreachable: Mapping[str, int]
) -> dict[str, int]:
    """Pure: how the invoices that failed their first try (``rows``, as ``failed_first_try_rows``
    reads them, each with its ``payment``) were recovered: ``vault`` when the charge that paid it
    went through a vault, ``direct`` when it was paid directly at a gateway other than the one
    that declined its first try, ``same_gateway`` when paid where it was declined; an invoice not
    recovered counts as ``impossible`` when a round of its payment failed because no gateway could
    charge its method (``unreachable``: rounds per payment). ``last_rounds``: each payment's latest
    round (the one that paid it, for a recovered invoice)."""
    counts = dict.fromkeys(RECOVERY_ROUTES, 0)
    for row in rows:
        if not row["recovered"]:
            if unreachable.get(row["payment"], 0):
                counts[IMPOSSIBLE] += 1
            continue
        last = last_rounds.get(row["payment"])
        if last is not None and last.attempts and last.attempts[-1][0] in last.via:
            counts[VAULT] += 1
        elif row["paid_by"] != row["gateway"]:
            counts[DIRECT] += 1
        else:
            counts[SAME_GATEWAY] += 1
    return counts


def recovery_routes(*, invoice_ids: list[str]) -> dict[str, int]:
    """``recoveries_count`` for the invoices ``invoice_ids``, from their stored rows (invoice
    attempts, their payments' latest routing and failed rounds)."""
    payment_of = dict(
        Invoice.objects.filter(pk__in=invoice_ids).exclude(payment_id="").values_list("id", "payment_id")
    )
    rows = [
        {**r, "payment": payment_of.get(r["invoice"], "")}
        for r in failed_first_try_rows(invoice_ids=invoice_ids)
    ]
    payments = [r["payment"] for r in rows if r["payment"]]
    return recoveries_count(
        rows,
        last_rounds=payment_rounds(payment_ids=payments),
        unreachable=payments_unreachable_rounds(payment_ids=payments),
    )


def recovery_report(*, months: int = 12, now: datetime | None = None, invoice_ids=None) -> dict:
    now = now or timezone.now()
    since = None if invoice_ids is not None else now - timedelta(days=31 * months)
    rows = failed_first_try_rows(since=since, invoice_ids=invoice_ids)
    total = _Bucket()
    by_month: defaultdict[str, _Bucket] = defaultdict(_Bucket)
    by_code: defaultdict[str, _Bucket] = defaultdict(_Bucket)
    by_gateway: defaultdict[str, _Bucket] = defaultdict(_Bucket)
    for row in rows:
        total.add(row)
        by_month[row["month"]].add(row)
        by_code[row["decline_code"]].add(row)
        by_gateway[row["gateway"]].add(row)
    return {
        "total": total.as_dict(),
        "by_month": [{"month": k, **v.as_dict()} for k, v in sorted(by_month.items())],
        "by_decline_code": [
            {"decline_code": k, **v.as_dict()}
            for k, v in sorted(by_code.items(), key=lambda kv: -kv[1].failed)
        ],
        "by_gateway": [{"gateway": k, **v.as_dict()} for k, v in sorted(by_gateway.items())],
    }
