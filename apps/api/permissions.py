"""Restricted keys: ``ApiKey.scopes`` maps a resource to ``read`` or ``write`` (write includes
read); a key without scopes has full access. Views name their resource in ``scope_resource``."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from apps.tenants.models import ApiKey

LEVELS = {"read": 1, "write": 2}


def key_allows(key: ApiKey, *, resource: str, write: bool) -> bool:
    if not key.scopes:
        return True
    granted = LEVELS.get(str(key.scopes.get(resource, "")), 0)
    return granted >= LEVELS["write" if write else "read"]


class KeyScopePermission(BasePermission):
    def has_permission(self, request, view) -> bool:
        resource = getattr(view, "scope_resource", None)
        key = request.auth
        if resource is None or not isinstance(key, ApiKey):
            return True
        write = request.method not in SAFE_METHODS
        if key_allows(key, resource=resource, write=write):
            return True
        level = "write" if write else "read"
        self.message = f"This API key is restricted and has no {level} access to {resource}."
        return False
