from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

import apps.core.converters  # noqa: F401 - registers objid
from apps.api import errors, views
from apps.api.v1 import billing, checkout, customers, ledger, payment_methods, payments, vendors, webhooks

urlpatterns = [
    path("v1/account", views.AccountView.as_view(), name="api-account"),
    path("v1/customers", customers.CustomerListView.as_view(), name="api-customers"),
    path("v1/customers/<objid:customer_id>", customers.CustomerDetailView.as_view(), name="api-customer"),
    path(
        "v1/customers/<objid:customer_id>/payment_methods",
        payment_methods.CustomerPaymentMethodListView.as_view(),
    ),
    path("v1/payment_methods", payment_methods.PaymentMethodListView.as_view(), name="api-payment-methods"),
    path(
        "v1/payment_methods/<objid:method_id>",
        payment_methods.PaymentMethodDetailView.as_view(),
        name="api-payment-method",
    ),
    path("v1/payment_methods/<objid:method_id>/attach", payment_methods.PaymentMethodAttachView.as_view()),
    path("v1/payment_methods/<objid:method_id>/detach", payment_methods.PaymentMethodDetachView.as_view()),
    path("v1/checkout_sessions", checkout.CheckoutSessionListView.as_view(), name="api-checkout-sessions"),
    path(
        "v1/checkout_sessions/<objid:session_id>",
        checkout.CheckoutSessionDetailView.as_view(),
        name="api-checkout-session",
    ),
    path("v1/payments", payments.PaymentListView.as_view(), name="api-payments"),
    path("v1/payments/<objid:payment_id>", payments.PaymentDetailView.as_view(), name="api-payment"),
    path("v1/payments/<objid:payment_id>/confirm", payments.PaymentConfirmView.as_view()),
    path(
        "v1/payments/<objid:payment_id>/authentication_return",
        payments.PaymentAuthenticationReturnView.as_view(),
    ),
    path("v1/payments/<objid:payment_id>/capture", payments.PaymentCaptureView.as_view()),
    path("v1/payments/<objid:payment_id>/cancel", payments.PaymentCancelView.as_view()),
    path("v1/payments/<objid:payment_id>/refunds", payments.PaymentRefundCreateView.as_view()),
    path("v1/refunds", payments.RefundListView.as_view(), name="api-refunds"),
    path("v1/refunds/<objid:refund_id>", payments.RefundDetailView.as_view(), name="api-refund"),
    path("v1/vendors", vendors.VendorListView.as_view(), name="api-vendors"),
    path("v1/vendors/<objid:vendor_id>", vendors.VendorDetailView.as_view(), name="api-vendor"),
    path("v1/vendors/<objid:vendor_id>/balance", vendors.VendorBalanceView.as_view()),
    path("v1/vendors/<objid:vendor_id>/payouts", vendors.VendorPayoutCreateView.as_view()),
    path("v1/transfers", vendors.TransferListView.as_view(), name="api-transfers"),
    path("v1/transfers/<objid:transfer_id>", vendors.TransferDetailView.as_view(), name="api-transfer"),
    path("v1/payouts", vendors.PayoutListView.as_view(), name="api-payouts"),
    path("v1/payouts/<objid:payout_id>", vendors.PayoutDetailView.as_view(), name="api-payout"),
    path("v1/products", billing.ProductListView.as_view(), name="api-products"),
    path("v1/products/<objid:product_id>", billing.ProductDetailView.as_view(), name="api-product"),
    path("v1/prices", billing.PriceListView.as_view(), name="api-prices"),
    path("v1/prices/<objid:price_id>", billing.PriceDetailView.as_view(), name="api-price"),
    path("v1/tax_rates", billing.TaxRateListView.as_view(), name="api-tax-rates"),
    path("v1/subscriptions", billing.SubscriptionListView.as_view(), name="api-subscriptions"),
    path(
        "v1/subscriptions/<objid:subscription_id>",
        billing.SubscriptionDetailView.as_view(),
        name="api-subscription",
    ),
    path("v1/subscriptions/<objid:subscription_id>/cancel", billing.SubscriptionCancelView.as_view()),
    path("v1/subscriptions/<objid:subscription_id>/pause", billing.SubscriptionPauseView.as_view()),
    path("v1/subscriptions/<objid:subscription_id>/resume", billing.SubscriptionResumeView.as_view()),
    path("v1/invoices", billing.InvoiceListView.as_view(), name="api-invoices"),
    path("v1/invoices/<objid:invoice_id>", billing.InvoiceDetailView.as_view(), name="api-invoice"),
    path("v1/invoices/<objid:invoice_id>/void", billing.InvoiceVoidView.as_view()),
    path("v1/billing/recovery", billing.RecoveryView.as_view(), name="api-billing-recovery"),
    path("v1/balance", ledger.BalanceView.as_view(), name="api-balance"),
    path(
        "v1/ledger/transactions", ledger.LedgerTransactionListView.as_view(), name="api-ledger-transactions"
    ),
    path("v1/ledger/events", ledger.LedgerEventListView.as_view(), name="api-ledger-events"),
    path(
        "v1/ledger/events/<objid:event_id>", ledger.LedgerEventDetailView.as_view(), name="api-ledger-event"
    ),
    path("v1/events", webhooks.EventListView.as_view(), name="api-events"),
    path("v1/events/<objid:event_id>", webhooks.EventDetailView.as_view(), name="api-event"),
    path("v1/webhook_endpoints", webhooks.WebhookEndpointListView.as_view(), name="api-webhook-endpoints"),
    path(
        "v1/webhook_endpoints/<objid:endpoint_id>",
        webhooks.WebhookEndpointDetailView.as_view(),
        name="api-webhook-endpoint",
    ),
    path(
        "v1/webhook_endpoints/<objid:endpoint_id>/roll_secret",
        webhooks.WebhookEndpointRollSecretView.as_view(),
    ),
    path(
        "v1/schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
        name="api-schema",
    ),
    path(
        "v1/docs/",
        SpectacularSwaggerView.as_view(
            url_name="api-schema", authentication_classes=[], permission_classes=[]
        ),
        name="api-docs",
    ),
    re_path(r"^.*$", errors.api_not_found),
]
