from django.apps import AppConfig


class CheckoutConfig(AppConfig):
    name = "apps.checkout"
    label = "checkout"
    verbose_name = "Checkout"

    def ready(self) -> None:
        from apps.webhooks.outbound import (  # lazy: needs the app registry
            event_types_register,
            renderer_register,
        )

        event_types_register(
            {
                "checkout_session.completed": "a checkout session was paid (or its card saved)",
                "checkout_session.expired": "a checkout session expired unpaid",
            }
        )
        renderer_register("checkout_session", "apps.api.v1.checkout.checkout_session_snapshot")
