"""The hosted checkout page and the embeddable element in a real Chromium (Debian's, driven by
Playwright) against a real server (gunicorn on the test database, ``tests/api/live.py``) in
freshly committed marketplaces, the simulator playing the processor (its card fields in an
iframe). A second local HTTP server plays the storefront: another origin, with a plain HTML page
mounting the element, and the pages the checkout sends the shopper back to.

Screenshots go to /tmp/checkout-shots/ (not committed); the time from clicking Pay to the success
page is written to /tmp/checkout-shots/pay-to-success.txt (measured, never asserted)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any
from urllib.parse import urlsplit

import pytest
from django_tenants.utils import tenant_context
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.api.live import Server
from tests.browser import live_server

pytestmark = pytest.mark.slow

SHOTS = Path("/tmp/checkout-shots")
DECLINED = "Your card was declined. Try another card."
DESKTOP: dict[str, Any] = {"viewport": {"width": 1366, "height": 768}}
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}
DEVICES: dict[str, dict[str, Any]] = {"desktop": DESKTOP, "phone": PHONE}


# --------------------------------------------------------------------------- the storefront


class Storefront:
    """Another origin: serves the element's page (``/shop``) and a thank-you page for any other
    path."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        store = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                html = store.pages.get(path) or (
                    "<!doctype html><meta name=viewport content='width=device-width'>"
                    "<title>Thank you</title><h1>Thank you for your order</h1>"
                )
                body = html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture(scope="module")
def storefront() -> Iterator[Storefront]:
    store = Storefront()
    store.thread.start()
    try:
        yield store
    finally:
        store.server.shutdown()
        store.server.server_close()


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, chromium) -> Iterator[Server]:
    with live_server(django_db_blocker, {"NO_PROXY": "*"}) as live:
        yield live


# --------------------------------------------------------------------------- helpers


def marketplace() -> Any:
    from apps.tenants.services import marketplace_create

    slug = "co" + uuid.uuid4().hex[:10]
    made = marketplace_create(
        slug=slug, name="Clay & Kiln Market", domain=f"{slug}.localhost", owner_email=f"ops@{slug}.test"
    )
    tenant = made.marketplace
    tenant.brand_color = "#0f766e"
    tenant.save(update_fields=["brand_color"])
    return tenant


def checkout_session(tenant: Any, **fields: Any) -> Any:
    from apps.checkout.services import checkout_session_create

    with tenant_context(tenant):
        return checkout_session_create(
            currency="usd",
            line_items=[
                {"name": "Stoneware mug", "amount": 1800, "quantity": 2},
                {"name": "Gift wrap", "amount": 350, "quantity": 1},
            ],
            **fields,
        )


def page_url(tenant: Any, server: Server, session: Any) -> str:
    return f"http://{tenant.schema_name}.localhost:{server.port}/checkout/{session.id}"


def session_now(tenant: Any, session: Any) -> Any:
    from apps.checkout.models import CheckoutSession
    from apps.payments.models import PaymentIntent

    with tenant_context(tenant):
        fresh = CheckoutSession.objects.get(pk=session.id)
        payment = PaymentIntent.objects.filter(pk=fresh.payment_id).first()
        return fresh, payment


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def card(page: Any, number: str, expiry: str = "12 / 34", cvc: str = "123") -> None:
    fields = page.frame_locator("iframe[title='Card details']")
    fields.get_by_label("Card number").fill(number)
    fields.get_by_label("Expiry (MM / YY)").fill(expiry)
    fields.get_by_label("Security code (CVC)").fill(cvc)


def no_horizontal_scroll(page: Any) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def timing(label: str, seconds: float) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with (SHOTS / "pay-to-success.txt").open("a") as out:
        out.write(f"{label}\t{seconds * 1000:.0f} ms\n")


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_pay_with_4242_goes_to_the_success_url(chromium, server, storefront, committed, device):
    tenant = marketplace()
    session = checkout_session(
        tenant, success_url=f"{storefront.origin}/thanks", cancel_url=f"{storefront.origin}/cart"
    )
    context = chromium.new_context(**DEVICES[device])
    page = context.new_page()
    try:
        response = page.goto(page_url(tenant, server, session))
        assert response.status == 200
        assert page.get_by_role("heading", name="Pay Clay & Kiln Market").is_visible()
        assert page.get_by_text("Stoneware mug").is_visible()
        pay = page.get_by_role("button", name="Pay 39.50 USD")
        pay.wait_for()
        assert (
            page.get_by_role("link", name="Cancel and go back").get_attribute("href")
            == f"{storefront.origin}/cart"
        )
        assert no_horizontal_scroll(page)

        card(page, "4242 4242 4242 4242")
        started = time.monotonic()
        pay.click()
        page.wait_for_url(f"{storefront.origin}/thanks?session_id={session.id}")
        timing(f"4242 hosted page {device}", time.monotonic() - started)
    finally:
        context.close()
    fresh, payment = session_now(tenant, session)
    assert (fresh.status, payment.status, payment.amount) == ("complete", "succeeded", 3950)


def test_keyboard_only_pay_with_enter(chromium, server, storefront, committed):
    tenant = marketplace()
    session = checkout_session(tenant, success_url=f"{storefront.origin}/thanks")
    context = chromium.new_context(**DESKTOP)
    page = context.new_page()
    try:
        page.goto(page_url(tenant, server, session))
        page.get_by_role("button", name="Pay 39.50 USD").wait_for()
        fields = page.frame_locator("iframe[title='Card details']")
        fields.get_by_label("Card number").focus()
        page.keyboard.type("4242424242424242")
        page.keyboard.press("Tab")
        page.keyboard.type("1234")
        page.keyboard.press("Tab")
        page.keyboard.type("123")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{storefront.origin}/thanks?session_id={session.id}")
    finally:
        context.close()
    assert session_now(tenant, session)[0].status == "complete"


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_a_decline_is_announced_then_another_card_pays(chromium, server, committed, device):
    tenant = marketplace()
    session = checkout_session(tenant)  # no success_url: our own "Payment received" page
    size = "1366x768" if device == "desktop" else "390x844"
    context = chromium.new_context(**DEVICES[device])
    page = context.new_page()
    try:
        page.goto(page_url(tenant, server, session))
        pay = page.get_by_role("button", name="Pay 39.50 USD")
        pay.wait_for()
        shot(page, f"checkout-empty-{size}")

        card(page, "4000 0000 0000 0002")
        pay.click()
        alert = page.get_by_role("alert").filter(has_text=DECLINED)
        alert.wait_for()
        assert alert.get_attribute("aria-live") == "assertive"
        assert "generic_decline" not in page.content()
        assert no_horizontal_scroll(page)
        shot(page, f"checkout-declined-{size}")

        card(page, "5555 5555 5555 4444")
        pay.click()
        page.wait_for_url(page_url(tenant, server, session))
        page.get_by_role("heading", name="Payment received").wait_for()
        assert no_horizontal_scroll(page)
        shot(page, f"checkout-success-{size}")
    finally:
        context.close()
    fresh, payment = session_now(tenant, session)
    assert (fresh.status, payment.status, payment.card["last4"]) == ("complete", "succeeded", "4444")


def test_a_card_number_that_is_not_a_test_card_is_refused_in_the_fields(chromium, server, committed):
    tenant = marketplace()
    session = checkout_session(tenant)
    context = chromium.new_context(**DESKTOP)
    page = context.new_page()
    try:
        page.goto(page_url(tenant, server, session))
        page.get_by_role("button", name="Pay 39.50 USD").wait_for()
        card(page, "4111 1111 1111 1111")
        page.get_by_role("button", name="Pay 39.50 USD").click()
        page.get_by_role("alert").filter(has_text="Enter a test card number").wait_for()
    finally:
        context.close()
    fresh, payment = session_now(tenant, session)
    assert (fresh.status, payment) == ("open", None)


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_an_expired_session_says_so(chromium, server, committed, device):
    from apps.checkout.models import CheckoutSession

    tenant = marketplace()
    session = checkout_session(tenant, cancel_url="https://shop.example/cart")
    with tenant_context(tenant):
        CheckoutSession.objects.filter(pk=session.id).update(
            expires_at=session.created_at - timedelta(seconds=1)
        )
    context = chromium.new_context(**DEVICES[device])
    page = context.new_page()
    try:
        response = page.goto(page_url(tenant, server, session))
        assert response.status == 410
        assert page.get_by_role("heading", name="This checkout has expired").is_visible()
        assert page.get_by_text("Nothing was charged").is_visible()
        assert no_horizontal_scroll(page)
        shot(page, f"checkout-expired-{'1366x768' if device == 'desktop' else '390x844'}")
    finally:
        context.close()
    assert session_now(tenant, session)[0].status == "expired"


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_the_element_pays_inside_a_storefront_page_on_another_origin(
    chromium, server, storefront, committed, device
):
    tenant = marketplace()
    session = checkout_session(tenant, success_url=f"{storefront.origin}/thanks")
    platform = f"http://{tenant.schema_name}.localhost:{server.port}"
    storefront.pages["/shop"] = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Clay &amp; Kiln: your basket</title></head>
<body style="font-family: sans-serif; margin: 0 auto; max-width: 32rem; padding: 1rem">
  <h1>Your basket</h1>
  <p>2 mugs and gift wrap: 39.50 USD</p>
  <div id="pay"></div>
  <p id="result"></p>
  <script src="{platform}/checkout.js"></script>
  <script>
    Marketplace.checkout({{
      sessionId: "{session.id}",
      clientSecret: "{session.client_secret}",
      mount: "#pay",
      onResult: function (result) {{ document.getElementById("result").textContent = result.status; }}
    }});
  </script>
</body></html>"""
    context = chromium.new_context(**DEVICES[device])
    page = context.new_page()
    try:
        page.goto(f"{storefront.origin}/shop")
        pay = page.get_by_role("button", name="Pay 39.50 USD")
        pay.wait_for()
        assert no_horizontal_scroll(page)
        card(page, "4000 0000 0000 0002")
        pay.click()
        page.get_by_role("alert").filter(has_text=DECLINED).wait_for()
        assert page.locator("#result").inner_text() == "failed"
        shot(page, f"element-declined-{device}")

        card(page, "4242 4242 4242 4242")
        started = time.monotonic()
        pay.click()
        thanks = f"{storefront.origin}/thanks?session_id={session.id}"
        try:
            page.wait_for_url(thanks, timeout=10_000)
        except PlaywrightTimeoutError:
            # A tap lost to the phone page scrolling (the decline moved focus into the card
            # fields) sent nothing: the button still offers to pay, as a shopper would see, and
            # the shopper taps again. Anything else (a payment under way) fails here, shown.
            state = (pay.inner_text(), pay.is_enabled(), page.locator("#result").inner_text())
            assert state == ("Pay 39.50 USD", True, "failed"), state
            pay.click()
            page.wait_for_url(thanks)
        timing(f"4242 element {device}", time.monotonic() - started)
    finally:
        context.close()
    fresh, payment = session_now(tenant, session)
    assert (fresh.status, payment.status) == ("complete", "succeeded")


# --------------------------------------------------------------------------- 3-D Secure (issue 15's other side)


def _challenge(page: Any, tenant: Any, server: Server, session: Any, button: str) -> None:
    page.goto(page_url(tenant, server, session))
    pay = page.get_by_role("button", name="Pay 39.50 USD")
    pay.wait_for()
    card(page, "4000 0027 6000 3184")
    pay.click()
    page.wait_for_url("**/simulator/**/authenticate/**")
    page.get_by_role("button", name=button).click()


def test_3ds_challenge_completed_pays(chromium, server, storefront, committed):
    tenant = marketplace()
    session = checkout_session(tenant, success_url=f"{storefront.origin}/thanks")
    context = chromium.new_context(**DESKTOP)
    page = context.new_page()
    try:
        _challenge(page, tenant, server, session, "Complete authentication")
        page.wait_for_url(f"{storefront.origin}/thanks?session_id={session.id}")
    finally:
        context.close()
    fresh, payment = session_now(tenant, session)
    assert (fresh.status, payment.status) == ("complete", "succeeded")


def test_3ds_challenge_failed_says_so_then_another_card_pays(chromium, server, storefront, committed):
    tenant = marketplace()
    session = checkout_session(tenant, success_url=f"{storefront.origin}/thanks")
    context = chromium.new_context(**DESKTOP)
    page = context.new_page()
    try:
        _challenge(page, tenant, server, session, "Fail authentication")
        page.wait_for_url("**/checkout/*/return?**")
        page.get_by_role("alert").filter(has_text="Authentication failed. Try again").first.wait_for()
        _, payment = session_now(tenant, session)
        assert (payment.status, payment.last_error.get("code")) == ("failed", "authentication_failed")
        card(page, "4242 4242 4242 4242")
        page.get_by_role("button", name="Pay 39.50 USD").click()
        page.wait_for_url(f"{storefront.origin}/thanks?session_id={session.id}")
    finally:
        context.close()
    fresh, payment = session_now(tenant, session)
    assert (fresh.status, payment.status) == ("complete", "succeeded")
