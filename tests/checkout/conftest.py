"""Checkout tests use the API's client (a marketplace's host with a secret key) and, for the
Stripe path, the session's localstripe."""

from __future__ import annotations

from tests.api.conftest import api  # noqa: F401  (the fixtures, shared)
from tests.browser import chromium  # noqa: F401
from tests.payments.test_stripe_gateway import localstripe, localstripe_server  # noqa: F401
