"""What a customer is told when their payment did not go through: plain words, one place, for
every page that shows a payment's outcome (the hosted checkout, the authentication pages). Never
internal detail: no gateway names, no processor messages, no codes.

``customer_message(code, decline_code)`` takes a payment's ``last_error`` ``code`` and, when
known, its ``decline_code`` (the more specific one wins), in the shared vocabulary of
``apps/payments/declines.py`` and the gateway port.
"""

from __future__ import annotations

TRY_ANOTHER = "Your card was declined. Try another card."
AUTHENTICATION_FAILED = "Authentication failed. Try again or use another card."
AUTHENTICATION_EXPIRED = "The time to authenticate this payment ran out. Try again."
AUTHENTICATION_REQUIRED = "Your bank asks you to authenticate this payment."
TRY_LATER = "We could not process your payment right now. Try again in a few minutes."

MESSAGES: dict[str, str] = {
    # the customer's authentication (3-D Secure)
    "authentication_failed": AUTHENTICATION_FAILED,
    "payment_intent_authentication_failure": AUTHENTICATION_FAILED,
    "authentication_expired": AUTHENTICATION_EXPIRED,
    "authentication_required": AUTHENTICATION_REQUIRED,
    # the card
    "insufficient_funds": "Your card has insufficient funds. Try another card.",
    "expired_card": "Your card has expired. Try another card.",
    "incorrect_cvc": "Your card's security code is incorrect. Check it and try again.",
    "invalid_cvc": "Your card's security code is incorrect. Check it and try again.",
    "incorrect_number": "Your card number is incorrect. Check it and try again.",
    "invalid_number": "Your card number is incorrect. Check it and try again.",
    "card_not_supported": "Your card does not support this kind of purchase. Try another card.",
    "currency_not_supported": "Your card does not support this currency. Try another card.",
    "transaction_not_allowed": "Your card does not support this kind of purchase. Try another card.",
    "card_velocity_exceeded": "Your card's limit has been reached. Try another card.",
    "withdrawal_count_limit_exceeded": "Your card's limit has been reached. Try another card.",
    "try_again_later": TRY_LATER,
    "issuer_not_available": TRY_LATER,
    "processing_error": "An error occurred while processing your card. Try again.",
    "reenter_transaction": "An error occurred while processing your card. Try again.",
    # the platform could not reach anyone to charge it
    "gateway_error": TRY_LATER,
    "no_gateway_available": TRY_LATER,
    "payment_method_unreachable": "This card cannot be used here. Try another card.",
}


def customer_message(code: str | None, decline_code: str | None = None) -> str:
    """The sentence to show the customer for a payment that failed with ``code`` (its
    ``last_error.code``) and ``decline_code``: the decline code's when there is one for it, else
    the code's, else "Your card was declined. Try another card." (lost, stolen, fraudulent and
    unknown codes read the same: the customer learns nothing the issuer keeps to itself)."""
    for key in (decline_code, code):
        if key and key in MESSAGES:
            return MESSAGES[key]
    return TRY_ANOTHER
