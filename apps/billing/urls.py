from django.urls import path

from apps.billing import views

urlpatterns = [
    path("invoices/<str:token>", views.invoice_page, name="billing-invoice"),
    path("card/<str:token>", views.card_update_page, name="billing-card-update"),
]
