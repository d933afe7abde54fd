"""The Stripe adapter against localstripe (a stateful fake Stripe), plus its mappings without any
server: canned HTTP answers go through the real SDK, so error parsing is the SDK's own.

localstripe does not honour idempotency keys, has no Connect, Search or fees, and declines with
``card_declined`` only (no decline or advice codes): those paths use canned answers instead.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import stripe
import urllib3.exceptions

from apps.payments.gateways.base import (
    ChargeNews,
    ChargeRequest,
    GatewayCallError,
    GatewayConfig,
    GatewayStatus,
    Notification,
    Outcome,
)
from apps.payments.gateways.stripe import StripeGateway
from apps.payments.gateways.stripe.gateway import connection_outcome
from apps.payments.gateways.stripe.shapes import (
    HARD_DECLINE_CODES,
    decline_outcome,
    intent_result,
    split_reference,
)
from apps.payments.gateways.stripe.webhooks import StripeNotifications

SECRET = "sk_test_localstripe"

# localstripe pickles its whole store to a fixed /tmp/localstripe.pickle on every write (shared
# by every run on the machine) and listens on all interfaces: run its app without either.
LOCALSTRIPE = """
import sys
from aiohttp import web
from localstripe import resources
resources.Store.dump_to_disk = lambda self: None
# localstripe lacks two PaymentIntent parameters Stripe takes (it refuses unknown ones): the
# customer's way back from 3-D Secure and the description. It has no redirects, so drop them.
_create = resources.PaymentIntent._api_create.__func__
def _api_create(cls, **data):
    data.pop("return_url", None)
    data.pop("description", None)
    return _create(cls, **data)
resources.PaymentIntent._api_create = classmethod(_api_create)
from localstripe.server import app
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


# --------------------------------------------------------------------------- helpers


@dataclass
class Sent:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, list[str]]


def _sent(method: str, url: str, headers: Mapping[str, str] | None, post_data: Any) -> Sent:
    parts = urlsplit(url)
    body = post_data.decode() if isinstance(post_data, bytes) else (post_data or parts.query)
    return Sent(method.upper(), parts.path, dict(headers or {}), parse_qs(body))


class RecordingClient(stripe.RequestsClient):
    """The SDK's own requests client, keeping every request it sends."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.sent: list[Sent] = []

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        self.sent.append(_sent(method, url, headers, post_data))
        return super().request(method, url, headers, post_data)


class CannedClient(stripe.HTTPClient):
    """Answers each request with the next canned (HTTP status, JSON body)."""

    name = "canned"

    def __init__(self, *answers: tuple[int, dict]):
        super().__init__()
        self.answers = list(answers)
        self.sent: list[Sent] = []

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        self.sent.append(_sent(method, url, headers, post_data))
        status, body = self.answers.pop(0)
        return json.dumps(body), status, {"request-id": "req_canned"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_gateway(
    api_base: str, http_client: stripe.HTTPClient | None = None, **settings: Any
) -> StripeGateway:
    config = GatewayConfig(
        account_id="stripe_test",
        credentials={"secret_key": SECRET},
        settings={"api_base": api_base, **settings},
        timeout_seconds=5.0,
    )
    return StripeGateway(config, http_client=http_client)


def charge(attempt_id: str, payment_method: str = "pm_card_visa", **kwargs: Any) -> ChargeRequest:
    fields: dict[str, Any] = {"amount": 2500, "currency": "USD", **kwargs}
    return ChargeRequest(attempt_id=attempt_id, payment_method=payment_method, **fields)


def intent_json(
    intent_id: str = "pi_canned",
    status: str = "succeeded",
    *,
    attempt_id: str = "pay_c_1",
    amount: int = 1000,
    created: int | None = None,
    fee: int = 0,
) -> dict:
    captured = status == "succeeded"
    return {
        "id": intent_id,
        "object": "payment_intent",
        "status": status,
        "amount": amount,
        "created": created or int(time.time()),
        "metadata": {"attempt_id": attempt_id},
        "last_payment_error": None,
        "next_action": None,
        "latest_charge": {
            "id": "ch_canned",
            "object": "charge",
            "amount": amount,
            "amount_captured": amount if captured else 0,
            "amount_refunded": 0 if status != "canceled" else amount,
            "captured": captured,
            "balance_transaction": {"id": "txn_canned", "object": "balance_transaction", "fee": fee}
            if captured
            else None,
        },
    }


def error_json(status_type: str, message: str, **fields: Any) -> dict:
    return {"error": {"type": status_type, "message": message, **fields}}


# --------------------------------------------------------------------------- localstripe


@pytest.fixture(scope="session")
def localstripe_server() -> Iterator[str]:
    """A localstripe on a free loopback port for the whole session."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-c", LOCALSTRIPE, str(port)], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 20
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"localstripe exited with {proc.returncode}: {log.read().decode()[-2000:]}")
                with contextlib.suppress(requests.RequestException):
                    if requests.delete(f"{url}/_config/data", timeout=0.5).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    pytest.fail("localstripe did not answer within 20 s")
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def localstripe(localstripe_server: str) -> str:
    """The session's localstripe, emptied for this test."""
    requests.delete(f"{localstripe_server}/_config/data", timeout=5).raise_for_status()
    return localstripe_server


@pytest.fixture
def recorder() -> RecordingClient:
    return RecordingClient(timeout=5)


@pytest.fixture
def gateway(localstripe: str, recorder: RecordingClient) -> StripeGateway:
    return make_gateway(localstripe, recorder)


def card_payment_method(api_base: str, number: str) -> str:
    """A card PaymentMethod with a test number (localstripe only knows three pm_card_* tokens)."""
    client = stripe.StripeClient(SECRET, base_addresses={"api": api_base}, max_network_retries=0)
    pm = client.v1.payment_methods.create(
        {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    return pm.id


@pytest.mark.localstripe
def test_automatic_capture_succeeds(gateway: StripeGateway, recorder: RecordingClient):
    # given a good card / when authorised with capture
    result = gateway.authorize(charge("pay_auto_1", metadata={"tenant": "alpha"}, customer_reference="cus_9"))

    # then it is captured in full
    assert result.outcome == Outcome.SUCCEEDED
    assert result.status == GatewayStatus.CAPTURED
    assert result.reference is not None and result.reference.startswith("pi_")
    assert (result.amount_authorized, result.amount_captured, result.amount_refunded, result.fee) == (
        2500,
        2500,
        0,
        0,
    )
    assert result.decline_code is None
    assert result.raw["id"] == result.reference
    assert result.raw["status"] == "succeeded"
    # and the request said what the port promised
    (create,) = [s for s in recorder.sent if s.method == "POST" and s.path == "/v1/payment_intents"]
    assert create.form["amount"] == ["2500"]
    assert create.form["currency"] == ["usd"]
    assert create.form["payment_method"] == ["pm_card_visa"]
    assert create.form["confirm"] == ["true"]
    assert create.form["capture_method"] == ["automatic"]
    assert create.form["metadata[attempt_id]"] == ["pay_auto_1"]
    assert create.form["metadata[tenant]"] == ["alpha"]
    assert create.form["metadata[customer_reference]"] == ["cus_9"]
    assert "off_session" not in create.form


@pytest.mark.localstripe
def test_manual_capture_then_partial_capture(gateway: StripeGateway, recorder: RecordingClient):
    # given an authorisation only
    auth = gateway.authorize(charge("pay_man_1", capture=False))
    assert (auth.outcome, auth.status) == (Outcome.SUCCEEDED, GatewayStatus.AUTHORIZED)
    assert (auth.amount_authorized, auth.amount_captured) == (2500, 0)
    assert auth.reference is not None
    assert recorder.sent[-1].form["capture_method"] == ["manual"]

    # when 1800 of the 2500 are captured
    captured = gateway.capture(
        attempt_id="pay_man_1",
        reference=auth.reference,
        amount=1800,
        currency="USD",
        idempotency_key="pay_man_1:capture",
    )

    # then the charge is captured for 1800 (the released 700 is not a refund of ours)
    assert (captured.outcome, captured.status) == (Outcome.SUCCEEDED, GatewayStatus.CAPTURED)
    assert (captured.amount_authorized, captured.amount_captured, captured.amount_refunded) == (2500, 1800, 0)
    assert recorder.sent[-1].path == f"/v1/payment_intents/{auth.reference}/capture"
    assert recorder.sent[-1].form["amount_to_capture"] == ["1800"]
    # and a refund counts against the captured 1800 only
    refund = gateway.refund(
        attempt_id="pay_man_1",
        reference=auth.reference,
        refund_id="re_ours_1",
        amount=800,
        currency="USD",
        idempotency_key="re_ours_1",
    )
    assert (refund.outcome, refund.amount_captured, refund.amount_refunded) == (Outcome.SUCCEEDED, 1800, 800)
    truth = gateway.retrieve(attempt_id="pay_man_1", reference=auth.reference)
    assert (truth.status, truth.amount_captured, truth.amount_refunded) == (GatewayStatus.CAPTURED, 1800, 800)


@pytest.mark.localstripe
def test_cancel_voids_an_authorisation(gateway: StripeGateway, recorder: RecordingClient):
    auth = gateway.authorize(charge("pay_void_1", capture=False))
    assert auth.reference is not None

    result = gateway.cancel(
        attempt_id="pay_void_1", reference=auth.reference, idempotency_key="pay_void_1:void"
    )

    assert (result.outcome, result.status, result.reference) == (
        Outcome.SUCCEEDED,
        GatewayStatus.CANCELED,
        auth.reference,
    )
    assert (result.amount_authorized, result.amount_captured) == (0, 0)
    assert recorder.sent[-1].path == f"/v1/payment_intents/{auth.reference}/cancel"
    truth = gateway.retrieve(attempt_id="pay_void_1", reference=auth.reference)
    assert truth.status == GatewayStatus.CANCELED


@pytest.mark.localstripe
def test_full_refund(gateway: StripeGateway, recorder: RecordingClient):
    paid = gateway.authorize(charge("pay_full_1", amount=1200))
    assert paid.reference is not None

    result = gateway.refund(
        attempt_id="pay_full_1",
        reference=paid.reference,
        refund_id="re_full_1",
        amount=1200,
        currency="USD",
        idempotency_key="re_full_1",
    )

    assert (result.outcome, result.status) == (Outcome.SUCCEEDED, GatewayStatus.CAPTURED)
    assert result.reference is not None and result.reference.startswith("re_")
    assert (result.amount_captured, result.amount_refunded) == (1200, 1200)
    assert result.raw["refund_id"] == "re_full_1"
    assert result.raw["status"] == "succeeded"
    create = recorder.sent[-1]
    assert (create.method, create.path) == ("POST", "/v1/refunds")
    assert create.form["payment_intent"] == [paid.reference]
    assert create.form["amount"] == ["1200"]
    assert create.form["metadata[refund_id]"] == ["re_full_1"]


@pytest.mark.localstripe
def test_several_partial_refunds_add_up(gateway: StripeGateway):
    paid = gateway.authorize(charge("pay_parts_1", amount=3000))
    assert paid.reference is not None

    totals = []
    for n, amount in enumerate([1000, 500, 1500], start=1):
        result = gateway.refund(
            attempt_id="pay_parts_1",
            reference=paid.reference,
            refund_id=f"re_part_{n}",
            amount=amount,
            currency="USD",
            idempotency_key=f"re_part_{n}",
        )
        assert result.outcome == Outcome.SUCCEEDED
        totals.append(result.amount_refunded)

    assert totals == [1000, 1500, 3000]
    truth = gateway.retrieve(attempt_id="pay_parts_1", reference=paid.reference)
    assert (truth.status, truth.amount_captured, truth.amount_refunded) == (
        GatewayStatus.CAPTURED,
        3000,
        3000,
    )


@pytest.mark.localstripe
def test_retrieve_tells_the_truth(gateway: StripeGateway):
    held = gateway.authorize(charge("pay_truth_1", capture=False, amount=700))
    paid = gateway.authorize(charge("pay_truth_2", amount=900))
    assert held.reference is not None and paid.reference is not None

    by_reference = gateway.retrieve(attempt_id="pay_truth_1", reference=held.reference)
    assert (by_reference.outcome, by_reference.status) == (Outcome.SUCCEEDED, GatewayStatus.AUTHORIZED)
    assert (by_reference.amount_authorized, by_reference.amount_captured) == (700, 0)

    # a lost answer: found by our attempt id alone
    by_attempt = gateway.retrieve(attempt_id="pay_truth_2", reference=None)
    assert (by_attempt.status, by_attempt.reference, by_attempt.amount_captured) == (
        GatewayStatus.CAPTURED,
        paid.reference,
        900,
    )

    # no charge for an attempt that never reached Stripe (the list held every PaymentIntent)
    never = gateway.retrieve(attempt_id="pay_truth_3", reference=None)
    assert (never.outcome, never.status, never.reference) == (
        Outcome.GATEWAY_ERROR,
        GatewayStatus.NOT_FOUND,
        None,
    )

    missing = gateway.retrieve(attempt_id="pay_truth_4", reference="pi_doesnotexist")
    assert (missing.outcome, missing.status) == (Outcome.GATEWAY_ERROR, GatewayStatus.NOT_FOUND)


@pytest.mark.localstripe
def test_cancel_by_attempt_id_when_the_reference_was_lost(gateway: StripeGateway):
    held = gateway.authorize(charge("pay_lost_1", capture=False))

    voided = gateway.cancel(attempt_id="pay_lost_1", reference=None, idempotency_key="pay_lost_1:void")
    nothing = gateway.cancel(attempt_id="pay_lost_2", reference=None, idempotency_key="pay_lost_2:void")

    assert (voided.outcome, voided.status, voided.reference) == (
        Outcome.SUCCEEDED,
        GatewayStatus.CANCELED,
        held.reference,
    )
    assert (nothing.outcome, nothing.status) == (Outcome.SUCCEEDED, GatewayStatus.NOT_FOUND)


@pytest.mark.localstripe
def test_decline_is_a_result(gateway: StripeGateway):
    # localstripe declines 4000000000000341 at charge time with code card_declined and no
    # decline_code: Stripe's generic decline, soft
    result = gateway.authorize(charge("pay_decl_1", payment_method="pm_card_chargeCustomerFail"))

    assert (result.outcome, result.status) == (Outcome.DECLINED_SOFT, GatewayStatus.DECLINED)
    assert result.decline_code == "card_declined"
    assert result.advice_code is None
    assert result.raw["http_status"] == 402
    assert result.raw["error"]["code"] == "card_declined"
    assert "Your card was declined" in result.message


@pytest.mark.localstripe
def test_requires_action(gateway: StripeGateway, localstripe: str):
    pm = card_payment_method(localstripe, "4000002500003155")  # 3-D Secure required

    result = gateway.authorize(charge("pay_3ds_1", payment_method=pm))

    assert (result.outcome, result.status) == (Outcome.REQUIRES_ACTION, GatewayStatus.REQUIRES_ACTION)
    assert (result.amount_authorized, result.amount_captured) == (0, 0)
    assert result.raw["next_action"] == {"type": "use_stripe_sdk"}
    truth = gateway.retrieve(attempt_id="pay_3ds_1", reference=result.reference)
    assert truth.status == GatewayStatus.REQUIRES_ACTION


@pytest.mark.localstripe
def test_idempotency_keys_are_the_ones_given(gateway: StripeGateway, recorder: RecordingClient):
    held = gateway.authorize(charge("pay_idem_1", capture=False, off_session=True))
    assert held.reference is not None
    gateway.capture(
        attempt_id="pay_idem_1",
        reference=held.reference,
        amount=2500,
        currency="USD",
        idempotency_key="pay_idem_1:capture",
    )
    gateway.refund(
        attempt_id="pay_idem_1",
        reference=held.reference,
        refund_id="re_idem_1",
        amount=100,
        currency="USD",
        idempotency_key="re_idem_1",
    )
    other = gateway.authorize(charge("pay_idem_2", capture=False))
    assert other.reference is not None
    gateway.cancel(attempt_id="pay_idem_2", reference=other.reference, idempotency_key="pay_idem_2:void")

    posts = [(s.path, s.headers.get("Idempotency-Key")) for s in recorder.sent if s.method == "POST"]
    assert posts == [
        ("/v1/payment_intents", "pay_idem_1"),
        (f"/v1/payment_intents/{held.reference}/capture", "pay_idem_1:capture"),
        ("/v1/refunds", "re_idem_1"),
        ("/v1/payment_intents", "pay_idem_2"),
        (f"/v1/payment_intents/{other.reference}/cancel", "pay_idem_2:void"),
    ]
    assert recorder.sent[0].form["off_session"] == ["true"]
    assert all("Stripe-Account" not in s.headers for s in recorder.sent)


@pytest.mark.localstripe
def test_connected_account_travels_in_header_and_reference(gateway: StripeGateway, recorder: RecordingClient):
    # localstripe has no Connect and ignores the header: this checks what we send
    held = gateway.authorize(charge("pay_acct_1", capture=False, connected_account="acct_vendor9"))

    assert held.reference is not None and held.reference.startswith("acct_vendor9/pi_")
    account, intent_id = split_reference(held.reference)
    assert account == "acct_vendor9"
    gateway.capture(
        attempt_id="pay_acct_1", reference=held.reference, amount=2500, currency="USD", idempotency_key="k1"
    )
    assert [s.headers.get("Stripe-Account") for s in recorder.sent] == ["acct_vendor9", "acct_vendor9"]
    assert recorder.sent[1].path == f"/v1/payment_intents/{intent_id}/capture"


# --------------------------------------------------------------------------- network faults


def test_unreachable_api_base_is_a_gateway_error():
    gateway = make_gateway(f"http://127.0.0.1:{free_port()}")  # nothing listens there

    results = [
        gateway.authorize(charge("pay_down_1")),
        gateway.capture(
            attempt_id="pay_down_1", reference="pi_x", amount=1, currency="USD", idempotency_key="k"
        ),
        gateway.refund(
            attempt_id="pay_down_1",
            reference="pi_x",
            refund_id="re_x",
            amount=1,
            currency="USD",
            idempotency_key="k",
        ),
    ]

    for result in results:
        assert (result.outcome, result.status) == (Outcome.GATEWAY_ERROR, GatewayStatus.ERROR)
        assert "ConnectionError" in result.message


def test_timeout_after_sending_is_unknown():
    # given a server that accepts the connection and never answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        config = GatewayConfig(
            account_id="stripe_slow",
            credentials={"secret_key": SECRET},
            settings={"api_base": f"http://127.0.0.1:{silent.getsockname()[1]}"},
            timeout_seconds=0.3,
        )
        gateway = StripeGateway(config)

        # when a charge is sent
        result = gateway.authorize(charge("pay_slow_1"))

    # then the charge may exist
    assert (result.outcome, result.status) == (Outcome.UNKNOWN, GatewayStatus.UNKNOWN)
    assert "ReadTimeout" in result.message


def _connection_error(cause: BaseException | None) -> stripe.APIConnectionError:
    exc = stripe.APIConnectionError("Unexpected error communicating with Stripe.", should_retry=True)
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (requests.exceptions.ConnectTimeout("connect timed out"), Outcome.GATEWAY_ERROR),
        (requests.exceptions.SSLError("handshake failed"), Outcome.GATEWAY_ERROR),
        (
            requests.exceptions.ConnectionError(
                urllib3.exceptions.MaxRetryError(
                    None,  # type: ignore[arg-type]
                    "/v1/payment_intents",
                    urllib3.exceptions.NewConnectionError(None, "Connection refused"),  # type: ignore[arg-type]
                )
            ),
            Outcome.GATEWAY_ERROR,
        ),
        (
            requests.exceptions.ConnectionError(
                urllib3.exceptions.MaxRetryError(
                    None,  # type: ignore[arg-type]
                    "/v1/payment_intents",
                    urllib3.exceptions.NameResolutionError("api.stripe.com", None, OSError("no DNS")),  # type: ignore[arg-type]
                )
            ),
            Outcome.GATEWAY_ERROR,
        ),
        (requests.exceptions.ReadTimeout("read timed out"), Outcome.UNKNOWN),
        (
            requests.exceptions.ConnectionError(
                urllib3.exceptions.ProtocolError(
                    "Connection aborted.",
                    http.client.RemoteDisconnected("Remote end closed connection without response"),
                )
            ),
            Outcome.UNKNOWN,
        ),
        (None, Outcome.UNKNOWN),
    ],
)
def test_connection_errors_before_and_after_sending(cause, expected):
    assert connection_outcome(_connection_error(cause)) == expected


# --------------------------------------------------------------------------- mappings, no server


@pytest.mark.parametrize(
    ("decline_code", "advice_code", "expected"),
    [
        ("insufficient_funds", "try_again_later", Outcome.DECLINED_SOFT),
        ("lost_card", "do_not_try_again", Outcome.DECLINED_HARD),
        ("stolen_card", None, Outcome.DECLINED_HARD),
        ("pickup_card", None, Outcome.DECLINED_HARD),
        ("fraudulent", None, Outcome.DECLINED_HARD),
        ("expired_card", None, Outcome.DECLINED_HARD),
        ("incorrect_number", None, Outcome.DECLINED_HARD),
        ("incorrect_cvc", "confirm_card_data", Outcome.DECLINED_HARD),
        ("security_violation", None, Outcome.DECLINED_HARD),
        ("stop_payment_order", None, Outcome.DECLINED_HARD),
        ("generic_decline", None, Outcome.DECLINED_SOFT),
        ("do_not_honor", None, Outcome.DECLINED_SOFT),
        ("card_declined", None, Outcome.DECLINED_SOFT),
        ("processing_error", "try_again_later", Outcome.DECLINED_SOFT),
        ("card_velocity_exceeded", None, Outcome.DECLINED_SOFT),
        ("authentication_required", None, Outcome.DECLINED_SOFT),
        (None, None, Outcome.DECLINED_SOFT),
        # the issuer's advice outranks our table, both ways
        ("fraudulent", "try_again_later", Outcome.DECLINED_SOFT),
        ("do_not_honor", "do_not_try_again", Outcome.DECLINED_HARD),
        ("generic_decline", "do_not_try_again", Outcome.DECLINED_HARD),
    ],
)
def test_decline_outcome(decline_code, advice_code, expected):
    assert decline_outcome(decline_code, advice_code) == expected


def test_a_canceled_payment_intent_is_a_void_never_a_success_to_whoever_reads_it():
    # One translation of a PaymentIntent (shapes.intent_result) serves the adapter's calls and the
    # webhooks. A canceled one holds no money and never will: as a lookup's answer and as webhook
    # news it is GATEWAY_ERROR/CANCELED (the attempt failed: nothing was charged), never a success;
    # only our own cancel is completed by it (SUCCEEDED/CANCELED: the void we asked for is done).
    canceled = intent_json("pi_void", "canceled")
    canceled["cancellation_reason"] = "abandoned"
    gateway = make_gateway("http://stripe.invalid", CannedClient((200, canceled), (200, canceled)))
    event = stripe_event_json("payment_intent.canceled", canceled)

    looked_up = gateway.retrieve(attempt_id="pay_c_1", reference="pi_void")
    voided = gateway.cancel(attempt_id="pay_c_1", reference="pi_void", idempotency_key="pay_c_1:void")
    [news] = StripeNotifications(GatewayConfig(account_id="stripe_test")).parse_notification(event)

    assert (looked_up.outcome, looked_up.status) == (Outcome.GATEWAY_ERROR, GatewayStatus.CANCELED)
    assert isinstance(news, ChargeNews)
    assert (news.result.outcome, news.result.status) == (Outcome.GATEWAY_ERROR, GatewayStatus.CANCELED)
    assert (news.result.amount_authorized, news.result.amount_captured) == (0, 0)
    assert news.result.message == "webhook payment_intent.canceled: PaymentIntent canceled (abandoned)"
    assert (voided.outcome, voided.status) == (Outcome.SUCCEEDED, GatewayStatus.CANCELED)


def test_webhook_news_of_a_payment_intent_is_the_adapters_translation():
    # The same PaymentIntent read by a call and by a webhook says the same (the webhook's carries
    # only the charge's id, so its amounts come from the PaymentIntent).
    for status, event_type in (
        ("succeeded", "payment_intent.succeeded"),
        ("requires_capture", "payment_intent.amount_capturable_updated"),
        ("requires_payment_method", "payment_intent.payment_failed"),
    ):
        intent = intent_json("pi_same", status)
        if status == "requires_payment_method":
            intent["last_payment_error"] = {"code": "card_declined", "decline_code": "lost_card"}
        called = intent_result(intent, account=None, operation="retrieve")
        intent["latest_charge"] = "ch_canned"
        intent["amount_received"] = called.amount_captured
        [news] = StripeNotifications(GatewayConfig(account_id="stripe_test")).parse_notification(
            stripe_event_json(event_type, intent)
        )
        assert isinstance(news, ChargeNews)
        heard = news.result
        assert (heard.outcome, heard.status, heard.reference) == (
            called.outcome,
            called.status,
            called.reference,
        )
        assert (heard.amount_authorized, heard.amount_captured) == (
            called.amount_authorized,
            called.amount_captured,
        )
        assert (heard.decline_code, heard.advice_code) == (called.decline_code, called.advice_code)


def stripe_event_json(event_type: str, obj: dict) -> Notification:
    """A stored Stripe event carrying ``obj``, as the webhook reader gets it."""
    event_id = f"evt_{event_type}"
    event = {"id": event_id, "object": "event", "type": event_type, "data": {"object": obj}}
    return Notification(event_id=event_id, type=event_type, payload=event)


def test_test_payment_methods_decline_alike_at_stripe_and_in_the_simulator():
    from apps.payments.gateways.simulator.gateway import HARD as SIMULATOR_HARD
    from apps.payments.methods import TEST_METHODS

    assert SIMULATOR_HARD <= HARD_DECLINE_CODES
    for token, method in TEST_METHODS.items():
        if method.decline_code is None:
            continue
        simulator_hard = method.decline_code in SIMULATOR_HARD or method.advice_code == "do_not_try_again"
        expected = Outcome.DECLINED_HARD if simulator_hard else Outcome.DECLINED_SOFT
        assert decline_outcome(method.decline_code, method.advice_code) == expected, token


@pytest.mark.parametrize(
    ("decline_code", "advice_code", "expected"),
    [
        ("insufficient_funds", "try_again_later", Outcome.DECLINED_SOFT),
        ("lost_card", "do_not_try_again", Outcome.DECLINED_HARD),
        ("expired_card", None, Outcome.DECLINED_HARD),
    ],
)
def test_card_error_carries_decline_and_advice_codes(decline_code, advice_code, expected):
    declined = intent_json("pi_declined", "requires_payment_method")
    declined["last_payment_error"] = {"code": "card_declined", "decline_code": decline_code}
    body = error_json(
        "card_error",
        "Your card was declined.",
        code="card_declined",
        decline_code=decline_code,
        advice_code=advice_code,
        payment_intent=declined,
    )
    gateway = make_gateway("http://stripe.invalid", CannedClient((402, body)))

    result = gateway.authorize(charge("pay_card_1"))

    assert (result.outcome, result.status) == (expected, GatewayStatus.DECLINED)
    assert (result.decline_code, result.advice_code) == (decline_code, advice_code)
    assert result.reference == "pi_declined"
    assert result.raw["error"]["decline_code"] == decline_code
    assert result.raw["status"] == "requires_payment_method"


@pytest.mark.parametrize(
    ("http_status", "body", "outcome", "status", "says"),
    [
        (429, error_json("invalid_request_error", "Too many requests", code="rate_limit"), Outcome.GATEWAY_ERROR, GatewayStatus.ERROR, "RateLimitError"),
        (500, error_json("api_error", "Something went wrong on Stripe's end."), Outcome.UNKNOWN, GatewayStatus.UNKNOWN, "HTTP 500"),
        (503, error_json("api_error", "Service unavailable"), Outcome.GATEWAY_ERROR, GatewayStatus.ERROR, "HTTP 503"),
        (401, error_json("invalid_request_error", "Invalid API Key provided: sk_test_***"), Outcome.GATEWAY_ERROR, GatewayStatus.ERROR, "Invalid API Key"),
        (403, error_json("invalid_request_error", "Not allowed"), Outcome.GATEWAY_ERROR, GatewayStatus.ERROR, "PermissionError"),
        (400, error_json("invalid_request_error", "No such PaymentMethod: 'pm_nope'", code="resource_missing", param="payment_method"), Outcome.GATEWAY_ERROR, GatewayStatus.ERROR, "No such PaymentMethod"),
        (409, error_json("api_error", "A request with this key is in progress", code="lock_timeout"), Outcome.UNKNOWN, GatewayStatus.UNKNOWN, "in progress"),
        (400, error_json("idempotency_error", "Keys for idempotent requests can only be used with the same parameters"), Outcome.UNKNOWN, GatewayStatus.UNKNOWN, "IdempotencyError"),
    ],
)  # fmt: skip
def test_processor_errors_are_results_never_exceptions(http_status, body, outcome, status, says):
    gateway = make_gateway("http://stripe.invalid", CannedClient((http_status, body)))

    result = gateway.authorize(charge("pay_err_1"))

    assert (result.outcome, result.status) == (outcome, status)
    assert says in result.message
    assert result.raw["http_status"] == http_status


def test_refused_operation_reports_the_intent_state():
    canceled = intent_json("pi_gone", "canceled")
    refusal = error_json(
        "invalid_request_error",
        "This PaymentIntent's status is canceled.",
        code="payment_intent_unexpected_state",
        payment_intent=canceled,
    )
    gateway = make_gateway("http://stripe.invalid", CannedClient((400, refusal), (400, refusal)))

    capture = gateway.capture(
        attempt_id="pay_x_1", reference="pi_gone", amount=1000, currency="USD", idempotency_key="k"
    )
    cancel = gateway.cancel(attempt_id="pay_x_1", reference="pi_gone", idempotency_key="k2")

    assert (capture.outcome, capture.status, capture.reference) == (
        Outcome.GATEWAY_ERROR,
        GatewayStatus.CANCELED,
        "pi_gone",
    )
    assert (cancel.outcome, cancel.status) == (Outcome.SUCCEEDED, GatewayStatus.CANCELED)  # already void


def test_lookup_falls_back_to_search_beyond_the_window():
    # given a list whose first page already reaches past the window, and Search finding the attempt
    old = int(time.time()) - 7200
    page = {
        "object": "list",
        "data": [intent_json("pi_other", created=old, attempt_id="pay_other")],
        "has_more": True,
    }
    found = {
        "object": "search_result",
        "data": [intent_json("pi_old", attempt_id="pay_old_1", created=old - 60)],
    }
    truth = intent_json("pi_old", attempt_id="pay_old_1", amount=4200, fee=152)
    client = CannedClient((200, page), (200, found), (200, truth))
    gateway = make_gateway("http://stripe.invalid", client)

    result = gateway.retrieve(attempt_id="pay_old_1", reference=None)

    assert (result.outcome, result.status, result.reference) == (
        Outcome.SUCCEEDED,
        GatewayStatus.CAPTURED,
        "pi_old",
    )
    assert (result.amount_captured, result.fee) == (4200, 152)
    assert [s.path for s in client.sent] == [
        "/v1/payment_intents",
        "/v1/payment_intents/search",
        "/v1/payment_intents/pi_old",
    ]
    assert client.sent[1].form["query"] == ["metadata['attempt_id']:'pay_old_1'"]


def test_lookup_says_not_found_only_when_it_covered_everything():
    old = int(time.time()) - 7200
    page = {
        "object": "list",
        "data": [intent_json("pi_other", created=old, attempt_id="pay_other")],
        "has_more": True,
    }
    recent = {"object": "list", "data": [intent_json("pi_new", attempt_id="pay_new")], "has_more": True}
    empty = {"object": "search_result", "data": []}
    no_search = error_json("invalid_request_error", "Not Found")

    covered = make_gateway("http://stripe.invalid", CannedClient((200, page), (200, empty)))
    direct = make_gateway(
        "http://stripe.invalid", CannedClient((200, page), (200, empty)), direct_charges=True
    )
    too_many = make_gateway(
        "http://stripe.invalid", CannedClient((200, recent), (200, empty)), lookup_max_pages=1
    )
    searchless = make_gateway("http://stripe.invalid", CannedClient((200, page), (404, no_search)))

    assert covered.retrieve(attempt_id="pay_q_1", reference=None).status == GatewayStatus.NOT_FOUND
    for gateway in (direct, too_many, searchless):
        result = gateway.retrieve(attempt_id="pay_q_1", reference=None)
        assert (result.outcome, result.status) == (Outcome.UNKNOWN, GatewayStatus.UNKNOWN)


def test_missing_secret_key_is_a_configuration_error():
    with pytest.raises(GatewayCallError, match="secret_key"):
        StripeGateway(GatewayConfig(account_id="stripe_bad", credentials={}))


def test_registry_builds_the_stripe_gateway():
    from apps.payments.gateways.registry import gateway_for

    gateway = gateway_for(
        "stripe", GatewayConfig(account_id="stripe_main", credentials={"secret_key": SECRET})
    )

    assert isinstance(gateway, StripeGateway)
    assert gateway.kind == "stripe"
