"""Reads the API lists from: each returns an unevaluated queryset that pagination orders."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Prefetch, QuerySet

from apps.customers.models import Customer
from apps.ledger.models import Entry, JournalTransaction, LedgerEvent
from apps.payments.models import PaymentAttempt, PaymentIntent, Refund


def customers_query(*, email: str | None = None) -> QuerySet[Customer]:
    qs = Customer.objects.all()
    return qs.filter(email__iexact=email) if email else qs


def payments_query(
    *,
    status: str | None = None,
    customer: str | None = None,
    created: dict[str, datetime] | None = None,
) -> QuerySet[PaymentIntent]:
    qs = PaymentIntent.objects.prefetch_related(
        Prefetch(
            "attempts",
            queryset=PaymentAttempt.objects.select_related("gateway_account").order_by("number"),
        )
    )
    if status:
        qs = qs.filter(status=status)
    if customer:
        qs = qs.filter(customer_id=customer)
    for op, value in (created or {}).items():
        qs = qs.filter(**{f"created_at__{op}": value})
    return qs


def refunds_query(*, payment: str | None = None) -> QuerySet[Refund]:
    qs = Refund.objects.all()
    return qs.filter(intent_id=payment) if payment else qs


def events_query(*, type: str | None = None, stream: str | None = None) -> QuerySet[LedgerEvent]:
    qs = LedgerEvent.objects.all()
    if type:
        qs = qs.filter(type=type)
    if stream:
        qs = qs.filter(stream=stream)
    return qs


def ledger_transactions_query(*, account: str | None = None) -> QuerySet[JournalTransaction]:
    qs = JournalTransaction.objects.select_related("event").prefetch_related(
        Prefetch("entries", queryset=Entry.objects.select_related("account").order_by("id"))
    )
    if account:
        qs = qs.filter(entries__account__code=account).distinct()
    return qs
