"""Disputes (chargebacks): opened, then won or lost, as the processor reports them.

Opening posts the disputed amount out of the processor's clearing against whoever bears it: the
platform (``disputes``) for a payment without a split, or per the marketplace's dispute policy
(``CommissionPolicy.dispute_policy``) a split payment's vendors, each in proportion to its part
(its share of the commission comes out of ``platform_revenue``). A won dispute posts it back; a
lost one changes nothing more. Idempotent per processor dispute id; state only moves forward."""

from __future__ import annotations

from django.db import transaction

from apps.ledger.services import ledger_record
from apps.payments.models import Dispute, GatewayAccount, PaymentAttempt, PaymentIntent, new_id


class DisputeError(ValueError):
    pass


def _allocations(intent: PaymentIntent, amount: int) -> list[dict]:
    if intent.has_splits:
        from apps.vendors.funds import split_dispute_allocations

        allocations = split_dispute_allocations(payment_id=intent.id, amount=amount)
        if allocations:
            return allocations
    return [{"account": "disputes", "amount": amount}]


def dispute_open(
    *, attempt: PaymentAttempt, reference: str, amount: int, currency: str, reason: str = ""
) -> Dispute:
    """Record a dispute the processor opened on ``attempt``'s charge. Idempotent on
    (gateway account, reference)."""
    with transaction.atomic():
        intent = PaymentIntent.objects.select_for_update().get(pk=attempt.intent_id)
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
        ledger_record(
            event_type="DisputeOpened",
            stream=intent.id,
            idempotency_key=f"{intent.id}:dispute:{dispute.id}:opened",
            payload=_payload(dispute),
        )
    return dispute


def _payload(dispute: Dispute) -> dict:
    return {
        "payment": dispute.intent_id,
        "dispute": dispute.id,
        "gateway_account": dispute.gateway_account.name,
        "amount": dispute.amount,
        "currency": dispute.currency,
        "allocations": dispute.allocations,
    }


def dispute_close(*, dispute: Dispute, won: bool) -> str:
    """Settle an open dispute. Idempotent; a settled dispute is left alone."""
    with transaction.atomic():
        dispute = Dispute.objects.select_for_update().select_related("gateway_account").get(pk=dispute.pk)
        if dispute.status != Dispute.Status.OPEN:
            return f"dispute {dispute.id} stays {dispute.status}"
        dispute.status = Dispute.Status.WON if won else Dispute.Status.LOST
        dispute.save(update_fields=["status", "updated_at"])
        ledger_record(
            event_type="DisputeWon" if won else "DisputeLost",
            stream=dispute.intent_id,
            idempotency_key=f"{dispute.intent_id}:dispute:{dispute.id}:{dispute.status}",
            payload=_payload(dispute),
        )
        if not won and any("clawback" in line for line in dispute.allocations):
            from apps.vendors.funds import dispute_lost_clawback

            dispute_lost_clawback(
                payment_id=dispute.intent_id, dispute_id=dispute.id, allocations=dispute.allocations
            )
    return f"dispute {dispute.id} {dispute.status}"
