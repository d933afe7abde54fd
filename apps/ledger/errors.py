"""Ledger errors. Each message is one readable line; nothing is written when one is raised."""

from __future__ import annotations


class LedgerError(ValueError):
    code = "ledger_error"

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.param = param


class UnknownEventType(LedgerError):
    code = "unknown_event_type"


class InvalidPosting(LedgerError):
    """Bad amounts, currencies, unbalanced or otherwise malformed entries or payloads."""

    code = "invalid_posting"


class UnknownAccount(LedgerError):
    code = "unknown_account"


class InsufficientFunds(LedgerError):
    code = "insufficient_funds"


class ConcurrencyError(LedgerError):
    """The stream moved on since the version the caller expected."""

    code = "version_conflict"


class IdempotencyConflict(LedgerError):
    """The idempotency key was used before for a different event."""

    code = "idempotency_conflict"
