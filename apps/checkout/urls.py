from django.urls import path

from apps.checkout import views

urlpatterns = [
    path("<str:session_id>", views.checkout_page, name="checkout-page"),
    path("<str:session_id>/session", views.session_info, name="checkout-session"),
    path("<str:session_id>/confirm", views.session_confirm, name="checkout-confirm"),
    path("<str:session_id>/status", views.session_status, name="checkout-status"),
    path("<str:session_id>/return", views.checkout_return, name="checkout-return"),
]
