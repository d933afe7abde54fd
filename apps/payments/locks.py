"""Row locks of payments, taken in one order by every writer, so two writers never wait on each
other in a cycle (a deadlock).

The order, within a transaction:

1. the payment (``PaymentIntent``): ``lock_intent``;
2. its attempts (``PaymentAttempt``), by number: ``lock_attempts``, or one with its payment:
   ``lock_attempt`` (one statement locking the payment, then the attempt);
3. its refunds (``Refund``): ``lock_refund`` (the payment, then the refund);
4. the payment methods a charge's answer writes (the card it saved for the customer,
   ``lock_customer_card``; the network transaction id kept on the method it charged, by an
   update of it only while it has none), in a savepoint; nothing that locks a method locks a
   payment after it;
5. rows of other apps that the payment's writes reach through hooks (a split payment's plan and
   transfers, ``apps.payments.hooks``), then the ledger's balances, which recording the events
   locks last, just before the commit.

Rows changed on their own, never together with their payment's, are locked alone: a late charge
being reversed (``lock_late_charge``), a dispute being closed (``lock_dispute``), an inbound
notification being claimed for processing (``lock_inbound_event``, released before it is applied), a
saved payment method being saved, attached or detached (``lock_payment_method``; a customer's method
with the same card: ``lock_customer_card``). Rows read along
(an attempt's gateway account, a refund's attempt) are never locked. Nothing in payments takes
``select_for_update`` outside this module (the simulator gateway, which stands for a processor,
keeps its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, cast

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, Model

from apps.core.db import prepared_cursor
from apps.payments.hotpath import qualified_table
from apps.payments.models import (
    Dispute,
    InboundEvent,
    LateCharge,
    PaymentAttempt,
    PaymentIntent,
    PaymentMethod,
    Refund,
)
from apps.tenants.db import current_schema


def lock_intent(intent_id: str) -> PaymentIntent:
    """The payment, locked FOR UPDATE."""
    return PaymentIntent.objects.select_for_update().get(pk=intent_id)


def lock_attempts(intent: PaymentIntent) -> list[PaymentAttempt]:
    """The attempts of a payment the caller has locked (``lock_intent``), locked FOR UPDATE, by
    number, with their gateway accounts."""
    return list(intent.attempts.select_for_update(of=("self",)).select_related("gateway_account"))


def _qn(name: str | None) -> str:
    return connection.ops.quote_name(cast(str, name))


@cache
def _attempt_lock_shape(schema: str) -> tuple[str, tuple[Field, ...], tuple[Field, ...]]:
    a, i = PaymentAttempt._meta, PaymentIntent._meta
    a_fields = tuple(cast(Field, f) for f in a.concrete_fields)
    i_fields = tuple(cast(Field, f) for f in i.concrete_fields)
    fk = cast(Field, a.get_field("intent"))
    columns = [f"a.{_qn(f.column)}" for f in a_fields] + [f"i.{_qn(f.column)}" for f in i_fields]
    # FOR UPDATE OF locks each row of the result in the order the OF list names them: the
    # payment, then the attempt.
    sql = (
        f"SELECT {', '.join(columns)} FROM {qualified_table(PaymentAttempt, schema)} a "
        f"JOIN {qualified_table(PaymentIntent, schema)} i "
        f"ON i.{_qn(cast(Field, i.pk).column)} = a.{_qn(fk.column)} "
        f"WHERE a.{_qn(cast(Field, a.pk).column)} = %s FOR UPDATE OF i, a"
    )
    return sql, a_fields, i_fields


def _model_from_row(
    db: Any, model: type[Model], fields: tuple[Field, ...], values: Sequence[object]
) -> Model:
    """An instance read back through each field's database converters, as the ORM does."""
    converted = []
    for f, value in zip(fields, values, strict=True):
        for convert in f.get_db_converters(db):
            value = convert(value, f.get_col(model._meta.db_table), db)
        converted.append(value)
    return model.from_db(db.alias, [f.attname for f in fields], converted)


def lock_attempt(attempt_id: str) -> PaymentAttempt:
    """The attempt with its payment (``attempt.intent``), both rows locked FOR UPDATE (the
    payment first), by one prepared statement: as ``PaymentAttempt.objects.select_related("intent")
    .get(pk=attempt_id)`` reads them. Its gateway account is read when it is first used. Raises
    PaymentAttempt.DoesNotExist."""
    sql, a_fields, i_fields = _attempt_lock_shape(current_schema())
    db = connections[DEFAULT_DB_ALIAS]
    with prepared_cursor(db) as cur:
        cur.execute(sql, [attempt_id])
        row = cur.fetchone()
    if row is None:
        raise PaymentAttempt.DoesNotExist(f"no payment attempt {attempt_id!r}")
    attempt = _model_from_row(db, PaymentAttempt, a_fields, row[: len(a_fields)])
    intent = _model_from_row(db, PaymentIntent, i_fields, row[len(a_fields) :])
    assert isinstance(attempt, PaymentAttempt) and isinstance(intent, PaymentIntent)
    attempt.intent = intent
    return attempt


def lock_refund(refund_id: str) -> tuple[PaymentIntent, Refund]:
    """The refund's payment, then the refund (with its attempt and gateway account), locked."""
    intent_id = Refund.objects.values_list("intent_id", flat=True).get(pk=refund_id)
    intent = lock_intent(intent_id)
    refund = (
        Refund.objects.select_for_update(of=("self",))
        .select_related("attempt__gateway_account")
        .get(pk=refund_id)
    )
    return intent, refund


def lock_late_charge(late_charge_id: str) -> LateCharge:
    """A late charge alone (its reversal changes nothing of its payment's rows)."""
    return LateCharge.objects.select_for_update().get(pk=late_charge_id)


def lock_dispute(dispute_id: str) -> Dispute:
    """A dispute alone (closing it changes nothing of its payment's rows), with its gateway
    account."""
    return (
        Dispute.objects.select_for_update(of=("self",)).select_related("gateway_account").get(pk=dispute_id)
    )


def lock_inbound_event(inbound_event_id: int) -> InboundEvent:
    """A stored inbound notification, with its gateway account (whose row the join locks too)."""
    return InboundEvent.objects.select_for_update().select_related("gateway_account").get(pk=inbound_event_id)


def lock_payment_method(method_id: str) -> PaymentMethod:
    """A saved payment method, locked FOR UPDATE."""
    return PaymentMethod.objects.select_for_update().get(pk=method_id)


def lock_customer_card(customer_id: str, fingerprint: str) -> PaymentMethod | None:
    """The customer's saved method with this card (its fingerprint), locked FOR UPDATE, or None."""
    return (
        PaymentMethod.objects.select_for_update()
        .filter(customer_id=customer_id, fingerprint=fingerprint)
        .first()
    )
