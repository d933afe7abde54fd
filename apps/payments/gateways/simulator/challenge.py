"""The simulator's 3-D Secure challenge page: the simulator plays the card issuer's page that a
processor sends the customer to (Stripe's test page has the same two buttons).

``GET /simulator/<account>/authenticate/<attempt_id>`` shows the payment's amount and the
merchant, with **Complete authentication** and **Fail authentication**; the POST (CSRF-checked)
is the customer's answer to the issuer: ``SimulatorGateway.action_complete`` records it at the
simulator, which then "sends its webhook" (a durable task asking for the attempt's news, applied
through the payments services exactly once with the customer's return), and the customer is
sent back to the payment's return URL (``payment=<pay_id>`` already in its query). Only a
simulator account of the marketplace whose host this is, and only an attempt it knows: anything
else is a 404 page.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from apps.core.durable import durable_enqueue
from apps.core.money import format_amount
from apps.payments.gateways.base import GatewayConfig
from apps.payments.gateways.simulator.gateway import SimulatorGateway
from apps.payments.models import GatewayAccount, SimulatorAction
from apps.tenants.selectors import marketplace_current

# The payments service that reads an attempt's news from its gateway and applies it (the name a
# durable task stores; gateways never import the services).
NEWS_HANDLER = "apps.payments.services.payment_attempt_refresh"

_TITLES = {
    "requires_action": "Authenticate your payment",
    "completed": "Authentication complete",
    "failed": "Authentication failed",
    "canceled": "This authentication has ended",
}


def _action(account: str, attempt_id: str) -> tuple[SimulatorGateway, SimulatorAction]:
    """The simulator account's challenge for ``attempt_id``; 404 unless the account is one of
    this marketplace's simulator accounts and the challenge exists."""
    row = GatewayAccount.objects.filter(name=account, kind=GatewayAccount.Kind.SIMULATOR).first()
    if row is None:
        raise Http404("no such challenge")
    gateway = SimulatorGateway(GatewayConfig(account_id=row.name, settings=row.settings or {}))
    action = gateway.action_get(attempt_id)
    if action is None or action.status not in _TITLES:
        raise Http404("no such challenge")
    return gateway, action


@require_http_methods(["GET", "POST"])
def challenge_page(request: HttpRequest, account: str, attempt_id: str) -> HttpResponse:
    gateway, action = _action(account, attempt_id)
    if request.method == "POST":
        answer = request.POST.get("result")
        if answer not in ("complete", "fail"):
            return _render(request, action, error="Choose Complete authentication or Fail authentication.")
        if action.status == "requires_action":
            gateway.action_complete(attempt_id=attempt_id, succeed=answer == "complete")
            durable_enqueue(
                handler=NEWS_HANDLER,
                kwargs={"attempt_id": attempt_id},
                idempotency_key=f"simulator-news:{account}:{attempt_id}",
            )
            action.refresh_from_db()
        if action.return_url:
            return HttpResponseRedirect(action.return_url)
    return _render(request, action)


def _render(request: HttpRequest, action: SimulatorAction, *, error: str = "") -> HttpResponse:
    marketplace = marketplace_current()
    return render(
        request,
        "simulator/challenge.html",
        {
            "action": action,
            "title": _TITLES[action.status],
            "amount": format_amount(action.amount, action.currency) if action.currency else "",
            "merchant": getattr(marketplace, "name", "") or "the merchant",
            "error": error,
        },
        status=400 if error else 200,
    )
