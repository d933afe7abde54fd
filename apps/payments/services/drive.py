"""Driving a processing payment: route it, start an attempt, call the gateway with no transaction
open, apply the answer, and fail over to the next gateway when the answer allows it.

Each transaction commits its own state (and its ledger events) before and after the gateway call.
An attempt whose outcome is unknown stops everything until a worker resolves it
(``resolution``): the mesh never fails over while a charge may exist.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from apps.core.durable import durable_enqueue
from apps.ledger.services import EventSpec
from apps.payments import declines, events, hotpath
from apps.payments.config import MeshConfig, mesh_config
from apps.payments.gateways.base import ChargeRequest, Gateway, GatewayResult, GatewayStatus, Outcome
from apps.payments.locks import lock_attempt, lock_intent
from apps.payments.methods import is_payment_method_id
from apps.payments.models import DeclineRule, GatewayAccount, PaymentAttempt, PaymentIntent
from apps.payments.routing import NO_CREDENTIAL, Decision, route
from apps.payments.selectors import (
    payment_method_credential,
    payment_method_gateways,
    payment_method_network_transaction_id,
)
from apps.payments.services.late_charges import gateway_money_taken, late_charge_found
from apps.payments.services.ledger_events import record_events
from apps.payments.services.methods import payment_method_credential_store, payment_saved_method_keep
from apps.payments.services.schedules import (
    AUTHENTICATION_LINK_HANDLER,
    CONTINUE_HANDLER,
    RESOLVE_BACKOFF_SECONDS,
    RESOLVE_HANDLER,
    RESOLVE_MAX_ATTEMPTS,
    attempt_lease,
    next_action_check,
)
from apps.payments.services.settlement import capture_event
from apps.payments.services.setup import gateway_call
from apps.payments.services.vaulting import vault_charge, vault_routes
from apps.payments.statemachine import attempt_to, intent_to

log = logging.getLogger(__package__)  # one logger for the package, as when it was one module
IS, AS = PaymentIntent.Status, PaymentAttempt.Status

# The issuer's answer to a merchant-initiated charge that needs the customer (Stripe's code).
AUTHENTICATION_REQUIRED = "authentication_required"

# Closed by us as "nothing was charged": money appearing on one later is a late charge.
_CLOSED_UNCHARGED = (AS.FAILED, AS.DECLINED, AS.CANCELED)


def payment_continue(*, intent_id: str) -> None:
    """Idempotent: drive a processing payment on (worker side, fresh budget)."""
    _drive(intent_id, deadline=time.monotonic() + settings.PAYMENT_LATENCY_BUDGET_MS / 1000)


def _drive(intent_id: str, *, deadline: float) -> PaymentIntent:
    config = mesh_config()
    with transaction.atomic():
        intent = lock_intent(intent_id)
        if intent.status != IS.PROCESSING:
            return intent
        step = attempt_start_next(intent, config, deadline=deadline)
    return attempts_run(step, config, deadline)


@dataclass
class Step:
    """Where a payment stands after a transaction: ``attempt`` was started (committed) and
    ``account`` is to be called next, or ``attempt`` is None and there is nothing to call now
    (the payment finished, failed, waits for an unknown outcome, or was left to a worker)."""

    intent: PaymentIntent
    account: GatewayAccount | None = None
    attempt: PaymentAttempt | None = None


def attempts_run(step: Step, config: MeshConfig, deadline: float) -> PaymentIntent:
    """Call the gateway for each started attempt, with no transaction open, and apply its answer
    (a failover starts the next attempt in the same transaction). Returns the payment as it is."""
    while step.attempt is not None and step.account is not None:
        result, latency_ms = _authorize(step.account, step.attempt, step.intent, config)
        _, step = _finish(step.attempt.pk, result, latency_ms=latency_ms, config=config, deadline=deadline)
    return step.intent


def attempt_start_next(
    intent: PaymentIntent, config: MeshConfig, *, deadline: float, changed: tuple[str, ...] = ()
) -> Step:
    """``attempt_start`` for a locked, processing payment, unless one of its attempts is pending or
    unknown: then nothing happens (never fail over while a charge may exist)."""
    attempts = list(PaymentAttempt.objects.filter(intent_id=intent.pk).values_list("number", "status"))
    if any(status in (AS.PENDING, AS.UNKNOWN) for _, status in attempts):
        if changed:
            intent.save(update_fields=[*changed, "updated_at"])
        return Step(intent)
    number = max((n for n, _ in attempts), default=0) + 1
    return attempt_start(intent, config, deadline=deadline, number=number, changed=changed)


def attempt_start(
    intent: PaymentIntent,
    config: MeshConfig,
    *,
    deadline: float,
    number: int,
    insert: bool = False,
    changed: tuple[str, ...] = (),
    events_before: list[EventSpec] | None = None,
    also_update: list[tuple[PaymentAttempt, list[str]]] | None = None,
) -> Step:
    """Inside the caller's transaction, for a processing payment that is locked (or new: ``insert``)
    and has no attempt pending or unknown: route it, excluding the gateways already tried, then
    start attempt ``number`` at the first candidate; or fail the payment when no gateway can take
    it; or leave the rest to a worker when the latency budget is spent. Writes the payment (with
    the fields in ``changed`` the caller set), the attempt and the caller's ``also_update`` rows in
    one statement, then records ``events_before`` and the events of what was done here, in that
    order."""
    specs = list(events_before or [])
    fields = set(changed)
    tried = list(intent.routing.get("tried", []))
    chargeable = vaulted = None
    if is_payment_method_id(intent.payment_method):
        chargeable = payment_method_gateways(method_id=intent.payment_method)
        vaulted = vault_routes(method_id=intent.payment_method, config=config, holders=chargeable)
    decision = route(intent, exclude=set(tried), config=config, chargeable=chargeable, vault_routes=vaulted)
    if _skips_record(intent, decision):
        fields.add("routing")
    account = attempt = None
    if not decision.candidates and NO_CREDENTIAL in decision.skipped.values():
        # The method's own gateways are all tried, down or off: say so, with every reason.
        intent.last_error = {
            "type": "card_error",
            "code": "payment_method_unreachable",
            "message": "no enabled gateway that can charge this payment method could take it: "
            + "; ".join(f"{gw}: {why}" for gw, why in decision.skipped.items()),
            "skipped": decision.skipped,
            **({"after": intent.last_error} if intent.last_error else {}),
        }
        intent.routing = {**intent.routing, "final": decision.as_dict()}
        intent_to(intent, IS.FAILED)
        fields |= {"status", "last_error", "routing"}
        specs.append(events.payment_failed(intent, tried=len(tried)))
    elif not decision.candidates:
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
        specs.append(events.payment_failed(intent, tried=len(tried)))
    elif time.monotonic() > deadline:
        durable_enqueue(
            handler=CONTINUE_HANDLER,
            kwargs={"intent_id": intent.id},
            idempotency_key=f"continue:{intent.id}:{events.round_prefix(intent)}{len(tried)}",
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
        if account.name in decision.via:  # charged through a vault: kept per attempt (replays)
            intent.routing["via"] = {**intent.routing.get("via", {}), attempt.id: decision.via[account.name]}
        fields.add("routing")
        specs.append(events.attempt_started(intent, attempt))
    inserts: list[Model] = [intent] if insert else []
    updates: list[tuple[Model, list[str]]] = list(also_update or [])
    if fields and not insert:
        updates.append((intent, [*sorted(fields), "updated_at"]))
    if attempt is not None:
        inserts.append(attempt)
    hotpath.write(insert=inserts, update=updates)
    record_events(specs)
    return Step(intent, account, attempt)


def _skips_record(intent: PaymentIntent, decision: Decision) -> bool:
    """Keep, over the payment's round, each gateway the routing left out and why (``already
    tried`` is no news), in ``routing["skipped"]``: [{"gateway", "reason"}]."""
    skipped = list(intent.routing.get("skipped", []))
    for gateway, reason in decision.skipped.items():
        entry = {"gateway": gateway, "reason": reason}
        if reason != "already tried" and entry not in skipped:
            skipped.append(entry)
    if skipped == intent.routing.get("skipped", []):
        return False
    intent.routing = {**intent.routing, "skipped": skipped}
    return True


# --------------------------------------------------------------------------- the gateway call


def charge_request(
    intent: PaymentIntent, attempt: PaymentAttempt, *, through_vault: bool = False
) -> ChargeRequest:
    """What attempt ``attempt`` asks its gateway (the same request every time it is sent). When
    the payment's method is ours, the gateway is sent its own credential for it (through a vault:
    our id and no credential, the vault adds the card) and, on a merchant-initiated charge, the
    network transaction id of the method's first customer-initiated charge (from whichever
    processor). A one-off token is saved by the charge when the payment asks
    ``setup_future_usage`` (a method of ours is saved already: the payment only records the
    customer's consent)."""
    payment_method, credential, network_transaction_id = intent.payment_method, None, None
    setup_future_usage = intent.setup_future_usage or None
    if is_payment_method_id(payment_method):
        if not through_vault:
            credential = payment_method_credential(
                method_id=payment_method, gateway_account_id=attempt.gateway_account_id
            )
            # None only if the credential went away after routing: the gateway then refuses our id.
            payment_method = (credential or {}).get("reference", payment_method)
        setup_future_usage = None
        if intent.off_session:
            network_transaction_id = payment_method_network_transaction_id(method_id=intent.payment_method)
    return ChargeRequest(
        attempt_id=attempt.id,
        amount=intent.amount,
        currency=intent.currency,
        payment_method=payment_method,
        credential=credential,
        capture=intent.capture_method == PaymentIntent.CaptureMethod.AUTOMATIC,
        customer_reference=intent.customer_id or None,
        description=intent.description,
        off_session=intent.off_session,
        recurring=intent.recurring,
        setup_future_usage=setup_future_usage,
        network_transaction_id=network_transaction_id,
        metadata={"payment": intent.id, **_simulator_key(intent, attempt)},
        return_url=payment_return_url(intent),
    )


def payment_return_url(intent: PaymentIntent) -> str | None:
    """Where the processor sends the customer back after authenticating: the payment's
    ``return_url`` with ``payment=<pay_id>`` added to its query (the page there names the payment
    it resumes by it); None without one."""
    if not intent.return_url:
        return None
    parts = urlsplit(intent.return_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "payment"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("payment", intent.id)])))


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
    database (the latency is saved with the outcome), except the gateway's own credential for
    the payment's method when a charge through a vault stored the card there."""
    return gateway_call(
        account,
        lambda gateway: attempt_authorize(gateway, intent, attempt, config),
        operation="authorize",
        about={"attempt": attempt.id},
        config=config,
    )


def attempt_authorize(
    gateway: Gateway, intent: PaymentIntent, attempt: PaymentAttempt, config: MeshConfig | None = None
) -> GatewayResult:
    """Send attempt ``attempt`` to its gateway's adapter ``gateway`` (again, when replayed: the
    same request, the same idempotency key): directly, or through the vault its routing chose
    (``routing["via"]``) when the gateway holds no credential for the payment's method. A
    success through a vault that stored the card at the gateway stores the gateway's credential
    for the method, so later charges go direct."""
    via = (intent.routing.get("via") or {}).get(attempt.id)
    if via is None:
        return gateway.authorize(charge_request(intent, attempt))
    # Through the vault every time, as the first time: even if the gateway has a credential for
    # the method by now (another payment stored it), a replay must be the very request sent.
    request = charge_request(intent, attempt, through_vault=True)
    config = config or mesh_config()
    account = config.account_by_id(attempt.gateway_account_id) or attempt.gateway_account
    charged = vault_charge(
        gateway=gateway,
        account=account,
        method_id=intent.payment_method,
        request=request,
        route=via,
        config=config,
    )
    if charged.result.outcome == Outcome.SUCCEEDED and charged.saved is not None:
        try:
            payment_method_credential_store(
                method_id=intent.payment_method, account=account, saved=charged.saved
            )
        except Exception:  # the charge stands; the next charge goes through the vault again
            log.exception("storing %s's credential after a vault charge failed", account.name)
    return charged.result


# --------------------------------------------------------------------------- the answer


def attempt_finish(attempt_id: str, result: GatewayResult) -> str:
    """Apply a gateway result to the attempt and its payment. Returns "done", "failover" or
    "unknown". Idempotent: a result for an attempt that already left pending/unknown is ignored
    (unless it shows money taken on an attempt closed as uncharged: a late charge)."""
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
    "saved_payment_method",
)


def _finish(
    attempt_id: str,
    result: GatewayResult,
    *,
    latency_ms: int | None = None,
    config: MeshConfig | None = None,
    deadline: float | None = None,
) -> tuple[str, Step]:
    """``attempt_finish``, also saving the call's latency; with a ``deadline``, a failover starts
    the next attempt (or fails the payment, or leaves it to a worker) in the same transaction.

    In one transaction: lock the attempt and its payment; an attempt already settled takes the
    answer only as a possible late charge; else the answer is copied onto the attempt, applied by
    its outcome (each ``_answer_*`` moves the rows in memory and gives the events), and the rows
    are written with their events, or the next attempt is started with them."""
    config = config or mesh_config()
    with transaction.atomic():
        attempt = lock_attempt(attempt_id)  # and its payment, both FOR UPDATE
        intent = attempt.intent
        if attempt.status not in (AS.PENDING, AS.UNKNOWN):
            _answer_after_settled(intent, attempt, result)
            return "done", Step(intent)
        account = config.account_by_id(attempt.gateway_account_id) or attempt.gateway_account
        _answer_copy(attempt, account, result)
        outcome, specs = _answer_apply(intent, attempt, account, result, config)
        return _answer_write(
            intent, attempt, outcome, specs, latency_ms=latency_ms, config=config, deadline=deadline
        )


def _answer_after_settled(intent: PaymentIntent, attempt: PaymentAttempt, result: GatewayResult) -> None:
    """An answer for an attempt that already left pending/unknown changes nothing, unless it
    says money was taken on an attempt closed as uncharged: its call outlived the lease, and the
    money is never dropped, never kept."""
    if gateway_money_taken(result) and attempt.status in _CLOSED_UNCHARGED:
        late_charge_found(
            intent, attempt, result, found_by="the gateway's answer came after the attempt was closed"
        )


def _answer_copy(attempt: PaymentAttempt, account: GatewayAccount, result: GatewayResult) -> None:
    """What every answer tells about the attempt: its gateway, outcome, reference and codes."""
    attempt.gateway_account = account
    attempt.outcome = result.outcome
    attempt.reference = result.reference or attempt.reference
    attempt.decline_code = result.decline_code or ""
    attempt.advice_code = result.advice_code or ""
    attempt.message = (result.message or "")[:500]


def _answer_apply(
    intent: PaymentIntent,
    attempt: PaymentAttempt,
    account: GatewayAccount,
    result: GatewayResult,
    config: MeshConfig,
) -> tuple[str, list[EventSpec]]:
    """Move the attempt and its payment by the answer's outcome. Returns "done", "failover" or
    "unknown", and the events to record."""
    if result.outcome == Outcome.SUCCEEDED and result.status in (
        GatewayStatus.CAPTURED,
        GatewayStatus.AUTHORIZED,
    ):
        # The card the charge saved becomes the customer's method (no processor call; the method
        # is locked after the payment and attempt, before a split's rows): it never undoes the
        # charge.
        payment_saved_method_keep(intent, account, result.saved, result.network_transaction_id)
        return "done", [_answer_charged(intent, attempt, account, result)]
    if result.outcome == Outcome.REQUIRES_ACTION:
        return "done", [_answer_requires_action(intent, attempt, result)]
    if result.outcome in (Outcome.DECLINED_SOFT, Outcome.DECLINED_HARD):
        return _answer_declined(intent, attempt, account, result, config)
    if result.outcome == Outcome.GATEWAY_ERROR:
        return "failover", [_answer_gateway_error(intent, attempt)]
    # UNKNOWN (or an answer that is no charge): the charge may exist; stop and resolve
    return "unknown", [_answer_unknown(intent, attempt)]


def _answer_charged(
    intent: PaymentIntent, attempt: PaymentAttempt, account: GatewayAccount, result: GatewayResult
) -> EventSpec:
    """Captured (the payment succeeded; its money allocated) or authorised (it waits for capture).
    An earlier attempt's error is cleared, as Stripe clears ``last_payment_error``: the charge
    went through (the attempts and the timeline keep what happened before)."""
    attempt.amount_authorized = result.amount_authorized or intent.amount
    intent.gateway_account = account
    intent.last_error = {}
    if result.status == GatewayStatus.CAPTURED:
        attempt_to(attempt, AS.CAPTURED)
        attempt.amount_captured = result.amount_captured or intent.amount
        attempt.fee = result.fee
        intent_to(intent, IS.SUCCEEDED)
        intent.amount_received = attempt.amount_captured
        return capture_event(intent, attempt, attempt.amount_captured, result.fee)
    attempt_to(attempt, AS.AUTHORIZED)
    intent_to(intent, IS.REQUIRES_CAPTURE)
    intent.amount_capturable = attempt.amount_authorized
    return events.charge_authorized(intent, attempt)


def _answer_requires_action(
    intent: PaymentIntent, attempt: PaymentAttempt, result: GatewayResult
) -> EventSpec:
    """The customer must act (3-D Secure): so must the payment; the gateway is asked later in case
    its webhook never comes."""
    attempt_to(attempt, AS.REQUIRES_ACTION)
    intent_to(intent, IS.REQUIRES_ACTION)
    intent.next_action = next_action_for(intent, result)
    attempt.next_resolve_at = next_action_check(timezone.now(), timezone.now())
    return events.attempt_requires_action(intent, attempt)


def next_action_for(intent: PaymentIntent, result: GatewayResult) -> dict:
    """What the storefront does for a payment waiting for the customer: send them to the
    gateway's page (``redirect_to_url``; ``return_url`` is null when the payment has none, and the
    customer then stays on the processor's page when done), or, when the gateway gave no page,
    ``authenticate`` with the reason."""
    if result.action_url:
        return {
            "type": "redirect_to_url",
            "redirect_to_url": {"url": result.action_url, "return_url": intent.return_url or None},
        }
    return {
        "type": "authenticate",
        "reason": "redirect_unavailable",
        "message": "the gateway offered no page to redirect the customer to; confirm the payment "
        "again with a return_url",
    }


def _answer_declined(
    intent: PaymentIntent,
    attempt: PaymentAttempt,
    account: GatewayAccount,
    result: GatewayResult,
    config: MeshConfig,
) -> tuple[str, list[EventSpec]]:
    """A decline: the decline table says fail over, or stop (the payment fails); off-session, an
    issuer asking for authentication leaves the payment waiting for the customer."""
    attempt_to(attempt, AS.DECLINED)
    specs = [events.attempt_declined(intent, attempt)]
    if intent.off_session and attempt.decline_code == AUTHENTICATION_REQUIRED:
        return "done", [*specs, _answer_authentication_required(intent, attempt)]
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
        return "failover", specs
    intent_to(intent, IS.FAILED)
    specs.append(events.payment_failed(intent, attempt=attempt, action=action))
    return "done", specs


def _answer_authentication_required(intent: PaymentIntent, attempt: PaymentAttempt) -> EventSpec:
    """A merchant-initiated charge the issuer will only take with the customer authenticating:
    no other gateway can give that (it is the customer's to give), so there is no failover. The
    payment waits in ``requires_action`` (nothing is open at the gateway: the attempt is
    declined) until it is confirmed again, with the customer there (the link emailed to them,
    ``links``) or by dunning's next retry; ``payment.requires_action`` tells the storefront."""
    intent_to(intent, IS.REQUIRES_ACTION)
    intent.next_action = {"type": "authenticate", "reason": AUTHENTICATION_REQUIRED}
    # The customer is emailed a link to authenticate it (once per payment); a subscription's
    # invoice payment (``recurring``) is billing's to tell: its payment-failed email carries the link.
    if intent.customer_id and not intent.recurring:
        durable_enqueue(
            handler=AUTHENTICATION_LINK_HANDLER,
            kwargs={"intent_id": intent.id},
            idempotency_key=f"authentication-link:{intent.id}",
        )
    intent.last_error = {
        "type": "card_error",
        "code": AUTHENTICATION_REQUIRED,
        "decline_code": attempt.decline_code,
        "advice_code": attempt.advice_code,
        "message": attempt.message,
        "attempt": attempt.id,
    }
    return events.attempt_requires_action(intent, attempt)


def _answer_gateway_error(intent: PaymentIntent, attempt: PaymentAttempt) -> EventSpec:
    """The gateway did not act (nothing was charged): fail over."""
    attempt_to(attempt, AS.FAILED)
    intent.last_error = {
        "type": "api_error",
        "code": "gateway_error",
        "message": attempt.message,
        "attempt": attempt.id,
    }
    return events.attempt_failed(intent, attempt)


def _answer_unknown(intent: PaymentIntent, attempt: PaymentAttempt) -> EventSpec:
    """The charge may exist: the attempt waits for ``payment_attempt_resolve``, queued here."""
    attempt_to(attempt, AS.UNKNOWN)
    attempt.next_resolve_at = timezone.now() + timedelta(seconds=RESOLVE_BACKOFF_SECONDS[0])
    spec = events.attempt_unknown(intent, attempt)
    durable_enqueue(
        handler=RESOLVE_HANDLER,
        kwargs={"attempt_id": attempt.id},
        idempotency_key=f"resolve:{attempt.id}",
        run_at=attempt.next_resolve_at,
        max_attempts=RESOLVE_MAX_ATTEMPTS,
    )
    return spec


def _answer_write(
    intent: PaymentIntent,
    attempt: PaymentAttempt,
    outcome: str,
    specs: list[EventSpec],
    *,
    latency_ms: int | None,
    config: MeshConfig,
    deadline: float | None,
) -> tuple[str, Step]:
    """Write the attempt and its payment in one statement, then record ``specs``; or, on a
    failover within the request's budget, start the next attempt with them (same transaction)."""
    if latency_ms is not None:
        attempt.latency_ms = latency_ms
    attempt_fields = [
        *_ATTEMPT_RESULT_FIELDS,
        *(("latency_ms",) if latency_ms is not None else ()),
        "updated_at",
    ]
    if outcome == "failover" and deadline is not None and intent.status == IS.PROCESSING:
        # The attempt just finished was the payment's latest and only open one.
        step = attempt_start(
            intent,
            config,
            deadline=deadline,
            number=attempt.number + 1,
            changed=_INTENT_RESULT_FIELDS,
            events_before=specs,
            also_update=[(attempt, attempt_fields)],
        )
        return outcome, step
    hotpath.write(update=[(attempt, attempt_fields), (intent, [*_INTENT_RESULT_FIELDS, "updated_at"])])
    record_events(specs)
    return outcome, Step(intent)
