"""Vendor dashboard sign-in by emailed magic link (vendors are not Django users).

A link is single use and valid ``settings.VENDOR_LOGIN_TTL_MINUTES`` (15); only the SHA-256 of
its token is stored. The signed-in vendor lives in the session (``SESSION_KEY``: the vendor id
signed with a salt naming the marketplace's schema, so a session value is worthless anywhere
else). Asking for a link never says whether the address belongs to a vendor.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone

from apps.tenants.db import current_schema
from apps.tenants.selectors import marketplace_base_url, marketplace_current
from apps.vendors.locks import login_token_lock
from apps.vendors.models import Vendor, VendorLoginToken
from apps.vendors.onboarding import tenant_reverse
from apps.vendors.services import VendorError, hash_invite_token

SESSION_KEY = "vendors.vendor"
_SESSION_SALT = "apps.vendors.auth.session"


def vendor_login_request(*, email: str, request_host: str | None = None) -> int:
    """Email a sign-in link to every vendor (not disabled) of this marketplace with ``email``
    (case-insensitive); returns how many were sent, which callers must not reveal."""
    email = email.strip()
    if not email:
        return 0
    vendors = list(Vendor.objects.filter(email__iexact=email).exclude(status=Vendor.Status.DISABLED))
    marketplace = marketplace_current()
    name = getattr(marketplace, "name", None) or "Your marketplace"
    base = marketplace_base_url(request_host=request_host)
    minutes = getattr(settings, "VENDOR_LOGIN_TTL_MINUTES", 15)
    for vendor in vendors:
        raw = "vlog_" + secrets.token_urlsafe(32)
        VendorLoginToken.objects.create(vendor=vendor, token_hash=hash_invite_token(raw))
        context = {
            "vendor": vendor,
            "marketplace_name": name,
            "url": base + tenant_reverse("vendors:login_confirm", args=[raw]),
            "minutes": minutes,
        }
        send_mail(
            subject=f"{name}: your sign-in link",
            message=render_to_string("emails/vendor_login.txt", context),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[vendor.email],
        )
    return len(vendors)


def vendor_login_token_check(*, token: str) -> Vendor | None:
    """The vendor a usable token belongs to, without using it (for the confirmation page)."""
    row = (
        VendorLoginToken.objects.select_related("vendor").filter(token_hash=hash_invite_token(token)).first()
    )
    if row is None or not row.usable() or row.vendor.status == Vendor.Status.DISABLED:
        return None
    return row.vendor


def vendor_login_redeem(*, token: str) -> Vendor:
    """Use a sign-in link: marks it used (once, under a row lock) and returns its vendor. Raises
    VendorError ``login_link_invalid`` for an unknown, used or expired token (one message)."""
    now = timezone.now()
    with transaction.atomic():
        row = login_token_lock(hash_invite_token(token))
        if row is None or not row.usable(now) or row.vendor.status == Vendor.Status.DISABLED:
            raise VendorError(
                "login_link_invalid", "this sign-in link is invalid or has expired", param="token"
            )
        row.used_at = now
        row.save(update_fields=["used_at"])
        return row.vendor


def _signer() -> signing.Signer:
    return signing.Signer(salt=f"{_SESSION_SALT}:{current_schema()}")


def session_login(request: HttpRequest, vendor: Vendor) -> None:
    """Sign the vendor in (a new session key, against fixation)."""
    request.session.cycle_key()
    request.session[SESSION_KEY] = _signer().sign(vendor.id)


def session_logout(request: HttpRequest) -> None:
    request.session.flush()


def session_vendor(request: HttpRequest) -> Vendor | None:
    """The signed-in vendor of this marketplace, or None (also for a disabled vendor)."""
    value = request.session.get(SESSION_KEY)
    if not isinstance(value, str):
        return None
    try:
        vendor_id = _signer().unsign(value)
    except signing.BadSignature:
        return None
    return Vendor.objects.exclude(status=Vendor.Status.DISABLED).filter(pk=vendor_id).first()
