"""Reads for inbound webhooks: which gateway account an endpoint is, which of our attempts and
refunds an event is about."""

from __future__ import annotations

from django.db.models import Q

from apps.payments.models import GatewayAccount, PaymentAttempt, Refund
from apps.webhooks.models import InboundEvent


def gateway_account_for_webhook(*, name: str, kind: str) -> GatewayAccount | None:
    """The account an endpoint URL names, if it is of the provider's kind (enabled or not: a
    disabled account still hears about its past payments)."""
    return GatewayAccount.objects.filter(name=name, kind=kind).first()


def attempt_for_event(
    *, account: GatewayAccount, attempt_id: str | None = None, reference: str | None = None
) -> PaymentAttempt | None:
    """Our attempt at ``account`` by our id (sent to the processor as metadata / reference), else
    by the processor's id for the charge (``PaymentAttempt.reference``, which for a Stripe direct
    charge is ``acct_.../pi_...``). None when the event is about a charge we did not make."""
    attempts = PaymentAttempt.objects.filter(gateway_account=account).select_related("intent")
    if attempt_id:
        found = attempts.filter(pk=attempt_id).first()
        if found is not None:
            return found
    if reference:
        return (
            attempts.filter(Q(reference=reference) | Q(reference__endswith=f"/{reference}"))
            .order_by("number")
            .first()
        )
    return None


def refund_for_event(
    *, attempt: PaymentAttempt, refund_id: str | None = None, reference: str | None = None
) -> Refund | None:
    """Our refund of ``attempt`` by our id (``re_...``, sent as the refund's reference) or by the
    processor's id for it."""
    refunds = Refund.objects.filter(attempt_id=attempt.pk)
    if refund_id:
        found = refunds.filter(pk=refund_id).first()
        if found is not None:
            return found
    if reference:
        return refunds.filter(reference=reference).first()
    return None


def event_received(
    *, account: GatewayAccount, types: list[str], where: Q | None = None, **payload_lookups
) -> InboundEvent | None:
    """The first stored event of ``account`` of one of ``types`` matching ``where`` and the
    lookups (e.g. ``payload__originalReference="..."``), or None."""
    events = InboundEvent.objects.filter(gateway_account=account, type__in=types, **payload_lookups)
    if where is not None:
        events = events.filter(where)
    return events.order_by("received_at", "id").first()
