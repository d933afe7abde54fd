from django.apps import AppConfig

from apps.ledger.rules import rules_register
from apps.payments import ledger_rules


class PaymentsConfig(AppConfig):
    name = "apps.payments"
    label = "payments"
    verbose_name = "Payments"

    def ready(self) -> None:
        from apps.payments.config import mesh_config_signals_connect  # lazy: models
        from apps.payments.scratch import payments_config_copy  # lazy: models
        from apps.tenants.scratch import scratch_copier_register  # lazy: models
        from apps.webhooks.outbound import event_types_register, renderer_register  # lazy: models

        rules_register(ledger_rules.RULES)
        scratch_copier_register("payments", payments_config_copy)
        mesh_config_signals_connect()
        event_types_register(
            {
                "payment.requires_capture": "a payment was authorised and waits for its capture",
                "payment.requires_action": "a payment waits for the customer (e.g. 3-D Secure)",
                "payment.succeeded": "a payment was captured",
                "payment.failed": "a payment failed (declined, or no gateway could take it)",
                "payment.canceled": "a payment was canceled",
                "refund.succeeded": "a refund succeeded",
                "refund.failed": "a refund failed",
            }
        )
        renderer_register("payment", "apps.api.v1.payments.payment_snapshot")
        renderer_register("refund", "apps.api.v1.payments.refund_snapshot")
