"""The checkout app's error (raised by its services; the API and the pages render it)."""

from __future__ import annotations


class CheckoutError(ValueError):
    """Input or a state the service cannot honour; nothing was changed. ``param`` names the field."""

    def __init__(self, message: str, *, code: str = "parameter_invalid", param: str | None = None):
        super().__init__(message)
        self.code = code
        self.param = param
