"""Read-only views of the ledger: balances, journal transactions with their entries, events."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.errors import ApiError
from apps.api.fields import ConstantField, CurrencyField, TimestampField
from apps.api.v1.common import ERRORS, ApiView, found, list_response, list_schema, read_schema
from apps.core.money import MoneyError, normalize_currency
from apps.ledger.models import Side
from apps.ledger.selectors import balances_list, event_get, events_query, transactions_query

TXN_PREFIX, EVT_PREFIX = "txn_", "evt_"


class LedgerEventOut(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    object = ConstantField("ledger_event")
    type = serializers.CharField()
    stream = serializers.CharField()
    version = serializers.IntegerField()
    data = serializers.JSONField(source="payload")  # type: ignore[assignment]
    created = TimestampField(source="recorded_at")


class EntryOut(serializers.Serializer):
    account = serializers.CharField(source="account.code")
    currency = CurrencyField()
    side = serializers.SerializerMethodField()
    amount = serializers.IntegerField()

    def get_side(self, entry) -> str:
        return "debit" if entry.side == Side.DEBIT else "credit"


class LedgerTransactionOut(serializers.Serializer):
    id = serializers.SerializerMethodField()
    object = ConstantField("ledger_transaction")
    event = serializers.CharField(source="event.public_id")
    event_type = serializers.CharField(source="event.type")
    created = TimestampField(source="recorded_at")
    entries = EntryOut(many=True)

    def get_id(self, txn) -> str:
        # The event's unguessable id names its (only) transaction too.
        return TXN_PREFIX + txn.event.public_id.removeprefix(EVT_PREFIX)


BalanceOut = inline_serializer(
    "Balance",
    {
        "object": serializers.CharField(),
        "accounts": inline_serializer(
            "AccountBalance",
            {
                "account": serializers.CharField(),
                "currency": serializers.CharField(),
                "balance": serializers.IntegerField(),
                "debits": serializers.IntegerField(),
                "credits": serializers.IntegerField(),
            },
            many=True,
        ),
    },
)


class BalanceView(ApiView):
    scope_resource = "balance"

    @read_schema(
        operation_id="balance_retrieve",
        parameters=[OpenApiParameter("currency", str, description="only this currency")],
        responses={200: BalanceOut, **ERRORS},
        description="The ledger's balance of every account with postings, per currency, in minor units "
        "(seen from the account's normal side).",
    )
    def get(self, request: Request) -> Response:
        currency = request.query_params.get("currency")
        if currency:
            try:
                currency = normalize_currency(currency)
            except MoneyError:
                raise ApiError(
                    400,
                    "invalid_request_error",
                    "parameter_invalid",
                    f"Unknown currency {currency!r}.",
                    "currency",
                ) from None
        rows = balances_list(currency=currency, include_zero=False)
        accounts = [{**row, "currency": row["currency"].lower()} for row in rows]
        return Response({"object": "balance", "accounts": accounts})


class LedgerTransactionListView(ApiView):
    scope_resource = "ledger"

    @list_schema(
        "ledger_transactions_list",
        LedgerTransactionOut,
        OpenApiParameter("account", str, description="an account code"),
    )
    def get(self, request: Request) -> Response:
        return list_response(
            request,
            transactions_query(account=request.query_params.get("account")),
            LedgerTransactionOut,
            order=("id",),
            id_field="event__public_id",
            id_from_cursor=lambda cursor: EVT_PREFIX + cursor.removeprefix(TXN_PREFIX),
        )


class LedgerEventListView(ApiView):
    scope_resource = "ledger"

    @list_schema(
        "ledger_events_list",
        LedgerEventOut,
        OpenApiParameter("type", str, description="e.g. RefundSucceeded"),
        OpenApiParameter("stream", str, description="e.g. a payment id"),
        description="The ledger's events (financial facts, append-only), newest first.",
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        qs = events_query(type=params.get("type"), stream=params.get("stream"))
        return list_response(request, qs, LedgerEventOut, order=("id",), id_field="public_id")


class LedgerEventDetailView(ApiView):
    scope_resource = "ledger"

    @read_schema(operation_id="ledger_events_retrieve", responses={200: LedgerEventOut, **ERRORS})
    def get(self, request: Request, event_id: str) -> Response:
        return Response(LedgerEventOut(found(event_get(public_id=event_id))).data)
