"""What a simulation (``simulate_*``) must leave as it found it in the marketplace it is named
after: it runs in a scratch marketplace of its own (``apps.tenants.scratch``)."""

from __future__ import annotations

import subprocess
import sys

from django.conf import settings
from django_tenants.utils import schema_exists, tenant_context

from apps.billing.models import Invoice
from apps.core.crypto import encrypt_json
from apps.customers.models import Customer
from apps.ledger.models import JournalTransaction, LedgerEvent
from apps.payments.models import GatewayAccount, PaymentAttempt, PaymentIntent, RoutingRule, SimulatorCharge
from apps.tenants.models import Marketplace
from apps.webhooks.models import OutboundEvent, WebhookDelivery, WebhookEndpoint
from tests.support import BASE, database_url_for_tests


def endpoint_add(tenant) -> None:
    """A webhook endpoint taking every event: a run in ``tenant`` would queue deliveries to it."""
    with tenant_context(tenant):
        WebhookEndpoint.objects.create(
            url="https://shop.example/hooks",
            enabled_events=["*"],
            secret_encrypted=encrypt_json({"secret": "x"}),
        )


def footprint(tenant) -> dict:
    """``tenant``'s books, events and mesh configuration, to compare before and after a run."""
    with tenant_context(tenant):
        return {
            "payments": PaymentIntent.objects.count(),
            "attempts": PaymentAttempt.objects.count(),
            "simulator_charges": SimulatorCharge.objects.count(),
            "customers": Customer.objects.count(),
            "invoices": Invoice.objects.count(),
            "ledger_events": LedgerEvent.objects.count(),
            "journal": JournalTransaction.objects.count(),
            "outbound_events": OutboundEvent.objects.count(),
            "deliveries": WebhookDelivery.objects.count(),
            "gateway_accounts": sorted(
                GatewayAccount.objects.values_list(
                    "name", "kind", "enabled", "settings", "credentials_encrypted"
                )
            ),
            "routing_rules": list(RoutingRule.objects.values_list("candidates", "mode")),
        }


def scratch_exists(name: str) -> bool:
    return Marketplace.objects.filter(schema_name=name).exists() or schema_exists(name)


def simulate(command: str, *args: str, debug: bool = True, **env: str) -> subprocess.CompletedProcess:
    """``manage.py <command> <args>`` in a process of its own, on the test database and Redis
    (``DJANGO_DEBUG=1`` unless not ``debug``; ``env`` adds to its environment)."""
    environment = {
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "PATH": "/usr/bin:/bin",
        **({"DJANGO_DEBUG": "1"} if debug else {}),
        **env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", command, *args],
        cwd=BASE,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
