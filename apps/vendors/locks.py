"""The vendors app's row locks, each taken by one helper here, always in this order:

    payment split  ->  vendor  ->  transfer  ->  transfer reversal
                       vendor  ->  payout
                       vendor  ->  invite, dashboard login token

A helper that locks several rows takes them in that order (``transfer_lock(with_vendor=True)``:
the vendor, then the transfer; ``reversal_lock``: the transfer, then the reversal; an invite or a
login token comes with its vendor, locked first); a caller that
needs more rows calls the helpers in that order too, and skips none it does not need (a refund
locks the split, then the payment's transfers, without their vendors). Several transfers are
locked in one statement (a vendor's held ones) or in the split's plan order (a payment's).

The funds flow's hooks run inside payments' transactions (capture, refund, dispute), which hold
the payment's locks first (``apps.payments.locks``): payments' rows come before vendors'.
Every helper must run inside the caller's transaction.
"""

from __future__ import annotations

from typing import TypeVar

from apps.vendors.models import (
    PaymentSplit,
    Payout,
    Transfer,
    TransferReversal,
    Vendor,
    VendorInvite,
    VendorLoginToken,
)

_VendorRow = TypeVar("_VendorRow", Transfer, Payout)
_TokenRow = TypeVar("_TokenRow", VendorInvite, VendorLoginToken)


def split_lock(payment_id: str) -> PaymentSplit | None:
    """The payment's split, or None for a payment without one."""
    return PaymentSplit.objects.select_for_update().filter(payment_id=payment_id).first()


def vendor_lock(vendor_id: str) -> Vendor:
    return Vendor.objects.select_for_update().get(pk=vendor_id)


def _vendor_row_lock(model: type[_VendorRow], pk: str, *, with_vendor: bool) -> _VendorRow:
    """A vendor's transfer or payout; ``with_vendor``: its vendor first (then ``row.vendor`` is
    that locked row)."""
    if not with_vendor:
        return model.objects.select_for_update().get(pk=pk)
    vendor = vendor_lock(model.objects.values_list("vendor_id", flat=True).get(pk=pk))
    row = model.objects.select_for_update().get(pk=pk)
    row.vendor = vendor
    return row


def transfer_lock(transfer_id: str, *, with_vendor: bool = False) -> Transfer:
    """The transfer; ``with_vendor``: its vendor first (then ``transfer.vendor`` is that row)."""
    return _vendor_row_lock(Transfer, transfer_id, with_vendor=with_vendor)


def payment_transfer_lock(payment_id: str, vendor_id: str, *, status: str | None = None) -> Transfer | None:
    """The payment's transfer to the vendor (only if it has ``status``), or None."""
    rows = Transfer.objects.select_for_update().filter(payment_id=payment_id, vendor_id=vendor_id)
    if status is not None:
        rows = rows.filter(status=status)
    return rows.first()


def vendor_transfers_lock(vendor: Vendor, *, status: str) -> list[Transfer]:
    """A locked vendor's transfers in ``status`` (one statement)."""
    return list(Transfer.objects.select_for_update().filter(vendor=vendor, status=status))


def reversal_lock(reversal_id: str) -> tuple[Transfer, TransferReversal]:
    """A reversal and its transfer: the transfer first."""
    transfer = transfer_lock(
        TransferReversal.objects.values_list("transfer_id", flat=True).get(pk=reversal_id)
    )
    return transfer, TransferReversal.objects.select_for_update().get(pk=reversal_id)


def payout_lock(payout_id: str, *, with_vendor: bool = False) -> Payout:
    """The payout; ``with_vendor``: its vendor first (then ``payout.vendor`` is that row)."""
    return _vendor_row_lock(Payout, payout_id, with_vendor=with_vendor)


def _token_lock(model: type[_TokenRow], token_hash: str) -> _TokenRow | None:
    """The row of ``model`` with this token hash and its vendor (the vendor first; ``row.vendor``
    is that locked row), or None for an unknown token."""
    vendor_id = model.objects.filter(token_hash=token_hash).values_list("vendor_id", flat=True).first()
    if vendor_id is None:
        return None
    vendor = vendor_lock(vendor_id)
    row = model.objects.select_for_update().filter(token_hash=token_hash).first()
    if row is not None:
        row.vendor = vendor
    return row


def invite_lock(token_hash: str) -> VendorInvite | None:
    """The invite with this token hash and its vendor (the vendor first; ``invite.vendor`` is that
    row), or None for an unknown token."""
    return _token_lock(VendorInvite, token_hash)


def login_token_lock(token_hash: str) -> VendorLoginToken | None:
    """The dashboard login token with this hash and its vendor (the vendor first; ``row.vendor`` is
    that row), or None for an unknown token."""
    return _token_lock(VendorLoginToken, token_hash)
