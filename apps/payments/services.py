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
import re
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Exists, Model, OuterRef, Q
from django.db.models.fields.json import KT
from django.template.loader import render_to_string
from django.utils import timezone

from apps.core.durable import durable_enqueue
from apps.core.models import DurableTask
from apps.core.money import MoneyError, format_amount, normalize_currency, require_amount
from apps.core.recovery import recovery_point
from apps.ledger.services import EventSpec, ledger_record
from apps.payments import declines, hotpath
from apps.payments.breaker import CircuitBreaker
from apps.payments.config import MeshConfig, mesh_config
from apps.payments.gateways.base import ChargeRequest, GatewayConfig, GatewayResult, GatewayStatus, Outcome
from apps.payments.gateways.registry import gateway_for
from apps.payments.gateways.simulator import card_for
from apps.payments.models import (
    DeclineRule,
    GatewayAccount,
    LateCharge,
    PaymentAttempt,
    PaymentIntent,
    Refund,
    RoutingRule,
    new_id,
)
from apps.payments.routing import route, success_record
from apps.payments.statemachine import attempt_to, intent_to, refund_to
from apps.webhooks.outbound import event_publish, operator_emails

log = logging.getLogger(__name__)
IS, AS = PaymentIntent.Status, PaymentAttempt.Status
RESOLVE_BACKOFF_SECONDS = [2, 5, 15, 60, 300, 900, 3600]


def attempt_lease() -> timedelta:
    """How long a started attempt's gateway call may still be in flight (``lease_until``)."""
    return timedelta(seconds=settings.PAYMENT_ATTEMPT_LEASE_SECONDS)


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


def gateway_client(account: GatewayAccount, config: MeshConfig | None = None):
    """The adapter for ``account``; with ``config`` (a ``mesh_config()`` snapshot holding this
    account) its credentials are not decrypted again."""
    if config is not None:
        return gateway_for(account.kind, config.gateway_config(account))
    return gateway_for(
        account.kind,
        GatewayConfig(account_id=account.name, credentials=account.credentials, settings=account.settings),
    )


# --------------------------------------------------------------------------- ledger events


def _spec(intent: PaymentIntent, event_type: str, key: str, payload: dict | None = None) -> EventSpec:
    return EventSpec(
        event_type=event_type,
        stream=intent.id,
        payload={"payment": intent.id, **(payload or {})},
        idempotency_key=f"{intent.id}:{key}",
    )


# What storefronts hear of (outbound webhooks, ``GET /api/v1/events``): the ledger event that
# records a change names the announcement, published in the same transaction, after the rows it
# snapshots are written.
OUTBOUND_EVENTS: dict[str, tuple[str, str]] = {
    "ChargeAuthorized": ("payment.requires_capture", "payment"),
    "AttemptRequiresAction": ("payment.requires_action", "payment"),
    "ChargeCaptured": ("payment.succeeded", "payment"),
    "PaymentFailed": ("payment.failed", "payment"),
    "PaymentCanceled": ("payment.canceled", "payment"),
    "RefundSucceeded": ("refund.succeeded", "refund"),
    "RefundFailed": ("refund.failed", "refund"),
}


def _record(specs: list[EventSpec]) -> None:
    """Record a payment's events of one transaction, in order. Callers write them last, just before
    the commit, so the balance rows a posting locks are held as briefly as possible. No savepoint
    per event: a payment's stream is only written under its row lock (or at its creation), and if
    recording fails the caller's whole transaction rolls back."""
    for s in specs:
        ledger_record(
            event_type=s.event_type,
            stream=s.stream,
            payload=s.payload,
            idempotency_key=s.idempotency_key,
            savepoint=False,
        )
    for s in specs:
        announced = OUTBOUND_EVENTS.get(s.event_type)
        if announced:
            event_type, object_type = announced
            event_publish(
                type=event_type,
                object_type=object_type,
                object_id=s.payload["refund"] if object_type == "refund" else s.stream,
                source_key=s.idempotency_key,
            )


def _event(intent: PaymentIntent, event_type: str, key: str, payload: dict | None = None) -> None:
    _record([_spec(intent, event_type, key, payload)])


def _allocations(intent: PaymentIntent, amount: int, fee: int) -> list[dict]:
    """Who the captured money belongs to: the vendors of its split plan (net of commission and
    the fees they bear) and the platform; without a plan, the platform."""
    if intent.has_splits:
        from apps.vendors.funds import split_capture_allocations

        return split_capture_allocations(payment_id=intent.id, amount=amount, fee=fee)
    return [{"account": "platform_revenue", "amount": amount}]


def _refund_succeeded_payload(intent: PaymentIntent, refund: Refund) -> dict:
    """The ``RefundSucceeded`` event's payload: the money goes out through the gateway that took it,
    unwinding what the capture allocated."""
    return {
        "refund": refund.id,
        "gateway_account": refund.attempt.gateway_account.name,
        "amount": refund.amount,
        "currency": refund.currency,
        "allocations": _refund_allocations(intent, refund.id, refund.amount),
    }


def _refund_settle(
    intent: PaymentIntent, refund: Refund, *, succeeded: bool, reference: str, message: str
) -> None:
    """Inside the caller's transaction, with the refund and its payment locked: a pending refund
    becomes succeeded (posted) or failed (its reservation on the payment released), with its event."""
    if succeeded:
        refund_to(refund, Refund.Status.SUCCEEDED)
        refund.reference = reference[:100]
        refund.save()  # before its event, which snapshots it for webhooks
        _event(intent, "RefundSucceeded", f"{refund.id}:succeeded", _refund_succeeded_payload(intent, refund))
        return
    refund_to(refund, Refund.Status.FAILED)
    refund.failure_message = message[:500]
    refund.save()
    intent.amount_refunded -= refund.amount  # release the reservation
    intent.save(update_fields=["amount_refunded", "updated_at"])
    _event(intent, "RefundFailed", f"{refund.id}:failed", {"refund": refund.id, "message": message})


def _refund_allocations(intent: PaymentIntent, refund_id: str, amount: int) -> list[dict]:
    """Who bears a refund: a split payment's vendors and commission in proportion; else the
    platform (``refunds``)."""
    if intent.has_splits:
        from apps.vendors.funds import split_refund_allocations

        allocations = split_refund_allocations(payment_id=intent.id, refund_id=refund_id, amount=amount)
        if allocations is not None:
            return allocations
    return [{"account": "refunds", "amount": amount}]


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
    """A payment method must be one that some enabled gateway can take: a test method we know
    (the simulator's, which are Stripe's test ids), or a token in the shape of an enabled
    processor's own. Anything else (``pm_nope``, ``tok_garbage``, an unknown ``pm_card_...``) is a
    clear 400 ``resource_missing`` now, before anything is created, rather than a declined
    payment later."""
    from apps.payments.methods import TEST_METHODS

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
    splits: list | None = None,
) -> PaymentIntent:
    """Create a payment (and confirm it when asked), with a split plan across vendors when
    ``splits`` is given. Raises PaymentError for bad input; then nothing is charged."""
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
    plan = None
    if splits is not None:
        from apps.vendors.funds import split_plan_prepare, split_record
        from apps.vendors.splits import SplitError

        try:
            plan = split_plan_prepare(splits, amount=amount, currency=currency)
        except SplitError as exc:
            raise PaymentError(str(exc), code=exc.code, param=exc.param or "splits") from None
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
        has_splits=plan is not None,
    )
    created = _spec(
        intent,
        "PaymentIntentCreated",
        "created",
        {"amount": amount, "currency": currency, "capture_method": capture_method},
    )
    if not confirm:
        with transaction.atomic():
            intent.save(force_insert=True)
            if plan is not None:
                split_record(payment_id=intent.id, plan=plan)
            _record([created])
            recovery_point("payment", intent.id)
        return intent
    # Created and confirmed at once: the payment is written already processing, together with its
    # first attempt (and both events), in one transaction committed before the gateway is called.
    config = mesh_config()
    deadline = time.monotonic() + settings.PAYMENT_LATENCY_BUDGET_MS / 1000
    with transaction.atomic():
        intent_to(intent, IS.PROCESSING)
        intent.routing = {"tried": []}
        step = _step(intent, config, deadline=deadline, number=1, insert=True, events=[created])
        if plan is not None:
            split_record(payment_id=intent.id, plan=plan)
        recovery_point("payment", intent.id)
    return _run(step, config, deadline)


def payment_confirm(
    *, intent_id: str, payment_method: str | None = None, budget_ms: int | None = None
) -> PaymentIntent:
    """Start (or restart after a failure) the attempts. Returns the intent in its new state:
    succeeded, requires_capture, requires_action, failed, or processing (a worker continues)."""
    budget = settings.PAYMENT_LATENCY_BUDGET_MS if budget_ms is None else budget_ms
    _action_close(intent_id)
    config = mesh_config()
    deadline = time.monotonic() + budget / 1000
    with transaction.atomic():
        intent = PaymentIntent.objects.select_for_update().get(pk=intent_id)
        if intent.status not in (IS.REQUIRES_CONFIRMATION, IS.FAILED, IS.REQUIRES_ACTION):
            raise PaymentError(f"payment {intent.id} is {intent.status}; it cannot be confirmed now")
        busy = PaymentAttempt.objects.filter(intent_id=intent.pk).filter(
            Q(status__in=_CHARGEABLE) | ~Q(pending_operation="")
        )
        if busy.exists():
            # Never two attempts that can still charge, nor a new one while a cancel is in flight.
            raise PaymentError(f"payment {intent.id} has an attempt that can still be charged; retry")
        if payment_method:
            intent.payment_method, intent.card = payment_method, card_for(payment_method)
        intent_to(intent, IS.PROCESSING)
        # Each confirmation is a new round: its events' keys differ from the earlier rounds'.
        intent.routing = {"tried": [], "round": int(intent.routing.get("round", 0)) + 1}
        intent.last_error = {}
        intent.next_action = {}
        step = _next(
            intent,
            config,
            deadline=deadline,
            changed=("status", "payment_method", "card", "routing", "last_error", "next_action"),
        )
    return _run(step, config, deadline)


# An attempt in one of these states may still take the customer's money.
_CHARGEABLE = (AS.PENDING, AS.UNKNOWN, AS.REQUIRES_ACTION, AS.AUTHORIZED)
# Closed by us as "nothing was charged": money appearing on one later is a late charge.
_CLOSED_UNCHARGED = (AS.FAILED, AS.DECLINED, AS.CANCELED)


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
    if _voided(result):
        with transaction.atomic():
            attempt = hotpath.lock_attempt(open_attempt.id)
            if attempt.status == AS.REQUIRES_ACTION:
                attempt_to(attempt, AS.CANCELED)
                attempt.message = "closed at the gateway before the payment was confirmed again"
                attempt.save(update_fields=["status", "message", "updated_at"])
                _event(attempt.intent, "AttemptFailed", f"{attempt.id}:canceled", {"attempt": attempt.id})
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


def payment_continue(*, intent_id: str) -> None:
    """Idempotent: drive a processing payment on (worker side, fresh budget)."""
    _drive(intent_id, deadline=time.monotonic() + settings.PAYMENT_LATENCY_BUDGET_MS / 1000)


def _drive(intent_id: str, *, deadline: float) -> PaymentIntent:
    config = mesh_config()
    with transaction.atomic():
        intent = PaymentIntent.objects.select_for_update().get(pk=intent_id)
        if intent.status != IS.PROCESSING:
            return intent
        step = _next(intent, config, deadline=deadline)
    return _run(step, config, deadline)


@dataclass
class _Step:
    """Where a payment stands after a transaction: ``attempt`` was started (committed) and
    ``account`` is to be called next, or ``attempt`` is None and there is nothing to call now
    (the payment finished, failed, waits for an unknown outcome, or was left to a worker)."""

    intent: PaymentIntent
    account: GatewayAccount | None = None
    attempt: PaymentAttempt | None = None


def _run(step: _Step, config: MeshConfig, deadline: float) -> PaymentIntent:
    """Call the gateway for each started attempt, with no transaction open, and apply its answer
    (a failover starts the next attempt in the same transaction). Returns the payment as it is."""
    while step.attempt is not None and step.account is not None:
        result, latency_ms = _authorize(step.account, step.attempt, step.intent, config)
        _, step = _finish(step.attempt.pk, result, latency_ms=latency_ms, config=config, deadline=deadline)
    return step.intent


def _next(
    intent: PaymentIntent, config: MeshConfig, *, deadline: float, changed: tuple[str, ...] = ()
) -> _Step:
    """``_step`` for a locked, processing payment, unless one of its attempts is pending or unknown:
    then nothing happens (never fail over while a charge may exist)."""
    attempts = list(PaymentAttempt.objects.filter(intent_id=intent.pk).values_list("number", "status"))
    if any(status in (AS.PENDING, AS.UNKNOWN) for _, status in attempts):
        if changed:
            intent.save(update_fields=[*changed, "updated_at"])
        return _Step(intent)
    number = max((n for n, _ in attempts), default=0) + 1
    return _step(intent, config, deadline=deadline, number=number, changed=changed)


def _round(intent: PaymentIntent) -> str:
    """The confirmation round in keys: empty when created confirmed, then ``r1:``, ``r2:``, ..."""
    number = int(intent.routing.get("round", 0))
    return f"r{number}:" if number else ""


def _step(
    intent: PaymentIntent,
    config: MeshConfig,
    *,
    deadline: float,
    number: int,
    insert: bool = False,
    changed: tuple[str, ...] = (),
    events: list[EventSpec] | None = None,
    also_update: list[tuple[PaymentAttempt, list[str]]] | None = None,
) -> _Step:
    """Inside the caller's transaction, for a processing payment that is locked (or new: ``insert``)
    and has no attempt pending or unknown: route it, excluding the gateways already tried, then
    start attempt ``number`` at the first candidate; or fail the payment when no gateway can take
    it; or leave the rest to a worker when the latency budget is spent. Writes the payment (with
    the fields in ``changed`` the caller set), the attempt and the caller's ``also_update`` rows in
    one statement, then records ``events`` and the events of what was done here, in that order."""
    events = list(events or [])
    fields = set(changed)
    tried = list(intent.routing.get("tried", []))
    decision = route(intent, exclude=set(tried), config=config)
    account = attempt = None
    if not decision.candidates:
        if not intent.last_error:
            intent.last_error = {
                "type": "api_error",
                "code": "no_gateway_available",
                "message": "no gateway could take this payment",
                "skipped": decision.skipped,
            }
        intent.routing = {**intent.routing, "final": decision.as_dict()}
        intent_to(intent, IS.FAILED)
        fields |= {"status", "last_error", "routing"}
        events.append(
            _spec(
                intent,
                "PaymentFailed",
                f"failed:{_round(intent)}{len(tried)}",
                {"code": intent.last_error.get("code")},
            )
        )
    elif time.monotonic() > deadline:
        durable_enqueue(
            handler="apps.payments.services.payment_continue",
            kwargs={"intent_id": intent.id},
            idempotency_key=f"continue:{intent.id}:{_round(intent)}{len(tried)}",
        )
    else:
        account = config.accounts[decision.candidates[0]]
        attempt = PaymentAttempt(
            id=f"{intent.id}_{number}",
            intent=intent,
            number=number,
            gateway_account=account,
            lease_until=timezone.now() + attempt_lease(),
        )
        intent.routing = {**intent.routing, "decision": decision.as_dict(), "tried": [*tried, account.name]}
        fields.add("routing")
        events.append(
            _spec(
                intent,
                "AttemptStarted",
                f"{attempt.id}:started",
                {"attempt": attempt.id, "gateway_account": account.name},
            )
        )
    inserts: list[Model] = [intent] if insert else []
    updates: list[tuple[Model, list[str]]] = list(also_update or [])
    if fields and not insert:
        updates.append((intent, [*sorted(fields), "updated_at"]))
    if attempt is not None:
        inserts.append(attempt)
    hotpath.write(insert=inserts, update=updates)
    _record(events)
    return _Step(intent, account, attempt)


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
        metadata={"payment": intent.id, **_simulator_key(intent, attempt)},
    )


def _simulator_key(intent: PaymentIntent, attempt: PaymentAttempt) -> dict:
    """A payment created with ``metadata.simulator_key`` (simulations, load tests) has the
    simulator's random draws keyed on it and the attempt number instead of on the random ids, so
    a seeded simulation is reproducible run after run."""
    key = (intent.metadata or {}).get("simulator_key")
    return {"simulator_key": f"{key}:{attempt.number}"} if key else {}


def _authorize(
    account: GatewayAccount, attempt: PaymentAttempt, intent: PaymentIntent, config: MeshConfig | None = None
) -> tuple[GatewayResult, int]:
    """The gateway's answer for an attempt and how long it took (ms). Writes nothing to the
    database: the latency is saved with the outcome."""
    started = time.perf_counter()
    try:
        result = gateway_client(account, config).authorize(_charge_request(intent, attempt))
    except Exception as exc:  # an adapter bug must not lose the attempt: we do not know what happened
        log.exception("gateway adapter raised", extra={"attempt": attempt.id})
        result = GatewayResult(Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message=f"adapter error: {exc}")
    latency = int((time.perf_counter() - started) * 1000)
    _observe(account.name, result)
    return result, latency


def _observe(account_name: str, result: GatewayResult) -> None:
    """Feed the breaker (and, for answers, the success rate) in one Redis round trip."""
    breaker = CircuitBreaker(account_name)
    if result.outcome in (Outcome.GATEWAY_ERROR, Outcome.UNKNOWN):
        breaker.record(success=False)
    else:
        approved = result.outcome in (Outcome.SUCCEEDED, Outcome.REQUIRES_ACTION)
        breaker.record(
            success=True, also=lambda pipe: success_record(account_name, approved=approved, pipe=pipe)
        )


def _attempt_finish(attempt_id: str, result: GatewayResult) -> str:
    """Apply a gateway result to the attempt and its payment. Returns "done", "failover" or
    "unknown". Idempotent: a result for an attempt that already left pending/unknown is ignored."""
    return _finish(attempt_id, result)[0]


_ATTEMPT_RESULT_FIELDS = (
    "status",
    "outcome",
    "reference",
    "decline_code",
    "advice_code",
    "message",
    "amount_authorized",
    "amount_captured",
    "fee",
    "next_resolve_at",
)
_INTENT_RESULT_FIELDS = (
    "status",
    "gateway_account",
    "amount_received",
    "amount_capturable",
    "next_action",
    "last_error",
)


def _finish(
    attempt_id: str,
    result: GatewayResult,
    *,
    latency_ms: int | None = None,
    config: MeshConfig | None = None,
    deadline: float | None = None,
) -> tuple[str, _Step]:
    """``_attempt_finish``, also saving the call's latency; with a ``deadline``, a failover starts
    the next attempt (or fails the payment, or leaves it to a worker) in the same transaction."""
    config = config or mesh_config()
    with transaction.atomic():
        attempt = hotpath.lock_attempt(attempt_id)  # and its payment, both FOR UPDATE
        intent = attempt.intent
        if attempt.status not in (AS.PENDING, AS.UNKNOWN):
            if _money_taken(result) and attempt.status in _CLOSED_UNCHARGED:
                # The answer came after the attempt was closed (its call outlived the lease):
                # never dropped, never kept.
                _late_charge_found(
                    intent, attempt, result, found_by="the gateway's answer came after the attempt was closed"
                )
            return "done", _Step(intent)
        account = config.account_by_id(attempt.gateway_account_id) or attempt.gateway_account
        attempt.gateway_account = account
        attempt.outcome = result.outcome
        attempt.reference = result.reference or attempt.reference
        attempt.decline_code = result.decline_code or ""
        attempt.advice_code = result.advice_code or ""
        attempt.message = (result.message or "")[:500]
        events: list[EventSpec] = []
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
                events.append(_capture_spec(intent, attempt, attempt.amount_captured, result.fee))
            else:
                attempt_to(attempt, AS.AUTHORIZED)
                intent_to(intent, IS.REQUIRES_CAPTURE)
                intent.amount_capturable = attempt.amount_authorized
                events.append(
                    _spec(
                        intent,
                        "ChargeAuthorized",
                        f"{attempt.id}:authorized",
                        {
                            "attempt": attempt.id,
                            "gateway_account": account.name,
                            "amount": attempt.amount_authorized,
                        },
                    )
                )
            outcome = "done"
        elif result.outcome == Outcome.REQUIRES_ACTION:
            attempt_to(attempt, AS.REQUIRES_ACTION)
            intent_to(intent, IS.REQUIRES_ACTION)
            intent.next_action = result.raw.get("next_action", {"type": "authenticate"})
            attempt.next_resolve_at = _next_action_check(timezone.now(), timezone.now())
            events.append(
                _spec(
                    intent, "AttemptRequiresAction", f"{attempt.id}:requires_action", {"attempt": attempt.id}
                )
            )
            outcome = "done"
        elif result.outcome in (Outcome.DECLINED_SOFT, Outcome.DECLINED_HARD):
            attempt_to(attempt, AS.DECLINED)
            events.append(
                _spec(
                    intent,
                    "AttemptDeclined",
                    f"{attempt.id}:declined",
                    {
                        "attempt": attempt.id,
                        "decline_code": attempt.decline_code,
                        "advice_code": attempt.advice_code,
                    },
                )
            )
            action, why = declines.decline_action(
                gateway_kind=account.kind,
                outcome=result.outcome,
                decline_code=attempt.decline_code,
                advice_code=attempt.advice_code,
                table=config.decline_rules,
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
                events.append(
                    _spec(
                        intent,
                        "PaymentFailed",
                        f"{attempt.id}:failed",
                        {"attempt": attempt.id, "action": action},
                    )
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
            events.append(_spec(intent, "AttemptFailed", f"{attempt.id}:failed", {"attempt": attempt.id}))
            outcome = "failover"
        else:  # UNKNOWN: the charge may exist; stop and resolve
            attempt_to(attempt, AS.UNKNOWN)
            attempt.next_resolve_at = timezone.now() + timedelta(seconds=RESOLVE_BACKOFF_SECONDS[0])
            events.append(
                _spec(
                    intent,
                    "AttemptUnknown",
                    f"{attempt.id}:unknown:{attempt.resolve_count}",
                    {"attempt": attempt.id},
                )
            )
            durable_enqueue(
                handler="apps.payments.services.payment_attempt_resolve",
                kwargs={"attempt_id": attempt.id},
                idempotency_key=f"resolve:{attempt.id}",
                run_at=attempt.next_resolve_at,
                max_attempts=len(RESOLVE_BACKOFF_SECONDS) + 5,
            )
            outcome = "unknown"
        if latency_ms is not None:
            attempt.latency_ms = latency_ms
        attempt_fields = [
            *_ATTEMPT_RESULT_FIELDS,
            *(("latency_ms",) if latency_ms is not None else ()),
            "updated_at",
        ]
        if outcome == "failover" and deadline is not None and intent.status == IS.PROCESSING:
            # The attempt just finished was the payment's latest and only open one.
            step = _step(
                intent,
                config,
                deadline=deadline,
                number=attempt.number + 1,
                changed=_INTENT_RESULT_FIELDS,
                events=events,
                also_update=[(attempt, attempt_fields)],
            )
            return outcome, step
        hotpath.write(update=[(attempt, attempt_fields), (intent, [*_INTENT_RESULT_FIELDS, "updated_at"])])
        _record(events)
    return outcome, _Step(intent)


def _capture_spec(intent: PaymentIntent, attempt: PaymentAttempt, amount: int, fee: int) -> EventSpec:
    return _spec(
        intent,
        "ChargeCaptured",
        f"{attempt.id}:captured",
        {
            "attempt": attempt.id,
            "gateway_account": attempt.gateway_account.name,
            "amount": amount,
            "currency": intent.currency,
            "fee": fee,
            "allocations": _allocations(intent, amount, fee),
        },
    )


def _post_capture(intent: PaymentIntent, attempt: PaymentAttempt, amount: int, fee: int) -> None:
    _record([_capture_spec(intent, attempt, amount, fee)])


# --------------------------------------------------------------------------- unknown outcomes


def payment_attempt_resolve(*, attempt_id: str) -> None:
    """Idempotent: find out what happened to an attempt whose answer was lost, apply it, and let
    the payment continue. Raises AttemptStillUnknown (the durable task retries with backoff)."""
    attempt = PaymentAttempt.objects.select_related("gateway_account", "intent").get(pk=attempt_id)
    if attempt.status not in (AS.PENDING, AS.UNKNOWN):
        # Resolved already (by an earlier run of this task that died before the payment moved on,
        # or by a webhook): make sure the payment continues.
        payment_continue(intent_id=attempt.intent_id)
        return
    account = attempt.gateway_account
    if attempt.status == AS.PENDING and _in_flight(attempt):
        # Its gateway call may still be running: acting now could close an attempt that is
        # about to be charged. Wait for the lease to pass.
        raise AttemptStillUnknown(
            f"attempt {attempt.id}'s call may still be in flight until {attempt.lease_until}"
        )
    gateway = gateway_client(account)
    truth = gateway.retrieve(attempt_id=attempt.id, reference=attempt.reference or None)
    if truth.status in (GatewayStatus.UNKNOWN, GatewayStatus.ERROR):
        # The gateway has no lookup (Adyen) or could not answer: replay the very same request with
        # the same idempotency key. The processor returns its first answer if it got the request,
        # or processes it now if it never did; either way the charge exists at most once.
        replay = gateway.authorize(_charge_request(attempt.intent, attempt))
        # Only an answer about this very key settles it. A gateway error on the replay (refused
        # connection, 5xx) says nothing about the original request, so it stays unknown.
        if replay.outcome in (
            Outcome.SUCCEEDED,
            Outcome.REQUIRES_ACTION,
            Outcome.DECLINED_SOFT,
            Outcome.DECLINED_HARD,
        ):
            if _attempt_finish(attempt.id, replay) == "failover" or replay.outcome != Outcome.SUCCEEDED:
                payment_continue(intent_id=attempt.intent_id)
            return
        if (
            truth.status == GatewayStatus.ERROR
            or replay.outcome == Outcome.UNKNOWN
            or getattr(gateway, "can_look_up", True)
        ):
            # Nothing was learnt (the lookup's or the replay's answer was lost): a technical
            # cancel now could turn a decline we cannot see into a failover. Ask again later. Only
            # a gateway that has no lookup at all (Adyen) goes on to the technical cancel.
            _still_unknown(attempt, account)
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
    elif truth.status == GatewayStatus.REQUIRES_ACTION:
        # The charge waits for the customer (3-D Secure): so does the payment.
        _attempt_finish(
            attempt.id,
            GatewayResult(
                Outcome.REQUIRES_ACTION,
                GatewayStatus.REQUIRES_ACTION,
                reference=truth.reference,
                message=truth.message or "resolved by retrieve: waiting for the customer",
                raw=truth.raw,
            ),
        )
    elif truth.status == GatewayStatus.DECLINED:
        # The issuer answered: a decline, handled by the decline table like any other (a hard
        # decline stops; it is never a gateway error to fail over from).
        outcome = (
            truth.outcome
            if truth.outcome in (Outcome.DECLINED_SOFT, Outcome.DECLINED_HARD)
            else Outcome.DECLINED_SOFT
        )
        _attempt_finish(
            attempt.id,
            GatewayResult(
                outcome,
                GatewayStatus.DECLINED,
                reference=truth.reference,
                decline_code=truth.decline_code or "generic_decline",
                advice_code=truth.advice_code,
                message=truth.message or "resolved by retrieve: declined",
            ),
        )
    elif truth.status in (GatewayStatus.NOT_FOUND, GatewayStatus.CANCELED):
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
        if _voided(cancel):
            _attempt_finish(
                attempt.id,
                GatewayResult(
                    Outcome.GATEWAY_ERROR, GatewayStatus.CANCELED, message="resolved by technical cancel"
                ),
            )
        else:
            _still_unknown(attempt, account)
    payment_continue(intent_id=attempt.intent_id)


def _in_flight(attempt: PaymentAttempt) -> bool:
    """May the attempt's gateway call still be running? (Rows from before leases: by age.)"""
    now = timezone.now()
    if attempt.lease_until is not None:
        return attempt.lease_until > now
    return attempt.updated_at > now - attempt_lease()


def _still_unknown(attempt: PaymentAttempt, account: GatewayAccount) -> None:
    count = attempt.resolve_count + 1
    delay = RESOLVE_BACKOFF_SECONDS[min(count, len(RESOLVE_BACKOFF_SECONDS) - 1)]
    PaymentAttempt.objects.filter(pk=attempt.pk).update(
        resolve_count=count, next_resolve_at=timezone.now() + timedelta(seconds=delay)
    )
    raise AttemptStillUnknown(f"attempt {attempt.id} is still unknown at {account.name}")


def payments_reconcile() -> int:
    """Idempotent: find attempts stuck unknown, or pending longer than any gateway call can take
    (the process died mid-call), and queue their resolution. Returns how many were queued."""
    now = timezone.now()
    stuck = (
        PaymentAttempt.objects.filter(status=AS.UNKNOWN, next_resolve_at__lte=now)
        | PaymentAttempt.objects.filter(status=AS.PENDING, lease_until__lte=now)
        | PaymentAttempt.objects.filter(
            status=AS.PENDING, lease_until__isnull=True, updated_at__lte=now - attempt_lease()
        )
    )
    queued = 0
    for attempt in stuck[:500]:
        durable_enqueue(
            handler="apps.payments.services.payment_attempt_resolve",
            kwargs={"attempt_id": attempt.id},
            idempotency_key=f"reconcile:{attempt.id}:{attempt.resolve_count}:{attempt.status}",
        )
        queued += 1
    # A processing payment with no attempt open and nothing driving it (the process that was to
    # start its next attempt died after the last one settled): drive it on.
    stranded = (
        PaymentIntent.objects.filter(status=IS.PROCESSING, updated_at__lte=now - attempt_lease())
        .exclude(attempts__status__in=[AS.PENDING, AS.UNKNOWN])
        .values_list("id", "updated_at")
    )
    for intent_id, updated_at in stranded[:500]:
        durable_enqueue(
            handler="apps.payments.services.payment_continue",
            kwargs={"intent_id": intent_id},
            idempotency_key=f"continue:{intent_id}:stranded:{updated_at:%Y-%m-%dT%H:%M:%S.%f}",
        )
        queued += 1
    waiting = PaymentAttempt.objects.filter(status=AS.REQUIRES_ACTION, next_resolve_at__lte=now)
    for attempt_id, check_at in waiting.values_list("id", "next_resolve_at")[:500]:
        durable_enqueue(
            handler="apps.payments.services.payment_attempt_refresh",
            kwargs={"attempt_id": attempt_id},
            idempotency_key=f"refresh:{attempt_id}:{check_at:%Y-%m-%dT%H:%M:%S.%f}",
        )
        queued += 1
    return queued + payment_operations_reconcile()


# When to ask the gateway about an attempt waiting for the customer, counted from when it began to
# wait: its webhook may never come. After the last, its webhooks (or the storefront) decide.
ACTION_CHECKS = [
    timedelta(minutes=10),
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(days=1),
    timedelta(days=3),
]


def _next_action_check(waiting_since, now):
    """The next time to ask about an attempt waiting since ``waiting_since``; None after the last."""
    return next((waiting_since + d for d in ACTION_CHECKS if waiting_since + d > now), None)


def payment_attempt_refresh(*, attempt_id: str) -> str:
    """Idempotent: ask the gateway what became of an attempt waiting for the customer (3-D Secure),
    in case its webhook was lost, and apply the news (captured, authorised, declined, cancelled)
    as the webhook would have. Then schedules the next check (``ACTION_CHECKS``). Returns what it
    did."""
    attempt = PaymentAttempt.objects.select_related("gateway_account").get(pk=attempt_id)
    if attempt.status != AS.REQUIRES_ACTION:
        return f"attempt {attempt.id} is {attempt.status}"
    truth = gateway_client(attempt.gateway_account).retrieve(
        attempt_id=attempt.id, reference=attempt.reference or None
    )
    if truth.status in (
        GatewayStatus.CAPTURED,
        GatewayStatus.AUTHORIZED,
        GatewayStatus.DECLINED,
        GatewayStatus.CANCELED,
    ):
        return payment_attempt_apply_gateway_truth(attempt_id=attempt.id, result=truth)
    with transaction.atomic():
        attempt = hotpath.lock_attempt(attempt_id)
        if attempt.status == AS.REQUIRES_ACTION:
            # Still waiting (or the gateway could not say): look again later.
            attempt.next_resolve_at = _next_action_check(
                attempt.updated_at, timezone.now() + timedelta(seconds=1)
            )
            attempt.save(update_fields=["next_resolve_at"])
    return f"attempt {attempt.id} still waits for the customer ({truth.status})"


# --------------------------------------------------------------------------- capture, cancel, refund
# Each runs in three steps and none holds a transaction across the processor call: (1) under the
# payment's row lock, check the request and record it (the attempt's ``pending_operation``, or a
# pending Refund with its amount reserved) together with the durable task that finishes it if this
# process dies, and commit; (2) call the gateway with an idempotency key derived from our ids
# (``<attempt>:capture``, ``<attempt>:cancel``, the refund id); (3) apply the answer under the lock,
# forward only. An answer that settles nothing (timeout, 5xx, outage) leaves the request pending:
# the durable task finds out by retrieving, or by sending the same request with the same key. It
# is never taken for a refusal; only a definite refusal is reported as one.

CAPTURE_HANDLER = "apps.payments.services.payment_capture_resolve"
CANCEL_HANDLER = "apps.payments.services.payment_cancel_resolve"
REFUND_HANDLER = "apps.payments.services.refund_execute"
# A durable task's first run waits this long: longer than any gateway call can take
# (``GatewayConfig.timeout_seconds``), so it does not race the request still calling.
OPERATION_LEASE = timedelta(seconds=30)
# Backoff 2 s, 4 s, ... capped at an hour (apps.core.durable): about six hours of retries.
OPERATION_MAX_ATTEMPTS = 16
# Pending this long with no live durable task (its retries exhausted, or a task lost): stranded.
OPERATION_STRANDED_AFTER = timedelta(minutes=15)
# Pending this long: the reconcile job tells the operator (log error) each time it re-queues it.
OPERATION_ALERT_AFTER = timedelta(days=2)
_LIVE = (DurableTask.State.PENDING, DurableTask.State.RUNNING)
# A processor honours an idempotency key this long at least (Stripe 24 h, Adyen 7 days): a refund
# it cannot look up is never sent again after that, since a replay could refund twice.
REFUND_REPLAY_WINDOW = timedelta(hours=24)


class OperationStillPending(RuntimeError):
    """A capture, cancel or refund the gateway has not settled yet (its answer was lost, or it
    could not answer). Nothing was changed; the durable task retries with backoff."""


def _operation_key(kind: str, object_id: str) -> str:
    """A durable task's key: one task per request (a refused capture may be asked again)."""
    return f"{kind}:{object_id}:{secrets.token_hex(4)}"


def _unsettled(result: GatewayResult) -> bool:
    """The answer says nothing definite: the request may or may not have been acted on (unknown),
    or the processor did not act this time (outage, 5xx, 429) and may later."""
    return result.outcome == Outcome.UNKNOWN or (
        result.outcome == Outcome.GATEWAY_ERROR
        and result.status in (GatewayStatus.ERROR, GatewayStatus.UNKNOWN)
    )


def _capture_verdict(result: GatewayResult) -> str:
    """ "captured", "pending" or "refused" for a capture's answer (or the charge's truth)."""
    if _unsettled(result):
        return "pending"
    if result.status == GatewayStatus.CAPTURED:
        return "captured"  # also a refusal because it is captured already (Stripe's state error)
    if result.status in (GatewayStatus.CANCELED, GatewayStatus.NOT_FOUND):
        return "refused"  # voided (or gone) at the gateway: nothing left to capture
    if result.outcome == Outcome.SUCCEEDED:
        return "pending"  # an answer that is no capture (still authorised): ask again
    return "refused"


def _cancel_verdict(result: GatewayResult) -> str:
    """ "canceled", "pending" or "refused" for a cancel's answer (or the charge's truth). Adyen
    answers "received" (SUCCEEDED, status UNKNOWN): taken as voided, its webhook corrects it."""
    if _unsettled(result):
        return "pending"
    if result.status in (GatewayStatus.CANCELED, GatewayStatus.NOT_FOUND):
        return "canceled"
    if result.outcome == Outcome.SUCCEEDED and result.status != GatewayStatus.CAPTURED:
        return "canceled"
    return "refused"


def _refund_verdict(result: GatewayResult) -> str:
    """ "succeeded", "pending" or "failed" for a refund's answer. Stripe reports a refund that
    failed as GATEWAY_ERROR with the refund itself: that is definite."""
    if _unsettled(result) or result.outcome == Outcome.REQUIRES_ACTION:
        return "pending"
    if result.outcome == Outcome.SUCCEEDED:
        return "succeeded"
    return "failed"


def _lock_attempt(attempt_id: str) -> tuple[PaymentIntent, PaymentAttempt]:
    """The attempt and its payment, locked in the order every writer of a payment uses: the
    payment first."""
    intent_id = PaymentAttempt.objects.values_list("intent_id", flat=True).get(pk=attempt_id)
    intent = PaymentIntent.objects.select_for_update().get(pk=intent_id)
    attempt = PaymentAttempt.objects.select_for_update().select_related("gateway_account").get(pk=attempt_id)
    return intent, attempt


def _operation_clear(attempt: PaymentAttempt) -> list[str]:
    attempt.pending_operation, attempt.pending_amount, attempt.pending_since = "", 0, None
    return ["pending_operation", "pending_amount", "pending_since"]


def _refuse_if_operation_in_flight(intent: PaymentIntent, attempts: list[PaymentAttempt]) -> None:
    busy = [a for a in attempts if a.pending_operation]
    if busy:
        raise PaymentError(
            f"payment {intent.id} has a {busy[0].pending_operation} in progress at its gateway; "
            "try again when it has settled"
        )


def payment_capture(*, intent_id: str, amount: int | None = None) -> PaymentIntent:
    """Capture an authorised payment, fully or partly (the rest is released).

    The request is recorded on the authorised attempt (``pending_operation="capture"``) with a
    durable task that finishes it, and committed; then the gateway is called with no transaction
    open (key ``<attempt>:capture``) and its answer applied under the payment's lock. Returns the
    payment ``succeeded`` once captured. When the gateway's answer is lost or it cannot answer
    (timeout, 5xx, outage) the payment is returned as it is, still ``requires_capture`` with its
    attempt's capture pending: the public state changes only when the money has moved, and the
    ``payment.succeeded`` event announces it when ``payment_capture_resolve`` has found out.
    Raises PaymentError on a bad state or amount (``payment_intent_unexpected_state`` too while a
    capture or cancel of the payment is in flight: never a second capture), or ``capture_failed``
    when the gateway definitely refuses it; then nothing was captured."""
    with transaction.atomic():
        intent = PaymentIntent.objects.select_for_update().get(pk=intent_id)
        if intent.status != IS.REQUIRES_CAPTURE:
            raise PaymentError(
                f"payment {intent.id} is {intent.status}; only requires_capture can be captured"
            )
        attempts = list(intent.attempts.select_for_update().select_related("gateway_account"))
        _refuse_if_operation_in_flight(intent, attempts)
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
        attempt = next((a for a in attempts if a.status == AS.AUTHORIZED), None)
        if attempt is None:
            raise PaymentError(f"payment {intent.id} has no authorisation to capture")
        attempt.pending_operation, attempt.pending_amount = "capture", amount
        attempt.pending_since = timezone.now()
        attempt.save(update_fields=["pending_operation", "pending_amount", "pending_since", "updated_at"])
        durable_enqueue(
            handler=CAPTURE_HANDLER,
            kwargs={"attempt_id": attempt.id},
            idempotency_key=_operation_key("capture", attempt.id),
            run_at=attempt.pending_since + OPERATION_LEASE,
            max_attempts=OPERATION_MAX_ATTEMPTS,
        )
    result = _gateway_capture(attempt, intent.currency)
    intent, verdict = _capture_apply(attempt.id, result)
    if verdict == "refused":
        raise PaymentError(f"the gateway refused the capture: {result.message}", code="capture_failed")
    return intent


def _gateway_capture(attempt: PaymentAttempt, currency: str) -> GatewayResult:
    account = attempt.gateway_account
    try:
        result = gateway_client(account).capture(
            attempt_id=attempt.id,
            reference=attempt.reference,
            amount=attempt.pending_amount,
            currency=currency,
            idempotency_key=f"{attempt.id}:capture",
        )
    except Exception as exc:  # an adapter bug: we do not know whether it captured
        log.exception("gateway adapter raised on capture", extra={"attempt": attempt.id})
        result = GatewayResult(Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message=f"adapter error: {exc}")
    _observe(account.name, result)
    return result


def _capture_apply(attempt_id: str, result: GatewayResult) -> tuple[PaymentIntent, str]:
    """Apply a capture's answer (or the charge's truth) to a pending capture, under the payment's
    lock. Idempotent: once it is settled (by the request or by the durable task, whichever comes
    first) later answers change nothing ("settled"). Returns the payment and the verdict."""
    with transaction.atomic():
        intent, attempt = _lock_attempt(attempt_id)
        if attempt.pending_operation != "capture":
            return intent, "settled"
        verdict = _capture_verdict(result)
        if verdict == "pending":
            return intent, verdict
        fields = _operation_clear(attempt)
        if attempt.status != AS.AUTHORIZED or intent.status != IS.REQUIRES_CAPTURE:
            # Gateway news got here first (a capture or void reported by webhook).
            if verdict == "captured" and attempt.status != AS.CAPTURED:
                log.error(
                    "capture answered captured for an attempt that is %s here",
                    attempt.status,
                    extra={"attempt": attempt.id},
                )
            attempt.save(update_fields=[*fields, "updated_at"])
            return intent, "settled"
        if verdict == "captured":
            amount = result.amount_captured or attempt.pending_amount
            attempt_to(attempt, AS.CAPTURED)
            attempt.amount_captured, attempt.fee = amount, result.fee
            attempt.save(update_fields=["status", "amount_captured", "fee", *fields, "updated_at"])
            intent_to(intent, IS.SUCCEEDED)
            intent.amount_received, intent.amount_capturable = amount, 0
            intent.last_error = {}
            intent.save(
                update_fields=["status", "amount_received", "amount_capturable", "last_error", "updated_at"]
            )
            _post_capture(intent, attempt, amount, result.fee)
        else:
            attempt.message = (result.message or "")[:500]
            attempt.save(update_fields=["message", *fields, "updated_at"])
    return intent, verdict


def payment_capture_resolve(*, attempt_id: str) -> None:
    """Idempotent (the durable task of every capture): finish a pending capture. Asks the gateway
    what the charge is now (``retrieve``): captured settles it; still authorised, or no answer
    (Adyen has no lookup), sends the same capture again with the same key. A definite refusal
    found here clears the pending capture and is kept in the payment's ``last_error``. Raises
    OperationStillPending (the durable runner retries with backoff) while the gateway cannot say."""
    attempt = PaymentAttempt.objects.select_related("gateway_account", "intent").get(pk=attempt_id)
    if attempt.pending_operation != "capture":
        return
    gateway = gateway_client(attempt.gateway_account)
    truth = gateway.retrieve(attempt_id=attempt.id, reference=attempt.reference or None)
    if truth.status == GatewayStatus.CAPTURED and truth.outcome == Outcome.SUCCEEDED:
        result = truth
    elif truth.status in (GatewayStatus.CANCELED, GatewayStatus.NOT_FOUND, GatewayStatus.DECLINED):
        result = truth  # nothing left to capture
    else:
        result = _gateway_capture(attempt, attempt.intent.currency)
    intent, verdict = _capture_apply(attempt.id, result)
    if verdict == "pending":
        raise OperationStillPending(
            f"the capture of attempt {attempt.id} is still unsettled: {result.message}"
        )
    if verdict == "refused" and result is truth:
        # The authorisation was voided at the gateway (expired, or a cancel whose answer was
        # lost): the payment is canceled, as its webhook would say.
        payment_attempt_apply_gateway_truth(attempt_id=attempt.id, result=truth)
        return
    if verdict == "refused":
        log.warning("capture refused after it was accepted", extra={"attempt": attempt.id})
        with transaction.atomic():
            intent = PaymentIntent.objects.select_for_update().get(pk=intent.pk)
            if intent.status == IS.REQUIRES_CAPTURE:
                intent.last_error = {
                    "type": "api_error",
                    "code": "capture_failed",
                    "message": f"the gateway refused the capture: {result.message}"[:500],
                    "attempt": attempt.id,
                }
                intent.save(update_fields=["last_error", "updated_at"])


def payment_cancel(*, intent_id: str, reason: str = "") -> PaymentIntent:
    """Cancel a payment that has not been captured, voiding its open authorisations. Idempotent.

    A payment with nothing open at a gateway is canceled at once. Otherwise each open attempt is
    marked ``pending_operation="cancel"`` with a durable task that finishes the cancel, committed;
    the gateways are called with no transaction open (key ``<attempt>:cancel``); each answer is
    applied under the payment's lock, and the payment is ``canceled`` when the last is voided.
    When a gateway's answer is lost or it cannot answer, the payment is returned as it is (e.g.
    ``requires_capture``) with the cancel pending; ``payment_cancel_resolve`` finishes it and the
    ``payment.canceled`` event announces it. Asking again while it is pending returns the payment
    as it is. Raises PaymentError on a bad state (``payment_intent_unexpected_state`` too while a
    capture is in flight) or ``cancel_failed`` when a gateway definitely refuses (e.g. captured)."""
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
        attempts = list(intent.attempts.select_for_update().select_related("gateway_account"))
        if {a.pending_operation for a in attempts if a.pending_operation} == {"cancel"}:
            return intent  # already being canceled
        _refuse_if_operation_in_flight(intent, attempts)
        open_ = [a for a in attempts if a.status in (AS.AUTHORIZED, AS.REQUIRES_ACTION)]
        if not open_:
            _cancel_record(intent, reason)
            return intent
        now = timezone.now()
        for attempt in open_:
            attempt.pending_operation, attempt.pending_since = "cancel", now
            attempt.save(update_fields=["pending_operation", "pending_since", "updated_at"])
        durable_enqueue(
            handler=CANCEL_HANDLER,
            kwargs={"intent_id": intent.id, "reason": reason},
            idempotency_key=_operation_key("cancel", intent.id),
            run_at=now + OPERATION_LEASE,
            max_attempts=OPERATION_MAX_ATTEMPTS,
        )
    for attempt in open_:
        result = _gateway_cancel(attempt)
        intent, verdict = _cancel_apply(attempt.id, result, reason=reason)
        if verdict == "refused":
            raise PaymentError(
                f"the gateway refused the cancellation: {result.message}", code="cancel_failed"
            )
    return intent


def _gateway_cancel(attempt: PaymentAttempt) -> GatewayResult:
    try:
        result = gateway_client(attempt.gateway_account).cancel(
            attempt_id=attempt.id,
            reference=attempt.reference or None,
            idempotency_key=f"{attempt.id}:cancel",
        )
    except Exception as exc:  # an adapter bug: we do not know whether it voided
        log.exception("gateway adapter raised on cancel", extra={"attempt": attempt.id})
        result = GatewayResult(Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message=f"adapter error: {exc}")
    _observe(attempt.gateway_account.name, result)
    return result


def _cancel_record(intent: PaymentIntent, reason: str) -> None:
    intent_to(intent, IS.CANCELED)
    intent.amount_capturable = 0
    intent.save(update_fields=["status", "amount_capturable", "updated_at"])
    _event(intent, "PaymentCanceled", "canceled", {"reason": reason})


def _cancel_apply(attempt_id: str, result: GatewayResult, *, reason: str) -> tuple[PaymentIntent, str]:
    """Apply a cancel's answer (or the charge's truth) to a pending cancel, under the payment's
    lock; the payment is canceled with its last pending cancel. Idempotent ("settled" once done)."""
    with transaction.atomic():
        intent, attempt = _lock_attempt(attempt_id)
        if attempt.pending_operation != "cancel":
            return intent, "settled"
        verdict = _cancel_verdict(result)
        if verdict == "pending":
            return intent, verdict
        fields = _operation_clear(attempt)
        if verdict == "canceled" and attempt.status in (AS.AUTHORIZED, AS.REQUIRES_ACTION):
            attempt_to(attempt, AS.CANCELED)
            attempt.save(update_fields=["status", *fields, "updated_at"])
            _event(intent, "AuthorizationVoided", f"{attempt.id}:voided", {"attempt": attempt.id})
            others = PaymentAttempt.objects.filter(intent_id=intent.pk, pending_operation="cancel")
            if intent.status not in (IS.CANCELED, IS.SUCCEEDED, IS.PROCESSING) and not others.exists():
                _cancel_record(intent, reason)
        else:
            if verdict == "refused":
                attempt.message = (result.message or "")[:500]
                fields.append("message")
            attempt.save(update_fields=[*fields, "updated_at"])
            if verdict == "canceled":
                verdict = "settled"  # gateway news got here first
    return intent, verdict


def payment_cancel_resolve(*, intent_id: str, reason: str = "") -> None:
    """Idempotent (the durable task of every cancel): finish the payment's pending cancels. Asks
    the gateway what each charge is now (``retrieve``): voided or absent settles it; still open,
    or no answer, sends the same cancel again with the same key. A charge found captured refuses
    the cancel and the capture is recorded as gateway news. Raises OperationStillPending (the
    durable runner retries with backoff) while a gateway cannot say."""
    unsettled = []
    for attempt in PaymentAttempt.objects.select_related("gateway_account").filter(
        intent_id=intent_id, pending_operation="cancel"
    ):
        truth = gateway_client(attempt.gateway_account).retrieve(
            attempt_id=attempt.id, reference=attempt.reference or None
        )
        if truth.status in (GatewayStatus.CANCELED, GatewayStatus.NOT_FOUND) and not _unsettled(truth):
            result = GatewayResult(Outcome.SUCCEEDED, truth.status, message="resolved by retrieve")
        elif truth.status == GatewayStatus.CAPTURED and truth.outcome == Outcome.SUCCEEDED:
            result = truth
        else:
            result = _gateway_cancel(attempt)
        _, verdict = _cancel_apply(attempt.id, result, reason=reason)
        if verdict == "pending":
            unsettled.append(attempt.id)
        elif verdict == "refused" and result.status == GatewayStatus.CAPTURED:
            log.warning("cancel refused: the charge was captured", extra={"attempt": attempt.id})
            if result.outcome == Outcome.SUCCEEDED:
                payment_attempt_apply_gateway_truth(attempt_id=attempt.id, result=result)
    if unsettled:
        raise OperationStillPending(f"the cancel of {', '.join(unsettled)} is still unsettled")


def payment_refund(*, intent_id: str, amount: int | None = None, reason: str = "") -> Refund:
    """Refund (part of) a captured payment at the gateway that took it. The amount is reserved on
    the payment under a row lock first, so concurrent refunds can never exceed what was received.

    Durable from the moment it is accepted: the pending Refund, its reservation and the durable
    task that finishes it (``refund_execute``) are committed together; then it is sent at once
    (key: the refund id). Returns the refund ``succeeded``, ``failed`` (refused: the reservation
    is released), or ``pending`` when the gateway's answer was lost or it could not answer: the
    durable task finishes it, and the reservation is kept until it is final."""
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
        recovery_point("refund", refund.id)
        durable_enqueue(
            handler=REFUND_HANDLER,
            kwargs={"refund_id": refund.id},
            idempotency_key=f"refund:{refund.id}",
            run_at=timezone.now() + OPERATION_LEASE,
            max_attempts=OPERATION_MAX_ATTEMPTS,
        )
    return _refund_apply(refund.id, _gateway_refund(refund))[0]


def _gateway_refund(refund: Refund) -> GatewayResult:
    account = refund.attempt.gateway_account
    try:
        result = gateway_client(account).refund(
            attempt_id=refund.attempt_id,
            reference=refund.attempt.reference,
            refund_id=refund.id,
            amount=refund.amount,
            currency=refund.currency,
            idempotency_key=refund.id,
        )
    except Exception as exc:  # an adapter bug: we do not know whether it refunded
        log.exception("gateway adapter raised on refund", extra={"refund": refund.id})
        result = GatewayResult(Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message=f"adapter error: {exc}")
    _observe(account.name, result)
    return result


def refund_execute(*, refund_id: str) -> Refund:
    """Idempotent (the durable task of every refund): finish a pending refund. Where the adapter
    can find a refund by our id (``RefundLookup``) it is asked first: a refund found settles it,
    one certainly absent is sent; otherwise it is sent with the same key (the refund id), but only
    within ``REFUND_REPLAY_WINDOW`` of its creation. Raises
    OperationStillPending on an error or unknown answer, so the durable runner retries with
    backoff; the refund stays pending, its amount reserved, until it is final (after the retries,
    ``payments_reconcile`` queues it again)."""
    refund = Refund.objects.select_related("attempt__gateway_account", "intent").get(pk=refund_id)
    if refund.status != Refund.Status.PENDING:
        return refund
    account = refund.attempt.gateway_account
    lookup = getattr(gateway_client(account), "refund_retrieve", None)
    if lookup is None and refund.created_at < timezone.now() - REFUND_REPLAY_WINDOW:
        log.error("refund pending past the idempotency window", extra={"refund": refund.id})
        raise OperationStillPending(
            f"refund {refund.id} is older than {account.name}'s idempotency window and cannot be "
            "looked up: not sent again (it could refund twice); its webhook or an operator settles it"
        )
    found = None
    if lookup is not None:
        found = lookup(attempt_id=refund.attempt_id, reference=refund.attempt.reference, refund_id=refund.id)
        if found.status != GatewayStatus.NOT_FOUND and _refund_verdict(found) == "pending":
            raise OperationStillPending(f"refund {refund.id}: the gateway cannot say yet ({found.message})")
    result = (
        found if found is not None and found.status != GatewayStatus.NOT_FOUND else _gateway_refund(refund)
    )
    refund, verdict = _refund_apply(refund.id, result)
    if verdict == "pending":
        raise OperationStillPending(f"refund {refund.id} is still unsettled: {result.message}")
    return refund


def _refund_apply(refund_id: str, result: GatewayResult) -> tuple[Refund, str]:
    """Apply a refund's answer under the refund's and the payment's locks. Idempotent: a refund
    already final is left alone. Returns it and the verdict (``pending``: nothing written)."""
    with transaction.atomic():
        refund = (
            Refund.objects.select_for_update().select_related("attempt__gateway_account").get(pk=refund_id)
        )
        intent = PaymentIntent.objects.select_for_update().get(pk=refund.intent_id)
        if refund.status != Refund.Status.PENDING:
            return refund, "settled"
        verdict = _refund_verdict(result)
        if verdict in ("succeeded", "failed"):
            _refund_settle(
                intent,
                refund,
                succeeded=verdict == "succeeded",
                reference=result.reference or "",
                message=result.message or "",
            )
    return refund, verdict


def payment_operations_reconcile() -> int:
    """Idempotent: queue again the stranded work of captures, cancels and refunds: pending for
    longer than ``OPERATION_STRANDED_AFTER`` with no live durable task (its retries exhausted,
    or a row from before refunds had one). Logs an error for the operator for each one pending
    longer than ``OPERATION_ALERT_AFTER``. Returns how many were queued."""
    now = timezone.now()
    stale = now - OPERATION_STRANDED_AFTER
    live = DurableTask.objects.filter(state__in=_LIVE)
    refunds = Refund.objects.filter(status=Refund.Status.PENDING, created_at__lte=stale).exclude(
        Exists(
            live.filter(handler=REFUND_HANDLER)
            .annotate(ref=KT("kwargs__refund_id"))
            .filter(ref=OuterRef("pk"))
        )
    )
    captures = PaymentAttempt.objects.filter(pending_operation="capture", pending_since__lte=stale).exclude(
        Exists(
            live.filter(handler=CAPTURE_HANDLER)
            .annotate(ref=KT("kwargs__attempt_id"))
            .filter(ref=OuterRef("pk"))
        )
    )
    cancels = (
        PaymentAttempt.objects.filter(pending_operation="cancel", pending_since__lte=stale)
        .exclude(
            Exists(
                live.filter(handler=CANCEL_HANDLER)
                .annotate(ref=KT("kwargs__intent_id"))
                .filter(ref=OuterRef("intent_id"))
            )
        )
        .order_by("intent_id")
        .distinct("intent_id")
    )
    work = [
        *((REFUND_HANDLER, "refund", r.pk, {"refund_id": r.pk}, r.created_at) for r in refunds[:500]),
        *((CAPTURE_HANDLER, "capture", a.pk, {"attempt_id": a.pk}, a.pending_since) for a in captures[:500]),
        *(
            (CANCEL_HANDLER, "cancel", a.intent_id, {"intent_id": a.intent_id}, a.pending_since)
            for a in cancels[:500]
        ),
    ]
    for handler, kind, object_id, kwargs, since in work:
        if since is not None and since <= now - OPERATION_ALERT_AFTER:
            log.error(
                "%s %s has been pending at its gateway since %s: an operator must look",
                kind,
                object_id,
                since.isoformat(),
                extra={"operation": kind, "object": object_id},
            )
        durable_enqueue(
            handler=handler,
            kwargs=kwargs,
            idempotency_key=_operation_key(kind, object_id),
            max_attempts=OPERATION_MAX_ATTEMPTS,
        )
    return len(work)


# --------------------------------------------------------------------------- late charges


def _voided(result: GatewayResult) -> bool:
    """The gateway confirms the attempt holds no money and never will: cancelled, or none made."""
    return result.outcome == Outcome.SUCCEEDED and result.status in (
        GatewayStatus.CANCELED,
        GatewayStatus.NOT_FOUND,
    )


def _money_taken(result: GatewayResult) -> bool:
    return result.outcome == Outcome.SUCCEEDED and result.status in (
        GatewayStatus.CAPTURED,
        GatewayStatus.AUTHORIZED,
    )


def _late_charge_found(
    intent: PaymentIntent, attempt: PaymentAttempt, result: GatewayResult, *, found_by: str
) -> LateCharge:
    """Inside the caller's transaction, with the attempt and its payment locked: record money a
    gateway took on an attempt we had closed, post it (Dr clearing / Cr suspense, and the fee),
    and queue its reversal (``payment_late_charge_reverse``). Idempotent per attempt."""
    existing = LateCharge.objects.filter(attempt_id=attempt.pk).first()
    if existing is not None:
        return existing
    captured = result.status == GatewayStatus.CAPTURED
    amount = (result.amount_captured if captured else result.amount_authorized) or intent.amount
    account = attempt.gateway_account
    late = LateCharge.objects.create(
        id=new_id("lc_"),
        attempt=attempt,
        intent=intent,
        gateway_account=account,
        reference=(result.reference or attempt.reference or "")[:100],
        amount=amount,
        currency=intent.currency,
        captured=captured,
        fee=result.fee if captured else 0,
        found_by=found_by[:200],
    )
    payload = _late_charge_payload(late)
    if captured:
        _event(intent, "LateChargeCaptured", f"{attempt.id}:late_captured", {**payload, "fee": late.fee})
    else:
        _event(intent, "LateAuthorizationFound", f"{attempt.id}:late_authorized", payload)
    durable_enqueue(
        handler="apps.payments.services.payment_late_charge_reverse",
        kwargs={"late_charge_id": late.id},
        idempotency_key=f"late-reverse:{late.id}",
        max_attempts=len(RESOLVE_BACKOFF_SECONDS) + 10,
    )
    log.error(
        "late charge on a closed attempt: reversing it",
        extra={"attempt": attempt.id, "payment": intent.id, "amount": amount, "found_by": found_by},
    )
    return late


def _late_charge_payload(late: LateCharge) -> dict:
    return {
        "late_charge": late.id,
        "attempt": late.attempt_id,
        "gateway_account": late.gateway_account.name,
        "amount": late.amount,
        "currency": late.currency,
    }


def payment_late_charge_reverse(*, late_charge_id: str) -> str:
    """Idempotent: void (authorised) or refund (captured) a late charge at its gateway, with no
    transaction open and a key derived from its id, then post the reversal and tell the
    operators. A gateway error or unknown answer raises (the durable task retries); a refusal
    leaves it ``needs_operator`` and tells the operators. Returns its status."""
    late = LateCharge.objects.select_related("gateway_account").get(pk=late_charge_id)
    if late.status != LateCharge.Status.REVERSING:
        return late.status
    gateway = gateway_client(late.gateway_account)
    if late.captured:
        result = gateway.refund(
            attempt_id=late.attempt_id,
            reference=late.reference,
            refund_id=late.id,
            amount=late.amount,
            currency=late.currency,
            idempotency_key=f"{late.id}:refund",
        )
        reversed_ = result.outcome == Outcome.SUCCEEDED
    else:
        result = gateway.cancel(
            attempt_id=late.attempt_id, reference=late.reference or None, idempotency_key=f"{late.id}:void"
        )
        reversed_ = _voided(result)
    if not reversed_ and result.outcome in (Outcome.GATEWAY_ERROR, Outcome.UNKNOWN):
        raise AttemptStillUnknown(f"late charge {late.id}: {result.message or result.outcome}")
    with transaction.atomic():
        late = LateCharge.objects.select_for_update().get(pk=late_charge_id)
        if late.status != LateCharge.Status.REVERSING:
            return late.status
        intent = PaymentIntent.objects.get(pk=late.intent_id)
        late.status = LateCharge.Status.REVERSED if reversed_ else LateCharge.Status.NEEDS_OPERATOR
        late.message = (result.message or "")[:500]
        late.save(update_fields=["status", "message", "updated_at"])
        if reversed_:
            payload = _late_charge_payload(late)
            if late.captured:
                _event(intent, "LateChargeRefunded", f"{late.attempt_id}:late_refunded", payload)
            else:
                _event(intent, "LateAuthorizationVoided", f"{late.attempt_id}:late_voided", payload)
        transaction.on_commit(lambda: late_charge_notify(late_charge_id=late.id))
    return late.status


def late_charge_notify(*, late_charge_id: str) -> int:
    """Email the marketplace's operators about a late charge (reversed, or needing them)."""
    late = LateCharge.objects.select_related("gateway_account").get(pk=late_charge_id)
    recipients = operator_emails()
    if not recipients:
        return 0
    money = format_amount(late.amount, late.currency)
    if late.status == LateCharge.Status.REVERSED:
        subject = f"Late charge of {money} on {late.intent_id} {'refunded' if late.captured else 'voided'}"
    else:
        subject = f"Action needed: late charge of {money} on {late.intent_id} could not be reversed"
    try:
        return send_mail(
            subject=subject[:200],
            message=render_to_string("emails/late_charge.txt", {"late": late, "money": money}),
            from_email=None,
            recipient_list=recipients,
        )
    except Exception:  # the reversal stands whatever the mail server says
        log.exception("could not email operators about late charge %s", late_charge_id)
        return 0


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


# --------------------------------------------------------------------------- gateway news (webhooks)
# What a processor tells us after the fact (its webhooks): applied forward only, so a duplicate or an
# older event changes nothing. Added for apps.webhooks; self-contained (it uses ``_attempt_finish``,
# ``payment_continue``, ``_event``, ``_post_capture`` and the state machines, nothing else here).


class GatewayTruthConflict(RuntimeError):
    """The gateway reports something a final state here contradicts (money taken on an attempt we
    closed as failed, a capture or refund failing after it was recorded). Nothing was changed: an
    operator must look."""


class GatewayTruthNotYet(RuntimeError):
    """The news depends on news not applied yet (a refund reported before its capture). Nothing
    was changed; applying it again later works."""


def payment_attempt_apply_gateway_truth(*, attempt_id: str, result: GatewayResult) -> str:
    """Idempotent: move an attempt, and its payment, forward to what the gateway says the charge
    is now (``result.status``: AUTHORIZED, CAPTURED, DECLINED, CANCELED or NOT_FOUND), never back.
    News already applied, or older than what we know, changes nothing. Returns what it did.

    A pending or unknown attempt takes the resolver's path (``_attempt_finish``); when nothing was
    charged the payment continues at the next gateway. A settled attempt moves on under the
    attempt's and the payment's row locks: an authorisation captured or voided at the gateway, a
    customer action (3-D Secure) completed or abandoned. Raises GatewayTruthConflict, changing
    nothing, when the news contradicts a final state."""
    before = PaymentAttempt.objects.only("status", "intent_id").get(pk=attempt_id)
    if before.status in (AS.PENDING, AS.UNKNOWN) and _attempt_finish(attempt_id, result) == "failover":
        payment_continue(intent_id=before.intent_id)
    _attempt_move_forward(attempt_id, result)
    after = PaymentAttempt.objects.select_related("intent").get(pk=attempt_id)
    if after.status == before.status:
        return f"attempt {attempt_id} stays {after.status} (payment {after.intent.status})"
    return f"attempt {attempt_id} {before.status} -> {after.status} (payment {after.intent.status})"


def _attempt_move_forward(attempt_id: str, result: GatewayResult) -> None:
    GS = GatewayStatus
    with transaction.atomic():
        attempt = (
            PaymentAttempt.objects.select_for_update(of=("self", "intent"))
            .select_related("intent", "gateway_account")
            .get(pk=attempt_id)
        )
        intent, news, now = attempt.intent, result.status, attempt.status
        if now in (AS.PENDING, AS.UNKNOWN):
            return  # the news was itself inconclusive
        if news == GS.CAPTURED and now == AS.AUTHORIZED:
            _truth_capture(intent, attempt, result)
        elif news in (GS.CAPTURED, GS.AUTHORIZED) and now == AS.REQUIRES_ACTION:
            _truth_action_completed(intent, attempt, result)
        elif news in (GS.CANCELED, GS.NOT_FOUND) and now == AS.AUTHORIZED:
            _truth_void(intent, attempt)
        elif news in (GS.CANCELED, GS.NOT_FOUND, GS.DECLINED) and now == AS.REQUIRES_ACTION:
            _truth_action_failed(intent, attempt, result)
        elif (news in (GS.CAPTURED, GS.AUTHORIZED) and now in (AS.DECLINED, AS.FAILED)) or (
            news == GS.CAPTURED and now == AS.CANCELED
        ):
            # Money taken on an attempt we closed: reversed automatically, never kept.
            _late_charge_found(
                intent,
                attempt,
                result,
                found_by=f"{attempt.gateway_account.name} reported it {news} after it was closed ({now})",
            )
        elif news in (GS.CANCELED, GS.NOT_FOUND) and now == AS.CAPTURED:
            raise GatewayTruthConflict(
                f"{attempt.gateway_account.name} reports attempt {attempt.id} {news}, but it is captured here"
            )
        # Anything else is news we already have, or older news (authorised after captured,
        # declined after authorised): nothing to do.


def _truth_capture(intent: PaymentIntent, attempt: PaymentAttempt, result: GatewayResult) -> None:
    """An authorisation captured at the gateway (outside our API, or our capture's answer lost)."""
    if intent.status != IS.REQUIRES_CAPTURE:
        raise GatewayTruthConflict(
            f"attempt {attempt.id} was captured at the gateway but payment {intent.id} is {intent.status}"
        )
    amount = result.amount_captured or attempt.amount_authorized
    attempt_to(attempt, AS.CAPTURED)
    attempt.amount_captured, attempt.fee = amount, result.fee
    attempt.save(update_fields=["status", "amount_captured", "fee", "updated_at"])
    intent_to(intent, IS.SUCCEEDED)
    intent.amount_received, intent.amount_capturable = amount, 0
    intent.save(update_fields=["status", "amount_received", "amount_capturable", "updated_at"])
    _post_capture(intent, attempt, amount, result.fee)


def _truth_action_completed(intent: PaymentIntent, attempt: PaymentAttempt, result: GatewayResult) -> None:
    """The customer completed the action (3-D Secure) and the gateway authorised or captured."""
    moved_on = PaymentAttempt.objects.filter(intent_id=intent.pk, number__gt=attempt.number).exists()
    if intent.status != IS.REQUIRES_ACTION or moved_on:
        # The payment moved on without this attempt (canceled, or confirmed again elsewhere): the
        # money it took is a late charge, reversed automatically.
        attempt_to(attempt, AS.CANCELED)
        attempt.message = "authenticated after the payment moved on; reversed as a late charge"
        attempt.save(update_fields=["status", "message", "updated_at"])
        _late_charge_found(
            intent,
            attempt,
            result,
            found_by=f"authenticated after payment {intent.id} moved on ({intent.status})",
        )
        return
    intent_to(intent, IS.PROCESSING)
    intent.next_action, intent.last_error = {}, {}
    intent.gateway_account = attempt.gateway_account
    attempt.amount_authorized = result.amount_authorized or intent.amount
    attempt.reference = attempt.reference or result.reference or ""
    if result.status == GatewayStatus.CAPTURED:
        attempt_to(attempt, AS.CAPTURED)
        attempt.amount_captured, attempt.fee = result.amount_captured or attempt.amount_authorized, result.fee
        intent_to(intent, IS.SUCCEEDED)
        intent.amount_received = attempt.amount_captured
    else:
        attempt_to(attempt, AS.AUTHORIZED)
        intent_to(intent, IS.REQUIRES_CAPTURE)
        intent.amount_capturable = attempt.amount_authorized
    attempt.save()
    intent.save()
    if attempt.status == AS.CAPTURED:
        _post_capture(intent, attempt, attempt.amount_captured, attempt.fee)
    else:
        _event(
            intent,
            "ChargeAuthorized",
            f"{attempt.id}:authorized",
            {
                "attempt": attempt.id,
                "gateway_account": attempt.gateway_account.name,
                "amount": attempt.amount_authorized,
            },
        )


def _truth_void(intent: PaymentIntent, attempt: PaymentAttempt) -> None:
    """An authorisation voided at the gateway (expired, or cancelled outside our API)."""
    attempt_to(attempt, AS.CANCELED)
    attempt.save(update_fields=["status", "updated_at"])
    _event(intent, "AuthorizationVoided", f"{attempt.id}:voided", {"attempt": attempt.id})
    if intent.status == IS.REQUIRES_CAPTURE:
        intent_to(intent, IS.CANCELED)
        intent.amount_capturable = 0
        intent.save(update_fields=["status", "amount_capturable", "updated_at"])
        _event(intent, "PaymentCanceled", "canceled", {"reason": "authorization voided at the gateway"})


def _truth_action_failed(intent: PaymentIntent, attempt: PaymentAttempt, result: GatewayResult) -> None:
    """The action (3-D Secure) failed or was abandoned: nothing was charged. The payment fails
    with the reason, so the storefront can confirm it again (e.g. with another card)."""
    declined = result.status == GatewayStatus.DECLINED
    attempt_to(attempt, AS.DECLINED if declined else AS.CANCELED)
    attempt.decline_code = (result.decline_code or "")[:80]
    attempt.advice_code = (result.advice_code or "")[:80]
    attempt.message = (result.message or "")[:500]
    attempt.save(update_fields=["status", "decline_code", "advice_code", "message", "updated_at"])
    if declined:
        _event(
            intent,
            "AttemptDeclined",
            f"{attempt.id}:declined",
            {"attempt": attempt.id, "decline_code": attempt.decline_code, "advice_code": attempt.advice_code},
        )
    else:
        _event(intent, "AttemptFailed", f"{attempt.id}:canceled", {"attempt": attempt.id})
    moved_on = PaymentAttempt.objects.filter(intent_id=intent.pk, number__gt=attempt.number).exists()
    if intent.status == IS.REQUIRES_ACTION and not moved_on:
        intent_to(intent, IS.FAILED)
        intent.next_action = {}
        intent.last_error = {
            "type": "card_error" if declined else "api_error",
            "code": "card_declined" if declined else "payment_intent_authentication_failure",
            "decline_code": attempt.decline_code,
            "message": attempt.message,
            "attempt": attempt.id,
        }
        intent.save(update_fields=["status", "next_action", "last_error", "updated_at"])
        _event(intent, "PaymentFailed", f"{attempt.id}:failed", {"attempt": attempt.id, "action": "stop"})


def payment_attempt_capture_failed(*, attempt_id: str, message: str = "") -> str:
    """Idempotent: the gateway reports that a capture failed. An attempt still authorised stays so
    (nothing was recorded for the capture). One already recorded captured raises
    GatewayTruthConflict, changing nothing: a captured attempt is final here, so the recorded
    capture must be reversed by an operator (``ledger_reverse``)."""
    attempt = PaymentAttempt.objects.get(pk=attempt_id)
    if attempt.status == AS.CAPTURED:
        raise GatewayTruthConflict(
            f"the gateway reports the capture of attempt {attempt.id} failed ({message or 'no reason'}), "
            "but it was recorded as captured"
        )
    return f"attempt {attempt.id} stays {attempt.status}: capture failed ({message or 'no reason'})"


def payment_refund_apply_gateway_truth(
    *, refund_id: str, succeeded: bool, reference: str = "", message: str = ""
) -> str:
    """Idempotent: settle a pending refund as the gateway reports it (its answer was lost, or the
    gateway confirms asynchronously). A settled refund is left alone; news contradicting it
    raises GatewayTruthConflict, changing nothing. Locks the refund, then its payment (as
    ``refund_execute``)."""
    with transaction.atomic():
        refund = (
            Refund.objects.select_for_update().select_related("attempt__gateway_account").get(pk=refund_id)
        )
        intent = PaymentIntent.objects.select_for_update().get(pk=refund.intent_id)
        if refund.status == Refund.Status.PENDING:
            _refund_settle(
                intent, refund, succeeded=succeeded, reference=refund.reference or reference, message=message
            )
            return f"refund {refund.id} pending -> {refund.status}"
        if (refund.status == Refund.Status.SUCCEEDED) == succeeded:
            return f"refund {refund.id} stays {refund.status}"
    raise GatewayTruthConflict(
        f"the gateway reports refund {refund.id} {'succeeded' if succeeded else 'failed'}"
        f"{f' ({message})' if message else ''}, but it is {refund.status} here"
    )


def payment_refund_record_external(
    *,
    attempt_id: str,
    reference: str,
    amount: int | None = None,
    refunded_total: int | None = None,
    reason: str = "",
) -> str:
    """Idempotent by ``reference`` (the gateway's id for the refund): record a refund made at the
    gateway outside this platform (its dashboard). Give its ``amount``, or the gateway's running
    ``refunded_total`` for the charge: then what exceeds the refunds known here (pending or not) is
    recorded, worked out under the payment's lock, and an older, smaller total records nothing.
    Raises GatewayTruthNotYet while the capture it refunds is not recorded here,
    GatewayTruthConflict when it is more than is left to refund; nothing is changed when it raises."""
    with transaction.atomic():
        attempt = (
            PaymentAttempt.objects.select_for_update(of=("self", "intent"))
            .select_related("intent", "gateway_account")
            .get(pk=attempt_id)
        )
        intent = attempt.intent
        if Refund.objects.filter(attempt_id=attempt.pk, reference=reference).exists():
            return f"refund {reference} already recorded"
        if refunded_total is not None:
            amount = refunded_total - intent.amount_refunded
            if amount <= 0:
                return f"refunds of attempt {attempt.id} already recorded ({intent.amount_refunded})"
        if amount is None:
            raise ValueError("give amount or refunded_total")
        if attempt.status in (AS.PENDING, AS.UNKNOWN, AS.AUTHORIZED, AS.REQUIRES_ACTION):
            raise GatewayTruthNotYet(
                f"refund {reference} of attempt {attempt.id}, which is {attempt.status} here: "
                "waiting for its capture"
            )
        remaining = intent.amount_received - intent.amount_refunded
        if attempt.status != AS.CAPTURED or intent.status != IS.SUCCEEDED or not 0 < amount <= remaining:
            raise GatewayTruthConflict(
                f"the gateway reports a refund of {amount} on attempt {attempt.id} ({attempt.status}); "
                f"{remaining} is left to refund on payment {intent.id} ({intent.status})"
            )
        refund = Refund(
            id=new_id("re_"),
            intent=intent,
            attempt=attempt,
            amount=amount,
            currency=intent.currency,
            reason=(reason or "refunded at the gateway")[:200],
            reference=reference[:100],
        )
        refund_to(refund, Refund.Status.SUCCEEDED)
        refund.save(force_insert=True)
        intent.amount_refunded += amount
        intent.save(update_fields=["amount_refunded", "updated_at"])
        _event(intent, "RefundSucceeded", f"{refund.id}:succeeded", _refund_succeeded_payload(intent, refund))
    return f"refund {refund.id} of {amount} recorded (made at the gateway as {reference})"
