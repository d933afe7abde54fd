"""The simulator's card fields: the demo's stand-in for a processor's hosted card fields (Stripe's
Payment Element, Adyen's Drop-in), served in an iframe by the simulator, which plays the
processor. The shopper types one of the documented test card numbers (``TEST_CARD_NUMBERS``);
the fields post it to this view (same origin as the iframe), which answers the simulator's token
(``pm_card_visa`` for 4242 4242 4242 4242, ...); the iframe hands the token to the page that
embeds it by ``postMessage``, to that page's origin only (``origin`` in the iframe's URL).

This is the one path of the platform a card number may be posted to (the form middleware's
narrow exemption, ``SIMULATOR_CARD_FIELDS``): it accepts only test numbers, never stores or logs
what it was sent (nothing here logs; the loggers redact card numbers anyway), and its answers are
never cached. It is served only when ``SIMULATOR_CARD_FIELDS`` is on and the marketplace has an
enabled simulator account.
"""

from __future__ import annotations

import json
import re
from datetime import date

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt

from apps.payments.methods import TEST_CARD_NUMBERS, TEST_METHODS
from apps.payments.models import GatewayAccount

_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_EXPIRY = re.compile(r"^\s*(0[1-9]|1[0-2])\s*/\s*([0-9]{2}|20[0-9]{2})\s*$")
_CVC = re.compile(r"^[0-9]{3,4}$")


def parent_origin(request: HttpRequest) -> str:
    """The origin of the page embedding the fields (``?origin=``), else this host's own."""
    given = request.GET.get("origin", "")
    if given and _ORIGIN.match(given):
        return given.lower()
    return f"{request.scheme}://{request.get_host()}"


def _enabled() -> bool:
    return (
        bool(settings.SIMULATOR_CARD_FIELDS)
        and GatewayAccount.objects.filter(kind=GatewayAccount.Kind.SIMULATOR, enabled=True).exists()
    )


def _no_store(response: HttpResponse) -> HttpResponse:
    add_never_cache_headers(response)  # no-cache, no-store, must-revalidate, private
    return response


def tokenize(number: str, expiry: str, cvc: str, *, today: date | None = None) -> tuple[dict, int]:
    """The simulator's answer to the card fields: ``{"token", "card": {brand, last4}}`` for a
    documented test number with a future expiry and a CVC, else an error naming the field."""
    digits = re.sub(r"[\s-]", "", number or "")
    today = today or date.today()
    token = TEST_CARD_NUMBERS.get(digits)
    if token is None:
        message = (
            "Enter a test card number, e.g. 4242 4242 4242 4242." if digits else "Enter the card number."
        )
        return {"error": {"param": "number", "message": message}}, 400
    match = _EXPIRY.match(expiry or "")
    if not match:
        return {"error": {"param": "expiry", "message": "Enter the expiry as MM / YY."}}, 400
    month, year = int(match.group(1)), int(match.group(2))
    year = year + 2000 if year < 100 else year
    if (year, month) < (today.year, today.month):
        return {"error": {"param": "expiry", "message": "The card's expiry date is in the past."}}, 400
    if not _CVC.match((cvc or "").strip()):
        return {"error": {"param": "cvc", "message": "Enter the 3 or 4 digit security code."}}, 400
    card = TEST_METHODS[token].card
    return {"token": token, "card": {"brand": card.brand, "last4": card.last4}}, 200


@csrf_exempt  # the processor's tokenizer: it changes nothing and holds no session; it runs in
# iframes on storefronts' origins, where our cookies are third-party and never sent
@xframe_options_exempt  # embedding is limited to the declared parent origin (frame-ancestors)
def card_fields(request: HttpRequest) -> HttpResponse:
    if not _enabled():
        raise Http404("no simulator card fields here")
    origin = parent_origin(request)
    if request.method == "POST":
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        answer, status = tokenize(
            str(body.get("number", "")), str(body.get("expiry", "")), str(body.get("cvc", ""))
        )
        return _no_store(JsonResponse(answer, status=status))
    if request.method != "GET":
        return _no_store(HttpResponse(status=405))
    response = render(
        request,
        "simulator/card_fields.html",
        {
            "parent_origin": origin,
            "test_numbers": [
                ("4242 4242 4242 4242", "succeeds"),
                ("4000 0000 0000 0002", "declined"),
                ("4000 0027 6000 3184", "3-D Secure"),
            ],
            "host_origin": f"{request.scheme}://{request.get_host()}",
        },
    )
    response["Content-Security-Policy"] = f"frame-ancestors {origin}"
    response["Referrer-Policy"] = "no-referrer"
    return _no_store(response)
