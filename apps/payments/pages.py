"""Public pages of payments on the marketplace's host: the page the emailed link opens to
authenticate an off-session payment (``/pay/<pay_id>/authenticate?token=...``) and the page the
customer comes back to after the challenge. Views parse, call one payments service, render."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from apps.core.money import format_amount
from apps.payments.models import PaymentIntent
from apps.payments.services import (
    PaymentError,
    authentication_link_payment,
    customer_message,
    payment_authentication_link_confirm,
    payment_authentication_return,
)
from apps.tenants.branding import marketplace_brand
from apps.tenants.selectors import marketplace_current

IS = PaymentIntent.Status


@require_http_methods(["GET", "POST"])
def authenticate_page(request: HttpRequest, payment_id: str) -> HttpResponse:
    token = request.POST.get("token") or request.GET.get("token") or ""
    intent = authentication_link_payment(token=token, intent_id=payment_id)
    if intent is None:
        return _render(request, None, token, status=404)
    if request.method == "POST":
        back = request.build_absolute_uri(
            f"/pay/{payment_id}/authenticate/return?{urlencode({'token': token})}"
        )
        try:
            intent = payment_authentication_link_confirm(intent_id=payment_id, return_url=back)
        except PaymentError:
            intent = authentication_link_payment(token=token, intent_id=payment_id) or intent
        follow = intent.next_action.get("redirect_to_url") if intent.status == IS.REQUIRES_ACTION else None
        if follow:
            return HttpResponseRedirect(follow["url"])
    return _render(request, intent, token)


@require_http_methods(["GET"])
def authenticate_return(request: HttpRequest, payment_id: str) -> HttpResponse:
    token = request.GET.get("token") or ""
    intent = authentication_link_payment(token=token, intent_id=payment_id)
    if intent is None:
        return _render(request, None, token, status=404)
    details = {k: v for k, v in request.GET.items() if k not in ("token", "payment")}
    intent = payment_authentication_return(intent_id=payment_id, details=details)
    return _render(request, intent, token)


def _render(
    request: HttpRequest, intent: PaymentIntent | None, token: str, *, status: int = 200
) -> HttpResponse:
    marketplace = marketplace_current()
    brand = marketplace_brand(marketplace)
    state, message = "invalid", "This link is not valid any more. Ask the merchant for a new one."
    if intent is not None:
        error = intent.last_error or {}
        if intent.status in (IS.SUCCEEDED, IS.REQUIRES_CAPTURE):
            state, message = "paid", "Thank you: your payment is complete."
        elif intent.status == IS.REQUIRES_ACTION:
            state, message = "waiting", "Your bank asks you to authenticate this payment."
        elif intent.status == IS.PROCESSING:
            state, message = "processing", "Your payment is being processed. You can close this page."
        elif intent.status == IS.FAILED:
            state, message = "failed", customer_message(error.get("code"), error.get("decline_code"))
        else:
            state, message = "closed", "This payment can no longer be paid here."
    return render(
        request,
        "payments/authenticate.html",
        {
            "intent": intent,
            "token": token,
            "state": state,
            "message": message,
            "amount": format_amount(intent.amount, intent.currency) if intent is not None else "",
            "marketplace_name": getattr(marketplace, "name", "") or "Payment",
            "brand_color": brand["color"],
            "on_brand_color": brand["on_color"],
        },
        status=status,
    )
