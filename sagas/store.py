"""Persistence around the pure core: claiming due sagas under a lease, applying inputs to a
saga row, and writing the decision, its events and its commands in one transaction.

Every write of a lease or a fence is here: claims stamp them, workers release them, and an
operator's decision takes them over (`take_over`)."""

from __future__ import annotations

import functools
import logging
import random
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, F, Q
from django.db.models.functions import Now
from django.utils import timezone

from sagas import bulk, metrics, outbox, registry
from sagas.broker import NO_FLUSH_WAIT
from sagas.core.state import EventKind, SagaState, SagaStatus
from sagas.core.transition import Input, Replied, Tick, decide
from sagas.messages import Command, Reply
from sagas.models import Saga, SagaEvent, SagaReply

log = logging.getLogger("sagas")

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
    "fence",
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
            Command(
                s.command,
                str(saga.id),
                s.step,
                s.compensation,
                s.attempt,
                definition.step(s.step).payload_of(saga.data),
            )
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
    due_at = datetime.fromtimestamp(due, tz=now.tzinfo) if due is not None else None
    # `due_at` is the latest time a worker must look: a decision may bring it forward, but keeps
    # a time still ahead when the next one is later, so the indexed column does not change and
    # the update can be HOT (docs/architecture.md §7, "Indexes"). A worker's decision (the saga
    # is leased to it) writes the true time: it claimed the saga because the stored time had
    # passed by the database's clock, which this host's may not have reached yet.
    keep = saga.due_at is not None and due_at is not None and now < saga.due_at <= due_at
    if not keep or saga.lease_owner:
        saga.due_at = due_at
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


def record(
    sagas: list[Saga],
    commands: list[Command],
    events: list[SagaEvent],
    started: list[Saga] | None = None,
) -> None:
    """Write decisions: saga rows (`started` ones inserted, the others updated), their events
    and their commands (the outbox), in the caller's transaction, on PostgreSQL as one
    statement; the queues of the commands are NOTIFYed on its commit. The event log is not: the
    dashboards poll it while they have clients (sagas.dashboard.tailer), and a NOTIFY would cost
    every listening session of the database a transaction, and every commit that sends one a
    turn at PostgreSQL's one notification lock."""
    started = started or []
    if connection.vendor != "postgresql":
        for saga in started:
            saga.save(force_insert=True)
        if sagas:
            Saga.objects.bulk_update(sagas, SAVED_FIELDS)
        bulk.insert(SagaEvent, EVENT_FIELDS, events)
        outbox.enqueue(commands)
        return
    writes: list[bulk.Write] = []
    if started:
        fields = [field.name for field in Saga._meta.concrete_fields]
        writes.append(("started", *bulk.insert_statement(Saga, fields, started)))
    if sagas:
        writes.append(("saga", *_update_statement(sagas)))
    if events:
        writes.append(("event", *bulk.insert_statement(SagaEvent, EVENT_FIELDS, events)))
    outbox.enqueue(commands, along=writes)
    for saga in started:
        saga._state.adding, saga._state.db = False, connection.alias


EVENT_FIELDS = ["saga", "at", "kind", "step", "attempt", "detail"]


def _update_statement(sagas: list[Saga]) -> tuple[str, list[Any]]:
    """The decided fields of `sagas` written by one `UPDATE ... FROM (VALUES ...)` (PostgreSQL;
    `bulk_update`'s CASE per column costs the workers more than the decision itself)."""
    fields, sql = _update(len(sagas))
    params: list[Any] = []
    for saga in sagas:
        params.append(saga.id)
        params += [
            field.get_db_prep_save(getattr(saga, field.attname), connection) for field in fields
        ]
    return sql, params


@functools.cache
def _update(count: int) -> tuple[list[Any], str]:
    """The fields `_update_statement` writes and its statement for `count` sagas."""
    fields = [field for field in Saga._meta.concrete_fields if field.name in SAVED_FIELDS]
    columns = [f'"{field.column}"' for field in fields]
    row = "(%s::uuid, " + ", ".join(f"%s::{field.db_type(connection)}" for field in fields) + ")"
    return fields, (
        f"UPDATE {Saga._meta.db_table} AS s SET "
        + ", ".join(f"{column} = v.{column}" for column in columns)
        + f" FROM (VALUES {', '.join([row] * count)}) AS v(id, {', '.join(columns)})"
        + " WHERE s.id = v.id"
    )


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
        _decide(sagas, {}, now)
    metrics.BATCH_SIZE.observe(len(sagas))
    return len(sagas)


def land(replies: list[Reply]) -> list[str]:
    """Decide on `replies` where they land, in the caller's transaction on the saga database.

    A saga that nobody holds (row unlocked, no live lease) is decided here, at once: its inbox,
    these replies and its timers go through the transition, and the fence is bumped so that a
    worker whose lease ran out cannot also decide it. A saga a worker has leased gets the reply
    in its inbox and is made due. A saga whose row is locked (a worker or another delivery is
    deciding it) is waited for when it is the only saga of the batch. In a larger batch it gets
    the reply in its inbox; its id is returned, and the caller must then `land_waiting` those ids
    in a transaction of their own, after this one commits: waiting for those rows here, while
    holding the rows decided above, could deadlock with a worker that locks in id order. Replies
    for unknown sagas are dropped with a warning.
    """
    if not replies:
        return []
    arriving: dict[str, list[Reply]] = defaultdict(list)
    for reply in replies:
        arriving[reply.saga_id].append(reply)
    rows = _locked(sorted(arriving), skip_locked=True)
    if not rows and len(arriving) == 1:
        # One saga, locked by its worker or another reply: wait for it here. Holding no other
        # saga row, this wait cannot close a cycle, and it saves the second transaction.
        rows = _locked(list(arriving))
    leased = [saga for saga in rows if saga.leased]
    locked = set(arriving) - {str(saga.id) for saga in rows}
    if locked:
        locked = {str(pk) for pk in Saga.objects.filter(id__in=locked).values_list("id", flat=True)}
    dropped = set(arriving) - {str(saga.id) for saga in rows} - locked
    if dropped:
        log.warning("replies for unknown sagas dropped", extra={"count": len(dropped)})
    waiting = [str(saga.id) for saga in leased] + sorted(locked)
    SagaReply.objects.bulk_create(
        [SagaReply.from_reply(reply) for saga_id in waiting for reply in arriving[saga_id]]
    )
    _settle(rows, arriving)
    return sorted(locked)


def land_waiting(saga_ids: list[str]) -> None:
    """Decide sagas whose replies `land` left in their inboxes while their rows were locked.

    Waits for the rows in id order, as the workers lock them. A saga leased meanwhile is made
    due for its worker instead."""
    with transaction.atomic():
        _settle(_locked(saga_ids), {}, only_with_inbox=True)


def _settle(
    rows: list[Any], arriving: dict[str, list[Reply]], only_with_inbox: bool = False
) -> None:
    """For locked `rows` (from `_locked`): make the leased ones due for their worker, and decide
    the others here, bumping their fence so that a worker whose lease ran out cannot decide them
    as well."""
    leased = [saga.id for saga in rows if saga.leased]
    if leased:
        # Its worker reads the inbox once it locks the row (after this commits); if the lease
        # ran out instead, the next claim after its expiry finds the saga due.
        Saga.objects.filter(id__in=leased).update(due_at=Now())
    free = [saga for saga in rows if not saga.leased]
    for saga in free:
        saga.fence += 1
    _decide(free, arriving, timezone.now(), only_with_inbox)


# Each saga row with `leased` (a worker's lease on it is live, by the database clock) and
# whether replies wait in its inbox (see `_locked`).
LOCK = f"""
SELECT {bulk.columns(Saga, "s")}, coalesce(s.lease_until > now(), false),
    EXISTS (SELECT FROM sagas_sagareply r WHERE r.saga_id = s.id)
FROM sagas_saga s WHERE s.id = ANY(%s::uuid[]) ORDER BY s.id FOR NO KEY UPDATE"""


def _locked(saga_ids: list[str], skip_locked: bool = False) -> list[Any]:
    """Lock these sagas' rows in id order (the workers' order), passing over locked ones with
    `skip_locked`; each saga has `leased`: whether a worker's lease on it is live, by the
    database clock. Missing sagas are left out.

    With `skip_locked` on PostgreSQL, each saga also has `has_inbox`, so that `_decide` reads
    no inbox for the many that have none. It is read in the statement's snapshot: a row whose
    lock was waited for may have had replies put in its inbox by the transaction waited for,
    which that snapshot does not show, so a wait leaves the inbox to be read."""
    if connection.vendor == "postgresql":  # the same query, without the compiler's cost
        sql = LOCK + (" SKIP LOCKED" if skip_locked else "")
        rows = bulk.select(Saga, sql, [saga_ids], extra=("leased", "has_inbox"))
        if not skip_locked:
            for saga in rows:
                saga.has_inbox = True
        return rows
    return list(
        Saga.objects.select_for_update(no_key=True, skip_locked=skip_locked)
        .annotate(leased=ExpressionWrapper(Q(lease_until__gt=Now()), output_field=BooleanField()))
        .filter(id__in=saga_ids)
        .order_by("id")
    )


def _decide(
    sagas: list[Saga],
    arriving: dict[str, list[Reply]],
    now: datetime,
    only_with_inbox: bool = False,
) -> None:
    """Run each saga's inbox, the `arriving` replies and its timers through the transition and
    write the decisions; the consumed inbox rows are deleted. Call holding the sagas' row locks,
    inside the transaction. A saga that cannot be processed is parked, its replies kept."""
    inbox: dict[uuid.UUID, list[SagaReply]] = defaultdict(list)
    for reply in _inbox([saga.id for saga in sagas if getattr(saga, "has_inbox", True)]):
        inbox[reply.saga_id].append(reply)
    if only_with_inbox:
        sagas = [saga for saga in sagas if inbox[saga.id]]
    if not sagas:
        return
    commands: list[Command] = []
    events: list[SagaEvent] = []
    for saga in sagas:
        inputs: list[Input] = [Replied.of(r.to_reply()) for r in inbox[saga.id]]
        inputs += [Replied.of(r) for r in arriving.get(str(saga.id), ())]
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
            SagaReply.objects.bulk_create(
                [SagaReply.from_reply(r) for r in arriving.get(str(saga.id), ())]
            )
        commands += saga_commands
        events += saga_events
        saga.lease_owner, saga.lease_until = "", None
    record(sagas, commands, events)
    consumed = [r.id for saga in sagas for r in inbox.get(saga.id, ())]
    if consumed:
        placeholders = ", ".join(["%s"] * len(consumed))
        with connection.cursor() as cursor:  # without delete()'s collector
            cursor.execute(
                f"DELETE FROM {SagaReply._meta.db_table} WHERE id IN ({placeholders})", consumed
            )


INBOX = f"""SELECT {bulk.columns(SagaReply, "r")} FROM sagas_sagareply r
WHERE r.saga_id = ANY(%s::uuid[]) ORDER BY r.id"""


def _inbox(saga_ids: list[uuid.UUID]) -> list[SagaReply]:
    """The replies waiting in these sagas' inboxes, oldest first."""
    if not saga_ids:
        return []
    if connection.vendor == "postgresql":
        return bulk.select(SagaReply, INBOX, [saga_ids])
    return list(SagaReply.objects.filter(saga_id__in=saga_ids).order_by("id"))


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
    saga.fence += 1
    record([saga], commands, events)


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
