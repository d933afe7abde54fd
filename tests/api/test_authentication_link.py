"""The emailed link to authenticate an off-session payment: sent once, it opens a branded page
on the marketplace's host that confirms the payment with the customer there, follows the
simulator's challenge and shows the result; a tampered or expired token is refused."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.core import mail
from django.test import Client

from apps.core.durable import durable_run
from apps.core.models import DurableTask
from apps.customers.services import customer_create
from apps.payments.models import PaymentIntent
from apps.payments.services import payment_intent_create

HOST = "alpha.localhost"


def off_session_payment(email: str = "ada@example.com") -> PaymentIntent:
    customer = customer_create(email=email, name="Ada")
    intent = payment_intent_create(
        amount=4500,
        currency="eur",
        payment_method="pm_card_authenticationRequired",
        customer_id=customer.id,
        description="Order 42",
        off_session=True,
        confirm=True,
    )
    assert (intent.status, intent.next_action["type"]) == ("requires_action", "authenticate")
    return intent


def send_link(intent: PaymentIntent) -> str:
    return durable_run(
        task_id=str(DurableTask.objects.get(idempotency_key=f"authentication-link:{intent.id}").pk)
    )


def emailed_link() -> str:
    [message] = mail.outbox
    return re.search(r"https?://\S+/pay/\S+", str(message.body)).group(0)


def csrf(page) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def test_the_emailed_link_authenticates_the_payment_on_session(api):
    intent = off_session_payment()

    # The customer is emailed once, however often the task runs
    send_link(intent)
    send_link(intent)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ada@example.com"]
    assert "45.00 EUR" in mail.outbox[0].subject and "Alpha Market" in mail.outbox[0].subject
    link = emailed_link()
    assert urlsplit(link).hostname == HOST

    # The page shows the payment, branded, with the button
    browser = Client(HTTP_HOST=HOST, enforce_csrf_checks=True)
    page = browser.get(path_of(link))
    body = page.content.decode()
    assert page.status_code == 200
    assert "Authenticate this payment" in body and "45.00 EUR" in body and "Order 42" in body
    assert "Alpha Market" in body

    # Authenticating confirms it on session: the issuer's challenge, then back to the page
    token = urlsplit(link).query.removeprefix("token=")
    started = browser.post(path_of(link), {"token": token, "csrfmiddlewaretoken": csrf(page)})
    assert started.status_code == 302
    challenge = path_of(started["Location"])
    assert challenge.startswith("/simulator/primary/authenticate/")
    page = browser.get(challenge)
    done = browser.post(challenge, {"result": "complete", "csrfmiddlewaretoken": csrf(page)})
    assert done.status_code == 302
    back = browser.get(path_of(done["Location"]))

    assert back.status_code == 200 and "Thank you: your payment is complete." in back.content.decode()
    assert PaymentIntent.objects.get(pk=intent.id).status == "succeeded"
    assert api.get(f"/api/v1/payments/{intent.id}").json()["status"] == "succeeded"


def test_a_tampered_or_expired_link_is_refused(api, settings):
    intent = off_session_payment()
    send_link(intent)
    link = path_of(emailed_link())
    browser = Client(HTTP_HOST=HOST)

    tampered = browser.get(link[:-3] + ("abc" if not link.endswith("abc") else "xyz"))
    other_payment = browser.get(link.replace(intent.id, "pay_someoneelse00000000000"))
    settings.AUTHENTICATION_LINK_MAX_AGE_SECONDS = -1
    expired = browser.get(link)

    for refused in (tampered, other_payment, expired):
        assert refused.status_code == 404
        assert "This link is not valid any more" in refused.content.decode()
    assert PaymentIntent.objects.get(pk=intent.id).status == "requires_action"


def test_no_email_for_a_customer_without_one(api):
    intent = off_session_payment(email="")

    assert send_link(intent) == "done"  # nothing to send: done
    assert mail.outbox == []


def test_a_failed_authentication_through_the_link_says_so_and_can_be_tried_again(api):
    intent = off_session_payment()
    send_link(intent)
    link = path_of(emailed_link())
    token = urlsplit(link).query.removeprefix("token=")
    browser = Client(HTTP_HOST=HOST, enforce_csrf_checks=True)

    page = browser.get(link)
    started = browser.post(link, {"token": token, "csrfmiddlewaretoken": csrf(page)})
    challenge = path_of(started["Location"])
    failed = browser.post(challenge, {"result": "fail", "csrfmiddlewaretoken": csrf(browser.get(challenge))})
    back = browser.get(path_of(failed["Location"]))

    assert "Authentication failed. Try again or use another card." in back.content.decode()
    assert PaymentIntent.objects.get(pk=intent.id).last_error["code"] == "authentication_failed"
    # Trying again starts a new challenge on the same payment
    again = browser.post(link, {"token": token, "csrfmiddlewaretoken": csrf(back)})
    assert challenge.endswith(f"/{intent.id}_2")
    assert again.status_code == 302 and path_of(again["Location"]).endswith(f"/{intent.id}_3")
