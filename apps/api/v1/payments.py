"""Payments (create with confirm, retrieve, list with filters, confirm, capture, cancel) and
refunds (create on a payment, retrieve, list). Views parse, call one payment service, render."""

from __future__ import annotations

from typing import cast

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.fields import (
    AmountField,
    BlankAsNullField,
    ConstantField,
    CurrencyField,
    EmptyAsNullObjectField,
    MetadataField,
    TimestampField,
)
from apps.api.idempotency import Resume, idempotent
from apps.api.models import IdempotencyRecord
from apps.api.v1.common import (
    CREATED_PARAMETERS,
    ERRORS,
    ApiView,
    choice,
    expansions,
    found,
    list_response,
    list_schema,
    read_schema,
    referenced,
    timestamp_filters,
    validated,
)
from apps.customers.selectors import customer_get
from apps.payments import selectors
from apps.payments.models import SETUP_FUTURE_USAGES, PaymentAttempt, PaymentIntent, Refund
from apps.payments.services import (
    OperationStillPending,
    payment_authentication_return,
    payment_cancel,
    payment_capture,
    payment_confirm,
    payment_drive_on,
    payment_intent_create,
    payment_refund,
    refund_execute,
)
from apps.vendors.selectors import payment_split_lines

# --------------------------------------------------------------------------- shapes


class PaymentAttemptOut(serializers.Serializer):
    id = serializers.CharField()
    object = ConstantField("payment_attempt")
    status = serializers.ChoiceField(choices=PaymentAttempt.Status.choices)
    gateway = serializers.CharField(source="gateway_account.name")
    decline_code = BlankAsNullField()
    message = BlankAsNullField()
    amount_authorized = serializers.IntegerField()
    amount_captured = serializers.IntegerField()
    created = TimestampField(source="created_at")


ATTEMPT_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string"},
        "status": {"type": "string"},
        "gateway": {"type": "string"},
        "decline_code": {"type": "string", "nullable": True},
        "message": {"type": "string", "nullable": True},
        "amount_authorized": {"type": "integer"},
        "amount_captured": {"type": "integer"},
        "created": {"type": "integer"},
    },
}


@extend_schema_field(
    {
        "type": "array",
        "description": "attempt ids; the attempt objects with expand[]=attempts",
        "items": {"oneOf": [{"type": "string"}, ATTEMPT_SCHEMA]},
    }
)
class AttemptsField(serializers.ReadOnlyField):
    def to_representation(self, value):
        attempts = sorted(value.attempts.all(), key=lambda a: a.number)
        if "attempts" in self.context.get("expand", ()):
            return PaymentAttemptOut(attempts, many=True).data
        return [a.id for a in attempts]


LAST_ERROR_FIELDS = ("type", "code", "decline_code", "advice_code", "message")


@extend_schema_field(
    {
        "type": "object",
        "nullable": True,
        "description": "why the last attempt failed (Stripe's public decline fields only)",
        "properties": {
            "type": {"type": "string"},
            "code": {"type": "string"},
            "decline_code": {"type": "string", "nullable": True},
            "advice_code": {"type": "string", "nullable": True},
            "message": {"type": "string", "nullable": True},
        },
    }
)
class LastErrorField(serializers.ReadOnlyField):
    """The public part of a payment's ``last_error``. The routing detail stored beside it (why
    the mesh failed over, the attempt, the gateways skipped) stays in the admin timeline."""

    def to_representation(self, value):
        if not value:
            return None
        return {name: value.get(name) or None for name in LAST_ERROR_FIELDS}


@extend_schema_field(
    {
        "type": "object",
        "description": "`skipped`: the gateways routing left out this round, and why (e.g. no "
        "credential for the payment method there, circuit open, disabled); `via`: per attempt "
        "charged through a vault (the gateway held no credential for the method), which vault and "
        "the gateway account holding the card",
        "properties": {
            "skipped": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"gateway": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
            "via": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "via": {"type": "string", "enum": ["vault"]},
                        "vault": {"type": "string", "example": "stripe_forwarding"},
                        "from": {"type": "string", "description": "the gateway account holding the card"},
                    },
                },
                "example": {"pay_..._2": {"via": "vault", "vault": "simulator", "from": "primary"}},
            },
        },
    }
)
class RoutingField(serializers.ReadOnlyField):
    """What routing decided that storefronts may see: names of gateways and vaults, never a
    credential."""

    def to_representation(self, value):
        value = value or {}
        via = {
            attempt: {name: route.get(name) for name in ("via", "vault", "from")}
            for attempt, route in (value.get("via") or {}).items()
        }
        return {"skipped": list(value.get("skipped", [])), "via": via}


class PaymentOut(serializers.Serializer):
    id = serializers.CharField()
    object = ConstantField("payment")
    amount = serializers.IntegerField()
    currency = CurrencyField()
    status = serializers.ChoiceField(choices=PaymentIntent.Status.choices)
    capture_method = serializers.ChoiceField(choices=PaymentIntent.CaptureMethod.choices)
    payment_method = serializers.CharField()
    amount_capturable = serializers.IntegerField()
    amount_received = serializers.IntegerField()
    amount_refunded = serializers.IntegerField()
    customer = BlankAsNullField(source="customer_id")
    description = BlankAsNullField()
    metadata = serializers.DictField(child=serializers.CharField())
    last_error = LastErrorField()
    next_action = EmptyAsNullObjectField()
    routing = RoutingField()
    off_session = serializers.BooleanField(
        help_text="a merchant-initiated charge of a saved method, the customer not there"
    )
    setup_future_usage = BlankAsNullField(
        help_text="off_session or on_session: the card is saved for the customer while charging it"
    )
    saved_payment_method = BlankAsNullField(
        help_text="the payment method (paym_...) this payment saved for its customer, once it succeeded"
    )
    created = TimestampField(source="created_at")
    attempts = AttemptsField(source="*")
    splits = serializers.SerializerMethodField()

    def get_splits(self, intent) -> list[dict] | None:
        """The split plan's lines, with each vendor's allocation once captured (read by
        ``payments_out`` into the context)."""
        return self.context["splits"].get(intent.id) if intent.has_splits else None


class RefundOut(serializers.Serializer):
    id = serializers.CharField()
    object = ConstantField("refund")
    amount = serializers.IntegerField()
    currency = CurrencyField()
    payment = serializers.CharField(source="intent_id")
    status = serializers.ChoiceField(choices=Refund.Status.choices)
    reason = BlankAsNullField()
    failure_message = BlankAsNullField()
    created = TimestampField(source="created_at")


RETURN_URL_HELP = (
    "absolute http(s) URL where the customer comes back after authenticating (3-D Secure), with "
    "payment=<id> added to its query; then call POST /api/v1/payments/{id}/authentication_return"
)


class SplitLineIn(serializers.Serializer):
    """One line of a split plan: its JSON types are checked here (``validated``), its values by
    the vendors app (``apps.vendors.splits``), which names the line it refuses."""

    vendor = serializers.CharField(required=False, trim_whitespace=False, help_text="ven_...")
    amount = serializers.IntegerField(
        required=False, help_text="minor units; the amounts add up to the payment"
    )
    share = serializers.CharField(
        required=False,
        trim_whitespace=False,
        help_text='a decimal or fraction string ("0.6", "2/5"), never a number; the shares add up to 1',
    )
    currency = serializers.CharField(required=False, help_text="the payment's currency, when given")


class PaymentCreateIn(serializers.Serializer):
    amount = AmountField()
    currency = CurrencyField()
    payment_method = serializers.CharField(max_length=255)
    customer = serializers.CharField(required=False, max_length=40)
    confirm = serializers.BooleanField(default=False)
    capture_method = serializers.ChoiceField(
        choices=PaymentIntent.CaptureMethod.choices, default=PaymentIntent.CaptureMethod.AUTOMATIC
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")
    metadata = MetadataField(required=False)
    off_session = serializers.BooleanField(
        default=False,
        help_text="charge a saved method (paym_..., with its customer) without the customer there: a "
        "merchant-initiated charge, passing the method's network transaction id; an issuer asking "
        "for authentication leaves it in requires_action and emails the customer a link",
    )
    setup_future_usage = serializers.ChoiceField(
        choices=SETUP_FUTURE_USAGES,
        required=False,
        help_text="save the card for the customer while charging it (needs customer): off_session "
        "for later charges without them (renewals), on_session for later checkouts; the payment's "
        "saved_payment_method names it once it succeeded",
    )
    splits: serializers.ListSerializer = serializers.ListSerializer(
        child=SplitLineIn(),
        required=False,
        allow_empty=False,
        max_length=100,
        help_text='[{"vendor": "ven_...", "amount": 600}, ...] or [{"vendor": "ven_...", "share": "0.6"}, ...] '
        "(amounts add up to the payment; shares, as decimal or fraction strings, to 1)",
    )
    return_url = serializers.CharField(required=False, max_length=2000, help_text=RETURN_URL_HELP)


class PaymentConfirmIn(serializers.Serializer):
    payment_method = serializers.CharField(required=False, max_length=255)
    return_url = serializers.CharField(required=False, max_length=2000, help_text=RETURN_URL_HELP)


class PaymentAuthenticationReturnIn(serializers.Serializer):
    details = serializers.DictField(
        child=serializers.CharField(max_length=20000, allow_blank=True),
        required=False,
        help_text="the query parameters the processor added to your return_url (e.g. Adyen's "
        "redirectResult), except payment",
    )


class PaymentCaptureIn(serializers.Serializer):
    amount = AmountField(required=False, help_text="default: everything authorised")


class PaymentCancelIn(serializers.Serializer):
    cancellation_reason = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")


class RefundCreateIn(serializers.Serializer):
    amount = AmountField(required=False, help_text="default: what is left to refund")
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        default="",
        help_text="duplicate, fraudulent or requested_by_customer",
    )


def payments_out(intents: list[PaymentIntent], expand: set[str] | frozenset[str] = frozenset()) -> list[dict]:
    """Payments read by ``payments_query`` as the API shows them, with their splits."""
    splits = payment_split_lines(payment_ids=[intent.id for intent in intents if intent.has_splits])
    return cast(
        "list[dict]", PaymentOut(intents, many=True, context={"expand": expand, "splits": splits}).data
    )


def payment_body(intent: PaymentIntent, expand: set[str] | frozenset[str] = frozenset()) -> dict:
    fresh = found(selectors.payment_with_attempts(payment_id=intent.pk))
    return payments_out([fresh], expand)[0]


def payment_snapshot(payment_id: str) -> dict:
    """A payment as webhooks carry it: the API's representation, attempts expanded."""
    return payment_body(PaymentIntent(pk=payment_id), {"attempts"})


def refund_snapshot(refund_id: str) -> dict:
    return RefundOut(found(selectors.refund_get(refund_id=refund_id))).data


def _payment_or_404(payment_id: str) -> PaymentIntent:
    return found(selectors.payment_get(payment_id=payment_id))


# --------------------------------------------------------------------------- resuming after a crash
# How each route that moves money answers a retry whose first request's outcome is unknown (see
# apps.api.idempotency): the object the first request created or acted on, as it is now.


def _resumed_payment(record: IdempotencyRecord) -> PaymentIntent | None:
    return selectors.payment_get(payment_id=record.resource_ids[0])


def _driven_on(intent: PaymentIntent) -> PaymentIntent:
    """A payment left processing is driven on, as its first request would have: an attempt whose
    answer was lost is resolved at its gateway first (``payment_drive_on``); the payment as it
    is then."""
    if intent.status != PaymentIntent.Status.PROCESSING:
        return intent
    payment_drive_on(intent_id=intent.pk)
    return found(selectors.payment_get(payment_id=intent.pk))


def _payment_created_resume(request: Request, record: IdempotencyRecord, **_) -> Response | None:
    intent = _resumed_payment(record)
    if intent is None:
        return None
    expand = expansions(request.query_params, {"attempts"})
    return Response(payment_body(_driven_on(intent), expand), status=status.HTTP_201_CREATED)


def _payment_confirm_resume(request: Request, record: IdempotencyRecord, **_) -> Response | None:
    intent = _resumed_payment(record)
    if intent is None or intent.status == PaymentIntent.Status.REQUIRES_CONFIRMATION:
        return None  # not confirmed: confirm (again)
    if intent.status in (PaymentIntent.Status.FAILED, PaymentIntent.Status.REQUIRES_ACTION) and (
        intent.updated_at < record.created_at
    ):
        return None  # untouched since the first request arrived: its confirmation never happened
    return Response(payment_body(_driven_on(intent)))


def _payment_capture_resume(request: Request, record: IdempotencyRecord, **_) -> Response | None:
    intent = _resumed_payment(record)
    if intent is None or intent.status != PaymentIntent.Status.SUCCEEDED:
        return None  # not captured: capture (again; idempotent at the gateway), or say why not
    return Response(payment_body(intent))


def _payment_cancel_resume(request: Request, record: IdempotencyRecord, **_) -> Response | None:
    intent = _resumed_payment(record)
    if intent is None or intent.status != PaymentIntent.Status.CANCELED:
        return None  # not canceled: cancel (again; idempotent at the gateway), or say why not
    return Response(payment_body(intent))


def _refund_created_resume(request: Request, record: IdempotencyRecord, **_) -> Response | None:
    refund = selectors.refund_get(refund_id=record.resource_ids[0])
    if refund is None:
        return None
    if refund.status == Refund.Status.PENDING:
        try:  # idempotent: the refund id is the gateway's key
            refund = refund_execute(refund_id=refund.id)
        except OperationStillPending:  # still unsettled: its durable task finishes it
            refund.refresh_from_db()
    return Response(RefundOut(refund).data, status=status.HTTP_201_CREATED)


EXPAND_PARAMETER = OpenApiParameter(
    "expand[]", str, many=True, enum=["attempts"], description="expand the attempts into objects"
)


# --------------------------------------------------------------------------- payments


class PaymentListView(ApiView):
    scope_resource = "payments"

    @list_schema(
        "payments_list",
        PaymentOut,
        OpenApiParameter("status", str, enum=PaymentIntent.Status.values),
        OpenApiParameter("customer", str),
        *CREATED_PARAMETERS,
        EXPAND_PARAMETER,
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        expand = expansions(params, {"attempts"})
        qs = selectors.payments_query(
            status=choice(params, "status", PaymentIntent.Status.values),
            customer=params.get("customer"),
            created=timestamp_filters(params, "created"),
        )
        return list_response(request, qs, lambda rows: payments_out(rows, expand))

    @extend_schema(
        operation_id="payments_create",
        request=PaymentCreateIn,
        parameters=[EXPAND_PARAMETER],
        responses={201: PaymentOut, **ERRORS},
        description=(
            "Create a payment; with `confirm: true` it is also confirmed (attempts at the gateways). "
            "A declined payment is still created: 201 with `status: failed` and `last_error`."
        ),
        examples=[
            OpenApiExample(
                "Pay 20.00 USD with the simulator's Visa",
                value={"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True},
                request_only=True,
            ),
            OpenApiExample(
                "A succeeded payment",
                value={
                    "id": "pay_3kTm9x2QyR7bLw1ZpE4vNc8a",
                    "object": "payment",
                    "amount": 2000,
                    "currency": "usd",
                    "status": "succeeded",
                    "capture_method": "automatic",
                    "payment_method": "pm_card_visa",
                    "amount_capturable": 0,
                    "amount_received": 2000,
                    "amount_refunded": 0,
                    "customer": None,
                    "description": None,
                    "metadata": {},
                    "last_error": None,
                    "next_action": None,
                    "routing": {"skipped": []},
                    "setup_future_usage": None,
                    "saved_payment_method": None,
                    "created": 1767225600,
                    "attempts": ["pay_3kTm9x2QyR7bLw1ZpE4vNc8a_1"],
                },
                response_only=True,
                status_codes=["201"],
            ),
        ],
    )
    @idempotent(resume=Resume(_payment_created_resume))
    def post(self, request: Request) -> Response:
        expand = expansions(request.query_params, {"attempts"})
        data = validated(PaymentCreateIn, request.data)
        customer = data.pop("customer", "")
        if customer:
            referenced(customer_get(customer_id=customer), param="customer", what="customer", value=customer)
        intent = payment_intent_create(customer_id=customer, **data)
        return Response(payment_body(intent, expand), status=status.HTTP_201_CREATED)


class PaymentDetailView(ApiView):
    scope_resource = "payments"

    @read_schema(
        operation_id="payments_retrieve", parameters=[EXPAND_PARAMETER], responses={200: PaymentOut, **ERRORS}
    )
    def get(self, request: Request, payment_id: str) -> Response:
        expand = expansions(request.query_params, {"attempts"})
        return Response(payment_body(_payment_or_404(payment_id), expand))


class PaymentConfirmView(ApiView):
    scope_resource = "payments"

    @extend_schema(
        operation_id="payments_confirm", request=PaymentConfirmIn, responses={200: PaymentOut, **ERRORS}
    )
    @idempotent(resume=Resume(_payment_confirm_resume, acts_on=("payment", "payment_id")))
    def post(self, request: Request, payment_id: str) -> Response:
        intent = _payment_or_404(payment_id)
        data = validated(PaymentConfirmIn, request.data)
        intent = payment_confirm(
            intent_id=intent.pk, payment_method=data.get("payment_method"), return_url=data.get("return_url")
        )
        return Response(payment_body(intent))


class PaymentAuthenticationReturnView(ApiView):
    scope_resource = "payments"

    @extend_schema(
        operation_id="payments_authentication_return",
        request=PaymentAuthenticationReturnIn,
        responses={200: PaymentOut, **ERRORS},
        description=(
            "The customer came back to your return_url after authenticating (3-D Secure): the "
            "platform asks the gateway and answers the payment as it is now: `succeeded` (or "
            "`requires_capture`), `failed` with `last_error.code` `authentication_failed`, or still "
            "`requires_action`. Idempotent; the processor's webhook may have settled it already."
        ),
    )
    def post(self, request: Request, payment_id: str) -> Response:
        intent = _payment_or_404(payment_id)
        data = validated(PaymentAuthenticationReturnIn, request.data)
        intent = payment_authentication_return(intent_id=intent.pk, details=data.get("details"))
        return Response(payment_body(intent))


class PaymentCaptureView(ApiView):
    scope_resource = "payments"

    @extend_schema(
        operation_id="payments_capture", request=PaymentCaptureIn, responses={200: PaymentOut, **ERRORS}
    )
    @idempotent(resume=Resume(_payment_capture_resume, acts_on=("payment", "payment_id")))
    def post(self, request: Request, payment_id: str) -> Response:
        intent = _payment_or_404(payment_id)
        data = validated(PaymentCaptureIn, request.data)
        intent = payment_capture(intent_id=intent.pk, amount=data.get("amount"))
        return Response(payment_body(intent))


class PaymentCancelView(ApiView):
    scope_resource = "payments"

    @extend_schema(
        operation_id="payments_cancel", request=PaymentCancelIn, responses={200: PaymentOut, **ERRORS}
    )
    @idempotent(resume=Resume(_payment_cancel_resume, acts_on=("payment", "payment_id")))
    def post(self, request: Request, payment_id: str) -> Response:
        intent = _payment_or_404(payment_id)
        data = validated(PaymentCancelIn, request.data)
        intent = payment_cancel(intent_id=intent.pk, reason=data["cancellation_reason"])
        return Response(payment_body(intent))


# --------------------------------------------------------------------------- refunds


class PaymentRefundCreateView(ApiView):
    scope_resource = "refunds"

    @extend_schema(
        operation_id="refunds_create",
        request=RefundCreateIn,
        responses={201: RefundOut, **ERRORS},
        examples=[OpenApiExample("Refund 5.00", value={"amount": 500}, request_only=True)],
    )
    @idempotent(resume=Resume(_refund_created_resume))
    def post(self, request: Request, payment_id: str) -> Response:
        intent = _payment_or_404(payment_id)
        data = validated(RefundCreateIn, request.data)
        refund = payment_refund(intent_id=intent.pk, amount=data.get("amount"), reason=data["reason"])
        return Response(RefundOut(refund).data, status=status.HTTP_201_CREATED)


class RefundListView(ApiView):
    scope_resource = "refunds"

    @list_schema("refunds_list", RefundOut, OpenApiParameter("payment", str))
    def get(self, request: Request) -> Response:
        return list_response(
            request, selectors.refunds_query(payment=request.query_params.get("payment")), RefundOut
        )


class RefundDetailView(ApiView):
    scope_resource = "refunds"

    @read_schema(operation_id="refunds_retrieve", responses={200: RefundOut, **ERRORS})
    def get(self, request: Request, refund_id: str) -> Response:
        return Response(RefundOut(found(selectors.refund_get(refund_id=refund_id))).data)
