"""The emailed link to authenticate an off-session payment.

A merchant-initiated charge the issuer declined with ``authentication_required`` waits in
``requires_action`` (``drive``); when its customer has an email, a durable task
(``payment_authentication_link_send``, keyed by the payment: once per payment) emails them a link
to ``/pay/<pay_id>/authenticate?token=<signed>`` on the marketplace's host. The token names the
payment and the marketplace and expires after ``AUTHENTICATION_LINK_MAX_AGE_SECONDS``. The page
confirms the payment again with the customer there (``payment_authentication_link_confirm``),
whose issuer may then challenge them (``redirect_to_url``), and shows the result.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from apps.core.money import format_amount
from apps.customers.selectors import customer_get
from apps.payments.locks import lock_intent
from apps.payments.models import PaymentIntent
from apps.payments.selectors import payment_get
from apps.payments.services.confirm import payment_confirm
from apps.payments.services.errors import PaymentError
from apps.tenants.db import current_schema
from apps.tenants.selectors import marketplace_base_url, marketplace_current

SALT = "payments.authenticate"


def authentication_link_token(intent_id: str) -> str:
    """A signed token naming payment ``intent_id`` in this marketplace (it expires with age)."""
    return signing.dumps({"p": intent_id, "t": current_schema()}, salt=SALT, compress=True)


def authentication_link_payment(*, token: str, intent_id: str) -> PaymentIntent | None:
    """The payment a link's token names, if the token is genuine, unexpired, of this marketplace
    and names ``intent_id``; else None."""
    try:
        data = signing.loads(token, salt=SALT, max_age=settings.AUTHENTICATION_LINK_MAX_AGE_SECONDS)
    except signing.BadSignature:  # tampered, or expired (SignatureExpired is one)
        return None
    if not isinstance(data, dict) or data.get("t") != current_schema() or data.get("p") != intent_id:
        return None
    return payment_get(payment_id=intent_id)


def authentication_link_url(intent_id: str) -> str:
    return (
        f"{marketplace_base_url()}/pay/{intent_id}/authenticate?token={authentication_link_token(intent_id)}"
    )


def payment_authentication_link_send(*, intent_id: str) -> str:
    """Idempotent: email the customer of payment ``intent_id`` the link to authenticate it, once
    per payment (``authentication_link_sent_at``), while it still waits for them and they have an
    email. Sent, then marked: a crash in between sends it again, never loses it."""
    intent = PaymentIntent.objects.get(pk=intent_id)
    if intent.authentication_link_sent_at is not None:
        return f"already sent for {intent.id}"
    if (
        intent.status != PaymentIntent.Status.REQUIRES_ACTION
        or intent.next_action.get("type") != "authenticate"
    ):
        return f"{intent.id} is {intent.status}: no link needed"
    customer = customer_get(customer_id=intent.customer_id) if intent.customer_id else None
    if customer is None or not customer.email:
        return f"{intent.id}: its customer has no email"
    marketplace = marketplace_current()
    context = {
        "customer": customer,
        "marketplace_name": getattr(marketplace, "name", "") or "Your marketplace",
        "amount": format_amount(intent.amount, intent.currency),
        "description": intent.description,
        "url": authentication_link_url(intent.id),
        "days": max(1, settings.AUTHENTICATION_LINK_MAX_AGE_SECONDS // 86400),
    }
    subject = render_to_string("emails/payment_authentication_subject.txt", context).strip()
    body = render_to_string("emails/payment_authentication.txt", context)
    send_mail(subject, body, None, [customer.email])
    with transaction.atomic():
        locked = lock_intent(intent.id)
        locked.authentication_link_sent_at = timezone.now()
        locked.save(update_fields=["authentication_link_sent_at"])
    return f"sent to the customer of {intent.id}"


def payment_authentication_link_confirm(*, intent_id: str, return_url: str) -> PaymentIntent:
    """The customer opened the emailed link and asked to authenticate: the payment is confirmed
    again with them there (``off_session`` False), with ``return_url`` (the link's return page).
    Only a payment still waiting for them, or whose authentication through the link failed (they
    try again); raises PaymentError otherwise."""
    intent = payment_get(payment_id=intent_id)
    if intent is None or intent.status not in (
        PaymentIntent.Status.REQUIRES_ACTION,
        PaymentIntent.Status.FAILED,
    ):
        raise PaymentError(f"payment {intent_id} does not wait for the customer")
    return payment_confirm(intent_id=intent_id, return_url=return_url, off_session=False)
