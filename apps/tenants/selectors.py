from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.tenants.models import ApiKey, Domain, Marketplace
from apps.tenants.services import hash_key

LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_key_lookup(raw: str) -> ApiKey | None:
    """The active key for ``raw``, or None. Touches ``last_used_at`` at most once a minute."""
    if not raw.startswith(("sk_test_", "sk_live_")):
        return None
    key = (
        ApiKey.objects.select_related("tenant")
        .filter(key_hash=hash_key(raw), revoked_at__isnull=True, tenant__is_active=True)
        .first()
    )
    if key is not None:
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
    return key


def _with_business_data():
    """Marketplaces whose schema holds business data (not public, not the template)."""
    return Marketplace.objects.exclude(
        schema_name__in=[settings.PUBLIC_SCHEMA_NAME, settings.TENANT_BASE_SCHEMA]
    )


def marketplaces_active() -> list[Marketplace]:
    """Every active marketplace whose schema holds business data."""
    return list(_with_business_data().filter(is_active=True))


def marketplace_get(*, schema_name: str) -> Marketplace | None:
    """The marketplace of schema ``schema_name`` if its schema holds business data (active or
    not), else None."""
    return _with_business_data().filter(schema_name=schema_name).first()


def marketplace_primary_domain(*, marketplace: Marketplace) -> str | None:
    """The marketplace's primary domain (a host name), or None when it has none."""
    return Domain.objects.filter(tenant=marketplace, is_primary=True).values_list("domain", flat=True).first()
