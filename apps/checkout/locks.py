"""The checkout app's one row lock: a session, taken before any payment row (a session's payment
is created under it; payments' own locks come after, see ``apps.payments.locks``). Must run
inside the caller's transaction."""

from __future__ import annotations

from apps.checkout.models import CheckoutSession


def session_lock(session_id: str) -> CheckoutSession | None:
    return CheckoutSession.objects.select_for_update().filter(pk=session_id).first()
