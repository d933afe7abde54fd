"""The billing app's row locks, each taken by one helper here, always in this order:

    subscription (with its price row)  ->  its invoices  ->  an invoice's attempt  ->  the invoice
    number sequence

A helper that locks several rows takes them in that order; a caller that needs more rows calls
the helpers in that order too (``invoice_void``: the invoice's subscription, then the invoice;
``invoice_build``, under its subscription's lock: the sequence last). A payment's rows come after
billing's when both are held (claiming an invoice's first attempt, ``collection`` creates its
payment under its locks).
The renewal job's claims skip rows another runner holds (``SKIP LOCKED``) instead of waiting.
Every helper must run inside the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime

from apps.billing.models import Invoice, InvoiceAttempt, InvoiceSequence, Subscription


def subscription_lock(subscription_id: str) -> Subscription | None:
    """The subscription (its price row is locked with it, by the join), or None."""
    return Subscription.objects.select_for_update().select_related("price").filter(pk=subscription_id).first()


def subscription_due_claim(*, now: datetime) -> Subscription | None:
    """The renewal job's next due subscription (trialing or active, its period over), skipping any
    another runner holds; None when none is due. Its price row is locked with it."""
    return (
        Subscription.objects.select_for_update(skip_locked=True)
        .select_related("price")
        .filter(
            status__in=[Subscription.Status.TRIALING, Subscription.Status.ACTIVE], current_period_end__lte=now
        )
        .order_by("current_period_end", "id")
        .first()
    )


def invoice_lock(invoice_id: str) -> tuple[Subscription, Invoice]:
    """An invoice and its subscription: the subscription first."""
    subscription_id = Invoice.objects.values_list("subscription_id", flat=True).get(pk=invoice_id)
    sub = Subscription.objects.select_for_update().get(pk=subscription_id)
    return sub, Invoice.objects.select_for_update().get(pk=invoice_id)


def invoice_attempt_lock(attempt_id: int) -> tuple[Subscription, Invoice, InvoiceAttempt]:
    """An invoice attempt with its invoice and subscription: subscription, invoice, attempt."""
    invoice_id = InvoiceAttempt.objects.values_list("invoice_id", flat=True).get(pk=attempt_id)
    sub, inv = invoice_lock(invoice_id)
    return sub, inv, InvoiceAttempt.objects.select_for_update().get(pk=attempt_id)


def invoice_due_claim(*, now: datetime, invoice_id: str | None = None) -> Invoice | None:
    """The next open invoice whose attempt is due (or ``invoice_id`` if it is due), locked with its
    subscription in one statement, skipping any another runner holds; None when none is."""
    qs = Invoice.objects.select_for_update(skip_locked=True, of=("self", "subscription")).select_related(
        "subscription"
    )
    qs = qs.filter(status=Invoice.Status.OPEN, next_attempt_at__lte=now)
    if invoice_id is not None:
        qs = qs.filter(pk=invoice_id)
    return qs.order_by("next_attempt_at", "id").first()


def open_invoices_lock(sub: Subscription) -> list[Invoice]:
    """The open invoices of a subscription the caller has locked."""
    return list(Invoice.objects.select_for_update().filter(subscription=sub, status=Invoice.Status.OPEN))


def invoice_sequence_lock() -> InvoiceSequence:
    """The marketplace's invoice number sequence (taken last; it must exist)."""
    return InvoiceSequence.objects.select_for_update().get(pk=1)
