"""Reading checkout sessions, and what the hosted page needs to know of the marketplace's
gateways (which processor's card fields to show)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from django.db.models import QuerySet

from apps.checkout.models import CheckoutSession
from apps.core.queries import filter_given
from apps.payments.config import mesh_config
from apps.payments.models import GatewayAccount


def checkout_session_get(*, session_id: str) -> CheckoutSession | None:
    return CheckoutSession.objects.filter(pk=session_id).first()


def checkout_sessions_query(
    *, status: str | None = None, customer: str | None = None, payment: str | None = None
) -> QuerySet[CheckoutSession]:
    return filter_given(
        CheckoutSession.objects.all(), status=status, customer_id=customer, payment_id=payment
    )


def client_secret_matches(session: CheckoutSession, given: object) -> bool:
    """Whether ``given`` is the session's client secret (compared in constant time)."""
    return isinstance(given, str) and hmac.compare_digest(session.client_secret.encode(), given.encode())


@dataclass(frozen=True)
class CardFields:
    """Which processor's card fields the page mounts, at which gateway account, and the public
    (publishable) configuration they need: never a secret."""

    kind: str  # simulator | stripe | adyen
    account: str
    publishable_key: str = ""  # Stripe: settings["publishable_key"]
    client_key: str = ""  # Adyen: settings["client_key"]
    environment: str = "test"  # Adyen: settings["environment"]


def checkout_gateway() -> GatewayAccount | None:
    """The marketplace's first routable gateway account: the first enabled candidate of its
    enabled routing rules in priority order, else its first enabled account. A token the page's
    card fields make is one of this account's processor."""
    config = mesh_config()
    for rule in config.rules:
        for candidate in rule.candidates or []:
            account = config.accounts.get(str(candidate.get("gateway", "")))
            if account is not None and account.enabled:
                return account
    return next((a for a in config.accounts.values() if a.enabled), None)


def card_fields() -> CardFields | None:
    account = checkout_gateway()
    if account is None:
        return None
    settings = account.settings or {}
    return CardFields(
        kind=account.kind,
        account=account.name,
        publishable_key=str(settings.get("publishable_key", "")),
        client_key=str(settings.get("client_key", "")),
        environment=str(settings.get("environment", "test")),
    )


def simulator_card_fields_enabled() -> bool:
    """Whether this marketplace has an enabled simulator account (whose card fields are served)."""
    return any(a.enabled and a.kind == GatewayAccount.Kind.SIMULATOR for a in mesh_config().accounts.values())
