"""Reading vendors and commission terms."""

from __future__ import annotations

from collections.abc import Iterable

from apps.payments.gateways.base import GatewayConfig
from apps.payments.gateways.connect import ConnectRail
from apps.payments.gateways.registry import connect_kinds, connect_rail_for
from apps.payments.models import GatewayAccount
from apps.vendors.models import CommissionPolicy, Vendor
from apps.vendors.splits import CommissionTerms, VendorTerms


def commission_policy_terms() -> CommissionTerms:
    """The marketplace's default terms (the provisioned policy; 10%, no fixed fee, platform bears
    fees if none was provisioned)."""
    policy = CommissionPolicy.objects.filter(singleton=True).first() or CommissionPolicy()
    return policy.terms()


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
    from apps.ledger.models import Balance

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


def connect_client() -> ConnectRail | None:
    """The Connect rail of the marketplace's first enabled gateway account (by name) whose processor
    has one and that is configured for it (Stripe: a secret key), or None: no Connect is configured
    (onboarding and transfers are simulated)."""
    accounts = GatewayAccount.objects.filter(kind__in=connect_kinds(), enabled=True).order_by("name")
    for account in accounts:
        config = GatewayConfig(
            account_id=account.name, credentials=account.credentials, settings=account.settings or {}
        )
        rail = connect_rail_for(account.kind, config)
        if rail is not None:
            return rail
    return None
