"""The payment methods of the simulations (``simulate_traffic``, ``simulate_subscriptions``): a mix
of one-off test tokens and methods of ours saved at one gateway, at both, or at one with the other
reachable only through a vault, so that failing over shows the real constraint (a processor
charges only the cards it holds).

Methods are saved through ``payment_method_create`` (the simulator account's tokenize), as a
storefront saves them. A card reachable through a vault is held by the simulator account
``card_vault`` (settings ``vault: true``; in no routing rule, so never charged itself): the demo's
"Vault and Forward", a processor keeping the card and sending it to another. ``primary`` and
``secondary`` offer no vault during a simulation, so a card saved only at ``primary`` cannot be
charged anywhere else.
"""

from __future__ import annotations

from django.core.management.base import CommandError

from apps.customers.models import Customer
from apps.payments.models import GatewayAccount
from apps.payments.services import gateway_account_update
from apps.payments.services.methods import payment_method_create

GATEWAYS = ("primary", "secondary")  # the simulator accounts a simulation charges at, in order
VAULT_ACCOUNT = "card_vault"
ONE_OFF, PRIMARY_ONLY, BOTH, VAULTED = "one_off", "primary_only", "both", "vaulted"
# (kind, weight): the existing one-off test tokens, and saved methods.
METHOD_MIX = [(ONE_OFF, 40), (BOTH, 20), (VAULTED, 20), (PRIMARY_ONLY, 20)]
SAVED_AT = {
    PRIMARY_ONLY: ("primary",),  # no route elsewhere: a failover is impossible
    BOTH: ("primary", "secondary"),  # a failover goes direct
    VAULTED: ("primary", VAULT_ACCOUNT),  # secondary only through the vault
}
VAULT_SETTINGS = {"vault": True, "latency_ms": {"p50": 0}}


def simulation_accounts(*, like: str) -> dict[str, GatewayAccount]:
    """The simulator accounts ``GATEWAYS`` by name, with the card vault made ready
    (``vault_account_ensure``). CommandError when one is missing or not a simulator: the
    marketplace ``like`` (whose configuration the run copied) has none to simulate with."""
    accounts = {a.name: a for a in GatewayAccount.objects.filter(name__in=GATEWAYS)}
    missing = [g for g in GATEWAYS if g not in accounts or accounts[g].kind != GatewayAccount.Kind.SIMULATOR]
    if missing:
        raise CommandError(f"marketplace {like!r} has no simulator gateway {missing[0]!r}")
    vault_account_ensure()
    return accounts


def vault_account_ensure() -> GatewayAccount:
    """The simulations' card vault account (created the first time; enabled, with its vault on),
    in the scratch marketplace the simulation runs in (``apps.tenants.scratch``), never in the one
    it is configured like. It stays while that one does: the methods saved there keep their
    credential at it."""
    account, created = GatewayAccount.objects.get_or_create(
        name=VAULT_ACCOUNT, defaults={"kind": GatewayAccount.Kind.SIMULATOR, "settings": VAULT_SETTINGS}
    )
    if not created and (not account.enabled or account.settings != VAULT_SETTINGS):
        account = gateway_account_update(name=VAULT_ACCOUNT, settings=VAULT_SETTINGS, enabled=True)
    return account


def without_vault(settings: dict) -> dict:
    """A simulator account's settings with its vault off (a card saved only there stays there)."""
    return {k: v for k, v in settings.items() if k != "vault"}


def simulation_method(kind: str, *, token: str, customer: Customer | None) -> str:
    """What a simulated payment is paid with: the test ``token`` itself (one-off), or a method of
    ours saved from it for ``customer`` at the accounts ``SAVED_AT[kind]`` (the same card saved
    again for the customer adds that account's credential to the same method). Raises
    PaymentError when an account cannot save it (e.g. it is down)."""
    if kind == ONE_OFF:
        return token
    method_id = ""
    for account in SAVED_AT[kind]:
        method, _ = payment_method_create(gateway=account, token=token, customer=customer)
        method_id = method.pk
    return method_id
