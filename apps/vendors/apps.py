from django.apps import AppConfig

from apps.ledger.rules import rules_register
from apps.vendors import ledger_rules


class VendorsConfig(AppConfig):
    name = "apps.vendors"
    label = "vendors"
    verbose_name = "Vendors"

    def ready(self) -> None:
        from apps.webhooks.outbound import event_types_register, renderer_register  # lazy: models

        rules_register(ledger_rules.RULES)
        event_types_register(
            {
                "vendor.updated": "a vendor changed (status, payouts enabled, requirements, terms)",
                "transfer.created": "a vendor's part of a payment went to its connected account",
                "payout.paid": "a vendor's payout reached its bank",
                "payout.failed": "a vendor's payout failed; the money is back in its balance",
            }
        )
        for object_type in ("vendor", "transfer", "payout"):
            renderer_register(object_type, f"apps.api.v1.vendors.{object_type}_snapshot")
