"""The Stripe Connect client against Stripe's own example objects (fixtures/, from Stripe's
OpenAPI fixtures), answered at the HTTP layer: the official SDK builds and sends every request
through ``requests`` and ``responses`` answers it, so these tests see exactly what Stripe would
receive (form-encoded parameters and headers)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses

from apps.payments.gateways.base import GatewayConfig
from apps.payments.gateways.connect import ConnectError, ConnectStatus
from apps.payments.gateways.stripe.connect import ConnectClient, account_status
from apps.vendors.connect import disabled_reason_in_words, requirement_in_words, requirements_in_words

FIXTURES = Path(__file__).parent / "fixtures"
API = "http://stripe.test"  # an explicit api_base: nothing may go to api.stripe.com
KEY = "sk_test_platform_123"
ACCOUNT = "acct_1PgafTB7WZ01zgkW"


def fixture(name: str, **changes: Any) -> dict[str, Any]:
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    data.update(copy.deepcopy(changes))
    return data


def form(call: Any) -> dict[str, list[str]]:
    body = call.request.body
    return parse_qs(body.decode() if isinstance(body, bytes) else (body or ""))


@pytest.fixture
def stripe_api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def client() -> ConnectClient:
    return ConnectClient(KEY, api_base=API)


def account_with(**fields: Any) -> dict[str, Any]:
    """The example account, changed only where a test says (requirements merged key by key)."""
    data = fixture("account")
    requirements = fields.pop("requirements", None)
    data.update(fields)
    if requirements is not None:
        data["requirements"] = {**data["requirements"], **requirements}
    return data


# --------------------------------------------------------------------------- accounts


def test_account_create_sends_an_express_account_request(stripe_api, client):
    # given Stripe answers with the example account, now Express
    stripe_api.post(f"{API}/v1/accounts", json=account_with(type="express", metadata={"vendor_id": "ven_1"}))
    # when we create the vendor's account
    account = client.account_create(
        vendor_id="ven_1",
        email="shop@example.com",
        country="us",
        default_currency="USD",
        metadata={"plan": "gold"},
        idempotency_key="account:ven_1",
    )
    # then the request is the shape Stripe documents, form-encoded, with our key
    call = stripe_api.calls[0]
    assert form(call) == {
        "type": ["express"],
        "country": ["US"],
        "email": ["shop@example.com"],
        "business_type": ["individual"],
        "default_currency": ["usd"],
        "capabilities[card_payments][requested]": ["true"],
        "capabilities[transfers][requested]": ["true"],
        "metadata[plan]": ["gold"],
        "metadata[vendor_id]": ["ven_1"],
    }
    assert call.request.headers["Idempotency-Key"] == "account:ven_1"
    assert call.request.headers["Authorization"] == f"Bearer {KEY}"
    assert "Stripe-Account" not in call.request.headers
    # and the answer is mapped: the example has not submitted its details yet
    assert (account.id, account.status, account.charges_enabled, account.payouts_enabled) == (
        ACCOUNT,
        ConnectStatus.ONBOARDING,
        False,
        False,
    )
    assert account.metadata == {"vendor_id": "ven_1"}
    assert account.requirements == {
        "currently_due": [
            "business_profile.product_description",
            "business_profile.support_phone",
            "business_profile.url",
            "external_account",
            "tos_acceptance.date",
            "tos_acceptance.ip",
        ],
        "past_due": [],
        "disabled_reason": "requirements.past_due",
    }


def test_account_retrieve_maps_an_active_account(stripe_api, client):
    stripe_api.get(
        f"{API}/v1/accounts/{ACCOUNT}",
        json=account_with(
            charges_enabled=True,
            payouts_enabled=True,
            details_submitted=True,
            requirements={"currently_due": [], "eventually_due": [], "disabled_reason": None},
        ),
    )
    account = client.account_retrieve(ACCOUNT)
    assert account.status == ConnectStatus.ACTIVE
    assert requirements_in_words(account.requirements) == []


def test_account_retrieve_maps_a_restricted_account_in_plain_words(stripe_api, client):
    # given a vendor who finished onboarding but Stripe now wants an ID document and a bank account
    stripe_api.get(
        f"{API}/v1/accounts/{ACCOUNT}",
        json=account_with(
            charges_enabled=True,
            payouts_enabled=False,
            details_submitted=True,
            requirements={
                "currently_due": ["individual.verification.document", "external_account"],
                "past_due": ["individual.verification.document"],
                "disabled_reason": "requirements.past_due",
            },
        ),
    )
    account = client.account_retrieve(ACCOUNT)
    assert account.status == ConnectStatus.RESTRICTED
    assert requirements_in_words(account.requirements) == [
        "an identity document (past due)",
        "a bank account for payouts",
        "disabled: required information is past due",
    ]


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"details_submitted": False}, ConnectStatus.ONBOARDING),
        (
            {
                "details_submitted": True,
                "requirements": {"currently_due": [], "disabled_reason": "requirements.pending_verification"},
            },
            ConnectStatus.ONBOARDING,
        ),
        (
            {
                "details_submitted": True,
                "charges_enabled": True,
                "payouts_enabled": True,
                "requirements": {"currently_due": ["business_profile.url"], "disabled_reason": None},
            },
            ConnectStatus.ACTIVE,  # due later, before a deadline: still active
        ),
        (
            {
                "details_submitted": True,
                "charges_enabled": False,
                "payouts_enabled": False,
                "requirements": {"currently_due": [], "disabled_reason": "rejected.fraud"},
            },
            ConnectStatus.RESTRICTED,
        ),
        (
            {
                "details_submitted": True,
                "charges_enabled": True,
                "payouts_enabled": True,
                "requirements": {
                    "currently_due": [],
                    "past_due": ["external_account"],
                    "disabled_reason": None,
                },
            },
            ConnectStatus.RESTRICTED,
        ),
    ],
)
def test_account_status(fields, status):
    assert account_status(account_with(**fields)) == status


def test_requirements_in_words():
    assert requirement_in_words("external_account") == "a bank account for payouts"
    assert requirement_in_words("individual.verification.document") == "an identity document"
    assert (
        requirement_in_words("person_1Pg2xYZ.verification.document")
        == "an identity document for a person on the account"
    )
    assert (
        requirement_in_words("settings.payments.statement_descriptor")
        == "settings payments statement descriptor"
    )
    assert disabled_reason_in_words("rejected.fraud") == "rejected by Stripe (suspected fraud)"
    assert disabled_reason_in_words(None) is None
    # the example account: each need said once (the two tos_acceptance fields are one)
    assert requirements_in_words(fixture("account")["requirements"]) == [
        "a description of what the business sells",
        "a customer support phone number",
        "the business's website",
        "a bank account for payouts",
        "acceptance of Stripe's terms of service",
        "disabled: required information is past due",
    ]


def test_account_link_for_onboarding(stripe_api, client):
    stripe_api.post(f"{API}/v1/account_links", json=fixture("account_link", expires_at=1234568190))
    link = client.account_link_create(
        account_id=ACCOUNT,
        refresh_url="https://alpha.localhost/vendors/onboarding/refresh",
        return_url="https://alpha.localhost/vendors/onboarding/return",
        idempotency_key="link:ven_1:1",
    )
    call = stripe_api.calls[0]
    assert form(call) == {
        "account": [ACCOUNT],
        "type": ["account_onboarding"],
        "refresh_url": ["https://alpha.localhost/vendors/onboarding/refresh"],
        "return_url": ["https://alpha.localhost/vendors/onboarding/return"],
    }
    assert call.request.headers["Idempotency-Key"] == "link:ven_1:1"
    assert link.url.endswith(f"/setup/s/{ACCOUNT}/MerI6itPZo2K")
    assert (link.created, link.expires_at) == (1234567890, 1234568190)


def test_login_link_for_the_express_dashboard(stripe_api, client):
    stripe_api.post(f"{API}/v1/accounts/{ACCOUNT}/login_links", json=fixture("login_link"))
    link = client.login_link_create(account_id=ACCOUNT)
    assert link.url.endswith(f"/express/{ACCOUNT}/ehJImT2clfHr")
    assert form(stripe_api.calls[0]) == {}


# --------------------------------------------------------------------------- money


def test_transfer_create(stripe_api, client):
    stripe_api.post(
        f"{API}/v1/transfers",
        json=fixture(
            "transfer",
            amount=9000,
            transfer_group="pay_123",
            source_transaction="ch_3Pgc",
            metadata={"payment": "pay_123", "vendor": "ven_1"},
        ),
    )
    transfer = client.transfer_create(
        amount=9000,
        currency="USD",
        destination=ACCOUNT,
        transfer_group="pay_123",
        source_transaction="ch_3Pgc",
        metadata={"payment": "pay_123", "vendor": "ven_1"},
        idempotency_key="transfer:pay_123:ven_1",
    )
    call = stripe_api.calls[0]
    assert form(call) == {
        "amount": ["9000"],
        "currency": ["usd"],
        "destination": [ACCOUNT],
        "transfer_group": ["pay_123"],
        "source_transaction": ["ch_3Pgc"],
        "metadata[payment]": ["pay_123"],
        "metadata[vendor]": ["ven_1"],
    }
    assert call.request.headers["Idempotency-Key"] == "transfer:pay_123:ven_1"
    assert "Stripe-Account" not in call.request.headers  # transfers leave the platform's balance
    assert (transfer.id, transfer.amount, transfer.currency, transfer.destination) == (
        "tr_1Pgc7BB7WZ01zgkWVJfE40RX",
        9000,
        "usd",
        ACCOUNT,
    )
    assert (transfer.transfer_group, transfer.source_transaction, transfer.reversed) == (
        "pay_123",
        "ch_3Pgc",
        False,
    )


def test_transfer_needs_an_idempotency_key_and_a_real_amount(stripe_api, client):
    with pytest.raises(ConnectError, match="idempotency key is required"):
        client.transfer_create(
            amount=100, currency="usd", destination=ACCOUNT, transfer_group="g", idempotency_key=""
        )
    with pytest.raises(ConnectError) as exc:
        client.transfer_create(
            amount=0, currency="usd", destination=ACCOUNT, transfer_group="g", idempotency_key="k"
        )
    assert (exc.value.param, exc.value.message) == ("amount", "amount must be positive, got 0")
    with pytest.raises(ConnectError) as exc:
        client.transfer_create(
            amount=10, currency="usdx", destination=ACCOUNT, transfer_group="g", idempotency_key="k"
        )
    assert exc.value.param == "currency"
    assert len(stripe_api.calls) == 0  # nothing was sent


def test_partial_transfer_reversal(stripe_api, client):
    transfer_id = "tr_1Pgc7BB7WZ01zgkWVJfE40RX"
    stripe_api.post(
        f"{API}/v1/transfers/{transfer_id}/reversals",
        json=fixture("transfer_reversal", amount=2500, metadata={"refund": "re_9"}),
    )
    reversal = client.transfer_reverse(
        transfer_id=transfer_id,
        amount=2500,
        metadata={"refund": "re_9"},
        idempotency_key="reverse:re_9:ven_1",
    )
    call = stripe_api.calls[0]
    assert form(call) == {"amount": ["2500"], "metadata[refund]": ["re_9"]}
    assert call.request.headers["Idempotency-Key"] == "reverse:re_9:ven_1"
    assert (reversal.id, reversal.transfer, reversal.amount, reversal.currency) == (
        "trr_1Pgc7BB7WZ01zgkWsU61ufNC",
        transfer_id,
        2500,
        "usd",
    )


def test_payout_is_created_on_the_connected_account(stripe_api, client):
    stripe_api.post(f"{API}/v1/payouts", json=fixture("payout", amount=4200, status="pending"))
    payout = client.payout_create(
        account_id=ACCOUNT,
        amount=4200,
        currency="usd",
        idempotency_key="payout:po_1",
        metadata={"payout": "po_1"},
    )
    call = stripe_api.calls[0]
    assert form(call) == {"amount": ["4200"], "currency": ["usd"], "metadata[payout]": ["po_1"]}
    assert call.request.headers["Stripe-Account"] == ACCOUNT
    assert call.request.headers["Idempotency-Key"] == "payout:po_1"
    assert (payout.id, payout.account, payout.amount, payout.status, payout.arrival_date) == (
        "po_1Pgc79B7WZ01zgkWu1KToYf4",
        ACCOUNT,
        4200,
        "pending",
        1234567890,
    )


# --------------------------------------------------------------------------- errors


def test_a_stripe_error_becomes_one_readable_connect_error(stripe_api, client):
    stripe_api.post(
        f"{API}/v1/transfers",
        status=400,
        json={
            "error": {
                "type": "invalid_request_error",
                "code": "balance_insufficient",
                "param": "amount",
                "message": "You have insufficient available funds in your Stripe account.",
            }
        },
        headers={"Request-Id": "req_abc123"},
    )
    with pytest.raises(ConnectError) as exc:
        client.transfer_create(
            amount=9000, currency="usd", destination=ACCOUNT, transfer_group="pay_1", idempotency_key="t1"
        )
    error = exc.value
    assert error.message == (
        "Stripe refused creating the transfer: You have insufficient available funds in your Stripe "
        "account. (invalid_request_error, balance_insufficient, HTTP 400)"
    )
    assert (error.type, error.code, error.param, error.http_status, error.request_id, error.retryable) == (
        "invalid_request_error",
        "balance_insufficient",
        "amount",
        400,
        "req_abc123",
        False,
    )
    assert str(error) == error.message


def test_stripe_server_errors_are_retryable(stripe_api, client):
    stripe_api.get(
        f"{API}/v1/accounts/{ACCOUNT}",
        status=500,
        json={"error": {"type": "api_error", "message": "An unknown error occurred"}},
    )
    with pytest.raises(ConnectError) as exc:
        client.account_retrieve(ACCOUNT)
    assert exc.value.message == (
        "Stripe failed retrieving the connected account: An unknown error occurred (api_error, HTTP 500)"
    )
    assert (exc.value.retryable, exc.value.http_status) == (True, 500)
    assert len(stripe_api.calls) == 1  # the SDK does not retry by itself


def test_unreachable_stripe_is_a_retryable_connect_error():
    client = ConnectClient(KEY, api_base="http://127.0.0.1:9", timeout_seconds=2)
    with pytest.raises(ConnectError) as exc:
        client.payout_create(account_id=ACCOUNT, amount=100, currency="usd", idempotency_key="p1")
    assert exc.value.type == "api_connection_error"
    assert exc.value.retryable is True
    assert exc.value.message.startswith(
        "Stripe could not be reached or its answer was lost while creating the payout"
    )


def test_client_from_gateway_settings(stripe_api):
    stripe_api.get(f"{API}/v1/accounts/{ACCOUNT}", json=fixture("account"))
    client = ConnectClient.from_config(
        GatewayConfig(
            account_id="stripe_main", credentials={"secret_key": "sk_test_gw"}, settings={"api_base": API}
        )
    )
    client.account_retrieve(ACCOUNT)
    assert stripe_api.calls[0].request.headers["Authorization"] == "Bearer sk_test_gw"
    with pytest.raises(ConnectError, match="secret key is missing"):
        ConnectClient.from_config(GatewayConfig(account_id="stripe_main"))
