"""Reading vendors, their transfers, payouts and balances, commission terms and payments' splits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from apps.core.queries import filter_given
from apps.ledger.models import Balance
from apps.ledger.selectors import balance_get
from apps.payments.gateways.base import GatewayConfig
from apps.payments.gateways.connect import ConnectRail
from apps.payments.gateways.registry import connect_kinds, connect_rail_for
from apps.payments.models import GatewayAccount
from apps.vendors.connect import requirements_in_words
from apps.vendors.models import CommissionPolicy, PaymentSplit, Payout, Transfer, Vendor
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


# --------------------------------------------------------------------------- vendors, transfers, payouts
# The lists return unevaluated querysets (the API's pagination orders and slices them).


def vendors_query(*, status: str | None = None, email: str | None = None) -> QuerySet[Vendor]:
    return filter_given(Vendor.objects.all(), status=status, email__iexact=email)


def vendor_get(*, vendor_id: str) -> Vendor | None:
    return Vendor.objects.filter(pk=vendor_id).first()


def vendor_business_details(vendor: Vendor) -> dict[str, str]:
    """The onboarding form's fields as the vendor last entered them (``metadata["business"]``,
    see ``services.vendor_business_details_record``), what we know of the vendor where it has not
    entered them yet."""
    business = (vendor.metadata or {}).get("business") or {}
    return {
        "business_name": business.get("name") or vendor.name,
        "business_type": business.get("type") or "individual",
        "country": vendor.country,
        "support_email": business.get("support_email") or vendor.email,
        "support_phone": business.get("support_phone") or "",
    }


def vendor_requirements(vendor: Vendor) -> dict[str, Any]:
    """What Stripe still needs from the vendor (``Vendor.requirements``, as Stripe sent it) with
    ``in_words``: the same in plain-word lines."""
    return {**(vendor.requirements or {}), "in_words": requirements_in_words(vendor.requirements)}


def transfers_query(*, vendor: str | None = None, payment: str | None = None) -> QuerySet[Transfer]:
    return filter_given(Transfer.objects.all(), vendor_id=vendor, payment_id=payment)


def transfer_get(*, transfer_id: str) -> Transfer | None:
    return Transfer.objects.filter(pk=transfer_id).first()


def payouts_query(*, vendor: str | None = None, status: str | None = None) -> QuerySet[Payout]:
    return filter_given(Payout.objects.all(), vendor_id=vendor, status=status)


def payout_get(*, payout_id: str) -> Payout | None:
    return Payout.objects.filter(pk=payout_id).first()


def payouts_in_order(*, payout_ids: list[str]) -> list[Payout]:
    """The payouts among ``payout_ids`` that exist, in the order of ``payout_ids``."""
    order = {payout_id: i for i, payout_id in enumerate(payout_ids)}
    return sorted(Payout.objects.filter(pk__in=order), key=lambda p: order[p.pk])


# --------------------------------------------------------------------------- payments' splits


def payment_split_lines(*, payment_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Per payment (of those among ``payment_ids`` with a split plan; one query): its plan's
    lines, in order, each ``{"vendor", "amount", "share", "planned", "commission", "fee", "net"}``;
    ``amount`` or ``share`` as the plan gave it, ``commission``, ``fee`` and ``net`` the vendor's
    allocation once the payment is captured (None before)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for split in PaymentSplit.objects.filter(payment_id__in=set(payment_ids)):
        parts = {p["vendor"]: p for p in (split.allocation or {}).get("parts", [])}
        lines = []
        for line in split.plan["lines"]:
            part = parts.get(line["vendor"])
            lines.append(
                {
                    "vendor": line["vendor"],
                    "amount": line.get("amount"),
                    "share": line.get("share"),
                    "planned": line["planned"],
                    "commission": part["commission"] if part else None,
                    "fee": part["fee"] if part else None,
                    "net": part["net"] if part else None,
                }
            )
        out[split.payment_id] = lines
    return out
