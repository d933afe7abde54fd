"""Worker heartbeats in Redis, so /readyz can tell whether any worker is alive without a
broadcast round-trip. Each worker refreshes a key with a short TTL; a stopped worker deletes
its key, a killed one disappears when the TTL runs out."""

from __future__ import annotations

import logging
import threading

from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown

log = logging.getLogger(__name__)
KEY_PREFIX = "mp:worker-heartbeat:"
_stop = threading.Event()


def _client():
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def alive_workers(client) -> list[str]:
    return sorted(k.decode()[len(KEY_PREFIX) :] for k in client.scan_iter(KEY_PREFIX + "*", count=100))


def _beat(hostname: str) -> None:
    from django.conf import settings

    every = settings.WORKER_HEARTBEAT_SECONDS
    client = _client()
    while not _stop.is_set():
        try:
            client.set(KEY_PREFIX + hostname, "1", ex=every * 3)
        except Exception:  # Redis blips must not kill the heartbeat thread
            log.warning("worker heartbeat could not be written", exc_info=True)
        _stop.wait(every)


@worker_ready.connect
def _start_heartbeat(sender=None, **kwargs):
    hostname = getattr(sender, "hostname", "worker")
    threading.Thread(target=_beat, args=(hostname,), name="heartbeat", daemon=True).start()


@worker_shutdown.connect
def _stop_heartbeat(sender=None, **kwargs):
    _stop.set()
    hostname = getattr(sender, "hostname", "worker")
    try:
        _client().delete(KEY_PREFIX + hostname)
    except Exception:  # the key expires on its own
        log.warning("worker heartbeat could not be removed", exc_info=True)


@task_prerun.connect
def _task_request_id(task_id=None, task=None, **kwargs):
    """Log lines of a task carry its id as the request id (and the schema, via the filter)."""
    from config.logging import request_id_var

    request_id_var.set(f"task_{task_id}")


@task_postrun.connect
def _task_request_id_clear(**kwargs):
    from config.logging import request_id_var

    request_id_var.set("-")
