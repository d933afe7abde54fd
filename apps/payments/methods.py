"""Stripe's documented test PaymentMethods (same meanings everywhere: simulator, routing),
plus the simulator's own fault tokens. Real tokens are opaque: routing then uses whatever card
details the storefront sends (brand, country)."""

from __future__ import annotations

from dataclasses import dataclass

from apps.payments.gateways.base import CardInfo


@dataclass(frozen=True)
class TestMethod:
    card: CardInfo
    decline_code: str | None = None  # the issuer's answer when declined
    advice_code: str | None = None
    requires_action: bool = False
    fault: str | None = None  # simulator-only: "gateway_error", "timeout_after_charge"


def _c(brand: str, country: str = "US", funding: str = "credit", last4: str = "4242") -> CardInfo:
    return CardInfo(brand=brand, country=country, funding=funding, last4=last4)


TEST_METHODS: dict[str, TestMethod] = {
    "pm_card_visa": TestMethod(_c("visa")),
    "pm_card_visa_debit": TestMethod(_c("visa", funding="debit", last4="5556")),
    "pm_card_mastercard": TestMethod(_c("mastercard", last4="4444")),
    "pm_card_mastercard_debit": TestMethod(_c("mastercard", funding="debit", last4="8210")),
    "pm_card_mastercard_prepaid": TestMethod(_c("mastercard", funding="prepaid", last4="5100")),
    "pm_card_amex": TestMethod(_c("amex", last4="8431")),
    "pm_card_discover": TestMethod(_c("discover", last4="1117")),
    "pm_card_diners": TestMethod(_c("diners", last4="0004")),
    "pm_card_jcb": TestMethod(_c("jcb", "JP", last4="0505")),
    "pm_card_unionpay": TestMethod(_c("unionpay", "CN", last4="0005")),
    # cards issued in other countries
    "pm_card_br": TestMethod(_c("visa", "BR", last4="0002")),
    "pm_card_ca": TestMethod(_c("visa", "CA", last4="0000")),
    "pm_card_mx": TestMethod(_c("visa", "MX", last4="0009")),
    "pm_card_gb": TestMethod(_c("visa", "GB", last4="0002")),
    "pm_card_de": TestMethod(_c("visa", "DE", last4="0016")),
    "pm_card_fr": TestMethod(_c("visa", "FR", last4="0003")),
    "pm_card_es": TestMethod(_c("visa", "ES", last4="0003")),
    "pm_card_it": TestMethod(_c("visa", "IT", last4="0007")),
    "pm_card_nl": TestMethod(_c("visa", "NL", last4="0002")),
    "pm_card_in": TestMethod(_c("visa", "IN", last4="0003")),
    "pm_card_jp": TestMethod(_c("visa", "JP", last4="0003")),
    "pm_card_au": TestMethod(_c("visa", "AU", last4="0000")),
    "pm_card_sg": TestMethod(_c("visa", "SG", last4="0002")),
    # declines (Stripe's decline codes; advice codes where Stripe documents them)
    "pm_card_chargeDeclined": TestMethod(_c("visa", last4="0002"), "generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": TestMethod(
        _c("visa", last4="9995"), "insufficient_funds", "try_again_later"
    ),
    "pm_card_chargeDeclinedLostCard": TestMethod(_c("visa", last4="9987"), "lost_card", "do_not_try_again"),
    "pm_card_visa_chargeDeclinedLostCard": TestMethod(
        _c("visa", last4="9987"), "lost_card", "do_not_try_again"
    ),
    "pm_card_chargeDeclinedStolenCard": TestMethod(
        _c("visa", last4="9979"), "stolen_card", "do_not_try_again"
    ),
    "pm_card_visa_chargeDeclinedStolenCard": TestMethod(
        _c("visa", last4="9979"), "stolen_card", "do_not_try_again"
    ),
    "pm_card_chargeDeclinedExpiredCard": TestMethod(
        _c("visa", last4="0069"), "expired_card", "do_not_try_again"
    ),
    "pm_card_visa_chargeDeclinedExpiredCard": TestMethod(
        _c("visa", last4="0069"), "expired_card", "do_not_try_again"
    ),
    "pm_card_chargeDeclinedIncorrectCvc": TestMethod(
        _c("visa", last4="0127"), "incorrect_cvc", "confirm_card_data"
    ),
    "pm_card_visa_chargeDeclinedIncorrectCvc": TestMethod(
        _c("visa", last4="0127"), "incorrect_cvc", "confirm_card_data"
    ),
    "pm_card_chargeDeclinedProcessingError": TestMethod(
        _c("visa", last4="0119"), "processing_error", "try_again_later"
    ),
    "pm_card_visa_chargeDeclinedProcessingError": TestMethod(
        _c("visa", last4="0119"), "processing_error", "try_again_later"
    ),
    "pm_card_chargeDeclinedFraudulent": TestMethod(
        _c("visa", last4="0019"), "fraudulent", "do_not_try_again"
    ),
    "pm_card_visa_chargeDeclinedFraudulent": TestMethod(
        _c("visa", last4="0019"), "fraudulent", "do_not_try_again"
    ),
    "pm_card_chargeDeclinedVelocityLimitExceeded": TestMethod(
        _c("visa", last4="6975"), "card_velocity_exceeded", "try_again_later"
    ),
    # authentication
    "pm_card_authenticationRequired": TestMethod(_c("visa", last4="3184"), requires_action=True),
    "pm_card_threeDSecure2Required": TestMethod(_c("visa", last4="3220"), requires_action=True),
    # simulator faults
    "pm_sim_gateway_error": TestMethod(_c("visa", last4="0500"), fault="gateway_error"),
    "pm_sim_timeout_after_charge": TestMethod(_c("visa", last4="0408"), fault="timeout_after_charge"),
}


def card_info(payment_method: str) -> CardInfo:
    """Card details for routing; unknown (real) tokens get an unknown brand and no country."""
    method = TEST_METHODS.get(payment_method)
    return method.card if method else CardInfo(brand="unknown", country="", last4="")


def card_details(payment_method: str) -> dict:
    """``card_info`` as a payment stores it (``PaymentIntent.card``): brand, country, funding, last4."""
    c = card_info(payment_method)
    return {"brand": c.brand, "country": c.country, "funding": c.funding, "last4": c.last4}


# Our own payment methods' ids (``apps.payments.models.PaymentMethod``): a prefix no processor's
# token has (Stripe's are ``pm_...``), so the two are never confused.
PAYMENT_METHOD_PREFIX = "paym_"


def is_payment_method_id(value: str) -> bool:
    """Whether ``value`` names one of our payment methods (else it is a processor's token)."""
    return value.startswith(PAYMENT_METHOD_PREFIX)


# Stripe's documented test card numbers, as the simulator's card fields (the demo's stand-in for a
# processor's hosted fields, ``gateways/simulator/card_fields.py``) turn them into the test
# methods above. Only these numbers are accepted there; the platform's own endpoints refuse any.
TEST_CARD_NUMBERS: dict[str, str] = {
    "4242424242424242": "pm_card_visa",
    "4000056655665556": "pm_card_visa_debit",
    "5555555555554444": "pm_card_mastercard",
    "5200828282828210": "pm_card_mastercard_debit",
    "5105105105105100": "pm_card_mastercard_prepaid",
    "371449635398431": "pm_card_amex",
    "6011111111111117": "pm_card_discover",
    "3056930009020004": "pm_card_diners",
    "3566002020360505": "pm_card_jcb",
    "6200000000000005": "pm_card_unionpay",
    "4000000760000002": "pm_card_br",
    "4000001240000000": "pm_card_ca",
    "4000002760000016": "pm_card_de",
    "4000002500000003": "pm_card_fr",
    "4000005280000002": "pm_card_nl",
    "4000003920000003": "pm_card_jp",
    "4000000000000002": "pm_card_chargeDeclined",
    "4000000000009995": "pm_card_chargeDeclinedInsufficientFunds",
    "4000000000009987": "pm_card_chargeDeclinedLostCard",
    "4000000000009979": "pm_card_chargeDeclinedStolenCard",
    "4000000000000069": "pm_card_chargeDeclinedExpiredCard",
    "4000000000000127": "pm_card_chargeDeclinedIncorrectCvc",
    "4000000000000119": "pm_card_chargeDeclinedProcessingError",
    "4100000000000019": "pm_card_chargeDeclinedFraudulent",
    "4000000000006975": "pm_card_chargeDeclinedVelocityLimitExceeded",
    "4000002760003184": "pm_card_authenticationRequired",
    "4000000000003220": "pm_card_threeDSecure2Required",
}
