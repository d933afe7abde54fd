"""URLs of a marketplace's host: its operators' admin, the API, the processors' webhooks, the
hosted checkout (and its element, ``/checkout.js``) and the simulator's pages."""

from django.contrib import admin
from django.urls import include, path

import apps.core.converters  # noqa: F401 - registers objid
from apps.checkout.views import checkout_js
from apps.payments import pages as payment_pages
from apps.payments.gateways.simulator import card_fields
from apps.payments.gateways.simulator.challenge import challenge_page
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
    # The simulator plays the processor: its hosted card fields and its 3-D Secure challenge page.
    path("simulator/card-fields", card_fields.card_fields, name="simulator-card-fields"),
    path(
        "simulator/<slug:account>/authenticate/<objid:attempt_id>", challenge_page, name="simulator-challenge"
    ),
    # The emailed link to authenticate an off-session payment.
    path("pay/<objid:payment_id>/authenticate", payment_pages.authenticate_page, name="payment-authenticate"),
    path("pay/<objid:payment_id>/authenticate/return", payment_pages.authenticate_return),
    path("", include("apps.core.urls")),
]
