"""Persistence around the pure core: claiming due sagas under a lease, applying inputs to a
saga row, and writing the decision, its events and its commands in one transaction.

Every write of a lease or a fence is here: claims stamp them, workers release them, and an
operator's decision takes them over (`take_over`)."""

from __future__ import annotations

import logging
import random
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from sagas import metrics, registry, transport
from sagas.broker import NO_FLUSH_WAIT
from sagas.core.state import EventKind, SagaState, SagaStatus
from sagas.core.transition import Input, Replied, Tick, decide
from sagas.messages import Command
from sagas.models import Saga, SagaEvent, SagaReply
from sagas.notify import notify

log = logging.getLogger("sagas")

# NOTIFYed by every transaction that appends events: wakes the dashboards' tailers. Most of
# them already NOTIFY a service queue, and a transaction takes the notification lock once at
# commit however many channels it notifies: only decisions that send nothing (a saga finishing)
# pay for it.
EVENTS_CHANNEL = "saga_events"
_random = random.Random()

SAVED_FIELDS = [
    "status",
    "state",
    "reason_code",
    "reason_message",
    "due_at",
    "lease_owner",
    "lease_until",
    "finished_at",
    "updated_at",
]


def apply(
    saga: Saga, inputs: Iterable[Input], now: datetime
) -> tuple[list[Command], list[SagaEvent], str]:
    """Run `inputs` through the transition function and update `saga` in memory.

    Returns the commands to enqueue, the events to append, and the first rejection of an
    operator input ("" if none). The caller holds the row lock and saves.
    """
    definition = registry.definition(saga.type, saga.version)
    state = SagaState.from_json(saga.state)
    before = state.status
    commands: list[Command] = []
    events: list[SagaEvent] = []
    rejected = ""
    stamp = now.timestamp()
    for event in inputs:
        decision = decide(definition, state, event, stamp, _random.random)
        state = decision.state
        rejected = rejected or decision.rejected
        commands += [
            Command(s.command, str(saga.id), s.step, s.compensation, s.attempt, saga.data)
            for s in decision.sends
        ]
        events += [
            SagaEvent(
                saga=saga, at=now, kind=e.kind, step=e.step, attempt=e.attempt, detail=e.detail
            )
            for e in decision.log
        ]
    saga.state = state.to_json()
    saga.status = state.status.value
    saga.reason_code = state.reason_code or ""
    saga.reason_message = state.reason_message
    due = state.due
    saga.due_at = datetime.fromtimestamp(due, tz=now.tzinfo) if due is not None else None
    saga.updated_at = now
    if state.status.terminal and not saga.finished_at:
        saga.finished_at = now
    _observe(saga, before, state.status, events)
    return commands, events, rejected


def _observe(saga: Saga, before: SagaStatus, after: SagaStatus, events: list[SagaEvent]) -> None:
    """One structured log line per state change, and the matching counters."""
    for event in events:
        log.info(
            event.kind,
            extra={
                "saga_id": str(saga.id),
                "saga_version": saga.version,
                "order_id": saga.correlation_id,
                "step": event.step,
                "attempt": event.attempt,
                "detail": event.detail,
            },
        )
        if event.step:
            metrics.STEP_EVENTS.labels(event.step, event.kind).inc()
        elif event.kind == "compensation_started":
            metrics.COMPENSATIONS.labels(saga.type, saga.reason_code).inc()
    if after is not before and after.terminal:
        metrics.SAGAS_FINISHED.labels(saga.type, after.value, saga.reason_code).inc()
        if saga.created_at:
            metrics.SAGA_DURATION.labels(saga.type, after.value).observe(
                (timezone.now() - saga.created_at).total_seconds()
            )


def record(sagas: list[Saga], commands: list[Command], events: list[SagaEvent]) -> None:
    """Write decisions: saga rows, their events and their commands (the outbox), in the caller's
    transaction."""
    Saga.objects.bulk_update(sagas, SAVED_FIELDS)
    SagaEvent.objects.bulk_create(events)
    transport.enqueue(commands)
    if events:
        notify(EVENTS_CHANNEL)


def claim(worker: str, limit: int, lease_seconds: float) -> dict[uuid.UUID, int]:
    """Lease up to `limit` due sagas to `worker`; returns each claimed saga's fencing token.

    SKIP LOCKED lets any number of workers claim side by side; the lease is stamped from the
    database clock. On SQLite the row lock is a no-op and IMMEDIATE transactions serialise claims.
    """
    if connection.vendor == "postgresql":
        return _claim_postgresql(worker, limit, lease_seconds)
    with transaction.atomic():
        ids = list(
            Saga.objects.filter(due_at__lte=Now())
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=Now()))
            .order_by("due_at")
            .select_for_update(skip_locked=True, no_key=True, of=("self",))
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return {}
        Saga.objects.filter(id__in=ids).update(
            lease_owner=worker,
            lease_until=Now() + timedelta(seconds=lease_seconds),
            fence=F("fence") + 1,
        )
        return dict(Saga.objects.filter(id__in=ids).values_list("id", "fence"))


CLAIM = """
UPDATE sagas_saga
SET lease_owner = %s, lease_until = now() + make_interval(secs => %s), fence = fence + 1
WHERE id IN (
    SELECT id FROM sagas_saga
    WHERE due_at <= now() AND (lease_until IS NULL OR lease_until < now())
    ORDER BY due_at LIMIT %s
    FOR NO KEY UPDATE SKIP LOCKED
)
RETURNING id, fence
"""


def _claim_postgresql(worker: str, limit: int, lease_seconds: float) -> dict[uuid.UUID, int]:
    """The claim as one statement. Its commit does not wait for the WAL flush: a claim lost in a
    database crash is a lease that vanished, and `process` checks the owner as well as the
    fence, so nothing is decided twice."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(NO_FLUSH_WAIT)
        cursor.execute(CLAIM, [worker, lease_seconds, limit])
        return {saga_id: fence for saga_id, fence in cursor.fetchall()}


def process(worker: str, claimed: dict[uuid.UUID, int]) -> int:
    """Apply the inbox and due timers of claimed sagas; returns how many were processed.

    Each write is conditioned on the fence read under the row lock: a saga whose lease was taken
    over (this worker paused past its lease) is left alone, so a stale worker commits nothing.
    """
    now = timezone.now()
    with transaction.atomic():
        sagas = [
            saga
            for saga in Saga.objects.select_for_update(no_key=True)
            .filter(id__in=list(claimed))
            .order_by("id")
            if saga.fence == claimed[saga.id] and saga.lease_owner == worker
        ]
        if len(sagas) != len(claimed):
            log.warning(
                "lease lost before processing",
                extra={"worker": worker, "lost": len(claimed) - len(sagas)},
            )
        inbox: dict[uuid.UUID, list[SagaReply]] = defaultdict(list)
        for reply in SagaReply.objects.filter(saga_id__in=[s.id for s in sagas]).order_by("id"):
            inbox[reply.saga_id].append(reply)
        commands: list[Command] = []
        events: list[SagaEvent] = []
        for saga in sagas:
            inputs: list[Input] = [Replied.of(r.to_reply()) for r in inbox[saga.id]]
            try:
                saga_commands, saga_events, _ = apply(saga, [*inputs, Tick()], now)
            except Exception as exc:  # a bug or a corrupt row: park this saga, not the batch
                log.exception("saga could not be processed", extra={"saga_id": str(saga.id)})
                _park(saga)
                saga_commands, saga_events = (
                    [],
                    [
                        SagaEvent(
                            saga=saga,
                            at=now,
                            kind=EventKind.ENGINE_ERROR,
                            detail={"error": repr(exc)[:500]},
                        )
                    ],
                )
                inbox.pop(saga.id, None)  # keep its replies for when it is repaired
            commands += saga_commands
            events += saga_events
            saga.lease_owner, saga.lease_until = "", None
        record(sagas, commands, events)
        SagaReply.objects.filter(id__in=[r.id for rs in inbox.values() for r in rs]).delete()
    metrics.BATCH_SIZE.observe(len(sagas))
    return len(sagas)


def _park(saga: Saga) -> None:
    """Mark a saga the engine could not process as stuck, in its row and, when it can be read,
    in its state: an operator's retry then finds a stuck saga (one with no stalled step)."""
    saga.status, saga.due_at = SagaStatus.STUCK.value, None
    if isinstance(saga.state, dict):
        saga.state = {**saga.state, "status": SagaStatus.STUCK.value}


def take_over(saga: Saga, commands: list[Command], events: list[SagaEvent]) -> None:
    """Write an operator's decision on `saga`, in the caller's transaction.

    Call while holding SELECT FOR UPDATE on the saga's row. A worker that claimed the saga
    decided from the state before this decision: its lease is cleared and the fence bumped, so
    that worker can no longer commit anything for it.
    """
    saga.lease_owner, saga.lease_until = "", None
    record([saga], commands, events)
    Saga.objects.filter(id=saga.id).update(fence=F("fence") + 1)


def seconds_until_due() -> float:
    """How long until the earliest timer (reply deadline or backoff) of any saga falls due."""
    earliest = (
        Saga.objects.filter(due_at__isnull=False)
        .order_by("due_at")
        .values_list("due_at", flat=True)
        .first()
    )
    if earliest is None:
        return float("inf")
    return max(0.0, (earliest - timezone.now()).total_seconds())
