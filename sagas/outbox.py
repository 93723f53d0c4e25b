"""The outbox: commands go out as django-q2 tasks, one per service queue, written by the
transaction that decided them.

The broker table lives in the saga database, so a decision and its messages commit or roll back
together; the broker NOTIFYs the queue on that commit (sagas.broker).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django_q.tasks import async_task

from sagas.messages import Command

TASK = "sagas.transport.execute"


def enqueue(commands: Iterable[Command]) -> None:
    """Queue `commands`, one django-q2 task per service queue. Call inside the deciding atomic()."""
    by_queue: dict[str, list[dict]] = defaultdict(list)
    for command in commands:
        by_queue[command.queue].append(command.to_dict())
    for queue, batch in by_queue.items():
        async_task(
            TASK, batch, cluster=queue, task_name=f"{queue}:{batch[0]['saga_id']}:{len(batch)}"
        )
