"""Webhook endpoints and events through the API: what a storefront developer does and sees."""

from __future__ import annotations

import pytest
from django.test import override_settings

from apps.webhooks.models import OutboundEvent, WebhookDelivery, WebhookEndpoint
from tests.api.conftest import pay

HOOK = "http://127.0.0.1:9/hooks"


def create_endpoint(api, **overrides):
    body = {"url": HOOK, "enabled_events": ["payment.succeeded", "refund.succeeded"], **overrides}
    response = api.post("/api/v1/webhook_endpoints", body)
    assert response.status_code == 201, response.json()
    return response.json()


def test_create_shows_the_secret_once_and_stores_it_encrypted(api):
    created = create_endpoint(api, description="orders", metadata={"team": "checkout"})

    assert created["id"].startswith("we_") and created["object"] == "webhook_endpoint"
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    assert created["status"] == "enabled" and created["metadata"] == {"team": "checkout"}
    assert created["enabled_events"] == ["payment.succeeded", "refund.succeeded"]
    retrieved = api.get(f"/api/v1/webhook_endpoints/{created['id']}").json()
    assert "secret" not in retrieved and retrieved["url"] == HOOK
    stored = WebhookEndpoint.objects.get(pk=created["id"])
    assert created["secret"] not in stored.secret_encrypted
    listed = api.get("/api/v1/webhook_endpoints").json()
    assert [e["id"] for e in listed["data"]] == [created["id"]] and listed["has_more"] is False


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"url": "ftp://example.com/x", "enabled_events": ["*"]}, "url", "http or https"),
        ({"url": "not-a-url", "enabled_events": ["*"]}, "url", "absolute"),
        ({"url": "not a url", "enabled_events": ["*"]}, "url", "spaces"),
        ({"url": "https://u:p@example.com/x", "enabled_events": ["*"]}, "url", "credentials"),
        ({"url": HOOK, "enabled_events": ["payment.exploded"]}, "enabled_events", "payment.exploded"),
        ({"url": HOOK, "enabled_events": []}, "enabled_events", ""),
        ({"url": HOOK}, "enabled_events", ""),
        ({"enabled_events": ["*"]}, "url", ""),
        ({"url": HOOK, "enabled_events": "payment.succeeded"}, "enabled_events", ""),
    ],
)
def test_bad_endpoints_are_refused_naming_the_param(api, body, param, words):
    response = api.post("/api/v1/webhook_endpoints", body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert words in error["message"]
    assert not WebhookEndpoint.objects.exists()


@override_settings(WEBHOOK_ALLOW_PRIVATE_URLS=False)
@pytest.mark.parametrize(
    "url",
    ["http://example.com/hooks", "https://127.0.0.1/hooks", "https://localhost/x", "https://10.1.2.3/x"],
)
def test_outside_development_only_https_to_public_addresses(api, url):
    response = api.post("/api/v1/webhook_endpoints", {"url": url, "enabled_events": ["*"]})

    assert response.status_code == 400 and response.json()["error"]["param"] == "url"


def test_update_disable_enable_and_delete(api):
    endpoint = create_endpoint(api)
    path = f"/api/v1/webhook_endpoints/{endpoint['id']}"

    updated = api.post(path, {"enabled_events": ["*"], "description": "all", "disabled": True}).json()
    assert (updated["enabled_events"], updated["description"], updated["status"]) == (
        ["*"],
        "all",
        "disabled",
    )
    assert updated["disabled_reason"] == "disabled through the API"
    enabled = api.post(path, {"disabled": False}).json()
    assert (enabled["status"], enabled["disabled_reason"]) == ("enabled", None)
    assert api.post(path, {"url": "gopher://x"}).json()["error"]["param"] == "url"

    deleted = api.delete(path)
    assert deleted.status_code == 200 and deleted.json() == {
        "id": endpoint["id"],
        "object": "webhook_endpoint",
        "deleted": True,
    }
    assert api.get(path).status_code == 404 and api.delete(path).status_code == 404


def test_roll_secret_keeps_the_old_one_signing_for_a_while(api):
    from apps.webhooks.outbound import endpoint_secrets

    endpoint = create_endpoint(api)
    path = f"/api/v1/webhook_endpoints/{endpoint['id']}/roll_secret"

    rolled = api.post(path, {"expires_in_hours": 2}).json()
    assert rolled["secret"] != endpoint["secret"]
    assert endpoint_secrets(WebhookEndpoint.objects.get(pk=endpoint["id"])) == [
        rolled["secret"],
        endpoint["secret"],
    ]
    again = api.post(path, {"expires_in_hours": 0}).json()
    assert endpoint_secrets(WebhookEndpoint.objects.get(pk=endpoint["id"])) == [again["secret"]]
    bad = api.post(path, {"expires_in_hours": 1000})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "expires_in_hours"


def test_payments_and_refunds_publish_events_with_snapshots(api):
    endpoint = create_endpoint(api, enabled_events=["payment.failed", "refund.succeeded"])
    paid = pay(api, amount=2500)
    declined = pay(api, payment_method="pm_card_chargeDeclined")
    refund = api.post(f"/api/v1/payments/{paid['id']}/refunds", {"amount": 500}).json()

    succeeded = api.get("/api/v1/events", {"type": "payment.succeeded", "object": paid["id"]}).json()["data"]
    failed = api.get("/api/v1/events", {"type": "payment.failed"}).json()["data"]
    refunded = api.get("/api/v1/events", {"type": "refund.succeeded"}).json()["data"]

    assert len(succeeded) == 1 and succeeded[0]["object"] == "event"
    snapshot = succeeded[0]["data"]["object"]
    # the payment as it was when captured: the later refund is not in it
    assert (snapshot["id"], snapshot["status"], snapshot["amount_refunded"]) == (paid["id"], "succeeded", 0)
    assert snapshot["attempts"][0]["status"] == "captured"
    assert [e["data"]["object"]["id"] for e in failed] == [declined["id"]]
    assert failed[0]["data"]["object"]["last_error"]["decline_code"] == "generic_decline"
    assert refunded[0]["data"]["object"] == {**refund, "status": "succeeded"}
    assert api.get(f"/api/v1/events/{succeeded[0]['id']}").json() == succeeded[0]
    # only the types the endpoint asked for are delivered to it
    delivered = WebhookDelivery.objects.filter(endpoint_id=endpoint["id"])
    assert sorted(delivered.values_list("event__type", flat=True)) == ["payment.failed", "refund.succeeded"]


def test_events_are_published_once_without_endpoints_too(api):
    paid = pay(api)

    events = OutboundEvent.objects.filter(object_id=paid["id"])
    assert list(events.values_list("type", flat=True)) == ["payment.succeeded"]
    assert not WebhookDelivery.objects.exists()


def test_event_list_errors(api):
    assert api.get("/api/v1/events", {"type": "nope"}).json()["error"]["param"] == "type"
    assert api.get("/api/v1/events", {"created[gte]": "x"}).status_code == 400
    assert api.get("/api/v1/events/evt_nope").status_code == 404


def test_restricted_keys_need_the_webhook_endpoints_scope(api, restricted_api):
    reader = restricted_api({"webhook_endpoints": "read", "events": "read"})
    assert reader.get("/api/v1/webhook_endpoints").status_code == 200
    assert reader.get("/api/v1/events").status_code == 200
    refused = reader.post("/api/v1/webhook_endpoints", {"url": HOOK, "enabled_events": ["*"]})
    assert refused.status_code == 403
    assert restricted_api({"payments": "write"}).get("/api/v1/events").status_code == 403
