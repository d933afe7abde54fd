"""The vendors app's state machines (``apps.core.statemachine``): vendors, transfers, transfer
reversals and payouts. An illegal move raises ``IllegalTransition`` and changes nothing; services
move a row only through its ``<model>_to``. Which vendors can be paid is decided here too."""

from __future__ import annotations

from apps.core.statemachine import IllegalTransition, StateMachine
from apps.vendors.models import Payout, Transfer, TransferReversal, Vendor

__all__ = [
    "PAYOUT",
    "REVERSAL",
    "TRANSFER",
    "VENDOR",
    "IllegalTransition",
    "can_receive",
    "payout_to",
    "reversal_to",
    "transfer_to",
    "vendor_reenabled_status",
    "vendor_to",
]

VS, TS, RS, PS = Vendor.Status, Transfer.Status, TransferReversal.Status, Payout.Status

# Stripe's news about the connected account moves a vendor between onboarding, active and
# restricted (``connect.account_status``; the same news again leaves it where it is); only an
# operator disables a vendor, and re-enabling it puts it back by its payouts
# (``vendor_reenabled_status``). Stripe's news does not move a disabled vendor.
_STRIPE_SAYS = {VS.ONBOARDING, VS.ACTIVE, VS.RESTRICTED}
VENDOR = StateMachine(
    {
        VS.INVITED: {*_STRIPE_SAYS, VS.DISABLED},
        VS.ONBOARDING: {*_STRIPE_SAYS, VS.DISABLED},
        VS.ACTIVE: {*_STRIPE_SAYS, VS.DISABLED},
        VS.RESTRICTED: {*_STRIPE_SAYS, VS.DISABLED},
        VS.DISABLED: {VS.DISABLED, VS.ACTIVE, VS.ONBOARDING},
    },
    states=VS.values,
)

# pending -> sending -> paid | failed (Stripe's answer); pending -> paid when nothing goes to
# Stripe (a simulated account, or all of it kept back for the vendor's debts); pending <-> held
# while the vendor cannot be paid; refunded to nothing before it went out: canceled.
TRANSFER = StateMachine(
    {
        TS.PENDING: {TS.HELD, TS.SENDING, TS.PAID, TS.CANCELED},
        TS.HELD: {TS.PENDING, TS.CANCELED},
        TS.SENDING: {TS.PAID, TS.FAILED},
        TS.FAILED: {TS.CANCELED},
        TS.PAID: set(),
        TS.CANCELED: set(),
    },
    states=TS.values,
)

# pending -> sending -> succeeded | failed; a simulated transfer's reversal succeeds at once; one
# whose transfer never reached the connected account is canceled.
REVERSAL = StateMachine(
    {
        RS.PENDING: {RS.SENDING, RS.SUCCEEDED, RS.CANCELED},
        RS.SENDING: {RS.SUCCEEDED, RS.FAILED},
        RS.SUCCEEDED: set(),
        RS.FAILED: set(),
        RS.CANCELED: set(),
    },
    states=RS.values,
)

# pending -> paid | failed, as Stripe settles it (a simulated payout at once).
PAYOUT = StateMachine({PS.PENDING: {PS.PAID, PS.FAILED}, PS.PAID: set(), PS.FAILED: set()}, states=PS.values)


def vendor_to(vendor: Vendor, target: str) -> None:
    VENDOR.advance(vendor, target)


def transfer_to(transfer: Transfer, target: str) -> None:
    TRANSFER.advance(transfer, target)


def reversal_to(reversal: TransferReversal, target: str) -> None:
    REVERSAL.advance(reversal, target)


def payout_to(payout: Payout, target: str) -> None:
    PAYOUT.advance(payout, target)


def can_receive(vendor: Vendor) -> bool:
    """Transfers and payouts go to active vendors whose payouts are enabled; others are held."""
    return vendor.status == VS.ACTIVE and vendor.payouts_enabled


def vendor_reenabled_status(vendor: Vendor) -> str:
    """The status a disabled vendor gets back when an operator enables it again."""
    return VS.ACTIVE if vendor.payouts_enabled else VS.ONBOARDING
