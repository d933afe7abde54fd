"""Vendor pages on the marketplace's domain: onboarding (invite → business details → Stripe's
hosted form or the simulated step → status) and the dashboard behind a magic-link sign-in.

Each view parses input, calls one step of ``onboarding`` / ``auth`` / ``dashboard`` and renders.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.forms import CardNumberRefusingFormMixin, card_numbers_refused_by_forms
from apps.payments.gateways.connect import ConnectError
from apps.tenants.branding import marketplace_brand
from apps.vendors import auth, onboarding
from apps.vendors.dashboard import vendor_dashboard
from apps.vendors.models import Vendor
from apps.vendors.selectors import vendor_business_details
from apps.vendors.services import VendorError, vendor_business_details_record, vendor_invite_redeem

log = logging.getLogger(__name__)

# Countries where Stripe offers Express accounts (docs.stripe.com/connect/express-accounts).
COUNTRIES = {
    "AT": "Austria",
    "AU": "Australia",
    "BE": "Belgium",
    "BG": "Bulgaria",
    "BR": "Brazil",
    "CA": "Canada",
    "CH": "Switzerland",
    "CY": "Cyprus",
    "CZ": "Czech Republic",
    "DE": "Germany",
    "DK": "Denmark",
    "EE": "Estonia",
    "ES": "Spain",
    "FI": "Finland",
    "FR": "France",
    "GB": "United Kingdom",
    "GR": "Greece",
    "HK": "Hong Kong",
    "HR": "Croatia",
    "HU": "Hungary",
    "IE": "Ireland",
    "IT": "Italy",
    "JP": "Japan",
    "LI": "Liechtenstein",
    "LT": "Lithuania",
    "LU": "Luxembourg",
    "LV": "Latvia",
    "MT": "Malta",
    "MX": "Mexico",
    "NL": "Netherlands",
    "NO": "Norway",
    "NZ": "New Zealand",
    "PL": "Poland",
    "PT": "Portugal",
    "RO": "Romania",
    "SE": "Sweden",
    "SG": "Singapore",
    "SI": "Slovenia",
    "SK": "Slovakia",
    "TH": "Thailand",
    "US": "United States",
}
COUNTRY_CHOICES: list[tuple[str, str]] = sorted(COUNTRIES.items(), key=lambda item: item[1])


# --------------------------------------------------------------------------- page helpers


def brand(request: HttpRequest) -> dict[str, Any]:
    """The marketplace's name and colours for the templates (``apps.tenants.branding``)."""
    return marketplace_brand(getattr(request, "tenant", None))


def page(
    request: HttpRequest, template: str, context: dict | None = None, *, status: int = 200
) -> HttpResponse:
    context = {"brand": brand(request), "signed_in": auth.session_vendor(request), **(context or {})}
    response = render(request, template, context, status=status)
    response["Cache-Control"] = "no-store"  # pages hold balances and single-use links
    # Tokens in our URLs never leak to Stripe; same-origin (not no-referrer) keeps the Origin header
    # of our own form posts, which the CSRF check needs.
    response["Referrer-Policy"] = "same-origin"
    return response


def invalid_link(request: HttpRequest, *, kind: str, status: int) -> HttpResponse:
    return page(request, "vendors/link_invalid.html", {"kind": kind}, status=status)


def stripe_failed(request: HttpRequest, exc: ConnectError) -> HttpResponse:
    """A page with a retry button. Status 200, not 502: Django does not save the session of a
    5xx response, and the retry needs the vendor signed in a moment ago."""
    log.warning("vendor onboarding: %s", exc.message)
    return page(request, "vendors/stripe_error.html", {"message": exc.message})


def base_url(request: HttpRequest) -> str:
    return f"{request.scheme}://{request.get_host()}"


class BusinessDetailsForm(CardNumberRefusingFormMixin, forms.Form):
    business_name = forms.CharField(max_length=200, label="Business name")
    business_type = forms.ChoiceField(
        choices=[("individual", "Individual or sole trader"), ("company", "Company")],
        widget=forms.RadioSelect,
        initial="individual",
        label="Business type",
    )
    country = forms.ChoiceField(choices=COUNTRY_CHOICES, label="Country")
    support_email = forms.EmailField(required=False, label="Support email (optional)")
    support_phone = forms.CharField(max_length=40, required=False, label="Support phone (optional)")

    def clean_support_phone(self) -> str:
        phone = self.cleaned_data["support_phone"].strip()
        if phone and not re.fullmatch(r"\+?[0-9 ().-]{5,40}", phone):
            raise forms.ValidationError("Enter a phone number of digits, spaces and + ( ) - only.")
        return phone


def business_form(vendor: Vendor, data: Any = None) -> BusinessDetailsForm:
    form = BusinessDetailsForm(data, initial=vendor_business_details(vendor))
    if vendor.country and vendor.country not in COUNTRIES:
        choices = list(form.fields["country"].choices)  # type: ignore[attr-defined]
        form.fields["country"].choices = [(vendor.country, vendor.country), *choices]  # type: ignore[attr-defined]
    return form


def _next_step(request: HttpRequest, vendor: Vendor) -> HttpResponse:
    try:
        step = onboarding.onboarding_start(vendor=vendor, base_url=base_url(request))
    except ConnectError as exc:
        return stripe_failed(request, exc)
    if step.simulated:
        return redirect("vendors:onboarding_simulated")
    return HttpResponseRedirect(step.url or reverse("vendors:onboarding_status"))


# --------------------------------------------------------------------------- onboarding


@card_numbers_refused_by_forms
@never_cache
@require_http_methods(["GET", "POST"])
def invite(request: HttpRequest, token: str) -> HttpResponse:
    """GET: the landing page and form (the invite stays unused). POST: the invite is used up and
    the vendor goes on to Stripe (or the simulated step)."""
    vendor = onboarding.invite_vendor(token=token)
    if vendor is None:
        return invalid_link(request, kind="invite", status=410)
    form = business_form(vendor, request.POST if request.method == "POST" else None)
    if request.method == "GET" or not form.is_valid():
        context = {"vendor": vendor, "form": form, "stripe": onboarding.connect_client() is not None}
        return page(request, "vendors/invite.html", context, status=200 if request.method == "GET" else 400)
    try:
        vendor = vendor_invite_redeem(token=token)
    except VendorError:
        return invalid_link(request, kind="invite", status=410)
    vendor = vendor_business_details_record(
        vendor=vendor,
        business_name=form.cleaned_data["business_name"],
        business_type=form.cleaned_data["business_type"],
        country=form.cleaned_data["country"],
        support_email=form.cleaned_data["support_email"],
        support_phone=form.cleaned_data["support_phone"],
    )
    # The invite came to the vendor's mailbox: as good a proof as a magic link.
    auth.session_login(request, vendor)
    return _next_step(request, vendor)


@never_cache
@require_POST
def onboarding_continue(request: HttpRequest) -> HttpResponse:
    """Go on (again) to Stripe's form: after a Stripe failure, or to finish a restricted account."""
    vendor = auth.session_vendor(request)
    if vendor is None:
        return redirect("vendors:login")
    return _next_step(request, vendor)


@never_cache
@require_http_methods(["GET", "POST"])
def onboarding_simulated(request: HttpRequest) -> HttpResponse:
    """The stand-in for Stripe's hosted form where Stripe is not configured."""
    vendor = auth.session_vendor(request)
    if vendor is None:
        return redirect("vendors:login")
    if not onboarding.is_simulated(vendor):
        return redirect("vendors:onboarding_status")
    if request.method == "POST":
        try:
            onboarding.simulated_onboarding_complete(vendor=vendor)
        except VendorError as exc:
            return page(request, "vendors/stripe_error.html", {"message": exc.message}, status=409)
        return redirect("vendors:onboarding_status")
    return page(request, "vendors/simulated.html", {"vendor": vendor})


@never_cache
def onboarding_refresh(request: HttpRequest, token: str) -> HttpResponse:
    """Stripe's refresh_url: the Account Link expired or was used; make a new one and go."""
    vendor = onboarding.refresh_link_vendor(token)
    if vendor is None:
        return invalid_link(request, kind="onboarding", status=404)
    return _next_step(request, vendor)


def _status_page(request: HttpRequest, vendor: Vendor, token: str | None) -> HttpResponse:
    try:
        state = onboarding.onboarding_status_refresh(vendor=vendor)
    except ConnectError as exc:
        return stripe_failed(request, exc)
    continue_url = reverse("vendors:onboarding_refresh", args=[token or onboarding.link_token(vendor)])
    return page(request, "vendors/status.html", {"state": state, "continue_url": continue_url})


@never_cache
def onboarding_return(request: HttpRequest, token: str) -> HttpResponse:
    """Stripe's return_url: the vendor left Stripe's form; show what Stripe really says now."""
    vendor = onboarding.link_vendor(token)
    if vendor is None:
        return invalid_link(request, kind="onboarding", status=404)
    return _status_page(request, vendor, token)


@never_cache
def onboarding_status(request: HttpRequest) -> HttpResponse:
    vendor = auth.session_vendor(request)
    if vendor is None:
        return redirect("vendors:login")
    return _status_page(request, vendor, None)


# --------------------------------------------------------------------------- sign-in and dashboard


class LoginForm(forms.Form):
    email = forms.EmailField(label="Email address")


@never_cache
@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    """Ask for a sign-in link; the answer is the same whether the address is a vendor's or not."""
    form = LoginForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        auth.vendor_login_request(email=form.cleaned_data["email"], request_host=request.get_host())
        return page(request, "vendors/login_sent.html", {"email": form.cleaned_data["email"]})
    return page(request, "vendors/login.html", {"form": form}, status=400 if form.errors else 200)


@never_cache
@require_http_methods(["GET", "POST"])
def login_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """GET: a button to sign in (the link stays unused: mail scanners open links). POST: the link
    is used up and the vendor is signed in."""
    if request.method == "GET":
        vendor = auth.vendor_login_token_check(token=token)
        if vendor is None:
            return invalid_link(request, kind="login", status=410)
        return page(request, "vendors/login_confirm.html", {"vendor": vendor})
    try:
        vendor = auth.vendor_login_redeem(token=token)
    except VendorError:
        return invalid_link(request, kind="login", status=410)
    auth.session_login(request, vendor)
    return redirect("vendors:dashboard")


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    auth.session_logout(request)
    return redirect("vendors:login")


@never_cache
def dashboard(request: HttpRequest) -> HttpResponse:
    vendor = auth.session_vendor(request)
    if vendor is None:
        return redirect("vendors:login")
    return page(
        request,
        "vendors/dashboard.html",
        {"board": vendor_dashboard(vendor=vendor), "simulated": onboarding.is_simulated(vendor)},
    )


@require_POST
def express_dashboard(request: HttpRequest) -> HttpResponse:
    """A fresh single-use login link into the vendor's Stripe Express dashboard."""
    vendor = auth.session_vendor(request)
    if vendor is None:
        return redirect("vendors:login")
    try:
        url = onboarding.express_dashboard_url(vendor=vendor)
    except ConnectError as exc:
        return stripe_failed(request, exc)
    if url is None:
        return redirect("vendors:dashboard")
    return HttpResponseRedirect(url)
