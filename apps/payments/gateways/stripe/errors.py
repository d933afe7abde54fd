"""Every Stripe failure, read once for the whole package (payments and Connect alike): what Stripe
said (its error type, codes, HTTP status, the PaymentIntent it names) and what that means for the
request that failed. The payments adapter turns a ``StripeFailure`` into a ``GatewayResult``
(``gateway.py``), the Connect client into a ``ConnectError`` (``connect.py``).

What a failure means for the request:

- ``connection``: Stripe was not reached or its answer was lost. ``sent`` says which: False only
  when the request provably never left (refused connection, DNS failure, connect timeout, TLS
  handshake); a read timeout or a connection dropped mid-exchange may follow a charge.
- ``card``: a card error (HTTP 402), the issuer declined.
- ``in_flight``: the same idempotency key is being processed or was used for another request
  (409, ``idempotency_error``): what it did is unknown.
- ``may_have_acted``: Stripe may have done it (answer lost after sending, 409, 500/504): never
  read as "nothing happened".
- ``retryable``: the very same request (same key) may be sent again: not reached, answer lost,
  409, 429, 5xx.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
import stripe
import urllib3.exceptions

_ERROR_TYPES = (
    (stripe.AuthenticationError, "authentication_error"),
    (stripe.PermissionError, "permission_error"),
    (stripe.RateLimitError, "rate_limit_error"),
    (stripe.IdempotencyError, "idempotency_error"),
    (stripe.InvalidRequestError, "invalid_request_error"),
    (stripe.CardError, "card_error"),
)


@dataclass(frozen=True)
class StripeFailure:
    type: str  # Stripe's error type, or "api_connection_error"
    code: str | None
    decline_code: str | None
    advice_code: str | None
    param: str | None
    text: str  # Stripe's message, or the transport error when Stripe was not reached
    http_status: int | None
    request_id: str | None
    payment_intent: dict[str, Any] | None  # the PaymentIntent Stripe names in the error, as it is now
    error: dict[str, Any]  # Stripe's error object as sent ({} when Stripe was not reached)
    connection: bool
    sent: bool
    card: bool
    idempotency: bool
    description: str  # one short line for messages

    @property
    def in_flight(self) -> bool:
        return self.idempotency or self.http_status == 409

    @property
    def may_have_acted(self) -> bool:
        """Whether Stripe may have done what was asked: the answer was lost after sending, the
        key is in flight, or a 500/504 (Stripe documents a 500 as "the result is unknown")."""
        return (self.connection and self.sent) or self.in_flight or self.http_status in (500, 504)

    @property
    def retryable(self) -> bool:
        status = self.http_status
        return self.connection or (status is not None and (status in (409, 429) or status >= 500))


def never_sent(exc: stripe.APIConnectionError) -> bool:
    """Whether a connection error provably happened before a byte of the request was sent.

    The SDK wraps the HTTP library's exception (``raise ... from e``) and flags connect errors
    and read timeouts alike as retryable, so the cause decides: refused connection, DNS failure,
    connect timeout and TLS handshake failure happen before the request is sent; a read timeout or
    a connection dropped mid-exchange may follow a charge.
    """
    cause = exc.__cause__
    if isinstance(cause, requests.exceptions.ConnectTimeout | requests.exceptions.SSLError):
        return True
    if isinstance(cause, requests.exceptions.ConnectionError) and not isinstance(
        cause, requests.exceptions.ReadTimeout
    ):
        inner = cause.args[0] if cause.args else None
        reason = getattr(inner, "reason", inner)  # urllib3's MaxRetryError wraps the real error
        # NewConnectionError (refused) and NameResolutionError are ConnectTimeoutError subclasses.
        if isinstance(reason, urllib3.exceptions.ConnectTimeoutError):
            return True
    return False


def read_failure(exc: stripe.StripeError) -> StripeFailure:
    """The one reading of a Stripe SDK exception."""
    error = exc.error.to_dict() if exc.error is not None else {}
    connection = isinstance(exc, stripe.APIConnectionError)
    intent = error.get("payment_intent")
    if connection:
        cause = exc.__cause__
        text = f"{type(cause).__name__}: {cause}" if cause is not None else (exc.user_message or str(exc))
        kind = "api_connection_error"
    else:
        text = error.get("message") or exc.user_message or str(exc) or "no message"
        kind = error.get("type") or next(
            (name for cls, name in _ERROR_TYPES if isinstance(exc, cls)), "api_error"
        )
    return StripeFailure(
        type=kind,
        code=error.get("code") or exc.code,
        decline_code=error.get("decline_code"),
        advice_code=error.get("advice_code"),
        param=error.get("param"),
        text=text,
        http_status=exc.http_status,
        request_id=exc.request_id,
        payment_intent=intent if isinstance(intent, dict) else None,
        error=error,
        connection=connection,
        sent=not (connection and never_sent(exc)),  # type: ignore[arg-type]
        card=isinstance(exc, stripe.CardError),
        idempotency=isinstance(exc, stripe.IdempotencyError),
        description=describe(exc),
    )


def describe(exc: BaseException) -> str:
    """One short line for a message."""
    if isinstance(exc, stripe.APIConnectionError) and exc.__cause__ is not None:
        text = f"{type(exc).__name__}: {type(exc.__cause__).__name__}: {exc.__cause__}"
    elif isinstance(exc, stripe.StripeError):
        status = f"HTTP {exc.http_status} " if exc.http_status else ""
        text = f"{status}{type(exc).__name__}: {exc.user_message or exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."
