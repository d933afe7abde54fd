"""Disputes (chargebacks): opened, then won or lost, as the processor reports them.

Opening posts the disputed amount out of the processor's clearing against whoever bears it: the
platform (``disputes``) for a payment without a split, or per the marketplace's dispute policy
(``CommissionPolicy.dispute_policy``) a split payment's vendors, each in proportion to its part
(its share of the commission comes out of ``platform_revenue``), as the split hooks say
(``apps.payments.hooks``). A won dispute posts it back; a lost one changes nothing more here (the
split hooks take back from the vendors what the allocations mark). Idempotent per processor
dispute id; state only moves forward."""

from __future__ import annotations

from django.db import transaction

from apps.core.ids import new_id
from apps.ledger.services import EventSpec, ledger_record
from apps.payments import events
from apps.payments.hooks import splits_hooks
from apps.payments.locks import lock_dispute, lock_intent
from apps.payments.models import Dispute, GatewayAccount, PaymentAttempt, PaymentIntent
from apps.payments.statemachine import dispute_to


class DisputeError(ValueError):
    pass


def _allocations(intent: PaymentIntent, amount: int) -> list[dict]:
    hooks = splits_hooks()
    if intent.has_splits and hooks is not None:
        allocations = hooks.dispute_allocations(payment_id=intent.id, amount=amount)
        if allocations:
            return allocations
    return [{"account": "disputes", "amount": amount}]


def _record(spec: EventSpec) -> None:
    ledger_record(
        event_type=spec.event_type,
        stream=spec.stream,
        payload=spec.payload,
        idempotency_key=spec.idempotency_key,
    )


def dispute_open(
    *, attempt: PaymentAttempt, reference: str, amount: int, currency: str, reason: str = ""
) -> Dispute:
    """Record a dispute the processor opened on ``attempt``'s charge. Idempotent on
    (gateway account, reference)."""
    with transaction.atomic():
        intent = lock_intent(attempt.intent_id)
        account = GatewayAccount.objects.get(pk=attempt.gateway_account_id)
        existing = Dispute.objects.filter(gateway_account=account, reference=reference).first()
        if existing is not None:
            return existing
        if currency.upper() != intent.currency or not 0 < amount <= intent.amount_received:
            raise DisputeError(
                f"dispute {reference} of {amount} {currency} does not fit payment {intent.id} "
                f"({intent.amount_received} {intent.currency} received)"
            )
        dispute = Dispute.objects.create(
            id=new_id("dis_"),
            intent=intent,
            gateway_account=account,
            reference=reference,
            amount=amount,
            currency=intent.currency,
            reason=reason[:100],
            allocations=_allocations(intent, amount),
        )
        _record(events.dispute_opened(dispute))
    return dispute


def dispute_close(*, dispute: Dispute, won: bool) -> str:
    """Settle an open dispute. Idempotent; a settled dispute is left alone."""
    with transaction.atomic():
        dispute = lock_dispute(dispute.pk)
        if dispute.status != Dispute.Status.OPEN:
            return f"dispute {dispute.id} stays {dispute.status}"
        dispute_to(dispute, Dispute.Status.WON if won else Dispute.Status.LOST)
        dispute.save(update_fields=["status", "updated_at"])
        _record(events.dispute_closed(dispute))
        hooks = splits_hooks()
        if not won and hooks is not None and any("clawback" in line for line in dispute.allocations):
            hooks.dispute_lost(
                payment_id=dispute.intent_id, dispute_id=dispute.id, allocations=dispute.allocations
            )
    return f"dispute {dispute.id} {dispute.status}"


def dispute_news_apply(
    *,
    attempt: PaymentAttempt,
    reference: str,
    amount: int,
    currency: str,
    reason: str = "",
    settled: str | None = None,
    opens: bool = True,
    label: str = "",
) -> str:
    """Idempotent: what the processor says about its dispute ``reference`` on ``attempt``'s charge.
    News that ``opens`` records the dispute if it is new (news of a settlement first heard of then
    is opened, then settled); news that cannot needs it recorded. ``settled`` ("won" or "lost")
    settles it. Returns what it did. Raises DisputeError when the dispute does not fit the payment,
    or a settlement names no recorded dispute."""
    if opens:
        dispute = dispute_open(
            attempt=attempt, reference=reference, amount=amount, currency=currency, reason=reason
        )
    else:
        found = Dispute.objects.filter(
            gateway_account_id=attempt.gateway_account_id, reference=reference
        ).first()
        if found is None:
            raise DisputeError(f"{label or 'a settlement'} for {reference}, but no dispute was recorded")
        dispute = found
    if settled in ("won", "lost"):
        return dispute_close(dispute=dispute, won=settled == "won")
    if dispute.status != Dispute.Status.OPEN:
        return f"dispute {dispute.id} already {dispute.status}"
    return f"dispute {dispute.id} opened for {dispute.amount} {dispute.currency}"
