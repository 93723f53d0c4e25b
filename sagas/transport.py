"""The django-q2 transport: a service worker performs commands and lands their replies.

Commands arrive as django-q2 tasks (sagas.outbox). django-q2 delivers at least once; `perform`
makes a repeat harmless and answers with the stored reply, and a reply is delivered again
whenever its command is. The replies land in their sagas (`store.land`): a saga nobody holds is
decided there and then, so the next commands leave from the same transaction.

When the services' tables share the saga database, taking the task's queue row, the effects,
their stored replies, the decisions and the row's deletion (the acknowledgement) commit as one
transaction: one commit per task. A service in a database of its own commits its effect and
stored reply first, inside the saga database's transaction that lands the reply; a crash between
the two commits re-sends the stored reply when django-q2 delivers the task again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, NamedTuple

from django.db import DatabaseError, InterfaceError, connections, router, transaction
from django.db.models import F
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ, Task
from django_q.signing import SignedPackage

from sagas import broker, cluster, metrics, outbox, store
from sagas.messages import Command, Outcome, Reply
from sagas.models import Saga
from sagas.participant import BeforeCommit, lock_first, perform

log = logging.getLogger(__name__)

# A hook around each command's execution, for fault injection in tests and demos (the lab
# installs one only when SAGA_FAULTS is set). It is given the command and `run`, which performs
# it; `run(before_commit)` calls `before_commit` inside the command's transaction, just before
# the commit.
Perform = Callable[[BeforeCommit | None], Reply]
CommandHook = Callable[[Command, Perform], Reply]
_command_hook: CommandHook | None = None

# The queue rows of the task this worker process is executing, when the task acknowledges
# itself (see `take_acknowledgement`): one, or several for tasks the pusher merged.
_own_tasks: list[Any] = []
# The id of the command task this worker process is executing (see `take_acknowledgement`).
_task_id: str | None = None


class Part(NamedTuple):
    """A task's queue row (None: a task that does not acknowledge itself), its django-q2 id and
    its commands."""

    row: Any
    task_id: str | None
    commands: list[dict]


def set_command_hook(hook: CommandHook | None) -> None:
    global _command_hook
    _command_hook = hook


def execute(batch: list[dict]) -> int:
    """The django-q2 task body: perform each command, then land the replies in their sagas.

    A task that acknowledges itself first takes its queue row, in the transaction that lands its
    replies: a row already gone (the task was done) or held (it is being done) ends it here."""
    metrics.TASKS_PER_DELIVERY.observe(1)
    return _perform([Part(_own_tasks[0] if _own_tasks else None, _task_id, batch)])


def execute_tasks(tasks: list[tuple[Any, str]]) -> int:
    """The body of several command tasks that the pusher merged under load (sagas.broker): each
    given as its queue row and its signed payload. They run as one task would, in one
    transaction, taking the rows not gone or held. An error there (a deadlock, say) runs each
    task alone, and a task that fails alone is deferred: its row comes back after `retry` as a
    task of its own, whose failures django-q2 then records and counts under its own name. The
    merged task itself does not fail, since no record of it would ever be mended: the tasks
    inside are redelivered under their own ids."""
    metrics.TASKS_PER_DELIVERY.observe(len(tasks))
    packages = [(pk, SignedPackage.loads(payload)) for pk, payload in tasks]
    parts = [Part(pk, package["id"], package["args"][0]) for pk, package in packages]
    try:
        return _perform(parts)
    except Exception as exc:
        log.info("merged tasks failed together; each runs alone", extra={"error": _said(exc)})
    done = 0
    for part in parts:
        try:
            done += _perform([part])
        except Exception as exc:
            log.warning(
                "a merged task failed alone; it comes back after retry",
                extra={"task_row": part.row, "error": _said(exc)},
            )
            _defer([part.row])
    return done


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def _perform(parts: list[Part]) -> int:
    """Run the commands of `parts`, first without savepoints, the common case being that each
    succeeds; one that is refused or faults rolls the whole attempt back, and they run again
    with a savepoint around each command and each effect, where a refusal or a fault is answered
    and the rest commits. (With a command hook installed, as for fault injection, always so.)

    Its time, failed or not, goes to the pusher's merges (cluster.merge_size): a task that
    overran and failed is the slowness to heed."""
    start = time.monotonic()
    try:
        try:
            commands, replies, waiting = _execute(parts, savepoints=_command_hook is not None)
        except _Exceptional:
            commands, replies, waiting = _execute(parts, savepoints=True)
    finally:
        cluster.tasks_took(time.monotonic() - start, len(parts))
    for command, reply in zip(commands, replies, strict=True):
        metrics.COMMANDS.labels(command.name, reply.outcome.value).inc()
    if waiting:
        store.land_waiting(waiting)
    if replies:
        cluster.mark("executed")
        if _own_tasks:
            cluster.mark("acknowledged")
    return len(replies)


class _Exceptional(Exception):
    """A command refused or faulted where no savepoint could keep the rest: run them again."""


def _execute(parts: list[Part], savepoints: bool) -> tuple[list[Command], list[Reply], list[str]]:
    with transaction.atomic(using=router.db_for_write(Saga)):
        own = [part for part in parts if part.row is not None]
        taken = _take(own) if own else set()
        commands = [
            Command.from_dict(raw)
            for part in parts
            if part.row is None or part.row in taken
            for raw in part.commands
        ]
        lock_first(commands)
        # In the saga database's transaction, or in a transaction of its own where the
        # command's service has a database of its own.
        replies = [_run(command, savepoints) for command in commands]
        return commands, replies, store.land(replies)


def deliver(replies: list[Reply]) -> None:
    """Land `replies` in their sagas (a redelivered reply, an operator's tool, a test)."""
    if not replies:
        return
    with transaction.atomic(using=router.db_for_write(Saga)):
        waiting = store.land(replies)
    if waiting:
        store.land_waiting(waiting)


# Deletes the tasks' rows that no other transaction holds. Committed with the replies, the
# delete is the acknowledgement: a task is done exactly when its replies are in; rolled back with
# them, the rows are claimed again (sagas.broker). A task taken whose failure django-q2 recorded
# (an earlier delivery failed) is recorded as done by the same statement: so it leaves the failed
# list exactly when it is done, whichever delivery does it (one holding a payload from before
# the failure, say) and whether or not its monitor then manages to save the result.
TAKE = f"""WITH taken AS (
    DELETE FROM {OrmQ._meta.db_table} WHERE id IN (
        SELECT id FROM {OrmQ._meta.db_table} WHERE id = ANY(%s) FOR UPDATE SKIP LOCKED)
    RETURNING id
), mended AS (
    UPDATE {Task._meta.db_table} AS task
    SET success = true, result = NULL, stopped = now(), attempt_count = task.attempt_count + 1
    FROM unnest(%s::bigint[], %s::text[]) AS own(row_id, task_id)
    WHERE own.row_id IN (SELECT id FROM taken) AND task.id = own.task_id AND NOT task.success
)
SELECT id FROM taken"""
TAKE_ONE = f"DELETE FROM {OrmQ._meta.db_table} WHERE id = %s"  # SQLite: its writers take turns


def _take(parts: list[Part]) -> set[Any]:
    """Take these tasks' queue rows: the ones that were there to take (TAKE)."""
    connection = connections[Conf.ORM]
    rows = [part.row for part in parts]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(TAKE, [rows, rows, [part.task_id for part in parts]])
            return {pk for (pk,) in cursor.fetchall()}
        taken = set()
        for part in parts:  # one at a time: only PostgreSQL's pushers merge tasks
            cursor.execute(TAKE_ONE, [part.row])
            if cursor.rowcount == 1:
                taken.add(part.row)
                failed = Task.objects.using(Conf.ORM).filter(id=part.task_id, success=False)
                failed.update(
                    success=True,
                    result=None,
                    stopped=timezone.now(),
                    attempt_count=F("attempt_count") + 1,
                )
        return taken


def _run(command: Command, savepoints: bool = True) -> Reply:
    if not savepoints:
        try:
            return perform(command, savepoints=False)
        except Exception as exc:
            raise _Exceptional from exc
    try:
        if _command_hook is None:
            return perform(command)
        return _command_hook(command, lambda before_commit: perform(command, before_commit))
    except Exception as exc:  # a fault: nothing was committed, the same key may be retried
        log.warning(
            "command failed",
            extra={
                "saga_id": command.saga_id,
                "step": command.step,
                "command": command.name,
                "attempt": command.attempt,
                "error": f"{type(exc).__name__}: {exc}",
            },
        )
        return Reply.to(command, Outcome.FAULT, type(exc).__name__, str(exc)[:500])


def take_acknowledgement(sender: Any, func: Any, task: dict[str, Any], **kwargs: Any) -> None:
    """django-q2's `pre_execute`, in the worker process, for every task: a command task
    acknowledges itself.

    The task's queue row is deleted in the transaction that lands its replies, so the monitor
    process is not asked to acknowledge it (one transaction fewer per task). Tasks the pusher
    merged carry their rows in their arguments."""
    global _own_tasks, _task_id
    cluster.mark("taken")  # the watchdog's sign that the workers reach the task queue
    own = task.get("func")
    _task_id = task.get("id")
    if own == outbox.TASK:
        _own_tasks = [task.pop("ack_id")] if "ack_id" in task else []
    elif own == broker.MERGED_TASKS:
        _own_tasks = [pk for pk, _ in task["args"][0]]
        # The pusher's merged task goes by its first task's row. One queued as a task of its
        # own (an operator resubmitted a failed one) has a row the monitor acknowledges.
        if task.get("ack_id") in _own_tasks:
            del task["ack_id"]
    else:
        _own_tasks = []


def give_back_acknowledgement(sender: Any, func: Any, task: dict[str, Any], **kwargs: Any) -> None:
    """django-q2's `post_execute_in_worker`: a task that failed gets its acknowledgement back,
    so django-q2's own rules (redelivery, `max_attempts`) apply to it. Its rows, which a carried
    task was never claimed by, are locked for `retry` as a claim would have: they come back then,
    each a task of its own (merged tasks are not one task's attempt: no acknowledgement)."""
    global _own_tasks
    if _own_tasks and not task.get("success"):
        left = _defer(_own_tasks)
        if left == 0:
            # Only a transaction that performs a task's commands deletes its rows, so one
            # committed: this one, the worker seeing an error after it (its connection cut
            # during the commit, say), or a duplicate delivery's. The task is done; a failure
            # recorded for it would stay on the failed list, since nothing would ever run it
            # again to mend it.
            log.warning(
                "a task that failed had been done: its commit went through",
                extra={"task": task.get("name"), "error": str(task.get("result"))[:200]},
            )
            task["success"], task["result"] = True, "done; the worker saw its commit fail"
        elif task.get("func") == outbox.TASK:
            task["ack_id"] = task["queue_row"] = _own_tasks[0]  # for `mend_if_done`
        else:
            # Merged tasks that failed together, cut by django-q2's timeout (a SystemExit, which
            # `execute_tasks` does not catch): each comes back on its own, under its own id. A
            # failure recorded under the merged task's id would never be mended.
            log.warning(
                "merged tasks failed together; each comes back after retry",
                extra={"task": task.get("name"), "error": str(task.get("result"))[:200]},
            )
            task["success"], task["result"] = True, "not done: each task comes back after retry"
    _own_tasks = []


# How long a failed task's hooks wait for its row held by a duplicate delivery, which takes a
# task's time (milliseconds). The worker's wait holds django-q2's guard off it (its hook runs
# under the worker's timer lock), so it is short; past it the failure stands, as when the
# database fails.
ROW_WAIT_MS = 1000


@contextmanager
def _waiting_briefly_for_rows() -> Iterator[None]:
    """A transaction on the broker's database, on a connection that works (the task may have
    failed because its connection was cut), whose row locks wait `ROW_WAIT_MS` at most."""
    connections[Conf.ORM].close_if_unusable_or_obsolete()
    with transaction.atomic(using=Conf.ORM):
        if connections[Conf.ORM].vendor == "postgresql":
            with connections[Conf.ORM].cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = {ROW_WAIT_MS}")
        yield


def _defer(rows: list[Any]) -> int | None:
    """Lock these failed tasks' queue rows for `retry`, as a claim would have: they come back
    then. (django-q2 records the failure; the delivery that does the task later mends that
    record, see TAKE.)

    A row another worker holds (a duplicate delivery doing its task) is waited for, briefly:
    gone once that delivery commits, deferred if it rolls back. Returns how many rows were left,
    None where the database could not say."""
    try:
        with _waiting_briefly_for_rows():
            left = OrmQ.objects.using(Conf.ORM).filter(pk__in=rows)
            return left.update(lock=timezone.now() + timedelta(seconds=Conf.RETRY))
    except (DatabaseError, InterfaceError) as exc:  # then they come back at the next claim
        log.warning("could not defer a failed task", extra={"error": _said(exc)})
        return None


def mend_if_done(sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
    """django-q2's `post_execute`, in the monitor, once it has saved a task's result: a command
    task whose failure it has just recorded may have been done meanwhile, its row deferred and
    then taken by a duplicate delivery whose statement (TAKE) ran before the failure was there to
    mend. The row tells (waited for while another delivery holds it): gone, the task was done,
    unless the monitor itself acknowledged it for good (`max_attempts`)."""
    row = task.get("queue_row")
    if task.get("success") or row is None:
        return
    try:
        with _waiting_briefly_for_rows():
            if OrmQ.objects.using(Conf.ORM).select_for_update().filter(pk=row).exists():
                return  # still to do: its delivery will mend the failure
            failed = Task.objects.using(Conf.ORM).filter(id=task["id"], success=False)
            if Conf.MAX_ATTEMPTS > 0:
                failed = failed.filter(attempt_count__lt=Conf.MAX_ATTEMPTS)
            mended = failed.update(success=True, result=None, stopped=timezone.now())
    except (DatabaseError, InterfaceError) as exc:
        log.warning("could not look at a failed task's row", extra={"error": _said(exc)})
        return
    if mended:
        log.warning(
            "a task that failed had been done by another delivery", extra={"task": task.get("name")}
        )
