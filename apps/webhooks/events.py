"""What a provider module hands the store: one event parsed from a verified body."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class EventFormatError(ValueError):
    """A body that is not the provider's event format; nothing may be stored."""


@dataclass(frozen=True)
class Notification:
    event_id: str  # unique per gateway account: a redelivery carries the same id
    type: str
    payload: dict
    occurred_at: datetime | None = None
