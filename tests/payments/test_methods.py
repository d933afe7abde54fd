"""The test PaymentMethods' card details, as a payment stores them (``PaymentIntent.card``) and
routing reads them."""

from __future__ import annotations

from apps.payments.methods import card_details


def test_a_test_method_gives_its_card():
    assert card_details("pm_card_jcb") == {
        "brand": "jcb",
        "country": "JP",
        "funding": "credit",
        "last4": "0505",
    }
    assert card_details("pm_card_visa_debit")["funding"] == "debit"


def test_a_real_token_gives_an_unknown_card_with_no_country():
    assert card_details("pm_1QxRealToken") == {
        "brand": "unknown",
        "country": "",
        "funding": "credit",
        "last4": "",
    }
