"""Vendors (invite, list, retrieve, update, balance, pay out now), their transfers and payouts
(read). A vendor is invited by email: ``POST /vendors`` answers with its ``onboarding_url``."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.errors import ApiError
from apps.api.fields import (
    MAX_AMOUNT,
    BlankAsNullField,
    ConstantField,
    CurrencyField,
    MetadataField,
    TimestampField,
)
from apps.api.idempotency import Resume, idempotent
from apps.api.models import IdempotencyRecord
from apps.api.v1.common import (
    ERRORS,
    ApiView,
    NoParameters,
    found,
    list_response,
    list_schema,
    read_schema,
    validated,
)
from apps.vendors import selectors
from apps.vendors.funds import FundsError, vendor_payout_create
from apps.vendors.models import Payout, Transfer, Vendor
from apps.vendors.onboarding import vendor_create_and_invite
from apps.vendors.services import VendorError, vendor_update
from apps.vendors.splits import FeePolicy

# --------------------------------------------------------------------------- shapes


class VendorOut(serializers.Serializer):
    id = serializers.CharField()
    object = ConstantField("vendor")
    email = serializers.CharField()
    name = serializers.CharField()
    country = serializers.CharField()
    default_currency = CurrencyField()
    status = serializers.ChoiceField(choices=Vendor.Status.choices)
    charges_enabled = serializers.BooleanField()
    payouts_enabled = serializers.BooleanField()
    payouts_held = serializers.BooleanField()
    requirements = serializers.SerializerMethodField()
    payout_schedule = serializers.ChoiceField(choices=Vendor.PayoutSchedule.choices)
    payout_minimum = serializers.IntegerField()
    commission_percent_bps = serializers.IntegerField(allow_null=True)
    commission_fixed = serializers.DictField(child=serializers.IntegerField(), allow_null=True)
    fee_policy = serializers.CharField(allow_null=True)
    metadata = serializers.DictField(child=serializers.CharField())
    created = TimestampField(source="created_at")

    def get_requirements(self, vendor) -> dict:
        return selectors.vendor_requirements(vendor)


class VendorCreatedOut(VendorOut):
    onboarding_url = serializers.SerializerMethodField(help_text="single use; also emailed to the vendor")

    def get_onboarding_url(self, _vendor) -> str:
        return self.context["onboarding_url"]


class VendorCreateIn(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    name = serializers.CharField(max_length=256)
    country = serializers.CharField(max_length=2, min_length=2, help_text="ISO 3166-1 alpha-2")
    default_currency = serializers.CharField(max_length=3)
    payout_schedule = serializers.ChoiceField(
        choices=Vendor.PayoutSchedule.choices, default=Vendor.PayoutSchedule.WEEKLY
    )
    payout_minimum = serializers.IntegerField(min_value=0, max_value=MAX_AMOUNT, default=0)
    commission_percent_bps = serializers.IntegerField(min_value=0, max_value=10_000, required=False)
    commission_fixed = serializers.DictField(
        child=serializers.IntegerField(min_value=0, max_value=MAX_AMOUNT), required=False
    )
    fee_policy = serializers.ChoiceField(choices=[p.value for p in FeePolicy], required=False)
    metadata = MetadataField(required=False)


class VendorUpdateIn(serializers.Serializer):
    name = serializers.CharField(max_length=256, required=False)
    email = serializers.EmailField(max_length=254, required=False)
    payout_schedule = serializers.ChoiceField(choices=Vendor.PayoutSchedule.choices, required=False)
    payout_minimum = serializers.IntegerField(min_value=0, max_value=MAX_AMOUNT, required=False)
    commission_percent_bps = serializers.IntegerField(
        min_value=0, max_value=10_000, required=False, allow_null=True
    )
    commission_fixed = serializers.DictField(
        child=serializers.IntegerField(min_value=0, max_value=MAX_AMOUNT), required=False, allow_null=True
    )
    fee_policy = serializers.ChoiceField(
        choices=[p.value for p in FeePolicy], required=False, allow_null=True
    )
    payouts_held = serializers.BooleanField(required=False, help_text="hold (true) or release payouts")
    disabled = serializers.BooleanField(
        required=False, help_text="true: no new splits or payouts to this vendor; false: re-enable"
    )
    metadata = MetadataField(required=False)


class TransferOut(serializers.Serializer):
    id = serializers.CharField()
    object = ConstantField("transfer")
    vendor = serializers.CharField(source="vendor_id")
    payment = serializers.CharField(source="payment_id")
    amount = serializers.IntegerField()
    amount_recovered = serializers.IntegerField(help_text="kept back to cover the vendor's negative balance")
    amount_reversed = serializers.IntegerField()
    currency = CurrencyField()
    status = serializers.ChoiceField(choices=Transfer.Status.choices)
    transfer_group = serializers.CharField()
    stripe_transfer = BlankAsNullField(source="stripe_transfer_id")
    simulated = serializers.BooleanField()
    failure_message = BlankAsNullField()
    created = TimestampField(source="created_at")


class PayoutOut(serializers.Serializer):
    id = serializers.CharField()
    object = ConstantField("payout")
    vendor = serializers.CharField(source="vendor_id")
    amount = serializers.IntegerField()
    currency = CurrencyField()
    status = serializers.ChoiceField(choices=Payout.Status.choices)
    stripe_payout = BlankAsNullField(source="stripe_payout_id")
    simulated = serializers.BooleanField()
    arrival_date = serializers.DateField(allow_null=True)
    failure_message = BlankAsNullField()
    created = TimestampField(source="created_at")


MONEY = inline_serializer(
    "Money", {"amount": serializers.IntegerField(), "currency": serializers.CharField()}, many=True
)
VendorBalanceOut = inline_serializer(
    "VendorBalance",
    {
        "object": serializers.CharField(),
        "vendor": serializers.CharField(),
        "available": MONEY,
        "pending": MONEY,
        "held": MONEY,
    },
)


def vendor_snapshot(vendor_id: str) -> dict:
    return VendorOut(found(selectors.vendor_get(vendor_id=vendor_id))).data


def transfer_snapshot(transfer_id: str) -> dict:
    return TransferOut(found(selectors.transfer_get(transfer_id=transfer_id))).data


def payout_snapshot(payout_id: str) -> dict:
    return PayoutOut(found(selectors.payout_get(payout_id=payout_id))).data


def _vendor_error(exc: VendorError | FundsError) -> ApiError:
    return ApiError(400 if exc.param else 409, "invalid_request_error", exc.code, str(exc), exc.param)


def _vendor_or_404(vendor_id: str) -> Vendor:
    return found(selectors.vendor_get(vendor_id=vendor_id))


# --------------------------------------------------------------------------- vendors


class VendorListView(ApiView):
    scope_resource = "vendors"

    @list_schema(
        "vendors_list",
        VendorOut,
        OpenApiParameter("status", str, enum=Vendor.Status.values),
        OpenApiParameter("email", str),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        if params.get("status") and params["status"] not in Vendor.Status.values:
            raise ApiError(400, "invalid_request_error", "parameter_invalid", "Unknown status.", "status")
        return list_response(
            request,
            selectors.vendors_query(status=params.get("status"), email=params.get("email")),
            VendorOut,
        )

    @extend_schema(
        operation_id="vendors_create",
        request=VendorCreateIn,
        responses={201: VendorCreatedOut, **ERRORS},
        description="Invite a vendor: it is created `invited` and emailed a single-use onboarding link "
        "(also in `onboarding_url`), where it gives its business details and sets up payouts.",
        examples=[
            OpenApiExample(
                "A vendor in the US",
                value={
                    "email": "owner@bakery.example",
                    "name": "Rosen Bakery",
                    "country": "US",
                    "default_currency": "usd",
                },
                request_only=True,
            )
        ],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = validated(VendorCreateIn, request.data)
        try:
            vendor, url = vendor_create_and_invite(request_host=request.get_host(), **data)
        except VendorError as exc:
            raise _vendor_error(exc) from None
        body = VendorCreatedOut(vendor, context={"onboarding_url": url}).data
        return Response(body, status=status.HTTP_201_CREATED)


class VendorDetailView(ApiView):
    scope_resource = "vendors"

    @read_schema(operation_id="vendors_retrieve", responses={200: VendorOut, **ERRORS})
    def get(self, request: Request, vendor_id: str) -> Response:
        return Response(VendorOut(_vendor_or_404(vendor_id)).data)

    @extend_schema(
        operation_id="vendors_update",
        request=VendorUpdateIn,
        responses={200: VendorOut, **ERRORS},
        description="Changes the given fields; a change is announced as `vendor.updated`. "
        "`null` commission fields fall back to the marketplace's terms.",
    )
    @idempotent
    def post(self, request: Request, vendor_id: str) -> Response:
        vendor = _vendor_or_404(vendor_id)
        data = validated(VendorUpdateIn, request.data)
        try:
            vendor = vendor_update(vendor_id=vendor.pk, **data)
        except VendorError as exc:
            raise _vendor_error(exc) from None
        return Response(VendorOut(vendor).data)


class VendorBalanceView(ApiView):
    scope_resource = "vendors"

    @read_schema(
        operation_id="vendors_balance",
        responses={200: VendorBalanceOut, **ERRORS},
        description="From the ledger: `available` (in its connected account, to be paid out), "
        "`pending` (captured, transfer not made yet), `held` (it cannot be paid yet).",
    )
    def get(self, request: Request, vendor_id: str) -> Response:
        vendor = _vendor_or_404(vendor_id)
        return Response(
            {
                "object": "vendor_balance",
                "vendor": vendor.id,
                **selectors.vendor_balances(vendor_id=vendor.id),
            }
        )


def _payouts_created_resume(request: Request, record: IdempotencyRecord, **_) -> Response | None:
    """A retry after a crash: the payouts the first request created (their sending is durable work
    committed with them), as they are now."""
    payouts = selectors.payouts_in_order(payout_ids=record.resource_ids)
    return Response({"data": PayoutOut(payouts, many=True).data}, status=status.HTTP_201_CREATED)


class VendorPayoutCreateView(ApiView):
    scope_resource = "payouts"

    @extend_schema(
        operation_id="vendors_payout_now",
        request=None,
        responses={201: inline_serializer("PayoutsMade", {"data": PayoutOut(many=True)}), **ERRORS},
        description="Pay out the vendor's available balance now (each currency at or above its minimum).",
    )
    @idempotent(resume=Resume(_payouts_created_resume))
    def post(self, request: Request, vendor_id: str) -> Response:
        vendor = _vendor_or_404(vendor_id)
        validated(NoParameters, request.data)
        try:
            payouts = vendor_payout_create(vendor_id=vendor.id, manual=True)
        except FundsError as exc:
            raise _vendor_error(exc) from None
        return Response({"data": PayoutOut(payouts, many=True).data}, status=status.HTTP_201_CREATED)


# --------------------------------------------------------------------------- transfers and payouts


class TransferListView(ApiView):
    scope_resource = "transfers"

    @list_schema(
        "transfers_list", TransferOut, OpenApiParameter("vendor", str), OpenApiParameter("payment", str)
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        qs = selectors.transfers_query(vendor=params.get("vendor"), payment=params.get("payment"))
        return list_response(request, qs, TransferOut)


class TransferDetailView(ApiView):
    scope_resource = "transfers"

    @read_schema(operation_id="transfers_retrieve", responses={200: TransferOut, **ERRORS})
    def get(self, request: Request, transfer_id: str) -> Response:
        return Response(transfer_snapshot(transfer_id))


class PayoutListView(ApiView):
    scope_resource = "payouts"

    @list_schema(
        "payouts_list",
        PayoutOut,
        OpenApiParameter("vendor", str),
        OpenApiParameter("status", str, enum=Payout.Status.values),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        qs = selectors.payouts_query(vendor=params.get("vendor"), status=params.get("status"))
        return list_response(request, qs, PayoutOut)


class PayoutDetailView(ApiView):
    scope_resource = "payouts"

    @read_schema(operation_id="payouts_retrieve", responses={200: PayoutOut, **ERRORS})
    def get(self, request: Request, payout_id: str) -> Response:
        return Response(payout_snapshot(payout_id))
