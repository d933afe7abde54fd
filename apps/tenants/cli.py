"""What the management commands share."""

from __future__ import annotations

from collections.abc import Callable

from django.core.management.base import CommandError
from django_tenants.utils import tenant_context

from apps.tenants.models import Marketplace
from apps.tenants.scratch import Scratch, scratch_marketplace
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


def scratch_simulation(
    *,
    like: Marketplace,
    purpose: str,
    keep: bool,
    note: Callable[[str], object],
    run: Callable[[Marketplace], dict],
) -> tuple[dict, str]:
    """What the simulations (``simulate_*``) share: ``run(marketplace)`` in a scratch marketplace
    configured like ``like`` (entered with ``tenant_context``), never in ``like`` itself, with the
    line naming it given to ``note`` first. Returns the run's report, the scratch marketplace's
    name first, and the line saying how to look at it when ``keep`` ("" otherwise)."""
    with scratch_marketplace(like=like, purpose=purpose, keep=keep) as scratch:
        note(scratch_started(scratch, like))
        with tenant_context(scratch.marketplace):
            report = run(scratch.marketplace)
        return {"marketplace": scratch.name, **report}, scratch_kept(scratch) if keep else ""
