from __future__ import annotations

import re
import secrets

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from apps.core.admin_mixins import FORM_VIEWS, CardNumberFormAdminMixin
from apps.core.pan import find_card_number
from config.logging import request_id_var

_VALID = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")


class RequestIdMiddleware:
    """Give every request an id (honouring a sane incoming ``X-Request-Id``), put it on every
    log line through a context variable, and return it as ``Request-Id``. An incoming id that
    looks like a card number is not sane: it would be logged."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-Id", "")
        sane = _VALID.match(incoming) and not find_card_number(incoming)
        request_id = incoming if sane else "req_" + secrets.token_hex(12)
        request.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["Request-Id"] = request_id
        return response


# The API answers for itself (apps.api.middleware); processors' webhooks are signed raw bodies
# from Stripe or Adyen, which send a card's last four digits at most.
# JSON endpoints, which refuse card numbers themselves with a JSON error (the API's middleware,
# the processors' webhooks, the checkout's client-secret endpoints).
_NOT_FORMS = ("/api/", "/webhooks/", "/checkout/")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# The one exemption: the simulator's card fields, which play a processor's hosted fields in the
# demo (apps/payments/gateways/simulator/card_fields.py: test numbers only, never stored or
# logged), and only while SIMULATOR_CARD_FIELDS is on. Exactly this path, nothing under it.
SIMULATOR_CARD_FIELDS_PATH = "/simulator/card-fields"


def card_numbers_allowed(request: HttpRequest) -> bool:
    """Whether this request may carry a card number: the simulator's card fields only."""
    return bool(settings.SIMULATOR_CARD_FIELDS) and request.path_info == SIMULATOR_CARD_FIELDS_PATH


class CardNumberFormMiddleware:
    """Every POSTed form outside the API (the admin on every host, vendor onboarding, billing
    pages): a field holding a card number (``apps.core.pan``) is refused before the view runs, so
    nothing of it is stored, logged, emailed or sent. A view whose forms refuse card numbers
    themselves (``apps.core.forms``: the admin's add and change views, vendor onboarding) shows
    the form again with the error on the field; for those only a card number in a field's or a
    file's name, which no form shows, is refused here. Anything else gets an error page (400)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        if (
            request.method != "POST"
            or request.content_type not in _FORM_TYPES
            or request.path_info.startswith(_NOT_FORMS)
            or card_numbers_allowed(request)
        ):
            return None
        field = card_number_field(request, values=not refused_by_forms(view_func))
        if field is None:
            return None
        html = render_to_string("errors/card_number_refused.html", {"field_label": field}, request=request)
        return HttpResponse(html, status=400)


def refused_by_forms(view_func) -> bool:
    """Whether ``view_func``'s forms refuse card numbers as field errors themselves."""
    if getattr(view_func, "card_numbers_refused_by_forms", False):
        return True
    model_admin = getattr(view_func, "model_admin", None)  # the admin's views (ModelAdmin.get_urls)
    return isinstance(model_admin, CardNumberFormAdminMixin) and view_func.__name__ in FORM_VIEWS


def card_number_field(request: HttpRequest, *, values: bool = True) -> str | None:
    """How to name the first posted field holding a card number (never its value), or None; with
    ``values`` false, only the fields' and files' names are looked at."""
    for name, posted in request.POST.lists():
        if find_card_number(name):
            return "A field's name"
        if "password" in name or not values:
            continue  # only ever hashed, never shown or logged: refusing one could lock a user out
        if any(find_card_number(value) for value in posted):
            return f"The field “{name.replace('_', ' ').capitalize()}”"  # as forms label it
    for name, files in request.FILES.lists():
        if any(find_card_number(f.name or "") for f in files):
            return f"The name of the file in “{name}”"
    return None
