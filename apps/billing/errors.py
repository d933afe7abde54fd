"""The billing app's error (raised by its services and state machines; the API renders it)."""

from __future__ import annotations


class BillingError(ValueError):
    """Input or a state the service cannot honour; nothing was changed. ``param`` names the field."""

    def __init__(self, message: str, *, code: str = "parameter_invalid", param: str | None = None):
        super().__init__(message)
        self.code = code
        self.param = param
