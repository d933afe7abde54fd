"""Stripe's objects as ours: the one place a PaymentIntent (or a refund's status) is translated,
for the adapter's calls (``gateway.py``) and for the webhooks (``webhooks.py``) alike.

- ``succeeded`` -> SUCCEEDED/CAPTURED, ``requires_capture`` -> SUCCEEDED/AUTHORIZED,
  ``requires_action`` -> REQUIRES_ACTION, ``processing`` -> UNKNOWN (the charge may still land),
  ``requires_payment_method`` -> a decline (``decline_outcome``), ``requires_confirmation`` ->
  GATEWAY_ERROR (never confirmed: nothing charged).
- ``canceled`` is a void, never a successful payment: GATEWAY_ERROR/CANCELED (nothing was charged
  and nothing will be), except as the answer to our own ``cancel``, which it completes:
  SUCCEEDED/CANCELED (what ``payments`` checks before it records a void).

Amounts: a partial capture releases the rest as a refund of the uncaptured amount, so the
charge's ``amount_refunded`` includes it; ``amount_refunded`` here counts only refunds of captured
money. The fee comes from the charge's balance transaction when Stripe reports it (0 otherwise).
"""

from __future__ import annotations

from typing import Any

from apps.payments.gateways.base import (
    AUTHENTICATION_FAILED,
    CardInfo,
    GatewayResult,
    GatewayStatus,
    Outcome,
    SavedMethod,
)

# Stripe's documented decline codes (docs.stripe.com/declines/codes) after which the same card
# will not be approved anywhere: lost, stolen, closed or blocked cards, fraud, wrong card data.
# Every other code (insufficient_funds, do_not_honor, generic_decline, processing_error, ...) is
# soft. The advice code, when Stripe sends one, outranks this table.
HARD_DECLINE_CODES = frozenset(
    {
        "card_not_supported",
        "currency_not_supported",
        "do_not_try_again",
        "expired_card",
        "fraudulent",
        "incorrect_cvc",
        "incorrect_number",
        "incorrect_pin",
        "invalid_account",
        "invalid_cvc",
        "invalid_expiry_month",
        "invalid_expiry_year",
        "invalid_number",
        "invalid_pin",
        "lost_card",
        "merchant_blacklist",
        "new_account_information_available",
        "pickup_card",
        "pin_try_exceeded",
        "restricted_card",
        "revocation_of_all_authorizations",
        "revocation_of_authorization",
        "security_violation",
        "stolen_card",
        "stop_payment_order",
        "testmode_decline",
    }
)

_INTENT_STATUS = {
    "succeeded": GatewayStatus.CAPTURED,
    "requires_capture": GatewayStatus.AUTHORIZED,
    "requires_action": GatewayStatus.REQUIRES_ACTION,
    "requires_payment_method": GatewayStatus.DECLINED,  # confirmed and failed (or 3DS failed)
    "canceled": GatewayStatus.CANCELED,
    "processing": GatewayStatus.UNKNOWN,
    "requires_confirmation": GatewayStatus.ERROR,  # never confirmed: nothing charged
}


def decline_outcome(decline_code: str | None, advice_code: str | None) -> Outcome:
    """DECLINED_HARD or DECLINED_SOFT for a Stripe decline; the issuer's advice code wins."""
    if advice_code == "do_not_try_again":
        return Outcome.DECLINED_HARD
    if advice_code == "try_again_later":
        return Outcome.DECLINED_SOFT
    return Outcome.DECLINED_HARD if decline_code in HARD_DECLINE_CODES else Outcome.DECLINED_SOFT


def split_reference(reference: str) -> tuple[str | None, str]:
    """``"acct_1/pi_2"`` -> ``("acct_1", "pi_2")``; ``"pi_2"`` -> ``(None, "pi_2")``."""
    account, sep, intent_id = reference.rpartition("/")
    return (account or None) if sep else None, intent_id


def qualified_reference(intent_id: str | None, account: str | None) -> str | None:
    """Our reference for a PaymentIntent: ``acct_.../pi_...`` on a connected account, else its id."""
    if intent_id is None:
        return None
    return f"{account}/{intent_id}" if account else intent_id


def refund_settled(status: str | None) -> bool | None:
    """A Stripe refund's status as settled: True (succeeded, or pending: under way), False (failed,
    canceled), None (not settled yet: requires_action)."""
    return {"succeeded": True, "pending": True, "failed": False, "canceled": False}.get(status or "")


def expandable_id(value: Any) -> str | None:
    """An expandable field: the id whether Stripe sent the id or the expanded object."""
    if isinstance(value, dict):
        return value.get("id")
    return value if isinstance(value, str) else None


def metadata_query(key: str, value: str) -> str:
    """Stripe Search's query for the objects whose ``metadata[key]`` is ``value``, quoted as its
    query language wants (backslashes and single quotes escaped)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"metadata['{key}']:'{escaped}'"


def metadata_matches(page: dict, key: str, value: str) -> list[dict]:
    """The objects of a list or Search ``page`` whose ``metadata[key]`` is exactly ``value``, in
    the page's order (a Search answer is checked, never trusted as it is)."""
    return [obj for obj in page.get("data") or [] if (obj.get("metadata") or {}).get(key) == value]


def charge_amounts(charge: dict | None) -> tuple[int, int, int]:
    """(captured, refunded of captured money, fee) of a charge as Stripe returned it."""
    if not charge:
        return 0, 0, 0
    amount = int(charge.get("amount") or 0)
    if not charge.get("captured"):
        return 0, 0, 0
    if charge.get("amount_captured") is not None:
        captured = int(charge["amount_captured"])
    else:
        # localstripe has no amount_captured: the release of a partial capture is the one refund
        # we did not create (ours carry metadata.refund_id).
        refunds = (charge.get("refunds") or {}).get("data") or []
        released = sum(
            int(r.get("amount") or 0) for r in refunds if "refund_id" not in (r.get("metadata") or {})
        )
        captured = amount - released
    refunded = max(0, int(charge.get("amount_refunded") or 0) - (amount - captured))
    txn = charge.get("balance_transaction")
    fee = int(txn.get("fee") or 0) if isinstance(txn, dict) else 0
    return captured, refunded, fee


def trimmed(intent: dict) -> dict:
    error = intent.get("last_payment_error") or {}
    raw: dict[str, Any] = {"id": intent.get("id"), "status": intent.get("status")}
    if intent.get("latest_charge"):
        raw["latest_charge"] = expandable_id(intent["latest_charge"])
    if error:
        raw["last_payment_error"] = {
            k: error.get(k) for k in ("code", "decline_code", "advice_code") if error.get(k)
        }
    if intent.get("next_action"):
        raw["next_action"] = {"type": intent["next_action"].get("type")}
    return raw


# Stripe's error code of a PaymentIntent whose customer failed 3-D Secure (``last_payment_error``).
AUTHENTICATION_FAILURE = "payment_intent_authentication_failure"


def intent_result(intent: dict, *, account: str | None, operation: str) -> GatewayResult:
    """A PaymentIntent as our result: the one translation, for the adapter's calls (``operation``
    is the call) and for the webhooks (``"webhook <event type>"``). ``account`` is the connected
    account holding it, if any (the reference is then ``acct_.../pi_...``).

    Amounts come from the expanded ``latest_charge`` when there is one (a webhook carries only its
    id: then what the PaymentIntent received, or the capturable amount it holds).
    """
    stripe_status = intent.get("status") or ""
    status = _INTENT_STATUS.get(stripe_status, GatewayStatus.UNKNOWN)
    charge = intent.get("latest_charge") if isinstance(intent.get("latest_charge"), dict) else None
    captured, refunded, fee = charge_amounts(charge)
    amount = int(intent.get("amount") or 0)
    if status == GatewayStatus.CAPTURED:
        authorized = amount
        captured = captured or int(intent.get("amount_received") or 0)
    elif status == GatewayStatus.AUTHORIZED:
        authorized = int(intent.get("amount_capturable") or 0) or amount
    else:
        authorized = 0
    error = intent.get("last_payment_error") or {}
    decline_code = advice_code = None
    if status in (GatewayStatus.AUTHORIZED, GatewayStatus.CAPTURED):
        outcome = Outcome.SUCCEEDED
    elif status == GatewayStatus.CANCELED:
        # A void: never a successful payment. Only our own cancel is completed by it.
        outcome = Outcome.SUCCEEDED if operation == "cancel" else Outcome.GATEWAY_ERROR
    elif status == GatewayStatus.REQUIRES_ACTION:
        outcome = Outcome.REQUIRES_ACTION
    elif status == GatewayStatus.DECLINED:
        decline_code = error.get("decline_code") or error.get("code") or "card_declined"
        if decline_code == AUTHENTICATION_FAILURE:  # the customer failed 3-D Secure
            decline_code = AUTHENTICATION_FAILED
        advice_code = error.get("advice_code")
        outcome = decline_outcome(decline_code, advice_code)
    elif status == GatewayStatus.ERROR:
        outcome = Outcome.GATEWAY_ERROR
    else:
        outcome = Outcome.UNKNOWN
    message = f"{operation}: PaymentIntent {stripe_status}"
    if status == GatewayStatus.CANCELED and intent.get("cancellation_reason"):
        message += f" ({intent['cancellation_reason']})"
    if error.get("message"):
        message += f": {error['message']}"
    return GatewayResult(
        outcome,
        status,
        reference=qualified_reference(intent.get("id"), account),
        amount_authorized=authorized,
        amount_captured=captured,
        amount_refunded=refunded,
        fee=fee,
        decline_code=decline_code,
        advice_code=advice_code,
        message=message,
        raw=trimmed(intent),
        network_transaction_id=card_network_transaction_id(charge) if outcome == Outcome.SUCCEEDED else "",
        action_url=redirect_url(intent) if outcome == Outcome.REQUIRES_ACTION else "",
    )


def redirect_url(intent: dict) -> str:
    """The page Stripe sends the customer to for 3-D Secure: a PaymentIntent confirmed with a
    ``return_url`` answers ``next_action.type == "redirect_to_url"`` and its
    ``redirect_to_url.url``; without one (``use_stripe_sdk``, for Stripe.js) there is none."""
    next_action = intent.get("next_action") or {}
    if next_action.get("type") != "redirect_to_url":
        return ""
    return str((next_action.get("redirect_to_url") or {}).get("url") or "")


def card_network_transaction_id(charge_or_attempt: Any) -> str:
    """The card network's transaction id of a charge (or a SetupIntent's attempt) as Stripe
    reports it, ``payment_method_details.card.network_transaction_id``; "" when absent (a charge
    not expanded, only its id, as in webhooks; a network that returned none)."""
    details = charge_or_attempt.get("payment_method_details") if isinstance(charge_or_attempt, dict) else None
    card = details.get("card") if isinstance(details, dict) else None
    return str(card.get("network_transaction_id") or "") if isinstance(card, dict) else ""


def intent_saved(intent: dict) -> SavedMethod | None:
    """The card a PaymentIntent confirmed with ``setup_future_usage`` saved: its PaymentMethod
    (expanded) attached to the PaymentIntent's Customer, whose id is kept in the credential as
    ``stripe_customer`` (later PaymentIntents must name it). None when the PaymentMethod was not
    expanded or is not a card."""
    payment_method = intent.get("payment_method")
    if not isinstance(payment_method, dict):
        return None
    saved = _attached_card(payment_method, owner=intent, transaction=intent.get("latest_charge"))
    return saved if saved.ok else None


def setup_intent_saved(setup_intent: dict) -> SavedMethod:
    """A confirmed SetupIntent (``usage=off_session``) as the answer to saving a card:

    - ``succeeded``: the PaymentMethod (expanded), attached to the SetupIntent's Customer
      (``extra["stripe_customer"]``); the network transaction id of the attempt when Stripe
      reports one (``latest_attempt.payment_method_details.card.network_transaction_id``; Stripe's
      SetupAttempt documents no such field today, so it is usually "").
    - ``requires_action``: ``authentication_required`` (the issuer wants 3-D Secure: the customer
      must save the card on session, through checkout).
    - ``requires_payment_method``: the attempt failed, ``card_declined`` with Stripe's codes.
    - anything else (``processing``, ``canceled``, ...): ``gateway_error``.
    """
    status = setup_intent.get("status")
    label = f"SetupIntent {setup_intent.get('id')} {status}"
    if status == "succeeded":
        payment_method = setup_intent.get("payment_method")
        if not isinstance(payment_method, dict):
            return SavedMethod(
                False, code="gateway_error", message=f"{label}, its PaymentMethod not expanded"
            )
        return _attached_card(
            payment_method, owner=setup_intent, transaction=setup_intent.get("latest_attempt")
        )
    if status == "requires_action":
        return SavedMethod(
            False,
            code="authentication_required",
            message=f"{label}: the card's issuer requires the customer to authenticate; "
            "save it while the customer is present, through checkout",
        )
    if status == "requires_payment_method":
        error = setup_intent.get("last_setup_error") or {}
        codes = ", ".join(str(error[k]) for k in ("code", "decline_code") if error.get(k)) or "declined"
        text = f": {error['message']}" if error.get("message") else ""
        return SavedMethod(False, code="card_declined", message=f"{label} ({codes}){text}")
    return SavedMethod(False, code="gateway_error", message=label)


def _attached_card(payment_method: dict, *, owner: dict, transaction: Any) -> SavedMethod:
    """The card a PaymentIntent or SetupIntent (``owner``) saved, as both answer it: the expanded
    PaymentMethod, the Customer it is attached to (the owner's, else the PaymentMethod's) kept in
    the credential as ``stripe_customer``, and the network transaction id of ``transaction`` (the
    PaymentIntent's charge, the SetupIntent's attempt)."""
    customer_id = expandable_id(owner.get("customer") or payment_method.get("customer"))
    return saved_method(
        payment_method,
        extra={"stripe_customer": customer_id} if customer_id else {},
        network_transaction_id=card_network_transaction_id(transaction),
    )


def saved_method(
    payment_method: dict, *, extra: dict | None = None, network_transaction_id: str = ""
) -> SavedMethod:
    """A Stripe PaymentMethod (``pm_...``) as a saved method: its id is the credential (what later
    PaymentIntents name), its card the display details; Stripe's fingerprint is per Stripe
    account. ``extra`` goes into the credential as it is. Only cards are saved."""
    card = payment_method.get("card")
    if payment_method.get("type") != "card" or not isinstance(card, dict):
        return SavedMethod(
            False,
            code="payment_method_unsupported",
            message=f"Stripe PaymentMethod of type {payment_method.get('type')!r}: only cards are saved",
        )
    return SavedMethod(
        True,
        reference=str(payment_method["id"]),
        card=CardInfo(
            brand=str(card.get("brand") or "unknown"),
            country=str(card.get("country") or ""),
            funding=str(card.get("funding") or ""),
            last4=str(card.get("last4") or ""),
        ),
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
        fingerprint=str(card.get("fingerprint") or ""),
        extra=dict(extra or {}),
        network_transaction_id=network_transaction_id,
    )
