"""Reads: dunning recovery analytics.

An invoice *failed its first try* when its first attempt (one confirm through the mesh, which may
already fail over between gateways) did not collect it; it was *recovered* when a later attempt
did. Amounts are per currency (never added across currencies); rates are recovered / failed
counts, as decimal strings with 4 places. ``cross_gateway`` counts recoveries paid at a gateway
other than the one that declined the first try."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from django.utils import timezone

from apps.billing.models import Invoice, InvoiceAttempt


def _rate(recovered: int, failed: int) -> str:
    if not failed:
        return "0.0000"
    return str((Decimal(recovered) / Decimal(failed)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN))


class _Bucket:
    def __init__(self) -> None:
        self.failed = 0
        self.recovered = 0
        self.cross_gateway = 0
        self.open = 0
        self.failed_amount: dict[str, int] = defaultdict(int)
        self.recovered_amount: dict[str, int] = defaultdict(int)

    def add(self, row: dict) -> None:
        cur = row["currency"].lower()
        self.failed += 1
        self.failed_amount[cur] += row["amount"]
        if row["recovered"]:
            self.recovered += 1
            self.recovered_amount[cur] += row["amount"]
            self.cross_gateway += row["cross_gateway"]
        elif row["status"] == Invoice.Status.OPEN:
            self.open += 1

    def as_dict(self) -> dict:
        return {
            "failed": self.failed,
            "recovered": self.recovered,
            "recovery_rate": _rate(self.recovered, self.failed),
            "cross_gateway": self.cross_gateway,
            "still_open": self.open,
            "failed_amount": [{"currency": c, "amount": a} for c, a in sorted(self.failed_amount.items())],
            "recovered_amount": [
                {"currency": c, "amount": a} for c, a in sorted(self.recovered_amount.items())
            ],
        }


def failed_first_try_rows(*, since: datetime | None = None, invoice_ids=None) -> list[dict]:
    """One row per invoice whose first attempt failed: month, decline code and gateway of that
    failure, whether (and where) a later attempt collected it."""
    firsts = InvoiceAttempt.objects.filter(number=1, status=InvoiceAttempt.Status.FAILED)
    if since is not None:
        firsts = firsts.filter(started_at__gte=since)
    if invoice_ids is not None:
        firsts = firsts.filter(invoice_id__in=invoice_ids)
    rows = list(
        firsts.values(
            "invoice_id",
            "started_at",
            "decline_code",
            "gateway",
            "invoice__currency",
            "invoice__amount_due",
            "invoice__status",
        )
    )
    winners = dict(
        InvoiceAttempt.objects.filter(
            invoice_id__in=[r["invoice_id"] for r in rows], status=InvoiceAttempt.Status.SUCCEEDED
        ).values_list("invoice_id", "gateway")
    )
    out = []
    for r in rows:
        paid_at = winners.get(r["invoice_id"])
        out.append(
            {
                "invoice": r["invoice_id"],
                "month": r["started_at"].strftime("%Y-%m"),
                "decline_code": r["decline_code"] or "unknown",
                "gateway": r["gateway"] or "none",
                "currency": r["invoice__currency"],
                "amount": r["invoice__amount_due"],
                "status": r["invoice__status"],
                "recovered": paid_at is not None,
                "paid_by": paid_at,
                "cross_gateway": int(paid_at is not None and bool(paid_at) and paid_at != r["gateway"]),
            }
        )
    return out


def recovery_report(*, months: int = 12, now: datetime | None = None, invoice_ids=None) -> dict:
    now = now or timezone.now()
    since = None if invoice_ids is not None else now - timedelta(days=31 * months)
    rows = failed_first_try_rows(since=since, invoice_ids=invoice_ids)
    total = _Bucket()
    by_month: defaultdict[str, _Bucket] = defaultdict(_Bucket)
    by_code: defaultdict[str, _Bucket] = defaultdict(_Bucket)
    by_gateway: defaultdict[str, _Bucket] = defaultdict(_Bucket)
    for row in rows:
        total.add(row)
        by_month[row["month"]].add(row)
        by_code[row["decline_code"]].add(row)
        by_gateway[row["gateway"]].add(row)
    return {
        "total": total.as_dict(),
        "by_month": [{"month": k, **v.as_dict()} for k, v in sorted(by_month.items())],
        "by_decline_code": [
            {"decline_code": k, **v.as_dict()}
            for k, v in sorted(by_code.items(), key=lambda kv: -kv[1].failed)
        ],
        "by_gateway": [{"gateway": k, **v.as_dict()} for k, v in sorted(by_gateway.items())],
    }
