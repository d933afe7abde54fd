"""What the management commands share."""

from __future__ import annotations

from django.core.management.base import CommandError

from apps.tenants.models import Marketplace
from apps.tenants.scratch import Scratch
from apps.tenants.selectors import marketplace_get


def marketplace_named(schema_name: str) -> Marketplace:
    """The marketplace a command's ``--tenant`` names (its schema; never the public schema nor
    the template); CommandError when there is none."""
    tenant = marketplace_get(schema_name=schema_name)
    if tenant is None:
        raise CommandError(f"no marketplace {schema_name!r}")
    return tenant


def scratch_started(scratch: Scratch, like: Marketplace) -> str:
    """The line a simulation prints first: where it runs (never in ``like`` itself)."""
    return f"marketplace {scratch.name} (scratch, configured like {like.schema_name})"


def scratch_kept(scratch: Scratch) -> str:
    """How to look at a kept scratch marketplace (``--keep``): its admin, and its operator's
    login (generated for it; the marketplace holds only simulated data)."""
    return (
        f"kept {scratch.name}: admin at http://{scratch.domain}:8000/admin/ "
        f"(login {scratch.operator_email} / {scratch.operator_password}); "
        f"drop it with: python manage.py drop_scratch {scratch.name}"
    )
