"""Emails to customers about their invoices, with links to the hosted invoice page and to the
card-update page (a signed, expiring token naming the subscription)."""

from __future__ import annotations

from django.core import signing
from django.core.mail import send_mail
from django.template.loader import render_to_string

from apps.billing.models import Invoice
from apps.core.money import format_amount
from apps.customers.models import Customer
from apps.payments.selectors import payment_waits_for_customer
from apps.payments.services import authentication_link_url
from apps.tenants.db import current_schema
from apps.tenants.selectors import marketplace_base_url

CARD_UPDATE_SALT = "billing.card_update"
CARD_UPDATE_MAX_AGE = 30 * 24 * 3600


def card_update_token(subscription_id: str) -> str:
    return signing.dumps({"s": subscription_id, "t": current_schema()}, salt=CARD_UPDATE_SALT, compress=True)


def card_update_subscription(token: str) -> str | None:
    """The subscription a card-update token names, if it is genuine, unexpired and of this tenant."""
    try:
        data = signing.loads(token, salt=CARD_UPDATE_SALT, max_age=CARD_UPDATE_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("t") != current_schema():
        return None
    return data.get("s")


def _invoice_url(base: str, inv: Invoice) -> str:
    return f"{base}/billing/invoices/{inv.access_token}"


def links(inv: Invoice) -> dict[str, str]:
    base = marketplace_base_url()
    return {
        "invoice_url": _invoice_url(base, inv),
        "card_update_url": f"{base}/billing/card/{card_update_token(inv.subscription_id)}",
    }


def invoice_urls(invoices: list[Invoice]) -> dict[str, str]:
    """Each invoice's hosted page (``links``' ``invoice_url``)."""
    if not invoices:
        return {}
    base = marketplace_base_url()
    return {inv.id: _invoice_url(base, inv) for inv in invoices}


def billing_email_send(*, invoice_id: str, kind: str) -> None:
    """Idempotent per durable task key: send one email about ``invoice_id`` (``payment_failed``,
    ``subscription_canceled``, ``subscription_unpaid``)."""
    inv = Invoice.objects.select_related("subscription__price__product").get(pk=invoice_id)
    customer = Customer.objects.get(pk=inv.customer_id)
    if not customer.email:
        return
    last = inv.attempts.order_by("-number").first()
    # An off-session charge the bank will only take with the customer there: a link to authenticate
    # the invoice's payment (payments' page), not only a new card.
    waiting = (
        kind == "payment_failed" and inv.payment_id and payment_waits_for_customer(payment_id=inv.payment_id)
    )
    context = {
        "invoice": inv,
        "customer": customer,
        "amount": format_amount(inv.amount_due, inv.currency),
        "product": inv.subscription.price.product.name,
        "attempt": last,
        "authentication_url": authentication_link_url(inv.payment_id) if waiting else "",
        **links(inv),
    }
    subject = render_to_string(f"emails/billing_{kind}_subject.txt", context).strip()
    body = render_to_string(f"emails/billing_{kind}.txt", context)
    send_mail(subject, body, None, [customer.email])
