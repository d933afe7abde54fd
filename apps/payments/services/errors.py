"""What the payments services raise."""

from __future__ import annotations


class PaymentError(ValueError):
    """A request the payment cannot honour in its current state; nothing was changed."""

    def __init__(
        self, message: str, *, code: str = "payment_intent_unexpected_state", param: str | None = None
    ):
        super().__init__(message)
        self.code = code
        self.param = param


class AttemptStillUnknown(RuntimeError):
    """The gateway could not tell yet; the durable task retries with backoff."""


class OperationStillPending(RuntimeError):
    """A capture, cancel or refund the gateway has not settled yet (its answer was lost, or it
    could not answer). Nothing was changed; the durable task retries with backoff."""


class GatewayTruthConflict(RuntimeError):
    """The gateway reports something a final state here contradicts (money taken on an attempt we
    closed as failed, a capture or refund failing after it was recorded). Nothing was changed: an
    operator must look."""


class GatewayTruthNotYet(RuntimeError):
    """The news depends on news not applied yet (a refund reported before its capture). Nothing
    was changed; applying it again later works."""
