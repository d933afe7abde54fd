"""Set-up: the default gateways, routing rule and decline table; gateway accounts and the adapter
that talks to each; what every gateway call feeds to the breaker."""

from __future__ import annotations

from apps.payments import declines
from apps.payments.breaker import CircuitBreaker
from apps.payments.config import MeshConfig
from apps.payments.gateways.base import GatewayConfig, GatewayResult, Outcome
from apps.payments.gateways.registry import gateway_for
from apps.payments.models import DeclineRule, GatewayAccount, RoutingRule
from apps.payments.routing import success_record


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
