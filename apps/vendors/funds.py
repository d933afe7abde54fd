"""The funds flow of split payments: separate charges and transfers (ARCHITECTURE sections 4, 5).

1. **Plan.** ``POST /payments`` with ``splits`` validates the plan (``split_plan_prepare``) before
   anything is charged and stores it with the payment (``split_record``).
2. **Capture.** The capture's ledger event credits each vendor's net to ``vendor_pending:<v>``,
   the commission to ``platform_revenue`` and the processor fee the vendors bear back to
   ``processor_fees`` (``split_capture_allocations``); a durable task then creates one transfer
   per vendor (``payment_transfers_create``), in the payment's transfer group.
3. **Transfer.** A vendor whose payouts are enabled gets its transfer (``transfer_send``): on
   Stripe Connect when the marketplace has a Stripe gateway and the vendor a real connected
   account, else simulated in the ledger only. Money the vendor owes (a negative available
   balance after refunds) is kept back from the transfer. A vendor who cannot be paid yet has its
   transfer held (``vendor_held:<v>``) and released when it can (``vendor_transfers_release``).
4. **Payout.** Each vendor's available balance is paid out on its schedule (daily, weekly,
   monthly; manual ones by an operator) once it reaches its minimum (``vendor_payout_create``).
5. **Refunds** unwind the split in proportion (``split_refund_allocations``): from the vendor's
   pending or held money when its transfer has not gone out, else from its available balance,
   and the transfer is reversed at Stripe for what is still in the connected account; whatever
   the vendor cannot cover is recovered from its later transfers.

Every step posts to the ledger, so a vendor's balances are always the ledger's figures. The
money rules are pure functions in ``splits`` (allocation, refund unwind, dispute split, what can
be taken back from a connected account, what is kept back for debts) and the reads in
``selectors`` (``transfer_in_account``, ``transfer_reclaimable``); each step here works out its
plan from them first, then writes it. Rows are locked through ``locks`` (one order) and move
through the machines in ``states``.

No database transaction is open while Stripe is asked. Each transfer, reversal and payout goes in
three steps: its intent is recorded and committed (``sending``), Stripe is asked with an
idempotency key derived from our ids, and the answer is applied under a row lock (forward only,
idempotent). An unknown answer keeps the record ``sending`` until a retry resolves it from Stripe
(looked up by metadata, else the same request replayed); ``funds_reconcile`` re-arms stranded ones.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.core.durable import durable_enqueue, durable_live
from apps.core.recovery import recovery_point
from apps.ledger.errors import InsufficientFunds
from apps.ledger.models import Account
from apps.ledger.selectors import balance_get
from apps.ledger.services import ledger_record
from apps.payments.gateways.connect import ConnectError, ConnectRail
from apps.payments.models import GatewayAccount, PaymentAttempt, PaymentIntent
from apps.vendors.locks import (
    payment_transfer_lock,
    payout_lock,
    reversal_lock,
    split_lock,
    transfer_lock,
    vendor_lock,
    vendor_transfers_lock,
)
from apps.vendors.models import PaymentSplit, Payout, Transfer, TransferReversal, Vendor
from apps.vendors.selectors import (
    commission_policy_terms,
    connect_client,
    is_simulated,
    transfer_in_account,
    transfer_reclaimable,
    vendor_split_terms,
    vendors_bear_disputes,
)
from apps.vendors.splits import (
    Allocation,
    RefundUnwind,
    SplitError,
    SplitPlan,
    allocation_postings,
    kept_back,
    split_allocate,
    split_dispute,
    split_plan_validate,
    split_refund_unwind,
    vendor_owed,
)
from apps.vendors.states import can_receive, payout_to, reversal_to, transfer_to
from apps.webhooks.outbound import event_publish

log = logging.getLogger(__name__)
MAX_SPLIT_LINES = 100
SCHEDULE_INTERVALS = {
    Vendor.PayoutSchedule.DAILY: timedelta(days=1),
    Vendor.PayoutSchedule.WEEKLY: timedelta(days=7),
    Vendor.PayoutSchedule.MONTHLY: timedelta(days=30),
}


# The retry schedule of transfers, reversals and payouts (one definition, used by every send): a
# send whose outcome is unknown is retried by its durable task with apps.core.durable's backoff
# (2 s, 4 s, ... capped at an hour) for SEND_MAX_ATTEMPTS runs, about two days
# (``durable.retry_span(SEND_MAX_ATTEMPTS)``); then the reconcile job re-arms whatever is still
# unfinished, every STRANDED_AFTER.
SEND_MAX_ATTEMPTS = 60
# Work still pending or sending this long after it started, with no durable task left to finish
# it, is stranded (a task that ran out of attempts); ``funds_reconcile`` queues it again.
STRANDED_AFTER = timedelta(minutes=15)


class StillUnknown(Exception):
    """A call to Stripe has no known outcome yet (not reached, answer lost, 5xx): its record stays
    ``sending`` and the durable task that raised this is run again later to resolve it."""


class FundsError(ValueError):
    """An operator's or API request the funds flow cannot honour; nothing was changed."""

    def __init__(self, message: str, *, code: str, param: str | None = None):
        super().__init__(message)
        self.code = code
        self.param = param


# --------------------------------------------------------------------------- helpers


def _record(event_type: str, stream: str, key: str, payload: dict) -> None:
    ledger_record(event_type=event_type, stream=stream, payload=payload, idempotency_key=key)


def _real_account(vendor: Vendor) -> bool:
    return bool(vendor.stripe_account_id) and not is_simulated(vendor)


def _source_charge(client: ConnectRail, payment_id: str) -> str | None:
    """When the payment was charged on the platform's Stripe account, its charge: the transfer
    then waits for that charge's funds (``source_transaction``) instead of drawing on the
    platform's available balance. None for other gateways (the platform's balance pays)."""
    attempt = (
        PaymentAttempt.objects.select_related("gateway_account")
        .filter(intent_id=payment_id, status=PaymentAttempt.Status.CAPTURED)
        .first()
    )
    if attempt is None or attempt.gateway_account.kind != GatewayAccount.Kind.STRIPE or not attempt.reference:
        return None
    return client.source_charge(attempt.reference)


def _gateway_of(payment_id: str) -> str:
    intent = PaymentIntent.objects.select_related("gateway_account").get(pk=payment_id)
    if intent.gateway_account is None:
        raise FundsError(f"payment {payment_id} has no gateway", code="payment_not_captured")
    return intent.gateway_account.name


# --------------------------------------------------------------------------- plan and capture


def split_plan_prepare(raw: object, *, amount: int, currency: str) -> SplitPlan:
    """Validate a payment's ``splits`` against the vendors and the marketplace's terms. Raises
    SplitError naming the param (``splits[1].amount``); nothing is written."""
    if not isinstance(raw, list) or not raw:
        raise SplitError("split_plan_invalid", "splits must be a non-empty list", param="splits")
    if len(raw) > MAX_SPLIT_LINES:
        raise SplitError(
            "split_plan_invalid", f"a split plan has at most {MAX_SPLIT_LINES} lines", param="splits"
        )
    ids = [line.get("vendor") or line.get("vendor_id") for line in raw if isinstance(line, dict)]
    return split_plan_validate(
        raw,
        amount=amount,
        currency=currency,
        vendors=vendor_split_terms([i for i in ids if isinstance(i, str)]),
        policy=commission_policy_terms(),
    )


def split_record(*, payment_id: str, plan: SplitPlan) -> PaymentSplit:
    """Store the plan with its payment (in the payment's creating transaction)."""
    return PaymentSplit.objects.create(
        payment_id=payment_id,
        currency=plan.currency,
        plan=plan.as_dict(),
        transfer_group=f"group_{payment_id}",
    )


def _split_of(payment_id: str) -> PaymentSplit:
    """The payment's split, locked; a payment without one is an error here."""
    split = split_lock(payment_id)
    if split is None:
        raise PaymentSplit.DoesNotExist(f"payment {payment_id} has no split")
    return split


def _refunds_of(split: PaymentSplit) -> list[RefundUnwind]:
    return [RefundUnwind.from_dict(r["unwind"]) for r in split.refunds]


def split_capture_allocations(*, payment_id: str, amount: int, fee: int) -> list[dict]:
    """The capture's allocations for the ledger, and the writes they lead to, inside the capture's
    transaction (under the payment's lock; call it before the capture's event payload is built,
    never while). Computes the allocation (``splits.split_allocate``, pure), records it on the
    split and schedules the transfers (``split_capture_record``), and returns its postings
    (``splits.allocation_postings``, pure): each vendor's net to ``vendor_pending``, commission to
    ``platform_revenue``, the fee vendors bear back to ``processor_fees``; they sum to ``amount``.
    Deterministic, so a repeated capture event yields the same allocations."""
    split = _split_of(payment_id)
    allocation = split_allocate(SplitPlan.from_dict(split.plan), captured=amount, processor_fee=fee)
    split_capture_record(split, allocation)
    return allocation_postings(allocation)


def split_capture_record(split: PaymentSplit, allocation: Allocation) -> None:
    """The capture's writes (the split locked by the caller): the allocation on the split, and
    the durable task that creates the transfers (``payment_transfers_create``), once per payment."""
    split.allocation = allocation.as_dict()
    split.save(update_fields=["allocation", "updated_at"])
    durable_enqueue(
        handler="apps.vendors.funds.payment_transfers_create",
        kwargs={"payment_id": split.payment_id},
        idempotency_key=f"transfers:{split.payment_id}",
    )


# --------------------------------------------------------------------------- transfers


def transfers_owed(allocation: Allocation, *, previous: list[RefundUnwind]) -> list[tuple[str, int]]:
    """Pure: (vendor, amount) of each transfer a captured split makes: each vendor's net less what
    refunds before the transfer took from it (``splits.vendor_owed``); vendors owed nothing get none."""
    owed = [(p.vendor_id, vendor_owed(allocation, p.vendor_id, previous=previous)) for p in allocation.parts]
    return [(vendor_id, amount) for vendor_id, amount in owed if amount > 0]


def payment_transfers_create(*, payment_id: str) -> int:
    """Durable task after a capture: one transfer per vendor with something owed
    (``transfers_owed``), sent or held. Idempotent (one transfer per payment and vendor). Returns
    how many it created."""
    created = 0
    with transaction.atomic():
        split = _split_of(payment_id)
        if split.allocation is None:
            return 0
        allocation = Allocation.from_dict(split.allocation)
        vendors = Vendor.objects.in_bulk([p.vendor_id for p in allocation.parts])
        for vendor_id, owed in transfers_owed(allocation, previous=_refunds_of(split)):
            transfer, made = Transfer.objects.get_or_create(
                payment_id=payment_id,
                vendor_id=vendor_id,
                defaults={
                    "amount": owed,
                    "currency": allocation.currency,
                    "transfer_group": split.transfer_group,
                },
            )
            if not made:
                continue
            created += 1
            if can_receive(vendors[vendor_id]):
                _schedule_send(transfer)
            else:
                _hold(transfer)
    return created


def _schedule_send(transfer: Transfer) -> None:
    durable_enqueue(
        handler="apps.vendors.funds.transfer_send",
        kwargs={"transfer_id": transfer.id},
        idempotency_key=f"transfer:{transfer.id}:send:{uuid.uuid4().hex[:12]}",
        max_attempts=SEND_MAX_ATTEMPTS,
    )


def _hold(transfer: Transfer) -> None:
    """Hold a pending transfer (locked by the caller)."""
    _transfer_move(transfer, Transfer.Status.HELD, "TransferHeld", "held")


def _transfer_move(transfer: Transfer, status: str, event_type: str, word: str) -> None:
    """Move a locked transfer between held and pending, with the ledger event that moves its
    amount between the vendor's held and pending balances."""
    transfer_to(transfer, status)
    transfer.save(update_fields=["status", "updated_at"])
    _record(
        event_type,
        transfer.id,
        f"{transfer.id}:{word}:{uuid.uuid4().hex[:12]}",
        {
            "vendor": transfer.vendor_id,
            "transfer": transfer.id,
            "amount": transfer.amount,
            "currency": transfer.currency,
        },
    )


def transfer_send(*, transfer_id: str) -> str:
    """Durable task: send a pending transfer, or resolve one left ``sending``. Idempotent: Stripe
    sees one transfer (idempotency key ``<transfer>:create``, metadata ``transfer: <id>``) and the
    ledger one ``TransferPaid``, however often this runs or fails.

    No transaction is open while Stripe is asked. (1) Under the transfer's lock: what goes out is
    fixed (the amount less what is kept back for the vendor's debts), the transfer becomes
    ``sending``, and that commits. (2) Stripe is asked; a transfer already ``sending`` (its answer
    lost, its commit failed, its process died) is first looked up by its metadata, and the same
    request is replayed only when Stripe has none. (3) Under the lock again the answer is applied
    (``transfer_send_apply``). An unknown answer (timeout, reset, 5xx) is neither a refusal nor a
    success: it raises StillUnknown, the transfer stays ``sending`` and the durable task retries
    with backoff (the reconcile job re-arms it after that)."""
    with transaction.atomic():
        transfer = transfer_lock(transfer_id, with_vendor=True)
        if transfer.status not in (Transfer.Status.PENDING, Transfer.Status.SENDING):
            return f"skipped ({transfer.status})"
        resuming = transfer.status == Transfer.Status.SENDING
        if not resuming:
            vendor = transfer.vendor
            if not can_receive(vendor):
                _hold(transfer)
                return "held"
            available = balance_get(code=f"vendor_payable:{vendor.id}", currency=transfer.currency)
            transfer.amount_recovered = kept_back(transfer.amount, available=available)
            client = connect_client() if _real_account(vendor) else None
            if not transfer.sent or client is None:  # nothing goes to Stripe: paid in the ledger only
                _transfer_paid(transfer, stripe_transfer_id="", simulated=bool(transfer.sent))
                return "paid"
            transfer_to(transfer, Transfer.Status.SENDING)
            transfer.sending_since = timezone.now()
            transfer.save(update_fields=["status", "amount_recovered", "sending_since", "updated_at"])
    # (2) Stripe, with no transaction open.
    client = connect_client()
    if client is None:
        raise StillUnknown(f"transfer {transfer.id} is sending but Stripe is no longer configured")
    vendor = transfer.vendor
    try:
        found = (
            client.transfer_find(
                destination=vendor.stripe_account_id,
                transfer_group=transfer.transfer_group,
                transfer=transfer.id,
            )
            if resuming
            else None
        )
        result = found or client.transfer_create(
            source_transaction=_source_charge(client, transfer.payment_id),
            amount=transfer.sent,
            currency=transfer.currency,
            destination=vendor.stripe_account_id,
            transfer_group=transfer.transfer_group,
            idempotency_key=f"{transfer.id}:create",
            metadata={"payment": transfer.payment_id, "vendor": vendor.id, "transfer": transfer.id},
        )
    except ConnectError as exc:
        # Only a refusal of the create (or of the charge it would draw on) proves that no transfer
        # exists; a refused look-up proves nothing.
        if exc.refused and exc.operation in ("transfer_create", "payment_intent_retrieve"):
            return transfer_send_apply(transfer_id=transfer.id, failure=exc.message)
        raise StillUnknown(f"transfer {transfer.id}: {exc.message}") from exc
    # (3)
    return transfer_send_apply(transfer_id=transfer.id, stripe_transfer_id=result.id)


def transfer_send_apply(*, transfer_id: str, stripe_transfer_id: str = "", failure: str = "") -> str:
    """Apply Stripe's answer to a ``sending`` transfer under its lock: ``paid`` (with Stripe's id,
    the ``TransferPaid`` posting and ``transfer.created``), or ``failed`` with ``failure`` (Stripe
    refused it). Forward only and idempotent: a transfer no longer ``sending`` is left as it is."""
    with transaction.atomic():
        transfer = transfer_lock(transfer_id, with_vendor=True)
        if transfer.status != Transfer.Status.SENDING:
            return f"stays {transfer.status}"
        if failure:
            _send_refused(transfer, transfer_to, failure)
            return f"failed: {failure}"
        _transfer_paid(transfer, stripe_transfer_id=stripe_transfer_id, simulated=False)
    return "paid"


def _send_refused(row: Transfer | TransferReversal, move: Callable[[Any, str], None], failure: str) -> None:
    """A locked transfer or reversal that Stripe refused to send: ``failed``, with why."""
    move(row, row.Status.FAILED)
    row.failure_message = failure[:500]
    row.save(update_fields=["status", "failure_message", "updated_at"])


def _transfer_paid(transfer: Transfer, *, stripe_transfer_id: str, simulated: bool) -> None:
    """Mark a locked transfer paid and post it (in the caller's transaction)."""
    transfer_to(transfer, Transfer.Status.PAID)
    transfer.stripe_transfer_id = stripe_transfer_id
    transfer.simulated = simulated
    transfer.save()
    _record(
        "TransferPaid",
        transfer.id,
        f"{transfer.id}:paid",
        {
            "vendor": transfer.vendor_id,
            "transfer": transfer.id,
            "payment": transfer.payment_id,
            "amount": transfer.amount,
            "sent": transfer.sent,
            "currency": transfer.currency,
            "gateway_account": _gateway_of(transfer.payment_id),
        },
    )
    event_publish(
        type="transfer.created",
        object_type="transfer",
        object_id=transfer.id,
        source_key=f"{transfer.id}:created",
    )


def vendor_transfers_release(*, vendor_id: str) -> int:
    """Release a vendor's held transfers once it can be paid (they are sent next). Idempotent."""
    released = 0
    with transaction.atomic():
        vendor = vendor_lock(vendor_id)
        if not can_receive(vendor):
            return 0
        for transfer in vendor_transfers_lock(vendor, status=Transfer.Status.HELD):
            _transfer_move(transfer, Transfer.Status.PENDING, "TransferReleased", "released")
            _schedule_send(transfer)
            released += 1
    return released


# --------------------------------------------------------------------------- refunds


@dataclass(frozen=True)
class RefundSource:
    """Where one vendor's debit for a refund is taken from: ``covered`` from its money still
    waiting for its transfer (in ``account``: ``vendor_pending``, or ``vendor_held`` while the
    transfer is held), ``rest`` from its available balance (``vendor_payable``, where a shortfall
    is a debt kept back from its next transfers)."""

    vendor_id: str
    account: str
    covered: int
    rest: int


def refund_sources(
    unwind: RefundUnwind,
    *,
    allocation: Allocation,
    previous: list[RefundUnwind],
    transfers: Mapping[str, Transfer | None],
) -> list[RefundSource]:
    """Pure: where each vendor's debit of ``unwind`` comes from, given the payment's transfer to
    each vendor (None: not made yet) and the ``previous`` refunds. Money still waits for a vendor
    when its transfer is not made yet (its net less earlier refunds' debits), or is pending, held
    or failed (the transfer's amount); a debit beyond what waits (the fee the vendor bore) and
    anything after the transfer went out comes out of its available balance."""
    out = []
    for part in unwind.parts:
        if not part.debit:
            continue
        v = part.vendor_id
        transfer = transfers.get(v)
        waiting, account = 0, f"vendor_pending:{v}"
        if transfer is None:
            waiting = max(0, vendor_owed(allocation, v, previous=previous))
        elif transfer.status in (Transfer.Status.PENDING, Transfer.Status.HELD, Transfer.Status.FAILED):
            waiting = transfer.amount
            if transfer.status == Transfer.Status.HELD:
                account = f"vendor_held:{v}"
        covered = min(part.debit, waiting)
        out.append(RefundSource(v, account, covered, part.debit - covered))
    return out


def refund_postings(sources: list[RefundSource], unwind: RefundUnwind) -> list[dict]:
    """Pure: the refund's allocations for the ledger: per vendor what waits then what is
    available, then the commission out of platform revenue; they sum to the refund."""
    out: list[dict] = []
    for source in sources:
        if source.covered:
            out.append({"account": source.account, "amount": source.covered})
        if source.rest:
            out.append({"account": f"vendor_payable:{source.vendor_id}", "amount": source.rest})
    if unwind.commission_reversed:
        out.append({"account": "platform_revenue", "amount": unwind.commission_reversed})
    return out


def split_refund_allocations(*, payment_id: str, refund_id: str, amount: int) -> list[dict] | None:
    """A refund's allocations for the ledger when the payment was split (None otherwise), inside
    the refund's transaction: each vendor's share is taken from where its money is (pending or
    held before its transfer went out, else available), the commission from platform revenue.
    Works out the plan first (``splits.split_refund_unwind``, ``refund_sources``,
    ``refund_postings``: pure), then writes it: the transfers not yet out shrink by what they
    cover, reversals are scheduled for what is still in connected accounts, and the refund is
    recorded on the split. Idempotent per refund."""
    split = split_lock(payment_id)
    if split is None or split.allocation is None:
        return None
    for earlier in split.refunds:
        if earlier["refund"] == refund_id:
            return earlier["allocations"]
    allocation = Allocation.from_dict(split.allocation)
    previous = _refunds_of(split)
    unwind = split_refund_unwind(allocation, amount=amount, previous=previous)
    transfers = {p.vendor_id: payment_transfer_lock(payment_id, p.vendor_id) for p in unwind.parts if p.debit}
    sources = refund_sources(unwind, allocation=allocation, previous=previous, transfers=transfers)
    out = refund_postings(sources, unwind)
    for source in sources:
        transfer = transfers[source.vendor_id]
        if transfer is None:
            continue
        if source.covered:
            transfer.amount -= source.covered
            if transfer.amount == 0:
                transfer_to(transfer, Transfer.Status.CANCELED)
            transfer.save(update_fields=["amount", "status", "updated_at"])
        if source.rest and transfer.status in (Transfer.Status.PAID, Transfer.Status.SENDING):
            # A transfer still sending goes out whole (its reversal waits for it to land).
            _reversal_schedule(transfer, debit=source.rest, refund_id=refund_id)
    split.refunds = [*split.refunds, {"refund": refund_id, "unwind": unwind.as_dict(), "allocations": out}]
    split.save(update_fields=["refunds", "updated_at"])
    return out


def _reversal_schedule(transfer: Transfer, *, debit: int, refund_id: str) -> None:
    """Take back from the connected account what can be of the vendor's ``debit``
    (``selectors.transfer_reclaimable``: what is still there of this transfer, at most what the
    vendor has available); the rest stays owed and is kept back from later transfers."""
    take = transfer_reclaimable(transfer, debit=debit)
    if take <= 0:
        return
    _reversal_create(transfer, amount=take, refund_id=refund_id)


def _reversal_create(transfer: Transfer, *, amount: int, refund_id: str = "", dispute_id: str = "") -> None:
    """Record a reversal of ``amount`` of a locked transfer for one refund or lost dispute, and
    the durable task that sends it (in the caller's transaction). Once per cause."""
    reversal, created = TransferReversal.objects.get_or_create(
        transfer=transfer,
        refund_id=refund_id,
        dispute_id=dispute_id,
        defaults={"amount": amount, "currency": transfer.currency},
    )
    if not created:
        return
    transfer.amount_reversed += amount
    transfer.save(update_fields=["amount_reversed", "updated_at"])
    durable_enqueue(
        handler="apps.vendors.funds.transfer_reversal_send",
        kwargs={"reversal_id": reversal.id},
        idempotency_key=f"transfer:{transfer.id}:reverse:{reversal.cause_id}",
        max_attempts=SEND_MAX_ATTEMPTS,
    )


def transfer_reversal_send(*, reversal_id: str) -> str:
    """Durable task: send a reversal, or resolve one left ``sending``. Idempotent: Stripe sees one
    reversal (key ``<transfer>:reverse:<cause>``, metadata naming the refund or dispute) and the
    ledger one ``TransferReversed``.

    The same three steps as ``transfer_send``, no transaction open while Stripe is asked. A
    reversal waits (StillUnknown) while its transfer is still sending, and is canceled when the
    transfer never reached the connected account."""
    with transaction.atomic():
        transfer, reversal = reversal_lock(reversal_id)
        if reversal.status not in (TransferReversal.Status.PENDING, TransferReversal.Status.SENDING):
            return f"skipped ({reversal.status})"
        resuming = reversal.status == TransferReversal.Status.SENDING
        if not resuming:
            if transfer.status == Transfer.Status.SENDING:
                raise StillUnknown(f"reversal {reversal.id} waits for transfer {transfer.id} to be resolved")
            if transfer.status != Transfer.Status.PAID:
                reversal_to(reversal, TransferReversal.Status.CANCELED)
                reversal.save(update_fields=["status", "updated_at"])
                transfer.amount_reversed -= reversal.amount
                transfer.save(update_fields=["amount_reversed", "updated_at"])
                return "canceled"
            if not transfer.stripe_transfer_id:  # a simulated transfer: reversed in the ledger only
                _reversal_succeeded(reversal, transfer, stripe_reversal_id="", simulated=True)
                return "reversed"
            reversal_to(reversal, TransferReversal.Status.SENDING)
            reversal.sending_since = timezone.now()
            reversal.save(update_fields=["status", "sending_since", "updated_at"])
    client = connect_client()
    if client is None:
        raise StillUnknown(f"reversal {reversal.id} is sending but Stripe is no longer configured")
    cause_key, cause_id = next(iter(reversal.cause.items()))
    try:
        found = (
            client.transfer_reversal_find(
                transfer_id=transfer.stripe_transfer_id, key=cause_key, value=cause_id
            )
            if resuming
            else None
        )
        result = found or client.transfer_reverse(
            transfer_id=transfer.stripe_transfer_id,
            amount=reversal.amount,
            idempotency_key=f"{transfer.id}:reverse:{cause_id}",
            metadata=reversal.cause,
        )
    except ConnectError as exc:
        if exc.refused and exc.operation == "transfer_reverse":
            return transfer_reversal_apply(reversal_id=reversal.id, failure=exc.message)
        raise StillUnknown(f"reversal {reversal.id}: {exc.message}") from exc
    return transfer_reversal_apply(reversal_id=reversal.id, stripe_reversal_id=result.id)


def transfer_reversal_apply(*, reversal_id: str, stripe_reversal_id: str = "", failure: str = "") -> str:
    """Apply Stripe's answer to a ``sending`` reversal under the locks of its transfer and itself:
    ``succeeded`` with the ``TransferReversed`` posting, or ``failed`` (Stripe refused: the money
    stays in the connected account, the vendor's balance keeps the debt, an error is logged).
    Forward only and idempotent."""
    with transaction.atomic():
        transfer, reversal = reversal_lock(reversal_id)
        if reversal.status != TransferReversal.Status.SENDING:
            return f"stays {reversal.status}"
        if failure:
            _send_refused(reversal, reversal_to, failure)
            transfer.amount_reversed -= reversal.amount
            transfer.save(update_fields=["amount_reversed", "updated_at"])
            log.error("Stripe refused reversal %s of transfer %s: %s", reversal.id, transfer.id, failure)
            return f"failed: {failure}"
        _reversal_succeeded(reversal, transfer, stripe_reversal_id=stripe_reversal_id, simulated=False)
    return "reversed"


def _reversal_succeeded(
    reversal: TransferReversal, transfer: Transfer, *, stripe_reversal_id: str, simulated: bool
) -> None:
    reversal_to(reversal, TransferReversal.Status.SUCCEEDED)
    reversal.stripe_reversal_id = stripe_reversal_id
    reversal.simulated = simulated
    reversal.save(update_fields=["status", "stripe_reversal_id", "simulated", "updated_at"])
    _record(
        "TransferReversed",
        transfer.id,
        f"{transfer.id}:reversed:{reversal.cause_id}",
        {
            "vendor": transfer.vendor_id,
            "transfer": transfer.id,
            **reversal.cause,
            "amount": reversal.amount,
            "currency": transfer.currency,
            "gateway_account": _gateway_of(transfer.payment_id),
        },
    )


def transfer_reverse(*, transfer_id: str, amount: int, refund_id: str = "", dispute_id: str = "") -> str:
    """Durable task of earlier releases (kept for tasks queued before reversals had rows): the
    reversal for this cause, recorded if missing (its amount was already counted on the
    transfer), then sent as ``transfer_reversal_send``. Idempotent."""
    with transaction.atomic():
        transfer = transfer_lock(transfer_id)
        reversal, _ = TransferReversal.objects.get_or_create(
            transfer=transfer,
            refund_id=refund_id,
            dispute_id=dispute_id,
            defaults={"amount": amount, "currency": transfer.currency},
        )
    return transfer_reversal_send(reversal_id=reversal.id)


def dispute_lost_clawback(*, payment_id: str, dispute_id: str, allocations: list[dict]) -> int:
    """A lost dispute on a split payment (inside its closing transaction): take back from the
    vendors' connected accounts what was left there for it when it opened (``clawback``: it was
    capped by the vendor's balance then), at most what is still there of the payment's transfer
    (``selectors.transfer_in_account``). Returns how many reversals it scheduled."""
    scheduled = 0
    for vendor_id, clawback in dispute_clawbacks(allocations):
        transfer = payment_transfer_lock(payment_id, vendor_id, status=Transfer.Status.PAID)
        if transfer is None:
            continue
        take = min(clawback, transfer_in_account(transfer))
        if take <= 0:
            continue
        _reversal_create(transfer, amount=take, dispute_id=dispute_id)
        scheduled += 1
    return scheduled


def dispute_clawbacks(allocations: list[dict]) -> list[tuple[str, int]]:
    """Pure: (vendor, clawback) of each vendor line of a dispute's allocations with one."""
    out = []
    for line in allocations:
        kind, _, vendor_id = str(line.get("account", "")).partition(":")
        take = int(line.get("clawback") or 0)
        if kind == "vendor_payable" and take > 0:
            out.append((vendor_id, take))
    return out


def split_dispute_allocations(*, payment_id: str, amount: int) -> list[dict] | None:
    """Who bears a dispute on a split payment when the dispute policy says the vendors
    (``selectors.vendors_bear_disputes``), for the ledger: the split of ``splits.split_dispute``
    (each vendor's share out of its available balance, ``vendor_payable``, where a negative
    balance is kept back from later transfers; the commission's share out of
    ``platform_revenue``). A vendor line carries ``clawback``: what of its share can be taken back
    from its connected account (``selectors.transfer_reclaimable``), taken if the dispute is
    lost and left there if it is won. None when the platform bears it. Reads only."""
    split = PaymentSplit.objects.filter(payment_id=payment_id).first()
    if split is None or split.allocation is None or not vendors_bear_disputes():
        return None
    dispute = split_dispute(Allocation.from_dict(split.allocation), amount=amount)
    out: list[dict] = []
    for part in dispute.parts:
        if not part.debit:
            continue
        line = {"account": f"vendor_payable:{part.vendor_id}", "amount": part.debit}
        transfer = Transfer.objects.filter(
            payment_id=payment_id, vendor_id=part.vendor_id, status=Transfer.Status.PAID
        ).first()
        if transfer is not None:
            take = transfer_reclaimable(transfer, debit=part.debit)
            if take > 0:
                line["clawback"] = take
        out.append(line)
    if dispute.commission:
        out.append({"account": "platform_revenue", "amount": dispute.commission})
    return out


# --------------------------------------------------------------------------- payouts


def _payout_currencies(vendor: Vendor) -> list[str]:
    codes = Account.objects.filter(code=f"vendor_payable:{vendor.id}").values_list("currency", flat=True)
    return sorted({c.upper() for c in codes})


def payout_minimum(vendor: Vendor, currency: str) -> int:
    """The least available balance paid out in ``currency``: the vendor's ``payout_minimum`` in
    its default currency, 1 in others (never 0: nothing is paid out of nothing)."""
    minimum = vendor.payout_minimum if currency == vendor.default_currency.upper() else 1
    return max(1, minimum)


def vendor_payout_create(*, vendor_id: str, manual: bool = False) -> list[Payout]:
    """Pay out the vendor's available balance, per currency, when it reaches the minimum (the
    vendor's ``payout_minimum`` in its default currency, 1 in others). ``manual``: an operator's
    "pay out now", which explains a refusal (FundsError) instead of skipping silently."""
    payouts: list[Payout] = []
    with transaction.atomic():
        vendor = vendor_lock(vendor_id)
        if vendor.payouts_held or not can_receive(vendor):
            if manual:
                why = (
                    "payouts are held by an operator"
                    if vendor.payouts_held
                    else "its payouts are not enabled"
                )
                raise FundsError(f"vendor {vendor.id} cannot be paid out: {why}", code="payouts_unavailable")
            return []
        for currency in _payout_currencies(vendor):
            available = balance_get(code=f"vendor_payable:{vendor.id}", currency=currency)
            if available < payout_minimum(vendor, currency):
                continue
            try:
                with transaction.atomic():
                    payout = Payout.objects.create(vendor=vendor, amount=available, currency=currency)
                    _record(
                        "PayoutSent",
                        payout.id,
                        f"{payout.id}:sent",
                        {"vendor": vendor.id, "payout": payout.id, "amount": available, "currency": currency},
                    )
            except InsufficientFunds:  # a refund or dispute took part of it meanwhile: next time
                if manual:
                    raise FundsError(
                        f"vendor {vendor.id}'s balance changed while paying out; try again",
                        code="balance_changed",
                    ) from None
                continue
            durable_enqueue(
                handler="apps.vendors.funds.payout_send",
                kwargs={"payout_id": payout.id},
                idempotency_key=f"payout:{payout.id}:send",
                max_attempts=SEND_MAX_ATTEMPTS,
            )
            payouts.append(payout)
        if payouts:
            recovery_point("payout", *(p.id for p in payouts))
        if manual and not payouts:
            raise FundsError(
                f"vendor {vendor.id} has no available balance at or above its payout minimum",
                code="nothing_to_pay_out",
            )
    return payouts


def payout_send(*, payout_id: str) -> str:
    """Durable task: request a pending payout from Stripe (on the connected account), or resolve
    one whose request was left unanswered; a simulated payout settles at once. Idempotent: Stripe
    sees one payout (key ``<payout>:create``, metadata ``payout: <id>``).

    The same three steps as ``transfer_send``, no transaction open while Stripe is asked: (1) the
    payout records when it was first asked (``sending_since``) and commits; (2) Stripe is asked,
    or, when it was asked before, the payout is looked up by its metadata and the request replayed
    only when Stripe has none; (3) ``payout_requested`` records Stripe's id (a refusal settles it
    failed, the money back in the vendor's balance). An unknown answer raises StillUnknown: the
    payout stays pending without a Stripe id and the durable task retries with backoff."""
    with transaction.atomic():
        payout = payout_lock(payout_id, with_vendor=True)
        if payout.status != Payout.Status.PENDING or payout.stripe_payout_id:
            return "skipped"
        vendor = payout.vendor
        resuming = payout.sending_since is not None
        if not resuming:
            if not _real_account(vendor) or connect_client() is None:
                payout.simulated = True
                payout.save(update_fields=["simulated", "updated_at"])
                return payout_settle(payout_id=payout.id, paid=True)
            payout.sending_since = timezone.now()
            payout.save(update_fields=["sending_since", "updated_at"])
    # (2) Stripe, with no transaction open.
    client = connect_client()
    if client is None:
        raise StillUnknown(f"payout {payout.id} was asked of Stripe, which is no longer configured")
    assert payout.sending_since is not None
    try:
        found = (
            client.payout_find(
                account_id=vendor.stripe_account_id,
                payout=payout.id,
                created_gte=int(payout.sending_since.timestamp()) - 3600,  # clocks differ
            )
            if resuming
            else None
        )
        result = found or client.payout_create(
            account_id=vendor.stripe_account_id,
            amount=payout.amount,
            currency=payout.currency,
            idempotency_key=f"{payout.id}:create",
            metadata={"payout": payout.id, "vendor": vendor.id},
        )
    except ConnectError as exc:
        if exc.refused and exc.operation == "payout_create":
            return payout_settle(payout_id=payout.id, paid=False, message=exc.message)
        raise StillUnknown(f"payout {payout.id}: {exc.message}") from exc
    # (3)
    return payout_requested(payout_id=payout.id, stripe_payout_id=result.id, stripe_status=result.status)


def payout_requested(*, payout_id: str, stripe_payout_id: str, stripe_status: str = "pending") -> str:
    """Record that Stripe has the payout (its id, under the payout's lock); one Stripe already
    says is ``paid`` or ``failed``/``canceled`` is settled so. Stripe's ``payout.paid`` /
    ``payout.failed`` settle the others. Forward only and idempotent."""
    with transaction.atomic():
        payout = payout_lock(payout_id)
        if payout.status != Payout.Status.PENDING:
            return f"stays {payout.status}"
        if not payout.stripe_payout_id:
            payout.stripe_payout_id = stripe_payout_id
            payout.save(update_fields=["stripe_payout_id", "updated_at"])
        if stripe_status == "paid":
            return payout_settle(payout_id=payout.id, paid=True)
        if stripe_status in ("failed", "canceled"):
            return payout_settle(payout_id=payout.id, paid=False, message=f"Stripe says {stripe_status}")
    return "requested"  # Stripe's payout.paid / payout.failed settle it


def payout_settle(*, payout_id: str, paid: bool, message: str = "") -> str:
    """Settle a pending payout (Stripe's payout.paid / payout.failed, or a simulated payout).
    A failed payout's money returns to the vendor's available balance. Idempotent."""
    with transaction.atomic():
        payout = payout_lock(payout_id)
        if payout.status != Payout.Status.PENDING:
            return f"stays {payout.status}"
        payout_to(payout, Payout.Status.PAID if paid else Payout.Status.FAILED)
        payout.failure_message = message[:500]
        if paid:
            payout.arrival_date = timezone.localdate()
        payout.save()
        if not paid:
            _record(
                "PayoutFailed",
                payout.id,
                f"{payout.id}:failed",
                {
                    "vendor": payout.vendor_id,
                    "payout": payout.id,
                    "amount": payout.amount,
                    "currency": payout.currency,
                },
            )
        event_publish(
            type="payout.paid" if paid else "payout.failed",
            object_type="payout",
            object_id=payout.id,
            source_key=f"{payout.id}:{payout.status}",
        )
    return payout.status


def payout_due(schedule: str, *, last: datetime | None, now: datetime) -> bool:
    """Pure: whether a vendor on ``schedule`` (not manual) whose last payout was made at ``last``
    is due another: none yet, or none within its interval (``SCHEDULE_INTERVALS``)."""
    return last is None or now - last >= SCHEDULE_INTERVALS[Vendor.PayoutSchedule(schedule)]


def payouts_due(now=None) -> list[str]:
    """Vendors whose schedule says a payout is due (``payout_due``)."""
    now = now or timezone.now()
    due = []
    vendors = Vendor.objects.filter(
        status=Vendor.Status.ACTIVE, payouts_enabled=True, payouts_held=False
    ).exclude(payout_schedule=Vendor.PayoutSchedule.MANUAL)
    for vendor in vendors:
        last = vendor.payouts.order_by("-created_at").values_list("created_at", flat=True).first()
        if payout_due(vendor.payout_schedule, last=last, now=now):
            due.append(vendor.id)
    return due


def payouts_run() -> int:
    """The periodic job: pay out every vendor that is due. Returns how many payouts it made."""
    made = 0
    for vendor_id in payouts_due():
        try:
            made += len(vendor_payout_create(vendor_id=vendor_id))
        except Exception:  # one vendor's problem must not stop the others
            log.exception("payout for vendor %s failed", vendor_id)
    return made


# --------------------------------------------------------------------------- reconcile


def funds_reconcile(*, now=None) -> int:
    """The periodic job (idempotent): finish what was left unfinished. A transfer, payout or
    reversal still pending or sending ``STRANDED_AFTER`` after it started, with no durable task
    left to finish it (one ran out of attempts, or was lost), gets a new one; running it resolves
    the outcome from Stripe (``transfer_send``, ``payout_send``, ``transfer_reversal_send``).
    Returns how many it queued."""
    now = now or timezone.now()
    cutoff = now - STRANDED_AFTER
    stranded = [
        (
            "apps.vendors.funds.transfer_send",
            "transfer_id",
            Transfer.objects.filter(status=Transfer.Status.SENDING, sending_since__lte=cutoff)
            | Transfer.objects.filter(status=Transfer.Status.PENDING, updated_at__lte=cutoff),
        ),
        (
            "apps.vendors.funds.payout_send",
            "payout_id",
            Payout.objects.filter(status=Payout.Status.PENDING, stripe_payout_id="", updated_at__lte=cutoff),
        ),
        (
            "apps.vendors.funds.transfer_reversal_send",
            "reversal_id",
            TransferReversal.objects.filter(
                status__in=[TransferReversal.Status.PENDING, TransferReversal.Status.SENDING],
                updated_at__lte=cutoff,
            ),
        ),
    ]
    queued = 0
    for handler, arg, rows in stranded:
        for pk in rows.order_by("updated_at").values_list("pk", flat=True)[:500]:
            if durable_live(handler=handler, kwargs={arg: pk}):
                continue
            durable_enqueue(
                handler=handler,
                kwargs={arg: pk},
                idempotency_key=f"reconcile:{pk}:{uuid.uuid4().hex[:12]}",
                max_attempts=SEND_MAX_ATTEMPTS,
            )
            queued += 1
    return queued
