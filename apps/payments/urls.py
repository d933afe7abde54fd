"""The processors' webhook endpoints, mounted under ``webhooks/`` in the marketplace host's URLs
(config/urls_tenant.py): ``<kind>/<gateway account>`` for each kind in the registry whose processor
posts webhooks (``webhooks-stripe``, ``webhooks-adyen``). A trailing slash is accepted too: a
processor POST is never redirected."""

from django.urls import re_path

from apps.payments import views
from apps.payments.gateways.registry import webhook_kinds

urlpatterns = [
    re_path(
        rf"^{kind}/(?P<account>[-\w]+)/?$",
        views.notification_receive,
        {"kind": kind},
        name=f"webhooks-{kind}",
    )
    for kind in webhook_kinds()
]
