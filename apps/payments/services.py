"""Every way a payment can change. See ARCHITECTURE section 6.

Flow of ``payment_confirm``: route -> attempt at the first candidate -> on a gateway error (or a
soft decline the table says to fail over on) the next candidate at once, within the request's
latency budget; what does not fit continues in a worker. An attempt whose outcome is unknown
stops everything until a worker resolves it (retrieve, or a technical cancel): the mesh never
fails over while a charge may exist, so a customer is never charged twice.

No database transaction is held open across a gateway call: each step commits its own state
(and its ledger event) before and after the call.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.durable import durable_enqueue
from apps.core.money import MoneyError, normalize_currency, require_amount
from apps.ledger.services import ledger_record
from apps.payments import declines
from apps.payments import ledger_rules as _ledger_rules  # noqa: F401  (registers the event types)
from apps.payments.breaker import CircuitBreaker
from apps.payments.gateways.base import ChargeRequest, GatewayConfig, GatewayResult, GatewayStatus, Outcome
from apps.payments.gateways.registry import gateway_for
from apps.payments.gateways.simulator import card_for
from apps.payments.models import (
    DeclineRule,
    GatewayAccount,
    PaymentAttempt,
    PaymentIntent,
    Refund,
    RoutingRule,
    new_id,
)
from apps.payments.routing import route, success_record
from apps.payments.statemachine import attempt_to, intent_to, refund_to

log = logging.getLogger(__name__)
IS, AS = PaymentIntent.Status, PaymentAttempt.Status
RESOLVE_BACKOFF_SECONDS = [2, 5, 15, 60, 300, 900, 3600]
STALE_PENDING = timedelta(minutes=2)


class PaymentError(ValueError):
    """A request the payment cannot honour in its current state; nothing was changed."""

    def __init__(
        self, message: str, *, code: str = "payment_intent_unexpected_state", param: str | None = None
    ):
        super().__init__(message)
        self.code = code
        self.param = param


class AttemptStillUnknown(RuntimeError):
    """The gateway could not tell yet; the durable task retries with backoff."""


# --------------------------------------------------------------------------- set-up


def payments_defaults_install(*, marketplace=None) -> None:
    """Simulator gateways, a default routing rule and the default decline table. Idempotent."""
    for name, cfg in (
        ("primary", {"latency_ms": {"p50": 25, "p99": 120}}),
        ("secondary", {"latency_ms": {"p50": 40, "p99": 200}}),
    ):
        GatewayAccount.objects.get_or_create(
            name=name, defaults={"kind": GatewayAccount.Kind.SIMULATOR, "settings": cfg}
        )
    if not RoutingRule.objects.exists():
        RoutingRule.objects.create(
            name="default", priority=1000, candidates=[{"gateway": "primary"}, {"gateway": "secondary"}]
        )
    DeclineRule.objects.bulk_create(
        [
            DeclineRule(gateway_kind=g, code=c, advice_code=a, action=act, note=n)
            for g, c, a, act, n in declines.default_rules()
        ],
        ignore_conflicts=True,
    )


def gateway_client(account: GatewayAccount):
    return gateway_for(
        account.kind,
        GatewayConfig(account_id=account.name, credentials=account.credentials, settings=account.settings),
    )


# --------------------------------------------------------------------------- ledger events


def _event(intent: PaymentIntent, event_type: str, key: str, payload: dict | None = None) -> None:
    ledger_record(
        event_type=event_type,
        stream=intent.id,
        payload={"payment": intent.id, **(payload or {})},
        idempotency_key=f"{intent.id}:{key}",
    )


def _allocations(intent: PaymentIntent, amount: int) -> list[dict]:
    """Who the captured money belongs to. Without a split plan: the platform (vendors' splits
    come with the payouts app)."""
    return [{"account": "platform_revenue", "amount": amount}]


# --------------------------------------------------------------------------- create and confirm


def _check_amount_limit(amount: int, currency: str) -> None:
    from apps.tenants.db import tenant_connection

    tenant = getattr(tenant_connection(), "tenant", None)
    limit = getattr(tenant, "max_payment_amount", None)
    if limit and amount > limit:
        raise PaymentError(
            f"amount {amount} is above this marketplace's limit of {limit} per payment",
            code="amount_too_large",
            param="amount",
        )


def _check_payment_method(token: str) -> None:
    """A test token must be one we know when only simulators could take it: an unknown one is a
    clear error now rather than a declined payment later."""
    from apps.payments.methods import TEST_METHODS

    if token in TEST_METHODS or not token.startswith(("pm_card_", "pm_sim_")):
        return
    raise PaymentError(f"No such PaymentMethod: {token!r}", code="resource_missing", param="payment_method")


def payment_intent_create(
    *,
    amount: int,
    currency: str,
    payment_method: str,
    capture_method: str = "automatic",
    customer_id: str = "",
    description: str = "",
    metadata: dict | None = None,
    off_session: bool = False,
    card: dict | None = None,
    confirm: bool = False,
) -> PaymentIntent:
    """Create a payment (and confirm it when asked). Raises PaymentError for bad input."""
    try:
        amount = require_amount(amount)
        currency = normalize_currency(currency)
    except MoneyError as exc:
        raise PaymentError(
            str(exc), code="parameter_invalid", param="amount" if "amount" in str(exc) else "currency"
        ) from None
    if not isinstance(payment_method, str) or not payment_method.strip():
        raise PaymentError("payment_method is required", code="parameter_missing", param="payment_method")
    _check_amount_limit(amount, currency)
    _check_payment_method(payment_method.strip())
    if capture_method not in PaymentIntent.CaptureMethod.values:
        raise PaymentError(
            "capture_method must be automatic or manual", code="parameter_invalid", param="capture_method"
        )
    intent = PaymentIntent(
        id=new_id("pay_"),
        amount=amount,
        currency=currency,
        payment_method=payment_method.strip(),
        capture_method=capture_method,
        customer_id=customer_id,
        description=description,
        metadata=metadata or {},
        off_session=off_session,
        card=card or card_for(payment_method),
    )
    with transaction.atomic():
        intent.save(force_insert=True)
        _event(
            intent,
            "PaymentIntentCreated",
            "created",
            {"amount": amount, "currency": currency, "capture_method": capture_method},
        )
    if confirm:
        return payment_confirm(intent_id=intent.id)
    return intent


def payment_confirm(
    *, intent_id: str, payment_method: str | None = None, budget_ms: int | None = None
) -> PaymentIntent:
    """Start (or restart after a failure) the attempts. Returns the intent in its new state:
    succeeded, requires_capture, requires_action, failed, or processing (a worker continues)."""
    with transaction.atomic():
        intent = PaymentIntent.objects.select_for_update().get(pk=intent_id)
        if intent.status not in (IS.REQUIRES_CONFIRMATION, IS.FAILED, IS.REQUIRES_ACTION):
            raise PaymentError(f"payment {intent.id} is {intent.status}; it cannot be confirmed now")
        if payment_method:
            intent.payment_method, intent.card = payment_method, card_for(payment_method)
        intent_to(intent, IS.PROCESSING)
        intent.routing = {"tried": []}
        intent.last_error = {}
        intent.next_action = {}
        intent.save()
    budget = settings.PAYMENT_LATENCY_BUDGET_MS if budget_ms is None else budget_ms
    return _drive(intent_id, deadline=time.monotonic() + budget / 1000)


def payment_continue(*, intent_id: str) -> None:
    """Idempotent: drive a processing payment on (worker side, fresh budget)."""
    _drive(intent_id, deadline=time.monotonic() + settings.PAYMENT_LATENCY_BUDGET_MS / 1000)


def _drive(intent_id: str, *, deadline: float) -> PaymentIntent:
    while True:
        intent = PaymentIntent.objects.get(pk=intent_id)
        if intent.status != IS.PROCESSING:
            return intent
        if intent.attempts.filter(status__in=[AS.PENDING, AS.UNKNOWN]).exists():
            return intent  # never fail over while a charge may exist
        tried = set(intent.routing.get("tried", []))
        decision = route(intent, exclude=tried)
        if not decision.candidates:
            return _fail(intent, decision)
        if time.monotonic() > deadline:
            durable_enqueue(
                handler="apps.payments.services.payment_continue",
                kwargs={"intent_id": intent.id},
                idempotency_key=f"continue:{intent.id}:{len(tried)}",
            )
            return intent
        account = GatewayAccount.objects.get(name=decision.candidates[0])
        attempt = _attempt_start(intent, account, decision)
        result = _authorize(account, attempt, intent)
        if _attempt_finish(attempt.pk, result) != "failover":
            return PaymentIntent.objects.get(pk=intent_id)


def _attempt_start(intent: PaymentIntent, account: GatewayAccount, decision) -> PaymentAttempt:
    with transaction.atomic():
        intent = PaymentIntent.objects.select_for_update().get(pk=intent.pk)
        number = (intent.attempts.order_by("-number").values_list("number", flat=True).first() or 0) + 1
        attempt = PaymentAttempt.objects.create(
            id=f"{intent.id}_{number}", intent=intent, number=number, gateway_account=account
        )
        routing = dict(intent.routing)
        routing["decision"] = decision.as_dict()
        routing["tried"] = [*routing.get("tried", []), account.name]
        intent.routing = routing
        intent.save(update_fields=["routing", "updated_at"])
        _event(
            intent,
            "AttemptStarted",
            f"{attempt.id}:started",
            {"attempt": attempt.id, "gateway_account": account.name},
        )
    return attempt


def _charge_request(intent: PaymentIntent, attempt: PaymentAttempt) -> ChargeRequest:
    return ChargeRequest(
        attempt_id=attempt.id,
        amount=intent.amount,
        currency=intent.currency,
        payment_method=intent.payment_method,
        capture=intent.capture_method == PaymentIntent.CaptureMethod.AUTOMATIC,
        customer_reference=intent.customer_id or None,
        description=intent.description,
        off_session=intent.off_session,
        metadata={"payment": intent.id},
    )


def _authorize(account: GatewayAccount, attempt: PaymentAttempt, intent: PaymentIntent) -> GatewayResult:
    started = time.perf_counter()
    try:
        result = gateway_client(account).authorize(_charge_request(intent, attempt))
    except Exception as exc:  # an adapter bug must not lose the attempt: we do not know what happened
        log.exception("gateway adapter raised", extra={"attempt": attempt.id})
        result = GatewayResult(Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message=f"adapter error: {exc}")
    latency = int((time.perf_counter() - started) * 1000)
    PaymentAttempt.objects.filter(pk=attempt.pk).update(latency_ms=latency)
    _observe(account.name, result)
    return result


def _observe(account_name: str, result: GatewayResult) -> None:
    breaker = CircuitBreaker(account_name)
    if result.outcome in (Outcome.GATEWAY_ERROR, Outcome.UNKNOWN):
        breaker.record(success=False)
    else:
        breaker.record(success=True)
        success_record(account_name, approved=result.outcome in (Outcome.SUCCEEDED, Outcome.REQUIRES_ACTION))


def _attempt_finish(attempt_id: str, result: GatewayResult) -> str:
    """Apply a gateway result to the attempt and its payment. Returns "done", "failover" or
    "unknown". Idempotent: a result for an attempt that already left pending/unknown is ignored."""
    with transaction.atomic():
        attempt = (
            PaymentAttempt.objects.select_for_update().select_related("gateway_account").get(pk=attempt_id)
        )
        intent = PaymentIntent.objects.select_for_update().get(pk=attempt.intent_id)
        if attempt.status not in (AS.PENDING, AS.UNKNOWN):
            return "done"
        attempt.outcome = result.outcome
        attempt.reference = result.reference or attempt.reference
        attempt.decline_code = result.decline_code or ""
        attempt.advice_code = result.advice_code or ""
        attempt.message = (result.message or "")[:500]
        account = attempt.gateway_account
        if result.outcome == Outcome.SUCCEEDED and result.status in (
            GatewayStatus.CAPTURED,
            GatewayStatus.AUTHORIZED,
        ):
            attempt.amount_authorized = result.amount_authorized or intent.amount
            intent.gateway_account = account
            if result.status == GatewayStatus.CAPTURED:
                attempt_to(attempt, AS.CAPTURED)
                attempt.amount_captured = result.amount_captured or intent.amount
                attempt.fee = result.fee
                intent_to(intent, IS.SUCCEEDED)
                intent.amount_received = attempt.amount_captured
                _post_capture(intent, attempt, attempt.amount_captured, result.fee)
            else:
                attempt_to(attempt, AS.AUTHORIZED)
                intent_to(intent, IS.REQUIRES_CAPTURE)
                intent.amount_capturable = attempt.amount_authorized
                _event(
                    intent,
                    "ChargeAuthorized",
                    f"{attempt.id}:authorized",
                    {
                        "attempt": attempt.id,
                        "gateway_account": account.name,
                        "amount": attempt.amount_authorized,
                    },
                )
            outcome = "done"
        elif result.outcome == Outcome.REQUIRES_ACTION:
            attempt_to(attempt, AS.REQUIRES_ACTION)
            intent_to(intent, IS.REQUIRES_ACTION)
            intent.next_action = result.raw.get("next_action", {"type": "authenticate"})
            _event(intent, "AttemptRequiresAction", f"{attempt.id}:requires_action", {"attempt": attempt.id})
            outcome = "done"
        elif result.outcome in (Outcome.DECLINED_SOFT, Outcome.DECLINED_HARD):
            attempt_to(attempt, AS.DECLINED)
            _event(
                intent,
                "AttemptDeclined",
                f"{attempt.id}:declined",
                {
                    "attempt": attempt.id,
                    "decline_code": attempt.decline_code,
                    "advice_code": attempt.advice_code,
                },
            )
            action, why = declines.decline_action(
                gateway_kind=account.kind,
                outcome=result.outcome,
                decline_code=attempt.decline_code,
                advice_code=attempt.advice_code,
            )
            intent.last_error = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": attempt.decline_code,
                "advice_code": attempt.advice_code,
                "message": attempt.message,
                "action": action,
                "why": why,
                "attempt": attempt.id,
            }
            if action == DeclineRule.Action.FAILOVER:
                outcome = "failover"
            else:
                intent_to(intent, IS.FAILED)
                _event(
                    intent, "PaymentFailed", f"{attempt.id}:failed", {"attempt": attempt.id, "action": action}
                )
                outcome = "done"
        elif result.outcome == Outcome.GATEWAY_ERROR:
            attempt_to(attempt, AS.FAILED)
            intent.last_error = {
                "type": "api_error",
                "code": "gateway_error",
                "message": attempt.message,
                "attempt": attempt.id,
            }
            _event(intent, "AttemptFailed", f"{attempt.id}:failed", {"attempt": attempt.id})
            outcome = "failover"
        else:  # UNKNOWN: the charge may exist; stop and resolve
            attempt_to(attempt, AS.UNKNOWN)
            attempt.next_resolve_at = timezone.now() + timedelta(seconds=RESOLVE_BACKOFF_SECONDS[0])
            _event(
                intent,
                "AttemptUnknown",
                f"{attempt.id}:unknown:{attempt.resolve_count}",
                {"attempt": attempt.id},
            )
            durable_enqueue(
                handler="apps.payments.services.payment_attempt_resolve",
                kwargs={"attempt_id": attempt.id},
                idempotency_key=f"resolve:{attempt.id}",
                run_at=attempt.next_resolve_at,
                max_attempts=len(RESOLVE_BACKOFF_SECONDS) + 5,
            )
            outcome = "unknown"
        attempt.save()
        intent.save()
    return outcome


def _post_capture(intent: PaymentIntent, attempt: PaymentAttempt, amount: int, fee: int) -> None:
    _event(
        intent,
        "ChargeCaptured",
        f"{attempt.id}:captured",
        {
            "attempt": attempt.id,
            "gateway_account": attempt.gateway_account.name,
            "amount": amount,
            "currency": intent.currency,
            "fee": fee,
            "allocations": _allocations(intent, amount),
        },
    )


def _fail(intent: PaymentIntent, decision) -> PaymentIntent:
    with transaction.atomic():
        intent = PaymentIntent.objects.select_for_update().get(pk=intent.pk)
        if intent.status != IS.PROCESSING:
            return intent
        if not intent.last_error:
            intent.last_error = {
                "type": "api_error",
                "code": "no_gateway_available",
                "message": "no gateway could take this payment",
                "skipped": decision.skipped,
            }
        intent.routing = {**intent.routing, "final": decision.as_dict()}
        intent_to(intent, IS.FAILED)
        intent.save()
        _event(
            intent,
            "PaymentFailed",
            f"failed:{len(intent.routing.get('tried', []))}",
            {"code": intent.last_error.get("code")},
        )
    return intent


# --------------------------------------------------------------------------- unknown outcomes


def payment_attempt_resolve(*, attempt_id: str) -> None:
    """Idempotent: find out what happened to an attempt whose answer was lost, apply it, and let
    the payment continue. Raises AttemptStillUnknown (the durable task retries with backoff)."""
    attempt = PaymentAttempt.objects.select_related("gateway_account", "intent").get(pk=attempt_id)
    if attempt.status not in (AS.PENDING, AS.UNKNOWN):
        return
    account = attempt.gateway_account
    gateway = gateway_client(account)
    truth = gateway.retrieve(attempt_id=attempt.id, reference=attempt.reference or None)
    if truth.status in (GatewayStatus.UNKNOWN, GatewayStatus.ERROR):
        # The gateway has no lookup (Adyen) or could not answer: replay the very same request with
        # the same idempotency key. The processor returns its first answer if it got the request,
        # or processes it now if it never did; either way the charge exists at most once.
        replay = gateway.authorize(_charge_request(attempt.intent, attempt))
        if replay.outcome != Outcome.UNKNOWN:
            if _attempt_finish(attempt.id, replay) == "failover" or replay.outcome != Outcome.SUCCEEDED:
                payment_continue(intent_id=attempt.intent_id)
            return
    if truth.status in (GatewayStatus.CAPTURED, GatewayStatus.AUTHORIZED):
        _attempt_finish(
            attempt.id,
            GatewayResult(
                Outcome.SUCCEEDED,
                truth.status,
                reference=truth.reference,
                amount_authorized=truth.amount_authorized,
                amount_captured=truth.amount_captured,
                fee=truth.fee,
                message="resolved by retrieve",
            ),
        )
    elif truth.status in (GatewayStatus.NOT_FOUND, GatewayStatus.DECLINED, GatewayStatus.CANCELED):
        # Nothing was charged. Void by our reference first, so a late charge cannot appear.
        gateway.cancel(attempt_id=attempt.id, reference=None, idempotency_key=f"{attempt.id}:void")
        _attempt_finish(
            attempt.id,
            GatewayResult(
                Outcome.GATEWAY_ERROR,
                GatewayStatus.NOT_FOUND,
                message=f"resolved: no charge ({truth.status})",
            ),
        )
    else:
        # The gateway cannot say (e.g. Adyen has no lookup): technically cancel by our reference.
        cancel = gateway.cancel(
            attempt_id=attempt.id,
            reference=attempt.reference or None,
            idempotency_key=f"{attempt.id}:technical-cancel",
        )
        if cancel.outcome == Outcome.SUCCEEDED and cancel.status in (
            GatewayStatus.CANCELED,
            GatewayStatus.NOT_FOUND,
        ):
            _attempt_finish(
                attempt.id,
                GatewayResult(
                    Outcome.GATEWAY_ERROR, GatewayStatus.CANCELED, message="resolved by technical cancel"
                ),
            )
        else:
            count = attempt.resolve_count + 1
            delay = RESOLVE_BACKOFF_SECONDS[min(count, len(RESOLVE_BACKOFF_SECONDS) - 1)]
            PaymentAttempt.objects.filter(pk=attempt.pk).update(
                resolve_count=count, next_resolve_at=timezone.now() + timedelta(seconds=delay)
            )
            raise AttemptStillUnknown(f"attempt {attempt.id} is still unknown at {account.name}")
    payment_continue(intent_id=attempt.intent_id)


def payments_reconcile() -> int:
    """Idempotent: find attempts stuck unknown, or pending longer than any gateway call can take
    (the process died mid-call), and queue their resolution. Returns how many were queued."""
    now = timezone.now()
    stuck = PaymentAttempt.objects.filter(
        status=AS.UNKNOWN, next_resolve_at__lte=now
    ) | PaymentAttempt.objects.filter(status=AS.PENDING, updated_at__lte=now - STALE_PENDING)
    queued = 0
    for attempt in stuck[:500]:
        durable_enqueue(
            handler="apps.payments.services.payment_attempt_resolve",
            kwargs={"attempt_id": attempt.id},
            idempotency_key=f"reconcile:{attempt.id}:{attempt.resolve_count}:{attempt.status}",
        )
        queued += 1
    return queued


# --------------------------------------------------------------------------- capture, cancel, refund


def payment_capture(*, intent_id: str, amount: int | None = None) -> PaymentIntent:
    """Capture an authorised payment, fully or partly (the rest is released). Idempotent at the
    gateway (key ``<attempt>:capture``). Raises PaymentError on a bad state or amount."""
    with transaction.atomic():
        intent = PaymentIntent.objects.select_for_update().get(pk=intent_id)
        if intent.status != IS.REQUIRES_CAPTURE:
            raise PaymentError(
                f"payment {intent.id} is {intent.status}; only requires_capture can be captured"
            )
        amount = intent.amount_capturable if amount is None else amount
        if (
            isinstance(amount, bool)
            or not isinstance(amount, int)
            or not 0 < amount <= intent.amount_capturable
        ):
            raise PaymentError(
                f"amount must be between 1 and {intent.amount_capturable}",
                code="parameter_invalid",
                param="amount",
            )
        attempt = intent.attempts.select_related("gateway_account").get(status=AS.AUTHORIZED)
        result = gateway_client(attempt.gateway_account).capture(
            attempt_id=attempt.id,
            reference=attempt.reference,
            amount=amount,
            currency=intent.currency,
            idempotency_key=f"{attempt.id}:capture",
        )
        _observe(attempt.gateway_account.name, result)
        if result.outcome != Outcome.SUCCEEDED or result.status != GatewayStatus.CAPTURED:
            raise PaymentError(f"the gateway refused the capture: {result.message}", code="capture_failed")
        attempt_to(attempt, AS.CAPTURED)
        attempt.amount_captured = amount
        attempt.fee = result.fee
        attempt.save()
        intent_to(intent, IS.SUCCEEDED)
        intent.amount_received, intent.amount_capturable = amount, 0
        intent.save()
        _post_capture(intent, attempt, amount, result.fee)
    return intent


def payment_cancel(*, intent_id: str, reason: str = "") -> PaymentIntent:
    """Cancel a payment that has not been captured (voiding any authorisation). Idempotent."""
    with transaction.atomic():
        intent = PaymentIntent.objects.select_for_update().get(pk=intent_id)
        if intent.status == IS.CANCELED:
            return intent
        if intent.status not in (
            IS.REQUIRES_CONFIRMATION,
            IS.REQUIRES_ACTION,
            IS.REQUIRES_CAPTURE,
            IS.FAILED,
        ):
            raise PaymentError(f"payment {intent.id} is {intent.status}; it cannot be canceled")
        for attempt in intent.attempts.select_related("gateway_account").filter(
            status__in=[AS.AUTHORIZED, AS.REQUIRES_ACTION]
        ):
            result = gateway_client(attempt.gateway_account).cancel(
                attempt_id=attempt.id,
                reference=attempt.reference or None,
                idempotency_key=f"{attempt.id}:cancel",
            )
            if result.outcome != Outcome.SUCCEEDED:
                raise PaymentError(
                    f"the gateway refused the cancellation: {result.message}", code="cancel_failed"
                )
            attempt_to(attempt, AS.CANCELED)
            attempt.save()
            _event(intent, "AuthorizationVoided", f"{attempt.id}:voided", {"attempt": attempt.id})
        intent_to(intent, IS.CANCELED)
        intent.amount_capturable = 0
        intent.save()
        _event(intent, "PaymentCanceled", "canceled", {"reason": reason})
    return intent


def payment_refund(*, intent_id: str, amount: int | None = None, reason: str = "") -> Refund:
    """Refund (part of) a captured payment at the gateway that took it. The amount is reserved on
    the payment under a row lock first, so concurrent refunds can never exceed what was received."""
    with transaction.atomic():
        intent = PaymentIntent.objects.select_for_update().get(pk=intent_id)
        if intent.status != IS.SUCCEEDED:
            raise PaymentError(
                f"payment {intent.id} is {intent.status}; only succeeded payments can be refunded"
            )
        remaining = intent.amount_received - intent.amount_refunded
        amount = remaining if amount is None else amount
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= remaining:
            raise PaymentError(
                f"amount must be between 1 and {remaining} (what is left to refund)",
                code="parameter_invalid" if remaining else "charge_already_refunded",
                param="amount",
            )
        attempt = intent.attempts.get(status=AS.CAPTURED)
        refund = Refund.objects.create(
            id=new_id("re_"),
            intent=intent,
            attempt=attempt,
            amount=amount,
            currency=intent.currency,
            reason=reason[:200],
        )
        intent.amount_refunded += amount
        intent.save(update_fields=["amount_refunded", "updated_at"])
    return refund_execute(refund_id=refund.id)


def refund_execute(*, refund_id: str) -> Refund:
    """Idempotent: send a pending refund to its gateway (key = refund id) and apply the answer."""
    refund = Refund.objects.select_related("attempt__gateway_account", "intent").get(pk=refund_id)
    if refund.status != Refund.Status.PENDING:
        return refund
    account = refund.attempt.gateway_account
    result = gateway_client(account).refund(
        attempt_id=refund.attempt_id,
        reference=refund.attempt.reference,
        refund_id=refund.id,
        amount=refund.amount,
        currency=refund.currency,
        idempotency_key=refund.id,
    )
    _observe(account.name, result)
    with transaction.atomic():
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        intent = PaymentIntent.objects.select_for_update().get(pk=refund.intent_id)
        if refund.status != Refund.Status.PENDING:
            return refund
        if result.outcome == Outcome.SUCCEEDED:
            refund_to(refund, Refund.Status.SUCCEEDED)
            refund.reference = result.reference or ""
            _event(
                intent,
                "RefundSucceeded",
                f"{refund.id}:succeeded",
                {
                    "refund": refund.id,
                    "gateway_account": account.name,
                    "amount": refund.amount,
                    "currency": refund.currency,
                    "allocations": [{"account": "refunds", "amount": refund.amount}],
                },
            )
        elif result.outcome in (Outcome.UNKNOWN, Outcome.GATEWAY_ERROR):
            # Not refused: try again later with the same idempotency key (the refund id).
            durable_enqueue(
                handler="apps.payments.services.refund_execute",
                kwargs={"refund_id": refund.id},
                idempotency_key=f"refund:{refund.id}",
                run_at=timezone.now() + timedelta(seconds=RESOLVE_BACKOFF_SECONDS[0]),
            )
        else:
            refund_to(refund, Refund.Status.FAILED)
            refund.failure_message = (result.message or "")[:500]
            intent.amount_refunded -= refund.amount  # release the reservation
            intent.save(update_fields=["amount_refunded", "updated_at"])
            _event(
                intent,
                "RefundFailed",
                f"{refund.id}:failed",
                {"refund": refund.id, "message": result.message},
            )
        refund.save()
    return refund


# --------------------------------------------------------------------------- gateway accounts


def gateway_account_update(
    *, name: str, settings: dict | None = None, enabled: bool | None = None
) -> GatewayAccount:
    """Change a gateway account's non-secret settings or enabled flag (admin, simulate_traffic)."""
    account = GatewayAccount.objects.get(name=name)
    fields = []
    if settings is not None:
        account.settings = settings
        fields.append("settings")
    if enabled is not None:
        account.enabled = enabled
        fields.append("enabled")
    if fields:
        account.save(update_fields=fields)
    return account
