"""Scratch marketplaces (apps.tenants.scratch): configured like another, with none of its books,
keys or endpoints, and gone afterwards unless kept."""

from __future__ import annotations

import io

import pytest
import redis
from django.conf import settings
from django.core.management import CommandError, call_command
from django_tenants.utils import schema_exists, tenant_context

from apps.billing.models import DunningPolicy
from apps.core.crypto import encrypt_json
from apps.customers.models import Customer
from apps.customers.services import customer_create
from apps.payments.models import DeclineRule, GatewayAccount, RoutingRule
from apps.tenants.models import ApiKey, Domain, Marketplace
from apps.tenants.scratch import scratch_drop, scratch_marketplace
from apps.tenants.services import api_key_create
from apps.webhooks.models import WebhookEndpoint
from tests.support import fresh_marketplace


def _config(tenant) -> dict:
    """What a scratch marketplace takes from the one it is like."""
    with tenant_context(tenant):
        return {
            "accounts": sorted(
                GatewayAccount.objects.values_list(
                    "name", "kind", "enabled", "settings", "credentials_encrypted"
                )
            ),
            "routing": list(
                RoutingRule.objects.values_list("name", "priority", "candidates", "mode", "currencies")
            ),
            "declines": sorted(
                DeclineRule.objects.values_list("gateway_kind", "code", "advice_code", "action")
            ),
            "dunning": list(
                DunningPolicy.objects.values_list("max_attempts", "schedule_days", "final_action")
            ),
        }


def _gone(schema: str) -> bool:
    return not Marketplace.objects.filter(schema_name=schema).exists() and not schema_exists(schema)


@pytest.fixture
def source(committed):
    """A marketplace configured away from the defaults, with an endpoint, a key and a customer."""
    tenant = fresh_marketplace("scsrc", simulator_latency_ms=3)
    Marketplace.objects.filter(pk=tenant.pk).update(
        brand_color="#112233", default_currency="EUR", max_payment_amount=50_000
    )
    tenant.refresh_from_db()
    api_key_create(tenant=tenant, name="storefront")
    with tenant_context(tenant):
        stripe = GatewayAccount(name="stripe_main", kind="stripe", settings={"forwarding": True})
        stripe.credentials = {"secret_key": "sk_test_scratch"}
        stripe.save()
        GatewayAccount.objects.filter(name="secondary").update(enabled=False)
        RoutingRule.objects.create(
            name="euros", priority=10, currencies=["EUR"], candidates=[{"gateway": "stripe_main"}]
        )
        DeclineRule.objects.filter(code="do_not_honor").update(action=DeclineRule.Action.STOP)
        DunningPolicy.objects.filter(pk=1).update(
            max_attempts=3, schedule_days=[0, 2, 4], final_action="unpaid"
        )
        WebhookEndpoint.objects.create(
            url="https://shop.example/hooks",
            enabled_events=["*"],
            secret_encrypted=encrypt_json({"secret": "x"}),
        )
        customer_create(name="a real customer")
    return tenant


def test_a_scratch_marketplace_is_configured_like_another_and_dropped_afterwards(source):
    before = _config(source)
    client = redis.Redis.from_url(settings.REDIS_URL)

    with scratch_marketplace(like=source, purpose="sim-test") as scratch:
        name = scratch.name
        made = scratch.marketplace
        # its own slug and .localhost domain, its settings and its mesh and dunning configuration
        assert name.startswith("sim_test_") and scratch.domain == f"sim-test-{name[-8:]}.localhost"
        assert Domain.objects.filter(tenant=made, domain=scratch.domain).exists()
        made.refresh_from_db()
        assert (made.brand_color, made.default_currency, made.max_payment_amount) == (
            "#112233",
            "EUR",
            50_000,
        )
        # the simulators as they are; a real processor's account disabled, without its credentials
        # (a simulation never charges a real processor), its rules kept
        real = [a for a in before["accounts"] if a[1] != "simulator"]
        assert real and _config(made) == {
            **before,
            "accounts": sorted(
                (name, kind, enabled, cfg, secret) if kind == "simulator" else (name, kind, False, cfg, "")
                for name, kind, enabled, cfg, secret in before["accounts"]
            ),
        }
        with tenant_context(made):
            assert GatewayAccount.objects.get(name="stripe_main").credentials == {}
            # none of its endpoints, customers or books
            assert not WebhookEndpoint.objects.exists()
            assert not ApiKey.objects.filter(tenant=made).exists()
            assert not Customer.objects.exists()
        client.set(f"mp:test:{name}:x", 1)

    assert _gone(name)
    assert not Domain.objects.filter(domain=scratch.domain).exists()
    assert client.exists(f"mp:test:{name}:x") == 0
    assert _config(source) == before


def test_a_new_scratch_marketplace_is_as_provisioned_without_like(committed):
    with scratch_marketplace(like=None, purpose="sim-test") as scratch:
        config = _config(scratch.marketplace)
        assert [a[0] for a in config["accounts"]] == ["primary", "secondary"]
        assert len(config["routing"]) == 1
    assert _gone(scratch.name)


def test_a_scratch_marketplace_is_dropped_on_an_error_and_kept_when_asked(source):
    with pytest.raises(RuntimeError), scratch_marketplace(like=source, purpose="sim-test") as failed:
        raise RuntimeError("the simulation broke")
    assert _gone(failed.name)

    with scratch_marketplace(like=source, purpose="sim-test", keep=True) as kept:
        pass
    assert Marketplace.objects.filter(schema_name=kept.name).exists() and schema_exists(kept.name)
    assert _config(kept.marketplace)["routing"] == _config(source)["routing"]

    out = io.StringIO()
    call_command("drop_scratch", kept.name, stdout=out)
    assert _gone(kept.name) and f"dropped {kept.name}" in out.getvalue()


def test_a_live_marketplace_is_never_dropped_as_scratch(source):
    with pytest.raises(ValueError, match="not a scratch marketplace"):
        scratch_drop(source)
    with pytest.raises(CommandError, match="not a scratch marketplace"):
        call_command("drop_scratch", source.schema_name)
    assert schema_exists(source.schema_name)


def test_a_purpose_must_be_a_slug_fragment(committed):
    with pytest.raises(ValueError, match="purpose"), scratch_marketplace(like=None, purpose="Sim Traffic"):
        pass
