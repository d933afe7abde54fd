"""Checkout sessions: create, confirm (the page's or the element's processor token becomes the
session's payment, or in setup mode its saved payment method), the return from 3-D Secure,
completion and expiry.

The money moves only through the payments services: a session's payment is created once (under
the session's lock, unconfirmed, so no processor is called with the lock held) and then confirmed
with no transaction open; a retry of the page confirms that same payment again with the new card.
A session completes when its payment succeeded (or waits for its capture), however that is
learnt: the confirm's answer, the return from 3-D Secure, or the sweep that reads the payment
(``checkout_sessions_sweep``, run every minute per marketplace). An open session past its
``expires_at`` expires, and a payment of it still waiting for the customer's authentication is
canceled first, so an expired session can never be charged.

Declines are told to the shopper in one plain sentence (payments' ``customer_message``: the same
words on every page), never the issuer's detail.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone

from apps.checkout.errors import CheckoutError
from apps.checkout.locks import session_lock
from apps.checkout.models import CheckoutSession
from apps.checkout.selectors import checkout_gateway, checkout_session_get
from apps.checkout.states import session_to
from apps.core.money import MoneyError, normalize_currency, require_amount
from apps.customers.selectors import customer_get
from apps.payments.hooks import SplitPlanRejected, splits_hooks
from apps.payments.models import PaymentIntent
from apps.payments.selectors import payment_get
from apps.payments.services import (
    PaymentError,
    customer_message,
    payment_authentication_return,
    payment_cancel,
    payment_confirm,
    payment_intent_create,
)
from apps.payments.services.methods import payment_method_create
from apps.webhooks.outbound import event_publish

log = logging.getLogger(__name__)

CS = CheckoutSession.Status
IS = PaymentIntent.Status

DECLINED = "Your card was declined. Try another card."
MAX_LINE_ITEMS = 100
_PAID = (IS.SUCCEEDED, IS.REQUIRES_CAPTURE)
_URLS = URLValidator(schemes=["http", "https"])


# --------------------------------------------------------------------------- create


def _url(value: str, param: str) -> str:
    value = (value or "").strip()
    if not value:
        return ""
    try:
        _URLS(value)
    except ValidationError:
        raise CheckoutError(f"{param} must be an absolute http(s) URL", param=param) from None
    return value


def _line_items(items: list) -> list[dict]:
    if not isinstance(items, list) or not items or len(items) > MAX_LINE_ITEMS:
        raise CheckoutError(f"line_items must hold 1 to {MAX_LINE_ITEMS} items", param="line_items")
    out = []
    for i, item in enumerate(items):
        name, amount, quantity = item.get("name"), item.get("amount"), item.get("quantity", 1)
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise CheckoutError("a line item's name is 1 to 200 characters", param=f"line_items[{i}].name")
        try:
            require_amount(amount)
        except MoneyError as exc:
            raise CheckoutError(str(exc), param=f"line_items[{i}].amount") from None
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 10_000:
            raise CheckoutError(
                "quantity must be an integer from 1 to 10000", param=f"line_items[{i}].quantity"
            )
        out.append({"name": name.strip(), "amount": amount, "quantity": quantity})
    return out


def _splits_check(splits: list, *, amount: int, currency: str) -> None:
    """The split plan is validated now by the app that splits payments (as a payment's would be),
    so a session never reaches its page with splits its payment would refuse."""
    hooks = splits_hooks()
    if hooks is None:
        raise CheckoutError("this platform does not split payments", code="parameter_unknown", param="splits")
    try:
        hooks.plan_prepare(splits, amount=amount, currency=currency)
    except SplitPlanRejected as exc:
        raise CheckoutError(str(exc), code=exc.code, param=exc.param or "splits") from None


def _expires_at(expires_in: int | None, now: datetime) -> datetime:
    seconds = settings.CHECKOUT_SESSION_EXPIRY_SECONDS if expires_in is None else expires_in
    low, high = settings.CHECKOUT_SESSION_EXPIRY_MIN_SECONDS, settings.CHECKOUT_SESSION_EXPIRY_MAX_SECONDS
    if expires_in is not None and not low <= expires_in <= high:
        raise CheckoutError(f"expires_in must be from {low} to {high} seconds", param="expires_in")
    return now + timedelta(seconds=seconds)


def checkout_session_create(
    *,
    mode: str = CheckoutSession.Mode.PAYMENT,
    amount: int | None = None,
    currency: str | None = None,
    line_items: list | None = None,
    customer_id: str = "",
    splits: list | None = None,
    save_payment_method: bool = False,
    success_url: str = "",
    cancel_url: str = "",
    metadata: dict | None = None,
    expires_in: int | None = None,
    now: datetime | None = None,
) -> CheckoutSession:
    """A new open session. Payment mode: ``amount`` and ``currency``, or ``line_items``
    ([{name, amount (unit, minor units), quantity}]) and ``currency``, the total their sum;
    optional ``splits`` (checked as a payment's), ``save_payment_method`` (needs a customer: the
    card is saved for later charges without them). Setup mode: a customer, whose card is saved;
    no amount. Raises CheckoutError; then nothing is written."""
    now = now or timezone.now()
    if mode not in CheckoutSession.Mode.values:
        raise CheckoutError("mode must be payment or setup", param="mode")
    if customer_id and customer_get(customer_id=customer_id) is None:
        raise CheckoutError(f"No such customer: {customer_id!r}", code="resource_missing", param="customer")
    session = CheckoutSession(
        mode=mode,
        customer_id=customer_id,
        success_url=_url(success_url, "success_url"),
        cancel_url=_url(cancel_url, "cancel_url"),
        metadata=metadata or {},
        expires_at=_expires_at(expires_in, now),
    )
    if mode == CheckoutSession.Mode.SETUP:
        for name, value in (("amount", amount), ("line_items", line_items), ("splits", splits)):
            if value is not None:
                raise CheckoutError(f"{name} cannot be given in setup mode", param=name)
        if save_payment_method:
            raise CheckoutError("setup mode always saves the card", param="save_payment_method")
        if not customer_id:
            raise CheckoutError("setup mode needs a customer to save the card for", param="customer")
        if currency:
            session.currency = _currency(currency)
    else:
        session.currency = _currency(currency)
        if line_items is not None and amount is not None:
            raise CheckoutError("give amount or line_items, not both", param="amount")
        if line_items is not None:
            session.line_items = _line_items(line_items)
            total = sum(item["amount"] * item["quantity"] for item in session.line_items)
        elif amount is not None:
            total = _amount(amount)
        else:
            raise CheckoutError("amount or line_items is required", code="parameter_missing", param="amount")
        session.amount = total
        if save_payment_method and not customer_id:
            raise CheckoutError("save_payment_method needs a customer", param="save_payment_method")
        session.save_payment_method = save_payment_method
        if splits is not None:
            _splits_check(splits, amount=total, currency=session.currency)
            session.splits = splits
    session.client_secret = f"{session.id}_secret_{secrets.token_urlsafe(24)}"
    session.save(force_insert=True)
    return session


def _currency(currency: str | None) -> str:
    if not currency:
        raise CheckoutError("currency is required", code="parameter_missing", param="currency")
    try:
        return normalize_currency(currency)
    except MoneyError as exc:
        raise CheckoutError(str(exc), param="currency") from None


def _amount(amount: int) -> int:
    try:
        return require_amount(amount)
    except MoneyError as exc:
        raise CheckoutError(str(exc), param="amount") from None


# --------------------------------------------------------------------------- outcomes


@dataclass
class CheckoutResult:
    """What the page (or the element) is told after a confirm or a return: ``status`` is
    ``complete``, ``requires_action`` (follow ``redirect``), ``processing`` (ask again),
    ``failed`` (``message`` says what to do) or ``expired``."""

    status: str
    session: CheckoutSession
    message: str = ""
    next_action: dict = field(default_factory=dict)
    redirect: str = ""

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "session": self.session.id,
            "payment": self.session.payment_id or None,
            "payment_method": self.session.payment_method_id or None,
            "next_action": self.next_action or None,
            "redirect": self.redirect or None,
            "message": self.message or None,
        }


def success_redirect(session: CheckoutSession) -> str:
    """The session's ``success_url`` with ``session_id`` added to its query, or its own page."""
    if not session.success_url:
        return f"/checkout/{session.id}"
    parts = urlsplit(session.success_url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), ("session_id", session.id)])
    return urlunsplit(parts._replace(query=query))


def _publish(session: CheckoutSession, event_type: str) -> None:
    event_publish(
        type=event_type,
        object_type="checkout_session",
        object_id=session.id,
        source_key=f"checkout:{session.id}:{event_type}",
    )


def _complete(session_id: str, *, payment_method_id: str = "") -> CheckoutSession:
    """Mark the session complete (once) and publish ``checkout_session.completed`` with it."""
    with transaction.atomic():
        session = session_lock(session_id)
        if session is None:
            raise CheckoutError(f"No such checkout session: {session_id!r}", code="resource_missing")
        if session.status == CS.COMPLETE:
            return session
        session_to(session, CS.COMPLETE)
        session.completed_at = timezone.now()
        if payment_method_id:
            session.payment_method_id = payment_method_id
        session.save(update_fields=["status", "completed_at", "payment_method_id", "updated_at"])
        _publish(session, "checkout_session.completed")
    return session


def _from_payment(session: CheckoutSession, intent: PaymentIntent) -> CheckoutResult:
    """The page's answer for the session's payment as it is now (completing the session when
    it is paid)."""
    if intent.status in _PAID:
        session = _complete(session.id)
        return CheckoutResult("complete", session, redirect=success_redirect(session))
    if intent.status == IS.REQUIRES_ACTION:
        action = intent.next_action or {}
        url = (
            (action.get("redirect_to_url") or {}).get("url", "")
            if action.get("type") == "redirect_to_url"
            else ""
        )
        if not url:
            # Only the customer can authenticate, and this page can follow only a redirect.
            return CheckoutResult(
                "failed",
                session,
                message="Your card needs authentication we cannot do here. Try another card.",
            )
        return CheckoutResult("requires_action", session, next_action=action, redirect=url)
    if intent.status in (IS.PROCESSING, IS.REQUIRES_CONFIRMATION):
        return CheckoutResult("processing", session)
    if intent.status == IS.CANCELED:
        return CheckoutResult("expired", session, message="This checkout has expired.")
    error = intent.last_error or {}
    return CheckoutResult(
        "failed", session, message=customer_message(error.get("code"), error.get("decline_code"))
    )


# --------------------------------------------------------------------------- confirm


def checkout_session_current(*, session_id: str, now: datetime | None = None) -> CheckoutSession:
    """The session as the shopper should see it now: completed if its payment was paid
    meanwhile, expired once past its ``expires_at``. Raises CheckoutError when there is no such
    session."""
    now = now or timezone.now()
    session = checkout_session_sync(session_id=session_id)
    if session.status == CS.OPEN and session.expires_at <= now:
        session = checkout_session_expire(session_id=session_id, now=now)
    return session


def checkout_session_confirm(
    *, session_id: str, token: str, return_url: str = "", now: datetime | None = None
) -> CheckoutResult:
    """Pay the session with the processor token its card fields made (``token``), or in setup
    mode save it. The payment is created once per session (then confirmed again with each new
    card); ``return_url`` is where 3-D Secure sends the customer back. Raises CheckoutError for
    bad input (an unknown token) or a state that cannot be confirmed (complete, expired, a
    payment still in flight)."""
    now = now or timezone.now()
    token = (token or "").strip()
    if not token:
        raise CheckoutError("the card fields gave no token", code="parameter_missing", param="token")
    session = checkout_session_current(session_id=session_id, now=now)
    if session.status == CS.COMPLETE:
        return CheckoutResult("complete", session, redirect=success_redirect(session))
    if session.status == CS.EXPIRED:
        return CheckoutResult("expired", session, message="This checkout has expired.")
    if session.mode == CheckoutSession.Mode.SETUP:
        return _setup_confirm(session, token)
    try:
        intent, created = _payment_for(session, token, return_url)
        if not created:
            if intent.status in _PAID:
                return _from_payment(session, intent)
            if intent.status == IS.PROCESSING:
                return CheckoutResult("processing", session)
        intent = payment_confirm(intent_id=intent.pk, payment_method=token, return_url=return_url or None)
    except PaymentError as exc:
        if exc.param == "payment_method":  # a token no gateway takes: to the shopper, a decline
            return CheckoutResult("failed", checkout_session_sync(session_id=session_id), message=DECLINED)
        if exc.param is not None:  # the session's own terms (amount limit, splits) refused now
            log.warning("checkout %s cannot be paid: %s", session_id, exc)
            raise CheckoutError("This checkout cannot be paid right now.", code=exc.code) from exc
        raise CheckoutError(
            "This payment is already being processed; wait a moment and try again.",
            code="checkout_session_busy",
        ) from exc
    # The confirm's answer decides (completing the session when paid): no second read of the
    # payment it just returned. The session names the payment _payment_for set under its lock.
    session.payment_id = intent.pk
    return _from_payment(session, intent)


def _payment_for(session: CheckoutSession, token: str, return_url: str) -> tuple[PaymentIntent, bool]:
    """The session's payment, created (unconfirmed: no processor call) under the session's lock
    the first time. Returns (payment, created)."""
    with transaction.atomic():
        locked = session_lock(session.id)
        assert locked is not None
        if locked.payment_id:
            intent = payment_get(payment_id=locked.payment_id)
            assert intent is not None
            return intent, False
        intent = payment_intent_create(
            amount=locked.amount,
            currency=locked.currency,
            payment_method=token,
            customer_id=locked.customer_id,
            metadata={"checkout_session": locked.id},
            setup_future_usage="off_session" if locked.save_payment_method else None,
            splits=locked.splits,
            confirm=False,
            return_url=return_url or None,
        )
        locked.payment_id = intent.pk
        locked.save(update_fields=["payment_id", "updated_at"])
    return intent, True


def _setup_confirm(session: CheckoutSession, token: str) -> CheckoutResult:
    """Save the card at the marketplace's first routable gateway account for the session's
    customer (a card saved twice is one method, by fingerprint), then complete the session."""
    account = checkout_gateway()
    customer = customer_get(customer_id=session.customer_id)
    if account is None or customer is None:
        raise CheckoutError("this marketplace cannot save cards now", code="checkout_unavailable")
    try:
        method, _ = payment_method_create(
            gateway=account.name, token=token, customer=customer, metadata={"checkout_session": session.id}
        )
    except PaymentError as exc:
        if exc.code == "gateway_error":
            raise CheckoutError("The card could not be saved now; try again.", code="gateway_error") from exc
        return CheckoutResult("failed", session, message=customer_message(exc.code))
    session = _complete(session.id, payment_method_id=method.pk)
    return CheckoutResult("complete", session, redirect=success_redirect(session))


# --------------------------------------------------------------------------- 3-D Secure return


def checkout_session_return(*, session_id: str, payment_id: str, details: dict) -> CheckoutResult:
    """The customer is back from the processor's authentication page: the payment resumes
    (``payment_authentication_return``) and the page shows the
    outcome. ``details`` is what the processor added to the return URL (e.g. Adyen's
    ``redirectResult``)."""
    session = checkout_session_get(session_id=session_id)
    if session is None or not session.payment_id or session.payment_id != payment_id:
        raise CheckoutError("this return does not belong to this checkout", code="resource_missing")
    intent = payment_authentication_return(intent_id=payment_id, details=details or None)
    return _from_payment(session, intent)


# --------------------------------------------------------------------------- sync, expiry


def checkout_session_sync(*, session_id: str) -> CheckoutSession:
    """The session, completed first if its payment was paid meanwhile (a worker finished it,
    a webhook told us). Raises CheckoutError when there is no such session."""
    session = checkout_session_get(session_id=session_id)
    if session is None:
        raise CheckoutError(f"No such checkout session: {session_id!r}", code="resource_missing")
    if session.status == CS.OPEN and session.payment_id:
        intent = payment_get(payment_id=session.payment_id)
        if intent is not None and intent.status in _PAID:
            return _complete(session.id)
    return session


def checkout_session_expire(*, session_id: str, now: datetime | None = None) -> CheckoutSession:
    """Expire an open session past its ``expires_at`` (publishing ``checkout_session.expired``).
    Its payment, if it waits for the customer's authentication, is canceled first (the payments
    service closes the attempt at its gateway); if the customer authenticated meanwhile the
    session completes instead. A payment still in flight (processing) is left to finish: the
    session waits for the next sweep. Idempotent."""
    now = now or timezone.now()
    session = checkout_session_sync(session_id=session_id)
    if session.status != CS.OPEN or session.expires_at > now:
        return session
    if session.payment_id:
        intent = payment_get(payment_id=session.payment_id)
        if intent is not None and intent.status == IS.PROCESSING:
            return session
        if intent is not None and intent.status in (IS.REQUIRES_ACTION, IS.REQUIRES_CONFIRMATION):
            try:
                payment_cancel(intent_id=intent.pk, reason="checkout session expired")
            except PaymentError:
                log.warning(
                    "payment %s of expiring checkout %s could not be canceled yet", intent.pk, session.id
                )
                return checkout_session_sync(session_id=session_id)
    with transaction.atomic():
        locked = session_lock(session_id)
        assert locked is not None
        if locked.status != CS.OPEN:
            return locked
        session_to(locked, CS.EXPIRED)
        locked.expired_at = now
        locked.save(update_fields=["status", "expired_at", "updated_at"])
        _publish(locked, "checkout_session.expired")
    return locked


def checkout_sessions_sweep(*, now: datetime | None = None) -> dict:
    """The periodic job: complete open sessions whose payment was paid, expire those past their
    time. Returns how many of each."""
    now = now or timezone.now()
    completed = expired = 0
    paid = CheckoutSession.objects.filter(status=CS.OPEN).exclude(payment_id="").values_list("id", flat=True)
    for session_id in list(paid[:500]):
        if checkout_session_sync(session_id=session_id).status == CS.COMPLETE:
            completed += 1
    due = CheckoutSession.objects.filter(status=CS.OPEN, expires_at__lte=now).values_list("id", flat=True)
    for session_id in list(due[:500]):
        if checkout_session_expire(session_id=session_id, now=now).status == CS.EXPIRED:
            expired += 1
    return {"completed": completed, "expired": expired}
