"""The customer's authentication (3-D Secure) of a payment: their return from the gateway's page,
and the closing of authentications left unfinished.

A payment whose gateway wants the customer answers ``requires_action`` with ``next_action``
``redirect_to_url`` (``drive.next_action_for``). The customer comes back to the payment's
``return_url`` with ``payment=<pay_id>``; the page there calls ``payment_authentication_return``,
which asks the gateway what became of the attempt (no transaction open) and applies the answer
through the gateway-news path (``truth``): under the attempt's and the payment's row locks and
forward only, so the return, the processor's webhook and the refresh job may all bring the same
news and it is applied once. A failed authentication fails the payment (``authentication_failed``)
and never fails over: only the customer can authenticate, with this card or another.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from django.utils import timezone

from apps.payments.gateways.base import Gateway, GatewayResult, GatewayStatus, Outcome
from apps.payments.models import PaymentAttempt, PaymentIntent
from apps.payments.selectors import payment_get
from apps.payments.services.drive import charge_request
from apps.payments.services.errors import PaymentError
from apps.payments.services.late_charges import gateway_voided
from apps.payments.services.schedules import authentication_expired, authentication_expiry
from apps.payments.services.setup import gateway_call
from apps.payments.services.truth import ACTION_SETTLED, payment_attempt_apply_gateway_truth

IS, AS = PaymentIntent.Status, PaymentAttempt.Status

# The parameters a processor adds to the return URL that are passed on to it (Adyen's), at most.
_DETAIL_MAX_LENGTH = 20_000


def _open_attempt(intent_id: str) -> PaymentAttempt | None:
    return (
        PaymentAttempt.objects.select_related("gateway_account", "intent")
        .filter(intent_id=intent_id, status=AS.REQUIRES_ACTION)
        .order_by("-number")
        .first()
    )


def _details(details: Mapping[str, object] | None) -> dict[str, str]:
    """The return's parameters as the gateway may be given them: strings, not our own
    ``payment``, bounded."""
    return {
        str(k): v
        for k, v in (details or {}).items()
        if k != "payment" and isinstance(v, str) and len(v) <= _DETAIL_MAX_LENGTH
    }


def payment_authentication_return(
    *, intent_id: str, details: Mapping[str, object] | None = None
) -> PaymentIntent:
    """Idempotent: the customer came back from authenticating payment ``intent_id`` (``details``:
    the parameters the processor added to the return URL, e.g. Adyen's ``redirectResult``). Asks
    the gateway about the waiting attempt, with no transaction open, and applies its answer
    exactly once (see the module docstring). Returns the payment as it is then: ``succeeded`` or
    ``requires_capture``; ``failed`` with ``last_error.code`` ``authentication_failed`` (or
    ``authentication_expired``, ``card_declined``); still ``requires_action`` when the gateway
    does not know yet; ``processing``. Raises PaymentError (``resource_missing``) for an unknown
    payment."""
    attempt = _open_attempt(intent_id)  # with its payment: the payment's row is read once
    if attempt is None:  # already settled (by a webhook, an earlier return, expiry), or no such payment
        intent = payment_get(payment_id=intent_id)
        if intent is None:
            raise PaymentError(f"No such payment: {intent_id!r}", code="resource_missing", param="payment")
        return intent
    request = charge_request(attempt.intent, attempt)
    given = _details(details)

    def ask(gateway: Gateway) -> GatewayResult:
        action_result = getattr(gateway, "action_result", None)
        if action_result is None:
            return gateway.retrieve(attempt_id=attempt.id, reference=attempt.reference or None)
        return action_result(
            request=request,
            reference=attempt.reference or None,
            details=given,
            idempotency_key=f"{attempt.id}:authentication",
        )

    result, _ = gateway_call(
        attempt.gateway_account, ask, operation="authentication_return", about={"attempt": attempt.id}
    )
    if result.status in ACTION_SETTLED:
        payment_attempt_apply_gateway_truth(attempt_id=attempt.id, result=result)
    return PaymentIntent.objects.get(pk=intent_id)


def payments_authentication_expire(*, now: datetime | None = None) -> int:
    """Idempotent: close every authentication left unfinished past
    ``AUTHENTICATION_EXPIRY_SECONDS`` (``payment_authentication_expire``). Returns how many
    payments it failed now. Run periodically for each marketplace."""
    cutoff = (now or timezone.now()) - authentication_expiry()
    waiting = PaymentAttempt.objects.filter(status=AS.REQUIRES_ACTION, created_at__lte=cutoff)
    return sum(
        payment_authentication_expire(attempt_id=attempt_id)
        for attempt_id in waiting.order_by("created_at").values_list("id", flat=True)[:500]
    )


def payment_authentication_expire(*, attempt_id: str) -> int:
    """Idempotent: close attempt ``attempt_id``, waiting for the customer past its expiry, at its
    gateway (cancelled by our attempt id, no transaction open, the same key as any other close),
    so it can never charge; then its payment fails with ``authentication_expired`` (events
    recorded and published through the gateway-news path). When the gateway says the customer
    completed it meanwhile, that is applied instead; when the gateway only accepted the cancel
    (Adyen: its TECHNICAL_CANCEL webhook confirms it) or could not be reached, the attempt stays
    and is closed by that news or the next run. Returns 1 when the payment failed now, else 0."""
    attempt = PaymentAttempt.objects.select_related("gateway_account").get(pk=attempt_id)
    if attempt.status != AS.REQUIRES_ACTION or not authentication_expired(attempt):
        return 0
    result, _ = gateway_call(
        attempt.gateway_account,
        lambda gateway: gateway.cancel(
            attempt_id=attempt.id, reference=attempt.reference or None, idempotency_key=f"{attempt.id}:cancel"
        ),
        operation="cancel",
        about={"attempt": attempt.id},
    )
    if gateway_voided(result):
        closed = GatewayResult(
            Outcome.SUCCEEDED,
            GatewayStatus.CANCELED,
            reference=result.reference,
            message="authentication expired: closed at the gateway",
        )
        return int("->" in payment_attempt_apply_gateway_truth(attempt_id=attempt.id, result=closed))
    if result.status in (GatewayStatus.CAPTURED, GatewayStatus.AUTHORIZED):
        # Completed just before the close: applied from the gateway's full record.
        truth, _ = gateway_call(
            attempt.gateway_account,
            lambda gateway: gateway.retrieve(
                attempt_id=attempt.id, reference=result.reference or attempt.reference
            ),
            operation="retrieve",
            about={"attempt": attempt.id},
        )
        if truth.status in ACTION_SETTLED:
            payment_attempt_apply_gateway_truth(attempt_id=attempt.id, result=truth)
    return 0
