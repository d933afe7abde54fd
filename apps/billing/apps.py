from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "apps.billing"
    label = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from apps.billing.scratch import billing_config_copy  # lazy: models
        from apps.tenants.scratch import scratch_copier_register  # lazy: models
        from apps.webhooks.outbound import (  # lazy: needs the app registry
            event_types_register,
            renderer_register,
        )

        event_types_register(
            {
                "invoice.paid": "an invoice was paid (its payment captured)",
                "invoice.payment_failed": "an attempt to pay an invoice failed; dunning continues or ends",
                "customer.subscription.updated": "a subscription changed (status, price, quantity, period)",
            }
        )
        renderer_register("invoice", "apps.api.v1.billing.invoice_snapshot")
        renderer_register("subscription", "apps.api.v1.billing.subscription_snapshot")
        scratch_copier_register("billing", billing_config_copy)
