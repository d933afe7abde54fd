"""The hosted checkout page (``/checkout/<cs_id>`` on the marketplace's host), its JSON endpoints
(session, confirm, status: used by the page and by the embeddable element from storefronts'
own origins) and the return from 3-D Secure; ``/checkout.js``, the element itself.

The JSON endpoints are authenticated by the session's client secret in the body, never by
cookies: they are CSRF-exempt and answer CORS for any origin without credentials. Views parse,
call one checkout service or selector, and render."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from apps.checkout.errors import CheckoutError
from apps.checkout.models import CheckoutSession
from apps.checkout.selectors import card_fields, client_secret_matches
from apps.checkout.services import (
    CheckoutResult,
    checkout_session_confirm,
    checkout_session_current,
    checkout_session_return,
    success_redirect,
)
from apps.core.errors import error_body, error_response
from apps.core.money import format_amount
from apps.core.pan import card_number_path, find_card_number
from apps.tenants.branding import marketplace_brand

ELEMENT_JS = Path(__file__).parent / "static_src" / "checkout.js"
MAX_BODY = 16 * 1024


def _origin(request: HttpRequest) -> str:
    return f"{request.scheme}://{request.get_host()}"


def return_url(request: HttpRequest, session_id: str) -> str:
    """Where 3-D Secure sends the customer back: this marketplace host's return page."""
    return _origin(request) + reverse("checkout-return", args=[session_id])


def _branding(request: HttpRequest) -> dict[str, Any]:
    return marketplace_brand(getattr(request, "tenant", None))


def _money(amount: int, currency: str) -> str:
    return format_amount(amount, currency) if currency else ""


def _display(session: CheckoutSession) -> dict[str, Any]:
    return {
        "total": _money(session.amount, session.currency),
        "items": [
            {
                **item,
                "unit": _money(item["amount"], session.currency),
                "line": _money(item["amount"] * item["quantity"], session.currency),
            }
            for item in session.line_items
        ],
    }


def _page(request: HttpRequest, template: str, context: dict, *, status: int = 200) -> HttpResponse:
    response = render(request, template, {"brand": _branding(request), **context}, status=status)
    response["Cache-Control"] = "no-store"  # the page holds the session's client secret
    response["Referrer-Policy"] = "same-origin"
    return response


def _session(session_id: str) -> CheckoutSession:
    try:
        return checkout_session_current(session_id=session_id)
    except CheckoutError:
        raise Http404("no such checkout session") from None


# --------------------------------------------------------------------------- the page


@require_GET  # the page posts nothing: its fields belong to the processor
def checkout_page(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _session(session_id)
    context = {"session": session, "display": _display(session)}
    if session.status == CheckoutSession.Status.EXPIRED:
        return _page(request, "checkout/expired.html", context, status=410)
    if session.status == CheckoutSession.Status.COMPLETE:
        return _page(
            request,
            "checkout/complete.html",
            {**context, "next": session.success_url and success_redirect(session)},
        )
    return _page(request, "checkout/page.html", {**context, "fields": card_fields()})


@require_GET
def checkout_return(request: HttpRequest, session_id: str) -> HttpResponse:
    """Back from the processor's authentication page: resume the payment, then the session's
    success URL, or the page again with the decline."""
    params = request.GET.dict()
    payment_id = params.pop("payment", "")
    try:
        result = checkout_session_return(session_id=session_id, payment_id=payment_id, details=params)
    except CheckoutError:
        raise Http404("no such checkout return") from None
    if result.status == "complete":
        return HttpResponseRedirect(result.redirect)
    if result.status == "requires_action" and result.redirect:
        return HttpResponseRedirect(result.redirect)
    session = result.session
    context = {"session": session, "display": _display(session), "fields": card_fields()}
    if result.status == "expired" or session.status == CheckoutSession.Status.EXPIRED:
        return _page(request, "checkout/expired.html", context, status=410)
    return _page(
        request,
        "checkout/page.html",
        {**context, "message": result.message, "processing": result.status == "processing"},
    )


# --------------------------------------------------------------------------- JSON endpoints


def _cors(response: HttpResponse) -> HttpResponse:
    """Any storefront's origin may call, without cookies: the client secret is the credential."""
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response["Access-Control-Allow-Headers"] = "Content-Type"
    response["Access-Control-Max-Age"] = "600"
    response["Cache-Control"] = "no-store"
    response["Vary"] = "Origin"
    return response


def _json_error(status: int, code: str, message: str, param: str | None = None) -> HttpResponse:
    return _cors(error_response(error_body("invalid_request_error", code, message, param), status))


def _authenticated(
    request: HttpRequest, session_id: str
) -> tuple[CheckoutSession | None, dict, HttpResponse | None]:
    """The session named by the URL and the client secret in the JSON body, the body, or the
    error answer. A card number anywhere in the body is refused: card data goes only to the
    processor's fields."""
    if request.method != "POST":
        return None, {}, _json_error(405, "method_not_allowed", "Use POST.")
    if len(request.body) > MAX_BODY:
        return None, {}, _json_error(413, "body_too_large", "The request body is too large.")
    text = request.body.decode("utf-8", errors="replace")
    try:
        body: Any = json.loads(text or "{}")
        parsed = True
    except (ValueError, RecursionError):  # malformed, or nested too deep for the parser
        body, parsed = None, False  # refused below, after the card number check
    # Looked for in the body as sent, as decoded (JSON escapes such as ``\u0034``) and as a form
    # would decode it (``+`` and ``%xx``): a number in any of them is never passed on.
    found = card_number_path(body) if parsed else None
    if found is not None or find_card_number(text) or find_card_number(unquote_plus(text)):
        # Where in the body the card number is (as the API names it), when the body parses.
        return (
            None,
            {},
            _json_error(
                400,
                "card_number_not_allowed",
                "Card numbers are never sent to this platform: use the card fields, which send them to the processor.",
                param=found[0] or None if found is not None else None,
            ),
        )
    if not parsed:
        return None, {}, _json_error(400, "invalid_json", "The body is not valid JSON.")
    if not isinstance(body, dict):
        return None, {}, _json_error(400, "invalid_json", "The body must be a JSON object.")
    try:
        session = _session(session_id)
    except Http404:
        session = None
    if session is None or not client_secret_matches(session, body.get("client_secret")):
        return (
            None,
            {},
            _json_error(404, "resource_missing", "No such checkout session (or wrong client secret)."),
        )
    return session, body, None


def _session_json(request: HttpRequest, session: CheckoutSession) -> dict[str, Any]:
    fields = card_fields()
    info: dict[str, Any] = {"kind": fields.kind if fields else None}
    if fields and fields.kind == "simulator":
        info["url"] = _origin(request) + reverse("simulator-card-fields")
    elif fields and fields.kind == "stripe":
        info["publishable_key"] = fields.publishable_key
    elif fields and fields.kind == "adyen":
        info.update(client_key=fields.client_key, environment=fields.environment)
    tenant = getattr(request, "tenant", None)
    brand = _branding(request)
    return {
        "id": session.id,
        "object": "checkout_session",
        "status": session.status,
        "mode": session.mode,
        "amount": session.amount,
        "currency": session.currency.lower(),
        "total": _money(session.amount, session.currency),
        "marketplace": {
            "name": getattr(tenant, "name", ""),
            "brand_color": brand["color"],
            "on_brand_color": brand["on_color"],  # readable text on it (one rule: tenants.branding)
        },
        "fields": info,
        "redirect": success_redirect(session) if session.status == CheckoutSession.Status.COMPLETE else None,
    }


def _no_unknown(body: dict, allowed: set[str]) -> HttpResponse | None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        return _json_error(400, "parameter_unknown", f"Received unknown parameter: {unknown[0]}.", unknown[0])
    return None


def client_secret_view(
    view: Callable[[HttpRequest, CheckoutSession, dict], HttpResponse],
) -> Callable[[HttpRequest, str], HttpResponse]:
    """A JSON endpoint of the page and the element: answers the CORS preflight, authenticates the
    session by the client secret in the body (never by cookies, so no CSRF token), and calls
    ``view(request, session, body)``."""

    @csrf_exempt
    @functools.wraps(view)
    def endpoint(request: HttpRequest, session_id: str) -> HttpResponse:
        if request.method == "OPTIONS":
            return _cors(HttpResponse(status=204))
        session, body, error = _authenticated(request, session_id)
        if error is not None or session is None:
            return error or _json_error(404, "resource_missing", "No such checkout session.")
        return view(request, session, body)

    return endpoint


@client_secret_view
def session_info(request: HttpRequest, session: CheckoutSession, body: dict) -> HttpResponse:
    return _cors(JsonResponse(_session_json(request, session)))


@client_secret_view
def session_confirm(request: HttpRequest, session: CheckoutSession, body: dict) -> HttpResponse:
    refused = _no_unknown(body, {"client_secret", "token"})
    if refused is not None:
        return refused
    token = body.get("token")
    if not isinstance(token, str) or not token.strip() or len(token) > 5000:
        return _json_error(400, "parameter_missing", "token is required: the card fields' answer.", "token")
    try:
        result = checkout_session_confirm(
            session_id=session.id, token=token, return_url=return_url(request, session.id)
        )
    except CheckoutError as exc:
        status = 409 if exc.param is None else 400
        return _json_error(status, exc.code, str(exc), exc.param)
    return _result(result)


@client_secret_view
def session_status(request: HttpRequest, session: CheckoutSession, body: dict) -> HttpResponse:
    """What the page polls while a payment is processing."""
    if session.status == CheckoutSession.Status.COMPLETE:
        return _result(CheckoutResult("complete", session, redirect=success_redirect(session)))
    if session.status == CheckoutSession.Status.EXPIRED:
        return _result(CheckoutResult("expired", session, message="This checkout has expired."))
    return _result(CheckoutResult("open" if not session.payment_id else "processing", session))


def _result(result: CheckoutResult) -> HttpResponse:
    return _cors(JsonResponse(result.as_dict()))


# --------------------------------------------------------------------------- the element


def checkout_js(request: HttpRequest) -> HttpResponse:
    """The embeddable element: plain JavaScript, no build step."""
    response = HttpResponse(ELEMENT_JS.read_bytes(), content_type="application/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=300"
    response["Access-Control-Allow-Origin"] = "*"
    return response
