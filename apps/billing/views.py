"""Customer pages: the hosted invoice (by its unguessable access token) and the card-update page
(by a signed token from the dunning email). Views parse, call one service, render."""

from __future__ import annotations

import re

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_http_methods

from apps.billing.models import Invoice, Subscription
from apps.billing.notifications import card_update_subscription
from apps.billing.services import BillingError, subscription_payment_method_update
from apps.core.money import format_amount

TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")


@require_http_methods(["GET"])
def invoice_page(request: HttpRequest, token: str) -> HttpResponse:
    if not TOKEN.fullmatch(token):
        raise Http404("no such invoice")
    inv = get_object_or_404(
        Invoice.objects.select_related("subscription__price__product"), access_token=token
    )
    lines = [(line, format_amount(line.amount, line.currency)) for line in inv.lines.order_by("id")]
    return render(
        request,
        "billing/invoice.html",
        {
            "invoice": inv,
            "lines": lines,
            "subtotal": format_amount(inv.subtotal, inv.currency),
            "tax": format_amount(inv.tax, inv.currency),
            "total": format_amount(inv.total, inv.currency),
            "paid": format_amount(inv.amount_paid, inv.currency),
            "product": inv.subscription.price.product.name,
        },
    )


@require_http_methods(["GET", "POST"])
def card_update_page(request: HttpRequest, token: str) -> HttpResponse:
    """In production the form carries a token from Stripe Elements / Adyen Drop-in (PCI SAQ A:
    card data never reaches us); on the simulator, a test PaymentMethod such as pm_card_visa."""
    sub_id = card_update_subscription(token)
    sub = Subscription.objects.select_related("price__product").filter(pk=sub_id).first() if sub_id else None
    if sub is None:
        raise Http404("this link is not valid any more")
    error, done = "", False
    if request.method == "POST":
        method = (request.POST.get("payment_method") or "").strip()
        try:
            if not method:
                raise BillingError("Enter a payment method.", param="payment_method")
            if len(method) > 255 or "\x00" in method:
                raise BillingError("That is not a payment method token.", param="payment_method")
            sub = subscription_payment_method_update(subscription_id=sub.id, payment_method=method)
            done = True
        except BillingError as exc:
            error = str(exc)
    open_invoices = Invoice.objects.filter(subscription=sub, status="open")
    return render(
        request,
        "billing/card_update.html",
        {"subscription": sub, "error": error, "done": done, "open_invoices": open_invoices},
        status=400 if error else 200,
    )
