"""The chart of accounts (ARCHITECTURE section 5). A marketplace's accounts are rows created
from these kinds, one per code and currency; parameterised kinds take a suffix
(``processor_clearing:primary``, ``vendor_payable:ven_123``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from apps.ledger.errors import UnknownAccount
from apps.ledger.models import AccountType, Side


@dataclass(frozen=True)
class AccountKind:
    kind: str
    type: str
    normal_side: str
    allow_negative: bool
    parameterised: bool
    description: str


CHART: dict[str, AccountKind] = {
    k.kind: k
    for k in [
        AccountKind(
            "processor_clearing",
            AccountType.ASSET,
            Side.DEBIT,
            True,
            True,
            "What a processor owes us; may go negative until a funding move.",
        ),
        AccountKind("processor_fees", AccountType.EXPENSE, Side.DEBIT, True, False, "Processing fees."),
        AccountKind(
            "vendor_payable",
            AccountType.LIABILITY,
            Side.CREDIT,
            False,
            True,
            "A vendor's available money: transferred to its connected account, not yet paid out. "
            "Protected: payouts cannot overdraw it (refunds after a payout may, and are recovered).",
        ),
        AccountKind(
            "vendor_pending",
            AccountType.LIABILITY,
            Side.CREDIT,
            True,
            True,
            "A vendor's part of captured payments, not yet transferred (refunds may take it negative).",
        ),
        AccountKind(
            "vendor_held",
            AccountType.LIABILITY,
            Side.CREDIT,
            True,
            True,
            "A vendor's money held back: its payouts are not enabled, or an operator holds them.",
        ),
        AccountKind(
            "connected_balances",
            AccountType.ASSET,
            Side.DEBIT,
            True,
            False,
            "Money transferred to vendors' connected accounts and not yet paid out to their banks.",
        ),
        AccountKind("platform_revenue", AccountType.REVENUE, Side.CREDIT, True, False, "Commission."),
        AccountKind("refunds", AccountType.EXPENSE, Side.DEBIT, True, False, "Refunds we bear."),
        AccountKind("disputes", AccountType.EXPENSE, Side.DEBIT, True, False, "Disputes we bear."),
        AccountKind(
            "fx",
            AccountType.EQUITY,
            Side.CREDIT,
            True,
            False,
            "Currency conversion; holds one leg in each currency.",
        ),
        AccountKind(
            "suspense",
            AccountType.ASSET,
            Side.DEBIT,
            True,
            False,
            "Unexplained money awaiting an operator's decision.",
        ),
    ]
}

# Accounts created with every marketplace (in its default currency); others appear on first use.
FIXED_KINDS = [k for k, v in CHART.items() if not v.parameterised]

_SUFFIX = re.compile(r"^[A-Za-z0-9_.-]{1,150}$")


def account_kind(code: str) -> AccountKind:
    """The kind of ``code``; raises UnknownAccount if the code is not in the chart."""
    kind, sep, suffix = code.partition(":")
    spec = CHART.get(kind)
    if spec is None:
        raise UnknownAccount(f"unknown account {code!r}: not in the chart of accounts", param="account")
    if spec.parameterised and not (sep and _SUFFIX.match(suffix)):
        raise UnknownAccount(f"account {code!r} needs a suffix, e.g. {kind}:<id>", param="account")
    if not spec.parameterised and sep:
        raise UnknownAccount(f"account {kind!r} takes no suffix (got {code!r})", param="account")
    return spec
