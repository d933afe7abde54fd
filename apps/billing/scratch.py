"""What a scratch marketplace (``apps.tenants.scratch``) takes from the one it is like: its dunning
policy, so simulated renewals retry as that marketplace's would. No products, prices, tax rates,
subscriptions or invoices are copied."""

from __future__ import annotations

from django_tenants.utils import schema_context

from apps.billing.models import DunningPolicy

POLICY_FIELDS = (
    "max_attempts",
    "window_days",
    "schedule_days",
    "advice_wait_hours",
    "final_action",
    "email_customers",
)


def billing_config_copy(*, source, target) -> None:
    """Make ``target``'s dunning policy ``source``'s (when it has one)."""
    with schema_context(source.schema_name):
        policy = DunningPolicy.objects.filter(pk=1).values(*POLICY_FIELDS).first()
    if policy is not None:
        with schema_context(target.schema_name):
            DunningPolicy.objects.update_or_create(pk=1, defaults=policy)
