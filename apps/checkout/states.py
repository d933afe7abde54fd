"""The checkout session's state machine (``apps.core.statemachine``): open -> complete | expired.
An illegal move raises CheckoutError (``checkout_session_unexpected_state``, 409 in the API)."""

from __future__ import annotations

from typing import Any

from apps.checkout.errors import CheckoutError
from apps.checkout.models import CheckoutSession
from apps.core.statemachine import StateMachine

CS = CheckoutSession.Status


def _refused(obj: Any, current: str, target: str) -> CheckoutError:
    return CheckoutError(
        f"checkout session {obj.id} is {current}; it cannot become {target}",
        code="checkout_session_unexpected_state",
    )


SESSION = StateMachine(
    {CS.OPEN: {CS.COMPLETE, CS.EXPIRED}, CS.COMPLETE: set(), CS.EXPIRED: set()},
    states=CS.values,
    error=_refused,
)


def session_to(session: CheckoutSession, target: str) -> None:
    SESSION.advance(session, target)
