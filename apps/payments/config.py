"""The mesh's configuration (gateway accounts, routing rules, decline rules), cached per process.

Every payment reads it and operators rarely change it, so each process keeps one copy per schema:

- A change saved through the ORM (the admin, ``gateway_account_update``; ``post_save`` /
  ``post_delete``) drops this process's copy and bumps a version number in Redis when its
  transaction commits. Other processes compare their copy's version with Redis at most every
  ``CHECK_SECONDS`` and reload when it moved, so an edit applies everywhere within about a second.
- A copy older than ``MAX_AGE_SECONDS`` is reloaded whatever the version says, which bounds how
  long a change made without signals (a queryset ``update()``, SQL by hand) can go unseen.
- Inside a transaction that may hold uncommitted edits (any ``atomic`` block the caller opened,
  e.g. a test's) the copy is neither used nor filled: the rows are read as they are.
- Redis unreachable: the copy is reloaded from the database every ``CHECK_SECONDS``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

import redis
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save

from apps.payments.breaker import redis_client
from apps.payments.gateways.base import GatewayConfig
from apps.payments.models import DeclineRule, GatewayAccount, RoutingRule
from apps.tenants.db import current_schema

CHECK_SECONDS = 1.0
MAX_AGE_SECONDS = 30.0


@dataclass
class MeshConfig:
    """One snapshot of a schema's configuration. Shared between threads: read it, never change it."""

    accounts: dict[str, GatewayAccount]
    rules: list[RoutingRule]  # enabled ones, in priority order
    decline_rules: list[DeclineRule]  # in the model's ordering
    version: bytes | None = None
    loaded_at: float = 0.0
    checked_at: float = 0.0
    _gateway_configs: dict[str, GatewayConfig] = field(default_factory=dict, repr=False)
    _by_id: dict[int, GatewayAccount] | None = field(default=None, repr=False)

    def account_by_id(self, account_id: int) -> GatewayAccount | None:
        by_id = self._by_id
        if by_id is None:
            by_id = self._by_id = {a.pk: a for a in self.accounts.values()}
        return by_id.get(account_id)

    def gateway_config(self, account: GatewayAccount) -> GatewayConfig:
        """The adapter's configuration; credentials are decrypted once per snapshot."""
        if self.accounts.get(account.name) is not account:
            return _gateway_config(account)
        cfg = self._gateway_configs.get(account.name)
        if cfg is None:
            cfg = self._gateway_configs[account.name] = _gateway_config(account)
        return cfg


def _gateway_config(account: GatewayAccount) -> GatewayConfig:
    return GatewayConfig(account_id=account.name, credentials=account.credentials, settings=account.settings)


_cache: dict[str, MeshConfig] = {}
_lock = threading.Lock()


def _version_key(schema: str) -> str:
    return f"mp:cfg:{schema}"


def _read_version(schema: str) -> bytes | None:
    """The schema's configuration version (b"0" before the first change); None if Redis is down."""
    try:
        return redis_client().get(_version_key(schema)) or b"0"
    except redis.RedisError:
        return None


def _load(version: bytes | None) -> MeshConfig:
    now = time.monotonic()
    return MeshConfig(
        accounts={a.name: a for a in GatewayAccount.objects.all()},
        rules=list(RoutingRule.objects.filter(enabled=True)),
        decline_rules=list(DeclineRule.objects.all()),
        version=version,
        loaded_at=now,
        checked_at=now,
    )


def mesh_config() -> MeshConfig:
    """The configuration of the current schema (see the module docstring for how fresh it is)."""
    if connection.in_atomic_block:
        return _load(None)
    schema = current_schema()
    now = time.monotonic()
    cached = _cache.get(schema)
    if cached is not None and now - cached.loaded_at < MAX_AGE_SECONDS:
        if now - cached.checked_at < CHECK_SECONDS:
            return cached
        version = _read_version(schema)
        if version is not None and version == cached.version:
            cached.checked_at = now
            return cached
    else:
        version = _read_version(schema)
    fresh = _load(version)  # the version is read first: an edit committed meanwhile reloads again
    with _lock:
        _cache[schema] = fresh
    return fresh


def mesh_config_changed(schema: str | None = None) -> None:
    """Forget the cached configuration of ``schema`` here and tell the other processes. Called
    after a change commits; call it yourself after changing the rows without the ORM's signals."""
    schema = schema or current_schema()
    with _lock:
        _cache.pop(schema, None)
    with contextlib.suppress(redis.RedisError):  # if it fails, the others reload within MAX_AGE_SECONDS
        redis_client().incr(_version_key(schema))


def _on_change(sender, **kwargs) -> None:
    schema = current_schema()
    transaction.on_commit(lambda: mesh_config_changed(schema))


def mesh_config_signals_connect() -> None:
    """Forget the cached configuration whenever one of its rows is saved or deleted through the
    ORM. Called by ``PaymentsConfig.ready()``."""
    for model in (GatewayAccount, RoutingRule, DeclineRule):
        post_save.connect(_on_change, sender=model, dispatch_uid=f"mesh_config_{model.__name__}_save")
        post_delete.connect(_on_change, sender=model, dispatch_uid=f"mesh_config_{model.__name__}_delete")
