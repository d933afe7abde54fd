"""OpenAPI: how the secret-key authentication appears in the schema."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apps.api.authentication.ApiKeyAuthentication"
    name = "secretKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "Your secret key: `Authorization: Bearer sk_test_...`",
        }


def strict_request_bodies(result, generator, request, public):
    """drf-spectacular post-processing hook: request bodies say they take no other field
    (``additionalProperties: false``), as ``validated`` enforces; free-form objects (metadata,
    JSON fields) keep their own ``additionalProperties``."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object" and "properties" in component:
            component.setdefault("additionalProperties", False)
    return result
