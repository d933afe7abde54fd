"""How a payment's charge moved from one gateway to another, read from what its rows store (pure).

A **failover** is a payment charged at another gateway than the one routing put first: after an
attempt there failed (its attempts name two gateways), or because that gateway's breaker was open
(``routing["skipped"]`` names it, ``circuit open``, before the gateway of its first attempt in the
routing order). It went **through a vault** when the attempt at the gateway it moved to was
charged through one (``routing["via"]`` names that attempt), else **direct**. A failover was
**impossible** when the payment failed because no gateway left could charge its method
(``last_error.code`` ``payment_method_unreachable``: each gateway skipped with its reason).

The simulations count these (``selectors.payment_failovers``) so what they print is what the rows
say, not what the simulation loop believed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DIRECT, VAULT, IMPOSSIBLE = "direct", "vault", "impossible"
ROUTES = (DIRECT, VAULT, IMPOSSIBLE)
UNREACHABLE = "payment_method_unreachable"
CIRCUIT_OPEN = "circuit open"  # routing's reason for a gateway whose breaker is open


@dataclass(frozen=True)
class RoundRows:
    """One confirmation round of a payment, as stored: its attempts ``(attempt id, gateway)`` in
    order, the attempts charged through a vault, the gateways routing skipped because their
    breaker was open, and the payment's error code when it failed."""

    attempts: tuple[tuple[str, str], ...]
    via: frozenset[str] = frozenset()
    breaker_skipped: frozenset[str] = frozenset()
    error_code: str = ""


def failover_route(rows: RoundRows, *, order: Sequence[str]) -> str | None:
    """``direct``, ``vault`` or ``impossible`` for a round that failed over (or wanted to), None
    for one charged where routing put it first. ``order``: the routing rule's gateways, in order
    (a gateway skipped for its breaker counts only when it came before the one charged)."""
    if rows.error_code == UNREACHABLE:
        return IMPOSSIBLE
    if not rows.attempts:
        return None
    first_id, first_gateway = rows.attempts[0]
    moved_to = next((aid for aid, gateway in rows.attempts if gateway != first_gateway), None)
    if moved_to is None:
        rank = {name: i for i, name in enumerate(order)}
        here = rank.get(first_gateway)
        passed_over = here is not None and any(rank.get(g, here) < here for g in rows.breaker_skipped)
        moved_to = first_id if passed_over else None
    if moved_to is None:
        return None
    return VAULT if moved_to in rows.via else DIRECT


def failovers_count(rounds: Iterable[RoundRows], *, order: Sequence[str]) -> dict[str, int]:
    """{"direct": n, "vault": n, "impossible": n} over ``rounds`` (see ``failover_route``)."""
    counts = dict.fromkeys(ROUTES, 0)
    for rows in rounds:
        route = failover_route(rows, order=order)
        if route is not None:
            counts[route] += 1
    return counts
