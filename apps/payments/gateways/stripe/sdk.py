"""The one way this package builds the Stripe SDK's client (payments and Connect alike): it never
retries by itself (``max_network_retries=0``: callers decide, with the same idempotency key), and
gives up connecting after at most 5 s, reading after ``timeout_seconds``; and the one way it builds
a request's options."""

from __future__ import annotations

import stripe

CONNECT_TIMEOUT_SECONDS = 5.0


def stripe_client(
    secret_key: str,
    *,
    api_base: str | None,
    timeout_seconds: float,
    http_client: stripe.HTTPClient | None = None,
) -> stripe.StripeClient:
    """``api_base`` replaces ``https://api.stripe.com`` (localstripe, tests, a proxy);
    ``http_client`` replaces the SDK's HTTP client (tests record requests with it)."""
    if http_client is None:
        http_client = stripe.RequestsClient(
            timeout=(min(timeout_seconds, CONNECT_TIMEOUT_SECONDS), timeout_seconds)
        )
    return stripe.StripeClient(
        secret_key,
        base_addresses={"api": api_base} if api_base else None,
        max_network_retries=0,
        http_client=http_client,
    )


def request_options(idempotency_key: str | None, *, account: str | None = None) -> stripe.RequestOptions:
    """A request's options: its idempotency key, and ``account`` (``acct_...``) to act on a
    connected account (``Stripe-Account``); either left out when None."""
    options: stripe.RequestOptions = {}
    if idempotency_key:
        options["idempotency_key"] = idempotency_key
    if account:
        options["stripe_account"] = account
    return options
