"""The orchestrator's tables: saga instances, their reply inbox and their append-only event log."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models

from sagas.core.state import EventKind, SagaStatus
from sagas.messages import Outcome, Reply

# The event kinds that end a saga: the dashboard's throughput chart reads them by time.
FINISHING_EVENTS = ("saga_completed", "saga_failed")


class WritingTransaction(models.Func):
    """The id of the transaction that writes the row (`pg_current_xact_id()`), as a column default.

    Event ids come from a sequence and are handed out before commit, so concurrent transactions
    commit them out of order; the transaction id lets a reader wait until every transaction that
    could still add an older event has ended (sagas.dashboard.feed). SQLite serialises writers,
    so ids commit in order there and the column is 0.
    """

    template = "0"
    output_field = models.BigIntegerField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template=PG_WRITING_TRANSACTION, **extra)


PG_WRITING_TRANSACTION = "(pg_current_xact_id()::text::bigint)"


class Saga(models.Model):
    """One saga instance. `state` holds the per-step progress (sagas.core.state.SagaState).

    Claiming: a worker takes due rows with `FOR UPDATE SKIP LOCKED`, stamps a lease from the
    database clock and bumps `fence`; every later write is conditioned on that fence, so a worker
    whose lease expired cannot commit a decision.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=64)
    # The version of the type's definition the saga started with, and is decided by to the end
    # (docs/architecture.md §10). Rows from before versions existed are version 1.
    version = models.PositiveIntegerField(default=1)
    # Stored as the table's last column (migration 0012): a decision that changes it then logs
    # the changed columns, not the input before them (docs/architecture.md §7).
    status = models.CharField(
        max_length=16,
        choices=[(s.value, s.value) for s in SagaStatus],
        default=SagaStatus.PENDING.value,
    )
    correlation_id = models.CharField(max_length=64)  # e.g. the order id
    owner_id = models.BigIntegerField(null=True, blank=True)  # the user it acts for
    data = models.JSONField()  # the saga's input; each command carries its step's share
    state = models.JSONField()
    reason_code = models.CharField(max_length=64, blank=True, default="")
    reason_message = models.TextField(blank=True, default="")
    due_at = models.DateTimeField(null=True, blank=True)  # next time a worker must look at it
    lease_owner = models.CharField(max_length=128, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    fence = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # Every index on this row is written by each update that cannot be HOT, and one that
        # changes an indexed column never is: the due-work index is partial, so it holds
        # in-flight sagas only and stays small however many finished sagas are kept; no index
        # duplicates another (docs/architecture.md §7, "Indexes").
        indexes = [
            # The saga workers' claim and the oldest-due gauge.
            models.Index(
                fields=["due_at"], name="saga_due", condition=models.Q(due_at__isnull=False)
            ),
            # Counts by status (the dashboard, each second while events flow; /metrics) read
            # this index alone; it also lists by status. Not partial, for those counts: over
            # 100k finished sagas an index-only scan takes 17 ms, a scan of the table 400 ms.
            models.Index(fields=["status"], name="saga_status"),
            # A user's orders, newest first (owner_id alone is this index's prefix).
            models.Index(fields=["owner_id", "-created_at"], name="saga_owner_recent"),
            # Every list newest first; the purge walks it from the oldest end.
            models.Index(fields=["-created_at"], name="saga_recent"),
            # An order by its id (`=`) and the dashboard's search by prefix (LIKE 'x%'): one
            # pattern-ops index serves both.
            models.Index(
                fields=["correlation_id"],
                name="saga_correlation",
                opclasses=["varchar_pattern_ops"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id} ({self.status})"


class SagaReply(models.Model):
    """The inbox: replies delivered by the services, consumed (deleted) by a saga worker."""

    # No database constraint (here and on SagaEvent): its check was one more query per row on the
    # hot path, and rows are only written by the engine holding the saga's row lock.
    saga = models.ForeignKey(
        Saga, on_delete=models.CASCADE, related_name="replies", db_constraint=False
    )
    step = models.CharField(max_length=64)
    compensation = models.BooleanField()
    attempt = models.IntegerField()
    outcome = models.CharField(max_length=16, choices=[(o.value, o.value) for o in Outcome])
    code = models.CharField(max_length=64, blank=True, default="")
    message = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "saga replies"

    def __str__(self) -> str:
        kind = "compensation" if self.compensation else "action"
        return f"{self.step} {kind} #{self.attempt}: {self.outcome}"

    @classmethod
    def from_reply(cls, reply: Reply) -> SagaReply:
        """The inbox row for a service's reply (unsaved)."""
        return cls(
            saga_id=reply.saga_id,
            step=reply.step,
            compensation=reply.compensation,
            attempt=reply.attempt,
            outcome=reply.outcome.value,
            code=reply.code,
            message=reply.message,
            data=reply.data,
        )

    def to_reply(self) -> Reply:
        return Reply(
            str(self.saga_id),
            self.step,
            self.compensation,
            self.attempt,
            Outcome(self.outcome),
            self.code,
            self.message,
            self.data,
        )


class SagaEvent(models.Model):
    """Append-only timeline of everything that happened to a saga.

    `(xid, id)` is an event's position in the log as readers follow it (docs/architecture.md §7).
    """

    # No index of its own: sagaevent_saga_order (saga, id) serves every lookup by saga.
    saga = models.ForeignKey(
        Saga, on_delete=models.CASCADE, related_name="events", db_index=False, db_constraint=False
    )
    at = models.DateTimeField()
    kind = models.CharField(max_length=64, choices=[(k.value, k.value) for k in EventKind])
    step = models.CharField(max_length=64, blank=True, default="")
    attempt = models.IntegerField(default=0)
    detail = models.JSONField(default=dict)
    xid = models.BigIntegerField(db_default=WritingTransaction(), editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["saga", "id"], name="sagaevent_saga_order"),
            models.Index(fields=["xid", "id"], name="sagaevent_position"),
            models.Index(
                fields=["at"],
                name="sagaevent_finishing_at",
                condition=models.Q(kind__in=FINISHING_EVENTS),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.step}"


class HeartbeatRole(models.TextChoices):
    SAGA_WORKER = "saga_worker", "saga worker"
    CLUSTER = "cluster", "django-q2 cluster"  # its watchdog beats for it (sagas.cluster)


class WorkerHeartbeat(models.Model):
    """The last sign of life of one worker process, written by sagas.heartbeat.

    One row per process (role, queue, name), stamped from the database clock so that hosts with
    skewed clocks agree. Rows of processes that died stay until pruned; only the freshest row of
    each role matters to the alerts.
    """

    role = models.CharField(max_length=16, choices=HeartbeatRole.choices)
    queue = models.CharField(max_length=64, blank=True, default="")  # a cluster's service queue
    name = models.CharField(max_length=128)
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["role", "queue", "name"], name="heartbeat_one_row_per_process"
            )
        ]

    def __str__(self) -> str:
        where = f" ({self.queue})" if self.queue else ""
        return f"{self.role}{where} {self.name}"
