"""Secret-key authentication (``Authorization: Bearer sk_test_...``).

On the public host the key chooses the marketplace and the connection switches to its schema.
On a marketplace's host a key of another marketplace is refused (401), revealing nothing."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from apps.tenants.db import current_schema, tenant_connection
from apps.tenants.selectors import api_key_lookup


class ApiPrincipal:
    """What ``request.user`` is for API calls: the key and its marketplace."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, key):
        self.key = key
        self.tenant = key.tenant

    def __str__(self) -> str:
        return str(self.key)


class ApiKeyAuthentication(BaseAuthentication):
    www_authenticate_realm = "api"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != b"bearer" or len(header) != 2:
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <secret key>'.")
        try:
            raw = header[1].decode()
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid API key provided.") from exc
        key = api_key_lookup(raw)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid API key provided.")
        current = current_schema()
        if current == "public":
            tenant_connection().set_tenant(key.tenant)
            request._request.tenant = key.tenant
        elif current != key.tenant.schema_name:
            # Same message as an unknown key: do not confirm that the key exists elsewhere.
            raise exceptions.AuthenticationFailed("Invalid API key provided.")
        return ApiPrincipal(key), key

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
