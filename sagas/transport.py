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
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, connections, router, transaction
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ

from sagas import cluster, metrics, outbox, store
from sagas.messages import Command, Outcome, Reply
from sagas.models import Saga
from sagas.participant import BeforeCommit, perform

log = logging.getLogger(__name__)

# A hook around each command's execution, for fault injection in tests and demos (the lab
# installs one only when SAGA_FAULTS is set). It is given the command and `run`, which performs
# it; `run(before_commit)` calls `before_commit` inside the command's transaction, just before
# the commit.
Perform = Callable[[BeforeCommit | None], Reply]
CommandHook = Callable[[Command, Perform], Reply]
_command_hook: CommandHook | None = None

# The queue row of the task this worker process is executing, when the task acknowledges
# itself (see `take_acknowledgement`).
_own_task: Any = None


def set_command_hook(hook: CommandHook | None) -> None:
    global _command_hook
    _command_hook = hook


def execute(batch: list[dict]) -> int:
    """The django-q2 task body: perform each command, then land the replies in their sagas.

    A task that acknowledges itself first takes its queue row, in the transaction that lands its
    replies: a row already gone (the task was done) or held (it is being done) ends it here."""
    commands = [Command.from_dict(raw) for raw in batch]
    saga_db = router.db_for_write(Saga)
    with transaction.atomic(using=saga_db):
        if _own_task is not None and not _take_own_task():
            return 0
        # Each command in a savepoint, or in a transaction of its own where its service has a
        # database of its own.
        replies = [_run(command) for command in commands]
        waiting = store.land(replies)
    if waiting:
        store.land_waiting(waiting)
    cluster.mark("executed")
    if _own_task is not None:
        cluster.mark("acknowledged")
    return len(replies)


def deliver(replies: list[Reply]) -> None:
    """Land `replies` in their sagas (a redelivered reply, an operator's tool, a test)."""
    if not replies:
        return
    with transaction.atomic(using=router.db_for_write(Saga)):
        waiting = store.land(replies)
    if waiting:
        store.land_waiting(waiting)


# Deletes the task's row, unless another transaction holds it. Committed with the replies, the
# delete is the acknowledgement: a task is done exactly when its replies are in; rolled back with
# them, the row is claimed again (sagas.broker).
TAKE = {
    "postgresql": f"""DELETE FROM {OrmQ._meta.db_table} WHERE id = (
    SELECT id FROM {OrmQ._meta.db_table} WHERE id = %s FOR UPDATE SKIP LOCKED)""",
    "sqlite": f"DELETE FROM {OrmQ._meta.db_table} WHERE id = %s",  # its writers take turns
}


def _take_own_task() -> bool:
    connection = connections[Conf.ORM]
    with connection.cursor() as cursor:
        cursor.execute(TAKE[connection.vendor], [_own_task])
        return cursor.rowcount == 1


def _run(command: Command) -> Reply:
    try:
        if _command_hook is None:
            reply = perform(command)
        else:
            reply = _command_hook(command, lambda before_commit: perform(command, before_commit))
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
        reply = Reply.to(command, Outcome.FAULT, type(exc).__name__, str(exc)[:500])
    metrics.COMMANDS.labels(command.name, reply.outcome.value).inc()
    return reply


def take_acknowledgement(sender: Any, func: Any, task: dict[str, Any], **kwargs: Any) -> None:
    """django-q2's `pre_execute`, in the worker process: a command task acknowledges itself.

    The task's queue row is deleted in the transaction that lands its replies, so the monitor
    process is not asked to acknowledge it (one transaction fewer per task)."""
    global _own_task
    _own_task = task.pop("ack_id", None) if task.get("func") == outbox.TASK else None


def give_back_acknowledgement(sender: Any, func: Any, task: dict[str, Any], **kwargs: Any) -> None:
    """django-q2's `post_execute_in_worker`: a task that failed gets its acknowledgement back,
    so django-q2's own rules (redelivery, `max_attempts`) apply to it. Its row, which a carried
    task was never claimed by, is locked for `retry` as a claim would have: it comes back then."""
    global _own_task
    if _own_task is not None and not task.get("success"):
        task["ack_id"] = _own_task
        try:
            OrmQ.objects.using(Conf.ORM).filter(pk=_own_task).update(
                lock=timezone.now() + timedelta(seconds=Conf.RETRY)
            )
        except DatabaseError as exc:  # then it comes back at the next claim
            log.warning("could not defer a failed task", extra={"error": str(exc)[:200]})
    _own_task = None
