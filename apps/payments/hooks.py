"""What payments asks of the app that splits a payment among vendors, without importing it.

Payments sits below vendors: it knows a payment may have a split plan (``PaymentIntent.has_splits``)
but not what a plan is. The vendors app implements ``SplitHooks`` and registers it at start-up
(``VendorsConfig.ready`` calls ``splits_register``). With nothing registered (vendors not
installed) a payment cannot be created with splits, and every payment's money is the platform's:
captures go to ``platform_revenue``, refunds to ``refunds``, disputes to ``disputes``.

Each hook runs inside the caller's transaction, with the payment's row locked (see
``apps.payments.locks``), at the same point of that transaction as the payment's own writes
would reach it; the hooks lock their own rows after the payment's.
"""

from __future__ import annotations

from typing import Protocol


class SplitPlanRejected(ValueError):
    """A payment's ``splits`` cannot be used. ``code`` is stable for programs, ``param`` names the
    offending input (``splits[1].amount``); nothing was written."""

    def __init__(self, message: str, *, code: str, param: str | None = None):
        super().__init__(message)
        self.code = code
        self.param = param


class SplitHooks(Protocol):
    def plan_prepare(self, splits: object, *, amount: int, currency: str) -> object:
        """Validate a payment's ``splits`` (before anything is written or charged) into the plan
        ``plan_record`` stores. Raises SplitPlanRejected."""
        ...

    def plan_record(self, *, payment_id: str, plan: object) -> None:
        """Store the plan with its payment, in the payment's creating transaction."""
        ...

    def capture_allocate(self, *, payment_id: str, amount: int, fee: int) -> list[dict]:
        """In the capture's transaction: record what the capture allocates to each vendor (and
        schedule what follows, e.g. transfers), and return the ledger allocations, which sum to
        ``amount``. Deterministic: a repeated capture yields the same allocations."""
        ...

    def refund_allocate(self, *, payment_id: str, refund_id: str, amount: int) -> list[dict] | None:
        """In the refund's transaction: record the refund's unwind of the split and return its
        ledger allocations; None when the payment has no allocated split. Idempotent per refund."""
        ...

    def dispute_allocations(self, *, payment_id: str, amount: int) -> list[dict] | None:
        """Who bears a dispute of ``amount`` (reads only); None (or empty) when the platform does."""
        ...

    def dispute_lost(self, *, payment_id: str, dispute_id: str, allocations: list[dict]) -> int:
        """In the lost dispute's closing transaction: take back what its allocations say may be
        taken back from the vendors. Returns how many take-backs it scheduled."""
        ...


_splits: SplitHooks | None = None


def splits_register(hooks: SplitHooks | None) -> None:
    """Install the split hooks (at app start-up); None removes them."""
    global _splits
    _splits = hooks


def splits_hooks() -> SplitHooks | None:
    """The registered split hooks, or None when no app splits payments."""
    return _splits
