"""Every way a payment can change (its services), by concern:

- ``setup``: default gateways, routing and decline table; gateway accounts and their adapters.
- ``confirm``: create and confirm a payment (closing a 3-D Secure attempt left open first).
- ``drive``: route, start an attempt, call the gateway with no transaction open, apply the
  answer, fail over.
- ``resolution``: unknown outcomes (resolve, refresh) and ``payments_reconcile``.
- ``operations``: capture, cancel and refund, each in three steps, and their reconcile.
- ``late_charges``: money taken on an attempt we had closed, reversed automatically.
- ``truth``: gateway news (webhooks, lookups) applied forward only.
- ``authentication``: the customer's return from 3-D Secure, unfinished authentications expired,
  the emailed link to authenticate an off-session payment; ``messages``: what customers are told.
- ``settlement``: what every path shares when money moves (a capture's allocations and event, a
  pending refund settled); ``ledger_events``: recording events (ledger, then outbound).
- ``schedules``: durable handlers, leases and backoffs; ``errors``: what the services raise.

The events themselves are built in ``apps.payments.events``; rows are locked through
``apps.payments.locks``; the vendors' split of a payment is reached through
``apps.payments.hooks``.

No database transaction is held open across a gateway call: each step commits its own state
(and its ledger event) before and after the call.

Callers import the public names from here (``from apps.payments.services import
payment_capture``). Durable tasks name their handlers ``apps.payments.services.<name>``, so these
names never move.
"""

from apps.payments.events import OUTBOUND_EVENTS
from apps.payments.services.authentication import (
    payment_authentication_expire,
    payment_authentication_return,
    payments_authentication_expire,
)
from apps.payments.services.confirm import payment_confirm, payment_intent_create, payment_method_check
from apps.payments.services.drive import payment_continue
from apps.payments.services.errors import (
    AttemptStillUnknown,
    GatewayTruthConflict,
    GatewayTruthNotYet,
    OperationStillPending,
    PaymentError,
)
from apps.payments.services.late_charges import late_charge_notify, payment_late_charge_reverse
from apps.payments.services.links import (
    authentication_link_payment,
    authentication_link_url,
    payment_authentication_link_confirm,
    payment_authentication_link_send,
)
from apps.payments.services.messages import customer_message
from apps.payments.services.methods import payment_saved_method_record
from apps.payments.services.operations import (
    REFUND_REPLAY_WINDOW,
    payment_cancel,
    payment_cancel_resolve,
    payment_capture,
    payment_capture_resolve,
    payment_operations_reconcile,
    payment_refund,
    refund_execute,
)
from apps.payments.services.resolution import (
    payment_attempt_refresh,
    payment_attempt_resolve,
    payment_drive_on,
    payments_reconcile,
)
from apps.payments.services.schedules import (
    ACTION_CHECKS,
    CANCEL_HANDLER,
    CAPTURE_HANDLER,
    OPERATION_ALERT_AFTER,
    OPERATION_LEASE,
    OPERATION_MAX_ATTEMPTS,
    OPERATION_STRANDED_AFTER,
    REFUND_HANDLER,
    RESOLVE_BACKOFF_SECONDS,
    attempt_lease,
)
from apps.payments.services.setup import gateway_account_update, gateway_client, payments_defaults_install
from apps.payments.services.truth import (
    payment_attempt_apply_gateway_truth,
    payment_attempt_capture_failed,
    payment_refund_apply_gateway_truth,
    payment_refund_record_external,
)

__all__ = [
    "ACTION_CHECKS",
    "CANCEL_HANDLER",
    "CAPTURE_HANDLER",
    "OPERATION_ALERT_AFTER",
    "OPERATION_LEASE",
    "OPERATION_MAX_ATTEMPTS",
    "OPERATION_STRANDED_AFTER",
    "OUTBOUND_EVENTS",
    "REFUND_HANDLER",
    "REFUND_REPLAY_WINDOW",
    "RESOLVE_BACKOFF_SECONDS",
    "AttemptStillUnknown",
    "GatewayTruthConflict",
    "GatewayTruthNotYet",
    "OperationStillPending",
    "PaymentError",
    "attempt_lease",
    "authentication_link_payment",
    "authentication_link_url",
    "customer_message",
    "gateway_account_update",
    "gateway_client",
    "late_charge_notify",
    "payment_attempt_apply_gateway_truth",
    "payment_attempt_capture_failed",
    "payment_attempt_refresh",
    "payment_attempt_resolve",
    "payment_authentication_expire",
    "payment_authentication_link_confirm",
    "payment_authentication_link_send",
    "payment_authentication_return",
    "payment_cancel",
    "payment_cancel_resolve",
    "payment_capture",
    "payment_capture_resolve",
    "payment_confirm",
    "payment_continue",
    "payment_drive_on",
    "payment_intent_create",
    "payment_late_charge_reverse",
    "payment_method_check",
    "payment_operations_reconcile",
    "payment_refund",
    "payment_refund_apply_gateway_truth",
    "payment_refund_record_external",
    "payment_saved_method_record",
    "payments_authentication_expire",
    "payments_defaults_install",
    "payments_reconcile",
    "refund_execute",
]
