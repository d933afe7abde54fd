"""Provisioning a marketplace: clone of the migrated template vs replaying every migration."""

from __future__ import annotations

import statistics
import time
import uuid

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django_tenants.clone import CloneSchema

from apps.tenants.cloning import clone_schema
from apps.tenants.services import marketplace_create

pytestmark = pytest.mark.bench

N = 10


def _slug() -> str:
    return "bench_" + uuid.uuid4().hex[:10]


def test_provisioning_time(committed, bench_report):
    # warm-up (imports, first clone function install)
    marketplace_create(
        slug=_slug(), name="w", domain=f"{uuid.uuid4().hex[:8]}.bench.localhost", owner_email="o@b.test"
    )
    full, clone_only, tenants_clone = [], [], []
    for _ in range(N):
        slug = _slug()
        t0 = time.perf_counter()
        marketplace_create(
            slug=slug, name=slug, domain=f"{slug.replace('_', '-')}.localhost", owner_email="o@b.test"
        )
        full.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with transaction.atomic():
            clone_schema("tenant_template", slug + "_c")
        clone_only.append(time.perf_counter() - t0)
        connection.cursor().execute(f'DROP SCHEMA "{slug}_c" CASCADE')
        t0 = time.perf_counter()
        CloneSchema().clone_schema("tenant_template", slug + "_d", "DATA")
        tenants_clone.append(time.perf_counter() - t0)
        connection.cursor().execute(f'DROP SCHEMA "{slug}_d" CASCADE')

    # Baseline: what django-tenants does without a template (CREATE SCHEMA + migrate_schemas).
    replay = []
    for _ in range(3):
        slug = _slug()
        connection.cursor().execute(f'CREATE SCHEMA "{slug}"')
        t0 = time.perf_counter()
        call_command("migrate_schemas", schema_name=slug, interactive=False, verbosity=0)
        replay.append(time.perf_counter() - t0)
        connection.cursor().execute(f'DROP SCHEMA "{slug}" CASCADE')

    bench_report(
        "marketplace provisioning",
        [
            (
                "create_marketplace (clone + domain + operator + provisioners), median",
                f"{statistics.median(full) * 1000:.0f} ms  "
                f"(max {max(full) * 1000:.0f} ms, n={N}; target <= 1000 ms)",
            ),
            (
                "schema clone alone (apps/tenants/cloning.py), median",
                f"{statistics.median(clone_only) * 1000:.0f} ms",
            ),
            (
                "baseline: django-tenants' clone_schema, median",
                f"{statistics.median(tenants_clone) * 1000:.0f} ms",
            ),
            (
                "baseline: CREATE SCHEMA + replaying migrations (in-process), median",
                f"{statistics.median(replay) * 1000:.0f} ms  (n=3)",
            ),
        ],
    )
