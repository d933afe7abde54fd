from django.apps import AppConfig

from apps.ledger.rules import rules_register
from apps.vendors import ledger_rules


class VendorsConfig(AppConfig):
    name = "apps.vendors"
    label = "vendors"
    verbose_name = "Vendors"

    def ready(self) -> None:
        # lazy: these modules import models, which are loaded only once the apps are ready
        from apps.payments.gateways.base import AccountNews, PayoutNews
        from apps.payments.hooks import splits_register
        from apps.payments.news import news_handler_register
        from apps.vendors.news import account_news_apply, payout_news_apply
        from apps.vendors.payment_hooks import VendorSplits
        from apps.webhooks.outbound import event_types_register, renderer_register

        splits_register(VendorSplits())
        news_handler_register(AccountNews, account_news_apply)
        news_handler_register(PayoutNews, payout_news_apply)
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
