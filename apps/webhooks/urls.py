"""Mounted under ``webhooks/`` in the marketplace host's URLs (config/urls_tenant.py). A trailing
slash is accepted too: a processor POST is never redirected."""

from django.urls import re_path

from apps.webhooks import views

urlpatterns = [
    re_path(r"^stripe/(?P<account>[-\w]+)/?$", views.stripe_webhook, name="webhooks-stripe"),
    re_path(r"^adyen/(?P<account>[-\w]+)/?$", views.adyen_webhook, name="webhooks-adyen"),
]
