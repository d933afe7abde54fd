"""URLs of a marketplace's host: its operators' admin, the API, the processors' webhooks, the
hosted checkout (and its element, ``/checkout.js``) and the simulator's pages."""

from django.contrib import admin
from django.urls import include, path

from apps.checkout.views import checkout_js
from apps.payments.gateways.simulator import card_fields
from config.urls_health import urlpatterns as health_urls

urlpatterns = [
    *health_urls,
    path("admin/", admin.site.urls),
    path("api/", include("apps.api.urls")),
    path("webhooks/", include("apps.payments.urls")),
    path("vendors/", include("apps.vendors.urls")),
    path("billing/", include("apps.billing.urls")),
    path("checkout/", include("apps.checkout.urls")),
    path("checkout.js", checkout_js, name="checkout-js"),
    # The simulator's card fields (issue 15, checkout side): the demo's processor-hosted fields.
    path("simulator/card-fields", card_fields.card_fields, name="simulator-card-fields"),
    path("", include("apps.core.urls")),
]
