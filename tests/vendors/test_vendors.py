"""Vendors in a marketplace schema: ids, the provisioned commission policy, invites, applying a
Stripe account, split terms from the database, and the operator's admin."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_tenants.utils import tenant_context

from apps.payments.gateways.connect import ConnectAccount, ConnectStatus
from apps.vendors.models import CommissionPolicy, Vendor, VendorInvite
from apps.vendors.selectors import commission_policy_terms, vendor_split_terms
from apps.vendors.services import (
    VendorError,
    commission_policy_install,
    hash_invite_token,
    vendor_account_apply,
    vendor_create,
    vendor_invite_create,
    vendor_invite_redeem,
    vendor_payouts_hold,
)
from apps.vendors.splits import CommissionTerms, FeePolicy, split_allocate, split_plan_validate


def make_vendor(**overrides) -> Vendor:
    fields = {"email": "shop@example.com", "name": "Shop", "country": "us", "default_currency": "USD"}
    return vendor_create(**(fields | overrides))


def connect_account(**overrides: Any) -> ConnectAccount:
    fields: dict[str, Any] = {
        "id": "acct_1PgafTB7WZ01zgkW",
        "status": ConnectStatus.RESTRICTED,
        "charges_enabled": True,
        "payouts_enabled": False,
        "details_submitted": True,
        "currently_due": ("external_account",),
        "past_due": ("external_account",),
        "disabled_reason": "requirements.past_due",
        "country": "US",
        "default_currency": "usd",
        "email": "shop@example.com",
    }
    return ConnectAccount(**(fields | overrides))


def test_vendor_ids_are_prefixed_and_unguessable(in_tenant_a):
    first, second = make_vendor(), make_vendor()
    assert first.id.startswith("ven_") and len(first.id) == 28
    assert first.id[4:].isalnum() and first.id != second.id
    assert (first.status, first.country, first.default_currency, first.payout_schedule) == (
        "invited",
        "US",
        "usd",
        "weekly",
    )
    assert first.payable_account == f"vendor_payable:{first.id}"


def test_vendor_create_refuses_bad_input(in_tenant_a):
    for overrides, param in (
        ({"name": " "}, "name"),
        ({"country": "USA"}, "country"),
        ({"default_currency": "dollars"}, "default_currency"),
        ({"payout_minimum": -1}, "payout_minimum"),
        ({"payout_schedule": "hourly"}, "payout_schedule"),
    ):
        with pytest.raises(VendorError) as exc:
            make_vendor(**overrides)
        assert exc.value.param == param


def test_each_marketplace_is_provisioned_with_a_commission_policy(in_tenant_a):
    policy = CommissionPolicy.objects.get()
    assert (policy.percent_bps, policy.fixed, policy.fee_policy) == (1000, {}, "platform")
    assert str(policy) == "10% commission"
    assert commission_policy_install() == policy  # idempotent
    assert commission_policy_terms() == CommissionTerms(
        percent_bps=1000, fixed={}, fee_policy=FeePolicy.PLATFORM
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        CommissionPolicy.objects.create()  # one per marketplace


def test_policies_are_per_marketplace(tenant_a, tenant_b, db):
    with tenant_context(tenant_a):
        CommissionPolicy.objects.update(percent_bps=1500)
    with tenant_context(tenant_b):
        assert CommissionPolicy.objects.get().percent_bps == 1000


def test_split_terms_from_the_database(in_tenant_a):
    CommissionPolicy.objects.update(fixed={"usd": 30}, fee_policy="pro_rata")
    plain = make_vendor(name="Plain")
    special = make_vendor(name="Special")
    Vendor.objects.filter(pk=special.pk).update(
        commission_percent_bps=500, commission_fixed={}, fee_policy="vendor", status="active"
    )
    terms = vendor_split_terms([plain.id, special.id, "ven_missing"])
    plan = split_plan_validate(
        [{"vendor": plain.id, "amount": 6000}, {"vendor": special.id, "amount": 4000}],
        amount=10_000,
        currency="usd",
        vendors=terms,
        policy=commission_policy_terms(),
    )
    allocation = split_allocate(plan, captured=10_000, processor_fee=320)
    # plain: 10% + 0.30 = 630, pro rata share of its 192 fee slice (5370 : 630) = 171.9 -> 172
    # special: 5%, no fixed fee = 200, bears its whole 128 slice
    assert [(p.gross, p.commission, p.fee, p.net) for p in allocation.parts] == [
        (6000, 630, 172, 5198),
        (4000, 200, 128, 3672),
    ]


def test_an_invite_is_single_use_and_stored_hashed(in_tenant_a):
    vendor = make_vendor()
    invite, token = vendor_invite_create(vendor=vendor)
    assert invite.token_hash == hash_invite_token(token) and token not in invite.token_hash
    assert invite.expires_at - timezone.now() > timedelta(days=6, hours=23)

    assert vendor_invite_redeem(token=token) == vendor
    invite.refresh_from_db()
    assert invite.used_at is not None
    with pytest.raises(VendorError) as exc:
        vendor_invite_redeem(token=token)
    assert (exc.value.code, exc.value.message) == (
        "invite_invalid",
        "this invite link is invalid or has expired",
    )


def test_expired_and_unknown_invites_are_refused(in_tenant_a):
    vendor = make_vendor()
    invite, token = vendor_invite_create(vendor=vendor)
    VendorInvite.objects.filter(pk=invite.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    for attempt in (token, "vinv_nope"):
        with pytest.raises(VendorError) as exc:
            vendor_invite_redeem(token=attempt)
        assert exc.value.code == "invite_invalid"


def test_redeeming_one_invite_uses_up_the_others(in_tenant_a):
    vendor = make_vendor()
    _, first = vendor_invite_create(vendor=vendor)
    _, second = vendor_invite_create(vendor=vendor)
    vendor_invite_redeem(token=second)
    with pytest.raises(VendorError):
        vendor_invite_redeem(token=first)


def test_invites_are_per_marketplace(tenant_a, tenant_b, db):
    with tenant_context(tenant_a):
        _, token = vendor_invite_create(vendor=make_vendor())
    with tenant_context(tenant_b), pytest.raises(VendorError):
        vendor_invite_redeem(token=token)


def test_applying_a_stripe_account(in_tenant_a):
    vendor = make_vendor()
    vendor = vendor_account_apply(vendor=vendor, account=connect_account())
    assert (vendor.status, vendor.stripe_account_id, vendor.charges_enabled, vendor.payouts_enabled) == (
        "restricted",
        "acct_1PgafTB7WZ01zgkW",
        True,
        False,
    )
    assert vendor.requirements == {
        "currently_due": ["external_account"],
        "past_due": ["external_account"],
        "disabled_reason": "requirements.past_due",
    }
    active = connect_account(
        status=ConnectStatus.ACTIVE, payouts_enabled=True, currently_due=(), past_due=(), disabled_reason=None
    )
    assert vendor_account_apply(vendor=vendor, account=active).status == "active"
    with pytest.raises(VendorError) as exc:
        vendor_account_apply(vendor=vendor, account=connect_account(id="acct_other"))
    assert exc.value.code == "account_mismatch"


def test_a_disabled_vendor_stays_disabled(in_tenant_a):
    vendor = make_vendor()
    Vendor.objects.filter(pk=vendor.pk).update(status="disabled")
    vendor.refresh_from_db()
    active = connect_account(
        status=ConnectStatus.ACTIVE, payouts_enabled=True, past_due=(), disabled_reason=None
    )
    assert vendor_account_apply(vendor=vendor, account=active).status == "disabled"
    with pytest.raises(VendorError):
        vendor_invite_create(vendor=vendor)


# --------------------------------------------------------------------------- admin


@pytest.fixture
def operator_client(in_tenant_a, host_client):
    client = host_client("alpha.localhost")
    client.force_login(get_user_model().objects.get(username="ops@alpha.test"))
    return client


def test_admin_lists_vendors_with_requirements_in_plain_words(operator_client):
    vendor = make_vendor(name="Blue Shop")
    Vendor.objects.filter(pk=vendor.pk).delete()
    vendor = Vendor.objects.create(  # an id whose "_3A" the admin must not read as ":"
        id="ven_3A" + vendor.id[6:],
        email=vendor.email,
        name=vendor.name,
        country="US",
        default_currency="usd",
    )
    vendor = vendor_account_apply(vendor=vendor, account=connect_account())

    listing = operator_client.get("/admin/vendors/vendor/?status__exact=restricted&q=Blue")
    # the admin's own links quote the id ("ven_3A..." would otherwise read as "ven:...")
    page = operator_client.get(f"/admin/vendors/vendor/{quote(vendor.pk)}/change/")

    assert listing.status_code == 200 and b"Blue Shop" in listing.content
    assert page.status_code == 200
    assert b"a bank account for payouts (past due)" in page.content
    assert b"disabled: required information is past due" in page.content


def test_admin_holds_and_releases_payouts(operator_client):
    vendors = [make_vendor(name="One"), make_vendor(name="Two")]
    ids = [v.pk for v in vendors]

    held = operator_client.post(
        "/admin/vendors/vendor/", {"action": "hold_payouts", "_selected_action": ids}, follow=True
    )
    assert held.status_code == 200 and b"Payouts held for 2 vendor(s)" in held.content
    assert set(Vendor.objects.filter(pk__in=ids).values_list("payouts_held", flat=True)) == {True}

    operator_client.post("/admin/vendors/vendor/", {"action": "release_payouts", "_selected_action": ids[:1]})
    assert dict(Vendor.objects.filter(pk__in=ids).values_list("name", "payouts_held")) == {
        "One": False,
        "Two": True,
    }
    vendor_payouts_hold(vendor=vendors[0])  # idempotent service, same result twice
    assert vendor_payouts_hold(vendor=vendors[0]).payouts_held is True


def test_admin_refuses_bad_commission_terms(operator_client):
    policy = CommissionPolicy.objects.get()
    response = operator_client.post(
        f"/admin/vendors/commissionpolicy/{policy.pk}/change/",
        {"percent_bps": "1000", "fixed": '{"usd": -5}', "fee_policy": "platform"},
    )
    assert response.status_code == 200  # the form again, with the error
    assert b"fixed fee for usd must be a non-negative integer of minor units, got -5" in response.content
    ok = operator_client.post(
        f"/admin/vendors/commissionpolicy/{policy.pk}/change/",
        {"percent_bps": "1250", "fixed": '{"USD": 30}', "fee_policy": "pro_rata", "dispute_policy": "vendor"},
    )
    assert ok.status_code == 302
    assert str(CommissionPolicy.objects.get()) == "12.5% commission + 0.30 USD"
    assert operator_client.get("/admin/vendors/commissionpolicy/add/").status_code == 403


def test_vendors_are_hidden_on_the_public_host(db, host_client):
    user = get_user_model().objects.create_superuser(
        username="owner", email="o@p.test", password="pw-12345678"
    )
    client = host_client("localhost")
    client.force_login(user)
    assert client.get("/admin/vendors/vendor/").status_code in (403, 404)
