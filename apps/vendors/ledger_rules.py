"""Posting rules of the vendors' funds flow (separate charges and transfers).

A vendor's money moves through three liability accounts (ARCHITECTURE section 5):
``vendor_pending:<v>`` (captured for it, not yet transferred) → ``vendor_held:<v>`` (while it
cannot be paid) → ``vendor_payable:<v>`` (in its connected account: available, until paid out).
The asset ``connected_balances`` is the money sitting in connected accounts; it moves with
transfers (from ``processor_clearing:<gateway>``), reversals and payouts.

``RULES`` is registered with the ledger by ``VendorsConfig.ready()``."""

from __future__ import annotations

from apps.ledger.rules import Line, RuleSet, amount, currency, text

RULES = RuleSet()


def _vendor(payload: dict) -> str:
    return text(payload, "vendor")


@RULES.posting("TransferHeld")
def _transfer_held(payload: dict) -> list[Line]:
    """Dr vendor_pending / Cr vendor_held: the vendor cannot be paid yet."""
    v, amt, cur = _vendor(payload), amount(payload), currency(payload)
    return [Line(f"vendor_pending:{v}", cur, "D", amt), Line(f"vendor_held:{v}", cur, "C", amt)]


@RULES.posting("TransferReleased")
def _transfer_released(payload: dict) -> list[Line]:
    """Dr vendor_held / Cr vendor_pending: the vendor can be paid; the transfer goes out next."""
    v, amt, cur = _vendor(payload), amount(payload), currency(payload)
    return [Line(f"vendor_held:{v}", cur, "D", amt), Line(f"vendor_pending:{v}", cur, "C", amt)]


@RULES.posting("TransferPaid")
def _transfer_paid(payload: dict) -> list[Line]:
    """The vendor's part becomes available: Dr vendor_pending / Cr vendor_payable (amount); the
    money moves to its connected account: Dr connected_balances / Cr processor_clearing:<gateway>
    (``sent``: the amount less what was kept back to cover a negative balance)."""
    v, amt, cur = _vendor(payload), amount(payload), currency(payload)
    lines = [Line(f"vendor_pending:{v}", cur, "D", amt), Line(f"vendor_payable:{v}", cur, "C", amt)]
    sent = payload.get("sent", amt)
    if sent:
        sent = amount(payload, "sent")
        clearing = f"processor_clearing:{text(payload, 'gateway_account')}"
        lines += [Line("connected_balances", cur, "D", sent), Line(clearing, cur, "C", sent)]
    return lines


@RULES.posting("TransferReversed")
def _transfer_reversed(payload: dict) -> list[Line]:
    """Money taken back from a connected account (a refund already debited the vendor):
    Dr processor_clearing:<gateway> / Cr connected_balances."""
    amt, cur = amount(payload), currency(payload)
    clearing = f"processor_clearing:{text(payload, 'gateway_account')}"
    return [Line(clearing, cur, "D", amt), Line("connected_balances", cur, "C", amt)]


@RULES.posting("PayoutSent")
def _payout_sent(payload: dict) -> list[Line]:
    """Paid out to the vendor's bank: Dr vendor_payable (protected: never overdrawn by a payout)
    / Cr connected_balances."""
    v, amt, cur = _vendor(payload), amount(payload), currency(payload)
    return [Line(f"vendor_payable:{v}", cur, "D", amt), Line("connected_balances", cur, "C", amt)]


@RULES.posting("PayoutFailed")
def _payout_failed(payload: dict) -> list[Line]:
    """The bank refused it; the money is back in the connected account."""
    v, amt, cur = _vendor(payload), amount(payload), currency(payload)
    return [Line("connected_balances", cur, "D", amt), Line(f"vendor_payable:{v}", cur, "C", amt)]
