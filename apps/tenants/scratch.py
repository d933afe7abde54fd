"""Scratch marketplaces: where simulations (``simulate_*``) and the chaos harness run, so that
nothing they do reaches a live marketplace's books, settings or webhook endpoints.

``scratch_marketplace(like=..., purpose=...)`` provisions a fresh marketplace (cloned from the
template, as ``marketplace_create`` does for any other), configures it like ``like``, yields it and
drops it afterwards (schema, domain, API keys, Redis keys) unless ``keep=True``.

"Configured like" is the Marketplace row's own settings (currency, limits, branding) here, and
whatever each app registers in its ``AppConfig.ready()`` with ``scratch_copier_register`` (this app
is the lowest layer and imports none of them): payments copies its gateway accounts, routing and
decline rules, billing its dunning policy. What is never copied: webhook endpoints, API keys,
customers, and the books (payments, ledger, invoices), so a run starts from empty books.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django_tenants.utils import schema_context

from apps.tenants.db import tenant_connection
from apps.tenants.models import ApiKey, Domain, Marketplace
from apps.tenants.services import marketplace_create

SCRATCH_SUFFIX = " (scratch)"  # how a scratch marketplace's name ends (``scratch_drop`` checks it)
PURPOSE_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
SCRATCH_SLUG_RE = re.compile(r"^[a-z][a-z0-9_]{0,30}_[0-9a-f]{8}$")
# The Marketplace row's settings a scratch one takes from the one it is like (not its name, owner,
# domain or keys).
COPIED_FIELDS = ("brand_color", "default_currency", "max_payment_amount")

# (source, target) -> None: copies an app's settings from one marketplace's schema into another's.
ScratchCopier = Callable[..., None]
_copiers: dict[str, ScratchCopier] = {}


def scratch_copier_register(app: str, copier: ScratchCopier) -> None:
    """Have ``copier(source=..., target=...)`` copy ``app``'s settings into every scratch
    marketplace configured like another (called from the app's ``AppConfig.ready()``). The
    copier enters each schema itself (``schema_context``) and is called in the public schema."""
    _copiers[app] = copier


@dataclass(frozen=True)
class Scratch:
    """A scratch marketplace, and how to reach its admin (its operator's login, generated)."""

    marketplace: Marketplace
    domain: str
    operator_email: str
    operator_password: str

    @property
    def name(self) -> str:
        return self.marketplace.schema_name


@contextlib.contextmanager
def scratch_marketplace(*, like: Marketplace | None, purpose: str, keep: bool = False) -> Iterator[Scratch]:
    """A fresh marketplace ``<purpose>_<hex>`` (domain ``<purpose>-<hex>.localhost``), configured
    like ``like`` (or as a new marketplace is, with ``like=None``), dropped on the way out (even
    on an error) unless ``keep``. The caller enters it (``tenant_context``) itself."""
    if not PURPOSE_RE.match(purpose):
        raise ValueError(f"purpose must be lowercase letters, digits and '-', got {purpose!r}")
    tag = secrets.token_hex(4)
    slug = f"{purpose.replace('-', '_')}_{tag}"
    made = marketplace_create(
        slug=slug,
        name=f"{purpose}{SCRATCH_SUFFIX}",
        domain=f"{purpose}-{tag}.localhost",
        owner_email=f"scratch@{tag}.test",
    )
    assert made.operator_password is not None  # marketplace_create generates one
    scratch = Scratch(made.marketplace, made.domain.domain, made.operator_email, made.operator_password)
    try:
        if like is not None:
            _configure_like(scratch.marketplace, like)
        yield scratch
    finally:
        tenant_connection().set_schema_to_public()
        if not keep:
            scratch_drop(scratch.marketplace)


def _configure_like(target: Marketplace, source: Marketplace) -> None:
    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        for field in COPIED_FIELDS:
            setattr(target, field, getattr(source, field))
        target.save(update_fields=list(COPIED_FIELDS))
        for copier in _copiers.values():
            copier(source=source, target=target)


def scratch_drop(marketplace: Marketplace) -> None:
    """Drop a scratch marketplace: its schema, row, domain and API keys, and its Redis keys."""
    schema = marketplace.schema_name
    if not (marketplace.name.endswith(SCRATCH_SUFFIX) and SCRATCH_SLUG_RE.match(schema)) or schema in (
        settings.PUBLIC_SCHEMA_NAME,
        settings.TENANT_BASE_SCHEMA,
    ):  # a live marketplace is never dropped through here
        raise ValueError(f"{schema!r} is not a scratch marketplace")
    tenant_connection().set_schema_to_public()
    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        ApiKey.objects.filter(tenant=marketplace).delete()
        Domain.objects.filter(tenant=marketplace).delete()
        with connection.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        Marketplace.objects.filter(pk=marketplace.pk).delete()
    _forget_redis(schema)


def _forget_redis(schema: str) -> None:
    """Every Redis key naming the schema (breakers, success rates, cached configuration)."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    with contextlib.suppress(redis.RedisError):
        keys = list(client.scan_iter(match=f"*{schema}*", count=500))
        if keys:
            client.delete(*keys)
