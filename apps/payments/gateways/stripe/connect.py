"""Stripe Connect: the Connect port (``apps/payments/gateways/connect.py``) on the official SDK
(``stripe.StripeClient``, stripe-python 15). The vendors app calls it through that port's types.

Funds flow is *separate charges and transfers*: the platform charges the customer on its own
account, then moves each vendor's net to the vendor's connected account with a transfer in the
payment's ``transfer_group`` (``source_transaction`` ties it to the charge so it waits for the
charge's funds); a refund takes money back with a transfer reversal. Vendors are Express
accounts onboarded through Stripe-hosted Account Links and see their payouts in the Express
dashboard (login links). Payouts on a connected account are created *on that account*
(``Stripe-Account`` header).

Every POST carries an idempotency key (Stripe keeps it 24 h): money-moving calls require one
from the caller (derive it from our own ids, e.g. ``transfer:<payment>:<vendor>``), the others
accept one. The SDK never retries by itself (``max_network_retries=0``): a ``ConnectError`` with
``retryable`` set may be retried with the same key. Every Stripe failure is one ``ConnectError``,
read by the package's one reading of Stripe failures (``errors.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import stripe
from stripe.params import (
    AccountCreateParams,
    AccountLinkCreateParams,
    PayoutCreateParams,
    PayoutListParams,
    TransferCreateParams,
    TransferListParams,
    TransferReversalCreateParams,
    TransferReversalListParams,
)

from apps.core.money import MoneyError, normalize_currency, require_amount
from apps.payments.gateways.base import GatewayConfig
from apps.payments.gateways.connect import (
    AccountLink,
    BusinessType,
    ConnectAccount,
    ConnectError,
    ConnectStatus,
    LoginLink,
    Payout,
    Transfer,
    TransferReversal,
)
from apps.payments.gateways.stripe.errors import StripeFailure, read_failure
from apps.payments.gateways.stripe.sdk import request_options, stripe_client
from apps.payments.gateways.stripe.shapes import expandable_id, split_reference

DEFAULT_TIMEOUT_SECONDS = 20.0


# --------------------------------------------------------------------------- status mapping


def account_status(account: Mapping[str, Any]) -> str:
    """Our status for a Stripe account object:

    - ``onboarding`` while the vendor has not finished Stripe's form (``details_submitted`` is
      false), or has finished it and Stripe is only verifying (``disabled_reason`` is
      ``requirements.pending_verification`` with nothing due);
    - ``active`` when charges and payouts are enabled, nothing is past due and nothing disables it
      (items due later with a deadline still leave it active);
    - ``restricted`` otherwise: Stripe needs more (the requirements say what) or disabled it.
    """
    requirements = account.get("requirements") or {}
    past_due = requirements.get("past_due") or []
    currently_due = requirements.get("currently_due") or []
    reason = requirements.get("disabled_reason")
    if not account.get("details_submitted"):
        return ConnectStatus.ONBOARDING
    if account.get("charges_enabled") and account.get("payouts_enabled") and not past_due and not reason:
        return ConnectStatus.ACTIVE
    if reason == "requirements.pending_verification" and not past_due and not currently_due:
        return ConnectStatus.ONBOARDING
    return ConnectStatus.RESTRICTED


def account_from_stripe(data: Mapping[str, Any]) -> ConnectAccount:
    """A Stripe account object (a retrieve, an ``account.updated`` event's ``data.object``) as ours."""
    requirements = data.get("requirements") or {}
    return ConnectAccount(
        id=data["id"],
        status=account_status(data),
        charges_enabled=bool(data.get("charges_enabled")),
        payouts_enabled=bool(data.get("payouts_enabled")),
        details_submitted=bool(data.get("details_submitted")),
        currently_due=tuple(requirements.get("currently_due") or ()),
        past_due=tuple(requirements.get("past_due") or ()),
        disabled_reason=requirements.get("disabled_reason"),
        country=data.get("country"),
        default_currency=data.get("default_currency"),
        email=data.get("email"),
        metadata=dict(data.get("metadata") or {}),
    )


def _transfer(data: Mapping[str, Any]) -> Transfer:
    return Transfer(
        id=data["id"],
        amount=int(data["amount"]),
        amount_reversed=int(data.get("amount_reversed") or 0),
        currency=data["currency"],
        destination=expandable_id(data.get("destination")) or "",
        transfer_group=data.get("transfer_group"),
        source_transaction=expandable_id(data.get("source_transaction")),
        reversed=bool(data.get("reversed")),
        metadata=dict(data.get("metadata") or {}),
    )


def _reversal(data: Mapping[str, Any], transfer_id: str) -> TransferReversal:
    return TransferReversal(
        id=data["id"],
        transfer=expandable_id(data.get("transfer")) or transfer_id,
        amount=int(data["amount"]),
        currency=data["currency"],
        metadata=dict(data.get("metadata") or {}),
    )


def _payout(data: Mapping[str, Any], account_id: str) -> Payout:
    return Payout(
        id=data["id"],
        account=account_id,
        amount=int(data["amount"]),
        currency=data["currency"],
        status=data.get("status") or "pending",
        arrival_date=data.get("arrival_date"),
        failure_code=data.get("failure_code"),
        failure_message=data.get("failure_message"),
        metadata=dict(data.get("metadata") or {}),
    )


# --------------------------------------------------------------------------- the client


class ConnectClient:
    """Stripe Connect calls (``ConnectRail``) for one marketplace's platform account (its Stripe
    secret key).

    ``api_base`` replaces ``https://api.stripe.com`` (tests, a proxy); ``http_client`` replaces the
    SDK's HTTP client (by default ``requests`` with a 5 s connect and ``timeout_seconds`` read
    timeout). Results are our dataclasses; failures are ``ConnectError``."""

    def __init__(
        self,
        secret_key: str,
        *,
        api_base: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        http_client: stripe.HTTPClient | None = None,
    ):
        if not secret_key:
            raise ConnectError("the Stripe secret key is missing", operation="configure")
        self.client = stripe_client(
            secret_key, api_base=api_base, timeout_seconds=timeout_seconds, http_client=http_client
        )

    @staticmethod
    def configured(config: GatewayConfig) -> bool:
        """Whether a ``stripe`` gateway account can make a client: it has a secret key."""
        return bool((config.credentials or {}).get("secret_key"))

    @classmethod
    def from_config(cls, config: GatewayConfig) -> ConnectClient:
        """From a ``stripe`` gateway account's ``credentials`` (``secret_key``) and ``settings``
        (``api_base``, ``timeout_seconds``), as the payments app stores them."""
        settings = config.settings or {}
        return cls(
            str((config.credentials or {}).get("secret_key") or ""),
            api_base=settings.get("api_base") or None,
            timeout_seconds=float(settings.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS),
        )

    # ----------------------------------------------------------------- accounts

    def account_create(
        self,
        *,
        vendor_id: str,
        email: str,
        country: str,
        business_type: BusinessType = "individual",
        default_currency: str | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> ConnectAccount:
        """Create an Express account requesting ``card_payments`` and ``transfers``, tagged with
        ``metadata.vendor_id``. Use ``idempotency_key=f"account:{vendor_id}"`` so a retry cannot
        create a second account."""
        params: AccountCreateParams = {
            "type": "express",
            "country": country.upper(),
            "email": email,
            "business_type": business_type,
            "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
            "metadata": {**_metadata(metadata), "vendor_id": vendor_id},
        }
        if default_currency:
            params["default_currency"] = _currency(default_currency, "account_create")
        data = self._send(
            "account_create",
            lambda: self.client.v1.accounts.create(params, request_options(idempotency_key)),
        )
        return account_from_stripe(data)

    def account_retrieve(self, account_id: str) -> ConnectAccount:
        """The account as Stripe has it now, mapped to our status (``account_status``)."""
        return account_from_stripe(
            self._send("account_retrieve", lambda: self.client.v1.accounts.retrieve(account_id))
        )

    def source_charge(self, reference: str) -> str | None:
        """The charge (``ch_...``) of the platform PaymentIntent our attempt's ``reference`` names:
        a transfer's ``source_transaction``. None for a direct charge on a connected account
        (``acct_.../pi_...``): it is not the platform's to transfer from."""
        connected, intent_id = split_reference(reference)
        if connected:
            return None
        data = self._send(
            "payment_intent_retrieve", lambda: self.client.v1.payment_intents.retrieve(intent_id)
        )
        return expandable_id(data.get("latest_charge"))

    def account_link_create(
        self,
        *,
        account_id: str,
        refresh_url: str,
        return_url: str,
        idempotency_key: str | None = None,
    ) -> AccountLink:
        """A single-use onboarding link (``account_onboarding``) to Stripe's hosted form. Stripe
        sends the vendor to ``refresh_url`` when the link expired or was used (make a new one
        there) and to ``return_url`` when the vendor leaves the form (not proof of completion:
        retrieve the account)."""
        params: AccountLinkCreateParams = {
            "account": account_id,
            "type": "account_onboarding",
            "refresh_url": refresh_url,
            "return_url": return_url,
        }
        data = self._send(
            "account_link_create",
            lambda: self.client.v1.account_links.create(params, request_options(idempotency_key)),
        )
        return AccountLink(url=data["url"], expires_at=int(data["expires_at"]), created=int(data["created"]))

    def login_link_create(self, *, account_id: str, idempotency_key: str | None = None) -> LoginLink:
        """A single-use link into the vendor's Express dashboard."""
        data = self._send(
            "login_link_create",
            lambda: self.client.v1.accounts.login_links.create(
                account_id, None, request_options(idempotency_key)
            ),
        )
        return LoginLink(url=data["url"], created=int(data["created"]))

    # ----------------------------------------------------------------- money

    def transfer_create(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        transfer_group: str,
        idempotency_key: str,
        source_transaction: str | None = None,
        metadata: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> Transfer:
        """Move ``amount`` minor units from the platform's balance to ``destination`` (an
        ``acct_...``). ``source_transaction`` (a ``ch_...``) makes it wait for that charge's funds."""
        params: TransferCreateParams = {
            "amount": _amount(amount, "transfer_create"),
            "currency": _currency(currency, "transfer_create"),
            "destination": destination,
            "transfer_group": transfer_group,
            "metadata": _metadata(metadata),
        }
        if source_transaction:
            params["source_transaction"] = source_transaction
        if description:
            params["description"] = description
        data = self._send(
            "transfer_create",
            lambda: self.client.v1.transfers.create(params, request_options(_required_key(idempotency_key))),
        )
        return _transfer(data)

    def transfer_reverse(
        self,
        *,
        transfer_id: str,
        idempotency_key: str,
        amount: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> TransferReversal:
        """Take ``amount`` (all that is left when None) of a transfer back from the connected
        account to the platform."""
        params: TransferReversalCreateParams = {"metadata": _metadata(metadata)}
        if amount is not None:
            params["amount"] = _amount(amount, "transfer_reverse")
        data = self._send(
            "transfer_reverse",
            lambda: self.client.v1.transfers.reversals.create(
                transfer_id, params, request_options(_required_key(idempotency_key))
            ),
        )
        return _reversal(data, transfer_id)

    def payout_create(
        self,
        *,
        account_id: str,
        amount: int,
        currency: str,
        idempotency_key: str,
        metadata: Mapping[str, str] | None = None,
        statement_descriptor: str | None = None,
    ) -> Payout:
        """Pay ``amount`` out of the connected account's Stripe balance to its bank account
        (sent with ``Stripe-Account: <account_id>``)."""
        params: PayoutCreateParams = {
            "amount": _amount(amount, "payout_create"),
            "currency": _currency(currency, "payout_create"),
            "metadata": _metadata(metadata),
        }
        if statement_descriptor:
            params["statement_descriptor"] = statement_descriptor
        data = self._send(
            "payout_create",
            lambda: self.client.v1.payouts.create(
                params, request_options(_required_key(idempotency_key), account=account_id)
            ),
        )
        return _payout(data, account_id)

    # ----------------------------------------------------------------- finding what a lost answer made
    # An answer lost in transit (timeout, reset, 5xx) leaves the outcome unknown. These find the
    # object by the metadata we tagged it with, so an unknown outcome is resolved from what Stripe
    # has, never guessed; replaying the create with the same idempotency key is the other way.

    def transfer_find(self, *, destination: str, transfer_group: str, transfer: str) -> Transfer | None:
        """The transfer to ``destination`` in ``transfer_group`` whose ``metadata.transfer`` is
        ``transfer`` (our id), or None when Stripe has none."""

        def page(after: str | None) -> stripe.StripeObject:
            params: TransferListParams = {"destination": destination, "transfer_group": transfer_group}
            params["limit"] = 100
            if after:
                params["starting_after"] = after
            return self.client.v1.transfers.list(params)

        for data in self._list("transfer_list", page):
            if (data.get("metadata") or {}).get("transfer") == transfer:
                return _transfer(data)
        return None

    def transfer_reversal_find(self, *, transfer_id: str, key: str, value: str) -> TransferReversal | None:
        """The reversal of Stripe transfer ``transfer_id`` whose ``metadata[key]`` is ``value``."""

        def page(after: str | None) -> stripe.StripeObject:
            params: TransferReversalListParams = {"limit": 100}
            if after:
                params["starting_after"] = after
            return self.client.v1.transfers.reversals.list(transfer_id, params)

        for data in self._list("transfer_reversal_list", page):
            if (data.get("metadata") or {}).get(key) == value:
                return _reversal(data, transfer_id)
        return None

    def payout_find(self, *, account_id: str, payout: str, created_gte: int) -> Payout | None:
        """The payout on connected account ``account_id``, created at or after ``created_gte``
        (unix seconds), whose ``metadata.payout`` is ``payout`` (our id), or None."""

        def page(after: str | None) -> stripe.StripeObject:
            params: PayoutListParams = {"limit": 100, "created": {"gte": created_gte}}
            if after:
                params["starting_after"] = after
            return self.client.v1.payouts.list(params, request_options(None, account=account_id))

        for data in self._list("payout_list", page):
            if (data.get("metadata") or {}).get("payout") == payout:
                return _payout(data, account_id)
        return None

    # ----------------------------------------------------------------- plumbing

    def _list(
        self, operation: str, page: Callable[[str | None], stripe.StripeObject], *, pages: int = 20
    ) -> list[dict[str, Any]]:
        """Every object of a list endpoint (newest first), following ``has_more`` for at most
        ``pages`` pages."""
        out: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(pages):
            data = self._send(operation, lambda after=after: page(after))  # type: ignore[misc]
            items = list(data.get("data") or [])
            out.extend(items)
            if not data.get("has_more") or not items:
                break
            after = items[-1]["id"]
        return out

    def _send(self, operation: str, call: Callable[[], stripe.StripeObject]) -> dict[str, Any]:
        try:
            return call().to_dict()
        except stripe.StripeError as exc:
            raise _connect_error(exc, operation) from exc


def _required_key(key: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise ConnectError("an idempotency key is required for calls that move money", operation="configure")
    return key


def _amount(amount: int, operation: str) -> int:
    try:
        return require_amount(amount)
    except MoneyError as exc:
        raise ConnectError(str(exc), operation=operation, param="amount") from None


def _currency(currency: str, operation: str) -> str:
    try:
        return normalize_currency(currency).lower()
    except MoneyError as exc:
        raise ConnectError(str(exc), operation=operation, param="currency") from None


def _metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (metadata or {}).items()}


_OPERATION_WORDS = {
    "account_create": "creating the connected account",
    "account_retrieve": "retrieving the connected account",
    "account_link_create": "creating the onboarding link",
    "login_link_create": "creating the dashboard login link",
    "transfer_create": "creating the transfer",
    "transfer_reverse": "reversing the transfer",
    "payout_create": "creating the payout",
    "transfer_list": "looking up the transfer",
    "transfer_reversal_list": "looking up the transfer reversal",
    "payout_list": "looking up the payout",
}


def _connect_error(exc: stripe.StripeError, operation: str) -> ConnectError:
    """One readable ConnectError for any SDK failure."""
    failure: StripeFailure = read_failure(exc)
    doing = _OPERATION_WORDS.get(operation, operation)
    if failure.connection:
        return ConnectError(
            f"Stripe could not be reached or its answer was lost while {doing} ({failure.text}); "
            "retry with the same idempotency key",
            operation=operation,
            type=failure.type,
            retryable=True,
        )
    status = failure.http_status
    message = (
        f"Stripe refused {doing}: {failure.text}"
        if status and status < 500
        else f"Stripe failed {doing}: {failure.text}"
    )
    code = failure.error.get("code")
    message += f" ({failure.type}" + (f", {code}" if code else "") + f", HTTP {status})"
    return ConnectError(
        " ".join(message.split()),
        operation=operation,
        type=failure.type,
        code=failure.code,
        param=failure.param,
        http_status=status,
        request_id=failure.request_id,
        retryable=failure.retryable,
    )
