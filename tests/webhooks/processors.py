"""The processors' side of the webhook tests: bodies shaped like Stripe's and Adyen's and signed the
way they sign them (computed here with hmac, independently of the code under test), gateway
accounts, and payments made at them with the processors' HTTP APIs answered by ``responses``."""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
import time
from pathlib import Path

import requests
import responses
from django.utils import timezone

from apps.core.durable import durable_run
from apps.core.models import DurableTask
from apps.payments.breaker import CircuitBreaker
from apps.payments.models import GatewayAccount, InboundEvent, PaymentIntent, RoutingRule
from apps.payments.news import PROCESS_HANDLER
from apps.payments.services import payment_intent_create

FIXTURES = Path(__file__).parent / "fixtures"
STRIPE_API = "https://stripe.test"
ADYEN_CHECKOUT = "https://checkout-test.adyen.com/v72"
WEBHOOK_SECRET = "whsec_test_5f1d3c0a9b8e7d6c"
HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
MERCHANT = "MarketplaceECOM"
ACCOUNTS = ("stripe_main", "adyen_main", "primary", "secondary")


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


# ----------------------------------------------------------------- Stripe


def stripe_sign(body: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header: HMAC-SHA256 of "{t}.{body}" with the endpoint secret."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def stripe_intent(**fields) -> dict:
    """Stripe's example PaymentIntent with ``fields`` changed."""
    intent = fixture("stripe/payment_intent.json")
    intent.update(
        {
            "last_payment_error": None,
            "next_action": None,
            "automatic_payment_methods": None,
            "transfer_data": None,
            "processing": None,
            "canceled_at": None,
        }
    )
    intent.update(fields)
    return intent


def stripe_event(event_type: str, obj: dict, **fields) -> dict:
    """Stripe's example event carrying ``obj`` as data.object."""
    event = fixture("stripe/event.json")
    event.update({"type": event_type, "data": {"object": obj}, "created": int(time.time()), **fields})
    return event


def stripe_body(event: dict) -> bytes:
    return json.dumps(event, indent=2).encode()  # Stripe sends pretty-printed JSON


def post_stripe(client, body: bytes, *, account: str = "stripe_main", signature: str | None = None):
    return client.post(
        f"/webhooks/stripe/{account}",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=stripe_sign(body) if signature is None else signature,
    )


# ----------------------------------------------------------------- Adyen


def adyen_signature(item: dict, hmac_key: str = HMAC_KEY) -> str:
    """Adyen's HMAC for a NotificationRequestItem: base64 HMAC-SHA256, with the hex key, of
    pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success."""
    amount = item.get("amount") or {}
    fields = [
        item.get("pspReference", ""),
        item.get("originalReference", ""),
        item.get("merchantAccountCode", ""),
        item.get("merchantReference", ""),
        str(amount.get("value", "")),
        amount.get("currency", ""),
        item.get("eventCode", ""),
        item.get("success", ""),
    ]
    mac = hmac.new(binascii.a2b_hex(hmac_key), ":".join(fields).encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def adyen_item(event_code: str, *, sign_with: str | None = HMAC_KEY, **fields) -> dict:
    """Adyen's documented notification item with ``fields`` changed, signed with ``sign_with``."""
    item = copy.deepcopy(
        fixture("adyen/notification.json")["notificationItems"][0]["NotificationRequestItem"]
    )
    item.update({"eventCode": event_code, "merchantAccountCode": MERCHANT, **fields})
    if sign_with is not None:
        item["additionalData"] = {"hmacSignature": adyen_signature(item, sign_with)}
    return item


def adyen_body(*items: dict) -> bytes:
    document = fixture("adyen/notification.json")
    document["notificationItems"] = [{"NotificationRequestItem": item} for item in items]
    return json.dumps(document).encode()


def post_adyen(client, body: bytes, *, account: str = "adyen_main", **headers):
    return client.post(f"/webhooks/adyen/{account}", data=body, content_type="application/json", **headers)


# ----------------------------------------------------------------- accounts and payments


def reset_breakers() -> None:
    for name in ACCOUNTS:
        CircuitBreaker(name).reset()


def install_gateways() -> None:
    """A Stripe and an Adyen account, each routed first with the simulator behind it."""
    stripe = GatewayAccount(name="stripe_main", kind="stripe", settings={"api_base": STRIPE_API})
    stripe.credentials = {"secret_key": "sk_test_webhooks", "webhook_secret": WEBHOOK_SECRET}
    stripe.save()
    adyen = GatewayAccount(name="adyen_main", kind="adyen")
    adyen.credentials = {"api_key": "AQE1test-key", "merchant_account": MERCHANT, "hmac_key": HMAC_KEY}
    adyen.save()
    for account in GatewayAccount.objects.filter(kind="simulator"):
        account.settings = {"latency_ms": {"p50": 0}}
        account.save()
    RoutingRule.objects.create(
        name="stripe first",
        priority=1,
        currencies=["USD"],
        candidates=[{"gateway": "stripe_main"}, {"gateway": "primary"}],
    )
    RoutingRule.objects.create(
        name="adyen first",
        priority=2,
        currencies=["EUR"],
        candidates=[{"gateway": "adyen_main"}, {"gateway": "primary"}],
    )
    reset_breakers()


def lost_answer(processor: responses.RequestsMock, url: str) -> None:
    """The request reaches the processor, the answer never comes back (a read timeout)."""
    processor.add(responses.POST, url, body=requests.exceptions.ReadTimeout("read timed out"))


def stripe_payment(
    processor, *, amount: int = 2000, capture_method: str = "automatic", answer: dict | None = None
):
    """A payment at stripe_main whose answer was lost (unknown), or Stripe's ``answer``."""
    if answer is None:
        lost_answer(processor, f"{STRIPE_API}/v1/payment_intents")
    else:
        processor.add(responses.POST, f"{STRIPE_API}/v1/payment_intents", json=answer)
    intent = payment_intent_create(
        amount=amount,
        currency="usd",
        payment_method="pm_card_visa",
        capture_method=capture_method,
        confirm=True,
    )
    return intent, intent.attempts.get()


def adyen_payment(
    processor, *, amount: int = 1130, capture_method: str = "automatic", answer: dict | None = None
):
    """A payment at adyen_main whose answer was lost (unknown), or Adyen's ``answer``."""
    if answer is None:
        lost_answer(processor, f"{ADYEN_CHECKOUT}/payments")
    else:
        processor.add(responses.POST, f"{ADYEN_CHECKOUT}/payments", json=answer)
    intent = payment_intent_create(
        amount=amount,
        currency="eur",
        payment_method="pm_card_visa",  # a stored card token at Adyen; the simulator knows it too
        capture_method=capture_method,
        confirm=True,
    )
    return intent, intent.attempts.order_by("number").first()


def process_queued() -> list[str]:
    """Run the queued webhook processing tasks as a worker would (durable_run), oldest first."""
    done = []
    due = DurableTask.objects.filter(
        handler=PROCESS_HANDLER, state="pending", next_run_at__lte=timezone.now()
    )
    for task in due.order_by("created_at"):
        done.append(durable_run(task_id=str(task.pk)))
    return done


def event_of(event_id: str) -> InboundEvent:
    return InboundEvent.objects.get(event_id=event_id)


def reload(intent: PaymentIntent) -> PaymentIntent:
    return PaymentIntent.objects.get(pk=intent.pk)
