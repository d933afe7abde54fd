"""Reads of payments and refunds. The lists return unevaluated querysets (the API's pagination
orders and slices them)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime

from django.db.models import Prefetch, QuerySet

from apps.core.queries import filter_given
from apps.ledger.selectors import events_query
from apps.payments.failovers import CIRCUIT_OPEN, UNREACHABLE, RoundRows
from apps.payments.models import (
    PaymentAttempt,
    PaymentIntent,
    PaymentMethod,
    PaymentMethodCredential,
    Refund,
)


def payments_query(
    *,
    status: str | None = None,
    customer: str | None = None,
    created: dict[str, datetime] | None = None,
) -> QuerySet[PaymentIntent]:
    """Payments with their attempts (in order, with their gateway accounts) prefetched;
    ``created`` maps lookups (``gte``, ``lt``...) to times."""
    qs = PaymentIntent.objects.prefetch_related(
        Prefetch(
            "attempts",
            queryset=PaymentAttempt.objects.select_related("gateway_account").order_by("number"),
        )
    )
    created_at = {f"created_at__{op}": value for op, value in (created or {}).items()}
    return filter_given(qs, status=status, customer_id=customer, **created_at)


def payment_get(*, payment_id: str) -> PaymentIntent | None:
    return PaymentIntent.objects.filter(pk=payment_id).first()


def payment_waits_for_customer(*, payment_id: str) -> bool:
    """Whether the payment waits for its customer to act (``requires_action``: authenticate)."""
    return PaymentIntent.objects.filter(pk=payment_id, status=PaymentIntent.Status.REQUIRES_ACTION).exists()


def payment_with_attempts(*, payment_id: str) -> PaymentIntent | None:
    """The payment as ``payments_query`` reads it (attempts prefetched), or None."""
    return payments_query().filter(pk=payment_id).first()


def refunds_query(*, payment: str | None = None) -> QuerySet[Refund]:
    return filter_given(Refund.objects.all(), intent_id=payment)


def refund_get(*, refund_id: str) -> Refund | None:
    return Refund.objects.filter(pk=refund_id).first()


# --------------------------------------------------------------------------- payment methods


def payment_methods_query(*, customer: str | None = None) -> QuerySet[PaymentMethod]:
    """Payment methods with their credentials (and gateway accounts) prefetched."""
    qs = PaymentMethod.objects.prefetch_related(
        Prefetch(
            "credentials",
            queryset=PaymentMethodCredential.objects.select_related("gateway_account").order_by(
                "created_at", "id"
            ),
        )
    )
    return qs.filter(customer_id=customer) if customer else qs


def payment_method_get(*, method_id: str) -> PaymentMethod | None:
    return payment_methods_query().filter(pk=method_id).first()


def payment_method_gateways(*, method_id: str) -> set[str]:
    """The gateway accounts (by name) holding a credential for the method: the ones that can
    charge it."""
    return set(
        PaymentMethodCredential.objects.filter(method_id=method_id).values_list(
            "gateway_account__name", flat=True
        )
    )


def payment_method_network_transaction_id(*, method_id: str) -> str | None:
    """The network transaction id of the method's first customer-initiated charge, or None."""
    found = (
        PaymentMethod.objects.filter(pk=method_id).values_list("network_transaction_id", flat=True).first()
    )
    return found or None


def payment_method_credential(*, method_id: str, gateway_account_id: int) -> dict | None:
    """The method's credential at that gateway account (decrypted), or None."""
    found = PaymentMethodCredential.objects.filter(
        method_id=method_id, gateway_account_id=gateway_account_id
    ).first()
    return found.credential if found is not None else None


# --------------------------------------------------------------------------- failovers


def payment_rounds(*, payment_ids: Iterable[str]) -> dict[str, RoundRows]:
    """Each payment's latest confirmation round as its rows store it (``failovers.RoundRows``):
    its attempts (the last ``len(routing["tried"])``: a new round starts its ``tried`` afresh),
    those charged through a vault, the gateways skipped for an open breaker, and the error code
    it failed with. Earlier rounds' routing is replaced by each confirmation; their attempts stay."""
    ids = list(payment_ids)
    attempts: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for attempt_id, intent_id, gateway in (
        PaymentAttempt.objects.filter(intent_id__in=ids)
        .order_by("intent_id", "number")
        .values_list("id", "intent_id", "gateway_account__name")
    ):
        attempts[intent_id].append((attempt_id, gateway))
    rounds = {}
    for pid, routing, error in PaymentIntent.objects.filter(pk__in=ids).values_list(
        "id", "routing", "last_error"
    ):
        routing, error = routing or {}, error or {}
        tried = len(routing.get("tried") or [])
        rounds[pid] = RoundRows(
            attempts=tuple(attempts[pid][-tried:]) if tried else (),
            via=frozenset(routing.get("via") or {}),
            breaker_skipped=frozenset(
                s.get("gateway", "")
                for s in routing.get("skipped") or []
                if isinstance(s, dict) and s.get("reason") == CIRCUIT_OPEN
            ),
            error_code=str(error.get("code") or ""),
        )
    return rounds


def payments_unreachable_rounds(*, payment_ids: Iterable[str]) -> Counter[str]:
    """How many confirmation rounds of each payment failed because no gateway could charge its
    method (every round's ``PaymentFailed`` event says why, while its routing is replaced by the
    next round)."""
    return Counter(
        events_query(type="PaymentFailed")
        .filter(stream__in=list(payment_ids), payload__code=UNREACHABLE)
        .values_list("stream", flat=True)
    )
