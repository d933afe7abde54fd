"""Payment methods of ours (``paym_...``): saved from a processor's token at one gateway account
(which answers its own credential for it), recognised by fingerprint when the same card is saved
again for a customer (the gateway's credential is then added to the method already there),
attached to and detached from customers.

The gateway is called with no transaction open; what it answered is written in one transaction.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from apps.customers.models import Customer
from apps.payments.config import mesh_config
from apps.payments.gateways.base import SavedMethod
from apps.payments.locks import lock_customer_card, lock_payment_method
from apps.payments.methods import is_payment_method_id
from apps.payments.models import GatewayAccount, PaymentMethod, PaymentMethodCredential
from apps.payments.services.errors import PaymentError
from apps.payments.services.setup import gateway_client

__all__ = [
    "is_payment_method_id",
    "payment_method_attach",
    "payment_method_create",
    "payment_method_credential_store",
    "payment_method_detach",
]


def _gateway_account(name: str) -> GatewayAccount:
    account = mesh_config().accounts.get(name)
    if account is None or not account.enabled:
        raise PaymentError(f"No such gateway account: {name!r}", code="resource_missing", param="gateway")
    return account


def _saved_at(account: GatewayAccount, token: str, customer: Customer | None) -> SavedMethod:
    adapter = gateway_client(account)
    save = getattr(adapter, "save_method", None)
    if save is None:
        raise PaymentError(
            f"gateway account {account.name!r} ({account.kind}) cannot save payment methods yet",
            code="gateway_unsupported",
            param="gateway",
        )
    saved: SavedMethod = save(token=token, customer_reference=customer.pk if customer else None)
    if not saved.ok:
        # The gateway failing (down, 5xx) is no fault of the token: no param (422, not 400).
        failed = saved.code == "gateway_error"
        raise PaymentError(
            saved.message or "the gateway refused to save this payment method",
            code=saved.code or "payment_method_invalid",
            param=None if failed else "token",
        )
    return saved


def _credential_add(method: PaymentMethod, account: GatewayAccount, saved: SavedMethod) -> None:
    """The gateway's credential for ``method``, unless it holds one already (kept: the first)."""
    if PaymentMethodCredential.objects.filter(method=method, gateway_account=account).exists():
        return
    credential = PaymentMethodCredential(method=method, gateway_account=account)
    credential.credential = {"reference": saved.reference, **saved.extra}
    credential.save()


def payment_method_create(
    *, gateway: str, token: str, customer: Customer | None = None, metadata: dict | None = None
) -> tuple[PaymentMethod, bool]:
    """Save the processor token ``token`` at gateway account ``gateway`` as one of our methods,
    for ``customer`` when given. When that customer already has the same card (same
    fingerprint), the gateway's credential is added to that method, which is returned.
    Returns (method, created). Raises PaymentError (nothing stored)."""
    account = _gateway_account(gateway)
    saved = _saved_at(account, token.strip(), customer)
    card = saved.card
    for _ in range(2):  # a concurrent save of the same card for the same customer: use its method
        try:
            with transaction.atomic():
                existing = None
                if customer is not None and saved.fingerprint:
                    existing = lock_customer_card(customer.pk, saved.fingerprint)
                if existing is not None:
                    _credential_add(existing, account, saved)
                    return existing, False
                method = PaymentMethod.objects.create(
                    customer=customer,
                    brand=card.brand if card else "",
                    last4=card.last4 if card else "",
                    country=card.country if card else "",
                    funding=card.funding if card else "",
                    exp_month=saved.exp_month,
                    exp_year=saved.exp_year,
                    fingerprint=saved.fingerprint,
                    metadata=metadata or {},
                )
                _credential_add(method, account, saved)
                return method, True
        except IntegrityError:
            continue
    raise PaymentError("this payment method is being saved by another request; retry", code="lock_timeout")


def payment_method_attach(*, method: PaymentMethod, customer: Customer) -> PaymentMethod:
    """Attach ``method`` to ``customer``. Raises PaymentError when it belongs to another customer
    or the customer already has the same card (another method with its fingerprint)."""
    with transaction.atomic():
        method = lock_payment_method(method.pk)
        if method.customer_id == customer.pk:
            return method
        if method.customer_id is not None:
            raise PaymentError(
                f"payment method {method.pk} is attached to another customer; detach it first",
                code="payment_method_unexpected_state",
            )
        if method.fingerprint:
            same = (
                PaymentMethod.objects.filter(customer=customer, fingerprint=method.fingerprint)
                .values_list("pk", flat=True)
                .first()
            )
            if same is not None:
                raise PaymentError(
                    f"customer {customer.pk} already has this card as {same}",
                    code="payment_method_duplicate",
                    param="customer",
                )
        method.customer = customer
        method.save(update_fields=["customer", "updated_at"])
    return method


def payment_method_detach(*, method: PaymentMethod) -> PaymentMethod:
    """Detach ``method`` from its customer (it stays chargeable as a one-off). Idempotent."""
    with transaction.atomic():
        method = lock_payment_method(method.pk)
        if method.customer_id is not None:
            method.customer = None
            method.save(update_fields=["customer", "updated_at"])
    return method


def payment_method_credential_store(*, method_id: str, account: GatewayAccount, saved: SavedMethod) -> None:
    """Store ``account``'s own credential for the method ``method_id`` (e.g. the card a charge
    through a vault saved there), unless it holds one already. The method is locked first, so
    two charges storing at once store one."""
    with transaction.atomic():
        method = lock_payment_method(method_id)
        _credential_add(method, account, saved)
