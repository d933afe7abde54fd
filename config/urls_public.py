"""URLs of the public host: the platform owner's admin, the API (the key picks the tenant)."""

from django.contrib import admin
from django.urls import include, path

from config.urls_health import urlpatterns as health_urls

admin.site.site_header = "Marketplace payments: platform"
admin.site.site_title = "Platform admin"

urlpatterns = [
    *health_urls,
    path("admin/", admin.site.urls),
    path("api/", include("apps.api.urls")),
    path("", include("apps.core.urls")),
]
