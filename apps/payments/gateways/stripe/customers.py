"""The Stripe Customer a saved card is attached to. Stripe charges a PaymentMethod again (off
session, or on session later) only when it is attached to a Customer, and every later
PaymentIntent must then name that Customer; so saving a card (a SetupIntent, or a PaymentIntent
with ``setup_future_usage``) first finds or creates one, and its id travels in our credential for
the card as ``stripe_customer``.

One Stripe Customer per customer of ours, found by ``metadata.customer_reference``: created with
an idempotency key derived from our customer id (``customer_<id>``), which makes concurrent or
retried creations one for Stripe's 24 h; found later by Customer Search (which lags writes by about
a minute, well inside those 24 h). Where Search is unavailable (some regions, localstripe) a
customer saving cards more than a day apart may get a second Stripe Customer: harmless, since each
credential names its own. A card saved without a customer of ours gets a Stripe Customer of its
own, keyed by the save's idempotency key.
"""

from __future__ import annotations

import stripe
from stripe.params import CustomerCreateParams

from apps.payments.gateways.stripe.sdk import request_options
from apps.payments.gateways.stripe.shapes import metadata_matches, metadata_query


def customer_idempotency_key(customer_reference: str) -> str:
    return f"customer_{customer_reference}"


def stripe_customer(
    client: stripe.StripeClient,
    *,
    customer_reference: str | None,
    idempotency_key: str,
    account: str | None = None,
) -> str:
    """The id (``cus_...``) of the Stripe Customer to attach a card to: our customer's
    (``customer_reference``), else one for this card alone (``idempotency_key`` is the save's);
    in the connected account ``account`` when the card is charged there (a direct charge).
    Idempotent. Raises ``stripe.StripeError`` when Stripe cannot create one."""
    if not customer_reference:
        alone: CustomerCreateParams = {"metadata": {"saved_with": idempotency_key}}
        options = request_options(f"{idempotency_key}:customer", account=account)
        return client.v1.customers.create(alone, options).id
    try:
        found = client.v1.customers.search(
            {"query": metadata_query("customer_reference", customer_reference), "limit": 10},
            request_options(None, account=account),
        ).to_dict()
    except stripe.StripeError:  # Search unavailable: the creation's idempotency key still holds
        found = {}
    ours = metadata_matches(found, "customer_reference", customer_reference)
    if ours:  # the oldest, so that a replayed save names the same Customer as the first
        return str(min(ours, key=lambda c: (int(c.get("created") or 0), str(c["id"])))["id"])
    params: CustomerCreateParams = {"metadata": {"customer_reference": customer_reference}}
    options = request_options(customer_idempotency_key(customer_reference), account=account)
    return client.v1.customers.create(params, options).id
