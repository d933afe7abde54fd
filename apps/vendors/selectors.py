"""Reading vendors, commission terms and what a vendor's money is where."""

from __future__ import annotations

from collections.abc import Iterable

from apps.ledger.models import Balance
from apps.ledger.selectors import balance_get
from apps.payments.models import GatewayAccount
from apps.vendors.connect import ConnectClient
from apps.vendors.models import CommissionPolicy, Transfer, Vendor
from apps.vendors.splits import CommissionTerms, VendorTerms, reclaimable


def commission_policy_terms() -> CommissionTerms:
    """The marketplace's default terms (the provisioned policy; 10%, no fixed fee, platform bears
    fees if none was provisioned)."""
    policy = CommissionPolicy.objects.filter(singleton=True).first() or CommissionPolicy()
    return policy.terms()


def vendors_bear_disputes() -> bool:
    """Whether the marketplace's dispute policy puts chargebacks on split payments on their
    vendors (the default) rather than on the platform."""
    policy = CommissionPolicy.objects.filter(singleton=True).first()
    return policy is None or policy.dispute_policy == "vendor"


def vendor_split_terms(vendor_ids: Iterable[str]) -> dict[str, VendorTerms]:
    """The split terms of the vendors among ``vendor_ids`` that exist (one query); pass the
    result to ``splits.split_plan_validate``, which reports the missing ones."""
    ids = {v for v in vendor_ids if isinstance(v, str)}
    return {v.id: v.split_terms() for v in Vendor.objects.filter(id__in=ids)}


# A vendor's money by stage, each a ledger account per currency (ARCHITECTURE section 5):
#   pending   vendor_pending:<id>  captured for the vendor, its transfer not made yet
#   held      vendor_held:<id>     held back (payouts not enabled, or an operator's hold)
#   available vendor_payable:<id>  transferred to its connected account, not yet paid out
BALANCE_ACCOUNTS = {"available": "vendor_payable", "pending": "vendor_pending", "held": "vendor_held"}


def vendor_balances(*, vendor_id: str) -> dict[str, list[dict]]:
    """``{"available": [{"amount", "currency"}], "pending": [...], "held": [...]}`` straight from
    the ledger's balances (lower-case currencies, minor units, zero balances left out)."""
    codes = {f"{kind}:{vendor_id}": stage for stage, kind in BALANCE_ACCOUNTS.items()}
    out: dict[str, list[dict]] = {stage: [] for stage in BALANCE_ACCOUNTS}
    rows = (
        Balance.objects.filter(account__code__in=codes)
        .select_related("account")
        .order_by("account__currency")
    )
    for row in rows:
        if row.balance:
            out[codes[row.account.code]].append(
                {"amount": row.balance, "currency": row.account.currency.lower()}
            )
    return out


# Vendors onboarded while the marketplace had no Stripe keys get a simulated account id.
SIMULATED_ACCOUNT_PREFIX = "acct_sim_"


def is_simulated(vendor: Vendor) -> bool:
    return vendor.stripe_account_id.startswith(SIMULATED_ACCOUNT_PREFIX)


def connect_client() -> ConnectClient | None:
    """A Connect client on the marketplace's enabled ``stripe`` gateway account with a secret key
    (the first by name), or None: Stripe is not configured (onboarding and transfers are simulated)."""
    for account in GatewayAccount.objects.filter(kind=GatewayAccount.Kind.STRIPE, enabled=True).order_by(
        "name"
    ):
        credentials = account.credentials
        if credentials.get("secret_key"):
            return ConnectClient.from_gateway(credentials, account.settings or {})
    return None


# What of a vendor's money is in its connected account, and what can be taken back from there
# (``splits`` section 5): the one place it is worked out, for refunds, disputes opened and
# disputes lost.


def transfer_in_account(transfer: Transfer) -> int:
    """What of this transfer is still in the vendor's connected account: what was sent (its amount
    less what was kept back for the vendor's debts) less what has been reversed since."""
    return transfer.sent - transfer.amount_reversed


def transfer_reclaimable(transfer: Transfer, *, debit: int) -> int:
    """How much of a vendor's ``debit`` for this transfer's payment is taken back from its
    connected account (``splits.reclaimable``): at most what is still there of the transfer and
    at most the vendor's available balance. A transfer still sending counts as arrived (its
    ``TransferPaid`` is still to come)."""
    available = balance_get(code=f"vendor_payable:{transfer.vendor_id}", currency=transfer.currency)
    if transfer.status == Transfer.Status.SENDING:
        available += transfer.sent
    return reclaimable(debit, in_account=transfer_in_account(transfer), available=available)
