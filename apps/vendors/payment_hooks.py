"""The vendors' side of payments' split hooks (``apps.payments.hooks``): a payment's split plan,
its capture's allocations, a refund's unwind and a dispute's share, done by ``apps.vendors.funds``.
Registered by ``VendorsConfig.ready``."""

from __future__ import annotations

from apps.payments.hooks import SplitPlanRejected
from apps.vendors.funds import (
    dispute_lost_clawback,
    split_capture_allocations,
    split_dispute_allocations,
    split_plan_prepare,
    split_record,
    split_refund_allocations,
)
from apps.vendors.splits import SplitError, SplitPlan


class VendorSplits:
    """``apps.payments.hooks.SplitHooks`` for split payments among vendors."""

    def plan_prepare(self, splits: object, *, amount: int, currency: str) -> SplitPlan:
        try:
            return split_plan_prepare(splits, amount=amount, currency=currency)
        except SplitError as exc:
            raise SplitPlanRejected(str(exc), code=exc.code, param=exc.param) from None

    def plan_record(self, *, payment_id: str, plan: object) -> None:
        assert isinstance(plan, SplitPlan)
        split_record(payment_id=payment_id, plan=plan)

    def capture_allocate(self, *, payment_id: str, amount: int, fee: int) -> list[dict]:
        return split_capture_allocations(payment_id=payment_id, amount=amount, fee=fee)

    def refund_allocate(self, *, payment_id: str, refund_id: str, amount: int) -> list[dict] | None:
        return split_refund_allocations(payment_id=payment_id, refund_id=refund_id, amount=amount)

    def dispute_allocations(self, *, payment_id: str, amount: int) -> list[dict] | None:
        return split_dispute_allocations(payment_id=payment_id, amount=amount)

    def dispute_lost(self, *, payment_id: str, dispute_id: str, allocations: list[dict]) -> int:
        return dispute_lost_clawback(payment_id=payment_id, dispute_id=dispute_id, allocations=allocations)
