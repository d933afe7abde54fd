"""Creating and confirming a payment.

Flow of ``payment_confirm``: route -> attempt at the first candidate -> on a gateway error (or a
soft decline the table says to fail over on) the next candidate at once, within the request's
latency budget; what does not fit continues in a worker (``drive``). A payment that waits for the
customer (3-D Secure) has its open attempt closed at its gateway before it is confirmed again.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from apps.core.ids import new_id
from apps.core.money import MoneyError, normalize_currency, require_amount
from apps.core.recovery import recovery_point
from apps.payments import events
from apps.payments.config import mesh_config
from apps.payments.gateways.base import GatewayStatus
from apps.payments.hooks import SplitPlanRejected, splits_hooks
from apps.payments.locks import lock_attempt, lock_intent
from apps.payments.methods import TEST_METHODS, card_details, is_payment_method_id
from apps.payments.models import SETUP_FUTURE_USAGES, GatewayAccount, PaymentAttempt, PaymentIntent
from apps.payments.selectors import payment_method_get
from apps.payments.services.drive import attempt_start, attempt_start_next, attempts_run
from apps.payments.services.errors import PaymentError
from apps.payments.services.late_charges import gateway_voided
from apps.payments.services.ledger_events import record_event, record_events
from apps.payments.services.setup import gateway_client
from apps.payments.services.truth import payment_attempt_apply_gateway_truth
from apps.payments.statemachine import attempt_to, intent_to
from apps.tenants.db import tenant_connection

IS, AS = PaymentIntent.Status, PaymentAttempt.Status

# An attempt in one of these states may still take the customer's money.
_CHARGEABLE = (AS.PENDING, AS.UNKNOWN, AS.REQUIRES_ACTION, AS.AUTHORIZED)


def _check_amount_limit(amount: int, currency: str) -> None:
    tenant = getattr(tenant_connection(), "tenant", None)
    limit = getattr(tenant, "max_payment_amount", None)
    if limit and amount > limit:
        raise PaymentError(
            f"amount {amount} is above this marketplace's limit of {limit} per payment",
            code="amount_too_large",
            param="amount",
        )


def payment_method_check(*, payment_method: str, customer_id: str = "") -> dict:
    """The card details of a payment method for routing, once it is known the payment may use
    it: the one place that checks a method's owner (payments, and billing before it saves a
    subscription's card). One of ours (``paym_...``) must exist; one attached to a customer is
    charged only for that customer, who must be named (as Stripe requires): 400
    ``parameter_missing`` on ``customer`` when none is, ``payment_method_customer_mismatch`` when
    another is. Anything else is checked by ``_check_payment_method``. Raises PaymentError."""
    token = payment_method
    if not is_payment_method_id(token):
        _check_payment_method(token)
        return card_details(token)
    method = payment_method_get(method_id=token)
    if method is None:
        raise PaymentError(
            f"No such PaymentMethod: {token!r}", code="resource_missing", param="payment_method"
        )
    if method.customer_id and not customer_id:
        raise PaymentError(
            f"payment method {token} belongs to a customer: name that customer",
            code="parameter_missing",
            param="customer",
        )
    if customer_id and method.customer_id and method.customer_id != customer_id:
        raise PaymentError(
            f"payment method {token} belongs to another customer",
            code="payment_method_customer_mismatch",
            param="payment_method",
        )
    return method.card()


def _check_payment_method(token: str) -> None:
    """A payment method must be one that some enabled gateway can take: a test method we know
    (the simulator's, which are Stripe's test ids), or a token in the shape of an enabled
    processor's own. Anything else (``pm_nope``, ``tok_garbage``, an unknown ``pm_card_...``) is a
    clear 400 ``resource_missing`` now, before anything is created, rather than a declined
    payment later."""
    if token in TEST_METHODS:
        return
    # A processor's own token, for the processors whose tokens we cannot list: Stripe's
    # PaymentMethod (and older card/source) ids; Adyen's stored payment method ids, or the
    # encrypted card details of its web components (a JSON object).
    shapes: dict[str, str] = {
        GatewayAccount.Kind.STRIPE: r"(pm|card|src)_[A-Za-z0-9]{14,}",
        GatewayAccount.Kind.ADYEN: r"[A-Za-z0-9]{8,64}|\{.*\}",
    }
    if not token.startswith(("pm_card_", "pm_sim_")):
        kinds = {account.kind for account in mesh_config().accounts.values() if account.enabled}
        if any(re.fullmatch(shapes[kind], token, re.DOTALL) for kind in kinds if kind in shapes):
            return
    raise PaymentError(f"No such PaymentMethod: {token!r}", code="resource_missing", param="payment_method")


def _check_off_session(off_session: bool, *, payment_method: str, customer_id: str) -> None:
    """A merchant-initiated charge is of a method the customer saved with us for that (a ``paym_``
    of theirs): a processor's one-off token carries no consent to charge without the customer.
    (The documented test tokens stand for saved cards in the demo, as in billing's renewals.)"""
    saved = is_payment_method_id(payment_method) or payment_method in TEST_METHODS
    if off_session and not (saved and customer_id):
        raise PaymentError(
            "off_session needs a saved payment method (paym_...) and its customer: a one-off token "
            "carries no consent to charge without the customer",
            code="parameter_invalid",
            param="off_session",
        )


def _check_setup_future_usage(value: str | None, *, customer_id: str) -> None:
    """Saving the card needs a customer to save it for, and one of the two usages."""
    if not value:
        return
    if value not in SETUP_FUTURE_USAGES:
        raise PaymentError(
            f"setup_future_usage must be one of {', '.join(SETUP_FUTURE_USAGES)}",
            code="parameter_invalid",
            param="setup_future_usage",
        )
    if not customer_id:
        raise PaymentError(
            "setup_future_usage needs a customer: the card is saved as the customer's payment method",
            code="parameter_invalid",
            param="setup_future_usage",
        )


def _check_return_url(value: str | None) -> str:
    """A return URL must be an absolute http(s) URL (where a browser can be sent back), at most
    2000 characters. Returns it, or "" when none was given. Raises PaymentError."""
    if value is None or value == "":
        return ""
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or len(value) > 2000:
        raise PaymentError(
            "return_url must be an absolute http or https URL (at most 2000 characters)",
            code="parameter_invalid",
            param="return_url",
        )
    return value


def _split_plan(splits: object, *, amount: int, currency: str) -> object:
    """The payment's split plan, validated by the app that splits payments (``apps.payments.hooks``)
    before anything is written. Raises PaymentError."""
    hooks = splits_hooks()
    if hooks is None:
        raise PaymentError(
            "this platform does not split payments: splits cannot be given",
            code="parameter_unknown",
            param="splits",
        )
    try:
        return hooks.plan_prepare(splits, amount=amount, currency=currency)
    except SplitPlanRejected as exc:
        raise PaymentError(str(exc), code=exc.code, param=exc.param or "splits") from None


def _split_record(intent: PaymentIntent, plan: object | None) -> None:
    hooks = splits_hooks()
    if plan is not None and hooks is not None:
        hooks.plan_record(payment_id=intent.id, plan=plan)


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
    recurring: bool = False,
    setup_future_usage: str | None = None,
    card: dict | None = None,
    confirm: bool = False,
    splits: list | None = None,
    return_url: str | None = None,
) -> PaymentIntent:
    """Create a payment (and confirm it when asked), with a split plan across vendors when
    ``splits`` is given. ``off_session``: the customer is not there (merchant-initiated);
    ``recurring``: a scheduled charge of a subscription (billing's invoices);
    ``setup_future_usage`` ("off_session" or "on_session", needs a customer): save the card for
    later while charging it (``saved_payment_method`` names the method once it succeeded);
    ``return_url``: where the customer comes back after authenticating (3-D Secure), with
    ``payment=<pay_id>`` in its query. Raises PaymentError for bad input; then nothing is charged."""
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
    method_card = payment_method_check(payment_method=payment_method.strip(), customer_id=customer_id)
    if capture_method not in PaymentIntent.CaptureMethod.values:
        raise PaymentError(
            "capture_method must be automatic or manual", code="parameter_invalid", param="capture_method"
        )
    _check_setup_future_usage(setup_future_usage, customer_id=customer_id)
    _check_off_session(off_session, payment_method=payment_method.strip(), customer_id=customer_id)
    return_url = _check_return_url(return_url)
    plan = None if splits is None else _split_plan(splits, amount=amount, currency=currency)
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
        recurring=recurring,
        setup_future_usage=setup_future_usage or "",
        card=card or method_card,
        has_splits=plan is not None,
        return_url=return_url,
    )
    created = events.payment_created(intent)
    if not confirm:
        with transaction.atomic():
            intent.save(force_insert=True)
            _split_record(intent, plan)
            record_events([created])
            recovery_point("payment", intent.id)
        return intent
    # Created and confirmed at once: the payment is written already processing, together with its
    # first attempt (and both events), in one transaction committed before the gateway is called.
    config = mesh_config()
    deadline = time.monotonic() + settings.PAYMENT_LATENCY_BUDGET_MS / 1000
    with transaction.atomic():
        intent_to(intent, IS.PROCESSING)
        intent.routing = {"tried": []}
        step = attempt_start(
            intent, config, deadline=deadline, number=1, insert=True, events_before=[created]
        )
        _split_record(intent, plan)
        recovery_point("payment", intent.id)
    return attempts_run(step, config, deadline)


def payment_confirm(
    *,
    intent_id: str,
    payment_method: str | None = None,
    budget_ms: int | None = None,
    return_url: str | None = None,
    off_session: bool | None = None,
) -> PaymentIntent:
    """Start (or restart after a failure) the attempts. Returns the intent in its new state:
    succeeded, requires_capture, requires_action, failed, or processing (a worker continues).
    ``return_url`` replaces the payment's (see ``payment_intent_create``); ``off_session=False``
    confirms a merchant-initiated payment with the customer there (the emailed authentication
    link), so the issuer may challenge them."""
    budget = settings.PAYMENT_LATENCY_BUDGET_MS if budget_ms is None else budget_ms
    return_url = _check_return_url(return_url)
    method_card = None
    if payment_method and is_payment_method_id(payment_method):
        current = PaymentIntent.objects.filter(pk=intent_id).values_list("customer_id", flat=True).first()
        method_card = payment_method_check(payment_method=payment_method, customer_id=current or "")
    _action_close(intent_id)
    config = mesh_config()
    deadline = time.monotonic() + budget / 1000
    with transaction.atomic():
        intent = lock_intent(intent_id)
        if intent.status not in (IS.REQUIRES_CONFIRMATION, IS.FAILED, IS.REQUIRES_ACTION):
            raise PaymentError(f"payment {intent.id} is {intent.status}; it cannot be confirmed now")
        busy = PaymentAttempt.objects.filter(intent_id=intent.pk).filter(
            Q(status__in=_CHARGEABLE) | ~Q(pending_operation="")
        )
        if busy.exists():
            # Never two attempts that can still charge, nor a new one while a cancel is in flight.
            raise PaymentError(f"payment {intent.id} has an attempt that can still be charged; retry")
        if payment_method:
            intent.payment_method = payment_method
            intent.card = method_card if method_card is not None else card_details(payment_method)
        if return_url:
            intent.return_url = return_url
        if off_session is not None:
            intent.off_session = off_session
        intent_to(intent, IS.PROCESSING)
        # Each confirmation is a new round: its events' keys differ from the earlier rounds'.
        intent.routing = {"tried": [], "round": int(intent.routing.get("round", 0)) + 1}
        intent.last_error = {}
        intent.next_action = {}
        step = attempt_start_next(
            intent,
            config,
            deadline=deadline,
            changed=(
                "status",
                "payment_method",
                "card",
                "routing",
                "last_error",
                "next_action",
                "return_url",
                "off_session",
            ),
        )
    return attempts_run(step, config, deadline)


def _action_close(intent_id: str) -> None:
    """Before a payment that waits for the customer (3-D Secure) is confirmed again, close its
    open attempt at its gateway (cancel by our attempt id, with no transaction open), so the
    customer completing the old challenge later can never charge as well. When the gateway says
    the customer completed it meanwhile, that news is applied and the payment can no longer be
    confirmed. Raises PaymentError (409) while the attempt cannot be closed; nothing new starts."""
    open_attempt = (
        PaymentAttempt.objects.select_related("gateway_account")
        .filter(intent_id=intent_id, status=AS.REQUIRES_ACTION)
        .first()
    )
    if open_attempt is None:
        return
    gateway = gateway_client(open_attempt.gateway_account)
    result = gateway.cancel(
        attempt_id=open_attempt.id,
        reference=open_attempt.reference or None,
        idempotency_key=f"{open_attempt.id}:cancel",
    )
    if gateway_voided(result):
        with transaction.atomic():
            attempt = lock_attempt(open_attempt.id)
            if attempt.status == AS.REQUIRES_ACTION:
                attempt_to(attempt, AS.CANCELED)
                attempt.message = "closed at the gateway before the payment was confirmed again"
                attempt.save(update_fields=["status", "message", "updated_at"])
                record_event(events.attempt_failed(attempt.intent, attempt, canceled=True))
        return
    if result.status in (GatewayStatus.CAPTURED, GatewayStatus.AUTHORIZED):
        # Applied from the gateway's full record (amounts, fee), never from the cancel's refusal;
        # if it cannot be read now, its webhook applies it.
        truth = gateway.retrieve(
            attempt_id=open_attempt.id, reference=result.reference or open_attempt.reference
        )
        if truth.status in (GatewayStatus.CAPTURED, GatewayStatus.AUTHORIZED):
            payment_attempt_apply_gateway_truth(attempt_id=open_attempt.id, result=truth)
        raise PaymentError(
            f"payment {intent_id} was authenticated by the customer meanwhile; it cannot be confirmed again"
        )
    raise PaymentError(
        f"payment {intent_id} waits for the customer on attempt {open_attempt.id}, which could not be "
        f"closed at {open_attempt.gateway_account.name} yet ({result.message or result.status}); retry"
    )
