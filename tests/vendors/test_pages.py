"""Vendor pages through Django's test client on alpha.localhost: invite → business details →
Stripe (answered at the HTTP layer by ``responses`` with Stripe's example objects) or the
simulated step → status; magic-link sign-in and the dashboard."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
import time_machine
from django.core import mail
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from apps.payments.models import GatewayAccount
from apps.vendors.models import Vendor, VendorInvite, VendorLoginToken
from apps.vendors.onboarding import link_token, link_vendor, vendor_invite_send
from apps.vendors.services import vendor_create

FIXTURES = Path(__file__).parent / "fixtures"
API = "http://stripe.test"
ACCOUNT = "acct_1PgafTB7WZ01zgkW"
LINK_URL = "https://connect.stripe.com/setup/s/acct_1PgafTB7WZ01zgkW/MerI6itPZo2K"
HOST = "alpha.localhost"


def fixture(name: str, **changes: Any) -> dict[str, Any]:
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    data.update(copy.deepcopy(changes))
    return data


def account_json(**fields: Any) -> dict[str, Any]:
    data = fixture("account", type="express")
    requirements = fields.pop("requirements", None)
    data.update(fields)
    if requirements is not None:
        data["requirements"] = {**data["requirements"], **requirements}
    return data


ENABLED = {
    "details_submitted": True,
    "charges_enabled": True,
    "payouts_enabled": True,
    "requirements": {"currently_due": [], "past_due": [], "eventually_due": [], "disabled_reason": None},
}
PENDING_VERIFICATION = {
    "details_submitted": True,
    "charges_enabled": False,
    "payouts_enabled": False,
    "requirements": {
        "currently_due": [],
        "past_due": [],
        "disabled_reason": "requirements.pending_verification",
    },
}
RESTRICTED = {
    "details_submitted": True,
    "charges_enabled": False,
    "payouts_enabled": False,
    "requirements": {
        "currently_due": ["external_account", "individual.verification.document"],
        "past_due": ["external_account"],
        "disabled_reason": "requirements.past_due",
    },
}


def form(call: Any) -> dict[str, list[str]]:
    body = call.request.body
    return parse_qs(body.decode() if isinstance(body, bytes) else (body or ""))


def path_of(url: str) -> str:
    return urlsplit(url).path


def text(response: Any) -> str:
    return " ".join(response.content.decode().split())


@pytest.fixture
def alpha(in_tenant_a):
    return in_tenant_a


@pytest.fixture
def web() -> Client:
    return Client(HTTP_HOST=HOST)


@pytest.fixture
def vendor(alpha) -> Vendor:
    return vendor_create(
        email="shop@example.com", name="Jane's Pottery", country="US", default_currency="usd"
    )


@pytest.fixture
def stripe_gateway(alpha) -> GatewayAccount:
    gateway = GatewayAccount(name="stripe_connect", kind="stripe", settings={"api_base": API})
    gateway.credentials = {"secret_key": "sk_test_platform_123"}
    gateway.save()
    return gateway


@pytest.fixture
def stripe_api() -> Iterator[responses.RequestsMock]:
    # No registered call in a test means no request may reach "Stripe" at all.
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def invite_path(vendor: Vendor) -> str:
    with tenant_context(vendor_tenant()):
        return path_of(vendor_invite_send(vendor=vendor))


def vendor_tenant() -> Any:
    from apps.tenants.models import Marketplace

    return Marketplace.objects.get(schema_name="alpha")


def details(**changes: str) -> dict[str, str]:
    return {
        "business_name": "Jane's Pottery LLC",
        "business_type": "company",
        "country": "US",
        "support_email": "help@janes.example",
        "support_phone": "+1 555 0100",
        **changes,
    }


def reloaded(vendor: Vendor) -> Vendor:
    with tenant_context(vendor_tenant()):
        return Vendor.objects.get(pk=vendor.pk)


def apply_account(vendor: Vendor, **fields: Any) -> Vendor:
    from apps.payments.gateways.stripe.connect import account_from_stripe
    from apps.vendors.services import vendor_account_apply

    with tenant_context(vendor_tenant()):
        return vendor_account_apply(vendor=vendor, account=account_from_stripe(account_json(**fields)))


# --------------------------------------------------------------------------- invite and landing page


def test_the_invite_email_links_to_the_marketplace_landing_page(vendor, web):
    # when an operator sends the invite
    url = vendor_invite_send(vendor=vendor)

    # then one email went to the vendor, naming the marketplace, with the link on its primary domain
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["shop@example.com"]
    assert message.subject == "Alpha Market: set up your payouts"
    assert url in message.body
    assert re.fullmatch(r"https://alpha\.localhost/vendors/invite/vinv_[A-Za-z0-9_-]{43}", url)

    # and the landing page shows the form, in the marketplace's name and colour, without using the invite
    response = web.get(path_of(url))
    assert response.status_code == 200
    page = text(response)
    assert "Welcome, Jane&#x27;s Pottery" in page
    assert "Alpha Market" in page
    assert "--brand: #4f46e5" in page
    assert 'name="csrfmiddlewaretoken"' in page
    assert "Simulated" not in page or "Stripe is not configured" in page
    with tenant_context(vendor_tenant()):
        assert VendorInvite.objects.get(vendor=vendor).used_at is None


def test_the_invite_link_keeps_the_request_port_in_debug(vendor, settings):
    settings.DEBUG = True
    settings.PORT = 8000
    assert vendor_invite_send(vendor=vendor).startswith("http://alpha.localhost:8000/vendors/invite/")
    assert vendor_invite_send(vendor=vendor, request_host="alpha.localhost:5123").startswith(
        "http://alpha.localhost:5123/vendors/invite/"
    )


def test_the_form_creates_the_connect_account_and_sends_the_vendor_to_stripe(
    vendor, stripe_gateway, stripe_api, web
):
    # given Stripe answers the account and the Account Link with its example objects
    created = stripe_api.post(f"{API}/v1/accounts", json=account_json(metadata={"vendor_id": vendor.id}))
    linked = stripe_api.post(f"{API}/v1/account_links", json=fixture("account_link", url=LINK_URL))
    path = invite_path(vendor)

    # when the vendor submits the business details
    response = web.post(path, details())

    # then the vendor is sent to Stripe's hosted onboarding
    assert response.status_code == 302
    assert response["Location"] == LINK_URL
    sent = form(created.calls[0])
    assert sent["type"] == ["express"]
    assert sent["country"] == ["US"]
    assert sent["email"] == ["shop@example.com"]
    assert sent["business_type"] == ["company"]
    assert sent["metadata[vendor_id]"] == [vendor.id]
    assert sent["metadata[business_name]"] == ["Jane's Pottery LLC"]
    assert sent["metadata[support_phone]"] == ["+1 555 0100"]
    assert created.calls[0].request.headers["Idempotency-Key"] == f"account:{vendor.id}"
    link = form(linked.calls[0])
    assert link["account"] == [ACCOUNT]
    assert link["type"] == ["account_onboarding"]
    # signed links for this vendor (the signature's timestamp is the request's second)
    refresh = link["refresh_url"][0].removeprefix("http://alpha.localhost/vendors/onboarding/refresh/")
    back = link["return_url"][0].removeprefix("http://alpha.localhost/vendors/onboarding/return/")
    with tenant_context(vendor_tenant()):
        assert refresh == back and link_vendor(refresh) == vendor
    # and the account is recorded through vendor_account_apply, the invite used up
    after = reloaded(vendor)
    assert (after.stripe_account_id, after.status) == (ACCOUNT, "onboarding")
    assert after.metadata["business"] == {
        "name": "Jane's Pottery LLC",
        "type": "company",
        "support_email": "help@janes.example",
        "support_phone": "+1 555 0100",
    }
    with tenant_context(vendor_tenant()):
        assert VendorInvite.objects.get(vendor=vendor).used_at is not None


def test_onboarding_asks_stripe_with_no_transaction_open(vendor, stripe_gateway, stripe_api, web):
    from django.db import connection

    baseline = len(connection.atomic_blocks)  # the test's own transaction
    depths: list[tuple[str, int]] = []

    def answer(name: str, body: dict[str, Any]):
        def callback(request: Any) -> tuple[int, dict, str]:
            depths.append((name, len(connection.atomic_blocks) - baseline))
            return 200, {}, json.dumps(body)

        return callback

    account = account_json(metadata={"vendor_id": vendor.id})
    stripe_api.add_callback(responses.POST, f"{API}/v1/accounts", answer("account_create", account))
    stripe_api.add_callback(
        responses.POST, f"{API}/v1/account_links", answer("account_link_create", fixture("account_link"))
    )
    stripe_api.add_callback(
        responses.GET, f"{API}/v1/accounts/{ACCOUNT}", answer("account_retrieve", account)
    )

    assert web.post(invite_path(vendor), details()).status_code == 302
    assert web.get("/vendors/onboarding/status").status_code == 200

    assert depths == [("account_create", 0), ("account_link_create", 0), ("account_retrieve", 0)]


def test_a_form_with_errors_shows_them_and_keeps_the_invite(vendor, stripe_gateway, stripe_api, web):
    path = invite_path(vendor)

    response = web.post(path, details(business_name=" ", support_phone="call me"))

    assert response.status_code == 400
    page = text(response)
    assert "This field is required." in page
    assert "Enter a phone number" in page
    with tenant_context(vendor_tenant()):
        assert VendorInvite.objects.get(vendor=vendor).used_at is None
    assert reloaded(vendor).status == "invited"


def test_a_stripe_failure_keeps_the_details_and_offers_a_retry(vendor, stripe_gateway, stripe_api, web):
    stripe_api.post(
        f"{API}/v1/accounts",
        status=500,
        json={"error": {"type": "api_error", "message": "An unknown error occurred"}},
    )
    response = web.post(invite_path(vendor), details())
    assert response.status_code == 200  # not 5xx: the session must be saved for the retry
    assert "We couldn't reach our payments partner" in text(response)
    assert "Try again" in text(response)
    assert reloaded(vendor).metadata["business"]["name"] == "Jane's Pottery LLC"

    # when the vendor tries again and Stripe answers
    stripe_api.replace(responses.POST, f"{API}/v1/accounts", json=account_json())
    stripe_api.post(f"{API}/v1/account_links", json=fixture("account_link", url=LINK_URL))
    retry = web.post("/vendors/onboarding/continue")
    assert (retry.status_code, retry["Location"]) == (302, LINK_URL)
    assert reloaded(vendor).stripe_account_id == ACCOUNT


# --------------------------------------------------------------------------- refresh and return


def test_the_refresh_url_makes_a_new_account_link(vendor, stripe_gateway, stripe_api, web):
    # given a vendor whose Account Link expired
    apply_account(vendor)
    new_link = LINK_URL.replace("MerI6itPZo2K", "N3wL1nk")
    linked = stripe_api.post(f"{API}/v1/account_links", json=fixture("account_link", url=new_link))
    with tenant_context(vendor_tenant()):
        token = link_token(vendor)

    # when Stripe sends the vendor to our refresh URL
    response = web.get(f"/vendors/onboarding/refresh/{token}")

    # then a new link is made and the vendor goes straight back to Stripe
    assert (response.status_code, response["Location"]) == (302, new_link)
    assert form(linked.calls[0])["account"] == [ACCOUNT]


@pytest.mark.parametrize(
    "token",
    ["nonsense", "ven_x:1tNope:forged"],
)
def test_a_forged_onboarding_url_is_refused_without_calling_stripe(
    vendor, stripe_gateway, stripe_api, web, token
):
    apply_account(vendor)
    for kind in ("refresh", "return"):
        response = web.get(f"/vendors/onboarding/{kind}/{token}")
        assert response.status_code == 404
        assert "This onboarding link has expired" in text(response)


def test_an_onboarding_url_expires(vendor, stripe_gateway, stripe_api, web):
    apply_account(vendor)
    with tenant_context(vendor_tenant()):
        token = link_token(vendor)
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        assert web.get(f"/vendors/onboarding/refresh/{token}").status_code == 404


def test_an_onboarding_url_of_one_marketplace_is_refused_on_another(vendor, stripe_gateway, stripe_api):
    apply_account(vendor)
    with tenant_context(vendor_tenant()):
        token = link_token(vendor)
    response = Client(HTTP_HOST="beta.localhost").get(f"/vendors/onboarding/return/{token}")
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("account", "status", "words"),
    [
        (ENABLED, "active", ["You're all set: payouts are enabled"]),
        (PENDING_VERIFICATION, "onboarding", ["Pending verification", "Stripe is verifying them"]),
        (
            RESTRICTED,
            "restricted",
            [
                "Restricted: more information needed",
                "<li>A bank account for payouts (past due)</li>",
                "<li>An identity document</li>",
                "<li>Disabled: required information is past due</li>",
                "Continue onboarding",
            ],
        ),
    ],
    ids=["enabled", "pending_verification", "restricted"],
)
def test_the_return_page_shows_the_real_status(
    vendor, stripe_gateway, stripe_api, web, account, status, words
):
    # given the vendor came back from Stripe, which now says `account`
    apply_account(vendor)
    stripe_api.get(f"{API}/v1/accounts/{ACCOUNT}", json=account_json(**account))
    with tenant_context(vendor_tenant()):
        token = link_token(vendor)

    # when the return page loads
    response = web.get(f"/vendors/onboarding/return/{token}")

    # then it shows what Stripe said, and recorded it
    assert response.status_code == 200
    page = text(response)
    for expected in words:
        assert expected in page
    assert reloaded(vendor).status == status
    if status == "restricted":
        assert f"/vendors/onboarding/refresh/{token}" in page


def test_the_return_page_of_a_vendor_that_left_early_offers_to_continue(
    vendor, stripe_gateway, stripe_api, web
):
    apply_account(vendor)
    stripe_api.get(f"{API}/v1/accounts/{ACCOUNT}", json=account_json())  # details not submitted
    with tenant_context(vendor_tenant()):
        token = link_token(vendor)
    page = text(web.get(f"/vendors/onboarding/return/{token}"))
    assert "Onboarding not finished" in page
    assert "A bank account for payouts" in page
    assert reloaded(vendor).status == "onboarding"


# --------------------------------------------------------------------------- simulated onboarding


def test_without_stripe_the_onboarding_is_simulated_and_says_so(vendor, stripe_api, web):
    # given a marketplace without a Stripe gateway (stripe_api: nothing may be called)
    path = invite_path(vendor)
    assert "Stripe is not configured for this marketplace" in text(web.get(path))

    # when the vendor submits the form
    response = web.post(path, details(business_type="individual"))

    # then the simulated step stands in for Stripe's form
    assert (response.status_code, response["Location"]) == (302, "/vendors/onboarding/simulated")
    simulated_id = "acct_sim_" + vendor.id.removeprefix("ven_")
    assert (reloaded(vendor).stripe_account_id, reloaded(vendor).status) == (simulated_id, "onboarding")
    page = text(web.get("/vendors/onboarding/simulated"))
    assert "Simulated onboarding: Stripe is not configured for this marketplace" in page
    assert "Complete simulated verification" in page

    # when the vendor completes it
    done = web.post("/vendors/onboarding/simulated")
    assert (done.status_code, done["Location"]) == (302, "/vendors/onboarding/status")
    after = reloaded(vendor)
    assert (after.status, after.charges_enabled, after.payouts_enabled) == ("active", True, True)
    assert after.requirements == {"currently_due": [], "past_due": [], "disabled_reason": None}
    page = text(web.get("/vendors/onboarding/status"))
    assert "payouts are enabled" in page
    assert "This account is simulated" in page


def test_the_simulated_step_needs_the_vendor_session(vendor, web):
    response = web.get("/vendors/onboarding/simulated")
    assert (response.status_code, response["Location"]) == (302, "/vendors/login")


# --------------------------------------------------------------------------- bad invites


def test_an_expired_invite_shows_a_clear_page_and_creates_nothing(vendor, stripe_gateway, stripe_api, web):
    # given an invite past its expiry (stripe_api: no call may reach Stripe)
    path = invite_path(vendor)
    with tenant_context(vendor_tenant()):
        VendorInvite.objects.filter(vendor=vendor).update(expires_at=timezone.now() - timedelta(seconds=1))
    before = reloaded(vendor)

    # when the vendor opens it and even posts the form
    shown = web.get(path)
    posted = web.post(path, details())

    # then both say so, and nothing changed
    for response in (shown, posted):
        assert response.status_code == 410
        assert "This invite link can" in text(response)
        assert "Nothing was created or changed" in text(response)
    after = reloaded(vendor)
    assert (after.status, after.stripe_account_id, after.metadata, after.updated_at) == (
        before.status,
        "",
        {},
        before.updated_at,
    )


def test_a_reused_invite_shows_a_clear_page_and_creates_nothing(vendor, web):
    path = invite_path(vendor)
    assert web.post(path, details()).status_code == 302
    first = reloaded(vendor)

    for response in (
        Client(HTTP_HOST=HOST).get(path),
        Client(HTTP_HOST=HOST).post(path, details(business_name="X")),
    ):
        assert response.status_code == 410
        assert "This invite link can" in text(response)
    after = reloaded(vendor)
    assert (after.stripe_account_id, after.metadata, after.updated_at) == (
        first.stripe_account_id,
        first.metadata,
        first.updated_at,
    )


def test_an_unknown_invite_shows_the_same_page(alpha, web):
    response = web.get("/vendors/invite/vinv_unknown")
    assert response.status_code == 410
    assert "This invite link can" in text(response)


# --------------------------------------------------------------------------- magic-link sign-in


def login_link(web: Client, email: str) -> str | None:
    mail.outbox.clear()
    response = web.post("/vendors/login", {"email": email})
    assert response.status_code == 200
    assert "If " in text(response) and "belongs to a vendor of Alpha Market" in text(response)
    if not mail.outbox:
        return None
    match = re.search(r"https?://\S+/vendors/login/\S+", str(mail.outbox[0].body))
    assert match is not None
    return path_of(match.group(0))


def test_a_magic_link_signs_the_vendor_in_once(vendor, web):
    # when the vendor asks for a link (the address in another case)
    path = login_link(web, "Shop@Example.com")

    # then an email holds a single-use link; opening it asks to confirm, posting signs in
    assert path is not None
    assert mail.outbox[0].subject == "Alpha Market: your sign-in link"
    assert "expires in 15 minutes" in mail.outbox[0].body
    assert web.get("/vendors/dashboard")["Location"] == "/vendors/login"
    assert "Sign in as Jane&#x27;s Pottery" in text(web.get(path))
    signed_in = web.post(path)
    assert (signed_in.status_code, signed_in["Location"]) == (302, "/vendors/dashboard")
    assert web.get("/vendors/dashboard").status_code == 200
    # and the link is used up
    again = Client(HTTP_HOST=HOST)
    assert again.get(path).status_code == 410
    assert again.post(path).status_code == 410
    # and signing out ends the session
    web.post("/vendors/logout")
    assert web.get("/vendors/dashboard")["Location"] == "/vendors/login"


def test_an_unknown_address_gets_the_same_answer_and_no_email(vendor, web):
    known = text(web.post("/vendors/login", {"email": "shop@example.com"}))
    mail.outbox.clear()
    unknown = text(web.post("/vendors/login", {"email": "nobody@example.com"}))
    assert unknown == known.replace("shop@example.com", "nobody@example.com")
    assert mail.outbox == []


def test_a_magic_link_expires_after_15_minutes(vendor, web):
    path = login_link(web, "shop@example.com")
    assert path is not None
    with time_machine.travel(timezone.now() + timedelta(minutes=15, seconds=1)):
        assert web.get(path).status_code == 410
        response = web.post(path)
    assert response.status_code == 410
    assert "This sign-in link can" in text(response)
    with tenant_context(vendor_tenant()):
        assert VendorLoginToken.objects.get(vendor=vendor).used_at is None


def test_a_vendor_of_alpha_cannot_sign_in_on_beta(vendor, web):
    # an alpha vendor's address gets no link on beta
    beta = Client(HTTP_HOST="beta.localhost")
    beta.post("/vendors/login", {"email": "shop@example.com"})
    assert mail.outbox == []
    # an alpha link does not work on beta
    path = login_link(web, "shop@example.com")
    assert path is not None
    assert beta.get(path).status_code == 410
    assert beta.post(path).status_code == 410
    # and an alpha session is nothing on beta
    assert web.post(path).status_code == 302
    beta.cookies = web.cookies
    assert beta.get("/vendors/dashboard")["Location"] == "/vendors/login"


# --------------------------------------------------------------------------- dashboard


def post_ledger(code: str, amount: int, key: str) -> None:
    from apps.ledger.services import ledger_record

    ledger_record(
        event_type="ManualAdjustment",
        stream=f"adj_{key}",
        payload={"debit": "suspense", "credit": code, "amount": amount, "currency": "USD", "reason": "test"},
        idempotency_key=key,
    )


def signed_in(web: Client, vendor: Vendor) -> Client:
    path = login_link(web, vendor.email)
    assert path is not None
    web.post(path)
    return web


def test_the_dashboard_shows_balances_payouts_and_history(vendor, web):
    from apps.vendors.models import Payout, Transfer

    # given money at each stage, a transfer and payouts, on a simulated, enabled account
    with tenant_context(vendor_tenant()):
        from apps.vendors.onboarding import simulated_onboarding_begin, simulated_onboarding_complete

        simulated_onboarding_complete(vendor=simulated_onboarding_begin(vendor=vendor))
        Vendor.objects.filter(pk=vendor.pk).update(payout_minimum=2500, payout_schedule="weekly")
        post_ledger(f"vendor_payable:{vendor.id}", 12345, "a1")
        post_ledger(f"vendor_pending:{vendor.id}", 6789, "p1")
        post_ledger(f"vendor_held:{vendor.id}", 100, "h1")
        Transfer.objects.create(
            vendor=vendor, payment_id="pay_abc", amount=9000, currency="usd", status="paid"
        )
        Payout.objects.create(vendor=vendor, amount=5000, currency="usd", status="pending")
        Payout.objects.create(vendor=vendor, amount=4000, currency="usd", status="paid")

    # when the vendor opens the dashboard
    response = signed_in(web, vendor).get("/vendors/dashboard")

    # then it shows each balance from the ledger, the schedule, upcoming payouts and history
    assert response.status_code == 200
    page = text(response)
    assert '<div class="amount" data-balance="available">123.45 USD</div>' in page
    assert '<div class="amount" data-balance="pending">67.89 USD</div>' in page
    assert '<div class="amount" data-balance="held">1.00 USD</div>' in page
    assert (
        "Weekly payouts of your available balance, when your available balance is at least 25.00 USD." in page
    )
    assert "50.00 USD" in page  # the pending payout
    assert "40.00 USD" in page  # the paid one
    assert "90.00 USD" in page and "pay_abc" in page  # the transfer
    assert page.count("<svg") == 2  # available and pending over time
    assert "Available (USD)" in page and "Pending (USD)" in page
    assert "there is no Stripe Express dashboard" in page


def test_the_dashboard_of_a_new_vendor_shows_zeros(vendor, web):
    page = text(signed_in(web, vendor).get("/vendors/dashboard"))
    assert '<div class="amount" data-balance="available">0.00 USD</div>' in page
    assert "Payouts start once your payout account is verified." in page
    assert "Your balance history appears here after your first sale." in page


def test_the_express_dashboard_link_is_made_on_click(vendor, stripe_gateway, stripe_api, web):
    apply_account(vendor, **ENABLED)
    made = stripe_api.post(f"{API}/v1/accounts/{ACCOUNT}/login_links", json=fixture("login_link"))
    client = signed_in(web, vendor)
    assert "Open Stripe Express dashboard" in text(client.get("/vendors/dashboard"))

    response = client.post("/vendors/dashboard/stripe")

    assert (response.status_code, response["Location"]) == (302, fixture("login_link")["url"])
    assert len(made.calls) == 1


# --------------------------------------------------------------------------- admin


def test_the_admin_action_sends_an_onboarding_invite(vendor):
    operator = Client(HTTP_HOST=HOST)
    assert operator.login(username="ops@alpha.test", password="test-password-123")
    response = operator.post(
        "/admin/vendors/vendor/",
        {"action": "send_onboarding_invite", "_selected_action": [vendor.id]},
    )
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert "/vendors/invite/vinv_" in mail.outbox[0].body
    with tenant_context(vendor_tenant()):
        assert VendorInvite.objects.filter(vendor=vendor, used_at__isnull=True).count() == 1


@pytest.mark.parametrize("field", ["business_name", "support_phone", "support_email"])
@pytest.mark.parametrize("card", ["4242424242424242", "5555 5555 5555 4444", "3782-822463-10005"])
def test_a_card_number_in_the_onboarding_form_is_a_form_error_and_nothing_is_stored(vendor, web, field, card):
    response = web.post(invite_path(vendor), details(**{field: f"{card}"}))

    assert response.status_code == 400
    page = response.content.decode()
    # The form again, the error on the field, the rest as typed, the card number not echoed.
    assert "This looks like a card number: card numbers are never accepted here." in text(response)
    assert "Nothing was saved" not in page and "“business_name”" not in page
    kept = {k: v for k, v in details().items() if k != field and k not in ("business_type", "country")}
    for value in kept.values():
        assert f'value="{value}"'.replace("'", "&#x27;") in page, value
    assert 'value="company"' in page and "checked" in page
    assert "invited you to sell on its marketplace" in page  # the marketplace's page, its branding
    assert card not in page
    with tenant_context(vendor_tenant()):
        assert VendorInvite.objects.get(vendor=vendor).used_at is None
    assert reloaded(vendor).status == "invited"
    assert "business" not in reloaded(vendor).metadata
