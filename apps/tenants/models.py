"""Marketplaces (tenants), their domains and their API keys. All live in the public schema."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django_tenants.models import DomainMixin, TenantMixin
from django_tenants.utils import schema_exists

from apps.tenants.cloning import clone_schema
from apps.tenants.db import tenant_connection


class Marketplace(TenantMixin):
    """A marketplace: one PostgreSQL schema (``schema_name`` is its slug)."""

    name = models.CharField(max_length=200)
    owner_email = models.EmailField(blank=True)
    brand_color = models.CharField(max_length=7, default="#4f46e5")
    default_currency = models.CharField(max_length=3, default="USD")
    max_payment_amount = models.BigIntegerField(
        default=99_999_999, help_text="Largest single payment in minor units (any currency)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    is_active = models.BooleanField(default=True)

    auto_create_schema = True
    auto_drop_schema = False

    class Meta:
        ordering = ["schema_name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.schema_name})"

    @property
    def slug(self) -> str:
        return self.schema_name

    def create_schema(self, check_if_exists=False, sync_schema=True, verbosity=1):
        """Clone the migrated template schema (apps/tenants/cloning.py): tables, rows (migration
        history, permissions), constraints, indexes and triggers, every object under its own name.
        No ``migrate_schemas`` run afterwards: the cloned ``django_migrations`` rows already say
        everything is applied."""
        base = settings.TENANT_BASE_SCHEMA
        if not sync_schema or self.schema_name == base or not schema_exists(base):
            return super().create_schema(check_if_exists, sync_schema, verbosity)
        if check_if_exists and schema_exists(self.schema_name):
            return False
        clone_schema(base, self.schema_name)
        tenant_connection().set_schema_to_public()
        return True


class Domain(DomainMixin):
    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain


class ApiKey(models.Model):
    """A secret key, stored only as its SHA-256 hash; the tenant it belongs to chooses the schema."""

    # What a restricted key is scoped on: each API view names one (``scope_resource``; a test
    # keeps the two in step), at one of ``SCOPE_LEVELS`` (write includes read).
    SCOPE_RESOURCES = (
        "balance",
        "customers",
        "events",
        "invoices",
        "ledger",
        "payment_methods",
        "payments",
        "payouts",
        "products",
        "refunds",
        "subscriptions",
        "transfers",
        "vendors",
        "webhook_endpoints",
    )
    SCOPE_LEVELS = ("read", "write")

    class Mode(models.TextChoices):
        TEST = "test"
        LIVE = "live"

    tenant = models.ForeignKey(Marketplace, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    mode = models.CharField(max_length=4, choices=Mode.choices, default=Mode.TEST)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16)  # e.g. "sk_test_"
    last4 = models.CharField(max_length=4)
    # Restricted keys: {"payments": "write", "customers": "read"}; empty means full access.
    scopes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.prefix}...{self.last4}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
