"""The built-in simulator: the gateway of `make run` and of load tests.

It accepts Stripe's documented test PaymentMethods with the same meanings (apps/payments/methods.py)
plus ``pm_sim_gateway_error`` (a 5xx: nothing charged) and ``pm_sim_timeout_after_charge`` (the
charge goes through but the answer is lost). Per gateway account, ``settings`` configures:

- ``latency_ms``: {"p50": 30, "p99": 120} (log-normal between them)
- ``error_rate``: probability of a 5xx (nothing charged)
- ``timeout_rate``: probability that the answer is lost after charging
- ``outages``: [{"start": ISO, "end": ISO}] windows, or ``down``: true — every call fails
- ``allowed_card_countries``: ["US", ...] refuses cards issued elsewhere (regional rules)
- ``decline_rate``: probability of a generic soft decline of an otherwise good card
- ``fee_bps`` / ``fee_fixed``: processing fee (default 290 bps + 30 minor units)
- ``seed``: makes the random draws reproducible per attempt (keyed on the request's
  ``metadata.simulator_key`` when the payment carries one, else on the attempt id)

Saved cards and merchant-initiated charges, as Stripe's test cards behave: a charge asking
``setup_future_usage`` saves the card (a ``simtok_`` of this account, once per attempt id) and
answers it in ``GatewayResult.saved``; a customer-initiated charge answers a network transaction
id (15 digits, derived from the charge); an off-session charge records the network transaction id
it was passed, and a card that always needs authentication (``pm_card_authenticationRequired``,
the 3184 card, and the other 3-D Secure test cards) is declined off-session with
``authentication_required`` instead of waiting for a challenge nobody is there to complete.

Charges are recorded in ``SimulatorCharge`` (unique per account and attempt id), so a repeated
call with the same attempt id returns the same charge: the simulator honours idempotency keys,
and ``retrieve`` tells the truth. An attempt that waits for 3-D Secure, or that we cancelled by its
attempt id before any charge existed, is recorded in ``SimulatorAction``: the customer completes
the action with ``action_complete`` (the processor's side of the challenge page; their return is
answered by ``retrieve``, the port's default for adapters without ``action_result``), and a
cancelled attempt can never charge afterwards, whether its request was still in flight or the
customer completes the challenge late (the same guarantee Stripe's cancel and Adyen's technical
cancel give).
"""

from __future__ import annotations

import hashlib
import math
import random
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.core.money import exponent
from apps.payments.gateways.base import (
    AUTHENTICATION_FAILED,
    ChargeRequest,
    GatewayConfig,
    GatewayResult,
    GatewayStatus,
    Outcome,
    SavedMethod,
)
from apps.payments.gateways.simulator.webhooks import SimulatorNotifications
from apps.payments.methods import TEST_METHODS, TestMethod
from apps.payments.models import SimulatorAction, SimulatorCharge, SimulatorRefund, SimulatorToken
from apps.tenants.selectors import marketplace_base_url

TOKEN_PREFIX = "simtok_"
# The expiry every simulated saved card carries (Stripe's test cards take any future date).
TEST_EXPIRY = (12, 2034)

# A simulator row kept per (account, attempt id): its charge or its 3-D Secure action.
_ByAttempt = TypeVar("_ByAttempt", SimulatorCharge, SimulatorAction)

OUTAGE = "simulated outage: 503 Service Unavailable"


def network_transaction_id_for(reference: str) -> str:
    """A card network's transaction id for a simulated charge or saved card, shaped like Visa's
    (15 digits) and always the same for the same ``reference``."""
    return str(int(hashlib.sha256(f"simulator-network:{reference}".encode()).hexdigest(), 16))[:15]


def challenge_url(account: str, attempt_id: str) -> str:
    """The simulator's 3-D Secure challenge page for an attempt (``challenge.py``), on the
    marketplace's own host: the simulator plays the issuer's page there."""
    return f"{marketplace_base_url()}/simulator/{account}/authenticate/{attempt_id}"


def saved_card(account: str, token: str) -> str | None:
    """The test token of the card behind ``token``, one of simulator ``account``'s own tokens
    (``simtok_...``); None when the account issued no such token."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    return (
        SimulatorToken.objects.filter(account=account, token=token)
        .values_list("payment_method", flat=True)
        .first()
    )


HARD = {"lost_card", "stolen_card", "expired_card", "fraudulent", "incorrect_cvc", "pickup_card"}


class SimulatorGateway:
    kind = "simulator"
    can_look_up = True
    notifications = SimulatorNotifications

    def __init__(self, config: GatewayConfig):
        self.config = config
        self.account = config.account_id
        self.settings = config.settings or {}

    # ----------------------------------------------------------------- behaviour

    def _rng(self, key: str) -> random.Random:
        seed = f"{self.settings.get('seed', '')}:{self.account}:{key}"
        return random.Random(int(hashlib.sha256(seed.encode()).hexdigest()[:16], 16))

    def _sleep(self, rng: random.Random) -> None:
        lat = self.settings.get("latency_ms") or {}
        p50, p99 = float(lat.get("p50", 0)), float(lat.get("p99", 0))
        if p50 <= 0:
            return
        sigma = max(0.01, math.log(max(p99, p50) / p50) / 2.326)  # p99 = p50 * e^(2.326 sigma)
        time.sleep(min(p50 * math.exp(rng.gauss(0, sigma)), 30_000) / 1000)

    def _down(self) -> bool:
        if self.settings.get("down"):
            return True
        now = timezone.now()
        for window in self.settings.get("outages", []):
            try:
                start = datetime.fromisoformat(window["start"])
                end = datetime.fromisoformat(window["end"])
            except (KeyError, TypeError, ValueError):
                continue
            if start <= now < end:
                return True
        return False

    def fee_for(self, amount: int, currency: str) -> int:
        """The processor fee this account takes on a capture of ``amount`` (its ``fee_bps`` and
        ``fee_fixed`` settings; by default 2.9 %, rounded, plus 30 minor units in two-decimal
        currencies)."""
        bps = int(self.settings.get("fee_bps", 290))
        fixed = int(self.settings.get("fee_fixed", 30 if exponent(currency) == 2 else 0))
        return (amount * bps + 5000) // 10000 + fixed

    @staticmethod
    def _error(message: str) -> GatewayResult:
        return GatewayResult(Outcome.GATEWAY_ERROR, GatewayStatus.ERROR, message=message)

    # ----------------------------------------------------------------- port

    def authorize(self, request: ChargeRequest) -> GatewayResult:
        rng = self._rng(request.metadata.get("simulator_key") or request.attempt_id)
        self._sleep(rng)
        if self._down():  # a gateway that is down answers nothing, not even replays
            return self._error(OUTAGE)
        existing = SimulatorCharge.objects.filter(account=self.account, attempt_id=request.attempt_id).first()
        if existing is not None:  # idempotent replay of the same attempt
            return self._result_for(existing)
        method = self._method(request.payment_method)
        if method is None:
            return GatewayResult(
                Outcome.DECLINED_HARD,
                GatewayStatus.DECLINED,
                decline_code="invalid_payment_method",
                message=f"unknown payment method {request.payment_method!r}",
            )
        if method.fault == "gateway_error" or rng.random() < float(self.settings.get("error_rate", 0)):
            return self._error("simulated 500 Internal Server Error")
        allowed = self.settings.get("allowed_card_countries")
        if allowed and method.card.country not in allowed:
            return GatewayResult(
                Outcome.DECLINED_SOFT,
                GatewayStatus.DECLINED,
                decline_code="transaction_not_allowed",
                message=f"this acquirer does not accept cards issued in {method.card.country}",
            )
        if method.requires_action and request.off_session:
            # Nobody is there to authenticate: declined, as Stripe does off-session.
            return GatewayResult(
                Outcome.DECLINED_SOFT,
                GatewayStatus.DECLINED,
                decline_code="authentication_required",
                message="card declined: authentication_required (the customer is not on session)",
            )
        if method.requires_action:
            with transaction.atomic():
                self._lock_attempt(request.attempt_id)
                action, _ = SimulatorAction.objects.get_or_create(
                    account=self.account,
                    attempt_id=request.attempt_id,
                    defaults={
                        "status": "requires_action",
                        "amount": request.amount,
                        "currency": request.currency,
                        "payment_method": request.payment_method,
                        "capture": request.capture,
                        "save_card": bool(request.setup_future_usage),
                        "customer_reference": request.customer_reference or "",
                        "return_url": request.return_url or "",
                    },
                )
            return self._action_result(action)
        if method.decline_code:
            hard = method.decline_code in HARD or method.advice_code == "do_not_try_again"
            return GatewayResult(
                Outcome.DECLINED_HARD if hard else Outcome.DECLINED_SOFT,
                GatewayStatus.DECLINED,
                decline_code=method.decline_code,
                advice_code=method.advice_code,
                message=f"card declined: {method.decline_code}",
            )
        if rng.random() < float(self.settings.get("decline_rate", 0)):
            return GatewayResult(
                Outcome.DECLINED_SOFT,
                GatewayStatus.DECLINED,
                decline_code="generic_decline",
                message="card declined: generic_decline",
            )
        charge = self._charge(
            attempt_id=request.attempt_id,
            amount=request.amount,
            currency=request.currency,
            payment_method=request.payment_method,
            capture=request.capture,
            off_session=request.off_session,
            network_transaction_id=request.network_transaction_id or "",
            save_for=(request.customer_reference or "") if request.setup_future_usage else None,
        )
        if charge is None:  # cancelled by its attempt id while this request was in flight
            return self._canceled_result()
        if method.fault == "timeout_after_charge" or rng.random() < float(
            self.settings.get("timeout_rate", 0)
        ):
            return GatewayResult(
                Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message="simulated timeout after charging"
            )
        return self._result_for(charge)

    def _method(self, payment_method: str) -> TestMethod | None:
        """The test card a payment method stands for (see ``_card_token``)."""
        card = self._card_token(payment_method)
        return TEST_METHODS.get(card) if card is not None else None

    def _card_token(self, payment_method: str) -> str | None:
        """The test token of the card behind ``payment_method``: a documented test token, or a
        token this account issued (another account's tokens are unknown here, as at a real
        processor)."""
        if payment_method.startswith(TOKEN_PREFIX):
            return saved_card(self.account, payment_method)
        return payment_method if payment_method in TEST_METHODS else None

    def save_method(
        self, *, token: str, customer_reference: str | None, idempotency_key: str = ""
    ) -> SavedMethod:
        """The simulator's tokenize (its equivalent of saving a card): a test token (what its
        card fields return) becomes a token of this account, ``simtok_<account>_<hex>``; one of
        its own tokens is answered as it is. The same ``idempotency_key`` saves once (the same
        token again). The fingerprint is the card's, the same at every simulator account; the
        network transaction id is the token's."""
        if self._down():
            return SavedMethod(
                False, code="gateway_error", message="simulated outage: 503 Service Unavailable"
            )
        if token.startswith(TOKEN_PREFIX):
            saved = SimulatorToken.objects.filter(account=self.account, token=token).first()
            if saved is None:
                return SavedMethod(False, code="resource_missing", message=f"No such token: {token!r}")
        elif token in TEST_METHODS:
            saved = self._token_save(token, customer_reference, idempotency_key)
        else:
            return SavedMethod(False, code="resource_missing", message=f"No such PaymentMethod: {token!r}")
        return self._saved(saved)

    def _token_save(self, card: str, customer_reference: str | None, key: str) -> SimulatorToken:
        """This account's token for the test card ``card``: named after ``key`` when given, so a
        save repeated with the same key answers the same token; else a random one."""
        suffix = hashlib.sha256(f"{self.account}:{key}".encode()).hexdigest()[:16] if key else None
        name = f"{TOKEN_PREFIX}{self.account}_{suffix or secrets.token_hex(8)}"
        saved, _ = SimulatorToken.objects.get_or_create(
            token=name,
            defaults={
                "account": self.account,
                "payment_method": card,
                "customer_reference": customer_reference or "",
            },
        )
        return saved

    @staticmethod
    def _saved(saved: SimulatorToken, network_transaction_id: str = "") -> SavedMethod:
        """The answer for a saved token: its card's details, its fingerprint and a network
        transaction id (the charge's that saved it, else one derived from the token)."""
        card = TEST_METHODS[saved.payment_method].card
        return SavedMethod(
            True,
            reference=saved.token,
            card=card,
            exp_month=TEST_EXPIRY[0],
            exp_year=TEST_EXPIRY[1],
            fingerprint=hashlib.sha256(f"simulator-card:{saved.payment_method}".encode()).hexdigest()[:16],
            network_transaction_id=network_transaction_id or network_transaction_id_for(saved.token),
        )

    def _lock_attempt(self, attempt_id: str) -> None:
        """Serialise everything done to one attempt id (charging, cancelling by attempt id,
        completing its action) until the caller's transaction ends."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"sim:{self.account}:{attempt_id}"])

    def _locked_by_attempt(self, model: type[_ByAttempt], attempt_id: str) -> _ByAttempt | None:
        """The attempt's row of ``model`` (its charge or its action), locked, after the attempt's
        own lock (``_lock_attempt``); None when it has none."""
        self._lock_attempt(attempt_id)
        return model.objects.select_for_update().filter(account=self.account, attempt_id=attempt_id).first()

    def _charge(
        self,
        *,
        attempt_id: str,
        amount: int,
        currency: str,
        payment_method: str,
        capture: bool,
        off_session: bool = False,
        network_transaction_id: str = "",
        save_for: str | None = None,
    ) -> SimulatorCharge | None:
        """The charge for the attempt (made now, or the one a concurrent call made); None when
        the attempt was cancelled by its id first. With ``save_for`` (the request asked
        ``setup_future_usage``; the customer's reference) the card is saved with it, keyed by
        the attempt id, so a replay saves once."""
        try:
            with transaction.atomic():
                self._lock_attempt(attempt_id)
                if SimulatorAction.objects.filter(
                    account=self.account, attempt_id=attempt_id, status="canceled"
                ).exists():
                    return None
                saved_token = ""
                if save_for is not None:
                    card = self._card_token(payment_method)
                    saved_token = self._token_save(card, save_for, attempt_id).token if card else ""
                return SimulatorCharge.objects.create(
                    account=self.account,
                    attempt_id=attempt_id,
                    reference="sim_ch_" + secrets.token_hex(10),
                    amount=amount,
                    currency=currency,
                    payment_method=payment_method,
                    status="captured" if capture else "authorized",
                    amount_captured=amount if capture else 0,
                    off_session=off_session,
                    network_transaction_id_passed=network_transaction_id,
                    saved_token=saved_token,
                )
        except IntegrityError:  # a concurrent call with the same attempt id won: same charge
            return SimulatorCharge.objects.get(account=self.account, attempt_id=attempt_id)

    @staticmethod
    def _canceled_result() -> GatewayResult:
        return GatewayResult(
            Outcome.DECLINED_HARD,
            GatewayStatus.CANCELED,
            decline_code="payment_intent_canceled",
            message="this attempt was cancelled; it cannot be confirmed",
        )

    def _action_result(self, action: SimulatorAction) -> GatewayResult:
        if action.status == "requires_action":
            return GatewayResult(
                Outcome.REQUIRES_ACTION,
                GatewayStatus.REQUIRES_ACTION,
                message="3-D Secure authentication required",
                raw={"action": "challenge"},
                action_url=challenge_url(self.account, action.attempt_id),
            )
        if action.status == "failed":
            return GatewayResult(
                Outcome.DECLINED_SOFT,
                GatewayStatus.DECLINED,
                decline_code=AUTHENTICATION_FAILED,
                message="3-D Secure authentication failed",
            )
        return self._canceled_result()

    def action_get(self, attempt_id: str) -> SimulatorAction | None:
        """The challenge of ``attempt_id`` at this account (its amount, where it returns), if any:
        what the challenge page shows."""
        return SimulatorAction.objects.filter(account=self.account, attempt_id=attempt_id).first()

    def action_complete(self, *, attempt_id: str, succeed: bool = True) -> GatewayResult:
        """The customer finishes (or fails) the 3-D Secure challenge of ``attempt_id`` at the
        processor. Returns what the processor then says of the attempt (its webhook's news):
        captured or authorised when it succeeded, declined when it failed, cancelled when the
        attempt had been cancelled meanwhile (nothing is charged then). Idempotent."""
        with transaction.atomic():
            action = self._locked_by_attempt(SimulatorAction, attempt_id)
            if action is None:
                return GatewayResult(
                    Outcome.DECLINED_HARD, GatewayStatus.NOT_FOUND, message="no such attempt"
                )
            if action.status == "requires_action":
                action.status = "completed" if succeed else "failed"
                action.save(update_fields=["status"])
                if succeed:
                    self._charge(
                        attempt_id=attempt_id,
                        amount=action.amount,
                        currency=action.currency,
                        payment_method=action.payment_method,
                        capture=action.capture,
                        save_for=action.customer_reference if action.save_card else None,
                    )
        charge = SimulatorCharge.objects.filter(account=self.account, attempt_id=attempt_id).first()
        return self._result_for(charge) if charge is not None else self._action_result(action)

    def _result_for(self, charge: SimulatorCharge) -> GatewayResult:
        """A charge as the simulator reports it (every time the same): its amounts and fee; a
        customer-initiated one its network transaction id; one that saved the card its token."""
        network_id = "" if charge.off_session else network_transaction_id_for(charge.reference)
        token = (
            SimulatorToken.objects.filter(account=self.account, token=charge.saved_token).first()
            if charge.saved_token
            else None
        )
        raw = {"id": charge.reference, "status": charge.status}
        if charge.network_transaction_id_passed:  # what the merchant-initiated request carried
            raw["network_transaction_id_passed"] = charge.network_transaction_id_passed
        status = {
            "authorized": GatewayStatus.AUTHORIZED,
            "captured": GatewayStatus.CAPTURED,
            "canceled": GatewayStatus.CANCELED,
        }[charge.status]
        return GatewayResult(
            Outcome.SUCCEEDED,
            status,
            reference=charge.reference,
            amount_authorized=charge.amount,
            amount_captured=charge.amount_captured,
            amount_refunded=charge.amount_refunded,
            fee=self.fee_for(charge.amount_captured, charge.currency) if charge.amount_captured else 0,
            raw=raw,
            network_transaction_id=network_id,
            saved=self._saved(token, network_id) if token is not None else None,
        )

    def _locked(self, reference: str) -> SimulatorCharge | None:
        return (
            SimulatorCharge.objects.select_for_update()
            .filter(account=self.account, reference=reference)
            .first()
        )

    def _on_charge(self, reference: str, act: Callable[[SimulatorCharge], GatewayResult]) -> GatewayResult:
        """``act`` on the charge ``reference`` names, locked (a capture, a refund); a gateway that
        is down, or no such charge, answers first."""
        if self._down():
            return self._error(OUTAGE)
        with transaction.atomic():
            charge = self._locked(reference)
            if charge is None:
                return GatewayResult(Outcome.DECLINED_HARD, GatewayStatus.NOT_FOUND, message="no such charge")
            return act(charge)

    def capture(self, *, attempt_id, reference, amount, currency, idempotency_key) -> GatewayResult:
        def capture(charge: SimulatorCharge) -> GatewayResult:
            if charge.status == "captured":  # idempotent
                return self._result_for(charge)
            if charge.status != "authorized" or amount > charge.amount:
                return GatewayResult(
                    Outcome.DECLINED_HARD,
                    GatewayStatus.DECLINED,
                    message=f"cannot capture {amount} of a {charge.status} charge",
                )
            charge.status, charge.amount_captured = "captured", amount
            charge.save(update_fields=["status", "amount_captured"])
            return self._result_for(charge)

        return self._on_charge(reference, capture)

    def cancel(self, *, attempt_id, reference, idempotency_key) -> GatewayResult:
        if self._down():
            return self._error(OUTAGE)
        with transaction.atomic():
            if reference:
                charge = self._locked(reference)
            else:  # technical cancel by our attempt id
                charge = self._locked_by_attempt(SimulatorCharge, attempt_id)
            if charge is None:
                # Nothing charged: remember the cancellation, so the attempt can never charge later
                # (its request still in flight, or its 3-D Secure completed late).
                self._lock_attempt(attempt_id)
                updated = SimulatorAction.objects.filter(
                    account=self.account, attempt_id=attempt_id, status="requires_action"
                ).update(status="canceled")
                if not updated:
                    SimulatorAction.objects.get_or_create(
                        account=self.account, attempt_id=attempt_id, defaults={"status": "canceled"}
                    )
                return GatewayResult(Outcome.SUCCEEDED, GatewayStatus.NOT_FOUND, message="nothing to cancel")
            if charge.status == "captured":
                return GatewayResult(
                    Outcome.DECLINED_HARD,
                    GatewayStatus.CAPTURED,
                    reference=charge.reference,
                    message="a captured charge cannot be cancelled; refund it",
                )
            charge.status = "canceled"
            charge.save(update_fields=["status"])
        return self._result_for(charge)

    def refund(self, *, attempt_id, reference, refund_id, amount, currency, idempotency_key) -> GatewayResult:
        def refund(charge: SimulatorCharge) -> GatewayResult:
            if not SimulatorRefund.objects.filter(refund_id=refund_id).exists():  # else idempotent
                if charge.status != "captured" or charge.amount_refunded + amount > charge.amount_captured:
                    return GatewayResult(
                        Outcome.DECLINED_HARD,
                        GatewayStatus.DECLINED,
                        message=f"cannot refund {amount}: {charge.amount_refunded} of "
                        f"{charge.amount_captured} already refunded",
                    )
                SimulatorRefund.objects.create(charge=charge, refund_id=refund_id, amount=amount)
                charge.amount_refunded += amount
                charge.save(update_fields=["amount_refunded"])
            return GatewayResult(
                Outcome.SUCCEEDED,
                GatewayStatus.CAPTURED,
                reference=refund_id,
                amount_refunded=charge.amount_refunded,
            )

        return self._on_charge(reference, refund)

    def refund_retrieve(self, *, attempt_id, reference, refund_id) -> GatewayResult:
        """The simulator's truth about our refund ``refund_id`` (see ``RefundLookup``)."""
        if self._down():
            return self._error(OUTAGE)
        found = SimulatorRefund.objects.filter(refund_id=refund_id, charge__account=self.account).first()
        if found is None:
            return GatewayResult(Outcome.GATEWAY_ERROR, GatewayStatus.NOT_FOUND, message="no such refund")
        return GatewayResult(
            Outcome.SUCCEEDED,
            GatewayStatus.CAPTURED,
            reference=refund_id,
            amount_refunded=found.amount,
            message="refund found",
        )

    def retrieve(self, *, attempt_id, reference) -> GatewayResult:
        if self._down():
            return self._error(OUTAGE)
        qs = SimulatorCharge.objects.filter(account=self.account)
        charge = (qs.filter(reference=reference) if reference else qs.filter(attempt_id=attempt_id)).first()
        if charge is None:
            action = SimulatorAction.objects.filter(account=self.account, attempt_id=attempt_id).first()
            if action is not None and action.status in ("requires_action", "failed"):
                return self._action_result(action)
            if action is not None and action.status == "canceled":
                return GatewayResult(
                    Outcome.SUCCEEDED, GatewayStatus.CANCELED, message="cancelled, never charged"
                )
            return GatewayResult(
                Outcome.DECLINED_SOFT, GatewayStatus.NOT_FOUND, message="no charge for this attempt"
            )
        return self._result_for(charge)
