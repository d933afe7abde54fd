"""The default connection, typed as django-tenants' wrapper (schema switching lives there)."""

from __future__ import annotations

from typing import cast

from django.db import connection as _connection
from django_tenants.postgresql_backend.base import DatabaseWrapper


def tenant_connection() -> DatabaseWrapper:
    return cast(DatabaseWrapper, _connection)


def current_schema() -> str:
    return str(getattr(_connection, "schema_name", "public"))
