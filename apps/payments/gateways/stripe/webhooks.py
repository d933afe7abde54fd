"""Stripe's webhooks: verified over the raw body, then read as neutral news. All reading of
Stripe's event shapes lives here; what changes is decided by the payments services (forward only,
``apps.payments.news``).

Verification: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]``, HMAC-SHA256 of ``"{t}.{body}"``
with the endpoint secret (``credentials["webhook_secret"]``, ``whsec_...``; one or a list, newest
first, for rotation); every ``v1`` is tried (Stripe sends two while its secret rolls), in constant
time, and a timestamp further than the tolerance (300 s) from now is refused, in either direction.
stripe-python's ``WebhookSignature.verify_header`` checks the signatures and the past; we refuse a
timestamp dated in the future (a signature made to be replayed later) and a header with more than
one ``t``. A body is one event; the answer is ``{"received": true, "id", "duplicate"}``.

News (``data.object`` is the object as it was when the event happened):

- ``payment_intent.succeeded`` -> captured; ``payment_intent.amount_capturable_updated`` ->
  authorised; ``payment_intent.payment_failed`` -> declined (soft or hard as the adapter decides);
  ``payment_intent.canceled`` -> voided, or for an attempt whose outcome was unknown: nothing was
  charged. Each is the PaymentIntent translated as the adapter translates it
  (``shapes.intent_result``). Matched to our attempt by ``metadata.attempt_id`` (the adapter sends
  it), else by the PaymentIntent id kept in ``PaymentAttempt.reference``.
- ``charge.refunded``: each refund we made (``metadata.refund_id``) is settled as Stripe reports
  it, and refunds made outside our API (the dashboard) are recorded from the charge's running total
  of refunded captured money, so an older event (a smaller total) records nothing.
- ``account.updated`` (Connect): the connected account as it is now (applied to its vendor).
- ``payout.paid`` / ``payout.failed`` / ``payout.canceled`` (Connect, from the vendor's account):
  the payout settled (a failed one's money returns to the vendor's available balance).
- ``charge.dispute.created`` opens a dispute on our payment; ``charge.dispute.closed`` settles it:
  ``won`` posts it back, ``lost`` leaves it.

Every other type is stored and left alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import stripe

from apps.payments.gateways.base import (
    AccountNews,
    ChargeNews,
    ChargeRef,
    DisputeNews,
    GatewayConfig,
    GatewayNews,
    Notification,
    NotificationAnswer,
    NotificationFormatError,
    NotificationMatch,
    NotificationSignatureError,
    PayoutNews,
    RefundNews,
    RefundReport,
)
from apps.payments.gateways.stripe.connect import account_from_stripe
from apps.payments.gateways.stripe.shapes import charge_amounts, intent_result, refund_settled

TOLERANCE_SECONDS = 300
INTENT_TYPES = (
    "payment_intent.succeeded",
    "payment_intent.amount_capturable_updated",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
)
# News of money that an older cancellation of the PaymentIntent outdates.
_MONEY_TYPES = ("payment_intent.succeeded", "payment_intent.amount_capturable_updated")
PAYOUT_TYPES = ("payout.paid", "payout.failed", "payout.canceled")
DISPUTE_TYPES = ("charge.dispute.created", "charge.dispute.closed")


def signature_verify(*, body: bytes, header: str | None, secrets: list[str]) -> None:
    """Raise NotificationSignatureError unless ``header`` signs ``body`` with one of ``secrets``
    and its timestamp is within the tolerance of now, before or after."""
    if not secrets:
        raise NotificationSignatureError("no webhook_secret is configured for this gateway account")
    if not header:
        raise NotificationSignatureError("the Stripe-Signature header is missing")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise NotificationSignatureError("the body is not UTF-8") from None
    timestamps = [
        v.strip() for k, _, v in (part.partition("=") for part in header.split(",")) if k.strip() == "t"
    ]
    if len(timestamps) > 1:
        raise NotificationSignatureError("Stripe-Signature: more than one timestamp")
    if timestamps and timestamps[0].isdigit() and int(timestamps[0]) > time.time() + TOLERANCE_SECONDS:
        raise NotificationSignatureError(
            "Stripe-Signature: Timestamp outside the tolerance zone (dated in the future)"
        )
    reason = "no signature matches"
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance=TOLERANCE_SECONDS)
            return
        except stripe.SignatureVerificationError as exc:
            reason = str(exc).split(" (")[0]
    raise NotificationSignatureError(f"Stripe-Signature: {reason}")


def parse(body: bytes) -> Notification:
    """The event in a verified body. Raises NotificationFormatError if it is not a Stripe event."""
    try:
        event = json.loads(body)
    except ValueError:
        raise NotificationFormatError("the body is not JSON") from None
    if not isinstance(event, dict) or event.get("object") != "event":
        raise NotificationFormatError("the body is not a Stripe event")
    data = event.get("data")
    if (
        not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
        or not isinstance(data, dict)
        or not isinstance(data.get("object"), dict)
    ):
        raise NotificationFormatError("a Stripe event needs an id, a type and data.object")
    created = event.get("created")
    occurred = datetime.fromtimestamp(created, tz=UTC) if isinstance(created, int) else None
    return Notification(event_id=event["id"], type=event["type"], payload=event, occurred_at=occurred)


class StripeNotifications:
    """The webhook half of the ``stripe`` kind (``Notifications`` in ``base.py``)."""

    endpoint = True

    def __init__(self, config: GatewayConfig):
        self.config = config

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> list[Notification]:
        signature_verify(
            body=body, header=headers.get("Stripe-Signature"), secrets=self.config.secrets("webhook_secret")
        )
        return [parse(body)]

    def notification_answer(self, received: list[tuple[Notification, bool]]) -> NotificationAnswer:
        [(notification, created)] = received
        return NotificationAnswer({"received": True, "id": notification.event_id, "duplicate": not created})

    def parse_notification(self, notification: Notification) -> list[GatewayNews]:
        event = notification.payload
        kind = event["type"]
        obj = event["data"]["object"]
        connected = event.get("account") or None
        if kind in INTENT_TYPES:
            return [_intent_news(kind, obj, connected)]
        if kind == "charge.refunded":
            return [_refunds_news(obj)]
        if kind == "account.updated":
            return [AccountNews(account_from_stripe(obj))]
        if kind in PAYOUT_TYPES:
            message = obj.get("failure_message") or obj.get("failure_code") or kind
            return [
                PayoutNews(
                    reference=str(obj.get("id") or ""),
                    connected_account=connected,
                    paid=kind == "payout.paid",
                    message=str(message),
                )
            ]
        if kind in DISPUTE_TYPES:
            return [_dispute_news(kind, obj)]
        return []

    def cancellations(self, *, attempt_id: str, reference: str | None) -> NotificationMatch:
        return NotificationMatch(
            types=("payment_intent.canceled",),
            any_of=({"data__object__id": reference},),
            said=f"PaymentIntent {reference} was canceled since",
        )


def _intent_news(kind: str, intent: dict, connected: str | None) -> ChargeNews:
    intent_id = str(intent.get("id") or "")
    return ChargeNews(
        charge=ChargeRef(
            attempt_id=(intent.get("metadata") or {}).get("attempt_id"),
            reference=intent_id,
            not_ours=f"ignored: PaymentIntent {intent_id} is not one of our attempts",
        ),
        result=intent_result(intent, account=connected, operation=f"webhook {kind}"),
        label=f"PaymentIntent {intent_id}",
        same_charge=True,
        superseded_by_cancel=kind in _MONEY_TYPES,
    )


def _refunds_news(charge: dict) -> RefundNews:
    intent_id = charge.get("payment_intent")
    reports = []
    for refund in (charge.get("refunds") or {}).get("data") or []:
        status = refund.get("status")
        reports.append(
            RefundReport(
                refund_id=(refund.get("metadata") or {}).get("refund_id"),
                reference=refund.get("id") or "",
                succeeded=refund_settled(status),
                message=refund.get("failure_reason") or status or "",
            )
        )
    # What Stripe has refunded beyond what we know of (ours, pending or not, and refunds already
    # recorded) was refunded outside our API: worked out from the running total, so a repeat or an
    # older event (a smaller total) records nothing.
    _, refunded_total, _ = charge_amounts(charge)
    return RefundNews(
        charge=ChargeRef(
            attempt_id=(charge.get("metadata") or {}).get("attempt_id"),
            reference=intent_id if isinstance(intent_id, str) else None,
            not_ours=f"ignored: charge {charge.get('id')} is not one of our attempts",
        ),
        refunds=tuple(reports),
        outside_reason="refunded at Stripe outside this platform",
        refunded_total=refunded_total,
        total_reference=f"{charge.get('id')}:refunded:{refunded_total}",
        unchanged=f"charge {charge.get('id')}: refunds already recorded",
    )


def _dispute_news(kind: str, dispute: dict) -> DisputeNews:
    intent_id = dispute.get("payment_intent")
    status = dispute.get("status")
    return DisputeNews(
        charge=ChargeRef(
            attempt_id=None,
            reference=intent_id if isinstance(intent_id, str) else None,
            not_ours=f"ignored: dispute {dispute.get('id')} is not on one of our payments",
        ),
        reference=str(dispute.get("id") or ""),
        amount=int(dispute.get("amount") or 0),
        currency=str(dispute.get("currency") or ""),
        reason=str(dispute.get("reason") or ""),
        settled=status if kind == "charge.dispute.closed" and status in ("won", "lost") else None,
        opens=True,
        label=kind,
    )
