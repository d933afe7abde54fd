"""Circuit breaker per gateway account, shared by every web and worker process through Redis.

Closed: calls go through. It opens after ``consecutive_failures`` gateway failures in a row, or
when the error rate in the last ``window_seconds`` reaches ``error_rate`` over at least
``min_requests`` calls. Open: calls are skipped until ``cooldown_seconds`` pass; then one caller
(a Redis SET NX token) probes half-open: success closes it, failure opens it again.
Only gateway failures (errors, unknown outcomes) count; declines are the card's business."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import redis
from django.conf import settings

from apps.tenants.db import current_schema

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
BUCKET_SECONDS = 5

# One atomic step for a result: counts, then the state change it implies.
_RECORD = """
local key, wkey = KEYS[1], KEYS[2]
local ok, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local threshold, min_req, rate = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local window_keys = cjson.decode(ARGV[6])
redis.call('HINCRBY', wkey, ok == 1 and 'ok' or 'err', 1)
redis.call('EXPIRE', wkey, tonumber(ARGV[7]))
local state = redis.call('HGET', key, 'state') or 'closed'
if ok == 1 then
  redis.call('HSET', key, 'consecutive', 0)
  if state == 'half_open' then
    redis.call('HSET', key, 'state', 'closed', 'changed_at', now)
    redis.call('DEL', key .. ':probe')
    return 'closed'
  end
  return state
end
local consecutive = redis.call('HINCRBY', key, 'consecutive', 1)
local total, errs = 0, 0
for _, k in ipairs(window_keys) do
  local v = redis.call('HMGET', k, 'ok', 'err')
  total = total + (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
  errs = errs + (tonumber(v[2]) or 0)
end
if state == 'half_open' or consecutive >= threshold or (total >= min_req and errs / total >= rate) then
  redis.call('HSET', key, 'state', 'open', 'opened_at', now, 'changed_at', now)
  redis.call('DEL', key .. ':probe')
  return 'open'
end
return state
"""


@cache
def redis_client() -> Any:  # redis.Redis; typed loosely because its stubs mix bytes and str
    """This process's Redis client for the payment mesh's shared state (breakers, routing
    statistics, the configuration version): short timeouts, so a Redis outage costs little."""
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)


@dataclass(frozen=True)
class BreakerState:
    state: str
    consecutive_failures: int
    window_ok: int
    window_errors: int
    opened_at: float | None


class CircuitBreaker:
    def __init__(self, account_name: str, schema: str | None = None):
        self.account = account_name
        self.key = f"mp:cb:{schema or current_schema()}:{account_name}"
        self.cfg = settings.CIRCUIT_BREAKER

    def _window_keys(self, now: float) -> list[str]:
        n = max(1, int(self.cfg["window_seconds"] // BUCKET_SECONDS))
        bucket = int(now // BUCKET_SECONDS)
        return [f"{self.key}:w:{bucket - i}" for i in range(n)]

    def allow(self) -> bool:
        """May a call go to this gateway now? Fails open (allows) if Redis is unreachable."""
        try:
            state, opened_at = redis_client().hmget(self.key, "state", "opened_at")
            return self._allow(state, opened_at)
        except redis.RedisError:
            return True

    def _allow(self, state: bytes | None, opened_at: bytes | None) -> bool:
        """``allow`` given the state just read (may take the half-open probe token)."""
        if state is None or state.decode() == CLOSED:
            return True
        r = redis_client()
        now = time.time()
        if state.decode() == OPEN:
            if now - float(opened_at or 0) < self.cfg["cooldown_seconds"]:
                return False
            # Cool-down over: exactly one caller gets to probe.
            if r.set(self.key + ":probe", "1", nx=True, ex=int(max(5, self.cfg["cooldown_seconds"]))):
                r.hset(self.key, mapping={"state": HALF_OPEN, "changed_at": now})
                return True
            return False
        return bool(r.set(self.key + ":probe", "1", nx=True, ex=int(max(5, self.cfg["cooldown_seconds"]))))

    @classmethod
    def allow_many(cls, account_names: list[str]) -> dict[str, bool]:
        """``allow()`` for each account, with one Redis round trip while the breakers are closed
        or open (a cool-down ending costs the usual probe calls). Fails open like ``allow``."""
        breakers = [cls(name) for name in account_names]
        if not breakers:
            return {}
        try:
            pipe = redis_client().pipeline(transaction=False)
            for b in breakers:
                pipe.hmget(b.key, "state", "opened_at")
            states = pipe.execute()
        except redis.RedisError:
            return {b.account: True for b in breakers}
        out = {}
        for b, (state, opened_at) in zip(breakers, states, strict=True):
            try:
                out[b.account] = b._allow(state, opened_at)
            except redis.RedisError:
                out[b.account] = True
        return out

    @classmethod
    def closest_to_probe(cls, account_names: list[str]) -> str | None:
        """Of these accounts (whose breakers are open), the one whose cool-down ends first: the
        one to try when every candidate's breaker is open, rather than failing the payment
        outright. None when Redis cannot say."""
        breakers = [cls(name) for name in account_names]
        if not breakers:
            return None
        try:
            pipe = redis_client().pipeline(transaction=False)
            for b in breakers:
                pipe.hget(b.key, "opened_at")
            opened = pipe.execute()
        except redis.RedisError:
            return None
        ranked = sorted(zip(breakers, opened, strict=True), key=lambda pair: float(pair[1] or 0))
        return ranked[0][0].account

    def record(self, *, success: bool, also: Callable[[Any], None] | None = None) -> str:
        """Count a call's result (atomically, with the state change it implies). ``also`` may add
        commands to the same Redis round trip (a pipeline); their errors are ignored."""
        now = time.time()
        keys = self._window_keys(now)
        try:
            pipe = redis_client().pipeline(transaction=False)
            pipe.eval(
                _RECORD,
                2,
                self.key,
                keys[0],
                1 if success else 0,
                now,
                self.cfg["consecutive_failures"],
                self.cfg["min_requests"],
                self.cfg["error_rate"],
                _json(keys),
                int(self.cfg["window_seconds"]) + 10,
            )
            if also is not None:
                also(pipe)
            result = pipe.execute(raise_on_error=False)[0]
        except redis.RedisError:
            return "unknown"
        if isinstance(result, Exception):
            return "unknown"
        return result.decode() if isinstance(result, bytes) else str(result)

    def state(self) -> BreakerState:
        r = redis_client()
        raw = r.hgetall(self.key)
        ok = err = 0
        for k in self._window_keys(time.time()):
            v = r.hmget(k, "ok", "err")
            ok += int(v[0] or 0)
            err += int(v[1] or 0)
        opened = raw.get(b"opened_at")
        return BreakerState(
            state=(raw.get(b"state") or b"closed").decode(),
            consecutive_failures=int(raw.get(b"consecutive") or 0),
            window_ok=ok,
            window_errors=err,
            opened_at=float(opened) if opened else None,
        )

    def reset(self) -> None:
        r = redis_client()
        r.delete(self.key, self.key + ":probe", *self._window_keys(time.time()))


def _json(value: list[str]) -> str:
    return json.dumps(value)
