"""URLs of a marketplace's host: its operators' admin, the API and the processors' webhooks."""

from django.contrib import admin
from django.urls import include, path

from config.urls_health import urlpatterns as health_urls

urlpatterns = [
    *health_urls,
    path("admin/", admin.site.urls),
    path("api/", include("apps.api.urls")),
    path("webhooks/", include("apps.payments.urls")),
    path("vendors/", include("apps.vendors.urls")),
    path("billing/", include("apps.billing.urls")),
    path("", include("apps.core.urls")),
]
