"""Provisioning marketplaces and issuing API keys."""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django_tenants.utils import schema_context, schema_exists, tenant_context

from apps.tenants.db import tenant_connection
from apps.tenants.models import ApiKey, Domain, Marketplace

SLUG_RE = re.compile(r"^[a-z][a-z0-9_]{1,46}$")
DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
KEY_ALPHABET = string.ascii_letters + string.digits


class ProvisioningError(ValueError):
    """Bad input for provisioning; the message is one readable line and nothing was changed."""


def reserved_schema_names() -> set[str]:
    return {settings.PUBLIC_SCHEMA_NAME, settings.TENANT_BASE_SCHEMA, "information_schema"}


def marketplace_validate(*, slug: str, domain: str) -> None:
    """Raise ProvisioningError if the slug or domain cannot be used. Reads only."""
    if not SLUG_RE.match(slug):
        raise ProvisioningError(
            f"invalid slug {slug!r}: use 2-47 characters, lowercase letters, digits and '_', "
            "starting with a letter"
        )
    if slug in reserved_schema_names() or slug.startswith("pg_"):
        raise ProvisioningError(f"slug {slug!r} is reserved")
    if Marketplace.objects.filter(schema_name=slug).exists() or schema_exists(slug):
        raise ProvisioningError(f"slug {slug!r} is already taken")
    if not DOMAIN_RE.match(domain):
        raise ProvisioningError(f"invalid domain {domain!r}")
    if domain in settings.PUBLIC_DOMAINS or Domain.objects.filter(domain=domain).exists():
        raise ProvisioningError(f"domain {domain!r} is already taken")


@dataclass
class Provisioned:
    marketplace: Marketplace
    domain: Domain
    operator_email: str
    operator_password: str | None


def marketplace_create(
    *,
    slug: str,
    name: str,
    domain: str,
    owner_email: str,
    operator_password: str | None = None,
) -> Provisioned:
    """Create a marketplace: its schema (cloned from the migrated template), its domain, an
    operator account in its admin, and whatever the apps install per tenant
    (``settings.TENANT_PROVISIONERS``). Raises ProvisioningError on bad input, changing nothing."""
    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        return _marketplace_create(
            slug=slug.strip(),
            name=name,
            domain=domain.strip().lower(),
            owner_email=owner_email,
            operator_password=operator_password,
        )


def _marketplace_create(*, slug, name, domain, owner_email, operator_password) -> Provisioned:
    marketplace_validate(slug=slug, domain=domain)
    if not name.strip():
        raise ProvisioningError("name must not be empty")
    template_ensure()
    password = operator_password or secrets.token_urlsafe(12)
    # One transaction: DDL is transactional in PostgreSQL, so a failure leaves no half-made schema.
    with transaction.atomic():
        marketplace = Marketplace(schema_name=slug, name=name.strip(), owner_email=owner_email)
        marketplace.save()  # clones the template schema
        dom = Domain.objects.create(domain=domain, tenant=marketplace, is_primary=True)
        with tenant_context(marketplace):
            get_user_model().objects.create_superuser(
                username=owner_email, email=owner_email, password=password
            )
            for path in settings.TENANT_PROVISIONERS:
                import_string(path)(marketplace=marketplace)
    return Provisioned(marketplace, dom, owner_email, password)


def template_ensure() -> None:
    """Create and migrate the template schema new marketplaces are cloned from, if missing.
    Idempotent; `migrate_schemas` keeps it current afterwards (it is registered as a tenant)."""
    base = settings.TENANT_BASE_SCHEMA
    if Marketplace.objects.filter(schema_name=base).exists() and schema_exists(base):
        return
    with transaction.atomic():
        # The template itself is built by replaying migrations (there is no base to clone yet):
        # saving the row creates the schema and migrates it.
        Marketplace.objects.get_or_create(
            schema_name=base, defaults={"name": "Template (do not use)", "is_active": False}
        )
    tenant_connection().set_schema_to_public()


def public_tenant_ensure() -> Marketplace:
    """The platform owner's tenant (schema public) with the public domains. Idempotent."""
    public, _ = Marketplace.objects.get_or_create(
        schema_name=settings.PUBLIC_SCHEMA_NAME, defaults={"name": "Platform"}
    )
    for i, host in enumerate(settings.PUBLIC_DOMAINS):
        Domain.objects.get_or_create(domain=host, defaults={"tenant": public, "is_primary": i == 0})
    return public


# --------------------------------------------------------------------------- API keys


def hash_key(raw: str) -> str:
    # Keys carry 190+ bits of randomness, so a fast hash is the right tool (as for session tokens).
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_create(
    *, tenant: Marketplace, mode: str = ApiKey.Mode.TEST, name: str = "", scopes: dict | None = None
) -> tuple[ApiKey, str]:
    """Issue a secret key; with ``scopes`` ({resource: "read" | "write"}, resources and levels of
    ``ApiKey``) a restricted one. Returns the row and the raw key, which is never stored or shown
    again. Raises ProvisioningError."""
    if tenant.schema_name in reserved_schema_names():
        raise ProvisioningError(f"{tenant.schema_name!r} is not a marketplace")
    if mode not in ApiKey.Mode.values:
        raise ProvisioningError(f"mode must be one of {', '.join(ApiKey.Mode.values)}")
    _scopes_check(scopes or {})
    prefix = f"sk_{mode}_"
    raw = prefix + "".join(secrets.choice(KEY_ALPHABET) for _ in range(40))
    key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        mode=mode,
        key_hash=hash_key(raw),
        prefix=prefix,
        last4=raw[-4:],
        scopes=scopes or {},
    )
    return key, raw


def _scopes_check(scopes: object) -> None:
    """A restricted key's scopes name known resources at known levels: a typo must never
    silently issue a key without the access it was meant to have."""
    if not isinstance(scopes, dict):
        raise ProvisioningError('scopes must map resources to levels, e.g. {"payments": "write"}')
    for resource, level in scopes.items():
        if resource not in ApiKey.SCOPE_RESOURCES:
            raise ProvisioningError(f"unknown scope {resource!r}; known: {', '.join(ApiKey.SCOPE_RESOURCES)}")
        if level not in ApiKey.SCOPE_LEVELS:
            raise ProvisioningError(
                f"scope {resource!r} must be {' or '.join(ApiKey.SCOPE_LEVELS)}, not {level!r}"
            )


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke a key. Idempotent: revoking twice keeps the first revocation time."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key
