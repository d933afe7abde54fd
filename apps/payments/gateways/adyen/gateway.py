"""Adyen, through the official SDK (``Adyen`` 16.x, Checkout API v72). Its webhooks are read in
``webhooks.py``.

Configuration (``GatewayConfig``):

- ``credentials``: ``api_key`` (the x-api-key of a web service user) and ``merchant_account``.
- ``settings``: ``environment`` ("test" or "live"; default "test"), ``live_endpoint_prefix``
  (required for live: ``https://{prefix}-checkout-live.adyenpayments.com/checkout/...``),
  ``return_url`` (sent with every payment when the ChargeRequest has none: its ``return_url``,
  the payment's with ``payment=<pay_id>``, wins),
  ``capture_delay_hours`` (optional: sent as ``captureDelayHours`` when capturing, to pin the
  capture timing instead of relying on the merchant account's setting), ``zero_auth_currency``
  (the currency of the zero-value authorisation that saves a card; default EUR), and
  ``connect_timeout_seconds`` (default 3; ``timeout_seconds`` bounds the wait for the answer).

What is sent: ``POST /payments`` with ``reference`` = our attempt id, the amount in minor units,
``paymentMethod`` {"type": "scheme", "storedPaymentMethodId": token} (or, when the token is a JSON
object, Adyen's encrypted details passed through as they are), ``shopperReference`` when known,
and ``additionalData.manualCapture`` = "true" to authorise only. Captures, refunds and cancels go
to ``/payments/{pspReference}/captures|refunds|cancels``; a cancel without a pspReference is a
technical cancel, ``POST /cancels`` with ``paymentReference`` = our attempt id. Every call carries
the ``Idempotency-Key`` header (the attempt id for payments, the caller's key otherwise).

How answers are read:

- ``Authorised`` succeeds (captured when capture was asked); ``Refused`` / ``Cancelled`` are
  declines, soft or hard by ``refusalReasonCode`` (``REFUSALS`` below, written in the shared
  decline vocabulary of ``apps/payments/declines.py``), refined by the scheme's merchant advice
  code when Adyen returns one; ``RedirectShopper`` / ``IdentifyShopper`` / ``ChallengeShopper`` /
  ``PresentToShopper`` require action (Adyen's ``action`` object is kept in ``raw["action"]``; a
  GET ``redirect`` action's url is the result's ``action_url``, where the shopper is sent, and
  their return is answered by ``action_result``: ``/payments/details`` with the
  ``redirectResult``);
  ``Error`` is a gateway error (a final state: nothing was charged).
- ``Pending`` / ``Received`` are UNKNOWN: Adyen has taken the payment but does not know the
  outcome yet (asynchronous methods); money may still move, so nothing may fail over. The
  AUTHORISATION webhook settles it.
- HTTP errors: 401/403/404, and errors Adyen types "configuration" or "security", are gateway
  errors (our account is unusable: fail over); other 4xx (``errorType`` "validation") are hard
  declines of this request; 5xx are gateway errors (Adyen documents 500 for requests it could not
  process) except 504, an intermediary's timeout after forwarding, which is UNKNOWN; 422 with
  errorCode 704 (the same idempotency key is still being processed) is UNKNOWN.
- Transport: no connection (refused, DNS, connect timeout, a certificate that fails verification)
  is a gateway error; anything after the request may have left (read timeout, connection dropped,
  other TLS errors) is UNKNOWN.

Modifications are asynchronous at Adyen: captures, refunds and cancels answer ``"status":
"received"``, and the outcome arrives later in the CAPTURE / REFUND / CANCELLATION /
TECHNICAL_CANCEL webhooks (``success`` true or false; CAPTURE_FAILED and REFUND_FAILED can
follow). A received capture or refund is reported SUCCEEDED with the status the charge will have
(CAPTURED; ``raw["status"]`` keeps "received"), and the inbound webhook handler must be able to
undo it. A received cancel is SUCCEEDED with status UNKNOWN: Adyen cannot cancel a captured
payment, and a technical cancel does not even know whether the payment exists, so claiming
CANCELED could let the mesh fail over while a first charge stands.

Stored cards (Adyen tokenization): ``save_method`` is a zero-value authorisation with
``storePaymentMethod``; a charge with ``setup_future_usage`` stores the card while charging
(``storePaymentMethod``, ``shopperInteraction: Ecommerce``, ``recurringProcessingModel``
``CardOnFile`` for on-session use, else ``UnscheduledCardOnFile`` / ``Subscription``). Either
answers the stored method id (``additionalData.tokenization.storedPaymentMethodId``, or the older
``recurring.recurringDetailReference``) under its ``shopperReference``: the credential is
``{"reference": id, "shopper_reference": ...}`` (``stored_method``). A merchant-initiated charge
(``off_session``) sends ``shopperInteraction: ContAuth``, ``recurringProcessingModel``
``Subscription`` (``recurring``) or ``UnscheduledCardOnFile``, the stored method under its
shopper, and ``additionalData.networkTxReference`` when given. Every authorised answer's
``additionalData.networkTxReference`` is reported as the network transaction id.

``retrieve``: Checkout has no synchronous lookup of a payment (by pspReference or by our
reference), so it answers UNKNOWN without calling Adyen. An UNKNOWN attempt at Adyen is resolved
by (a) replaying ``authorize`` with the identical ChargeRequest: same Idempotency-Key, so Adyen
returns the first answer if it processed the payment (keys live at least 31 days), or processes
it now if it never arrived; or (b) a technical cancel (``cancel(reference=None)``), confirmed by
the TECHNICAL_CANCEL webhook; or (c) the AUTHORISATION webhook.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import requests
from Adyen.client import AdyenClient
from Adyen.exceptions import AdyenAPIResponseError, AdyenError
from Adyen.services.checkout import ModificationsApi, PaymentsApi
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from apps.payments.gateways.adyen.webhooks import AdyenNotifications
from apps.payments.gateways.base import (
    AUTHENTICATION_FAILED,
    CardInfo,
    ChargeRequest,
    GatewayCallError,
    GatewayConfig,
    GatewayResult,
    GatewayStatus,
    Outcome,
    SavedMethod,
)
from apps.payments.gateways.vault import ForwardedRequest, VaultCharge

APPLICATION_NAME = "marketplace-payments"
CHECKOUT_VERSION = "v72"  # the Checkout API version of forwarded requests (the SDK's)

# refusalReasonCode -> (decline code in the shared vocabulary, hard?, advice code).
# Adyen's list: docs.adyen.com/development-resources/refusal-reasons. Hard: this card will not
# work for this payment anywhere; soft: another acquirer or a later try may approve.
REFUSALS: dict[str, tuple[str, bool, str | None]] = {
    "2": ("generic_decline", False, None),  # Refused
    "3": ("call_issuer", False, None),  # Referral
    "4": ("processing_error", False, None),  # Acquirer Error
    "5": ("restricted_card", True, None),  # Blocked Card
    "6": ("expired_card", True, None),  # Expired Card
    "7": ("invalid_amount", True, None),  # Invalid Amount
    "8": ("incorrect_number", True, None),  # Invalid Card Number
    "9": ("issuer_not_available", False, None),  # Issuer Unavailable
    "10": ("card_not_supported", True, None),  # Not supported
    "11": ("authentication_required", False, None),  # 3D Not Authenticated
    "12": ("insufficient_funds", False, None),  # Not enough balance
    "14": ("fraudulent", True, None),  # Acquirer Fraud
    "15": ("generic_decline", False, None),  # Cancelled
    "16": ("shopper_cancelled", False, None),  # Shopper Cancelled
    "17": ("incorrect_pin", False, None),  # Invalid Pin
    "18": ("pin_try_exceeded", True, None),  # Pin tries exceeded
    "19": ("processing_error", False, None),  # Pin validation not possible
    "20": ("fraudulent", True, None),  # FRAUD (Adyen's risk checks)
    "21": ("processing_error", False, None),  # Not Submitted
    "22": ("fraudulent", True, None),  # FRAUD-CANCELLED
    "23": ("transaction_not_allowed", False, None),  # Transaction Not Permitted
    "24": ("incorrect_cvc", True, None),  # CVC Declined
    "25": ("restricted_card", True, None),  # Restricted Card
    "26": ("revocation_of_authorization", True, "do_not_try_again"),  # Revocation Of Auth
    "27": ("generic_decline", False, None),  # Declined Non Generic
    "28": ("card_velocity_exceeded", False, None),  # Withdrawal amount exceeded
    "29": ("withdrawal_count_limit_exceeded", False, None),  # Withdrawal count exceeded
    "31": ("fraudulent", True, None),  # Issuer Suspected Fraud
    "32": ("incorrect_address", True, "confirm_card_data"),  # AVS Declined
    "33": ("online_or_offline_pin_required", False, None),  # Card requires online pin
    "34": ("invalid_account", True, None),  # No checking account available on Card
    "35": ("invalid_account", True, None),  # No savings account available on Card
    "36": ("online_or_offline_pin_required", False, None),  # Mobile pin required
    "37": ("reenter_transaction", False, None),  # Contactless fallback
    "38": ("authentication_required", False, None),  # Authentication required (SCA soft decline)
    "39": ("processing_error", False, None),  # RReq not received from DS
    "40": ("try_again_later", False, None),  # Current AID is in Penalty Box
    "41": ("online_or_offline_pin_required", False, None),  # CVM Required Restart Payment
    "42": ("processing_error", False, None),  # 3DS Authentication Error
    "43": ("online_or_offline_pin_required", False, None),  # Online PIN required
    "44": ("reenter_transaction", False, None),  # Try another interface
    "45": ("reenter_transaction", False, None),  # Chip downgrade mode
    # Adyen stops retries that would cost scheme fees: retrying elsewhere is exactly what not to do.
    "46": ("retries_blocked", True, "do_not_try_again"),
}

# Scheme merchant advice codes (additionalData.merchantAdviceCode, e.g. "03: Do not try again"):
# the issuer's own word outranks our reading of the refusal reason.
MERCHANT_ADVICE: dict[str, tuple[bool, str]] = {
    "01": (True, "confirm_card_data"),  # new account information available
    "02": (False, "try_again_later"),  # cannot approve at this time
    "03": (True, "do_not_try_again"),
    "21": (True, "do_not_try_again"),  # payment cancellation (recurring stopped)
}

ACTION_RESULTS = {"RedirectShopper", "IdentifyShopper", "ChallengeShopper", "PresentToShopper"}
# Refusals after the shopper's redirect that mean the authentication itself failed: "3D Not
# Authenticated", "3DS Authentication Error".
AUTHENTICATION_REFUSALS = {"11", "42"}


def redirect_url(action: dict) -> str:
    """The page to send the shopper to for an Adyen ``action``: a ``redirect`` with method GET
    (its ``url``). A POST redirect (``method: POST`` with ``data``, older 3-D Secure 1 issuers)
    or an in-page action (``threeDS2``, ``qrCode``, ...) needs Adyen's web components: none."""
    if action.get("type") == "redirect" and str(action.get("method", "GET")).upper() == "GET":
        return str(action.get("url") or "")
    return ""


# What we keep of a response for audit: no card data, no session blobs beyond the action.
_KEPT = (
    "resultCode",
    "pspReference",
    "merchantReference",
    "refusalReason",
    "refusalReasonCode",
    "amount",
    "action",
    "status",
    "paymentPspReference",
    "paymentReference",
    "reference",
    "errorCode",
    "errorType",
    "message",
    "title",
    "detail",
)
_KEPT_ADDITIONAL = ("merchantAdviceCode", "refusalReasonRaw")


class AdyenGateway:
    kind = "adyen"
    can_look_up = False  # Checkout has no payment lookup: ``retrieve`` always says UNKNOWN
    notifications = AdyenNotifications

    def __init__(self, config: GatewayConfig):
        credentials, settings = config.credentials or {}, config.settings or {}
        api_key = credentials.get("api_key")
        self.merchant_account = credentials.get("merchant_account")
        if not api_key or not self.merchant_account:
            raise GatewayCallError(
                f"{config.account_id}: adyen needs credentials api_key and merchant_account"
            )
        environment = settings.get("environment", "test")
        prefix = settings.get("live_endpoint_prefix")
        if environment not in ("test", "live") or (environment == "live" and not prefix):
            raise GatewayCallError(
                f"{config.account_id}: environment must be 'test' or 'live' (live needs live_endpoint_prefix)"
            )
        self.config = config
        self.settings = settings
        connect = min(float(settings.get("connect_timeout_seconds", 3.0)), config.timeout_seconds)
        client = AdyenClient(
            xapikey=api_key,
            platform=environment,
            live_endpoint_prefix=prefix,
            application_name=APPLICATION_NAME,
            http_force="requests",
            # requests takes (connect, read): only a read timeout can leave a charge behind.
            http_timeout=(connect, config.timeout_seconds),
        )
        self.payments = PaymentsApi(client=client)
        self.modifications = ModificationsApi(client=client)

    # ----------------------------------------------------------------- port

    def authorize(self, request: ChargeRequest) -> GatewayResult:
        """Idempotent by attempt id (the Idempotency-Key): a replay returns Adyen's first answer."""
        body = self._payment_body(request, self._payment_method(request.payment_method))
        answer = self._call(self.payments.payments, body, idempotency_key=request.attempt_id)
        if isinstance(answer, GatewayResult):
            return answer
        return self._payment_result(answer, request)

    def _payment_body(self, request: ChargeRequest, payment_method: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "merchantAccount": self.merchant_account,
            "reference": request.attempt_id,
            "amount": {"value": request.amount, "currency": request.currency},
            "paymentMethod": payment_method,
        }
        shopper = _shopper(request)
        if shopper:
            body["shopperReference"] = shopper
        additional: dict[str, str] = {}
        if request.off_session:  # merchant-initiated, on a card the shopper stored with us
            body["shopperInteraction"] = "ContAuth"
            body["recurringProcessingModel"] = _off_session_model(request)
            if request.network_transaction_id:
                # The first customer-initiated charge's network id (Visa transaction id,
                # Mastercard trace id): links this charge to the shopper's consent, wherever it
                # was given.
                additional["networkTxReference"] = request.network_transaction_id
        elif request.setup_future_usage:  # the shopper is here and agrees to store the card
            body["storePaymentMethod"] = True
            body["shopperInteraction"] = "Ecommerce"
            body["recurringProcessingModel"] = (
                "CardOnFile" if request.setup_future_usage == "on_session" else _off_session_model(request)
            )
            body["shopperReference"] = _storing_shopper(request)
        elif "storedPaymentMethodId" in body["paymentMethod"]:
            body["shopperInteraction"] = "Ecommerce"
            body["recurringProcessingModel"] = "CardOnFile"
        return_url = request.return_url or self.settings.get("return_url")
        if return_url:
            body["returnUrl"] = return_url
            if not request.off_session:
                # 3-D Secure 2 by redirect (a page the customer is sent to and comes back from),
                # never Adyen's native in-page flow, which needs its JavaScript component.
                body["authenticationData"] = {"threeDSRequestData": {"nativeThreeDS": "disabled"}}
        if not request.capture:
            additional["manualCapture"] = "true"
        elif self.settings.get("capture_delay_hours") is not None:
            body["captureDelayHours"] = int(self.settings["capture_delay_hours"])
        if additional:
            body["additionalData"] = additional
        return body

    # ----------------------------------------------------------------- saving a card

    def save_method(
        self, *, token: str, customer_reference: str | None, idempotency_key: str = ""
    ) -> SavedMethod:
        """Store the card in ``token`` (the encrypted details of Adyen's Drop-in / Card component)
        for later charges without the shopper: a zero-value authorisation (``amount.value`` 0,
        in ``settings["zero_auth_currency"]``, default EUR) with ``storePaymentMethod``,
        ``shopperInteraction: Ecommerce`` and ``recurringProcessingModel:
        UnscheduledCardOnFile``, under ``shopperReference`` = our customer (else the save's own
        key). ``reference`` and the Idempotency-Key are ``idempotency_key`` (a hash of the token
        when none is given): a retried save stores once. Answers, never raises: the stored
        method (``stored_method``); or ``card_declined`` (Refused), ``authentication_required``
        (3-D Secure wanted: the shopper must save it through checkout), ``payment_method_invalid``
        (Adyen's validation refused the details), ``gateway_error`` (down, 5xx, answer lost,
        or authorised but nothing stored: the same call may be made again)."""
        key = idempotency_key or f"save_{hashlib.sha256(token.encode()).hexdigest()[:32]}"
        shopper = customer_reference or key
        try:
            payment_method = self._payment_method(token)
        except GatewayCallError as exc:
            return SavedMethod(False, code="payment_method_invalid", message=f"save payment method: {exc}")
        body: dict[str, Any] = {
            "merchantAccount": self.merchant_account,
            "reference": key,
            "amount": {"value": 0, "currency": str(self.settings.get("zero_auth_currency", "EUR"))},
            "paymentMethod": payment_method,
            "storePaymentMethod": True,
            "shopperInteraction": "Ecommerce",
            "recurringProcessingModel": "UnscheduledCardOnFile",
            "shopperReference": shopper,
        }
        if self.settings.get("return_url"):
            body["returnUrl"] = self.settings["return_url"]
        answer = self._call(self.payments.payments, body, idempotency_key=key)
        if isinstance(answer, GatewayResult):
            failed = answer.decline_code == "invalid_request"
            return SavedMethod(
                False,
                code="payment_method_invalid" if failed else "gateway_error",
                message=f"save payment method: {answer.message}",
            )
        code = answer.get("resultCode")
        label = f"save payment method: {code or 'no resultCode'}"
        if code == "Authorised":
            saved = stored_method(answer, shopper)
            if saved is not None:
                return saved
            return SavedMethod(
                False,
                code="gateway_error",
                message=f"{label}, but Adyen stored nothing (is tokenization enabled for {self.merchant_account}?)",
            )
        if code in ("Refused", "Cancelled"):
            reason = answer.get("refusalReason") or ""
            return SavedMethod(
                False,
                code="card_declined",
                message=f"{label}: {reason} (adyen refusal {answer.get('refusalReasonCode', '?')})",
            )
        if code in ACTION_RESULTS:
            return SavedMethod(
                False,
                code="authentication_required",
                message=f"{label}: the card's issuer requires the shopper to authenticate; "
                "save it while the shopper is present, through checkout",
            )
        return SavedMethod(False, code="gateway_error", message=label)

    # ----------------------------------------------------------------- forwarded (vault) charges

    def forward_request(self, request: ChargeRequest) -> ForwardedRequest:
        """``POST /payments`` for a forwarder (Stripe Forwarding) to send with the card it holds:
        the card fields are left empty for it to fill (``number``, ``expiryMonth``/``expiryYear``,
        and ``cvc`` unless merchant-initiated: a CVC is not kept after use), and the card is stored at Adyen on the way (``storePaymentMethod``, with a
        ``shopperReference``: ours for the customer, else the attempt's) so later charges go
        direct. The same Idempotency-Key as a direct charge: Adyen itself never charges twice."""
        card = {"type": "scheme", "number": "", "expiryMonth": "", "expiryYear": "", "cvc": ""}
        replacements: tuple[str, ...] = ("card_number", "card_expiry", "card_cvc")
        if request.off_session:  # a CVC expires after use: a merchant-initiated charge goes without
            del card["cvc"]
            replacements = ("card_number", "card_expiry")
        body = self._payment_body(request, card)
        body["storePaymentMethod"] = True
        body["shopperReference"] = _storing_shopper(request)
        body.setdefault("shopperInteraction", "Ecommerce")
        body.setdefault("recurringProcessingModel", "CardOnFile")
        return ForwardedRequest(
            url=self._checkout_url("/payments"),
            body=json.dumps(body, separators=(",", ":")),
            headers={
                "Content-Type": "application/json",
                "X-API-Key": str((self.config.credentials or {}).get("api_key", "")),
                "Idempotency-Key": request.attempt_id,
            },
            replacements=replacements,
        )

    def forward_answer(self, *, status: int, body: str, request: ChargeRequest) -> VaultCharge:
        """Adyen's answer to a forwarded ``/payments``, relayed by the forwarder: read as a direct
        charge's, with Adyen's stored payment method id (and the shopper reference it belongs to)
        when the card was stored."""
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            parsed = {}
        if not isinstance(parsed, dict):
            parsed = {}
        if not 200 <= status < 300:
            return VaultCharge(self._status_error(status, parsed, str(body)[:200]))
        if not parsed:  # a 2xx we cannot read: the payment may exist
            return VaultCharge(
                GatewayResult(Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message="unreadable /payments answer")
            )
        result = self._payment_result(parsed, request, stored=True)
        return VaultCharge(result, result.saved)

    def _checkout_url(self, path: str) -> str:
        if self.settings.get("environment", "test") == "live":
            prefix = self.settings["live_endpoint_prefix"]
            return f"https://{prefix}-checkout-live.adyenpayments.com/checkout/{CHECKOUT_VERSION}{path}"
        return f"https://checkout-test.adyen.com/{CHECKOUT_VERSION}{path}"

    def capture(
        self, *, attempt_id: str, reference: str, amount: int, currency: str, idempotency_key: str
    ) -> GatewayResult:
        """Asks Adyen to capture ``amount`` (partial allowed); confirmed later by the CAPTURE webhook."""
        return self._modify(
            self.modifications.capture_authorised_payment,
            {"amount": {"value": amount, "currency": currency}, "reference": idempotency_key},
            reference,
            idempotency_key=idempotency_key,
            status=GatewayStatus.CAPTURED,
            message="capture received",
            amount_captured=amount,
        )

    def cancel(self, *, attempt_id: str, reference: str | None, idempotency_key: str) -> GatewayResult:
        """Asks Adyen to void an authorisation by pspReference, or (no reference) a technical
        cancel by our attempt id. Either is only "received": SUCCEEDED with status UNKNOWN, because
        Adyen cannot cancel a payment that is already captured (auto-capture, or a pending payment
        that completed) and says so only in the CANCELLATION / TECHNICAL_CANCEL webhook. Reporting
        CANCELED here would let the mesh fail over while the first charge stands."""
        if reference:
            return self._modify(
                self.modifications.cancel_authorised_payment_by_psp_reference,
                {"reference": idempotency_key},
                reference,
                idempotency_key=idempotency_key,
                status=GatewayStatus.UNKNOWN,
                message="cancel received; the CANCELLATION webhook says whether the authorisation was voided",
            )
        return self._modify(
            self.modifications.cancel_authorised_payment,
            {"paymentReference": attempt_id, "reference": idempotency_key},
            idempotency_key=idempotency_key,
            status=GatewayStatus.UNKNOWN,
            message="technical cancel received; the TECHNICAL_CANCEL webhook says whether a payment was voided",
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
        """Asks Adyen to refund ``amount`` (partial and repeated refunds allowed, up to the captured
        total); ``reference`` of the result is the refund's pspReference, ``amount_refunded`` this
        refund's amount (Adyen reports no running total). Confirmed later by the REFUND webhook."""
        return self._modify(
            self.modifications.refund_captured_payment,
            {"amount": {"value": amount, "currency": currency}, "reference": refund_id},
            reference,
            idempotency_key=idempotency_key,
            status=GatewayStatus.CAPTURED,
            message="refund received",
            own_reference=True,
            amount_refunded=amount,
        )

    def retrieve(self, *, attempt_id: str, reference: str | None) -> GatewayResult:
        """Always UNKNOWN, with no call: Checkout cannot look a payment up (see the module doc for
        how an unknown Adyen attempt is resolved instead)."""
        return GatewayResult(
            Outcome.UNKNOWN,
            GatewayStatus.UNKNOWN,
            reference=reference,
            message="adyen has no payment lookup: replay authorize with the same attempt, "
            "cancel by reference, or wait for the AUTHORISATION webhook",
        )

    def action_result(
        self,
        *,
        request: ChargeRequest,
        reference: str | None,
        details: Mapping[str, str],
        idempotency_key: str,
    ) -> GatewayResult:
        """The shopper came back from the redirect (3-D Secure): ``POST /payments/details`` with
        the ``redirectResult`` Adyen added to the return URL, idempotent by ``idempotency_key``.
        Authorised is the charge; an authentication the shopper failed or abandoned
        (AuthenticationFailed, Cancelled, or Refused "3D Not Authenticated") is DECLINED with
        ``authentication_failed``; another refusal is its decline. Without a ``redirectResult``
        nothing is asked: still REQUIRES_ACTION."""
        redirect_result = details.get("redirectResult")
        if not redirect_result:
            return GatewayResult(
                Outcome.REQUIRES_ACTION,
                GatewayStatus.REQUIRES_ACTION,
                reference=reference,
                message="no redirectResult in the return: the shopper has not come back from Adyen",
            )
        answer = self._call(
            self.payments.payments_details,
            {"details": {"redirectResult": redirect_result}},
            idempotency_key=idempotency_key,
        )
        if isinstance(answer, GatewayResult):
            return answer
        code = answer.get("resultCode")
        failed_authentication = code in ("AuthenticationFailed", "Cancelled") or (
            code == "Refused" and str(answer.get("refusalReasonCode", "")) in AUTHENTICATION_REFUSALS
        )
        if failed_authentication:
            return GatewayResult(
                Outcome.DECLINED_SOFT,
                GatewayStatus.DECLINED,
                reference=answer.get("pspReference") or reference,
                decline_code=AUTHENTICATION_FAILED,
                message=f"{code}: {answer.get('refusalReason') or 'the shopper did not authenticate'}",
                raw=_trim(answer),
            )
        return self._payment_result(answer, request)

    # ----------------------------------------------------------------- requests

    @staticmethod
    def _payment_method(token: str) -> dict[str, Any]:
        if token.lstrip().startswith("{"):  # encrypted details from Adyen's web components
            try:
                details = json.loads(token)
            except ValueError:
                raise GatewayCallError("adyen payment method looks like JSON but is not") from None
            if not isinstance(details, dict):
                raise GatewayCallError("adyen payment method JSON must be an object")
            return details
        return {"type": "scheme", "storedPaymentMethodId": token}

    def _call(self, method: Callable[..., Any], *args: Any, idempotency_key: str) -> dict | GatewayResult:
        """The response body, or the result that a failure to get one amounts to."""
        try:
            response = method(*args, idempotency_key=idempotency_key)
        except AdyenAPIResponseError as exc:
            return self._http_error(exc)
        except AdyenError as exc:  # raised before sending: missing credentials, bad endpoint
            raise GatewayCallError(f"{self.config.account_id}: {exc}") from exc
        except requests.RequestException as exc:
            return self._transport_error(exc)
        message = response.message
        return message if isinstance(message, dict) else {}

    def _modify(
        self,
        method: Callable[..., Any],
        body: dict[str, Any],
        *psp_reference: str,
        idempotency_key: str,
        status: GatewayStatus,
        message: str,
        own_reference: bool = False,
        amount_captured: int = 0,
        amount_refunded: int = 0,
    ) -> GatewayResult:
        """A modification (capture, cancel, refund) of the payment ``psp_reference`` names (none:
        a technical cancel by our reference): the failure to get an answer, or Adyen's "received"
        as ``status`` (the webhook confirms it later). The result's reference is the payment's, or
        with ``own_reference`` the one Adyen gave the modification (a refund's)."""
        answer = self._call(
            method,
            {"merchantAccount": self.merchant_account, **body},
            *psp_reference,
            idempotency_key=idempotency_key,
        )
        if isinstance(answer, GatewayResult):
            return answer
        reference = answer.get("pspReference") if own_reference else next(iter(psp_reference), None)
        return self._received(
            answer,
            reference,
            status,
            message,
            amount_captured=amount_captured,
            amount_refunded=amount_refunded,
        )

    # ----------------------------------------------------------------- answers

    def _payment_result(self, body: dict, request: ChargeRequest, *, stored: bool = False) -> GatewayResult:
        """A ``/payments`` answer as our result; when the card was to be stored (``stored``, or
        the request's ``setup_future_usage``) and Adyen stored it, its credential as ``saved``."""
        code = body.get("resultCode")
        psp = body.get("pspReference")
        raw = _trim(body)
        if code in ("Authorised", "PartiallyAuthorised"):
            # PartiallyAuthorised needs partial authorisation, which we never ask for; if it comes,
            # the amounts below say how much was actually held.
            authorized = int((body.get("amount") or {}).get("value", request.amount))
            additional = body.get("additionalData") or {}
            return GatewayResult(
                Outcome.SUCCEEDED,
                GatewayStatus.CAPTURED if request.capture else GatewayStatus.AUTHORIZED,
                reference=psp,
                amount_authorized=authorized,
                amount_captured=authorized if request.capture else 0,
                message=code,
                raw=raw,
                network_transaction_id=str(additional.get("networkTxReference") or ""),
                saved=stored_method(body, _storing_shopper(request))
                if stored or request.setup_future_usage
                else None,
            )
        if code in ("Refused", "Cancelled"):
            return self._decline(body, psp, raw, cancelled=code == "Cancelled")
        if code in ACTION_RESULTS:
            action = body.get("action") or {}
            return GatewayResult(
                Outcome.REQUIRES_ACTION,
                GatewayStatus.REQUIRES_ACTION,
                reference=psp,
                message=f"{code}: the shopper must complete {action.get('type', 'an action')}",
                raw=raw,
                action_url=redirect_url(action),
            )
        if code == "Error":
            return GatewayResult(
                Outcome.GATEWAY_ERROR,
                GatewayStatus.ERROR,
                reference=psp,
                message=f"Error: {body.get('refusalReason', '')}".rstrip(": "),
                raw=raw,
            )
        # Pending / Received (asynchronous methods), or a code we do not know: the payment may
        # still complete, so the honest answer is UNKNOWN until the AUTHORISATION webhook.
        return GatewayResult(
            Outcome.UNKNOWN,
            GatewayStatus.UNKNOWN,
            reference=psp,
            message=f"{code or 'no resultCode'}: final outcome follows in the AUTHORISATION webhook",
            raw=raw,
        )

    @staticmethod
    def _decline(body: dict, psp: str | None, raw: dict, *, cancelled: bool) -> GatewayResult:
        reason_code = str(body.get("refusalReasonCode", ""))
        reason = body.get("refusalReason", "")
        decline_code, hard, advice = REFUSALS.get(reason_code, ("generic_decline", False, None))
        mac = str((body.get("additionalData") or {}).get("merchantAdviceCode", ""))[:2]
        if mac in MERCHANT_ADVICE:
            mac_hard, advice = MERCHANT_ADVICE[mac]
            hard = hard or mac_hard
        return GatewayResult(
            Outcome.DECLINED_HARD if hard else Outcome.DECLINED_SOFT,
            GatewayStatus.CANCELED if cancelled else GatewayStatus.DECLINED,
            reference=psp,
            decline_code=decline_code,
            advice_code=advice,
            message=f"{body.get('resultCode')}: {reason} (adyen refusal {reason_code or '?'})",
            raw=raw,
        )

    @staticmethod
    def _received(
        body: dict,
        reference: str | None,
        status: GatewayStatus,
        message: str,
        *,
        amount_captured: int = 0,
        amount_refunded: int = 0,
    ) -> GatewayResult:
        if body.get("status") != "received":  # documented as always "received"; anything else is news
            return GatewayResult(
                Outcome.UNKNOWN,
                GatewayStatus.UNKNOWN,
                reference=reference,
                message=f"unexpected modification answer {body.get('status')!r}",
                raw=_trim(body),
            )
        return GatewayResult(
            Outcome.SUCCEEDED,
            status,
            reference=reference,
            amount_captured=amount_captured,
            amount_refunded=amount_refunded,
            message=message,
            raw=_trim(body),
        )

    @classmethod
    def _http_error(cls, exc: AdyenAPIResponseError) -> GatewayResult:
        body = exc.message if isinstance(exc.message, dict) else {}
        return cls._status_error(
            int(exc.status_code or 0), body, str(exc.raw_response)[:200], error_code=exc.error_code
        )

    @staticmethod
    def _status_error(status: int, body: dict, fallback: str, *, error_code: object = None) -> GatewayResult:
        """An HTTP error answer of Adyen's (``status``, its JSON ``body``) as a result."""
        error_code = str(body.get("errorCode") or error_code or "")
        text = body.get("message") or body.get("detail") or body.get("title") or fallback
        raw = _trim(body) | {"httpStatus": status}
        message = f"HTTP {status} {error_code}: {text}".strip()
        if status == 504 or (status == 422 and error_code == "704"):
            # 504: a proxy gave up waiting, Adyen may have processed it. 704: the same
            # idempotency key is still being processed.
            return GatewayResult(Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message=message, raw=raw)
        if (
            status >= 500
            or status in (401, 403, 404, 429)
            or body.get("errorType") in ("configuration", "security", "internal")
        ):
            return GatewayResult(
                Outcome.GATEWAY_ERROR,
                GatewayStatus.ERROR,
                decline_code=error_code or None,
                message=message,
                raw=raw,
            )
        # 400 / 422 validation: Adyen refused this request as it stands; sending it again,
        # here or elsewhere, will not help.
        return GatewayResult(
            Outcome.DECLINED_HARD,
            GatewayStatus.ERROR,
            decline_code="invalid_request",
            message=message,
            raw=raw,
        )

    @staticmethod
    def _transport_error(exc: requests.RequestException) -> GatewayResult:
        message = f"{type(exc).__name__}: {exc}"[:300]
        if _never_sent(exc):
            return GatewayResult(Outcome.GATEWAY_ERROR, GatewayStatus.ERROR, message=message)
        return GatewayResult(Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message=message)


def _never_sent(exc: requests.RequestException) -> bool:
    """True only when the request cannot have reached Adyen: the connection was never made."""
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ProxyError):
        return True
    if not isinstance(exc, requests.exceptions.ConnectionError):  # read timeouts and the like
        return False
    # requests wraps urllib3's error (often in a MaxRetryError): look for a connect-phase cause.
    # NewConnectionError covers refused connections and DNS failures; a certificate that fails
    # verification stops the TLS handshake before anything is written. Any other SSL error may
    # come mid-response, after the request was sent.
    return any(
        isinstance(cause, NewConnectionError | ConnectTimeoutError | ssl.SSLCertVerificationError)
        for cause in _causes(exc)
    )


def _causes(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or any(item is seen for seen in found):
            continue
        found.append(item)
        stack += [getattr(item, "reason", None), item.__cause__, item.__context__, *item.args]
    return found


def _trim(body: dict) -> dict:
    kept = {k: body[k] for k in _KEPT if k in body}
    additional = body.get("additionalData") or {}
    extra = {k: additional[k] for k in _KEPT_ADDITIONAL if k in additional}
    if extra:
        kept["additionalData"] = extra
    return kept


def _shopper(request: ChargeRequest) -> str | None:
    """The ``shopperReference`` of a charge: a stored method is Adyen's for the shopper it was
    stored under (its credential says who), else our customer's."""
    return (request.credential or {}).get("shopper_reference") or request.customer_reference


def _storing_shopper(request: ChargeRequest) -> str:
    """The shopper a card stored by this charge is stored under (Adyen stores a card under a
    shopper): ``_shopper``, else one for this charge alone."""
    return _shopper(request) or request.attempt_id


def _off_session_model(request: ChargeRequest) -> str:
    """Adyen's ``recurringProcessingModel`` of a card used without the shopper: a subscription's
    scheduled charges, or charges at no fixed schedule (top-ups, dunning, one-off MITs)."""
    return "Subscription" if request.recurring else "UnscheduledCardOnFile"


# additionalData.paymentMethod (Adyen's variant names) -> our brand names (Stripe's vocabulary).
_BRANDS = {
    "mc": "mastercard",
    "amex": "amex",
    "visa": "visa",
    "discover": "discover",
    "diners": "diners",
    "jcb": "jcb",
    "cup": "unionpay",
    "cartebancaire": "cartes_bancaires",
    "maestro": "maestro",
}
# additionalData.fundingSource -> our funding names.
_FUNDING = {"CREDIT": "credit", "DEBIT": "debit", "CHARGE": "credit", "DEFFERED_DEBIT": "debit",
            "PREPAID": "prepaid", "PREPAID_RELOADABLE": "prepaid", "PREPAID_NONRELOADABLE": "prepaid"}  # fmt: skip


def stored_method(answer: dict, shopper: str) -> SavedMethod | None:
    """The card an authorised ``/payments`` ``answer`` stored, read from its ``additionalData``: its id
    (``tokenization.storedPaymentMethodId``, or the older ``recurring.recurringDetailReference``)
    under the shopper it belongs to (``tokenization.shopperReference`` /
    ``recurring.shopperReference``, else ``shopper``: the one we sent) as the credential; the
    card's display details (the answer's ``paymentMethod.brand``, else ``additionalData.paymentMethod``;
    ``cardSummary`` last four, ``expiryDate``
    "M/YYYY", ``issuerCountry`` / ``cardIssuingCountry``, ``fundingSource``, which Adyen returns
    only when enabled for the merchant account); ``alias`` (Adyen's identifier of the card
    number, the same for the same card) as the fingerprint; ``networkTxReference``. None when
    Adyen stored nothing."""
    additional = answer.get("additionalData") or {}
    reference = additional.get("tokenization.storedPaymentMethodId") or additional.get(
        "recurring.recurringDetailReference"
    )
    if not reference:
        return None
    shopper = str(
        additional.get("tokenization.shopperReference")
        or additional.get("recurring.shopperReference")
        or shopper
    )
    method = answer.get("paymentMethod")
    method = method if isinstance(method, dict) else {}
    variant = str(
        method.get("brand") or additional.get("paymentMethod") or additional.get("cardPaymentMethod") or ""
    ).lower()
    brand = next((ours for name, ours in _BRANDS.items() if variant.startswith(name)), variant or "unknown")
    month, _, year = str(additional.get("expiryDate") or "").partition("/")
    return SavedMethod(
        True,
        reference=str(reference),
        extra={"shopper_reference": shopper},
        card=CardInfo(
            brand=brand,
            country=str(additional.get("issuerCountry") or additional.get("cardIssuingCountry") or ""),
            funding=_FUNDING.get(str(additional.get("fundingSource") or "").upper(), ""),
            last4=str(additional.get("cardSummary") or ""),
        ),
        exp_month=int(month) if month.isdigit() else None,
        exp_year=int(year) if year.isdigit() else None,
        fingerprint=str(additional.get("alias") or ""),
        network_transaction_id=str(additional.get("networkTxReference") or ""),
    )
