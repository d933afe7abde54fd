"""The onboarding pages in a real Chromium (Debian's, driven by Playwright) against a real server
(gunicorn on the test database, ``tests/api/live.py``) in freshly committed marketplaces.

The server is another process, so Stripe cannot be answered with ``responses`` there: the
Stripe-backed marketplace's gateway has an ``api_base`` pointing at ``StripeStub``, a small HTTP
server in this process that answers the Connect calls with Stripe's example objects and also
plays Stripe's hosted onboarding pages (an expired link sends the browser to its refresh_url).

Screenshots are saved under tests/artifacts/screenshots/ (not committed)."""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django_tenants.utils import tenant_context

from tests.api.live import Server
from tests.browser import live_server

pytestmark = pytest.mark.slow

SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
FIXTURES = Path(__file__).parent / "fixtures"
VIEWPORTS: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 860}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
        "device_scale_factor": 2,
    },
}


# --------------------------------------------------------------------------- Stripe stub


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


class StripeStub:
    """Connect endpoints (accounts, account links) plus the hosted onboarding pages.

    ``account_state`` is what ``GET /v1/accounts/<id>`` answers (fields over the example
    account); links whose number is in ``expired`` redirect to their refresh_url, as Stripe does."""

    def __init__(self) -> None:
        self.links: list[dict[str, str]] = []
        self.expired: set[int] = set()
        self.accounts_created = 0
        self.account_state: dict[str, Any] = {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, data: dict[str, Any], status: int = 200) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _form(self) -> dict[str, str]:
                length = int(self.headers.get("Content-Length") or 0)
                fields = parse_qs(self.rfile.read(length).decode())
                return {key: values[0] for key, values in fields.items()}

            def do_POST(self) -> None:
                form = self._form()
                if self.path == "/v1/accounts":
                    stub.accounts_created += 1
                    self._json(stub.account(metadata={"vendor_id": form.get("metadata[vendor_id]", "")}))
                elif self.path == "/v1/account_links":
                    stub.links.append(form)
                    number = len(stub.links)
                    now = int(time.time())
                    link = {**_fixture("account_link"), "url": f"{stub.url}/setup/{number}"}
                    self._json({**link, "created": now, "expires_at": now + 300})
                else:
                    self._json({"error": {"type": "invalid_request_error", "message": "unknown"}}, 404)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path.startswith("/v1/accounts/"):
                    self._json(stub.account(**stub.account_state))
                elif path.startswith("/setup/"):
                    number = int(path.rsplit("/", 1)[1])
                    link = stub.links[number - 1]
                    if number in stub.expired:
                        self.send_response(302)
                        self.send_header("Location", link["refresh_url"])
                        self.end_headers()
                        return
                    html = (
                        "<!doctype html><meta name=viewport content='width=device-width'>"
                        "<title>Stripe onboarding (test stub)</title><body style='font-family:sans-serif;padding:2rem'>"
                        f"<h1>Stripe onboarding (test stub), link {number}</h1>"
                        f"<a id=finish href='{link['return_url']}'>Finish and return</a></body>"
                    ).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(html)))
                    self.end_headers()
                    self.wfile.write(html)
                else:
                    self._json({"error": {"type": "invalid_request_error", "message": "unknown"}}, 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    ACCOUNT_ID = "acct_1PgafTB7WZ01zgkW"

    def account(self, **fields: Any) -> dict[str, Any]:
        data = {**_fixture("account"), "type": "express"}
        requirements = fields.pop("requirements", None)
        data.update(copy.deepcopy(fields))
        if requirements is not None:
            data["requirements"] = {**data["requirements"], **requirements}
        return data

    def __enter__(self) -> StripeStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def stripe_stub() -> Iterator[StripeStub]:
    with StripeStub() as stub:
        yield stub


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, chromium) -> Iterator[Server]:
    env = {"EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend", "NO_PROXY": "*"}
    with live_server(django_db_blocker, env) as live:
        yield live


def marketplace(*, stripe_api_base: str | None = None) -> Any:
    """A fresh committed marketplace (call with database access unblocked), with a Stripe
    gateway on ``stripe_api_base`` when given."""
    from apps.payments.models import GatewayAccount
    from apps.tenants.services import marketplace_create

    slug = "vb" + uuid.uuid4().hex[:10]
    made = marketplace_create(
        slug=slug, name="Clay & Kiln Market", domain=f"{slug}.localhost", owner_email=f"ops@{slug}.test"
    )
    tenant = made.marketplace
    if stripe_api_base:
        with tenant_context(tenant):
            gateway = GatewayAccount(
                name="stripe_connect", kind="stripe", settings={"api_base": stripe_api_base}
            )
            gateway.credentials = {"secret_key": "sk_test_browser"}
            gateway.save()
    return tenant


def invite_url(tenant: Any, server: Server, **vendor_fields: Any) -> tuple[str, Any]:
    from apps.vendors.onboarding import vendor_invite_send
    from apps.vendors.services import vendor_create

    host = f"{tenant.schema_name}.localhost:{server.port}"
    with tenant_context(tenant):
        vendor = vendor_create(
            **{
                "email": "jane@pottery.example",
                "name": "Jane's Pottery",
                "country": "US",
                "default_currency": "usd",
                **vendor_fields,
            }
        )
        url = vendor_invite_send(vendor=vendor, request_host=host)
    return f"http://{host}{urlsplit(url).path}", vendor


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def vendor_now(tenant: Any, vendor: Any) -> Any:
    from apps.vendors.models import Vendor

    with tenant_context(tenant):
        return Vendor.objects.get(pk=vendor.pk)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_simulated_onboarding_from_invite_to_dashboard(chromium, server, committed, device):
    from apps.ledger.services import ledger_record

    # given a marketplace without Stripe and an invited vendor with some money on its way
    tenant = marketplace()
    url, vendor = invite_url(tenant, server)
    with tenant_context(tenant):
        for code, amount in ((f"vendor_payable:{vendor.id}", 15250), (f"vendor_pending:{vendor.id}", 4300)):
            ledger_record(
                event_type="ManualAdjustment",
                stream=f"adj_{code}",
                payload={
                    "debit": "suspense",
                    "credit": code,
                    "amount": amount,
                    "currency": "USD",
                    "reason": "test",
                },
                idempotency_key=f"adj:{code}",
            )
    context = chromium.new_context(**VIEWPORTS[device])
    page = context.new_page()
    try:
        # when the vendor opens the invite: the landing page and business-details form
        response = page.goto(url)
        assert response.status == 200
        assert page.get_by_role("heading", name="Welcome, Jane's Pottery").is_visible()
        assert page.get_by_text("Stripe is not configured for this marketplace").is_visible()
        shot(page, f"onboarding-1-invite-{device}")

        page.get_by_label("Business name").fill("Jane's Pottery Studio")
        page.get_by_label("Company").check()
        page.get_by_label("Support phone (optional)").fill("+1 555 0100")
        page.get_by_role("button", name="Continue").click()

        # then the simulated step says so
        page.wait_for_url("**/vendors/onboarding/simulated")
        assert page.get_by_text(
            "Simulated onboarding: Stripe is not configured for this marketplace"
        ).is_visible()
        shot(page, f"onboarding-2-simulated-{device}")
        page.get_by_role("button", name="Complete simulated verification").click()

        # and the status page shows the account enabled
        page.wait_for_url("**/vendors/onboarding/status")
        assert page.get_by_role("heading", name="You're all set: payouts are enabled").is_visible()
        shot(page, f"onboarding-3-enabled-{device}")

        # and the dashboard shows the ledger's balances and the chart
        page.get_by_role("link", name="Go to your dashboard").click()
        page.wait_for_url("**/vendors/dashboard")
        assert page.locator("[data-balance=available]").inner_text() == "152.50 USD"
        assert page.locator("[data-balance=pending]").inner_text() == "43.00 USD"
        assert page.locator(".chart svg").count() == 2
        shot(page, f"dashboard-{device}")
    finally:
        context.close()
    after = vendor_now(tenant, vendor)
    assert (after.status, after.stripe_account_id) == ("active", "acct_sim_" + vendor.id.removeprefix("ven_"))


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_an_expired_invite_shows_a_clear_page(chromium, server, committed, device):
    from django.utils import timezone

    from apps.vendors.models import VendorInvite

    tenant = marketplace()
    url, vendor = invite_url(tenant, server)
    with tenant_context(tenant):
        VendorInvite.objects.filter(vendor=vendor).update(expires_at=timezone.now())
    context = chromium.new_context(**VIEWPORTS[device])
    page = context.new_page()
    try:
        response = page.goto(url)
        assert response.status == 410
        assert page.get_by_role("heading", name="This invite link can't be used").is_visible()
        assert page.get_by_text("Nothing was created or changed").is_visible()
        shot(page, f"invite-expired-{device}")
    finally:
        context.close()
    after = vendor_now(tenant, vendor)
    assert (after.status, after.stripe_account_id) == ("invited", "")


def test_an_expired_account_link_gets_a_new_one_then_restricted_then_enabled(
    chromium, server, stripe_stub, committed
):
    # given a Stripe-backed marketplace whose first Account Link will have expired
    tenant = marketplace(stripe_api_base=stripe_stub.url)
    url, vendor = invite_url(tenant, server)
    stripe_stub.expired = {1}
    context = chromium.new_context(**VIEWPORTS["desktop"])
    page = context.new_page()
    try:
        # when the vendor submits the form, Stripe's first link is expired: Stripe sends the
        # browser to our refresh URL, which makes a second link and goes there
        page.goto(url)
        assert page.get_by_role("button", name="Continue to Stripe").is_visible()
        page.get_by_role("button", name="Continue to Stripe").click()
        page.wait_for_url(f"{stripe_stub.url}/setup/2")
        assert len(stripe_stub.links) == 2
        assert "/vendors/onboarding/refresh/" in stripe_stub.links[0]["refresh_url"]
        assert stripe_stub.accounts_created == 1

        # and back from Stripe with more information needed, the return page lists it
        stripe_stub.account_state = {
            "details_submitted": True,
            "charges_enabled": False,
            "payouts_enabled": False,
            "requirements": {
                "currently_due": ["external_account", "individual.verification.document"],
                "past_due": ["external_account"],
                "disabled_reason": "requirements.past_due",
            },
        }
        page.click("#finish")
        page.wait_for_url("**/vendors/onboarding/return/**")
        assert page.get_by_role("heading", name="Restricted: more information needed").is_visible()
        assert page.get_by_text("A bank account for payouts (past due)").is_visible()
        assert page.get_by_text("An identity document").is_visible()
        shot(page, "onboarding-restricted-desktop")

        # when the vendor continues and finishes, the status is enabled
        stripe_stub.account_state = {
            "details_submitted": True,
            "charges_enabled": True,
            "payouts_enabled": True,
            "requirements": {
                "currently_due": [],
                "past_due": [],
                "eventually_due": [],
                "disabled_reason": None,
            },
        }
        page.get_by_role("link", name="Continue onboarding").click()
        page.wait_for_url(f"{stripe_stub.url}/setup/3")
        page.click("#finish")
        page.wait_for_url("**/vendors/onboarding/return/**")
        assert page.get_by_role("heading", name="You're all set: payouts are enabled").is_visible()
        shot(page, "onboarding-stripe-enabled-desktop")
    finally:
        context.close()
    after = vendor_now(tenant, vendor)
    assert (after.status, after.stripe_account_id, after.payouts_enabled) == (
        "active",
        StripeStub.ACCOUNT_ID,
        True,
    )
