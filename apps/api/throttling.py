"""Rate limit per API key: a token bucket in Redis shared by every web process.

``API_RATE_LIMIT_PER_SECOND`` tokens refill each second up to ``API_RATE_LIMIT_BURST``; a request
takes one. When the bucket is empty the answer is 429 ``rate_limit_error`` with ``Retry-After``.
If Redis cannot be reached the limit is not enforced (availability over strictness), and logged."""

from __future__ import annotations

import logging
import math
import time

import redis
from django.conf import settings
from rest_framework.throttling import BaseThrottle

from apps.tenants.models import ApiKey

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV rate, burst, now (seconds, float). Returns {allowed, seconds to wait}.
_TAKE = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    return _client


def rate_limit_take(*, bucket: str, rate: float, burst: int) -> tuple[bool, float]:
    """Take one token from ``bucket``. Returns (allowed, seconds until one is available)."""
    try:
        allowed, wait = _redis().eval(_TAKE, 1, bucket, rate, burst, time.time())  # type: ignore[misc]
    except redis.RedisError as exc:
        log.warning("rate limit not enforced: redis error %s", exc)
        return True, 0.0
    return bool(int(allowed)), float(wait)


class ApiKeyRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait = 0.0

    def allow_request(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        allowed, self._wait = rate_limit_take(
            bucket=f"mp:ratelimit:key:{key.pk}",
            rate=settings.API_RATE_LIMIT_PER_SECOND,
            burst=settings.API_RATE_LIMIT_BURST,
        )
        return allowed

    def wait(self) -> float:
        return max(1, math.ceil(self._wait))
