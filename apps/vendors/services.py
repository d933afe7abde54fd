"""Every way a Vendor, its invites and the marketplace's commission policy change.

Connect calls (the Connect port, ``apps.payments.gateways.connect``) are made by the caller,
outside any database transaction; these services only record what it answered
(``vendor_account_apply``)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.core.countries import country_code
from apps.core.durable import durable_enqueue
from apps.core.money import MoneyError, normalize_currency, require_amount
from apps.payments.gateways.connect import ConnectAccount
from apps.vendors.locks import invite_lock, vendor_lock
from apps.vendors.models import CommissionPolicy, Vendor, VendorInvite
from apps.vendors.splits import CommissionTerms, FeePolicy, SplitError
from apps.vendors.states import can_receive, vendor_to
from apps.webhooks.outbound import event_publish

# A new marketplace's default: 10% of each vendor part, no fixed fee, the platform bears
# processor fees (the simplest terms to explain to vendors; operators change them in the admin).
DEFAULT_COMMISSION_BPS = 1000
DEFAULT_FEE_POLICY = FeePolicy.PLATFORM


class VendorError(ValueError):
    """Bad input or a state that forbids the change; ``code`` and ``param`` as in the API."""

    def __init__(self, code: str, message: str, *, param: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def _country(value: str) -> str:
    """The upper-case ISO 3166-1 alpha-2 code of a country that exists; VendorError otherwise."""
    code = country_code(value)
    if code is None:
        raise VendorError(
            "parameter_invalid",
            f"country must be an ISO 3166-1 alpha-2 code of a country (e.g. US, DE), got {value!r}",
            param="country",
        )
    return code


def commission_policy_install(*, marketplace: Any = None) -> CommissionPolicy:
    """Provisioner (``settings.TENANT_PROVISIONERS``): the marketplace's default commission
    policy. Idempotent: an existing policy is left as it is."""
    policy, _ = CommissionPolicy.objects.get_or_create(
        singleton=True,
        defaults={"percent_bps": DEFAULT_COMMISSION_BPS, "fixed": {}, "fee_policy": DEFAULT_FEE_POLICY.value},
    )
    return policy


def vendor_create(
    *,
    email: str,
    name: str,
    country: str,
    default_currency: str,
    payout_schedule: str = Vendor.PayoutSchedule.WEEKLY,
    payout_minimum: int = 0,
    metadata: Mapping[str, Any] | None = None,
    commission_percent_bps: int | None = None,
    commission_fixed: Mapping[str, int] | None = None,
    fee_policy: str | None = None,
) -> Vendor:
    """A new vendor in status ``invited`` (no Stripe account yet). The commission fields override
    the marketplace's terms (None: the marketplace's). Raises VendorError."""
    if not name.strip():
        raise VendorError("parameter_missing", "name must not be empty", param="name")
    country = _country(country)
    try:
        currency = normalize_currency(default_currency).lower()
        minimum = require_amount(payout_minimum, allow_zero=True)
    except MoneyError as exc:
        param = "payout_minimum" if "amount" in str(exc) else "default_currency"
        raise VendorError("parameter_invalid", str(exc), param=param) from None
    if payout_schedule not in Vendor.PayoutSchedule.values:
        raise VendorError(
            "parameter_invalid",
            f"payout_schedule must be one of {', '.join(Vendor.PayoutSchedule.values)}",
            param="payout_schedule",
        )
    vendor = Vendor(
        email=email.strip(),
        name=name.strip(),
        country=country,
        default_currency=currency,
        payout_schedule=payout_schedule,
        payout_minimum=minimum,
        metadata=dict(metadata or {}),
        commission_percent_bps=commission_percent_bps,
        commission_fixed=None if commission_fixed is None else dict(commission_fixed),
        fee_policy=fee_policy,
    )
    _terms_check(vendor)
    vendor.save(force_insert=True)
    return vendor


def _terms_check(vendor: Vendor) -> None:
    """The vendor's terms must make sense to the split rules (e.g. fixed fees in known
    currencies); fixed fees are stored with lower-case currency codes. Raises VendorError naming
    the vendor's field."""
    try:
        terms = CommissionTerms(
            percent_bps=vendor.commission_percent_bps or 0,
            fixed=vendor.commission_fixed or {},
            fee_policy=FeePolicy(vendor.fee_policy or FeePolicy.PLATFORM),
        )
    except SplitError as exc:
        param = {"percent_bps": "commission_percent_bps", "fee_policy": "fee_policy"}.get(
            exc.param or "", "commission_fixed"
        )
        raise VendorError(exc.code, str(exc), param=param) from None
    if vendor.commission_fixed is not None:
        vendor.commission_fixed = dict(terms.fixed)


# What ``vendor_update`` may change (besides ``disabled``).
UPDATABLE_FIELDS = (
    "name",
    "email",
    "payout_schedule",
    "payout_minimum",
    "commission_percent_bps",
    "commission_fixed",
    "fee_policy",
    "payouts_held",
    "metadata",
)


def vendor_update(*, vendor_id: str, disabled: bool | None = None, **changes: Any) -> Vendor:
    """Change the given fields (``UPDATABLE_FIELDS``; a None commission field falls back to the
    marketplace's terms) under the vendor's lock, announced as ``vendor.updated``. ``disabled``
    True disables the vendor (no new splits or payouts); False re-enables a disabled one, active
    if its payouts are enabled, else back in onboarding. Raises VendorError (nothing changed)."""
    unknown = set(changes) - set(UPDATABLE_FIELDS)
    if unknown:
        raise TypeError(f"vendor_update() got unexpected keyword arguments {sorted(unknown)}")
    with transaction.atomic():
        vendor = vendor_lock(vendor_id)
        before = vendor_state(vendor)
        for key, value in changes.items():
            setattr(vendor, key, value)
        if disabled is True:
            vendor.status = Vendor.Status.DISABLED
        elif disabled is False and vendor.status == Vendor.Status.DISABLED:
            vendor.status = Vendor.Status.ACTIVE if vendor.payouts_enabled else Vendor.Status.ONBOARDING
        _terms_check(vendor)
        vendor.save()
        vendor_changed(vendor, before=before)
    return vendor


def hash_invite_token(raw: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast hash is the right tool (as for API keys).
    return hashlib.sha256(raw.encode()).hexdigest()


def vendor_invite_create(*, vendor: Vendor) -> tuple[VendorInvite, str]:
    """A single-use invite; returns it with the raw token (only its hash is stored, so the
    token is shown once). Earlier unused invites stay valid until they expire or one is used."""
    if vendor.status == Vendor.Status.DISABLED:
        raise VendorError("vendor_disabled", f"vendor {vendor.id} is disabled", param="vendor")
    raw = "vinv_" + secrets.token_urlsafe(32)
    invite = VendorInvite.objects.create(vendor=vendor, token_hash=hash_invite_token(raw))
    return invite, raw


def vendor_invite_redeem(*, token: str) -> Vendor:
    """Use an invite: marks it used (once, under a row lock) and returns its vendor; every other
    unused invite of that vendor is used up with it. Raises VendorError ``invite_invalid`` for an
    unknown, used or expired token (one message for all three: nothing to probe)."""
    now = timezone.now()
    with transaction.atomic():
        invite = invite_lock(hash_invite_token(token))
        if invite is None or not invite.usable(now) or invite.vendor.status == Vendor.Status.DISABLED:
            raise VendorError("invite_invalid", "this invite link is invalid or has expired", param="token")
        VendorInvite.objects.filter(vendor=invite.vendor, used_at__isnull=True).update(used_at=now)
        return invite.vendor


def vendor_payouts_hold(*, vendor: Vendor) -> Vendor:
    """An operator's hold: payouts stop until released (transfers still reach the vendor's
    connected account, where the money waits). Idempotent."""
    return _payouts_held_set(vendor, True)


def vendor_payouts_release(*, vendor: Vendor) -> Vendor:
    """Lift an operator's hold. Idempotent."""
    return _payouts_held_set(vendor, False)


def _payouts_held_set(vendor: Vendor, held: bool) -> Vendor:
    with transaction.atomic():
        locked = vendor_lock(vendor.pk)
        before = vendor_state(locked)
        locked.payouts_held = held
        locked.save(update_fields=["payouts_held", "updated_at"])
        vendor_changed(locked, before=before)
    vendor.payouts_held, vendor.updated_at = locked.payouts_held, locked.updated_at
    return vendor


def vendor_account_apply(*, vendor: Vendor, account: ConnectAccount) -> Vendor:
    """Record what Stripe says about the vendor's connected account: its id, flags, requirements
    and our status (as the Connect rail maps it). A disabled vendor stays disabled (an operator's
    decision outranks Stripe). Locks the vendor row; idempotent."""
    with transaction.atomic():
        locked = vendor_lock(vendor.pk)
        if locked.stripe_account_id and locked.stripe_account_id != account.id:
            raise VendorError(
                "account_mismatch",
                f"vendor {locked.id} is linked to {locked.stripe_account_id}, not {account.id}",
                param="account",
            )
        before = vendor_state(locked)
        locked.stripe_account_id = account.id
        locked.charges_enabled = account.charges_enabled
        locked.payouts_enabled = account.payouts_enabled
        locked.requirements = account.requirements
        if locked.status != Vendor.Status.DISABLED:
            vendor_to(locked, account.status)
        locked.save(
            update_fields=[
                "stripe_account_id",
                "charges_enabled",
                "payouts_enabled",
                "requirements",
                "status",
                "updated_at",
            ]
        )
        vendor_changed(locked, before=before)
    return locked


def vendor_state(vendor: Vendor) -> tuple:
    """What ``vendor.updated`` announces a change of."""
    return (
        vendor.status,
        vendor.charges_enabled,
        vendor.payouts_enabled,
        vendor.payouts_held,
        vendor.stripe_account_id,
        repr(vendor.requirements),
        vendor.name,
        vendor.email,
        vendor.payout_schedule,
        vendor.payout_minimum,
        vendor.commission_percent_bps,
        repr(vendor.commission_fixed),
        vendor.fee_policy,
        repr(vendor.metadata),
    )


def vendor_changed(vendor: Vendor, *, before: tuple) -> None:
    """After a vendor row changed (in the changing transaction): announce ``vendor.updated`` and,
    once it can be paid, release its held transfers (after commit: they take the vendor's lock)."""
    if vendor_state(vendor) == before:
        return
    event_publish(
        type="vendor.updated",
        object_type="vendor",
        object_id=vendor.id,
        source_key=f"vendor:{vendor.id}:{uuid.uuid4().hex}",
    )
    if can_receive(vendor):
        durable_enqueue(
            handler="apps.vendors.funds.vendor_transfers_release",
            kwargs={"vendor_id": vendor.id},
            idempotency_key=f"release:{vendor.id}:{uuid.uuid4().hex[:12]}",
        )


def vendor_business_details_record(
    *,
    vendor: Vendor,
    business_name: str,
    business_type: str,
    country: str,
    support_email: str = "",
    support_phone: str = "",
) -> Vendor:
    """Record what the vendor entered on the onboarding form: ``country`` on the vendor (its
    Stripe account is created there) and the rest in ``metadata["business"]``, so a retry after a
    Stripe failure creates the account with the same details. Locks the vendor row; raises
    VendorError for bad input; changes nothing else (status changes go through
    ``vendor_account_apply``)."""
    if not business_name.strip():
        raise VendorError("parameter_missing", "business name must not be empty", param="business_name")
    if business_type not in ("individual", "company"):
        raise VendorError(
            "parameter_invalid", "business type must be individual or company", param="business_type"
        )
    country = _country(country)
    with transaction.atomic():
        locked = vendor_lock(vendor.pk)
        locked.country = country
        locked.metadata = {
            **(locked.metadata or {}),
            "business": {
                "name": business_name.strip(),
                "type": business_type,
                "support_email": support_email.strip(),
                "support_phone": support_phone.strip(),
            },
        }
        locked.save(update_fields=["country", "metadata", "updated_at"])
    return locked
