"""What to do after a decline: the issuer's advice first, then the tenant's decline table."""

from __future__ import annotations

from collections.abc import Iterable

from apps.payments.gateways.base import Outcome
from apps.payments.models import DeclineRule

Action = DeclineRule.Action

# Stripe's documented decline codes (docs: "Decline codes"), as defaults for the table.
# Hard: the card will not work, retrying anywhere is pointless (and may look like fraud).
HARD_CODES = [
    "lost_card",
    "stolen_card",
    "pickup_card",
    "fraudulent",
    "expired_card",
    "incorrect_number",
    "invalid_account",
    "restricted_card",
    "security_violation",
    "revocation_of_authorization",
    "revocation_of_all_authorizations",
    "stop_payment_order",
    "merchant_blacklist",
    "invalid_cvc",
    "incorrect_cvc",
    "card_not_supported",
    "currency_not_supported",
    "new_account_information_available",
    "invalid_number",
]
# Soft, worth another gateway now (a different acquirer may approve).
FAILOVER_CODES = [
    "generic_decline",
    "do_not_honor",
    "processing_error",
    "issuer_not_available",
    "try_again_later",
    "reenter_transaction",
    "no_action_taken",
    "not_permitted",
    "call_issuer",
    "transaction_not_allowed",
    "service_not_allowed",
    "approve_with_id",
    "card_velocity_exceeded",
]
# Soft, but the same card will fail everywhere right now: wait (dunning retries later).
RETRY_LATER_CODES = ["insufficient_funds", "withdrawal_count_limit_exceeded", "card_velocity_exceeded"]


def default_rules() -> list[tuple[str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str]] = [
        ("*", c, "*", Action.STOP, "hard decline (Stripe)") for c in HARD_CODES
    ]
    rows += [
        ("*", c, "*", Action.FAILOVER, "soft decline: another acquirer may approve")
        for c in FAILOVER_CODES
        if c not in RETRY_LATER_CODES
    ]
    rows += [
        ("*", c, "*", Action.RETRY_LATER, "soft decline: retry the same card later")
        for c in RETRY_LATER_CODES
    ]
    rows += [
        ("*", "*", "do_not_try_again", Action.STOP, "issuer advice"),
        ("*", "*", "try_again_later", Action.RETRY_LATER, "issuer advice"),
        ("*", "*", "confirm_card_data", Action.STOP, "issuer advice: the customer must fix the card data"),
    ]
    return rows


def decline_action(
    *,
    gateway_kind: str,
    outcome: str,
    decline_code: str,
    advice_code: str,
    table: Iterable[DeclineRule] | None = None,
) -> tuple[str, str]:
    """(action, why). The advice code outranks the table; then the most specific table row.
    ``table`` is the whole decline table in its model ordering (e.g. from ``mesh_config()``);
    without it the matching rows are read from the database."""
    if advice_code == "do_not_try_again":
        return Action.STOP, "issuer advised do_not_try_again"
    if table is None:
        rows = list(
            DeclineRule.objects.filter(
                gateway_kind__in=[gateway_kind, "*"],
                code__in=[decline_code or "", "*"],
                advice_code__in=[advice_code or "", "*"],
            )
        )
    else:
        kinds, codes, advice = (gateway_kind, "*"), (decline_code or "", "*"), (advice_code or "", "*")
        rows = [r for r in table if r.gateway_kind in kinds and r.code in codes and r.advice_code in advice]

    def specificity(r: DeclineRule) -> tuple[int, int, int]:
        return (r.code != "*", r.advice_code != "*", r.gateway_kind != "*")

    if advice_code == "try_again_later":
        return Action.RETRY_LATER, "issuer advised try_again_later"
    if rows:
        best = max(rows, key=specificity)
        return best.action, f"decline table: {best}"
    if outcome == Outcome.DECLINED_HARD:
        return Action.STOP, "hard decline"
    return Action.FAILOVER, "soft decline with no table entry"
