from django.apps import AppConfig

from apps.ledger.rules import LEDGER_RULES, rules_register


class LedgerConfig(AppConfig):
    name = "apps.ledger"
    label = "ledger"
    verbose_name = "Ledger"

    def ready(self) -> None:
        # The ledger's own event types; each app that records events registers its rule set the
        # same way, from its own ready().
        rules_register(LEDGER_RULES)
