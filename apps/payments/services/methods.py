"""Payment methods of ours (``paym_...``): saved from a processor's token at one gateway account
(which answers its own credential for it), or by a charge that asked ``setup_future_usage``
(``payment_method_from_saved``, both ways), recognised by fingerprint when the same card is saved
again for a customer (the gateway's credential is then added to the method already there),
attached to and detached from customers. A method keeps the network transaction id of its first
customer-initiated charge, passed on its merchant-initiated ones.

The gateway is called with no transaction open; what it answered is written in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.crypto import decrypt_json, encrypt_json
from apps.core.durable import durable_enqueue
from apps.customers.models import Customer
from apps.payments.config import mesh_config
from apps.payments.gateways.base import CardInfo, SavedMethod
from apps.payments.locks import lock_customer_card, lock_intent, lock_payment_method
from apps.payments.methods import is_payment_method_id
from apps.payments.models import (
    GatewayAccount,
    PaymentIntent,
    PaymentMethod,
    PaymentMethodCredential,
    new_payment_method_id,
)
from apps.payments.services.errors import PaymentError
from apps.payments.services.setup import gateway_client

__all__ = [
    "is_payment_method_id",
    "payment_method_attach",
    "payment_method_create",
    "payment_method_credential_store",
    "payment_method_detach",
    "payment_method_from_saved",
    "payment_method_network_transaction_id_keep",
    "payment_saved_method_keep",
    "payment_saved_method_record",
]

log = logging.getLogger(__package__)

# What a processor answers when the issuer refuses to save the card: a card error, not bad input.
CARD_ERRORS = frozenset({"card_declined", "authentication_required"})


def _gateway_account(name: str) -> GatewayAccount:
    account = mesh_config().accounts.get(name)
    if account is None or not account.enabled:
        raise PaymentError(f"No such gateway account: {name!r}", code="resource_missing", param="gateway")
    return account


def _saved_at(
    account: GatewayAccount, token: str, customer: Customer | None, *, idempotency_key: str
) -> SavedMethod:
    adapter = gateway_client(account)
    save = getattr(adapter, "save_method", None)
    if save is None:
        raise PaymentError(
            f"gateway account {account.name!r} ({account.kind}) cannot save payment methods yet",
            code="gateway_unsupported",
            param="gateway",
        )
    saved: SavedMethod = save(
        token=token, customer_reference=customer.pk if customer else None, idempotency_key=idempotency_key
    )
    if not saved.ok:
        # The gateway failing (down, 5xx) is no fault of the token: no param (422, not 400). The
        # issuer refusing the card (declined, or it wants the customer to authenticate) is a
        # card error (402 in the API).
        failed = saved.code == "gateway_error"
        raise PaymentError(
            saved.message or "the gateway refused to save this payment method",
            code=saved.code or "payment_method_invalid",
            param=None if failed or saved.code in CARD_ERRORS else "token",
        )
    return saved


def _credential_add(method: PaymentMethod, account: GatewayAccount, saved: SavedMethod) -> None:
    """The gateway's credential for ``method``, unless it holds one already (kept: the first)."""
    if PaymentMethodCredential.objects.filter(method=method, gateway_account=account).exists():
        return
    credential = PaymentMethodCredential(method=method, gateway_account=account)
    credential.credential = {"reference": saved.reference, **saved.extra}
    credential.save()


def _network_transaction_id_keep(method: PaymentMethod, network_transaction_id: str) -> None:
    """The first customer-initiated charge's network transaction id, unless the method (locked
    by the caller) has one: the first one wins."""
    if network_transaction_id and not method.network_transaction_id:
        method.network_transaction_id = network_transaction_id[:100]
        method.save(update_fields=["network_transaction_id", "updated_at"])


def payment_method_from_saved(
    *,
    account: GatewayAccount,
    saved: SavedMethod,
    customer_id: str | None,
    metadata: dict | None = None,
    method_id: str | None = None,
) -> tuple[PaymentMethod, bool]:
    """The payment method of ours for what gateway account ``account`` saved (``saved``: its
    credential, the card's details and fingerprint, the network transaction id), for the customer
    ``customer_id`` when given: the customer's method with the same card (same fingerprint),
    which gains the gateway's credential, else a new one (``method_id`` when given). Both the
    API's save and a charge that saved the card (``setup_future_usage``) come here. Writes in a
    transaction of its own (a savepoint inside the caller's: after the payment's rows in the lock
    order). Returns (method, created). Raises PaymentError."""
    card = saved.card
    for _ in range(2):  # a concurrent save of the same card for the same customer: use its method
        try:
            with transaction.atomic():
                existing = None
                if customer_id and saved.fingerprint:
                    existing = lock_customer_card(customer_id, saved.fingerprint)
                if existing is not None:
                    _credential_add(existing, account, saved)
                    _network_transaction_id_keep(existing, saved.network_transaction_id)
                    return existing, False
                method = PaymentMethod(
                    customer_id=customer_id or None,
                    brand=card.brand if card else "",
                    last4=card.last4 if card else "",
                    country=card.country if card else "",
                    funding=card.funding if card else "",
                    exp_month=saved.exp_month,
                    exp_year=saved.exp_year,
                    fingerprint=saved.fingerprint,
                    network_transaction_id=saved.network_transaction_id[:100],
                    metadata=metadata or {},
                )
                if method_id:
                    method.id = method_id
                method.save(force_insert=True)
                _credential_add(method, account, saved)
                return method, True
        except IntegrityError:
            continue
    raise PaymentError("this payment method is being saved by another request; retry", code="lock_timeout")


def payment_method_create(
    *, gateway: str, token: str, customer: Customer | None = None, metadata: dict | None = None
) -> tuple[PaymentMethod, bool]:
    """Save the processor token ``token`` at gateway account ``gateway`` as one of our methods,
    for ``customer`` when given. When that customer already has the same card (same
    fingerprint), the gateway's credential is added to that method, which is returned. The
    gateway's idempotency key is derived from the id the new method will have. Returns (method,
    created). Raises PaymentError (nothing stored)."""
    account = _gateway_account(gateway)
    method_id = new_payment_method_id()
    saved = _saved_at(account, token.strip(), customer, idempotency_key=f"{method_id}:save:{account.name}")
    return payment_method_from_saved(
        account=account,
        saved=saved,
        customer_id=customer.pk if customer else None,
        metadata=metadata,
        method_id=method_id,
    )


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


def payment_method_network_transaction_id_keep(*, method_id: str, network_transaction_id: str) -> None:
    """Keep the network transaction id of a customer-initiated charge of the method ``method_id``
    (to pass on its later merchant-initiated charges), unless it has one: the first one wins.
    One conditional update (in a savepoint, after the payment's rows when the caller holds them):
    it locks the method only when it has none yet, so the charges of a method that has one (most
    of them, on the attempt-finish path) neither lock it nor wait on each other."""
    if not network_transaction_id:
        return
    with transaction.atomic():
        PaymentMethod.objects.filter(pk=method_id, network_transaction_id="").update(
            network_transaction_id=network_transaction_id[:100], updated_at=timezone.now()
        )


# --------------------------------------------------------------------------- saved by a charge

SAVED_METHOD_HANDLER = "apps.payments.services.payment_saved_method_record"


def _saved_sealed(saved: SavedMethod) -> str:
    """``saved`` for a durable task's arguments: encrypted, as credentials are at rest."""
    return encrypt_json(asdict(saved))


def _saved_unsealed(sealed: str) -> SavedMethod:
    values = decrypt_json(sealed)
    card = values.pop("card", None)
    return SavedMethod(**values, card=CardInfo(**card) if card else None)


def payment_saved_method_keep(
    intent: PaymentIntent, account: GatewayAccount, saved: SavedMethod | None, network_transaction_id: str
) -> None:
    """After a charge of ``intent`` at ``account`` succeeded (inside the transaction that
    applies it, the payment locked): a card the charge saved (``setup_future_usage``) becomes the
    customer's payment method (``payment_method_from_saved``: found again by fingerprint), named
    in ``intent.saved_payment_method`` (the caller writes it); a customer-initiated charge of one
    of our methods gives it its network transaction id, if it has none.

    Never undoes the charge: a failure here is logged, and a card to save is saved later by a
    durable task (``payment_saved_method_record``)."""
    charged_ours = is_payment_method_id(intent.payment_method)
    if saved is not None and saved.ok and intent.setup_future_usage and not charged_ours:
        saved = replace(saved, network_transaction_id=saved.network_transaction_id or network_transaction_id)
        try:
            method, _ = payment_method_from_saved(
                account=account, saved=saved, customer_id=intent.customer_id or None
            )
        except Exception:
            log.exception("saving the card payment %s saved at %s failed; retried", intent.id, account.name)
            durable_enqueue(
                handler=SAVED_METHOD_HANDLER,
                kwargs={
                    "intent_id": intent.id,
                    "gateway_account_id": account.pk,
                    "saved": _saved_sealed(saved),
                },
                idempotency_key=f"saved-method:{intent.id}",
            )
            return
        intent.saved_payment_method = method.pk
    elif charged_ours and not intent.off_session and network_transaction_id:
        try:
            payment_method_network_transaction_id_keep(
                method_id=intent.payment_method, network_transaction_id=network_transaction_id
            )
        except Exception:  # the charge stands; a later customer-initiated charge gives one
            log.exception("keeping the network transaction id of %s failed", intent.payment_method)


def payment_saved_method_record(*, intent_id: str, gateway_account_id: int, saved: str) -> None:
    """Idempotent: the durable retry of ``payment_saved_method_keep`` for a card the charge of
    payment ``intent_id`` saved (``saved``: sealed). Locks the payment, then the method."""
    with transaction.atomic():
        intent = lock_intent(intent_id)
        if intent.saved_payment_method:
            return
        account = GatewayAccount.objects.get(pk=gateway_account_id)
        method, _ = payment_method_from_saved(
            account=account, saved=_saved_unsealed(saved), customer_id=intent.customer_id or None
        )
        intent.saved_payment_method = method.pk
        intent.save(update_fields=["saved_payment_method", "updated_at"])
