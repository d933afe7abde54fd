"""The circuit breaker is one state shared by every process through Redis."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from django.conf import settings

from apps.payments.breaker import CircuitBreaker, redis_client
from tests.support import BASE

pytestmark = pytest.mark.slow

SCRIPT = """
import os, sys, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from django.conf import settings
settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "consecutive_failures": 3, "cooldown_seconds": 60}
from apps.payments.breaker import CircuitBreaker
b = CircuitBreaker("primary", schema="xproc")
for step in sys.argv[1:]:
    if step == "fail":
        print(b.record(success=False))
    elif step == "ok":
        print(b.record(success=True))
    elif step == "allow":
        print(b.allow())
"""


def other_process(*steps: str) -> list[str]:
    env = {
        "REDIS_URL": settings.REDIS_URL,
        "DATABASE_URL": settings.DATABASE_URL,
        "PATH": "/usr/bin:/bin",
        "DJANGO_DEBUG": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, *steps],
        cwd=BASE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.split()


def test_breaker_transitions_seen_from_two_processes(settings):
    settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "consecutive_failures": 3, "cooldown_seconds": 60}
    here = CircuitBreaker("primary", schema="xproc")
    here.reset()

    assert other_process("fail", "fail", "fail") == ["closed", "closed", "open"]
    assert here.state().state == "open"  # opened over there, seen here
    assert here.allow() is False

    # The cool-down passes (moved back in Redis rather than slept through: a process starting
    # slowly on a busy machine must not change what the test sees)
    redis_client().hset(here.key, "opened_at", time.time() - 61)
    assert other_process("allow") == ["True"]  # that process takes the single half-open probe
    assert here.state().state == "half_open"
    assert here.allow() is False  # ...so this one may not call while it probes
    assert other_process("ok") == ["closed"]
    assert here.state().state == "closed"
    assert here.allow() is True
    here.reset()
