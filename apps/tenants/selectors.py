from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from apps.tenants.db import tenant_connection
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


def marketplace_current() -> Marketplace | None:
    """The marketplace whose schema the connection is in (django-tenants sets it)."""
    return getattr(tenant_connection(), "tenant", None)


def marketplace_base_url(*, request_host: str | None = None) -> str:
    """``scheme://host[:port]`` of the current marketplace's primary domain (links in emails,
    pages a processor or the simulator sends the customer to).

    https unless ``settings.DEBUG``; in DEBUG the port is the one of ``request_host`` when that
    names the same host (an operator on ``demo.localhost:8000``), else ``settings.PORT`` (what
    ``make run`` listens on), left out when it is 80: a link in a local email then opens on the
    local server. Without a primary domain, ``request_host`` is used as it is."""
    marketplace = marketplace_current()
    domain = marketplace_primary_domain(marketplace=marketplace) if marketplace is not None else None
    request_parts = urlsplit(f"//{request_host}") if request_host else None
    host = domain or (request_parts.hostname if request_parts else None) or "localhost"
    if not settings.DEBUG:
        return f"https://{host}"
    port: int | None = settings.PORT
    if request_parts is not None and request_parts.hostname == host:
        port = request_parts.port
    return f"http://{host}" + (f":{port}" if port and port != 80 else "")
