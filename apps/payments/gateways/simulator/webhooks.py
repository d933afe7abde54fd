"""The simulator sends no webhooks: its charges are final when it answers, and a customer's
3-D Secure completes through ``SimulatorGateway.action_complete`` (whose news the caller applies).
It still implements the port, so every processor package looks the same: no endpoint is mounted
for it, and anything offered as its notification is refused. (The chaos harness feeds
Stripe-shaped events for simulator charges to the ``stripe`` reader instead.)"""

from __future__ import annotations

from collections.abc import Mapping

from apps.payments.gateways.base import (
    GatewayConfig,
    GatewayNews,
    Notification,
    NotificationAnswer,
    NotificationMatch,
    NotificationSignatureError,
)


class SimulatorNotifications:
    endpoint = False

    def __init__(self, config: GatewayConfig):
        self.config = config

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> list[Notification]:
        raise NotificationSignatureError("the simulator sends no webhooks")

    def notification_answer(self, received: list[tuple[Notification, bool]]) -> NotificationAnswer:
        return NotificationAnswer({"received": True})

    def parse_notification(self, notification: Notification) -> list[GatewayNews]:
        return []

    def cancellations(self, *, attempt_id: str, reference: str | None) -> NotificationMatch:
        return NotificationMatch(types=(), any_of=(), said=f"attempt {attempt_id} was cancelled since")
