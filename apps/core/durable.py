"""Durable background work (the sweeper pattern).

``durable_enqueue`` writes a DurableTask row inside the caller's transaction and sends the
Celery task after commit (a send the broker refuses is logged and left to the sweeper, never
raised to the caller, whose work is already committed). ``durable_run`` executes it at most once at a time (row lock +
lease) and retries with exponential backoff. ``durable_sweep`` re-sends anything whose
``next_run_at`` has passed: a crash between commit and enqueue, or a worker killed mid-task,
delays the work but never loses it. Handlers must be idempotent.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from apps.core.models import DurableTask

log = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(hours=1)
# Short waits ride on the message (countdown); longer ones wait in the database for the sweeper,
# because broker ETAs past the visibility timeout get redelivered (celery #4984).
MAX_COUNTDOWN = timedelta(minutes=10)
_held: list[list[str]] = []  # the open ``durable_messages_held`` blocks, innermost last


@contextlib.contextmanager
def durable_messages_held() -> Iterator[list[str]]:
    """Inside the block no durable task's message is sent (enqueued, retried or swept): the rows
    wait, as after a lost message, for whoever runs them. Yields the ids of the tasks whose message
    was held back. For the chaos harness, which is its own worker, and for tests of lost messages."""
    held: list[str] = []
    _held.append(held)
    try:
        yield held
    finally:
        _held.pop()


def _send(task_id: str, delay: timedelta | None = None) -> None:
    if _held:
        _held[-1].append(task_id)
        return
    countdown = max(0.0, delay.total_seconds()) if delay else 0.0
    run_durable_task.apply_async(args=(task_id,), countdown=countdown)


def _send_after_commit(task_id: str, delay: timedelta | None) -> None:
    """Send a committed task; if the broker cannot take it, leave it to the sweeper. Raising here
    would turn work already committed (a payment already charged) into an error for the caller,
    whose retry would then do it again."""
    try:
        _send(task_id, delay)
    except Exception:
        log.warning(
            "durable task not sent (the sweeper will send it)", exc_info=True, extra={"task": task_id}
        )


def _schedule(task_id: str, run_at) -> None:
    delay = run_at - timezone.now()
    if delay <= MAX_COUNTDOWN:
        transaction.on_commit(
            lambda: _send_after_commit(task_id, delay if delay.total_seconds() > 0 else None)
        )


def durable_enqueue(
    *, handler: str, kwargs: dict, idempotency_key: str, run_at=None, max_attempts: int = 10
) -> DurableTask:
    """Record work to do. Idempotent on ``idempotency_key``: a repeat returns the first row."""
    task, created = DurableTask.objects.get_or_create(
        idempotency_key=idempotency_key,
        defaults={
            "handler": handler,
            "kwargs": kwargs,
            "next_run_at": run_at or timezone.now(),
            "max_attempts": max_attempts,
        },
    )
    if created:
        _schedule(str(task.pk), task.next_run_at)
    return task


def retry_backoff(attempts: int) -> timedelta:
    """The retry schedule of every durable task (the one definition): after its ``attempts``-th
    failed run a task waits 2**attempts seconds (2 s, 4 s, 8 s, ...), at most ``MAX_BACKOFF``."""
    return min(timedelta(seconds=2 ** min(attempts, 20)), MAX_BACKOFF)


def retry_span(max_attempts: int) -> timedelta:
    """How long a task that fails every run keeps being retried before it gives up (the sum of
    its waits): what ``max_attempts`` means in time (10: 17 min; 16: 5.1 h; 60: 2 days)."""
    return sum((retry_backoff(n) for n in range(1, max_attempts)), timedelta())


def durable_run(*, task_id: str) -> str:
    """Run one durable task if it is due and not leased. Idempotent; returns the final state."""
    now = timezone.now()
    with transaction.atomic():
        task = (
            DurableTask.objects.select_for_update(skip_locked=True)
            .filter(
                pk=task_id,
                state__in=[DurableTask.State.PENDING, DurableTask.State.RUNNING],
                next_run_at__lte=now,
            )
            .first()
        )
        if task is None:
            return "skipped"
        task.state = DurableTask.State.RUNNING
        task.attempts += 1
        task.next_run_at = now + settings.DURABLE_TASK_LEASE  # the lease: the sweeper retries it if we die
        task.save(update_fields=["state", "attempts", "next_run_at", "updated_at"])
    try:
        import_string(task.handler)(**task.kwargs)
    except Exception as exc:
        log.exception("durable task failed", extra={"task": str(task.pk), "handler": task.handler})
        final = task.attempts >= task.max_attempts
        retry_at = timezone.now() + retry_backoff(task.attempts)
        DurableTask.objects.filter(pk=task.pk).update(
            state=DurableTask.State.FAILED if final else DurableTask.State.PENDING,
            next_run_at=retry_at,
            last_error=f"{exc.__class__.__name__}: {exc}"[:2000],
            updated_at=timezone.now(),
        )
        if not final:
            _schedule(str(task.pk), retry_at)
        return "failed" if final else "retry"
    DurableTask.objects.filter(pk=task.pk).update(state=DurableTask.State.DONE, updated_at=timezone.now())
    return "done"


@shared_task(name="core.run_durable_task")
def run_durable_task(task_id: str) -> str:
    """Idempotent: runs the durable task once if due. The message ``_send`` sends, so it lives here
    with the rest of the mechanism (apps.core.tasks holds the periodic sweeps)."""
    return durable_run(task_id=task_id)


def durable_sweep(*, limit: int = 500) -> int:
    """Re-send due work whose message may have been lost. Idempotent (running a task twice is
    harmless: ``durable_run`` skips rows that are leased or done). Returns how many it sent."""
    cutoff = timezone.now() - timedelta(seconds=settings.DURABLE_TASK_STALE_AFTER.total_seconds() / 4)
    due = list(
        DurableTask.objects.filter(
            state__in=[DurableTask.State.PENDING, DurableTask.State.RUNNING], next_run_at__lte=cutoff
        ).values_list("pk", flat=True)[:limit]
    )
    for pk in due:
        _send(str(pk))
    return len(due)


def durable_live(*, handler: str, kwargs: dict) -> bool:
    """Whether work for ``handler`` with (at least) these ``kwargs`` is still to run or running:
    a reconcile job asks before queueing the same work again."""
    return DurableTask.objects.filter(
        handler=handler,
        kwargs__contains=kwargs,
        state__in=[DurableTask.State.PENDING, DurableTask.State.RUNNING],
    ).exists()


def durable_run_now(*, idempotency_keys: list[str]) -> int:
    """Run the tasks with these keys now, in this process, if they are due and not leased (as
    ``durable_run``): a service that just committed work it wants done before it answers. Call
    it with no transaction open. Returns how many ran to completion."""
    done = 0
    for task_id in DurableTask.objects.filter(idempotency_key__in=idempotency_keys).values_list(
        "pk", flat=True
    ):
        done += durable_run(task_id=str(task_id)) == "done"
    return done
