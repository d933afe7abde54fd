"""What must hold after a seed has run to quiescence, checked against the processor's own records
(the simulator's charges and refunds), not against what our books say about themselves.

Each violation is ``{"seed", "invariant", "payment", "details"}`` with the payment named by its
order (``o3.p1``: order 3, its first payment), so that a replay names the same thing.

- ``at_most_one_kept_charge``: per order (one customer's purchase, however many payments retries
  created), at most one charge is kept at the processor: captured and not fully refunded, or
  authorised and not voided. Charges refunded or voided automatically count as not kept (and as
  ``auto_refunded_late_charges``).
- ``hard_decline_not_retried``: no new attempt after a hard decline (checked as calls happen).
- ``rows_match_processor``: per payment, the amounts captured and refunded at the processor equal
  our attempts' and succeeded refunds' amounts; each charge's state agrees with its attempt's.
- ``ledger_matches_processor``: per payment, what ``processor_clearing`` holds for it in the
  ledger equals what the processor owes for it (captured - refunded - fees).
- ``final_or_waiting``: every payment is final or legitimately waiting for the customer or the
  merchant (requires_action, requires_capture, requires_confirmation); no attempt is pending or
  unknown; no refund is pending.
- ``nothing_stuck``: no durable task is pending, leased or given up; no processor webhook is left
  unapplied or in conflict with our records.
- ``ledger_verify``: ``ledger verify`` (chain, seals, double entry, postings, balances) is clean.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Protocol

from django.db.models import Sum

from apps.chaos.result import SeedResult
from apps.core.models import DurableTask
from apps.ledger.integrity import ledger_seal, ledger_verify
from apps.ledger.models import Entry
from apps.payments.gateways.base import GatewayConfig
from apps.payments.gateways.simulator import SimulatorGateway
from apps.payments.models import (
    InboundEvent,
    LateCharge,
    PaymentAttempt,
    PaymentIntent,
    Refund,
    SimulatorCharge,
)


class Run(Protocol):
    """What the check needs of a seed's run (``harness.Run``): its labels and the violations seen
    while it ran."""

    live_violations: list[dict]

    def label(self, attempt_id: str) -> str: ...
    def payment_label(self, payment_id: str) -> str: ...


AS = PaymentAttempt.Status
FINAL_OR_WAITING = {
    "succeeded",
    "failed",
    "canceled",
    "requires_action",
    "requires_capture",
    "requires_confirmation",
}
# Which of our attempt states agree with a charge's state at the processor.
AGREES = {
    "captured": {AS.CAPTURED},
    "authorized": {AS.AUTHORIZED},
    "canceled": {AS.CANCELED, AS.FAILED, AS.DECLINED},
}


def kept(charge: SimulatorCharge) -> bool:
    if charge.status == "captured":
        return charge.amount_captured - charge.amount_refunded > 0
    return charge.status == "authorized"


def check(run: Run, result: SeedResult) -> None:
    """Fill ``result`` with the seed's violations and counts. Reads only (plus sealing the ledger)."""
    seed = result.seed
    violations = result.violations

    def add(invariant: str, payment: str, details: str) -> None:
        details = _scrub(run, details)
        violations.append({"seed": seed, "invariant": invariant, "payment": payment, "details": details})

    for v in run.live_violations:
        add(v["invariant"], v["payment"], v["details"])

    payments = list(PaymentIntent.objects.order_by("created_at"))
    charges = list(SimulatorCharge.objects.order_by("created_at", "id"))
    by_payment: dict[str, list[SimulatorCharge]] = defaultdict(list)
    for charge in charges:
        by_payment[charge.attempt_id.rpartition("_")[0]].append(charge)
    result.payments, result.charges = len(payments), len(charges)
    label = {p.id: run.payment_label(p.id) for p in payments}

    # at most one kept charge per order
    per_order: dict[str, list[tuple[str, SimulatorCharge]]] = defaultdict(list)
    for p in payments:
        order = label[p.id].split(".")[0]
        per_order[order] += [(p.id, c) for c in by_payment.get(p.id, [])]
    # Money a gateway took on an attempt we had closed: reversed automatically (LateCharge), never
    # kept. A reversed one is counted and left out of the row checks (the ledger check keeps it).
    late = {lc.attempt_id: lc for lc in LateCharge.objects.all()}
    result.auto_refunded_late_charges = sum(
        1 for lc in late.values() if lc.status == LateCharge.Status.REVERSED
    )
    for lc in late.values():
        if lc.status != LateCharge.Status.REVERSED:
            add(
                "late_charge_reversed",
                run.payment_label(lc.intent_id),
                f"late charge on {run.label(lc.attempt_id)} is {lc.status}",
            )
    for order, pairs in sorted(per_order.items()):
        kept_ones = [(pid, c) for pid, c in pairs if kept(c)]
        if len(kept_ones) > 1:
            result.double_charges += len(kept_ones) - 1
            where = ", ".join(
                f"{run.label(c.attempt_id)} {c.status} {c.amount_captured - c.amount_refunded or c.amount}"
                for _, c in kept_ones
            )
            add("at_most_one_kept_charge", order, f"{len(kept_ones)} charges kept at the processor: {where}")

    attempts = defaultdict(list)
    for a in PaymentAttempt.objects.order_by("intent_id", "number"):
        attempts[a.intent_id].append(a)
    refunds = defaultdict(list)
    for r in Refund.objects.order_by("created_at"):
        refunds[r.intent_id].append(r)
    clearing = _clearing_by_payment()
    fee = SimulatorGateway(GatewayConfig(account_id="-")).fee_for

    for p in payments:
        name = label[p.id]
        ours = {a.id: a for a in attempts[p.id]}
        theirs = by_payment.get(p.id, [])
        reversed_late = [
            c
            for c in theirs
            if c.attempt_id in late and late[c.attempt_id].status == LateCharge.Status.REVERSED
        ]
        captured_there = sum(c.amount_captured for c in theirs if c not in reversed_late)
        refunded_there = sum(c.amount_refunded for c in theirs if c not in reversed_late)
        captured_here = sum(a.amount_captured for a in ours.values() if a.status == AS.CAPTURED)
        refunded_here = sum(r.amount for r in refunds[p.id] if r.status == Refund.Status.SUCCEEDED)
        if (captured_there, refunded_there) != (captured_here, refunded_here):
            add(
                "rows_match_processor",
                name,
                f"processor captured {captured_there} refunded {refunded_there}; "
                f"our rows captured {captured_here} refunded {refunded_here} (payment {p.status})",
            )
        for c in theirs:
            if c in reversed_late:
                continue
            mine = ours.get(c.attempt_id)
            if mine is None or mine.status not in AGREES[c.status]:
                add(
                    "rows_match_processor",
                    name,
                    f"{run.label(c.attempt_id)} is {c.status} at the processor but "
                    f"{mine.status if mine else 'missing'} here",
                )
        owed = sum(
            c.amount_captured
            - c.amount_refunded
            - (fee(c.amount_captured, c.currency) if c.amount_captured else 0)
            for c in theirs
        )
        if owed != clearing.get(p.id, 0):
            add(
                "ledger_matches_processor",
                name,
                f"the processor owes {owed} for it; processor_clearing holds {clearing.get(p.id, 0)}",
            )
        if p.status not in FINAL_OR_WAITING:
            add("final_or_waiting", name, f"payment is {p.status}")
        for a in ours.values():
            if a.status in (AS.PENDING, AS.UNKNOWN):
                add("final_or_waiting", name, f"{run.label(a.id)} is {a.status}")
        for r in refunds[p.id]:
            if r.status == Refund.Status.PENDING:
                add("final_or_waiting", name, f"a refund of {r.amount} is pending")

    stuck_tasks = list(
        DurableTask.objects.exclude(state=DurableTask.State.DONE)
        .order_by("created_at")
        .values_list("handler", "state", "kwargs", "last_error")
    )
    for handler, state, kwargs, error in stuck_tasks:
        subject = next(iter(kwargs.values()), "") if kwargs else ""
        where = _label_for(run, str(subject))
        add("nothing_stuck", where, f"durable task {handler.rsplit('.', 1)[-1]} is {state}: {error[:160]}")
    unapplied = list(
        InboundEvent.objects.exclude(state=InboundEvent.State.PROCESSED).order_by("received_at", "id")
    )
    for event in unapplied:
        obj = event.payload["data"]["object"]
        attempt_id = (obj.get("metadata") or {}).get("attempt_id", "")
        add(
            "nothing_stuck",
            run.label(attempt_id).rsplit(".", 1)[0] if attempt_id else "-",
            f"webhook {event.type} is {event.state}: {event.last_error[:200]}",
        )
    result.stuck = len(stuck_tasks) + len(unapplied)

    ledger_seal()
    report = ledger_verify()
    result.ledger_verified = report.ok
    for problem in report.problems[:5]:
        add("ledger_verify", "-", problem[:300])
    violations.sort(key=lambda v: (v["invariant"], v["payment"], v["details"]))


_IDS = re.compile(r"\b(pay_[A-Za-z0-9]+(?:_\d+)?|re_[A-Za-z0-9]+|sim_ch_[0-9a-f]+|req_[0-9a-f]+)\b")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def _scrub(run: Run, text: str) -> str:
    """Random ids in a message become the names a replay gives them (``o2.p1.a2``)."""

    def name(match: re.Match) -> str:
        found = match.group(1)
        if found.startswith("pay_"):
            return run.label(found) if found.count("_") >= 2 else run.payment_label(found)
        return found.split("_")[0] + ("_ch" if found.startswith("sim_ch_") else "") + "_*"

    return _UUID.sub("*", _IDS.sub(name, text))


def _label_for(run: Run, subject: str) -> str:
    if subject.startswith("pay_"):
        return run.label(subject if subject.count("_") >= 2 else f"{subject}_0").rsplit(".", 1)[0]
    if subject.startswith("re_"):
        refund = Refund.objects.filter(pk=subject).first()
        return run.payment_label(refund.intent_id) if refund else "-"
    return "-"


def _clearing_by_payment() -> dict[str, int]:
    """Debits minus credits on every ``processor_clearing`` account, per payment (the stream of the
    events that posted them)."""
    rows = (
        Entry.objects.filter(account__kind="processor_clearing")
        .values("event__stream", "side")
        .annotate(total=Sum("amount"))
    )
    out: dict[str, int] = defaultdict(int)
    for row in rows:
        out[row["event__stream"]] += row["total"] if row["side"] == "D" else -row["total"]
    return dict(out)
