"""The django-q2 transport: commands out to one queue per service, replies back to the inbox.

Commands are enqueued through the ORM broker inside the transaction that decided them (the broker
table lives in the saga database), so a decision and its messages commit or roll back together.
django-q2 delivers at least once; `perform` makes a repeat harmless and answers with the stored
reply, and a reply is delivered again whenever its command is.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable

from django.db import router, transaction
from django.db.models.functions import Now
from django_q.tasks import async_task

from sagas import cluster, metrics
from sagas.messages import Command, Outcome, Reply
from sagas.models import Saga, SagaReply
from sagas.notify import notify
from sagas.participant import BeforeCommit, perform

log = logging.getLogger(__name__)

WAKE_CHANNEL = "saga_wake"

# A hook around each command's execution, for fault injection in tests and demos (the lab
# installs one only when SAGA_FAULTS is set). It is given the command and `run`, which performs
# it; `run(before_commit)` calls `before_commit` inside the command's transaction, just before
# the commit.
Perform = Callable[[BeforeCommit | None], Reply]
CommandHook = Callable[[Command, Perform], Reply]
_command_hook: CommandHook | None = None


def set_command_hook(hook: CommandHook | None) -> None:
    global _command_hook
    _command_hook = hook


def enqueue(commands: Iterable[Command]) -> None:
    """Queue `commands`, one django-q2 task per service queue. Call inside the deciding atomic()."""
    by_queue: dict[str, list[dict]] = defaultdict(list)
    for command in commands:
        by_queue[command.queue].append(command.to_dict())
    for queue, batch in by_queue.items():
        async_task(
            "sagas.transport.execute",
            batch,
            cluster=queue,
            task_name=f"{queue}:{batch[0]['saga_id']}:{len(batch)}",
        )


def execute(batch: list[dict]) -> int:
    """The django-q2 task body: perform each command in its own local transaction, then reply."""
    replies = [_run(Command.from_dict(raw)) for raw in batch]
    deliver(replies)
    cluster.mark("executed")
    return len(replies)


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


def deliver(replies: list[Reply]) -> None:
    """Put replies into the saga inbox and make their sagas due, in one transaction.

    The saga rows are locked in id order, as the saga workers lock them, so delivery never
    deadlocks with a worker; a reply that lands while a worker holds the saga waits for its
    commit and then makes the saga due again, so no reply is ever left unread.
    """
    if not replies:
        return
    using = router.db_for_write(Saga)
    with transaction.atomic(using=using):
        ids = sorted({r.saga_id for r in replies})
        known = {
            str(pk)
            for pk in Saga.objects.using(using)
            .select_for_update(no_key=True)
            .filter(id__in=ids)
            .order_by("id")
            .values_list("id", flat=True)
        }
        rows = [SagaReply.from_reply(r) for r in replies if r.saga_id in known]
        if len(rows) != len(replies):
            log.warning(
                "replies for unknown sagas dropped", extra={"count": len(replies) - len(rows)}
            )
        SagaReply.objects.using(using).bulk_create(rows)
        Saga.objects.using(using).filter(id__in=known).update(due_at=Now())
        notify(WAKE_CHANNEL, using)  # nudge idle saga workers; polling covers a lost nudge
