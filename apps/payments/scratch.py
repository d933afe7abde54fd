"""What a scratch marketplace (``apps.tenants.scratch``) takes from the one it is like: the
payment mesh's configuration, so a simulation routes, declines and fails over as that marketplace
would. Simulator accounts come with their settings and (encrypted) credentials; a real processor's
account (Stripe, Adyen) comes disabled and without its credentials, so a simulation can never
charge a real processor, even in test mode, while rules naming it stay valid. Routing and decline
rules replace the defaults the new marketplace was provisioned with. Nothing else of payments is
copied (no payments, methods or events)."""

from __future__ import annotations

from django.db import models, transaction
from django_tenants.utils import schema_context

from apps.payments.config import mesh_config_changed
from apps.payments.models import DeclineRule, GatewayAccount, RoutingRule

ACCOUNT_FIELDS = ("name", "kind", "enabled", "credentials_encrypted", "settings")


def _rule_fields(model: type[models.Model]) -> list[str]:
    return [f.name for f in model._meta.concrete_fields if not f.primary_key]


def payments_config_copy(*, source, target) -> None:
    """Make ``target``'s gateway accounts, routing rules and decline rules ``source``'s."""
    with schema_context(source.schema_name):
        accounts = list(GatewayAccount.objects.values(*ACCOUNT_FIELDS))
        routing = list(RoutingRule.objects.values(*_rule_fields(RoutingRule)))
        declines = list(DeclineRule.objects.values(*_rule_fields(DeclineRule)))
    with schema_context(target.schema_name), transaction.atomic():
        RoutingRule.objects.all().delete()
        DeclineRule.objects.all().delete()
        GatewayAccount.objects.exclude(name__in=[a["name"] for a in accounts]).delete()
        for row in accounts:
            if row["kind"] != "simulator":
                row.update(enabled=False, credentials_encrypted="")
            GatewayAccount.objects.update_or_create(name=row.pop("name"), defaults=row)
        RoutingRule.objects.bulk_create([RoutingRule(**row) for row in routing])
        DeclineRule.objects.bulk_create([DeclineRule(**row) for row in declines])
    mesh_config_changed(target.schema_name)
