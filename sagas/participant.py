"""The service side of the saga protocol: idempotent commands, tombstones and stored replies.

A service registers each of its steps once (`register`): the command that does the effect, the
command that undoes it, the model that records both outcomes, and two functions in its own
`services.py`. `perform` then guarantees, inside one local transaction of that service:

- a key is applied at most once: the outcome is stored beside the effect and returned on repeats;
- a compensation that arrives before its action records a tombstone and answers OK; the late
  action sees the tombstone and is refused (`compensated`), so nothing is ever done for a saga
  that has been compensated;
- a refusal (`Refusal`) rolls back the effect, is stored, and is final for that key;
- any other exception is a fault: nothing is stored, and the same key may be retried.

Action and compensation of one step are serialised by locking the step's record row
(`SELECT ... FOR UPDATE`; on SQLite the IMMEDIATE transaction serialises all writers). An
action's first attempt without savepoints does its effect first and then inserts the row, with
its reply (`_act_first`): the unique row is the same guard, met after the effect, and a
row already there sends the command down the locking path.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, connections, models, router, transaction
from django.utils import timezone

from sagas.messages import Command, Outcome, Reply

DoEffect = Callable[[Command], dict[str, Any]]
UndoEffect = Callable[[Command, dict[str, Any]], dict[str, Any]]
LockFirst = Callable[[list[Command]], None]


class Refusal(Exception):
    """A domain refusal: becomes a `refused` reply with a stable code and triggers compensation."""

    code: str = "refused"

    def __init__(self, message: str = "", code: str | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        if code is not None:
            self.code = code


class StepRecord(models.Model):
    """What a service did for one saga step: the action's and the compensation's stored replies."""

    saga_id = models.UUIDField()
    step = models.CharField(max_length=64)
    action_reply = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    compensation_reply = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        constraints = [
            models.UniqueConstraint(
                fields=["saga_id", "step"], name="%(app_label)s_%(class)s_one_per_step"
            )
        ]

    def __str__(self) -> str:
        return f"{self.saga_id}:{self.step}"


@dataclass(frozen=True)
class Participant:
    action: str
    compensation: str | None
    record: type[StepRecord]
    do: DoEffect
    undo: UndoEffect | None
    lock_first: LockFirst | None = None


_by_command: dict[str, Participant] = {}


def register(
    *,
    action: str,
    record: type[StepRecord],
    do: DoEffect,
    compensation: str | None = None,
    undo: UndoEffect | None = None,
    lock_first: LockFirst | None = None,
) -> None:
    """Declare a step a service takes part in; called from the service's `AppConfig.ready()`.

    A step without a compensation is retriable-only (it runs after the saga's pivot): the
    orchestrator never sends it a compensation. `undo` must not refuse; anything it raises is a
    fault and the compensation is retried. All of a service's models must live in one database
    (see the routers) so that the effect and its stored reply share one transaction.

    `lock_first`, for a step whose effects lock rows that other sagas' effects lock too (stock):
    given the step's commands that are about to run in one transaction, it locks every such row
    they will need, in one fixed order, so that two transactions that each run several commands
    cannot deadlock (see `lock_first`).
    """
    if (compensation is None) != (undo is None):
        raise ValueError(f"{action}: give both a compensation command and its undo function")
    participant = Participant(action, compensation, record, do, undo, lock_first)
    _by_command[action] = participant
    if compensation is not None:
        _by_command[compensation] = participant


def participant_for(command_name: str) -> Participant:
    try:
        return _by_command[command_name]
    except KeyError:
        raise LookupError(f"no service handles the command {command_name!r}") from None


def registered_commands() -> list[str]:
    return sorted(_by_command)


def record_models() -> list[type[StepRecord]]:
    """Every service's step-record model, once each (housekeeping purges them by saga id)."""
    return sorted({p.record for p in _by_command.values()}, key=lambda m: m._meta.label)


def lock_first(commands: list[Command]) -> None:
    """Before several commands run in one transaction (a task's, or tasks merged under load):
    each step that registered `lock_first` locks the shared rows its commands will need, in its
    fixed order. Each command alone locks in that order; two transactions of several commands
    each would otherwise take them in orders of their own. Steps whose database is not in a
    transaction here commit each command alone, and need no such order."""
    if len(commands) < 2:
        return
    by_step: dict[tuple[LockFirst, str], list[Command]] = {}
    for command in commands:
        participant = _by_command.get(command.name)
        if participant is not None and participant.lock_first is not None:
            using = router.db_for_write(participant.record)
            by_step.setdefault((participant.lock_first, using), []).append(command)
    for (lock, using), mine in by_step.items():
        if len(mine) > 1 and connections[using].in_atomic_block:
            lock(mine)


BeforeCommit = Callable[[Command], None]


def perform(
    command: Command, before_commit: BeforeCommit | None = None, savepoints: bool = True
) -> Reply:
    """Apply `command` at most once and return its reply (see the module docstring).

    Inside a transaction it runs in a savepoint, and its effect in another, so that a refusal
    rolls back the effect only. With `savepoints=False` it takes none: a refusal is raised
    instead of answered, and the caller must roll back (sagas.transport then runs it again with
    savepoints). An action then also takes the common case's shortcut (`_act_first`)."""
    participant = participant_for(command.name)
    model = participant.record
    using = router.db_for_write(model)
    if not savepoints and not command.compensation and before_commit is None:
        return _act_first(participant, using, command)
    with transaction.atomic(using=using, savepoint=savepoints):
        record = _locked_record(model, using, command)
        if command.compensation:
            reply = _compensate(participant, record, command)
        else:
            reply = _act(participant, record, command, savepoints)
        if before_commit is not None:
            before_commit(command)
    return reply


class Repeated(Exception):
    """The step already has a record: the command was done, compensated or is being done."""


def _act_first(participant: Participant, using: str, command: Command) -> Reply:
    """An action's first delivery, the common case, in one statement fewer: the effect, then
    the step's record with the reply in one INSERT. A record already there (a repeat, a
    tombstone, or one a concurrent delivery writes, waited for by the INSERT) raises Repeated,
    a refusal raises too, and the caller rolls back the effect with its transaction and runs
    the command again by `perform`'s locking path, which answers each as it should."""
    with transaction.atomic(using=using, savepoint=False):
        reply = Reply.to(command, Outcome.OK, data=participant.do(command))
        stored = _stored_form(reply)
        if _insert_record(participant.record, using, command, action_reply=stored) is None:
            raise Repeated(f"{command.saga_id}:{command.step}")
    return reply


def _locked_record(model: type[StepRecord], using: str, command: Command) -> StepRecord:
    """The step's record, locked: inserted if absent (the common case: an action's first
    delivery; the new row is this transaction's until it commits), else read FOR UPDATE.
    Concurrent action and compensation of one step queue here."""
    now = timezone.now()
    pk = _insert_record(model, using, command, now=now)
    if pk is not None:
        record = model(
            saga_id=uuid.UUID(command.saga_id), step=command.step, created_at=now, updated_at=now
        )
        record.pk, record._state.adding, record._state.db = pk, False, using
        return record
    return (
        model._default_manager.using(using)
        .select_for_update()
        .get(saga_id=command.saga_id, step=command.step)
    )


def _insert_record(
    model: type[StepRecord],
    using: str,
    command: Command,
    now: datetime | None = None,
    action_reply: dict[str, Any] | None = None,
) -> Any:
    """Insert the step's record unless it exists; its id, or None if it did. The INSERT waits
    for a concurrent transaction inserting the same step, and finds its row if it commits."""
    connection = connections[using]
    now = now or timezone.now()
    values = {
        "saga_id": uuid.UUID(command.saga_id),
        "step": command.step,
        "action_reply": action_reply,
        "created_at": now,
        "updated_at": now,
    }
    fields = _fields(model, *values)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {model._meta.db_table} ({', '.join(values)})"
            f" VALUES ({', '.join(['%s'] * len(fields))})"
            " ON CONFLICT (saga_id, step) DO NOTHING RETURNING id",
            [
                field.get_db_prep_save(value, connection)
                for field, value in zip(fields, values.values(), strict=True)
            ],
        )
        inserted = cursor.fetchone()
    return inserted[0] if inserted is not None else None


def _fields(model: type[StepRecord], *names: str) -> list[models.Field]:
    by_name = {field.name: field for field in model._meta.concrete_fields}
    return [by_name[name] for name in names]


def _stored(command: Command, stored: dict[str, Any]) -> Reply:
    return Reply.to(
        command,
        Outcome(stored["outcome"]),
        stored.get("code", ""),
        stored.get("message", ""),
        stored.get("data", {}),
    )


def _stored_form(reply: Reply) -> dict[str, Any]:
    """A reply as its step record keeps it."""
    return {
        "outcome": reply.outcome.value,
        "code": reply.code,
        "message": reply.message,
        "data": reply.data,
    }


def _save(record: StepRecord, field: str, reply: Reply) -> Reply:
    setattr(record, field, _stored_form(reply))
    # An UPDATE of the two columns, without save()'s signals and checks or the compiler's cost.
    model, connection = type(record), connections[record._state.db or DEFAULT_DB_ALIAS]
    stored, updated = _fields(model, field, "updated_at")
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {model._meta.db_table} SET {connection.ops.quote_name(stored.column or '')} = %s,"
            f" {connection.ops.quote_name(updated.column or '')} = %s WHERE id = %s",
            [
                stored.get_db_prep_save(getattr(record, field), connection),
                updated.get_db_prep_save(timezone.now(), connection),
                record.pk,
            ],
        )
    return reply


def _act(
    participant: Participant, record: StepRecord, command: Command, savepoints: bool = True
) -> Reply:
    if record.action_reply is not None:
        return _stored(command, record.action_reply)
    if record.compensation_reply is not None:
        reply = Reply.to(
            command,
            Outcome.REFUSED,
            "compensated",
            "the step was compensated before this action arrived",
        )
        return _save(record, "action_reply", reply)
    using = record._state.db
    try:
        with transaction.atomic(using=using, savepoint=savepoints):
            data = participant.do(command)
    except Refusal as refusal:
        if not savepoints:
            raise  # the effect may be half done: only a rollback of the caller's undoes it
        return _save(
            record,
            "action_reply",
            Reply.to(command, Outcome.REFUSED, refusal.code, refusal.message),
        )
    return _save(record, "action_reply", Reply.to(command, Outcome.OK, data=data))


def _compensate(participant: Participant, record: StepRecord, command: Command) -> Reply:
    if record.compensation_reply is not None:
        return _stored(command, record.compensation_reply)
    action = record.action_reply
    if action is not None and action["outcome"] == Outcome.OK:
        assert participant.undo is not None, f"{command.name} has no undo function"
        data = participant.undo(command, action.get("data", {}))
        return _save(record, "compensation_reply", Reply.to(command, Outcome.OK, data=data))
    # Nothing was done (refused, or the action has not arrived yet: a tombstone).
    detail = {"undone": False, "tombstone": action is None}
    return _save(record, "compensation_reply", Reply.to(command, Outcome.OK, data=detail))
