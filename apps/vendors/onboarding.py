"""Vendor onboarding, step by step (the pages in ``views`` call these in order):

1. ``vendor_invite_send``: an operator (admin action, ``POST /api/v1/vendors``) invites a vendor;
   the email holds a single-use, expiring link to ``/vendors/invite/<token>``.
2. The vendor fills in the business-details form; its POST redeems the invite
   (``vendor_invite_redeem``) and calls ``onboarding_start``: with a Stripe gateway the Express
   account is created (``onboarding_account_ensure``) and the vendor is sent to Stripe's hosted
   form (``onboarding_link_create``); without one (the demo) a simulated account stands in
   (``simulated_onboarding_begin`` then ``simulated_onboarding_complete``).
3. Stripe sends the vendor back to our return page (``onboarding_status_refresh`` shows the real
   status) or, when the Account Link expired, to our refresh page (a new link).

The refresh and return URLs carry the vendor id signed with the secret key (``TimestampSigner``,
a salt naming the marketplace's schema, ``ONBOARDING_LINK_MAX_AGE``): nobody can make one for
another vendor or another marketplace, and an old one stops working.

Every status change goes through ``services.vendor_account_apply`` (which also releases held
transfers and emits ``vendor.updated``). Stripe is called outside database transactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse

from apps.payments.gateways.connect import ConnectAccount, ConnectRail, ConnectStatus
from apps.tenants.db import current_schema
from apps.tenants.selectors import marketplace_base_url, marketplace_current
from apps.vendors.connect import requirements_in_words
from apps.vendors.models import Vendor, VendorInvite
from apps.vendors.selectors import SIMULATED_ACCOUNT_PREFIX, connect_client, is_simulated
from apps.vendors.services import hash_invite_token, vendor_account_apply, vendor_create, vendor_invite_create

# How long a signed refresh/return URL works. Stripe sends the vendor back within minutes, but a
# vendor may leave Stripe's form and come back to the refresh URL days later.
ONBOARDING_LINK_MAX_AGE = timedelta(days=7)
_LINK_SALT = "apps.vendors.onboarding.link"


# --------------------------------------------------------------------------- marketplace and urls


def tenant_reverse(name: str, *, args: list) -> str:
    """A path on the marketplace's own host, whichever host the request came to (an API call on
    the public host, where the key chose the marketplace, uses the public URLconf)."""
    return reverse(name, args=args, urlconf=settings.ROOT_URLCONF)


def vendor_invite_send(*, vendor: Vendor, request_host: str | None = None) -> str:
    """Create a single-use invite (``vendor_invite_create``), email its link to the vendor and
    return the link (absolute, on the marketplace's primary domain, see
    ``marketplace_base_url``). Raises VendorError for a disabled vendor; sends nothing then."""
    invite, raw = vendor_invite_create(vendor=vendor)
    url = marketplace_base_url(request_host=request_host) + tenant_reverse("vendors:invite", args=[raw])
    marketplace = marketplace_current()
    name = getattr(marketplace, "name", None) or "Your marketplace"
    context = {"vendor": vendor, "marketplace_name": name, "url": url, "expires_at": invite.expires_at}
    send_mail(
        subject=f"{name}: set up your payouts",
        message=render_to_string("emails/vendor_invite.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[vendor.email],
    )
    return url


def vendor_create_and_invite(*, request_host: str | None = None, **fields: Any) -> tuple[Vendor, str]:
    """A new vendor (``vendor_create`` with ``fields``) invited at once (``vendor_invite_send``),
    in one transaction: nothing is created when either fails. Returns the vendor and its
    invite link. Raises VendorError."""
    with transaction.atomic():
        vendor = vendor_create(**fields)
        url = vendor_invite_send(vendor=vendor, request_host=request_host)
    return vendor, url


def invite_vendor(*, token: str) -> Vendor | None:
    """The vendor a usable invite token belongs to, without using the invite (the landing page's
    GET must not consume it: mail scanners open links), or None."""
    invite = VendorInvite.objects.select_related("vendor").filter(token_hash=hash_invite_token(token)).first()
    if invite is None or not invite.usable() or invite.vendor.status == Vendor.Status.DISABLED:
        return None
    return invite.vendor


def link_token(vendor: Vendor) -> str:
    """The signed vendor id that the refresh and return URLs carry (valid in this marketplace)."""
    return signing.TimestampSigner(salt=f"{_LINK_SALT}:{current_schema()}").sign(vendor.id)


def link_vendor(token: str) -> Vendor | None:
    """The vendor a ``link_token`` names, or None when it is forged, of another marketplace,
    older than ``ONBOARDING_LINK_MAX_AGE`` or names no vendor."""
    signer = signing.TimestampSigner(salt=f"{_LINK_SALT}:{current_schema()}")
    try:
        vendor_id = signer.unsign(token, max_age=ONBOARDING_LINK_MAX_AGE)
    except signing.BadSignature:
        return None
    return Vendor.objects.filter(pk=vendor_id).first()


def refresh_link_vendor(token: str) -> Vendor | None:
    """The vendor Stripe's refresh URL names (``link_vendor``) when it may go on to Stripe's form
    (it is not disabled), else None."""
    vendor = link_vendor(token)
    if vendor is None or vendor.status == Vendor.Status.DISABLED:
        return None
    return vendor


# --------------------------------------------------------------------------- Stripe or simulated


def simulated_account(vendor: Vendor, *, verified: bool) -> ConnectAccount:
    """What Stripe would say about the vendor's account, for marketplaces without Stripe: id
    ``acct_sim_<vendor id suffix>``; unverified (onboarding) or verified (active)."""
    return ConnectAccount(
        id=SIMULATED_ACCOUNT_PREFIX + vendor.id.removeprefix("ven_"),
        status=ConnectStatus.ACTIVE if verified else ConnectStatus.ONBOARDING,
        charges_enabled=verified,
        payouts_enabled=verified,
        details_submitted=verified,
        currently_due=(),
        past_due=(),
        disabled_reason=None,
        country=vendor.country,
        default_currency=vendor.default_currency,
        email=vendor.email,
        metadata={"vendor_id": vendor.id, "simulated": "true"},
    )


def simulated_onboarding_begin(*, vendor: Vendor) -> Vendor:
    """Link the vendor to its simulated account, not verified yet (status ``onboarding``).
    Idempotent; a vendor already past this step is left as it is."""
    if vendor.stripe_account_id:
        return vendor
    return vendor_account_apply(vendor=vendor, account=simulated_account(vendor, verified=False))


def simulated_onboarding_complete(*, vendor: Vendor) -> Vendor:
    """The simulated verification: charges and payouts enabled, nothing due (status ``active``).
    Idempotent. Raises VendorError when the vendor has a real Stripe account."""
    return vendor_account_apply(vendor=vendor, account=simulated_account(vendor, verified=True))


def onboarding_account_ensure(*, vendor: Vendor, client: ConnectRail) -> Vendor:
    """The vendor's Express account: created once (idempotency key ``account:<vendor id>``, with
    the business details from the form as metadata) and applied (status ``onboarding``); a vendor
    that has one is returned unchanged. Raises ConnectError."""
    if vendor.stripe_account_id:
        return vendor
    business = (vendor.metadata or {}).get("business") or {}
    metadata = {
        key: value
        for key, value in {
            "business_name": business.get("name") or vendor.name,
            "support_email": business.get("support_email") or "",
            "support_phone": business.get("support_phone") or "",
        }.items()
        if value
    }
    account = client.account_create(
        vendor_id=vendor.id,
        email=vendor.email,
        country=vendor.country,
        business_type="company" if business.get("type") == "company" else "individual",
        default_currency=vendor.default_currency,
        metadata=metadata,
        idempotency_key=f"account:{vendor.id}",
    )
    return vendor_account_apply(vendor=vendor, account=account)


def onboarding_link_create(*, vendor: Vendor, client: ConnectRail, base_url: str) -> str:
    """A new Account Link into Stripe's hosted onboarding (single use, expires in minutes); its
    refresh and return URLs are our signed pages under ``base_url``. Raises ConnectError."""
    token = link_token(vendor)
    link = client.account_link_create(
        account_id=vendor.stripe_account_id,
        refresh_url=base_url + tenant_reverse("vendors:onboarding_refresh", args=[token]),
        return_url=base_url + tenant_reverse("vendors:onboarding_return", args=[token]),
    )
    return link.url


@dataclass(frozen=True)
class Next:
    """Where the vendor goes after the form: Stripe's hosted onboarding (``url``) or our
    simulated step (``simulated``)."""

    vendor: Vendor
    url: str | None = None
    simulated: bool = False


def onboarding_start(*, vendor: Vendor, base_url: str) -> Next:
    """After the business-details form: the account (real or simulated) and the next step.
    Idempotent (a vendor with an account gets a new link, nothing is created twice). Raises
    ConnectError when Stripe fails."""
    client = connect_client()
    if client is None or is_simulated(vendor):
        return Next(vendor=simulated_onboarding_begin(vendor=vendor), simulated=True)
    vendor = onboarding_account_ensure(vendor=vendor, client=client)
    return Next(vendor=vendor, url=onboarding_link_create(vendor=vendor, client=client, base_url=base_url))


# --------------------------------------------------------------------------- status


class Stage:
    """What the return page tells the vendor."""

    NOT_STARTED = "not_started"  # no account yet
    NOT_FINISHED = "not_finished"  # left Stripe's form before submitting it
    PENDING_VERIFICATION = "pending_verification"  # submitted; Stripe is verifying
    ENABLED = "enabled"  # charges and payouts enabled
    RESTRICTED = "restricted"  # Stripe needs more (see requirements)
    DISABLED = "disabled"  # by an operator


@dataclass(frozen=True)
class OnboardingState:
    vendor: Vendor
    stage: str  # Stage
    requirements: list[str]
    simulated: bool


def onboarding_state(*, vendor: Vendor, details_submitted: bool | None = None) -> OnboardingState:
    """The stage from what we recorded (``details_submitted`` from a fresh retrieve, when there is
    one; else inferred: an onboarding vendor with requirements left is still filling in)."""
    words = requirements_in_words(vendor.requirements)
    if vendor.status == Vendor.Status.DISABLED:
        stage = Stage.DISABLED
    elif not vendor.stripe_account_id:
        stage = Stage.NOT_STARTED
    elif vendor.status == Vendor.Status.ACTIVE:
        stage = Stage.ENABLED
    elif vendor.status == Vendor.Status.RESTRICTED:
        stage = Stage.RESTRICTED
    else:
        if details_submitted is None:
            details_submitted = (vendor.requirements or {}).get("disabled_reason") == (
                "requirements.pending_verification"
            )
        stage = Stage.PENDING_VERIFICATION if details_submitted else Stage.NOT_FINISHED
    return OnboardingState(vendor=vendor, stage=stage, requirements=words, simulated=is_simulated(vendor))


def onboarding_status_refresh(*, vendor: Vendor) -> OnboardingState:
    """The vendor's real status now: its account retrieved from Stripe and applied
    (``vendor_account_apply``); a simulated or missing account is read as recorded. Raises
    ConnectError when Stripe fails."""
    client = connect_client()
    if not vendor.stripe_account_id or is_simulated(vendor) or client is None:
        return onboarding_state(vendor=vendor)
    account = client.account_retrieve(vendor.stripe_account_id)
    vendor = vendor_account_apply(vendor=vendor, account=account)
    return onboarding_state(vendor=vendor, details_submitted=account.details_submitted)


# --------------------------------------------------------------------------- dashboard


def express_dashboard_url(*, vendor: Vendor) -> str | None:
    """A fresh single-use login link into the vendor's Stripe Express dashboard, or None when
    the vendor has no real Stripe account (none yet, simulated, or Stripe is not configured).
    Raises ConnectError when Stripe fails."""
    client = connect_client()
    if client is None or not vendor.stripe_account_id or is_simulated(vendor):
        return None
    return client.login_link_create(account_id=vendor.stripe_account_id).url
