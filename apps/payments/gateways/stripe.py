"""Stripe adapter: the gateway port on the official SDK (``stripe.StripeClient``, stripe-python 15).

One attempt is one PaymentIntent, created and confirmed in a single call (``confirm=True``) with
our attempt id as the idempotency key and as ``metadata.attempt_id``. The SDK never retries
(``max_network_retries=0``): the mesh decides retries and failover.

References. ``GatewayResult.reference`` is the PaymentIntent id (``pi_...``). A charge made on a
connected account (``ChargeRequest.connected_account``, a direct charge) lives in that account, and
capture, cancel, refund and retrieve must send the same ``Stripe-Account`` header, but the port
passes only the reference to them; so such references carry the account: ``acct_.../pi_...``.

Outcome classes:

- ``succeeded`` -> SUCCEEDED/CAPTURED, ``requires_capture`` -> SUCCEEDED/AUTHORIZED,
  ``requires_action`` -> REQUIRES_ACTION, ``processing`` -> UNKNOWN (the charge may still land).
- A card error (HTTP 402) -> DECLINED_SOFT or DECLINED_HARD by ``decline_outcome``: the issuer's
  advice code outranks our table of Stripe's hard decline codes.
- Nothing sent (connection refused, DNS failure, connect timeout, TLS handshake), 5xx, 429, bad
  key, invalid request -> GATEWAY_ERROR. Sent but the answer lost (read timeout, connection
  dropped mid-exchange), 409 (the same key is in flight), a reused idempotency key -> UNKNOWN.
  Processor failures are results, never exceptions.

Looking an attempt up without a reference (its answer was lost) matches ``metadata.attempt_id``
in two places: the list of PaymentIntents, newest first and strongly consistent, back to
``settings["lookup_window_seconds"]`` (default an hour, at most ``lookup_max_pages`` pages of
100); then PaymentIntent Search for anything older (Search lags writes by about a minute, hence
the window). NOT_FOUND is answered only when both together cover every PaymentIntent of the
account, else UNKNOWN (also where Search is unavailable, as on localstripe, unless the list
held everything). PaymentIntents on connected accounts are not visible to either: with
``settings["direct_charges"]`` set, a lookup never answers NOT_FOUND. A request Stripe is still
processing may create its PaymentIntent after a lookup; within Stripe's 24 h idempotency window,
sending ``authorize`` again with the same request is the exact way to learn a lost outcome.

Amounts: a partial capture releases the rest as a refund of the uncaptured amount, so the
charge's ``amount_refunded`` includes it; ``amount_refunded`` here counts only refunds of captured
money. The fee comes from the charge's balance transaction when Stripe reports it (0 otherwise).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import requests
import stripe
import urllib3.exceptions
from stripe.params import (
    PaymentIntentCancelParams,
    PaymentIntentCaptureParams,
    PaymentIntentCreateParams,
    PaymentIntentListParams,
    PaymentIntentRetrieveParams,
    RefundCreateParams,
    RefundListParams,
)

from apps.payments.gateways.base import (
    ChargeRequest,
    GatewayCallError,
    GatewayConfig,
    GatewayResult,
    GatewayStatus,
    Outcome,
)

logger = logging.getLogger(__name__)

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

_EXPAND_INTENT = ["latest_charge", "latest_charge.balance_transaction"]
LOOKUP_WINDOW_SECONDS = 3600  # far beyond Search's lag behind writes
LOOKUP_MAX_PAGES = 10
_CONNECT_TIMEOUT_SECONDS = 5.0
_LOST_ANSWER = "request sent but the answer was lost: the charge may exist"


def decline_outcome(decline_code: str | None, advice_code: str | None) -> Outcome:
    """DECLINED_HARD or DECLINED_SOFT for a Stripe decline; the issuer's advice code wins."""
    if advice_code == "do_not_try_again":
        return Outcome.DECLINED_HARD
    if advice_code == "try_again_later":
        return Outcome.DECLINED_SOFT
    return Outcome.DECLINED_HARD if decline_code in HARD_DECLINE_CODES else Outcome.DECLINED_SOFT


def connection_outcome(exc: stripe.APIConnectionError) -> Outcome:
    """GATEWAY_ERROR when the request provably never reached Stripe, else UNKNOWN.

    The SDK wraps the HTTP library's exception (``raise ... from e``) and flags connect errors
    and read timeouts alike as retryable, so the cause decides: refused connection, DNS failure,
    connect timeout and TLS handshake failure happen before a byte of the request is sent; a
    read timeout or a connection dropped mid-exchange may follow a charge.
    """
    cause = exc.__cause__
    if isinstance(cause, requests.exceptions.ConnectTimeout | requests.exceptions.SSLError):
        return Outcome.GATEWAY_ERROR
    if isinstance(cause, requests.exceptions.ConnectionError) and not isinstance(
        cause, requests.exceptions.ReadTimeout
    ):
        inner = cause.args[0] if cause.args else None
        reason = getattr(inner, "reason", inner)  # urllib3's MaxRetryError wraps the real error
        # NewConnectionError (refused) and NameResolutionError are ConnectTimeoutError subclasses.
        if isinstance(reason, urllib3.exceptions.ConnectTimeoutError):
            return Outcome.GATEWAY_ERROR
    return Outcome.UNKNOWN


def split_reference(reference: str) -> tuple[str | None, str]:
    """``"acct_1/pi_2"`` -> ``("acct_1", "pi_2")``; ``"pi_2"`` -> ``(None, "pi_2")``."""
    account, sep, intent_id = reference.rpartition("/")
    return (account or None) if sep else None, intent_id


def _reference(intent_id: str | None, account: str | None) -> str | None:
    if intent_id is None:
        return None
    return f"{account}/{intent_id}" if account else intent_id


def _id(value: Any) -> str | None:
    """An expandable field: the id whether Stripe sent the id or the expanded object."""
    if isinstance(value, dict):
        return value.get("id")
    return value if isinstance(value, str) else None


def _charge_amounts(charge: dict | None) -> tuple[int, int, int]:
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


def _trimmed(intent: dict) -> dict:
    error = intent.get("last_payment_error") or {}
    raw: dict[str, Any] = {"id": intent.get("id"), "status": intent.get("status")}
    if intent.get("latest_charge"):
        raw["latest_charge"] = _id(intent["latest_charge"])
    if error:
        raw["last_payment_error"] = {
            k: error.get(k) for k in ("code", "decline_code", "advice_code") if error.get(k)
        }
    if intent.get("next_action"):
        raw["next_action"] = {"type": intent["next_action"].get("type")}
    return raw


def _metadata(request: ChargeRequest) -> dict[str, str]:
    metadata = {str(k): str(v) for k, v in request.metadata.items()}
    if request.customer_reference:
        metadata["customer_reference"] = request.customer_reference
    metadata["attempt_id"] = request.attempt_id
    return metadata


class StripeGateway:
    """The ``stripe`` gateway kind. Config: ``credentials["secret_key"]``; ``settings["api_base"]``
    (localstripe), ``settings["return_url"]`` (for 3-D Secure redirects); ``timeout_seconds``.

    ``http_client`` replaces the SDK's HTTP client (tests record requests with it); by default a
    ``requests`` client with the configured timeout.
    """

    kind = "stripe"
    can_look_up = True

    def __init__(self, config: GatewayConfig, *, http_client: stripe.HTTPClient | None = None):
        secret_key = (config.credentials or {}).get("secret_key")
        if not secret_key:
            raise GatewayCallError(
                f"gateway account {config.account_id!r}: credentials['secret_key'] is missing"
            )
        self.config = config
        self.settings = config.settings or {}
        timeout = float(config.timeout_seconds)
        if http_client is None:
            http_client = stripe.RequestsClient(timeout=(min(timeout, _CONNECT_TIMEOUT_SECONDS), timeout))
        api_base = self.settings.get("api_base")
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=0,
            http_client=http_client,
        )

    # ----------------------------------------------------------------- port

    def authorize(self, request: ChargeRequest) -> GatewayResult:
        """Create and confirm a PaymentIntent; idempotent by attempt id for Stripe's 24 h window."""
        params: PaymentIntentCreateParams = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "payment_method": request.payment_method,
            "payment_method_types": ["card"],
            "confirm": True,
            "capture_method": "automatic" if request.capture else "manual",
            "metadata": _metadata(request),
            "expand": _EXPAND_INTENT,
        }
        if request.off_session:
            params["off_session"] = True
        if request.description:  # localstripe refuses the parameter, so only when there is one
            params["description"] = request.description
        if self.settings.get("return_url"):
            params["return_url"] = self.settings["return_url"]
        options = self._options(request.connected_account, request.attempt_id)
        return self._call(
            lambda: self.client.v1.payment_intents.create(params, options),
            account=request.connected_account,
            operation="authorize",
        )

    def capture(
        self, *, attempt_id: str, reference: str, amount: int, currency: str, idempotency_key: str
    ) -> GatewayResult:
        """Capture ``amount`` of an authorised PaymentIntent (the rest is released)."""
        account, intent_id = split_reference(reference)
        params: PaymentIntentCaptureParams = {"amount_to_capture": amount, "expand": _EXPAND_INTENT}
        options = self._options(account, idempotency_key)
        return self._call(
            lambda: self.client.v1.payment_intents.capture(intent_id, params, options),
            account=account,
            operation="capture",
        )

    def cancel(self, *, attempt_id: str, reference: str | None, idempotency_key: str) -> GatewayResult:
        """Void an authorisation. Without a reference the PaymentIntent is looked up by attempt id
        first (see the module docstring); cancelling an already cancelled one succeeds."""
        if reference is None:
            found = self._find(attempt_id)
            if found.status == GatewayStatus.NOT_FOUND:
                return GatewayResult(Outcome.SUCCEEDED, GatewayStatus.NOT_FOUND, message="nothing to cancel")
            if found.reference is None or found.status == GatewayStatus.CANCELED:
                return found
            reference = found.reference
        account, intent_id = split_reference(reference)
        params: PaymentIntentCancelParams = {"expand": _EXPAND_INTENT}
        options = self._options(account, idempotency_key)
        return self._call(
            lambda: self.client.v1.payment_intents.cancel(intent_id, params, options),
            account=account,
            operation="cancel",
        )

    def refund(
        self,
        *,
        attempt_id: str,
        reference: str,
        refund_id: str,
        amount: int,
        currency: str,
        idempotency_key: str,
    ) -> GatewayResult:
        """Refund ``amount`` of a captured PaymentIntent. The result's reference is Stripe's refund
        id; ``amount_refunded`` is the total refunded so far."""
        account, intent_id = split_reference(reference)
        params: RefundCreateParams = {
            "payment_intent": intent_id,
            "amount": amount,
            "metadata": {"refund_id": refund_id, "attempt_id": attempt_id},
            "expand": ["charge"],
        }
        options = self._options(account, idempotency_key)
        try:
            refund = self.client.v1.refunds.create(params, options).to_dict()
        except stripe.StripeError as exc:
            return self._error_result(exc, account=account, operation="refund")
        except Exception as exc:  # the port never raises for processor failures
            return self._unexpected(exc, operation="refund")
        charge = refund.get("charge") if isinstance(refund.get("charge"), dict) else None
        captured, refunded, fee = _charge_amounts(charge)
        status = refund.get("status")
        if status in ("succeeded", "pending"):
            outcome = Outcome.SUCCEEDED
        elif status == "requires_action":
            outcome = Outcome.REQUIRES_ACTION
        else:  # failed, canceled
            outcome = Outcome.GATEWAY_ERROR
        return GatewayResult(
            outcome,
            GatewayStatus.CAPTURED,
            reference=refund.get("id"),
            amount_authorized=int(charge.get("amount") or 0) if charge else 0,
            amount_captured=captured,
            amount_refunded=refunded,
            fee=fee,
            message=f"refund {status}"
            + (f": {refund['failure_reason']}" if refund.get("failure_reason") else ""),
            raw={
                "id": refund.get("id"),
                "status": status,
                "payment_intent": intent_id,
                "refund_id": refund_id,
                "amount": refund.get("amount"),
            },
        )

    def retrieve(self, *, attempt_id: str, reference: str | None) -> GatewayResult:
        """Stripe's truth about the attempt. By reference: the PaymentIntent (a 404 is
        GATEWAY_ERROR/NOT_FOUND). Without one: a lookup by attempt id (see the module docstring)."""
        if reference is None:
            return self._find(attempt_id)
        account, intent_id = split_reference(reference)
        params: PaymentIntentRetrieveParams = {"expand": _EXPAND_INTENT}
        options = self._options(account, None)
        return self._call(
            lambda: self.client.v1.payment_intents.retrieve(intent_id, params, options),
            account=account,
            operation="retrieve",
        )

    def refund_retrieve(self, *, attempt_id: str, reference: str, refund_id: str) -> GatewayResult:
        """Our refund ``refund_id`` found among the PaymentIntent's refunds by ``metadata.refund_id``
        (newest first, at most ``lookup_max_pages`` pages of 100): succeeded or pending ->
        SUCCEEDED, failed or canceled -> DECLINED_HARD, none while every refund was seen ->
        NOT_FOUND; any error, or more refunds than the pages hold -> UNKNOWN (cannot tell)."""
        account, intent_id = split_reference(reference)
        options = self._options(account, None)
        starting_after: str | None = None
        try:
            for _ in range(int(self.settings.get("lookup_max_pages", LOOKUP_MAX_PAGES))):
                params: RefundListParams = {"payment_intent": intent_id, "limit": 100}
                if starting_after:
                    params["starting_after"] = starting_after
                page = self.client.v1.refunds.list(params, options).to_dict()
                refunds = page.get("data") or []
                for refund in refunds:
                    if (refund.get("metadata") or {}).get("refund_id") == refund_id:
                        return _refund_found(refund, intent_id, refund_id)
                if not page.get("has_more") or not refunds:
                    return GatewayResult(
                        Outcome.GATEWAY_ERROR, GatewayStatus.NOT_FOUND, message=f"no refund {refund_id}"
                    )
                starting_after = refunds[-1]["id"]
        except Exception as exc:  # the lookup is best effort: any failure means we cannot tell
            return GatewayResult(
                Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message=f"refund lookup failed: {_describe(exc)}"
            )
        return GatewayResult(
            Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message="refund lookup: more refunds than the pages hold"
        )

    # ----------------------------------------------------------------- calls

    @staticmethod
    def _options(account: str | None, idempotency_key: str | None) -> stripe.RequestOptions:
        options: stripe.RequestOptions = {}
        if idempotency_key:
            options["idempotency_key"] = idempotency_key
        if account:
            options["stripe_account"] = account
        return options

    def _call(
        self, send: Callable[[], stripe.PaymentIntent], *, account: str | None, operation: str
    ) -> GatewayResult:
        try:
            intent = send().to_dict()
        except stripe.StripeError as exc:
            return self._error_result(exc, account=account, operation=operation)
        except Exception as exc:  # the port never raises for processor failures
            return self._unexpected(exc, operation=operation)
        return self._intent_result(intent, account=account, operation=operation)

    def _find(self, attempt_id: str) -> GatewayResult:
        """The truth about an attempt found by its id (see the module docstring)."""
        try:
            intent_id, certain = self._lookup(attempt_id)
        except Exception as exc:  # the lookup is best effort: any failure means we cannot tell
            return GatewayResult(
                Outcome.UNKNOWN,
                GatewayStatus.UNKNOWN,
                message=f"no reference, and looking the attempt up failed: {_describe(exc)}",
            )
        if intent_id is not None:
            return self.retrieve(attempt_id=attempt_id, reference=intent_id)
        if certain:
            return GatewayResult(
                Outcome.GATEWAY_ERROR, GatewayStatus.NOT_FOUND, message="no PaymentIntent has this attempt id"
            )
        return GatewayResult(
            Outcome.UNKNOWN,
            GatewayStatus.UNKNOWN,
            message="no PaymentIntent found with this attempt id, but the lookup could not cover them all",
        )

    def _lookup(self, attempt_id: str) -> tuple[str | None, bool]:
        """(PaymentIntent id, or None and whether "none" is certain). Stripe errors propagate."""
        horizon = time.time() - float(self.settings.get("lookup_window_seconds", LOOKUP_WINDOW_SECONDS))
        window_covered = False
        starting_after: str | None = None
        for _ in range(int(self.settings.get("lookup_max_pages", LOOKUP_MAX_PAGES))):
            params: PaymentIntentListParams = {"limit": 100}
            if starting_after:
                params["starting_after"] = starting_after
            page = self.client.v1.payment_intents.list(params).to_dict()
            intents = page.get("data") or []
            for intent in intents:
                if (intent.get("metadata") or {}).get("attempt_id") == attempt_id:
                    return intent["id"], True
            if not page.get("has_more") or not intents:
                return None, not self.settings.get("direct_charges")  # we saw every PaymentIntent
            if int(intents[-1].get("created") or 0) < horizon:
                window_covered = True
                break
            starting_after = intents[-1]["id"]
        escaped = attempt_id.replace("\\", "\\\\").replace("'", "\\'")
        try:
            found = self.client.v1.payment_intents.search(
                {"query": f"metadata['attempt_id']:'{escaped}'", "limit": 10}
            ).to_dict()
        except stripe.StripeError:  # Search unavailable (localstripe, some regions)
            return None, False
        matches = [
            i for i in found.get("data") or [] if (i.get("metadata") or {}).get("attempt_id") == attempt_id
        ]
        if matches:
            return matches[0]["id"], True
        return None, window_covered and not self.settings.get("direct_charges")

    # ----------------------------------------------------------------- mapping

    def _intent_result(self, intent: dict, *, account: str | None, operation: str) -> GatewayResult:
        stripe_status = intent.get("status") or ""
        status = _INTENT_STATUS.get(stripe_status, GatewayStatus.UNKNOWN)
        charge = intent.get("latest_charge") if isinstance(intent.get("latest_charge"), dict) else None
        captured, refunded, fee = _charge_amounts(charge)
        authorized = (
            int(intent.get("amount") or 0)
            if status in (GatewayStatus.AUTHORIZED, GatewayStatus.CAPTURED)
            else 0
        )
        error = intent.get("last_payment_error") or {}
        decline_code = error.get("decline_code") or error.get("code")
        advice_code = error.get("advice_code")
        if status in (GatewayStatus.AUTHORIZED, GatewayStatus.CAPTURED, GatewayStatus.CANCELED):
            outcome = Outcome.SUCCEEDED
        elif status == GatewayStatus.REQUIRES_ACTION:
            outcome = Outcome.REQUIRES_ACTION
        elif status == GatewayStatus.DECLINED:
            outcome = decline_outcome(decline_code, advice_code)
        elif status == GatewayStatus.ERROR:
            outcome = Outcome.GATEWAY_ERROR
        else:
            outcome = Outcome.UNKNOWN
        if status != GatewayStatus.DECLINED:
            decline_code = advice_code = None
        message = f"{operation}: PaymentIntent {stripe_status}"
        if error.get("message"):
            message += f": {error['message']}"
        return GatewayResult(
            outcome,
            status,
            reference=_reference(intent.get("id"), account),
            amount_authorized=authorized,
            amount_captured=captured,
            amount_refunded=refunded,
            fee=fee,
            decline_code=decline_code,
            advice_code=advice_code,
            message=message,
            raw=_trimmed(intent),
        )

    def _error_result(self, exc: stripe.StripeError, *, account: str | None, operation: str) -> GatewayResult:
        error = exc.error.to_dict() if exc.error is not None else {}
        intent = error.get("payment_intent") if isinstance(error.get("payment_intent"), dict) else None
        reference = _reference(intent.get("id"), account) if intent else None
        raw: dict[str, Any] = {
            "error": {
                k: error.get(k) for k in ("type", "code", "decline_code", "advice_code") if error.get(k)
            },
            "http_status": exc.http_status,
        }
        if intent:
            raw.update(_trimmed(intent))
        message = f"{operation}: {_describe(exc)}"

        if isinstance(exc, stripe.CardError):
            decline_code = error.get("decline_code") or exc.code or "card_declined"
            advice_code = error.get("advice_code")
            return GatewayResult(
                decline_outcome(decline_code, advice_code),
                GatewayStatus.DECLINED,
                reference=reference,
                decline_code=decline_code,
                advice_code=advice_code,
                message=message,
                raw=raw,
            )
        if isinstance(exc, stripe.APIConnectionError):
            outcome = connection_outcome(exc)
            if outcome == Outcome.UNKNOWN:
                message = f"{operation}: {_LOST_ANSWER} ({_describe(exc)})"
            status = GatewayStatus.ERROR if outcome == Outcome.GATEWAY_ERROR else GatewayStatus.UNKNOWN
            return GatewayResult(outcome, status, message=message, raw=raw)
        if isinstance(exc, stripe.IdempotencyError) or exc.http_status == 409:
            # The key is in flight or was used for a different request: a charge may exist.
            return GatewayResult(
                Outcome.UNKNOWN, GatewayStatus.UNKNOWN, reference=reference, message=message, raw=raw
            )
        if intent is not None:
            # Stripe refused the operation for the PaymentIntent's state (e.g. capture after cancel)
            # and says what that state is.
            truth = self._intent_result(intent, account=account, operation=operation)
            if operation == "cancel" and truth.status == GatewayStatus.CANCELED:
                return truth  # already cancelled: idempotent
            return GatewayResult(
                Outcome.GATEWAY_ERROR,
                truth.status,
                reference=truth.reference,
                amount_authorized=truth.amount_authorized,
                amount_captured=truth.amount_captured,
                amount_refunded=truth.amount_refunded,
                fee=truth.fee,
                message=message,
                raw=raw,
            )
        if exc.http_status == 404 and operation == "retrieve":
            return GatewayResult(Outcome.GATEWAY_ERROR, GatewayStatus.NOT_FOUND, message=message, raw=raw)
        if exc.http_status in (500, 504) and operation != "retrieve":
            # Stripe documents a 500 as "the result is unknown": the request may have been
            # processed. Never fail over on it; the resolver replays it with the same key.
            return GatewayResult(
                Outcome.UNKNOWN, GatewayStatus.UNKNOWN, reference=reference, message=message, raw=raw
            )
        # 502/503, 429, authentication, permission, invalid request: Stripe did not act.
        return GatewayResult(
            Outcome.GATEWAY_ERROR, GatewayStatus.ERROR, reference=reference, message=message, raw=raw
        )

    @staticmethod
    def _unexpected(exc: Exception, *, operation: str) -> GatewayResult:
        logger.exception("stripe %s: unexpected error", operation)
        return GatewayResult(
            Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message=f"{operation}: unexpected {_describe(exc)}"
        )


def _refund_found(refund: dict, intent_id: str, refund_id: str) -> GatewayResult:
    status = refund.get("status")
    if status in ("succeeded", "pending"):
        outcome, truth = Outcome.SUCCEEDED, GatewayStatus.CAPTURED
    elif status in ("failed", "canceled"):
        outcome, truth = Outcome.DECLINED_HARD, GatewayStatus.DECLINED
    else:  # requires_action: not settled yet
        outcome, truth = Outcome.UNKNOWN, GatewayStatus.UNKNOWN
    return GatewayResult(
        outcome,
        truth,
        reference=refund.get("id"),
        amount_refunded=int(refund.get("amount") or 0),
        message=f"refund {status}"
        + (f": {refund['failure_reason']}" if refund.get("failure_reason") else ""),
        raw={"id": refund.get("id"), "status": status, "payment_intent": intent_id, "refund_id": refund_id},
    )


def _describe(exc: BaseException) -> str:
    """One short line for ``GatewayResult.message``."""
    if isinstance(exc, stripe.APIConnectionError) and exc.__cause__ is not None:
        text = f"{type(exc).__name__}: {type(exc.__cause__).__name__}: {exc.__cause__}"
    elif isinstance(exc, stripe.StripeError):
        status = f"HTTP {exc.http_status} " if exc.http_status else ""
        text = f"{status}{type(exc).__name__}: {exc.user_message or exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."
