"""A vendor's Connect requirements in plain words: what ``Vendor.requirements`` (as the Connect
rail reported them, ``ConnectAccount.requirements``) asks of the vendor, for its pages, the API
and the admin. The Stripe calls and the reading of Stripe's objects live in
``apps/payments/gateways/stripe/connect.py``; vendors use them through the Connect port
(``apps/payments/gateways/connect.py``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Stripe's requirement field paths (docs.stripe.com/connect/required-verification-information)
# in plain words. Person-specific paths (``person_123.verification.document``) are matched
# without the person id; unknown paths fall back to the path in words.
_REQUIREMENT_WORDS: dict[str, str] = {
    "external_account": "a bank account for payouts",
    "tos_acceptance.date": "acceptance of Stripe's terms of service",
    "tos_acceptance.ip": "acceptance of Stripe's terms of service",
    "business_type": "the type of business (individual or company)",
    "business_profile.url": "the business's website",
    "business_profile.mcc": "the business's industry",
    "business_profile.product_description": "a description of what the business sells",
    "business_profile.support_phone": "a customer support phone number",
    "business_profile.name": "the business's name",
    "individual.verification.document": "an identity document",
    "individual.verification.additional_document": "a proof of address document",
    "individual.id_number": "a government ID number",
    "individual.ssn_last_4": "the last 4 digits of a social security number",
    "individual.dob.day": "a date of birth",
    "individual.dob.month": "a date of birth",
    "individual.dob.year": "a date of birth",
    "individual.first_name": "a legal name",
    "individual.last_name": "a legal name",
    "individual.email": "an email address",
    "individual.phone": "a phone number",
    "individual.address.line1": "a home address",
    "individual.address.city": "a home address",
    "individual.address.postal_code": "a home address",
    "individual.address.state": "a home address",
    "company.name": "the company's legal name",
    "company.tax_id": "the company's tax ID",
    "company.phone": "the company's phone number",
    "company.address.line1": "the company's address",
    "company.address.city": "the company's address",
    "company.address.postal_code": "the company's address",
    "company.address.state": "the company's address",
    "company.verification.document": "a company registration document",
    "company.owners_provided": "the company's owners",
    "company.directors_provided": "the company's directors",
    "company.executives_provided": "the company's executives",
    "representative.verification.document": "an identity document for the company's representative",
    "person.verification.document": "an identity document for a person on the account",
    "person.verification.additional_document": "a proof of address document for a person on the account",
}

_DISABLED_REASON_WORDS: dict[str, str] = {
    "requirements.past_due": "required information is past due",
    "requirements.pending_verification": "Stripe is verifying the information provided",
    "listed": "the account is under review (possible match on a prohibited persons list)",
    "platform_paused": "paused by the marketplace",
    "rejected.fraud": "rejected by Stripe (suspected fraud)",
    "rejected.incomplete_verification": "rejected by Stripe (verification not completed)",
    "rejected.listed": "rejected by Stripe (prohibited persons list)",
    "rejected.other": "rejected by Stripe",
    "rejected.terms_of_service": "rejected by Stripe (terms of service violation)",
    "under_review": "under review by Stripe",
    "action_required.requested_capabilities": "the requested capabilities need more information",
    "other": "disabled by Stripe",
}

_PERSON_PATH = re.compile(r"^person_[A-Za-z0-9]+\.")


def requirement_in_words(path: str) -> str:
    """``external_account`` -> ``a bank account for payouts``; unknown paths in words."""
    key = _PERSON_PATH.sub("person.", path)
    if key in _REQUIREMENT_WORDS:
        return _REQUIREMENT_WORDS[key]
    return key.replace(".", " ").replace("_", " ")


def disabled_reason_in_words(reason: str | None) -> str | None:
    if not reason:
        return None
    return _DISABLED_REASON_WORDS.get(reason, reason.replace(".", ": ").replace("_", " "))


def requirements_in_words(requirements: Mapping[str, Any] | None) -> list[str]:
    """Plain-word lines for ``Vendor.requirements``: past-due items first (marked), then the rest
    currently due, each said once, then why the account is disabled, if it is."""
    requirements = requirements or {}
    lines: list[str] = []
    seen: set[str] = set()
    for path in requirements.get("past_due") or []:
        words = requirement_in_words(path)
        if words not in seen:
            seen.add(words)
            lines.append(f"{words} (past due)")
    for path in requirements.get("currently_due") or []:
        words = requirement_in_words(path)
        if words not in seen:
            seen.add(words)
            lines.append(words)
    reason = disabled_reason_in_words(requirements.get("disabled_reason"))
    if reason:
        lines.append(f"disabled: {reason}")
    return lines
