"""Customer pages: the hosted invoice (by its unguessable access token) and the card-update page
(by a signed token from the dunning email). Views parse, call one service, render."""

from __future__ import annotations

import re

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from apps.billing.selectors import card_update_subscription_get, hosted_invoice_get, open_invoices
from apps.billing.services import BillingError, subscription_payment_method_update
from apps.core.money import format_amount

TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")


@require_http_methods(["GET"])
def invoice_page(request: HttpRequest, token: str) -> HttpResponse:
    if not TOKEN.fullmatch(token):
        raise Http404("no such invoice")
    inv = hosted_invoice_get(access_token=token)
    if inv is None:
        raise Http404("no such invoice")
    lines = [(line, format_amount(line.amount, line.currency)) for line in inv.lines.all()]
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
    sub = card_update_subscription_get(token=token)
    if sub is None:
        raise Http404("this link is not valid any more")
    error, done = "", False
    if request.method == "POST":
        method = (request.POST.get("payment_method") or "").strip()
        try:
            sub = subscription_payment_method_update(subscription_id=sub.id, payment_method=method)
            done = True
        except BillingError as exc:
            error = str(exc)
    return render(
        request,
        "billing/card_update.html",
        {
            "subscription": sub,
            "error": error,
            "done": done,
            "open_invoices": open_invoices(subscription_id=sub.id),
        },
        status=400 if error else 200,
    )
