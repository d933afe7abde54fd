"""URLs of a marketplace's host: its operators' admin, the API and the processors' webhooks."""

from django.contrib import admin
from django.urls import include, path

from apps.payments import pages as payment_pages
from apps.payments.gateways.simulator.challenge import challenge_page
from config.urls_health import urlpatterns as health_urls

urlpatterns = [
    *health_urls,
    path("admin/", admin.site.urls),
    path("api/", include("apps.api.urls")),
    path("webhooks/", include("apps.payments.urls")),
    path("vendors/", include("apps.vendors.urls")),
    path("billing/", include("apps.billing.urls")),
    # The simulator's 3-D Secure challenge page (it plays the issuer's page; issue 15, C2).
    path("simulator/<str:account>/authenticate/<str:attempt_id>", challenge_page, name="simulator-challenge"),
    # The emailed link to authenticate an off-session payment (issue 15, C2).
    path("pay/<str:payment_id>/authenticate", payment_pages.authenticate_page, name="payment-authenticate"),
    path("pay/<str:payment_id>/authenticate/return", payment_pages.authenticate_return),
    path("", include("apps.core.urls")),
]
