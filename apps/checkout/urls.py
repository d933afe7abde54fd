from django.urls import path

import apps.core.converters  # noqa: F401 - registers objid
from apps.checkout import views

urlpatterns = [
    path("<objid:session_id>", views.checkout_page, name="checkout-page"),
    path("<objid:session_id>/session", views.session_info, name="checkout-session"),
    path("<objid:session_id>/confirm", views.session_confirm, name="checkout-confirm"),
    path("<objid:session_id>/status", views.session_status, name="checkout-status"),
    path("<objid:session_id>/return", views.checkout_return, name="checkout-return"),
]
