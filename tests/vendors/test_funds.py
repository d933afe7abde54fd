"""Whole funds flows through the real services and the ledger: a split charge, transfers (held and
released), payouts, refunds before and after the transfer and after the payout, and a negative
balance recovered from the next transfer. The durable tasks the flow schedules run in-process
(``run_tasks``) as the worker would run them."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import responses

from apps.ledger.models import LedgerEvent
from apps.payments.gateways.connect import ConnectAccount, ConnectStatus
from apps.payments.models import GatewayAccount, PaymentIntent, SimulatorCharge
from apps.payments.services import PaymentError, payment_intent_create, payment_refund
from apps.vendors.funds import FundsError, payouts_due, payouts_run, vendor_payout_create
from apps.vendors.models import CommissionPolicy, Payout, Transfer, Vendor
from apps.vendors.selectors import vendor_balances
from apps.vendors.services import vendor_account_apply, vendor_create
from apps.webhooks.models import OutboundEvent
from tests.ledger.observe import entries_of, nets_from_replay, nonzero_balances
from tests.support import run_durable_tasks as run_tasks

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def market(in_tenant_a):
    GatewayAccount.objects.filter(kind="simulator").update(settings={"latency_ms": {"p50": 0}})
    CommissionPolicy.objects.update(percent_bps=1000, fixed={}, fee_policy="platform")


def stripe_gateway(**credentials) -> GatewayAccount:
    """The marketplace's Stripe account (for Connect); routing still sends charges to the simulator."""
    gateway = GatewayAccount(name="stripe_main", kind="stripe", settings={"api_base": "https://stripe.test"})
    gateway.credentials = {"secret_key": "sk_test_123", **credentials}
    gateway.save()
    return gateway


def real_vendor(*, enabled: bool) -> Vendor:
    """A vendor with a real (not simulated) Connect account."""
    v = vendor_create(email="a@shop.test", name="alice", country="US", default_currency="usd")
    return vendor_account_apply(vendor=v, account=account(v, enabled=enabled, real=True))


def vendor(name: str, *, enabled: bool = True, **fields) -> Vendor:
    v = vendor_create(email=f"{name}@shop.test", name=name, country="US", default_currency="usd", **fields)
    if enabled:
        v = vendor_account_apply(vendor=v, account=account(v, enabled=True))
    return v


def account(v: Vendor, *, enabled: bool, real: bool = False) -> ConnectAccount:
    return ConnectAccount(
        id=("acct_1PgafTB7WZ01zgkW" if real else f"acct_sim_{v.id[4:]}"),
        status=ConnectStatus.ACTIVE if enabled else ConnectStatus.RESTRICTED,
        charges_enabled=enabled,
        payouts_enabled=enabled,
        details_submitted=True,
        currently_due=() if enabled else ("external_account",),
        past_due=(),
        disabled_reason=None,
        country="US",
        default_currency="usd",
        email=v.email,
    )


def pay(splits, amount=10_000, **kw) -> PaymentIntent:
    intent = payment_intent_create(
        amount=amount, currency="usd", payment_method="pm_card_visa", confirm=True, splits=splits, **kw
    )
    assert intent.status in ("succeeded", "requires_capture"), intent.last_error
    return intent


def lines_of(event_type: str, stream: str | None = None) -> list[tuple[str, str, int]]:
    qs = LedgerEvent.objects.filter(type=event_type)
    if stream:
        qs = qs.filter(stream=stream)
    event = qs.order_by("-id").first()
    assert event is not None, event_type
    return [(code, side, amount) for code, _cur, side, amount in entries_of(event.pk)]


def money(amount: int) -> list[dict]:
    return [{"amount": amount, "currency": "usd"}] if amount else []


def balances(v: Vendor) -> tuple[list, list, list]:
    b = vendor_balances(vendor_id=v.id)
    return b["available"], b["pending"], b["held"]


# --------------------------------------------------------------------------- charge → transfer → payout


def test_a_split_charge_is_transferred_and_paid_out_with_exact_ledger_lines(market):
    a, b = vendor("alice"), vendor("bob")

    intent = pay([{"vendor": a.id, "amount": 6000}, {"vendor": b.id, "amount": 4000}])

    # the capture: 10% commission each, the 3.20 fee (2.9% + 0.30) borne by the platform
    assert lines_of("ChargeCaptured", intent.id) == [
        ("processor_clearing:primary", "D", 10_000),
        (f"vendor_pending:{a.id}", "C", 5400),
        (f"vendor_pending:{b.id}", "C", 3600),
        ("platform_revenue", "C", 1000),
        ("processor_fees", "D", 320),
        ("processor_clearing:primary", "C", 320),
    ]
    assert balances(a) == ([], money(5400), [])

    run_tasks()  # transfers created and sent (simulated: the marketplace has no Stripe gateway)

    ta = Transfer.objects.get(payment_id=intent.id, vendor=a)
    assert (ta.status, ta.amount, ta.simulated, ta.transfer_group) == (
        "paid",
        5400,
        True,
        f"group_{intent.id}",
    )
    assert lines_of("TransferPaid", ta.id) == [
        (f"vendor_pending:{a.id}", "D", 5400),
        (f"vendor_payable:{a.id}", "C", 5400),
        ("connected_balances", "D", 5400),
        ("processor_clearing:primary", "C", 5400),
    ]
    assert balances(a) == (money(5400), [], []) and balances(b) == (money(3600), [], [])
    assert OutboundEvent.objects.filter(type="transfer.created").count() == 2

    (payout,) = vendor_payout_create(vendor_id=a.id, manual=True)
    run_tasks()

    payout.refresh_from_db()
    assert (payout.status, payout.amount, payout.simulated) == ("paid", 5400, True)
    assert lines_of("PayoutSent", payout.id) == [
        (f"vendor_payable:{a.id}", "D", 5400),
        ("connected_balances", "C", 5400),
    ]
    assert balances(a) == ([], [], [])
    assert OutboundEvent.objects.get(type="payout.paid").data["id"] == payout.id
    assert nonzero_balances() == nets_from_replay()  # balances are the events' sum


def test_shares_fee_policies_and_overrides(market):
    CommissionPolicy.objects.update(fee_policy="vendor")
    a = vendor("alice")
    b = vendor("bob", payout_minimum=0)
    Vendor.objects.filter(pk=b.pk).update(commission_percent_bps=500, commission_fixed={"usd": 25})

    intent = pay([{"vendor": a.id, "share": "2/3"}, {"vendor": b.id, "share": "1/3"}], amount=9_001)

    # parts 6001 / 3000; fee 291 (2.9% of 9001 = 261.03 -> 261, + 30) split 194 / 97, borne by vendors
    assert lines_of("ChargeCaptured", intent.id) == [
        ("processor_clearing:primary", "D", 9001),
        (f"vendor_pending:{a.id}", "C", 6001 - 600 - 194),
        (f"vendor_pending:{b.id}", "C", 3000 - 150 - 25 - 97),
        ("platform_revenue", "C", 600 + 175),
        ("processor_fees", "C", 291),
        ("processor_fees", "D", 291),
        ("processor_clearing:primary", "C", 291),
    ]


# --------------------------------------------------------------------------- held and released


def test_a_vendor_who_cannot_be_paid_yet_has_its_transfer_held_then_released(market):
    a = vendor("alice", enabled=False)

    intent = pay([{"vendor": a.id, "amount": 5000}], amount=5000)
    run_tasks()

    transfer = Transfer.objects.get(payment_id=intent.id)
    assert transfer.status == "held"
    assert lines_of("TransferHeld", transfer.id) == [
        (f"vendor_pending:{a.id}", "D", 4500),
        (f"vendor_held:{a.id}", "C", 4500),
    ]
    assert balances(a) == ([], [], money(4500))
    with pytest.raises(FundsError, match="payouts are not enabled"):
        vendor_payout_create(vendor_id=a.id, manual=True)

    # Stripe says the account can now be paid (account.updated, or the return page)
    vendor_account_apply(vendor=a, account=account(a, enabled=True))
    run_tasks()

    transfer.refresh_from_db()
    assert transfer.status == "paid"
    assert lines_of("TransferReleased", transfer.id) == [
        (f"vendor_held:{a.id}", "D", 4500),
        (f"vendor_pending:{a.id}", "C", 4500),
    ]
    assert balances(a) == (money(4500), [], [])
    updated = OutboundEvent.objects.filter(type="vendor.updated", object_id=a.id).order_by("created_at")
    assert updated.last().data["status"] == "active" and updated.last().data["payouts_enabled"] is True


# --------------------------------------------------------------------------- refunds


def test_a_refund_before_the_transfer_comes_out_of_pending_and_shrinks_the_transfer(market):
    a, b = vendor("alice"), vendor("bob")
    intent = pay([{"vendor": a.id, "amount": 6000}, {"vendor": b.id, "amount": 4000}])

    payment_refund(intent_id=intent.id, amount=2500)  # before the worker made the transfers

    refund_event = lines_of("RefundSucceeded", intent.id)
    # 2500 unwound over (5400 + 600, 3600 + 400) by largest remainder: a 1350 + 150, b 900 + 100
    assert refund_event == [
        (f"vendor_pending:{a.id}", "D", 1350),
        (f"vendor_pending:{b.id}", "D", 900),
        ("platform_revenue", "D", 250),
        ("processor_clearing:primary", "C", 2500),
    ]
    run_tasks()
    assert Transfer.objects.get(payment_id=intent.id, vendor=a).amount == 5400 - 1350
    assert balances(a) == (money(4050), [], []) and balances(b) == (money(2700), [], [])
    assert nonzero_balances() == nets_from_replay()  # balances are the events' sum


def test_a_refund_after_the_transfer_takes_it_back_from_the_connected_account(market):
    a = vendor("alice")
    intent = pay([{"vendor": a.id, "amount": 10_000}])
    run_tasks()

    payment_refund(intent_id=intent.id, amount=10_000)
    run_tasks()

    transfer = Transfer.objects.get(payment_id=intent.id)
    assert transfer.amount_reversed == 9000
    assert lines_of("RefundSucceeded", intent.id) == [
        (f"vendor_payable:{a.id}", "D", 9000),
        ("platform_revenue", "D", 1000),
        ("processor_clearing:primary", "C", 10_000),
    ]
    assert lines_of("TransferReversed", transfer.id) == [
        ("processor_clearing:primary", "D", 9000),
        ("connected_balances", "C", 9000),
    ]
    assert balances(a) == ([], [], [])
    assert nonzero_balances() == nets_from_replay()  # balances are the events' sum


def test_a_refund_after_the_payout_leaves_a_debt_recovered_from_the_next_transfer(market):
    a = vendor("alice")
    first = pay([{"vendor": a.id, "amount": 10_000}])
    run_tasks()
    vendor_payout_create(vendor_id=a.id, manual=True)
    run_tasks()

    payment_refund(intent_id=first.id, amount=4000)
    run_tasks()
    assert balances(a) == (money(-3600), [], [])  # owed back by the vendor; nothing to reverse
    assert not LedgerEvent.objects.filter(type="TransferReversed").exists()

    second = pay([{"vendor": a.id, "amount": 5000}], amount=5000)
    run_tasks()

    transfer = Transfer.objects.get(payment_id=second.id)
    assert (transfer.amount, transfer.amount_recovered) == (4500, 3600)
    assert lines_of("TransferPaid", transfer.id) == [
        (f"vendor_pending:{a.id}", "D", 4500),
        (f"vendor_payable:{a.id}", "C", 4500),
        ("connected_balances", "D", 900),
        ("processor_clearing:primary", "C", 900),
    ]
    assert balances(a) == (money(900), [], [])
    assert nonzero_balances() == nets_from_replay()  # balances are the events' sum


# --------------------------------------------------------------------------- payouts


def test_scheduled_payouts_respect_minimum_schedule_and_holds(market):
    daily = vendor("daily", payout_schedule="daily", payout_minimum=5000)
    manual = vendor("manual", payout_schedule="manual")
    pay([{"vendor": daily.id, "amount": 5000}, {"vendor": manual.id, "amount": 5000}])
    run_tasks()

    assert payouts_due() == [daily.id]
    assert payouts_run() == 0  # 4500 is under the 5000 minimum
    Vendor.objects.filter(pk=daily.pk).update(payout_minimum=4500)
    from apps.vendors.services import vendor_payouts_hold, vendor_payouts_release

    vendor_payouts_hold(vendor=Vendor.objects.get(pk=daily.pk))
    assert payouts_run() == 0
    vendor_payouts_release(vendor=Vendor.objects.get(pk=daily.pk))
    assert payouts_run() == 1
    run_tasks()
    assert payouts_due() == []  # paid today
    assert list(Payout.objects.values_list("vendor_id", "amount", "status")) == [(daily.id, 4500, "paid")]
    with pytest.raises(FundsError, match="no available balance"):
        vendor_payout_create(vendor_id=daily.id, manual=True)


# --------------------------------------------------------------------------- bad plans


@pytest.mark.parametrize(
    ("plan", "code", "param"),
    [
        (
            lambda a, b, d, e: [{"vendor": a, "amount": 6000}, {"vendor": b, "amount": 3000}],
            "split_total_mismatch",
            "splits",
        ),
        (lambda a, b, d, e: [{"vendor": "ven_nope", "amount": 10_000}], "vendor_unknown", "splits[0].vendor"),
        (lambda a, b, d, e: [{"vendor": d, "amount": 10_000}], "vendor_disabled", "splits[0].vendor"),
        (lambda a, b, d, e: [{"vendor": e, "amount": 10_000}], "split_currency_mismatch", "splits[0].vendor"),
        (
            lambda a, b, d, e: [{"vendor": a, "amount": 5000}, {"vendor": b, "share": "0.5"}],
            "split_plan_mixed",
            "splits",
        ),
        (
            lambda a, b, d, e: [{"vendor": a, "share": 0.5}, {"vendor": b, "share": 0.5}],
            None,
            "splits[0].share",
        ),
        (lambda a, b, d, e: [], "split_plan_invalid", "splits"),
    ],
)
def test_a_bad_split_plan_is_refused_and_nothing_is_charged(market, plan, code, param):
    a, b = vendor("alice"), vendor("bob")
    disabled = vendor("gone")
    Vendor.objects.filter(pk=disabled.pk).update(status="disabled")
    euro = vendor_create(email="e@shop.test", name="euro", country="FR", default_currency="eur")

    with pytest.raises(PaymentError) as refused:
        pay(plan(a.id, b.id, disabled.id, euro.id))

    assert refused.value.param is not None and refused.value.param.startswith(param)
    if code:
        assert refused.value.code == code, (refused.value.code, str(refused.value))
    assert not PaymentIntent.objects.exists() and not SimulatorCharge.objects.exists()


# --------------------------------------------------------------------------- Stripe Connect


@responses.activate
def test_on_stripe_the_transfer_and_payout_are_made_with_connect(market):
    # The marketplace has a Stripe account for Connect; its routing still sends charges to the
    # simulator, so the transfer comes from the platform's Stripe balance (no source_transaction).
    stripe_gateway()
    a = real_vendor(enabled=True)
    transfer_json = json.loads((FIXTURES / "transfer.json").read_text())
    payout_json = json.loads((FIXTURES / "payout.json").read_text())
    responses.post("https://stripe.test/v1/transfers", json={**transfer_json, "amount": 9000})
    responses.post("https://stripe.test/v1/payouts", json={**payout_json, "amount": 9000})

    intent = pay([{"vendor": a.id, "amount": 10_000}])
    run_tasks()
    vendor_payout_create(vendor_id=a.id, manual=True)
    run_tasks()

    transfer_call, payout_call = responses.calls
    form = dict(parse_qsl(str(transfer_call.request.body)))
    assert form["amount"] == "9000" and form["currency"] == "usd"
    assert form["destination"] == "acct_1PgafTB7WZ01zgkW" and form["transfer_group"] == f"group_{intent.id}"
    transfer = Transfer.objects.get(payment_id=intent.id)
    assert transfer_call.request.headers["Idempotency-Key"] == f"{transfer.id}:create"
    assert transfer.stripe_transfer_id == transfer_json["id"] and not transfer.simulated
    assert payout_call.request.headers["Stripe-Account"] == "acct_1PgafTB7WZ01zgkW"
    payout = Payout.objects.get()
    assert payout.status == "pending" and payout.stripe_payout_id == payout_json["id"]


# --------------------------------------------------------------------------- Connect webhooks


def test_connect_webhooks_enable_a_vendor_and_settle_its_payout(market, host_client):
    from tests.webhooks.processors import (
        WEBHOOK_SECRET,
        post_stripe,
        process_queued,
        stripe_body,
        stripe_event,
    )

    stripe_gateway(webhook_secret=WEBHOOK_SECRET)
    a = real_vendor(enabled=False)
    intent = pay([{"vendor": a.id, "amount": 2000}], amount=2000)
    run_tasks()
    assert Transfer.objects.get(payment_id=intent.id).status == "held"
    stripe_account_json = json.loads((FIXTURES / "account.json").read_text())
    enabled = {
        **stripe_account_json,
        "id": "acct_1PgafTB7WZ01zgkW",
        "charges_enabled": True,
        "payouts_enabled": True,
        "details_submitted": True,
        "requirements": {
            **stripe_account_json["requirements"],
            "currently_due": [],
            "past_due": [],
            "disabled_reason": None,
        },
    }
    client = host_client("alpha.localhost")

    with responses.RequestsMock() as stripe:
        stripe.post(
            "https://stripe.test/v1/transfers", json=json.loads((FIXTURES / "transfer.json").read_text())
        )
        answer = post_stripe(client, stripe_body(stripe_event("account.updated", enabled, id="evt_acct_1")))
        assert answer.status_code == 200
        process_queued()
        run_tasks()

    a.refresh_from_db()
    assert (a.status, a.payouts_enabled) == ("active", True)
    assert Transfer.objects.get(payment_id=intent.id).status == "paid"

    payout = Payout.objects.create(
        vendor=a, amount=1800, currency="USD", stripe_payout_id="po_1OaFDbEcg9tTZuTgNYmX0PKB"
    )
    paid = {
        **json.loads((FIXTURES / "payout.json").read_text()),
        "id": payout.stripe_payout_id,
        "status": "paid",
    }
    event = stripe_event("payout.paid", paid, id="evt_po_1", account="acct_1PgafTB7WZ01zgkW")
    assert post_stripe(client, stripe_body(event)).status_code == 200
    process_queued()

    payout.refresh_from_db()
    assert payout.status == "paid"
    assert OutboundEvent.objects.filter(type="payout.paid", object_id=payout.id).exists()


# --------------------------------------------------------------------------- disputes


def test_a_dispute_on_a_split_payment_is_borne_by_its_vendors_and_returned_when_won(market):
    from apps.payments.disputes import dispute_close, dispute_open
    from apps.payments.models import PaymentAttempt

    a, b = vendor("alice"), vendor("bob")
    intent = pay([{"vendor": a.id, "amount": 6000}, {"vendor": b.id, "amount": 4000}])
    run_tasks()
    attempt = PaymentAttempt.objects.get(intent_id=intent.id, status="captured")

    dispute = dispute_open(
        attempt=attempt, reference="dp_1", amount=5000, currency="usd", reason="fraudulent"
    )

    # 5000 split 3000 / 2000 by the parts, 10% of each out of platform revenue
    assert lines_of("DisputeOpened", intent.id) == [
        (f"vendor_payable:{a.id}", "D", 2700),
        (f"vendor_payable:{b.id}", "D", 1800),
        ("platform_revenue", "D", 500),
        ("processor_clearing:primary", "C", 5000),
    ]
    assert balances(a) == (money(5400 - 2700), [], [])
    assert dispute_open(attempt=attempt, reference="dp_1", amount=5000, currency="usd").pk == dispute.pk

    dispute_close(dispute=dispute, won=True)
    run_tasks()
    assert not LedgerEvent.objects.filter(type="TransferReversed").exists()  # won: nothing taken back

    assert lines_of("DisputeWon", intent.id) == [
        ("processor_clearing:primary", "D", 5000),
        (f"vendor_payable:{a.id}", "C", 2700),
        (f"vendor_payable:{b.id}", "C", 1800),
        ("platform_revenue", "C", 500),
    ]
    assert balances(a) == (money(5400), [], []) and balances(b) == (money(3600), [], [])


def test_the_platform_bears_disputes_when_its_policy_says_so(market):
    from apps.payments.disputes import dispute_open
    from apps.payments.models import PaymentAttempt

    CommissionPolicy.objects.update(dispute_policy="platform")
    a = vendor("alice")
    intent = pay([{"vendor": a.id, "amount": 10_000}])
    run_tasks()

    dispute_open(
        attempt=PaymentAttempt.objects.get(intent_id=intent.id, status="captured"),
        reference="dp_2",
        amount=10_000,
        currency="USD",
    )

    assert lines_of("DisputeOpened", intent.id) == [
        ("disputes", "D", 10_000),
        ("processor_clearing:primary", "C", 10_000),
    ]
    assert balances(a) == (money(9000), [], [])


def test_operators_see_balances_transfers_payouts_and_disputes_and_pay_out_now(market, host_client):
    from django.contrib.admin.utils import quote
    from django.contrib.auth import get_user_model

    a = vendor("alice")
    intent = pay([{"vendor": a.id, "amount": 10_000}])
    run_tasks()
    client = host_client("alpha.localhost")
    client.force_login(get_user_model().objects.get(username="ops@alpha.test"))

    page = client.get(f"/admin/vendors/vendor/{quote(a.id)}/change/").content.decode()
    transfers = client.get("/admin/vendors/transfer/").content.decode()
    action = client.post("/admin/vendors/vendor/", {"action": "pay_out_now", "_selected_action": [a.id]})
    run_tasks()
    payouts = client.get("/admin/vendors/payout/").content.decode()
    disputes = client.get("/admin/payments/dispute/")

    assert "available" in page and "90.00" in page  # the ledger's figure, formatted
    assert intent.id in transfers
    assert action.status_code == 302 and Payout.objects.get().status == "paid"
    assert Payout.objects.get().id in payouts
    assert disputes.status_code == 200


@responses.activate
def test_a_transfer_for_a_charge_on_stripe_waits_for_that_charge_source_transaction(market):
    from apps.payments.models import PaymentAttempt

    stripe_account = stripe_gateway()
    a = real_vendor(enabled=True)
    responses.get(
        "https://stripe.test/v1/payment_intents/pi_3QxSplit",
        json={"id": "pi_3QxSplit", "object": "payment_intent", "latest_charge": "ch_3QxSplit"},
    )
    responses.post(
        "https://stripe.test/v1/transfers", json=json.loads((FIXTURES / "transfer.json").read_text())
    )
    intent = payment_intent_create(
        amount=10_000,
        currency="usd",
        payment_method="pm_card_visa",
        confirm=False,
        splits=[{"vendor": a.id, "amount": 10_000}],
    )
    # as if Stripe took the charge: the attempt and the payment name the Stripe account
    from apps.payments.services import payment_confirm

    payment_confirm(intent_id=intent.id)
    PaymentAttempt.objects.filter(intent_id=intent.id).update(
        gateway_account=stripe_account, reference="pi_3QxSplit"
    )
    PaymentIntent.objects.filter(pk=intent.id).update(gateway_account=stripe_account)

    run_tasks()

    _, transfer_call = responses.calls
    form = dict(parse_qsl(str(transfer_call.request.body)))
    assert form["source_transaction"] == "ch_3QxSplit" and form["amount"] == "9000"
    assert lines_of("TransferPaid")[-1] == ("processor_clearing:stripe_main", "C", 9000)


def test_the_whole_flow_charge_split_transfer_payout_refund_dispute(market):
    """One payment through every step, with the ledger's figures checked at the end."""
    from apps.ledger.selectors import balance_get
    from apps.payments.disputes import dispute_close, dispute_open
    from apps.payments.models import PaymentAttempt

    a, b = vendor("alice"), vendor("bob")
    intent = pay([{"vendor": a.id, "amount": 7000}, {"vendor": b.id, "amount": 3000}])  # nets 6300 / 2700
    run_tasks()  # transfers
    vendor_payout_create(vendor_id=a.id, manual=True)  # alice's 6300 paid out; bob's 2700 stays
    run_tasks()
    payment_refund(intent_id=intent.id, amount=2000)  # alice 1260 + 140, bob 540 + 60
    run_tasks()
    attempt = PaymentAttempt.objects.get(intent_id=intent.id, status="captured")
    lost = dispute_open(
        attempt=attempt, reference="dp_whole", amount=1000, currency="usd"
    )  # a 630+70, b 270+30
    dispute_close(dispute=lost, won=False)
    run_tasks()  # the lost dispute's share still in bob's connected account is taken back

    assert balances(a) == (money(-1260 - 630), [], [])  # owed: kept back from alice's next transfers
    assert balances(b) == (money(2700 - 540 - 270), [], [])
    assert balance_get(code="platform_revenue", currency="USD") == 1000 - 200 - 100
    # bob's refund and dispute shares came back from his connected account; alice's was paid out
    assert balance_get(code="connected_balances", currency="USD") == 2700 - 540 - 270
    assert balance_get(code="processor_clearing:primary", currency="USD") == (
        10_000 - 320 - 9000 + 540 - 2000 - 1000 + 270
    )
    assert nonzero_balances() == nets_from_replay()


def test_a_refund_before_a_held_transfer_leaves_the_fee_the_vendor_bore_as_a_recovered_debt(market):
    CommissionPolicy.objects.update(fee_policy="vendor")
    a = vendor("alice", enabled=False)
    first = pay([{"vendor": a.id, "amount": 10_000}])
    run_tasks()  # held: 10000 - 1000 commission - 320 fee = 8680

    payment_refund(intent_id=first.id, amount=10_000)

    # the held 8680 comes back out of held; the 320 fee the vendor bore is a debt on available
    assert lines_of("RefundSucceeded", first.id) == [
        (f"vendor_held:{a.id}", "D", 8680),
        (f"vendor_payable:{a.id}", "D", 320),
        ("platform_revenue", "D", 1000),
        ("processor_clearing:primary", "C", 10_000),
    ]
    assert balances(a) == (money(-320), [], [])
    assert Transfer.objects.get(payment_id=first.id).status == "canceled"

    vendor_account_apply(vendor=a, account=account(a, enabled=True))
    second = pay([{"vendor": a.id, "amount": 10_000}])
    run_tasks()

    transfer = Transfer.objects.get(payment_id=second.id)
    assert (transfer.amount, transfer.amount_recovered) == (8680, 320)
    assert balances(a) == (money(8360), [], [])
    assert nonzero_balances() == nets_from_replay()
