"""Posting rules: pure functions from an event's payload to its journal lines.

Each app writes its rules in a :class:`RuleSet` (the ledger's own are ``LEDGER_RULES`` below) and
registers it at start-up, from its ``AppConfig.ready()``::

    RULES = RuleSet()

    @RULES.posting("ChargeSucceeded")
    def _charge(payload): return [Line(...), ...]

    RULES.no_posting("AttemptStarted")          # an event type that moves no money

    # apps.py
    def ready(self): rules_register(ledger_rules.RULES)

Writing a rule registers nothing: the ledger knows exactly the rule sets the installed apps
registered, whichever modules a process happened to import. Event types that move no money are
registered too, so that a typo in a type name is an error, not a silently unposted event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ImproperlyConfigured

from apps.core.money import MoneyError, convert, normalize_currency, require_amount
from apps.ledger.errors import InvalidPosting, UnknownEventType


@dataclass(frozen=True)
class Line:
    account: str
    currency: str
    side: str  # "D" or "C"
    amount: int
    allow_negative: bool = False  # lets this line overdraw a protected account (refund unwinds)

    def as_dict(self) -> dict:
        return {"account": self.account, "currency": self.currency, "side": self.side, "amount": self.amount}


Rule = Callable[[dict], list[Line]]
_RULES: dict[str, Rule] = {}


def _posts_nothing(payload: dict) -> list[Line]:
    return []


class RuleSet:
    """One app's posting rules and its event types that post nothing, collected where they are
    written; the ledger applies them once the app registers the set (``rules_register``)."""

    def __init__(self) -> None:
        self.rules: dict[str, Rule] = {}

    def posting(self, event_type: str) -> Callable[[Rule], Rule]:
        def add(fn: Rule) -> Rule:
            self._add(event_type, fn)
            return fn

        return add

    def no_posting(self, *event_types: str) -> None:
        for event_type in event_types:
            self._add(event_type, _posts_nothing)

    def _add(self, event_type: str, rule: Rule) -> None:
        if event_type in self.rules:
            raise ImproperlyConfigured(f"event type {event_type!r} is written twice")
        self.rules[event_type] = rule


def rules_register(rule_set: RuleSet) -> None:
    """Register an app's rule set with the ledger; called from the app's ``AppConfig.ready()``.
    Registering the same rules again is harmless; another rule for a known type is an error."""
    for event_type, rule in rule_set.rules.items():
        known = _RULES.setdefault(event_type, rule)
        if known is not rule:
            raise ImproperlyConfigured(f"event type {event_type!r} already has another posting rule")


def rule_for(event_type: str) -> Rule:
    try:
        return _RULES[event_type]
    except KeyError:
        raise UnknownEventType(f"unknown event type {event_type!r}", param="event_type") from None


def registered_event_types() -> list[str]:
    return sorted(_RULES)


# --------------------------------------------------------------------------- payload helpers


def field(payload: dict, name: str) -> object:
    if not isinstance(payload, dict) or name not in payload:
        raise InvalidPosting(f"payload is missing {name!r}", param=name)
    return payload[name]


def text(payload: dict, name: str) -> str:
    value = field(payload, name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidPosting(f"{name!r} must be a non-empty string", param=name)
    return value


def amount(payload: dict, name: str = "amount") -> int:
    try:
        return require_amount(field(payload, name))
    except MoneyError as exc:
        raise InvalidPosting(str(exc), param=name) from None


def currency(payload: dict, name: str = "currency") -> str:
    try:
        return normalize_currency(field(payload, name))
    except MoneyError as exc:
        raise InvalidPosting(str(exc), param=name) from None


def two_legs(payload: dict) -> list[Line]:
    debit, credit = text(payload, "debit"), text(payload, "credit")
    if debit == credit:
        raise InvalidPosting("debit and credit must be different accounts", param="credit")
    amt, cur = amount(payload), currency(payload)
    return [Line(debit, cur, "D", amt), Line(credit, cur, "C", amt)]


# --------------------------------------------------------------------------- the ledger's own types

LEDGER_RULES = RuleSet()


@LEDGER_RULES.posting("ManualAdjustment")
def _manual_adjustment(payload: dict) -> list[Line]:
    """An operator's adjustment: Dr debit / Cr credit, with a reason on the event."""
    text(payload, "reason")
    return two_legs(payload)


@LEDGER_RULES.posting("Transfer")
def _transfer(payload: dict) -> list[Line]:
    """A move between two of our accounts in one currency (e.g. a funding move)."""
    return two_legs(payload)


@LEDGER_RULES.posting("Reversal")
def _reversal(payload: dict) -> list[Line]:
    """The mirror of an earlier event's lines; the lines travel in the payload so the rule stays pure."""
    text(payload, "reverses")
    raw = field(payload, "lines")
    if not isinstance(raw, list) or not raw:
        raise InvalidPosting("'lines' must be a non-empty list", param="lines")
    lines = []
    for item in raw:
        side = field(item, "side")
        if side not in ("D", "C"):
            raise InvalidPosting("line side must be 'D' or 'C'", param="lines")
        lines.append(
            Line(text(item, "account"), currency(item), str(side), amount(item), allow_negative=True)
        )
    return lines


@LEDGER_RULES.posting("FxConversion")
def _fx_conversion(payload: dict) -> list[Line]:
    """Money moves between currencies only through the fx account, at the rate on the event."""
    from_cur, to_cur = currency(payload, "from_currency"), currency(payload, "to_currency")
    if from_cur == to_cur:
        raise InvalidPosting("an FX conversion needs two different currencies", param="to_currency")
    from_amt, to_amt = amount(payload, "from_amount"), amount(payload, "to_amount")
    try:
        rate = Decimal(str(field(payload, "rate")))
    except InvalidOperation:
        raise InvalidPosting("rate must be a decimal number", param="rate") from None
    if not rate.is_finite() or rate <= 0:
        raise InvalidPosting("rate must be positive", param="rate")
    try:
        expected = convert(from_amt, from_currency=from_cur, to_currency=to_cur, rate=rate)
    except ArithmeticError:  # decimal.InvalidOperation: the converted amount is out of range
        raise InvalidPosting(f"rate {rate} is out of range", param="rate") from None
    if expected != to_amt:
        raise InvalidPosting(
            f"to_amount {to_amt} does not match {from_amt} {from_cur} at {rate} (= {expected} {to_cur})",
            param="to_amount",
        )
    source, target = text(payload, "from_account"), text(payload, "to_account")
    return [
        Line(source, from_cur, "C", from_amt),
        Line("fx", from_cur, "D", from_amt),
        Line("fx", to_cur, "C", to_amt),
        Line(target, to_cur, "D", to_amt),
    ]
