"""3-D Secure that completes, end to end on the simulator through the API and the simulator's
challenge page (Django's test client, CSRF enforced): the payment answers ``redirect_to_url``,
the customer completes or fails the challenge, comes back to the return URL with
``payment=<id>``, and the return settles the payment exactly once, racing the simulator's news."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

from django.test import Client

from apps.core.durable import durable_run
from apps.core.models import DurableTask
from apps.ledger.models import LedgerEvent
from apps.payments.gateways.base import GatewayConfig
from apps.payments.gateways.simulator import SimulatorGateway
from apps.payments.models import PaymentAttempt, SimulatorAction, SimulatorCharge
from apps.payments.services import (
    customer_message,
    payment_authentication_return,
    payments_authentication_expire,
)
from apps.webhooks.models import OutboundEvent
from tests.api.conftest import pay

RETURN = "https://shop.example/done?order=7"
HOST = "alpha.localhost"


def browser() -> Client:
    return Client(HTTP_HOST=HOST, enforce_csrf_checks=True)


def challenge_path(body: dict) -> str:
    assert body["status"] == "requires_action"
    assert body["next_action"]["type"] == "redirect_to_url"
    url = urlsplit(body["next_action"]["redirect_to_url"]["url"])
    assert url.hostname == HOST  # the simulator's page, on the marketplace's own host
    return url.path


def answer_challenge(client: Client, path: str, result: str):
    page = client.get(path)
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    return client.post(path, {"result": result, "csrfmiddlewaretoken": token})


def ledger_types(payment_id: str) -> list[str]:
    return list(
        LedgerEvent.objects.filter(stream=payment_id).order_by("version").values_list("type", flat=True)
    )


def test_a_challenge_completed_on_the_simulators_page_succeeds_the_payment(api):
    # Given a payment whose card asks for 3-D Secure, created with a return_url
    body = pay(api, payment_method="pm_card_authenticationRequired", return_url=RETURN)
    assert body["next_action"]["redirect_to_url"]["return_url"] == RETURN
    path = challenge_path(body)
    assert path == f"/simulator/primary/authenticate/{body['id']}_1"

    # When the customer opens the page and completes the challenge
    client = browser()
    page = client.get(path).content.decode()
    assert "Complete authentication" in page and "Fail authentication" in page
    assert "20.00 USD" in page and "Alpha Market" in page
    done = answer_challenge(client, path, "complete")

    # Then they are sent back to the return URL with the payment named, and the return settles it
    assert done.status_code == 302
    assert done["Location"] == f"{RETURN}&payment={body['id']}"
    back = api.post(f"/api/v1/payments/{body['id']}/authentication_return", {"details": {}})
    assert back.status_code == 200
    assert (back.json()["status"], back.json()["amount_received"], back.json()["next_action"]) == (
        "succeeded",
        2000,
        None,
    )
    assert api.get(f"/api/v1/payments/{body['id']}").json()["status"] == "succeeded"
    assert ledger_types(body["id"])[-1] == "ChargeCaptured"


def test_a_failed_challenge_fails_the_payment_with_authentication_failed_and_no_failover(api):
    body = pay(api, payment_method="pm_card_authenticationRequired", return_url=RETURN)

    done = answer_challenge(browser(), challenge_path(body), "fail")
    intent = payment_authentication_return(intent_id=body["id"], details={"payment": body["id"]})

    assert done.status_code == 302
    assert (intent.status, intent.last_error["code"]) == ("failed", "authentication_failed")
    assert (
        customer_message(intent.last_error["code"]) == "Authentication failed. Try again or use another card."
    )
    # Only the customer can authenticate: no other gateway was tried, nothing was charged
    assert list(
        PaymentAttempt.objects.filter(intent_id=body["id"]).values_list("gateway_account__name", "status")
    ) == [("primary", "declined")]
    assert not SimulatorCharge.objects.filter(attempt_id__startswith=body["id"]).exists()
    api_body = api.get(f"/api/v1/payments/{body['id']}").json()
    assert api_body["last_error"]["code"] == "authentication_failed"


def test_the_simulators_news_and_the_customers_return_racing_apply_once(api):
    body = pay(api, payment_method="pm_card_authenticationRequired", return_url=RETURN)
    answer_challenge(browser(), challenge_path(body), "complete")
    news = DurableTask.objects.get(idempotency_key=f"simulator-news:primary:{body['id']}_1")

    # The processor's news (the simulator's webhook) and the customer's return both arrive
    first = payment_authentication_return(intent_id=body["id"])
    durable_run(task_id=str(news.pk))
    again = payment_authentication_return(intent_id=body["id"])

    assert (first.status, again.status) == ("succeeded", "succeeded")
    assert ledger_types(body["id"]).count("ChargeCaptured") == 1
    assert OutboundEvent.objects.filter(object_id=body["id"], type="payment.succeeded").count() == 1
    assert SimulatorCharge.objects.filter(attempt_id=f"{body['id']}_1").count() == 1


def test_the_challenge_page_refuses_unknown_attempts_other_accounts_and_posts_without_csrf(api):
    body = pay(api, payment_method="pm_card_authenticationRequired", return_url=RETURN)
    path = challenge_path(body)

    assert browser().get(f"/simulator/primary/authenticate/{body['id']}_9").status_code == 404
    assert browser().get(f"/simulator/nope/authenticate/{body['id']}_1").status_code == 404
    assert browser().post(path, {"result": "complete"}).status_code == 403  # no CSRF token
    assert SimulatorAction.objects.get(attempt_id=f"{body['id']}_1").status == "requires_action"


def test_return_url_is_checked_and_unknown_parameters_refused(api):
    for bad in ("shop.example/done", "javascript:alert(1)", "ftp://shop.example/", "x" * 2001):
        response = api.post(
            "/api/v1/payments",
            {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "return_url": bad},
        )
        assert response.status_code == 400, bad
        assert response.json()["error"]["param"] == "return_url"
    created = pay(api, confirm=False)
    refused = api.post(f"/api/v1/payments/{created['id']}/authentication_return", {"redirect": "x"})
    assert refused.status_code == 400


def test_return_url_given_on_confirm_is_where_the_customer_comes_back(api):
    created = pay(api, payment_method="pm_card_authenticationRequired", confirm=False)

    confirmed = api.post(f"/api/v1/payments/{created['id']}/confirm", {"return_url": RETURN}).json()

    assert confirmed["next_action"]["redirect_to_url"]["return_url"] == RETURN
    assert SimulatorAction.objects.get(attempt_id=f"{created['id']}_1").return_url == (
        f"{RETURN}&payment={created['id']}"
    )


def test_without_a_return_url_the_page_is_given_and_the_customer_stays_there(api):
    body = pay(api, payment_method="pm_card_authenticationRequired")
    assert body["next_action"]["redirect_to_url"]["return_url"] is None

    done = answer_challenge(browser(), challenge_path(body), "complete")

    assert done.status_code == 200 and "You can close this window" in done.content.decode()
    assert payment_authentication_return(intent_id=body["id"]).status == "succeeded"


def test_an_unfinished_authentication_expires_closed_at_its_gateway(api, settings):
    settings.AUTHENTICATION_EXPIRY_SECONDS = 1800
    body = pay(api, payment_method="pm_card_authenticationRequired", return_url=RETURN)
    attempt = PaymentAttempt.objects.get(intent_id=body["id"])

    assert payments_authentication_expire() == 0  # not yet
    PaymentAttempt.objects.filter(pk=attempt.pk).update(
        created_at=attempt.created_at - timedelta(seconds=1801)
    )
    assert payments_authentication_expire() == 1
    assert payments_authentication_expire() == 0  # once

    after = api.get(f"/api/v1/payments/{body['id']}").json()
    assert (after["status"], after["last_error"]["code"]) == ("failed", "authentication_expired")
    assert SimulatorAction.objects.get(attempt_id=attempt.pk).status == "canceled"  # closed at the gateway
    assert OutboundEvent.objects.filter(object_id=body["id"], type="payment.failed").count() == 1
    # The customer completing the old challenge late charges nothing, and the return says expired
    late = browser().get(challenge_path(body))
    assert late.status_code == 200 and "expired or was cancelled" in late.content.decode()
    assert "Complete authentication" not in late.content.decode()
    SimulatorGateway(GatewayConfig(account_id="primary")).action_complete(attempt_id=attempt.pk)
    assert not SimulatorCharge.objects.filter(attempt_id=attempt.pk).exists()
    back = payment_authentication_return(intent_id=body["id"])
    assert (back.status, back.last_error["code"]) == ("failed", "authentication_expired")


def test_customer_messages_are_plain_and_never_internal():
    assert customer_message("card_declined", "generic_decline") == "Your card was declined. Try another card."
    assert customer_message("card_declined", "stolen_card") == "Your card was declined. Try another card."
    assert customer_message("card_declined", "insufficient_funds") == (
        "Your card has insufficient funds. Try another card."
    )
    assert (
        customer_message("authentication_expired")
        == "The time to authenticate this payment ran out. Try again."
    )
    assert customer_message(None) == "Your card was declined. Try another card."
