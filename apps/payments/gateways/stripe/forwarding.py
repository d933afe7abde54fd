"""Stripe's Forwarding API ("Vault and Forward"): a card saved at Stripe (a PaymentMethod
``pm_...``) is sent by Stripe to another processor's endpoint, so the platform can charge it at
that processor without ever seeing the card (PCI SAQ A).

``POST /v1/forwarding/requests`` with ``payment_method`` (our credential at the Stripe account),
``url`` (the target processor's endpoint, which Stripe must have enabled for the account),
``request[body]`` and ``request[headers]`` (built by the target's package: its JSON with the card
fields left empty, its API key) and ``replacements`` (``card_number``, ``card_expiry``,
``card_cvc``: the fields Stripe fills in). Stripe answers a ``forwarding.request`` whose
``response_details`` (``status``, ``body``) is the target's own answer, read by the target's
package (``ForwardTarget.forward_answer``). The Idempotency-Key is derived from our attempt id
(``<attempt>:forward``), and the target's own Idempotency-Key header is the attempt id: a retried
forward is answered from Stripe's first, and the target never charges twice.

Failures of the forwarding call itself: no connection made, 4xx (invalid request, Forwarding not
enabled, authentication), 429, 502/503 are GATEWAY_ERROR (Stripe forwarded nothing); an answer
lost after sending, 500/504, or an idempotency key in flight are UNKNOWN (the target may have
charged); a ``forwarding.request`` without ``response_details`` is UNKNOWN too.

Config (the Stripe account's ``GatewayConfig``): ``credentials["secret_key"]``;
``settings["forwarding"]`` = true to offer the vault (Stripe enables Forwarding per account),
``settings["api_base"]`` as for the gateway.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import stripe

from apps.payments.gateways.base import (
    ChargeRequest,
    Gateway,
    GatewayConfig,
    GatewayResult,
    GatewayStatus,
    Outcome,
)
from apps.payments.gateways.stripe.errors import describe, read_failure
from apps.payments.gateways.stripe.sdk import request_options, stripe_client
from apps.payments.gateways.vault import ForwardTarget, VaultCharge

logger = logging.getLogger(__name__)

# The processor kinds Stripe can forward a card to (its documented destinations we speak).
DESTINATIONS = frozenset({"adyen"})


class StripeForwarding:
    name = "stripe_forwarding"

    def __init__(self, config: GatewayConfig, *, http_client: stripe.HTTPClient | None = None):
        self.config = config
        self.settings = config.settings or {}
        self.client = stripe_client(
            str((config.credentials or {}).get("secret_key", "")),
            api_base=self.settings.get("api_base"),
            timeout_seconds=float(config.timeout_seconds),
            http_client=http_client,
        )

    @classmethod
    def offered(cls, config: GatewayConfig) -> bool:
        return bool((config.settings or {}).get("forwarding")) and bool(
            (config.credentials or {}).get("secret_key")
        )

    def can_reach(self, *, target_kind: str, target: GatewayConfig) -> bool:
        return target_kind in DESTINATIONS

    def forward_charge(
        self, *, credential: dict, target_kind: str, target: Gateway, request: ChargeRequest
    ) -> VaultCharge:
        if target_kind not in DESTINATIONS or not isinstance(target, ForwardTarget):
            return VaultCharge(
                GatewayResult(
                    Outcome.GATEWAY_ERROR,
                    GatewayStatus.ERROR,
                    message=f"stripe forwarding cannot reach a {target_kind} gateway",
                )
            )
        outbound = target.forward_request(request)
        params: dict[str, Any] = {
            "payment_method": str(credential.get("reference", "")),
            "url": outbound.url,
            "request": {
                "body": outbound.body,
                "headers": [{"name": k, "value": v} for k, v in outbound.headers.items()],
            },
            "replacements": list(outbound.replacements),
            "metadata": {"attempt_id": request.attempt_id},
        }
        try:
            forwarded = self.client.v1.forwarding.requests.create(
                params,  # type: ignore[arg-type]
                request_options(f"{request.attempt_id}:forward"),
            ).to_dict()
        except stripe.StripeError as exc:
            return VaultCharge(self._error_result(exc))
        except Exception as exc:  # a bug: nothing tells what Stripe or the target did
            logger.exception("stripe forwarding: unexpected error")
            return VaultCharge(
                GatewayResult(Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message=f"forward: {describe(exc)}")
            )
        details = forwarded.get("response_details") or {}
        if not details or details.get("status") is None:
            return VaultCharge(
                GatewayResult(
                    Outcome.UNKNOWN,
                    GatewayStatus.UNKNOWN,
                    message=f"forward {forwarded.get('id')}: no answer from the destination",
                    raw={"forwarding_request": forwarded.get("id")},
                )
            )
        answer = target.forward_answer(
            status=int(details["status"]), body=str(details.get("body") or ""), request=request
        )
        raw = {**answer.result.raw, "forwarding_request": forwarded.get("id")}
        return VaultCharge(replace(answer.result, raw=raw), answer.saved)

    @staticmethod
    def _error_result(exc: stripe.StripeError) -> GatewayResult:
        failure = read_failure(exc)
        message = f"forward: {failure.description}"
        raw = {"http_status": failure.http_status}
        if failure.may_have_acted:  # Stripe may have forwarded it: the target may have charged
            return GatewayResult(Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message=message, raw=raw)
        # Not reached, or refused (4xx, 429, 502/503): nothing was forwarded.
        return GatewayResult(Outcome.GATEWAY_ERROR, GatewayStatus.ERROR, message=message, raw=raw)
