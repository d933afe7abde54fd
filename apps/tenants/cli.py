"""What the management commands share."""

from __future__ import annotations

from django.core.management.base import CommandError

from apps.tenants.models import Marketplace
from apps.tenants.selectors import marketplace_get


def marketplace_named(schema_name: str) -> Marketplace:
    """The marketplace a command's ``--tenant`` names (its schema; never the public schema nor
    the template); CommandError when there is none."""
    tenant = marketplace_get(schema_name=schema_name)
    if tenant is None:
        raise CommandError(f"no marketplace {schema_name!r}")
    return tenant
