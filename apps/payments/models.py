"""Payment intents, attempts, refunds, gateway accounts, routing and decline rules.

Every state change goes through the model's machine in ``statemachine`` (``intent_to``,
``attempt_to``, ...; an illegal one raises) and records a ledger event; the money-moving ones post
(see ``ledger_rules``)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from apps.core.crypto import decrypt_json, encrypt_json
from apps.core.ids import new_id
from apps.core.money import format_amount
from apps.customers.models import Customer
from apps.payments.gateways.base import Outcome


class GatewayAccount(models.Model):
    class Kind(models.TextChoices):
        SIMULATOR = "simulator"
        STRIPE = "stripe"
        ADYEN = "adyen"

    name = models.SlugField(
        max_length=60, unique=True, help_text="e.g. stripe_main; used in ledger account codes"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    credentials_encrypted = models.TextField(blank=True, editable=False)
    settings = models.JSONField(
        default=dict, blank=True, help_text="Non-secret settings (api base, simulator behaviour)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def credentials(self) -> dict:
        return decrypt_json(self.credentials_encrypted) if self.credentials_encrypted else {}

    @credentials.setter
    def credentials(self, value: dict) -> None:
        self.credentials_encrypted = encrypt_json(value) if value else ""

    @property
    def clearing_account(self) -> str:
        return f"processor_clearing:{self.name}"


class RoutingRule(models.Model):
    """Ordered rules; the first whose conditions match yields the candidate gateways."""

    class Mode(models.TextChoices):
        ORDERED = "ordered", "priority order"
        WEIGHTED = "weighted", "weighted volume split (then the rest in order)"

    name = models.CharField(max_length=100)
    priority = models.IntegerField(default=100, help_text="Lower runs first.")
    enabled = models.BooleanField(default=True)
    currencies = models.JSONField(default=list, blank=True, help_text='e.g. ["USD", "EUR"]; empty = any')
    card_countries = models.JSONField(default=list, blank=True, help_text='e.g. ["BR"]; empty = any')
    card_brands = models.JSONField(default=list, blank=True, help_text='e.g. ["visa", "amex"]; empty = any')
    payment_method_types = models.JSONField(default=list, blank=True, help_text='e.g. ["card"]; empty = any')
    amount_min = models.BigIntegerField(null=True, blank=True)
    amount_max = models.BigIntegerField(null=True, blank=True)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.ORDERED)
    candidates = models.JSONField(
        default=list, help_text='[{"gateway": "primary", "weight": 70}, ...] in priority order'
    )
    prefer_success_rate = models.BooleanField(
        default=False, help_text="Move the gateway with the best recent success rate to the front."
    )

    class Meta:
        ordering = ["priority", "id"]

    def __str__(self) -> str:
        return f"{self.priority}: {self.name}"


class DeclineRule(models.Model):
    """(gateway, decline code, advice code) -> what the mesh does. ``*`` matches anything.
    An issuer's advice code (do_not_try_again, try_again_later) outranks this table."""

    class Action(models.TextChoices):
        RETRY_LATER = "retry_later", "retry later at the same gateway"
        FAILOVER = "failover", "fail over to the next gateway now"
        STOP = "stop", "stop"

    gateway_kind = models.CharField(max_length=20, default="*")
    code = models.CharField(max_length=80)
    advice_code = models.CharField(max_length=80, default="*")
    action = models.CharField(max_length=20, choices=Action.choices)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["gateway_kind", "code", "advice_code"]
        constraints = [
            models.UniqueConstraint(
                fields=["gateway_kind", "code", "advice_code"], name="payments_decline_rule_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.gateway_kind}/{self.code}/{self.advice_code} -> {self.action}"


# A card saved while charging it is for later charges without the customer, or with them.
SETUP_FUTURE_USAGES = ("off_session", "on_session")


class PaymentIntent(models.Model):
    class Status(models.TextChoices):
        REQUIRES_CONFIRMATION = "requires_confirmation"
        PROCESSING = "processing"
        REQUIRES_ACTION = "requires_action"
        REQUIRES_CAPTURE = "requires_capture"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"

    class CaptureMethod(models.TextChoices):
        AUTOMATIC = "automatic"
        MANUAL = "manual"

    id = models.CharField(primary_key=True, max_length=40, editable=False)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=30, choices=Status.choices, default=Status.REQUIRES_CONFIRMATION)
    capture_method = models.CharField(
        max_length=10, choices=CaptureMethod.choices, default=CaptureMethod.AUTOMATIC
    )
    payment_method = models.CharField(max_length=255)
    customer_id = models.CharField(max_length=40, blank=True)
    description = models.CharField(max_length=500, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    card = models.JSONField(
        default=dict, blank=True, help_text="brand, country, funding, last4 used for routing"
    )
    off_session = models.BooleanField(default=False)
    setup_future_usage = models.CharField(
        max_length=20,
        blank=True,
        choices=[(usage, usage) for usage in SETUP_FUTURE_USAGES],
        help_text="save the card for later use while charging it (needs a customer)",
    )
    saved_payment_method = models.CharField(
        max_length=40, blank=True, help_text="the payment method of ours this charge saved (paym_...)"
    )
    recurring = models.BooleanField(
        default=False, help_text="a scheduled charge of a subscription (billing's invoices)"
    )
    has_splits = models.BooleanField(default=False, help_text="a split plan goes with it (vendors)")
    amount_capturable = models.BigIntegerField(default=0)
    amount_received = models.BigIntegerField(default=0)
    amount_refunded = models.BigIntegerField(default=0)
    gateway_account = models.ForeignKey(
        GatewayAccount,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="the gateway that took the charge",
    )
    routing = models.JSONField(default=dict, blank=True, help_text="the routing decision and its reasons")
    last_error = models.JSONField(default=dict, blank=True)
    next_action = models.JSONField(default=dict, blank=True)
    # Where the customer comes back after authenticating (3-D Secure): given on create or confirm.
    return_url = models.URLField(max_length=2000, blank=True)
    # The emailed link to authenticate an off-session payment the issuer declined with
    # ``authentication_required`` was sent (once per payment).
    authentication_link_sent_at = models.DateTimeField(null=True, blank=True)
    splits = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="payments_intent_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(amount_refunded__lte=models.F("amount_received")),
                name="payments_intent_refund_not_above_received",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} {format_amount(self.amount, self.currency)} {self.status}"


class PaymentAttempt(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"  # created; the gateway call may be in flight
        AUTHORIZED = "authorized"
        CAPTURED = "captured"
        REQUIRES_ACTION = "requires_action"
        DECLINED = "declined"
        FAILED = "failed"  # gateway error: nothing was charged
        UNKNOWN = "unknown"  # sent, answer lost: must be resolved before anything else
        CANCELED = "canceled"  # voided / technically cancelled

    id = models.CharField(primary_key=True, max_length=50, editable=False)  # "<intent id>_<n>"
    intent = models.ForeignKey(PaymentIntent, on_delete=models.PROTECT, related_name="attempts")
    number = models.PositiveIntegerField()
    gateway_account = models.ForeignKey(GatewayAccount, on_delete=models.PROTECT, related_name="attempts")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    outcome = models.CharField(max_length=20, choices=[(o.value, o.value) for o in Outcome], blank=True)
    reference = models.CharField(max_length=100, blank=True, help_text="the gateway's id for this charge")
    decline_code = models.CharField(max_length=80, blank=True)
    advice_code = models.CharField(max_length=80, blank=True)
    message = models.CharField(max_length=500, blank=True)
    amount_authorized = models.BigIntegerField(default=0)
    amount_captured = models.BigIntegerField(default=0)
    fee = models.BigIntegerField(default=0)
    latency_ms = models.IntegerField(null=True, blank=True)
    resolve_count = models.PositiveIntegerField(default=0)
    next_resolve_at = models.DateTimeField(null=True, blank=True, db_index=True)
    lease_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="while pending, the gateway call may still be running until then: nothing "
        "else resolves or closes the attempt before",
    )
    # A capture or cancel asked of the gateway whose answer is not applied yet (the call is in
    # flight, or its answer was lost): a second one is refused until it settles, and a durable
    # task finishes it (``payment_capture_resolve`` / ``payment_cancel_resolve``).
    pending_operation = models.CharField(
        max_length=10, choices=[("capture", "capture"), ("cancel", "cancel")], blank=True, default=""
    )
    pending_amount = models.BigIntegerField(default=0, help_text="the amount of the pending capture")
    pending_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["intent_id", "number"]
        constraints = [models.UniqueConstraint(fields=["intent", "number"], name="payments_attempt_number")]
        indexes = [models.Index(fields=["status", "updated_at"], name="payments_attempt_status")]

    def __str__(self) -> str:
        return f"{self.id} @{self.gateway_account_id} {self.status}"


class Refund(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=40, editable=False)
    intent = models.ForeignKey(PaymentIntent, on_delete=models.PROTECT, related_name="refunds")
    attempt = models.ForeignKey(PaymentAttempt, on_delete=models.PROTECT, related_name="refunds")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=200, blank=True)
    reference = models.CharField(max_length=100, blank=True)
    failure_message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="payments_refund_amount_positive")
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.amount} {self.currency} {self.status}"


class SimulatorCharge(models.Model):
    """The simulator's own record of what it charged: ``retrieve`` tells the truth from here,
    and tests count real charges per intent."""

    account = models.CharField(max_length=60)
    attempt_id = models.CharField(max_length=50)
    reference = models.CharField(max_length=40, unique=True)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    payment_method = models.CharField(max_length=255)
    status = models.CharField(max_length=20)  # authorized, captured, canceled
    amount_captured = models.BigIntegerField(default=0)
    amount_refunded = models.BigIntegerField(default=0)
    # What the request said of the customer's presence, the network transaction id it passed
    # (a merchant-initiated charge's link to the first one), and the token the charge saved.
    off_session = models.BooleanField(default=False)
    network_transaction_id_passed = models.CharField(max_length=100, blank=True)
    saved_token = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "attempt_id"], name="payments_sim_charge_once")
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.amount} {self.currency} {self.status}"


class SimulatorAction(models.Model):
    """The simulator's record of an attempt that holds no money (yet): one waiting for the
    customer (3-D Secure) or one cancelled by our attempt id before any charge existed (a
    tombstone, so a late or completed request for it can never charge)."""

    account = models.CharField(max_length=60)
    attempt_id = models.CharField(max_length=50)
    status = models.CharField(max_length=20)  # requires_action, completed, failed, canceled
    amount = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3, blank=True)
    payment_method = models.CharField(max_length=255, blank=True)
    capture = models.BooleanField(default=True)
    # The request asked to save the card (``setup_future_usage``) for this customer reference: the
    # charge made when the customer completes the action saves it.
    save_card = models.BooleanField(default=False)
    customer_reference = models.CharField(max_length=100, blank=True)
    # Where the challenge page sends the customer back (the request's return_url), if anywhere.
    return_url = models.URLField(max_length=2000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "attempt_id"], name="payments_sim_action_once")
        ]

    def __str__(self) -> str:
        return f"{self.attempt_id} {self.status}"


class LateCharge(models.Model):
    """Money a gateway took on an attempt we had already closed (its answer came after the resolver
    acted, or the customer completed 3-D Secure after the payment moved on). Never kept: it is
    voided or refunded at that gateway automatically (``payment_late_charge_reverse``), posted to
    the ledger, and shown to operators."""

    class Status(models.TextChoices):
        REVERSING = "reversing"  # found; the void or refund is being sent
        REVERSED = "reversed"  # voided or refunded at the gateway
        NEEDS_OPERATOR = "needs_operator"  # the gateway refused to reverse it: an operator must act

    id = models.CharField(primary_key=True, max_length=40, editable=False)
    attempt = models.OneToOneField(PaymentAttempt, on_delete=models.PROTECT, related_name="late_charge")
    intent = models.ForeignKey(PaymentIntent, on_delete=models.PROTECT, related_name="late_charges")
    gateway_account = models.ForeignKey(GatewayAccount, on_delete=models.PROTECT, related_name="+")
    reference = models.CharField(max_length=100, blank=True, help_text="the gateway's id for the charge")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    captured = models.BooleanField(help_text="captured (refund it) or only authorised (void it)")
    fee = models.BigIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.REVERSING, db_index=True)
    found_by = models.CharField(max_length=200, help_text="how it came to light")
    message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.id} {self.amount} {self.currency} on {self.attempt_id} [{self.status}]"


class SimulatorRefund(models.Model):
    charge = models.ForeignKey(SimulatorCharge, on_delete=models.CASCADE, related_name="refunds")
    refund_id = models.CharField(max_length=60, unique=True)
    amount = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.refund_id} {self.amount}"


class Dispute(models.Model):
    """A chargeback on a captured payment. The disputed amount leaves the processor's clearing
    when it opens; who bears it (the platform, or a split payment's vendors) is posted then and
    posted back if the dispute is won."""

    class Status(models.TextChoices):
        OPEN = "open"
        WON = "won"
        LOST = "lost"

    id = models.CharField(primary_key=True, max_length=40, editable=False)
    intent = models.ForeignKey(PaymentIntent, on_delete=models.PROTECT, related_name="disputes")
    gateway_account = models.ForeignKey(GatewayAccount, on_delete=models.PROTECT, related_name="disputes")
    reference = models.CharField(max_length=255, help_text="the processor's dispute id (e.g. dp_...)")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True)
    allocations = models.JSONField(default=list, help_text="who bears it: [{account, amount}]")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["gateway_account", "reference"], name="payments_dispute_once")
        ]

    def __str__(self) -> str:
        return f"{self.id} on {self.intent_id} [{self.status}]"


class InboundEvent(models.Model):
    """One notification a processor sent us (Stripe's ``evt_...``, one Adyen notification item),
    stored once as it arrived and applied to our payments by a worker (``apps.payments.news``).
    Unique per gateway account, so a redelivery is acknowledged and not stored again. (Its table
    keeps the name it had when it lived in the webhooks app.)"""

    class State(models.TextChoices):
        PENDING = "pending"  # stored; a worker will apply it
        PROCESSED = "processed"  # applied (or nothing to apply); see ``result``
        FAILED = "failed"  # the last try raised (retried by its durable task) or contradicts our records

    gateway_account = models.ForeignKey(
        GatewayAccount, on_delete=models.PROTECT, related_name="inbound_events"
    )
    provider = models.CharField(max_length=10, help_text="the gateway kind whose notification it is")
    event_id = models.CharField(
        max_length=255,
        help_text="the processor's id for it (Adyen has none: eventCode:pspReference:success)",
    )
    type = models.CharField(
        max_length=100, db_index=True, help_text="the processor's type (Adyen's eventCode)"
    )
    body = models.TextField(help_text="the request body exactly as received (what the signature covers)")
    payload = models.JSONField(help_text="the notification (Stripe's event, one Adyen notification item)")
    occurred_at = models.DateTimeField(null=True, blank=True, help_text="when the processor says it happened")
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    result = models.CharField(max_length=500, blank=True, help_text="what processing did")

    class Meta:
        db_table = "webhooks_inboundevent"
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["gateway_account", "event_id"], name="webhooks_inbound_event_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.type} {self.event_id} [{self.state}]"


def new_payment_method_id() -> str:
    return new_id("paym_")


class PaymentMethod(models.Model):
    """A payment method as ours (``paym_...``, never confused with a processor's ``pm_...``): the
    card's display details and, per gateway account that can charge it, a credential
    (``PaymentMethodCredential``). No card number is ever held: only processors' references."""

    id = models.CharField(primary_key=True, max_length=40, default=new_payment_method_id, editable=False)
    type = models.CharField(max_length=20, default="card")
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    brand = models.CharField(max_length=20, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="issuing country")
    funding = models.CharField(max_length=20, blank=True)
    fingerprint = models.CharField(
        max_length=64, blank=True, help_text="the same card has the same fingerprint (duplicates)"
    )
    network_transaction_id = models.CharField(
        max_length=100,
        blank=True,
        help_text="the card network's id of the first customer-initiated charge, passed on later "
        "merchant-initiated ones (at any processor)",
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "fingerprint"],
                condition=models.Q(customer__isnull=False) & ~models.Q(fingerprint=""),
                name="payments_method_card_once_per_customer",
            )
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.brand} ...{self.last4}"

    def card(self) -> dict:
        """The details routing reads (as ``PaymentIntent.card``)."""
        return {"brand": self.brand, "country": self.country, "funding": self.funding, "last4": self.last4}


class PaymentMethodCredential(models.Model):
    """What one gateway account knows the method by (a Stripe PaymentMethod id, an Adyen stored
    payment method id with its shopper reference, a simulator token): encrypted at rest, shown
    only masked."""

    method = models.ForeignKey(PaymentMethod, on_delete=models.CASCADE, related_name="credentials")
    gateway_account = models.ForeignKey(
        GatewayAccount, on_delete=models.PROTECT, related_name="method_credentials"
    )
    credential_encrypted = models.TextField(editable=False)
    reference_last4 = models.CharField(
        max_length=4, blank=True, help_text="the reference's last 4 characters"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["method", "gateway_account"], name="payments_method_credential_once"
            )
        ]

    def __str__(self) -> str:
        return f"credential ...{self.reference_last4}"

    @property
    def credential(self) -> dict:
        """{"reference": ..., and what else the processor needs (e.g. "shopper_reference")}."""
        return decrypt_json(self.credential_encrypted)

    @credential.setter
    def credential(self, value: dict) -> None:
        self.credential_encrypted = encrypt_json(value)
        self.reference_last4 = str(value.get("reference", ""))[-4:]


class SimulatorToken(models.Model):
    """The simulator's saved cards: a token it issued (``simtok_<account>_<hex>``) for a test
    card. Each simulator account charges only its own tokens (and the documented test tokens)."""

    account = models.CharField(max_length=60)
    token = models.CharField(max_length=120, unique=True)
    payment_method = models.CharField(max_length=255, help_text="the test card it stands for")
    customer_reference = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.token} ({self.account})"
