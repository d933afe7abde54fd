"""The payment mesh's events and posting rules (registered with the ledger's registry)."""

from __future__ import annotations

from apps.ledger.rules import Line, amount, currency, field, posting_rule, register_event_type, text

for _type in (
    "PaymentIntentCreated",
    "AttemptStarted",
    "AttemptDeclined",
    "AttemptFailed",
    "AttemptUnknown",
    "AttemptRequiresAction",
    "ChargeAuthorized",
    "AuthorizationVoided",
    "PaymentFailed",
    "PaymentCanceled",
    "RefundFailed",
):
    register_event_type(_type)


@posting_rule("ChargeCaptured")
def _charge_captured(payload: dict) -> list[Line]:
    """Dr processor_clearing:<gateway> / Cr the allocations (platform revenue, vendor payables);
    then the processor's fee: Dr processor_fees / Cr clearing."""
    gateway = text(payload, "gateway_account")
    amt, cur = amount(payload), currency(payload)
    clearing = f"processor_clearing:{gateway}"
    lines = [Line(clearing, cur, "D", amt)]
    allocations = field(payload, "allocations")
    if not isinstance(allocations, list) or not allocations:
        from apps.ledger.errors import InvalidPosting

        raise InvalidPosting("allocations must be a non-empty list", param="allocations")
    for alloc in allocations:
        lines.append(Line(text(alloc, "account"), cur, "C", amount(alloc)))
    fee = payload.get("fee", 0)
    if fee:
        fee_amt = amount(payload, "fee")
        lines += [Line("processor_fees", cur, "D", fee_amt), Line(clearing, cur, "C", fee_amt)]
    return lines


@posting_rule("RefundSucceeded")
def _refund_succeeded(payload: dict) -> list[Line]:
    """Money goes back out through the gateway that took it: Dr the allocations being unwound
    (or ``refunds`` when the platform bears it) / Cr processor_clearing:<gateway>."""
    gateway = text(payload, "gateway_account")
    amt, cur = amount(payload), currency(payload)
    lines = []
    allocations = field(payload, "allocations")
    if not isinstance(allocations, list) or not allocations:
        from apps.ledger.errors import InvalidPosting

        raise InvalidPosting("allocations must be a non-empty list", param="allocations")
    for alloc in allocations:
        lines.append(Line(text(alloc, "account"), cur, "D", amount(alloc), allow_negative=True))
    lines.append(Line(f"processor_clearing:{gateway}", cur, "C", amt))
    return lines


@posting_rule("DisputeOpened")
def _dispute_opened(payload: dict) -> list[Line]:
    """The processor takes the disputed amount back: Dr whoever bears it (``disputes`` for the
    platform, or a split payment's vendors and the commission) / Cr processor_clearing:<gateway>.
    A vendor may go negative: it is recovered from its later transfers."""
    gateway = text(payload, "gateway_account")
    amt, cur = amount(payload), currency(payload)
    allocations = field(payload, "allocations")
    if not isinstance(allocations, list) or not allocations:
        from apps.ledger.errors import InvalidPosting

        raise InvalidPosting("allocations must be a non-empty list", param="allocations")
    lines = [Line(text(a, "account"), cur, "D", amount(a), allow_negative=True) for a in allocations]
    return [*lines, Line(f"processor_clearing:{gateway}", cur, "C", amt)]


@posting_rule("DisputeWon")
def _dispute_won(payload: dict) -> list[Line]:
    """The processor returns the amount: the opening's lines, reversed."""
    gateway = text(payload, "gateway_account")
    amt, cur = amount(payload), currency(payload)
    allocations = field(payload, "allocations")
    if not isinstance(allocations, list) or not allocations:
        from apps.ledger.errors import InvalidPosting

        raise InvalidPosting("allocations must be a non-empty list", param="allocations")
    lines = [Line(text(a, "account"), cur, "C", amount(a)) for a in allocations]
    return [Line(f"processor_clearing:{gateway}", cur, "D", amt), *lines]


register_event_type("DisputeLost")


register_event_type("LateAuthorizationFound")
register_event_type("LateAuthorizationVoided")


@posting_rule("LateChargeCaptured")
def _late_charge_captured(payload: dict) -> list[Line]:
    """A gateway captured money on an attempt we had closed; it is refunded automatically, so it
    waits in ``suspense`` meanwhile: Dr processor_clearing:<gateway> / Cr suspense; the fee, which
    the refund does not return: Dr processor_fees / Cr clearing."""
    gateway = text(payload, "gateway_account")
    amt, cur = amount(payload), currency(payload)
    clearing = f"processor_clearing:{gateway}"
    lines = [Line(clearing, cur, "D", amt), Line("suspense", cur, "C", amt)]
    if payload.get("fee", 0):
        fee_amt = amount(payload, "fee")
        lines += [Line("processor_fees", cur, "D", fee_amt), Line(clearing, cur, "C", fee_amt)]
    return lines


@posting_rule("LateChargeRefunded")
def _late_charge_refunded(payload: dict) -> list[Line]:
    """The late charge went back to the customer: Dr suspense / Cr processor_clearing:<gateway>."""
    gateway = text(payload, "gateway_account")
    amt, cur = amount(payload), currency(payload)
    return [Line("suspense", cur, "D", amt), Line(f"processor_clearing:{gateway}", cur, "C", amt)]
