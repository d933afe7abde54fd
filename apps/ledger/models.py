"""The ledger's tables. Events, journal transactions, entries, chain links and seals are
append-only: PostgreSQL triggers refuse UPDATE, DELETE and TRUNCATE on them (migration 0002).
Accounts are configuration; balances are a projection that ``replay`` can rebuild."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class CurrentXactId(models.Func):
    """The inserting transaction's id: used to seal events only once their writers finished."""

    template = "(pg_current_xact_id()::text::bigint)"
    output_field = models.BigIntegerField()


class Side(models.TextChoices):
    DEBIT = "D", "debit"
    CREDIT = "C", "credit"


class AccountType(models.TextChoices):
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    REVENUE = "revenue"
    EXPENSE = "expense"


class Account(models.Model):
    """One account in one currency, e.g. ``vendor_payable:ven_123`` in USD."""

    code = models.CharField(max_length=200)
    kind = models.CharField(max_length=50)
    currency = models.CharField(max_length=3)
    type = models.CharField(max_length=10, choices=AccountType.choices)
    normal_side = models.CharField(max_length=1, choices=Side.choices)
    allow_negative = models.BooleanField(default=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "ledger_account"
        ordering = ["code", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["code", "currency"], name="ledger_account_code_currency")
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.currency})"


class Balance(models.Model):
    """Current-balance projection, updated in the posting transaction. ``net`` is debits minus
    credits; ``balance`` is the same figure seen from the account's normal side."""

    account = models.OneToOneField(
        Account, on_delete=models.PROTECT, primary_key=True, related_name="balance"
    )
    debits = models.BigIntegerField(default=0)
    credits = models.BigIntegerField(default=0)
    last_event_id = models.BigIntegerField(null=True)
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "ledger_balance"

    def __str__(self) -> str:
        return f"{self.account}: {self.balance}"

    @property
    def net(self) -> int:
        return self.debits - self.credits

    @property
    def balance(self) -> int:
        return self.net if self.account.normal_side == Side.DEBIT else -self.net


class LedgerEvent(models.Model):
    """A domain fact. ``(stream, version)`` is unique (optimistic concurrency) and so is
    ``idempotency_key`` (recording twice returns the first)."""

    # Unique through Meta.constraints rather than unique=True, which would add a second
    # (pattern-ops) index per column: random keys in a large index cost every insert.
    public_id = models.CharField(max_length=40)
    type = models.CharField(max_length=100)
    stream = models.CharField(max_length=200)
    version = models.PositiveIntegerField()
    idempotency_key = models.CharField(max_length=255)
    payload = models.JSONField()
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField(db_default=Now())
    txid = models.BigIntegerField(db_default=CurrentXactId(), editable=False)

    class Meta:
        db_table = "ledger_event"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["stream", "version"], name="ledger_event_stream_version"),
            models.UniqueConstraint(fields=["public_id"], name="ledger_event_public_id_uniq"),
            models.UniqueConstraint(fields=["idempotency_key"], name="ledger_event_idempotency_key_uniq"),
        ]
        indexes = [
            models.Index(fields=["txid", "id"], name="ledger_event_txid"),
            models.Index(fields=["type", "id"], name="ledger_event_type"),
            models.Index(fields=["recorded_at"], name="ledger_event_recorded"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.type} {self.stream}@{self.version}"


class JournalTransaction(models.Model):
    """The postings of one event; debits equal credits per currency (checked by PostgreSQL)."""

    event = models.OneToOneField(LedgerEvent, on_delete=models.PROTECT, related_name="journal")
    recorded_at = models.DateTimeField(db_default=Now())
    txid = models.BigIntegerField(db_default=CurrentXactId(), editable=False)

    class Meta:
        db_table = "ledger_transaction"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"txn {self.pk} of {self.event_id}"


class Entry(models.Model):
    transaction = models.ForeignKey(JournalTransaction, on_delete=models.PROTECT, related_name="entries")
    # No single-column FK indexes: Meta.indexes lead with event and with account already.
    event = models.ForeignKey(LedgerEvent, on_delete=models.PROTECT, related_name="entries", db_index=False)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries", db_index=False)
    currency = models.CharField(max_length=3)
    side = models.CharField(max_length=1, choices=Side.choices)
    amount = models.BigIntegerField()
    recorded_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "ledger_entry"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="ledger_entry_amount_positive"),
            models.CheckConstraint(condition=models.Q(side__in=["D", "C"]), name="ledger_entry_side"),
        ]
        indexes = [
            models.Index(fields=["account", "event"], name="ledger_entry_account_event"),
            models.Index(fields=["account", "recorded_at"], name="ledger_entry_account_time"),
            models.Index(fields=["event"], name="ledger_entry_event"),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.amount} {self.currency} {self.account_id}"


class ChainLink(models.Model):
    """An event's place in the hash chain: ``chain_hash = H(previous chain_hash, event_hash)``."""

    seq = models.BigIntegerField(primary_key=True)
    event = models.OneToOneField(LedgerEvent, on_delete=models.PROTECT, related_name="chain_link")
    block = models.IntegerField(db_index=True)
    event_hash = models.CharField(max_length=64)
    chain_hash = models.CharField(max_length=64)

    class Meta:
        db_table = "ledger_chain_link"
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"#{self.seq} {self.chain_hash[:12]}"


class Seal(models.Model):
    """A block of chained events. ``hash`` covers the previous block's hash, the Merkle root of
    the block's event hashes and its last chain hash; the newest block's hash is the digest."""

    number = models.IntegerField(primary_key=True)
    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField()
    event_count = models.IntegerField()
    horizon_txid = models.BigIntegerField(
        help_text="Every event written by a transaction below this is sealed."
    )
    prev_hash = models.CharField(max_length=64)
    merkle_root = models.CharField(max_length=64)
    merkle_version = models.PositiveSmallIntegerField(
        default=2,
        help_text="Tree format of merkle_root (apps.ledger.merkle): 1 for seals made before versioning, "
        "2 (domain-separated, RFC 6962) since.",
    )
    last_chain_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    sealed_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "ledger_seal"
        ordering = ["number"]

    def __str__(self) -> str:
        return f"block {self.number} ({self.event_count} events) {self.hash[:12]}"
