"""Set-up: the default gateways, routing rule and decline table; gateway accounts and the adapter
that talks to each; one call to an adapter and what it feeds to the breaker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from apps.payments import declines
from apps.payments.breaker import CircuitBreaker
from apps.payments.config import MeshConfig
from apps.payments.gateways.base import GatewayConfig, GatewayResult, GatewayStatus, Outcome
from apps.payments.gateways.registry import gateway_for
from apps.payments.models import DeclineRule, GatewayAccount, RoutingRule
from apps.payments.routing import success_record

log = logging.getLogger(__package__)  # one logger for the package, as when it was one module


def payments_defaults_install(*, marketplace=None) -> None:
    """Simulator gateways, a default routing rule and the default decline table. Idempotent."""
    for name, cfg in (
        ("primary", {"latency_ms": {"p50": 25, "p99": 120}}),
        ("secondary", {"latency_ms": {"p50": 40, "p99": 200}}),
    ):
        GatewayAccount.objects.get_or_create(
            name=name, defaults={"kind": GatewayAccount.Kind.SIMULATOR, "settings": cfg}
        )
    if not RoutingRule.objects.exists():
        RoutingRule.objects.create(
            name="default", priority=1000, candidates=[{"gateway": "primary"}, {"gateway": "secondary"}]
        )
    DeclineRule.objects.bulk_create(
        [
            DeclineRule(gateway_kind=g, code=c, advice_code=a, action=act, note=n)
            for g, c, a, act, n in declines.default_rules()
        ],
        ignore_conflicts=True,
    )


def gateway_client(account: GatewayAccount, config: MeshConfig | None = None):
    """The adapter for ``account``; with ``config`` (a ``mesh_config()`` snapshot holding this
    account) its credentials are not decrypted again."""
    if config is not None:
        return gateway_for(account.kind, config.gateway_config(account))
    return gateway_for(
        account.kind,
        GatewayConfig(account_id=account.name, credentials=account.credentials, settings=account.settings),
    )


def gateway_call(
    account: GatewayAccount,
    send: Callable[[Any], GatewayResult],
    *,
    operation: str,
    about: dict[str, str],
    config: MeshConfig | None = None,
) -> tuple[GatewayResult, int]:
    """``send(adapter)``, one call to ``account``'s adapter (see ``gateway_client`` for
    ``config``): its answer, fed to the breaker (``gateway_observe``), and how long it took (ms).
    An adapter that raises (a bug: the port answers every processor failure) answers UNKNOWN, as
    nothing tells what the processor did; it is logged with ``about`` (the attempt or refund)."""
    started = time.perf_counter()
    try:
        result = send(gateway_client(account, config))
    except Exception as exc:
        log.exception("gateway adapter raised on %s", operation, extra=about)
        result = GatewayResult(Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message=f"adapter error: {exc}")
    latency = int((time.perf_counter() - started) * 1000)
    gateway_observe(account.name, result)
    return result, latency


def gateway_observe(account_name: str, result: GatewayResult) -> None:
    """Feed the breaker (and, for answers, the success rate) in one Redis round trip."""
    breaker = CircuitBreaker(account_name)
    if result.outcome in (Outcome.GATEWAY_ERROR, Outcome.UNKNOWN):
        breaker.record(success=False)
    else:
        approved = result.outcome in (Outcome.SUCCEEDED, Outcome.REQUIRES_ACTION)
        breaker.record(
            success=True, also=lambda pipe: success_record(account_name, approved=approved, pipe=pipe)
        )


def gateway_account_update(
    *, name: str, settings: dict | None = None, enabled: bool | None = None
) -> GatewayAccount:
    """Change a gateway account's non-secret settings or enabled flag (admin, simulate_traffic)."""
    account = GatewayAccount.objects.get(name=name)
    fields = []
    if settings is not None:
        account.settings = settings
        fields.append("settings")
    if enabled is not None:
        account.enabled = enabled
        fields.append("enabled")
    if fields:
        account.save(update_fields=fields)
    return account
