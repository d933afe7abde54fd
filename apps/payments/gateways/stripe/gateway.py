"""Stripe adapter: the gateway port on the official SDK (``stripe.StripeClient``, stripe-python 15).

A PaymentIntent becomes our result in one place, ``shapes.intent_result``, for the adapter's calls
and for the webhooks alike (``webhooks.py``); failures are read once (``errors.py``).

One attempt is one PaymentIntent, created and confirmed in a single call (``confirm=True``) with
our attempt id as the idempotency key and as ``metadata.attempt_id``. The SDK never retries
(``max_network_retries=0``): the mesh decides retries and failover.

References. ``GatewayResult.reference`` is the PaymentIntent id (``pi_...``). A charge made on a
connected account (``ChargeRequest.connected_account``, a direct charge) lives in that account, and
capture, cancel, refund and retrieve must send the same ``Stripe-Account`` header, but the port
passes only the reference to them; so such references carry the account: ``acct_.../pi_...``.

Outcome classes:

- A PaymentIntent's status as ``shapes.py`` says (``canceled`` is a void, never a success).
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

Saved cards. ``save_method`` confirms a SetupIntent (``usage=off_session``) and a charge with
``setup_future_usage`` saves the card while charging; either attaches the PaymentMethod to a
Stripe Customer (``customers.py``), which the credential keeps as ``stripe_customer`` and every
later PaymentIntent names. A merchant-initiated charge (``off_session``) of a card whose consent
was given elsewhere passes the first charge's network transaction id
(``payment_method_options.card.mit_exemption``). A successful charge reports the network
transaction id of its charge (``latest_charge.payment_method_details.card``).

Amounts: see ``shapes.py``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, cast

import stripe
from stripe.params import (
    PaymentIntentCancelParams,
    PaymentIntentCaptureParams,
    PaymentIntentCreateParams,
    PaymentIntentListParams,
    PaymentIntentRetrieveParams,
    RefundCreateParams,
    RefundListParams,
    SetupIntentCreateParams,
)

from apps.payments.gateways.base import (
    ChargeRequest,
    GatewayCallError,
    GatewayConfig,
    GatewayResult,
    GatewayStatus,
    Outcome,
    SavedMethod,
)
from apps.payments.gateways.stripe.connect import ConnectClient
from apps.payments.gateways.stripe.customers import stripe_customer
from apps.payments.gateways.stripe.errors import StripeFailure, describe, never_sent, read_failure
from apps.payments.gateways.stripe.sdk import request_options, stripe_client
from apps.payments.gateways.stripe.shapes import (
    charge_amounts,
    decline_outcome,
    intent_result,
    intent_saved,
    metadata_matches,
    metadata_query,
    qualified_reference,
    refund_settled,
    setup_intent_saved,
    split_reference,
    trimmed,
)
from apps.payments.gateways.stripe.webhooks import StripeNotifications

logger = logging.getLogger(__name__)

_EXPAND_INTENT = ["latest_charge", "latest_charge.balance_transaction"]
LOOKUP_WINDOW_SECONDS = 3600  # far beyond Search's lag behind writes
LOOKUP_MAX_PAGES = 10
_LOST_ANSWER = "request sent but the answer was lost: the charge may exist"


def connection_outcome(exc: stripe.APIConnectionError) -> Outcome:
    """GATEWAY_ERROR when the request provably never reached Stripe, else UNKNOWN (see
    ``errors.never_sent``)."""
    return Outcome.GATEWAY_ERROR if never_sent(exc) else Outcome.UNKNOWN


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
    notifications = StripeNotifications
    connect = ConnectClient  # the Connect port (optional: processors without one leave it out)

    def __init__(self, config: GatewayConfig, *, http_client: stripe.HTTPClient | None = None):
        secret_key = (config.credentials or {}).get("secret_key")
        if not secret_key:
            raise GatewayCallError(
                f"gateway account {config.account_id!r}: credentials['secret_key'] is missing"
            )
        self.config = config
        self.settings = config.settings or {}
        self.client = stripe_client(
            secret_key,
            api_base=self.settings.get("api_base"),
            timeout_seconds=float(config.timeout_seconds),
            http_client=http_client,
        )

    # ----------------------------------------------------------------- port

    def authorize(self, request: ChargeRequest) -> GatewayResult:
        """Create and confirm a PaymentIntent; idempotent by attempt id for Stripe's 24 h window.

        Saved cards: a credential holding ``stripe_customer`` names that Customer (Stripe refuses
        a PaymentMethod attached to a Customer without it). ``setup_future_usage`` saves the card
        while charging it: the PaymentIntent names the Customer to attach it to (ours, found or
        created first, see ``customers.py``; when Stripe cannot give one nothing is charged:
        GATEWAY_ERROR) and the PaymentMethod comes back expanded as ``GatewayResult.saved``.
        An off-session charge that Stripe wants authenticated is a 402 ``authentication_required``:
        DECLINED_SOFT with that decline code."""
        credential = request.credential or {}
        customer = credential.get("stripe_customer")
        expand = list(_EXPAND_INTENT)
        if request.setup_future_usage:
            if not customer:
                try:
                    customer = stripe_customer(
                        self.client,
                        customer_reference=request.customer_reference,
                        idempotency_key=request.attempt_id,
                        account=request.connected_account,
                    )
                except Exception as exc:  # no PaymentIntent was sent: nothing charged
                    return GatewayResult(
                        Outcome.GATEWAY_ERROR,
                        GatewayStatus.ERROR,
                        message=f"authorize: no Stripe Customer to save the card to: {describe(exc)}",
                    )
            expand.append("payment_method")
        params: PaymentIntentCreateParams = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "payment_method": request.payment_method,
            "payment_method_types": ["card"],
            "confirm": True,
            "capture_method": "automatic" if request.capture else "manual",
            "metadata": _metadata(request),
            "expand": expand,
        }
        if customer:
            params["customer"] = customer
        if request.setup_future_usage:
            params["setup_future_usage"] = (
                "on_session" if request.setup_future_usage == "on_session" else "off_session"
            )
        if request.off_session:
            params["off_session"] = True
            if request.network_transaction_id and not credential.get("stripe_customer"):
                # A card whose customer consented elsewhere (saved at another processor, or
                # migrated): the first charge's network transaction id links this one to that
                # consent. Cards Stripe saved carry their own. Stripe takes it only on accounts
                # where its MIT-exemption feature is enabled (ask Stripe); elsewhere the request
                # is refused as invalid, nothing charged.
                params["payment_method_options"] = cast(
                    Any,
                    {"card": {"mit_exemption": {"network_transaction_id": request.network_transaction_id}}},
                )
        if request.description:  # localstripe refuses the parameter, so only when there is one
            params["description"] = request.description
        # With a return URL Stripe answers 3-D Secure as ``redirect_to_url`` (its page, then back to
        # us); without one as ``use_stripe_sdk``, which no redirect can complete.
        return_url = request.return_url or self.settings.get("return_url")
        if return_url:
            params["return_url"] = return_url
        options = request_options(request.attempt_id, account=request.connected_account)
        return self._call(
            lambda: self.client.v1.payment_intents.create(params, options),
            account=request.connected_account,
            operation="authorize",
            saving=bool(request.setup_future_usage),
        )

    def capture(
        self, *, attempt_id: str, reference: str, amount: int, currency: str, idempotency_key: str
    ) -> GatewayResult:
        """Capture ``amount`` of an authorised PaymentIntent (the rest is released)."""
        params: PaymentIntentCaptureParams = {"amount_to_capture": amount, "expand": _EXPAND_INTENT}
        return self._on_intent(
            "capture", self.client.v1.payment_intents.capture, reference, params, idempotency_key
        )

    def cancel(self, *, attempt_id: str, reference: str | None, idempotency_key: str) -> GatewayResult:
        """Void an authorisation. Without a reference the PaymentIntent is looked up by attempt id
        first (see the module docstring); cancelling an already cancelled one succeeds."""
        if reference is None:
            found = self._find(attempt_id)
            if found.status == GatewayStatus.NOT_FOUND:
                return GatewayResult(Outcome.SUCCEEDED, GatewayStatus.NOT_FOUND, message="nothing to cancel")
            if found.status == GatewayStatus.CANCELED:
                return replace(found, outcome=Outcome.SUCCEEDED)  # void already: our cancel is done
            if found.reference is None:
                return found
            reference = found.reference
        params: PaymentIntentCancelParams = {"expand": _EXPAND_INTENT}
        return self._on_intent(
            "cancel", self.client.v1.payment_intents.cancel, reference, params, idempotency_key
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
        options = request_options(idempotency_key, account=account)
        try:
            refund = self.client.v1.refunds.create(params, options).to_dict()
        except stripe.StripeError as exc:
            return self._error_result(exc, account=account, operation="refund")
        except Exception as exc:  # the port never raises for processor failures
            return self._unexpected(exc, operation="refund")
        charge = refund.get("charge") if isinstance(refund.get("charge"), dict) else None
        captured, refunded, fee = charge_amounts(charge)
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
        params: PaymentIntentRetrieveParams = {"expand": _EXPAND_INTENT}
        return self._on_intent("retrieve", self.client.v1.payment_intents.retrieve, reference, params, None)

    def action_result(
        self,
        *,
        request: ChargeRequest,
        reference: str | None,
        details: Mapping[str, str],
        idempotency_key: str,
    ) -> GatewayResult:
        """The customer came back from Stripe's 3-D Secure page: the PaymentIntent as it is now
        (``retrieve``; Stripe settles it before redirecting). ``details`` (Stripe adds
        ``payment_intent`` and its client secret to the return URL) are not needed: we know it."""
        return self.retrieve(attempt_id=request.attempt_id, reference=reference)

    def refund_retrieve(self, *, attempt_id: str, reference: str, refund_id: str) -> GatewayResult:
        """Our refund ``refund_id`` found among the PaymentIntent's refunds by ``metadata.refund_id``
        (newest first, at most ``lookup_max_pages`` pages of 100): succeeded or pending ->
        SUCCEEDED, failed or canceled -> DECLINED_HARD, none while every refund was seen ->
        NOT_FOUND; any error, or more refunds than the pages hold -> UNKNOWN (cannot tell)."""
        account, intent_id = split_reference(reference)
        options = request_options(None, account=account)
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
                Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message=f"refund lookup failed: {describe(exc)}"
            )
        return GatewayResult(
            Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message="refund lookup: more refunds than the pages hold"
        )

    def save_method(
        self, *, token: str, customer_reference: str | None, idempotency_key: str = ""
    ) -> SavedMethod:
        """Save the PaymentMethod the storefront's Elements created (``pm_...``) for later
        off-session charges: a SetupIntent confirmed at once (``usage=off_session``) for the
        Stripe Customer of ``customer_reference`` (``customers.py``), idempotent by
        ``idempotency_key`` (by the token when none is given). The PaymentMethod id is the
        credential, ``extra["stripe_customer"]`` its Customer. Answers, never raises:
        ``authentication_required`` (3-D Secure wanted: save it on session, through checkout),
        ``card_declined``, ``resource_missing`` (no such PaymentMethod), ``payment_method_invalid``
        (Stripe refused the token as it is), ``gateway_error`` (Stripe down, 5xx, answer lost: the
        same call may be made again, with the same key)."""
        key = idempotency_key or f"save_{hashlib.sha256(token.encode()).hexdigest()[:32]}"
        try:
            customer = stripe_customer(
                self.client, customer_reference=customer_reference, idempotency_key=key
            )
            params: SetupIntentCreateParams = {
                "payment_method": token,
                "payment_method_types": ["card"],
                "confirm": True,
                "usage": "off_session",
                "customer": customer,
                "metadata": {"saved_with": key},
                "expand": ["payment_method", "latest_attempt"],
            }
            if customer_reference:
                params["metadata"]["customer_reference"] = customer_reference
            if self.settings.get("return_url"):
                params["return_url"] = self.settings["return_url"]
            setup_intent = self.client.v1.setup_intents.create(params, request_options(key)).to_dict()
        except stripe.StripeError as exc:
            return _save_failure(read_failure(exc))
        except Exception as exc:  # the port never raises for processor failures
            logger.exception("stripe save_method: unexpected error")
            return SavedMethod(False, code="gateway_error", message=f"save payment method: {describe(exc)}")
        return setup_intent_saved(setup_intent)

    # ----------------------------------------------------------------- calls

    def _on_intent(
        self,
        operation: str,
        send: Callable[..., stripe.PaymentIntent],
        reference: str,
        params: Any,
        idempotency_key: str | None,
    ) -> GatewayResult:
        """``send`` (the SDK's capture, cancel or retrieve) for the PaymentIntent that ``reference``
        names, on the connected account it names, if any."""
        account, intent_id = split_reference(reference)
        options = request_options(idempotency_key, account=account)
        return self._call(lambda: send(intent_id, params, options), account=account, operation=operation)

    def _call(
        self,
        send: Callable[[], stripe.PaymentIntent],
        *,
        account: str | None,
        operation: str,
        saving: bool = False,
    ) -> GatewayResult:
        """``send`` and its answer as our result; with ``saving`` (``setup_future_usage``), the
        card a successful PaymentIntent saved as ``saved``."""
        try:
            intent = send().to_dict()
        except stripe.StripeError as exc:
            return self._error_result(exc, account=account, operation=operation)
        except Exception as exc:  # the port never raises for processor failures
            return self._unexpected(exc, operation=operation)
        result = intent_result(intent, account=account, operation=operation)
        if saving and result.outcome == Outcome.SUCCEEDED:
            return replace(result, saved=intent_saved(intent))
        return result

    def _find(self, attempt_id: str) -> GatewayResult:
        """The truth about an attempt found by its id (see the module docstring)."""
        try:
            intent_id, certain = self._lookup(attempt_id)
        except Exception as exc:  # the lookup is best effort: any failure means we cannot tell
            return GatewayResult(
                Outcome.UNKNOWN,
                GatewayStatus.UNKNOWN,
                message=f"no reference, and looking the attempt up failed: {describe(exc)}",
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
            mine = metadata_matches(page, "attempt_id", attempt_id)
            if mine:
                return mine[0]["id"], True
            if not page.get("has_more") or not intents:
                return None, not self.settings.get("direct_charges")  # we saw every PaymentIntent
            if int(intents[-1].get("created") or 0) < horizon:
                window_covered = True
                break
            starting_after = intents[-1]["id"]
        try:
            found = self.client.v1.payment_intents.search(
                {"query": metadata_query("attempt_id", attempt_id), "limit": 10}
            ).to_dict()
        except stripe.StripeError:  # Search unavailable (localstripe, some regions)
            return None, False
        matches = metadata_matches(found, "attempt_id", attempt_id)
        if matches:
            return matches[0]["id"], True
        return None, window_covered and not self.settings.get("direct_charges")

    # ----------------------------------------------------------------- failures

    def _error_result(self, exc: stripe.StripeError, *, account: str | None, operation: str) -> GatewayResult:
        failure = read_failure(exc)
        error, intent = failure.error, failure.payment_intent
        reference = qualified_reference(intent.get("id"), account) if intent else None
        raw: dict[str, Any] = {
            "error": {
                k: error.get(k) for k in ("type", "code", "decline_code", "advice_code") if error.get(k)
            },
            "http_status": failure.http_status,
        }
        if intent:
            raw.update(trimmed(intent))
        message = f"{operation}: {failure.description}"

        if failure.card:
            decline_code = error.get("decline_code") or exc.code or "card_declined"
            return GatewayResult(
                decline_outcome(decline_code, failure.advice_code),
                GatewayStatus.DECLINED,
                reference=reference,
                decline_code=decline_code,
                advice_code=failure.advice_code,
                message=message,
                raw=raw,
            )
        if failure.connection:
            if failure.sent:
                message = f"{operation}: {_LOST_ANSWER} ({failure.description})"
                return GatewayResult(Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message=message, raw=raw)
            return GatewayResult(Outcome.GATEWAY_ERROR, GatewayStatus.ERROR, message=message, raw=raw)
        if failure.in_flight:
            # The key is in flight or was used for a different request: a charge may exist.
            return GatewayResult(
                Outcome.UNKNOWN, GatewayStatus.UNKNOWN, reference=reference, message=message, raw=raw
            )
        if intent is not None:
            # Stripe refused the operation for the PaymentIntent's state (e.g. capture after cancel)
            # and says what that state is.
            truth = intent_result(intent, account=account, operation=operation)
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
        if failure.http_status == 404 and operation == "retrieve":
            return GatewayResult(Outcome.GATEWAY_ERROR, GatewayStatus.NOT_FOUND, message=message, raw=raw)
        if failure.http_status in (500, 504) and operation != "retrieve":
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
            Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message=f"{operation}: unexpected {describe(exc)}"
        )


# Stripe's codes for a card that failed to save (a card error on the SetupIntent's confirmation).
_SAVE_DECLINED = frozenset(
    {"card_declined", "setup_intent_authentication_failure", "expired_card", "incorrect_cvc"}
)


def _save_failure(failure: StripeFailure) -> SavedMethod:
    """A failed SetupIntent (or its Customer) as the answer to saving a card."""
    code = failure.code or ""
    message = f"save payment method: {failure.description}"
    if code == "authentication_required":
        return SavedMethod(False, code="authentication_required", message=message)
    if failure.card or code in _SAVE_DECLINED:
        codes = ", ".join(c for c in (code, failure.decline_code) if c) or "card_declined"
        return SavedMethod(False, code="card_declined", message=f"{message} ({codes})")
    if failure.http_status == 404 or code == "resource_missing":
        return SavedMethod(False, code="resource_missing", message=message)
    if failure.type == "invalid_request_error" and (failure.param or "").startswith("payment_method"):
        return SavedMethod(False, code="payment_method_invalid", message=message)
    return SavedMethod(False, code="gateway_error", message=message)


def _refund_found(refund: dict, intent_id: str, refund_id: str) -> GatewayResult:
    status = refund.get("status")
    settled = refund_settled(status)
    if settled is True:
        outcome, truth = Outcome.SUCCEEDED, GatewayStatus.CAPTURED
    elif settled is False:
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
