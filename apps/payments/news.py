"""Inbound processor news (ARCHITECTURE section 7): store each verified notification once, answer
at once, and apply it to our payments in a worker.

``inbound_events_store`` writes the notifications and their durable tasks in one transaction (the
task is sent after commit and swept if the message is lost), so an acknowledged notification is
never lost and a redelivery is never stored twice. ``inbound_event_process`` is the durable task's
handler: the processor's package reads the stored notification as neutral news
(``Notifications.parse_notification``: ``ChargeNews``, ``RefundNews``...), and each piece of news
is applied by the handler registered for its kind, through the services, forward only: duplicates
and news arriving out of order are harmless.

Payments applies its own kinds (charges, refunds, captures, disputes). The kinds it does not own
(Connect: ``AccountNews``, ``PayoutNews``) are applied by handlers other apps register at start-up
(``news_handler_register``, from their ``AppConfig.ready``): payments imports none of them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.core.durable import durable_enqueue
from apps.payments.disputes import DisputeError, dispute_news_apply
from apps.payments.gateways.base import (
    CaptureFailedNews,
    ChargeNews,
    ChargeRef,
    DisputeNews,
    GatewayConfig,
    GatewayStatus,
    IgnoredNews,
    Notification,
    NotificationMatch,
    Notifications,
    RefundNews,
    RequestFailedNews,
)
from apps.payments.gateways.registry import notifications_for
from apps.payments.locks import lock_inbound_event
from apps.payments.models import GatewayAccount, InboundEvent, PaymentAttempt, PaymentIntent, Refund
from apps.payments.services import (
    GatewayTruthConflict,
    GatewayTruthNotYet,
    payment_attempt_apply_gateway_truth,
    payment_attempt_capture_failed,
    payment_refund_apply_gateway_truth,
    payment_refund_record_external,
)

log = logging.getLogger(__name__)
PROCESS_HANDLER = "apps.payments.news.inbound_event_process"
# Backoff 2, 4, 8 ... s (apps.core.durable): about three hours in all (``retry_span(14)``: 3.1 h),
# ample for the news an out-of-order one waits for (a refund reported before its capture).
PROCESS_MAX_ATTEMPTS = 14


@dataclass(frozen=True)
class Stored:
    event: InboundEvent
    created: bool  # False: a redelivery of a notification already stored


@dataclass(frozen=True)
class NewsSource:
    """Where a piece of news came from: the gateway account, and its processor's reader."""

    account: GatewayAccount
    notifications: Notifications


NewsHandler = Callable[[Any, NewsSource], str]
_HANDLERS: dict[type, NewsHandler] = {}


def news_handler_register(kind: type, handler: NewsHandler) -> None:
    """Apply news of ``kind`` (a class from ``gateways.base``) with ``handler(news, source)``,
    which returns what it did. Called at start-up (``AppConfig.ready``) by apps that own what the
    news is about; a kind has one handler."""
    registered = _HANDLERS.get(kind)
    if registered is not None and registered is not handler:
        raise ValueError(f"{kind.__name__} is applied by {registered.__qualname__} already")
    _HANDLERS[kind] = handler


# --------------------------------------------------------------------------- reads


def gateway_account_for_webhook(*, name: str, kind: str) -> GatewayAccount | None:
    """The account an endpoint URL names, if it is of the processor's kind (enabled or not: a
    disabled account still hears about its past payments)."""
    return GatewayAccount.objects.filter(name=name, kind=kind).first()


def notifications_of(account: GatewayAccount, *, kind: str | None = None) -> Notifications:
    """The webhook reader for ``account`` (of its own kind, or the ``kind`` its notifications were
    stored under)."""
    config = GatewayConfig(
        account_id=account.name, credentials=account.credentials, settings=account.settings
    )
    return notifications_for(kind or account.kind, config)


def attempt_for_event(
    *, account: GatewayAccount, attempt_id: str | None = None, reference: str | None = None
) -> PaymentAttempt | None:
    """Our attempt at ``account`` by our id (sent to the processor as metadata / reference), else
    by the processor's id for the charge (``PaymentAttempt.reference``, which may qualify it by the
    account holding it: ``acct_.../pi_...``). None when the news is about a charge we did not make."""
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


def event_received(*, account: GatewayAccount, match: NotificationMatch) -> InboundEvent | None:
    """The first stored notification of ``account`` that ``match`` describes, or None."""
    if not match.types:
        return None
    events = InboundEvent.objects.filter(
        gateway_account=account,
        type__in=match.types,
        **{f"payload__{lookup}": value for lookup, value in match.all_of.items()},
    )
    about_it = Q()
    for lookups in match.any_of:
        about_it |= Q(**{f"payload__{lookup}": value for lookup, value in lookups.items()})
    return events.filter(about_it).order_by("received_at", "id").first()


# --------------------------------------------------------------------------- storing


def inbound_events_store(
    *, account: GatewayAccount, provider: str, body: str, notifications: list[Notification]
) -> list[Stored]:
    """Idempotent (by the processor's event id per gateway account): store verified notifications
    as received, each with a durable task to process it, in one transaction. A redelivery returns
    the stored event and queues nothing; concurrent deliveries of one notification store it once."""
    stored = []
    with transaction.atomic():
        for notification in notifications:
            event, created = InboundEvent.objects.get_or_create(
                gateway_account=account,
                event_id=notification.event_id[:255],
                defaults={
                    "provider": provider,
                    "type": notification.type[:100],
                    "body": body,
                    "payload": notification.payload,
                    "occurred_at": notification.occurred_at,
                },
            )
            if created:
                _enqueue(event, key=f"webhook:{event.pk}")
            stored.append(Stored(event, created))
    return stored


def _enqueue(event: InboundEvent, *, key: str) -> None:
    durable_enqueue(
        handler=PROCESS_HANDLER,
        kwargs={"inbound_event_id": event.pk},
        idempotency_key=key,
        max_attempts=PROCESS_MAX_ATTEMPTS,
    )


# --------------------------------------------------------------------------- processing


def inbound_event_process(*, inbound_event_id: int) -> str:
    """Idempotent: apply one stored notification to our payments and mark it processed (one
    already processed is skipped). Returns its state. News contradicting a final state of ours
    marks it failed with the reason, not retried (an operator looks, then may reprocess it). News
    that waits for other news (a refund before its capture) stays pending and raises, as does any
    other error (marked failed), so its durable task retries with backoff."""
    with transaction.atomic():
        event = lock_inbound_event(inbound_event_id)
        if event.state == InboundEvent.State.PROCESSED:
            return event.state
        event.attempts += 1
        event.save(update_fields=["attempts"])
    # No lock is held while applying: the payments services lock what they change, and may call
    # a gateway (a failover after "nothing was charged").
    try:
        result = news_apply(event)
    except GatewayTruthConflict as exc:
        log.error("inbound event contradicts our records", extra={"event": event.event_id, "why": str(exc)})
        _mark(event, InboundEvent.State.FAILED, error=f"conflict: {exc}")
        return InboundEvent.State.FAILED
    except GatewayTruthNotYet as exc:
        if event.attempts >= PROCESS_MAX_ATTEMPTS:  # what it waits for never came: an operator looks
            _mark(event, InboundEvent.State.FAILED, error=f"gave up waiting: {exc}")
            return InboundEvent.State.FAILED
        _mark(event, InboundEvent.State.PENDING, error=f"waiting: {exc}")
        raise
    except Exception as exc:
        _mark(event, InboundEvent.State.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    _mark(event, InboundEvent.State.PROCESSED, result=result)
    return InboundEvent.State.PROCESSED


def news_apply(event: InboundEvent) -> str:
    """Idempotent: read one stored notification as news and apply it. Returns what it did."""
    account = event.gateway_account
    source = NewsSource(account, notifications_of(account, kind=event.provider))
    notification = Notification(
        event_id=event.event_id, type=event.type, payload=event.payload, occurred_at=event.occurred_at
    )
    news = source.notifications.parse_notification(notification)
    if not news:
        return f"ignored: {event.type} is not applied to payments"
    done = []
    for item in news:
        handler = _HANDLERS.get(type(item))
        done.append(
            handler(item, source) if handler else f"ignored: nothing here applies {type(item).__name__}"
        )
    return "; ".join(done)


def _mark(event: InboundEvent, state: str, *, result: str = "", error: str = "") -> None:
    fields: dict[str, object] = {"state": state, "last_error": error[:2000]}
    if state == InboundEvent.State.PROCESSED:
        fields.update(processed_at=timezone.now(), result=result[:500])
    InboundEvent.objects.filter(pk=event.pk).update(**fields)


def inbound_events_reprocess(*, inbound_event_ids: list[int]) -> int:
    """Queue stored notifications to be applied again (e.g. after an operator resolved a
    conflict). Harmless for those already applied: the payments services move forward only.
    Returns how many were queued."""
    queued = 0
    for pk in inbound_event_ids:
        with transaction.atomic():
            if not InboundEvent.objects.filter(pk=pk).update(state=InboundEvent.State.PENDING):
                continue
            _enqueue(InboundEvent(pk=pk), key=f"webhook:{pk}:reprocess:{uuid.uuid4().hex}")
        queued += 1
    return queued


# --------------------------------------------------------------------------- payments' own news


def _charge_id(reference: str) -> str:
    """The processor's id in a reference that may be qualified by an account (``acct_.../pi_...``)."""
    return reference.rpartition("/")[2]


def _attempt(news_charge: ChargeRef, source: NewsSource) -> PaymentAttempt | None:
    return attempt_for_event(
        account=source.account, attempt_id=news_charge.attempt_id, reference=news_charge.reference
    )


def charge_news_apply(news: ChargeNews, source: NewsSource) -> str:
    attempt = _attempt(news.charge, source)
    if attempt is None:
        return news.charge.not_ours
    if (
        news.same_charge
        and attempt.reference
        and _charge_id(attempt.reference) != (news.charge.reference or "")
    ):
        raise GatewayTruthConflict(
            f"{news.label} names attempt {attempt.id}, whose charge is {attempt.reference}"
        )
    if news.superseded_by_cancel and attempt.status in (
        PaymentAttempt.Status.FAILED,
        PaymentAttempt.Status.CANCELED,
    ):
        # News of money for an attempt closed here after its charge was cancelled is older than
        # the cancellation: nothing to do (not a conflict).
        match = source.notifications.cancellations(attempt_id=attempt.id, reference=news.charge.reference)
        cancel = event_received(account=source.account, match=match)
        if cancel is not None:
            return f"older news: {match.said} ({cancel.event_id})"
    result = news.result
    if news.capture_follows and attempt.intent.capture_method == PaymentIntent.CaptureMethod.AUTOMATIC:
        result = replace(result, status=GatewayStatus.CAPTURED, amount_captured=result.amount_authorized)
    return payment_attempt_apply_gateway_truth(attempt_id=attempt.pk, result=result)


def refund_news_apply(news: RefundNews, source: NewsSource) -> str:
    attempt = _attempt(news.charge, source)
    if attempt is None:
        return news.charge.not_ours
    done = []
    for report in news.refunds:
        refund = refund_for_event(attempt=attempt, refund_id=report.refund_id, reference=report.reference)
        if refund is not None:
            if report.succeeded is not None:
                done.append(
                    payment_refund_apply_gateway_truth(
                        refund_id=refund.pk,
                        succeeded=report.succeeded,
                        reference=report.reference,
                        message=report.message,
                    )
                )
        elif report.amount is not None:  # not ours, and reported with its amount
            if not report.succeeded:
                done.append(f"ignored: refund {report.reference} failed and is not one of ours")
            else:
                done.append(
                    payment_refund_record_external(
                        attempt_id=attempt.pk,
                        amount=report.amount,
                        reference=report.reference,
                        reason=news.outside_reason,
                    )
                )
    if news.refunded_total:
        # What exceeds the refunds known here was refunded outside this platform; the service
        # works it out under the payment's lock, so an older, smaller total records nothing.
        done.append(
            payment_refund_record_external(
                attempt_id=attempt.pk,
                refunded_total=news.refunded_total,
                reference=news.total_reference,
                reason=news.outside_reason,
            )
        )
    return "; ".join(done) or news.unchanged


def capture_failed_news_apply(news: CaptureFailedNews, source: NewsSource) -> str:
    attempt = _attempt(news.charge, source)
    if attempt is None:
        return news.charge.not_ours
    return payment_attempt_capture_failed(attempt_id=attempt.pk, message=news.message)


def request_failed_news_apply(news: RequestFailedNews, source: NewsSource) -> str:
    attempt = _attempt(news.charge, source)
    if attempt is None:
        return news.charge.not_ours
    return f"recorded: {news.request} of attempt {attempt.id} failed ({news.reason}); nothing changed"


def dispute_news_handle(news: DisputeNews, source: NewsSource) -> str:
    attempt = _attempt(news.charge, source)
    if attempt is None:
        return news.charge.not_ours
    try:
        return dispute_news_apply(
            attempt=attempt,
            reference=news.reference,
            amount=news.amount,
            currency=news.currency,
            reason=news.reason,
            settled=news.settled,
            opens=news.opens,
            label=news.label,
        )
    except DisputeError as exc:
        # A dispute that does not fit the payment: it waits for the capture it disputes, else it
        # contradicts our records.
        if attempt.status != PaymentAttempt.Status.CAPTURED:
            raise GatewayTruthNotYet(f"{exc}: waiting for the capture of attempt {attempt.id}") from None
        raise GatewayTruthConflict(str(exc)) from None


def _ignored(news: IgnoredNews, source: NewsSource) -> str:
    return news.reason


_HANDLERS.update(
    {
        ChargeNews: charge_news_apply,
        RefundNews: refund_news_apply,
        CaptureFailedNews: capture_failed_news_apply,
        RequestFailedNews: request_failed_news_apply,
        DisputeNews: dispute_news_handle,
        IgnoredNews: _ignored,
    }
)
