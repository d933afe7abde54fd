"""Rule-based routing: the first enabled rule whose conditions match the payment yields an ordered
list of candidate gateway accounts. The decision and the reasons for it are stored on the intent."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import redis

from apps.payments.breaker import CircuitBreaker, redis_client
from apps.payments.config import MeshConfig, mesh_config
from apps.payments.methods import is_payment_method_id
from apps.payments.models import PaymentIntent, RoutingRule
from apps.tenants.db import current_schema

SUCCESS_WINDOW_SECONDS = 600
SUCCESS_BUCKET_SECONDS = 60
SUCCESS_MIN_SAMPLES = 20


@dataclass
class Decision:
    rule: str | None
    candidates: list[str]
    skipped: dict[str, str] = field(default_factory=dict)  # gateway -> why it was left out
    reasons: list[str] = field(default_factory=list)
    # gateway -> how a candidate without a credential for the method is reached:
    # {"via": "vault", "vault": <vault name>, "from": <the account holding the card>}
    via: dict[str, dict] = field(default_factory=dict)

    def as_dict(self) -> dict:
        found: dict[str, object] = {
            "rule": self.rule,
            "candidates": self.candidates,
            "skipped": self.skipped,
            "reasons": self.reasons,
        }
        if self.via:
            found["via"] = self.via
        return found


def _matches(rule: RoutingRule, intent: PaymentIntent) -> tuple[bool, str]:
    card = intent.card or {}
    checks = [
        (rule.currencies, intent.currency, "currency"),
        ([c.upper() for c in rule.card_countries], (card.get("country") or "").upper(), "card country"),
        ([b.lower() for b in rule.card_brands], (card.get("brand") or "").lower(), "card brand"),
        (
            rule.payment_method_types,
            "card"
            if intent.payment_method.startswith(("pm_", "card_"))
            or is_payment_method_id(intent.payment_method)
            else "other",
            "payment method",
        ),
    ]
    for allowed, value, label in checks:
        if allowed and value not in [a.upper() if label == "currency" else a for a in allowed]:
            return False, f"{label} {value or '?'} not in {allowed}"
    if rule.amount_min is not None and intent.amount < rule.amount_min:
        return False, f"amount {intent.amount} < {rule.amount_min}"
    if rule.amount_max is not None and intent.amount > rule.amount_max:
        return False, f"amount {intent.amount} > {rule.amount_max}"
    return True, "matched"


def _weighted_first(names: list[str], weights: list[int], seed: str) -> list[str]:
    """Deterministic per payment (hash of its id), so a retried decision picks the same gateway."""
    total = sum(max(0, w) for w in weights)
    if total <= 0:
        return names
    point = int(hashlib.sha256(seed.encode()).hexdigest()[:12], 16) % total
    for name, w in zip(names, weights, strict=True):
        if point < max(0, w):
            return [name] + [n for n in names if n != name]
        point -= max(0, w)
    return names


def success_record(account_name: str, *, approved: bool, pipe=None) -> None:
    """Count an authorisation outcome (approved or declined) for the success-rate preference.
    With ``pipe`` (a Redis pipeline) the commands are only added to it."""
    bucket = int(time.time() // SUCCESS_BUCKET_SECONDS)
    key = f"mp:sr:{current_schema()}:{account_name}:{bucket}"
    try:
        p = redis_client().pipeline() if pipe is None else pipe
        p.hincrby(key, "ok" if approved else "no", 1)
        p.expire(key, SUCCESS_WINDOW_SECONDS + SUCCESS_BUCKET_SECONDS)
        if pipe is None:
            p.execute()
    except redis.RedisError:
        pass


def success_rate(account_name: str) -> tuple[float | None, int]:
    bucket = int(time.time() // SUCCESS_BUCKET_SECONDS)
    ok = no = 0
    try:
        pipe = redis_client().pipeline()
        for i in range(SUCCESS_WINDOW_SECONDS // SUCCESS_BUCKET_SECONDS):
            pipe.hmget(f"mp:sr:{current_schema()}:{account_name}:{bucket - i}", "ok", "no")
        for v in pipe.execute():
            ok += int(v[0] or 0)
            no += int(v[1] or 0)
    except redis.RedisError:
        return None, 0
    total = ok + no
    return (ok / total if total else None), total


NO_CREDENTIAL = "no credential and no vault route"


def route(
    intent: PaymentIntent,
    *,
    exclude: set[str] | None = None,
    config: MeshConfig | None = None,
    chargeable: set[str] | None = None,
    vault_routes: dict[str, dict] | None = None,
) -> Decision:
    """Ordered candidates for ``intent``: rule order (or weighted split), optional success-rate
    preference, minus disabled gateways, gateways whose breaker is open, and ``exclude``; with
    ``chargeable`` (the gateways holding a credential for the payment's method, when it is one of
    ours), minus the others (``NO_CREDENTIAL``) unless a vault reaches them (``vault_routes``:
    gateway -> route, recorded in ``Decision.via``).
    ``config`` defaults to ``mesh_config()``; the breakers are read in one Redis round trip."""
    exclude = exclude or set()
    cfg = config or mesh_config()
    accounts = cfg.accounts
    decision = Decision(rule=None, candidates=[])
    for rule in cfg.rules:
        ok, why = _matches(rule, intent)
        if not ok:
            decision.reasons.append(f"rule {rule.name!r} skipped: {why}")
            continue
        names = [c["gateway"] for c in rule.candidates if isinstance(c, dict) and c.get("gateway")]
        decision.rule = rule.name
        decision.reasons.append(f"rule {rule.name!r} matched")
        if rule.mode == RoutingRule.Mode.WEIGHTED:
            names = _weighted_first(names, [int(c.get("weight", 1)) for c in rule.candidates], intent.id)
            decision.reasons.append(f"weighted split chose {names[0]} first")
        if rule.prefer_success_rate:
            rates = {n: success_rate(n) for n in names}
            eligible = {
                n: r for n, (r, total) in rates.items() if r is not None and total >= SUCCESS_MIN_SAMPLES
            }
            if eligible:
                best = max(eligible, key=lambda n: eligible[n])
                names = [best] + [n for n in names if n != best]
                decision.reasons.append(f"success-rate preference: {best} ({eligible[best]:.0%} recently)")
        why_not: dict[str, str] = {}
        for name in names:
            account = accounts.get(name)
            if account is None:
                why_not[name] = "no such gateway account"
            elif not account.enabled:
                why_not[name] = "disabled"
            elif name in exclude:
                why_not[name] = "already tried"
            elif chargeable is not None and name not in chargeable:
                if vault_routes and name in vault_routes:
                    decision.via[name] = vault_routes[name]
                else:
                    why_not[name] = NO_CREDENTIAL
        allowed = CircuitBreaker.allow_many(list(dict.fromkeys(n for n in names if n not in why_not)))
        for name in names:
            if name in why_not:
                decision.skipped[name] = why_not[name]
            elif not allowed[name]:
                decision.skipped[name] = "circuit open"
            else:
                decision.candidates.append(name)
                if name in decision.via:
                    decision.reasons.append(
                        f"{name}: no credential, reached through the {decision.via[name]['vault']} vault"
                        f" of {decision.via[name]['from']}"
                    )
        if not decision.candidates and any(not ok for ok in allowed.values()):
            # Every gateway left is behind an open breaker (one bad card type can open them all):
            # try the one closest to its probe rather than failing the payment outright.
            closest = CircuitBreaker.closest_to_probe([n for n, ok in allowed.items() if not ok])
            if closest is not None:
                decision.candidates.append(closest)
                decision.skipped.pop(closest, None)
                decision.reasons.append(f"every breaker open: trying {closest}, the closest to its probe")
        decision.via = {n: r for n, r in decision.via.items() if n in decision.candidates}
        break
    else:
        decision.reasons.append("no routing rule matched")
    return decision
