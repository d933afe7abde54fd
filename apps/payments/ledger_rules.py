"""The payment mesh's events and posting rules: ``RULES``, registered with the ledger by
``PaymentsConfig.ready()``."""

from __future__ import annotations

from apps.ledger.errors import InvalidPosting
from apps.ledger.rules import Line, RuleSet, amount, currency, field, text

RULES = RuleSet()


def _allocations(payload: dict) -> list:
    allocations = field(payload, "allocations")
    if not isinstance(allocations, list) or not allocations:
        raise InvalidPosting("allocations must be a non-empty list", param="allocations")
    return allocations


RULES.no_posting(
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
)


@RULES.posting("ChargeCaptured")
def _charge_captured(payload: dict) -> list[Line]:
    """Dr processor_clearing:<gateway> / Cr the allocations (platform revenue, vendor payables);
    then the processor's fee: Dr processor_fees / Cr clearing."""
    gateway = text(payload, "gateway_account")
    amt, cur = amount(payload), currency(payload)
    clearing = f"processor_clearing:{gateway}"
    lines = [Line(clearing, cur, "D", amt)]
    allocations = _allocations(payload)
    for alloc in allocations:
        lines.append(Line(text(alloc, "account"), cur, "C", amount(alloc)))
    fee = payload.get("fee", 0)
    if fee:
        fee_amt = amount(payload, "fee")
        lines += [Line("processor_fees", cur, "D", fee_amt), Line(clearing, cur, "C", fee_amt)]
    return lines


@RULES.posting("RefundSucceeded")
def _refund_succeeded(payload: dict) -> list[Line]:
    """Money goes back out through the gateway that took it: Dr the allocations being unwound
    (or ``refunds`` when the platform bears it) / Cr processor_clearing:<gateway>."""
    gateway = text(payload, "gateway_account")
    amt, cur = amount(payload), currency(payload)
    lines = []
    allocations = _allocations(payload)
    for alloc in allocations:
        lines.append(Line(text(alloc, "account"), cur, "D", amount(alloc), allow_negative=True))
    lines.append(Line(f"processor_clearing:{gateway}", cur, "C", amt))
    return lines


@RULES.posting("DisputeOpened")
def _dispute_opened(payload: dict) -> list[Line]:
    """The processor takes the disputed amount back: Dr whoever bears it (``disputes`` for the
    platform, or a split payment's vendors and the commission) / Cr processor_clearing:<gateway>.
    A vendor may go negative: it is recovered from its later transfers."""
    gateway = text(payload, "gateway_account")
    amt, cur = amount(payload), currency(payload)
    allocations = _allocations(payload)
    lines = [Line(text(a, "account"), cur, "D", amount(a), allow_negative=True) for a in allocations]
    return [*lines, Line(f"processor_clearing:{gateway}", cur, "C", amt)]


@RULES.posting("DisputeWon")
def _dispute_won(payload: dict) -> list[Line]:
    """The processor returns the amount: the opening's lines, reversed."""
    gateway = text(payload, "gateway_account")
    amt, cur = amount(payload), currency(payload)
    allocations = _allocations(payload)
    lines = [Line(text(a, "account"), cur, "C", amount(a)) for a in allocations]
    return [Line(f"processor_clearing:{gateway}", cur, "D", amt), *lines]


RULES.no_posting("DisputeLost")


RULES.no_posting("LateAuthorizationFound", "LateAuthorizationVoided")


@RULES.posting("LateChargeCaptured")
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


@RULES.posting("LateChargeRefunded")
def _late_charge_refunded(payload: dict) -> list[Line]:
    """The late charge went back to the customer: Dr suspense / Cr processor_clearing:<gateway>."""
    gateway = text(payload, "gateway_account")
    amt, cur = amount(payload), currency(payload)
    return [Line("suspense", cur, "D", amt), Line(f"processor_clearing:{gateway}", cur, "C", amt)]
