"""Host → schema. Unknown hosts get a 404: JSON under /api/, a page elsewhere."""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.urls import set_urlconf
from django_tenants.middleware.main import TenantMainMiddleware

from apps.tenants.db import tenant_connection

HEALTH_PATHS = ("/healthz", "/readyz")


class MarketplaceMiddleware(TenantMainMiddleware):
    def no_tenant_found(self, request, hostname):  # type: ignore[override]
        if request.path.startswith(HEALTH_PATHS):
            # Probes (load balancers, orchestrators) often call by IP or an internal name.
            tenant_connection().set_schema_to_public()
            request.urlconf = "config.urls_health"
            set_urlconf(request.urlconf)
            return None
        if request.path.startswith("/api/"):
            return JsonResponse(
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "unknown_host",
                        "message": f"No marketplace is served at {hostname}.",
                        "param": None,
                    }
                },
                status=404,
                # apps.core.errors.error_response's serialisation (tenants is below core).
                json_dumps_params={"separators": (",", ":"), "ensure_ascii": False},
            )
        html = render_to_string("errors/unknown_host.html", {"hostname": hostname})
        return HttpResponse(html, status=404)
