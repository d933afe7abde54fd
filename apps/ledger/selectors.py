"""Reads of the ledger: balances now, as of a past position or time, and over time; events and
journal transactions."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import Prefetch, QuerySet

from apps.core.money import normalize_currency
from apps.core.queries import filter_given
from apps.ledger.models import Account, Balance, Entry, JournalTransaction, LedgerEvent, Side


def balances_list(*, currency: str | None = None, include_zero: bool = True) -> list[dict]:
    """Every account's current balance (from the projection), seen from its normal side."""
    qs = Balance.objects.select_related("account").order_by("account__code", "account__currency")
    if currency:
        qs = qs.filter(account__currency=normalize_currency(currency))
    out = []
    for b in qs:
        if include_zero or b.net:
            out.append(
                {
                    "account": b.account.code,
                    "currency": b.account.currency,
                    "balance": b.balance,
                    "debits": b.debits,
                    "credits": b.credits,
                }
            )
    return out


def account_get(*, code: str, currency: str) -> Account | None:
    return Account.objects.filter(code=code, currency=normalize_currency(currency)).first()


def _signed(account: Account, net: int) -> int:
    return net if account.normal_side == Side.DEBIT else -net


def balance_get(*, code: str, currency: str) -> int:
    account = account_get(code=code, currency=currency)
    if account is None:
        return 0
    return Balance.objects.get(account=account).balance


def balance_as_of(
    *, code: str, currency: str, event_id: int | None = None, at: datetime | None = None
) -> int:
    """The balance after event position ``event_id`` (inclusive) or at time ``at``."""
    account = account_get(code=code, currency=currency)
    if account is None:
        return 0
    where: list[str] = ["account_id = %s"]
    params: list[int | datetime] = [account.pk]
    if event_id is not None:
        where.append("event_id <= %s")
        params.append(event_id)
    if at is not None:
        where.append("recorded_at <= %s")
        params.append(at)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT coalesce(sum(CASE WHEN side = 'D' THEN amount ELSE -amount END), 0) FROM ledger_entry WHERE "
            + " AND ".join(where),
            params,
        )
        return _signed(account, int(cur.fetchone()[0]))


def balance_history(
    *, code: str, currency: str, bucket: str = "day", limit: int = 366
) -> list[tuple[datetime, int]]:
    """Closing balance per ``bucket`` (hour, day, week, month), oldest first, for charts."""
    if bucket not in ("hour", "day", "week", "month"):
        raise ValueError("bucket must be hour, day, week or month")
    account = account_get(code=code, currency=currency)
    if account is None:
        return []
    with connection.cursor() as cur:
        cur.execute(
            "SELECT b, sum(net) OVER (ORDER BY b) FROM ("
            "  SELECT date_trunc(%s, recorded_at) AS b, sum(CASE WHEN side = 'D' THEN amount ELSE -amount END) AS net"
            "  FROM ledger_entry WHERE account_id = %s GROUP BY 1) s ORDER BY b",
            [bucket, account.pk],
        )
        rows = cur.fetchall()
    return [(b, _signed(account, int(v))) for b, v in rows][-limit:]


def events_query(*, type: str | None = None, stream: str | None = None) -> QuerySet[LedgerEvent]:
    """The ledger's events, of ``type`` and in ``stream`` when given; unevaluated."""
    return filter_given(LedgerEvent.objects.all(), type=type, stream=stream)


def event_get(*, public_id: str) -> LedgerEvent | None:
    return LedgerEvent.objects.filter(public_id=public_id).first()


def transactions_query(*, account: str | None = None) -> QuerySet[JournalTransaction]:
    """Journal transactions with their event and entries (in order, with their accounts), those
    posting to the account ``account`` (a code) when given; unevaluated."""
    qs = JournalTransaction.objects.select_related("event").prefetch_related(
        Prefetch("entries", queryset=Entry.objects.select_related("account").order_by("id"))
    )
    if account:
        qs = qs.filter(entries__account__code=account).distinct()
    return qs
