"""3-D Secure in a real Chromium (Debian's, driven by Playwright) against a real server
(``tests/api/live.py``) in a freshly committed marketplace: a payment created through the API
answers ``redirect_to_url``; the browser opens the simulator's challenge page, completes or
fails it, and comes back to the return URL; the emailed link's page authenticates an off-session
payment. Screenshots (desktop 1366x768, phone 390x844) go to /tmp/threeds-shots/ (not committed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django_tenants.utils import tenant_context

from tests.api.live import LiveMarketplace, Server, live_marketplace_create
from tests.browser import chromium, live_server  # noqa: F401

pytestmark = pytest.mark.slow

SHOTS = Path("/tmp/threeds-shots")
VIEWPORTS: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1366, "height": 768}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, chromium) -> Iterator[Server]:  # noqa: F811
    # The server builds the simulator's challenge URL on its own port (Server sets PORT, read in DEBUG).
    env = {"EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend"}
    with live_server(django_db_blocker, env) as running:
        yield running


@pytest.fixture(scope="module")
def shop(server, django_db_blocker) -> LiveMarketplace:
    from apps.payments.models import GatewayAccount

    with django_db_blocker.unblock():
        made = live_marketplace_create(server)
        with tenant_context(made.tenant):
            GatewayAccount.objects.filter(kind="simulator").update(settings={"latency_ms": {"p50": 0}})
    return made


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def no_horizontal_scroll(page: Any) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def payment_needing_3ds(shop: LiveMarketplace) -> dict:
    response = requests.post(
        shop.url("/api/v1/payments"),
        json={
            "amount": 12900,
            "currency": "eur",
            "payment_method": "pm_card_authenticationRequired",
            "confirm": True,
            "return_url": f"http://{shop.host}:{shop.server.port}/healthz?shop=clay",
        },
        headers=shop.headers(),
        timeout=30,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["next_action"]["type"] == "redirect_to_url"
    return body


def returned(shop: LiveMarketplace, payment_id: str) -> dict:
    response = requests.post(
        shop.url(f"/api/v1/payments/{payment_id}/authentication_return"),
        json={},
        headers=shop.headers(),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("device", ["desktop", "phone"])
@pytest.mark.parametrize("answer", ["complete", "fail"])
def test_the_challenge_page_completes_or_fails_the_payment(chromium, shop, committed, device, answer):  # noqa: F811
    body = payment_needing_3ds(shop)
    context = chromium.new_context(**VIEWPORTS[device])
    page = context.new_page()
    try:
        page.goto(body["next_action"]["redirect_to_url"]["url"])
        assert page.get_by_role("heading", name="Authenticate your payment").is_visible()
        assert page.get_by_text("129.00 EUR").is_visible()
        assert no_horizontal_scroll(page)
        if answer == "complete":
            shot(page, f"challenge-{device}")
        button = "Complete authentication" if answer == "complete" else "Fail authentication"
        page.get_by_role("button", name=button).focus()
        page.keyboard.press("Enter")  # keyboard use
        page.wait_for_url(f"**payment={body['id']}**")
        assert urlsplit(page.url).path == "/healthz"
    finally:
        context.close()

    after = returned(shop, body["id"])
    if answer == "complete":
        assert (after["status"], after["amount_received"]) == ("succeeded", 12900)
    else:
        assert (after["status"], after["last_error"]["code"]) == ("failed", "authentication_failed")
        assert len(after["attempts"]) == 1  # no failover


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_the_emailed_link_page_authenticates_an_off_session_payment(chromium, shop, committed, device):  # noqa: F811
    from apps.customers.services import customer_create
    from apps.payments.services import authentication_link_url, payment_intent_create

    with tenant_context(shop.tenant):
        customer = customer_create(email="ada@example.com", name="Ada")
        intent = payment_intent_create(
            amount=4500,
            currency="eur",
            payment_method="pm_card_authenticationRequired",
            customer_id=customer.id,
            description="Glazed mug, set of 2",
            off_session=True,
            confirm=True,
        )
        link = urlsplit(authentication_link_url(intent.id))
    url = f"http://{shop.host}:{shop.server.port}{link.path}?{link.query}"
    context = chromium.new_context(**VIEWPORTS[device])
    page = context.new_page()
    try:
        page.goto(url)
        assert page.get_by_text("45.00 EUR").is_visible()
        assert no_horizontal_scroll(page)
        shot(page, f"authenticate-link-{device}")
        page.get_by_role("button", name="Authenticate this payment").click()
        page.get_by_role("button", name="Complete authentication").click()
        page.get_by_text("Thank you: your payment is complete.").wait_for()
        shot(page, f"authenticate-link-done-{device}")
    finally:
        context.close()
    with tenant_context(shop.tenant):
        from apps.payments.models import PaymentIntent

        assert PaymentIntent.objects.get(pk=intent.id).status == "succeeded"
