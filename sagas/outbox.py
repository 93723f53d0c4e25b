"""The outbox: commands go out as django-q2 tasks, one per service queue, written by the
transaction that decided them.

The broker table lives in the saga database, so a decision and its messages commit or roll back
together; the queues are NOTIFYed on that commit (sagas.broker). The task rows are the ones
`django_q.tasks.async_task` writes, inserted in one statement for all queues of a decision.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable

from django.db import connections
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from sagas.messages import Command

TASK = "sagas.transport.execute"


def enqueue(commands: Iterable[Command]) -> list[str]:
    """Queue `commands`, one django-q2 task per service queue, in the caller's transaction on
    the broker's database; returns the queues written to (the caller NOTIFYs them)."""
    by_queue: dict[str, list[dict]] = defaultdict(list)
    for command in commands:
        by_queue[command.queue].append(command.to_dict())
    if not by_queue:
        return []
    connection = connections[Conf.ORM]
    # Each value as the ORM would write it: on SQLite the stock broker claims by comparing
    # `lock` with the value it read, so a lock in another text form could never be claimed.
    key, payload, lock = (OrmQ._meta.get_field(name) for name in ("key", "payload", "lock"))
    now = timezone.now()
    rows = []
    for queue, batch in by_queue.items():
        task = {
            "id": uuid.uuid4().hex,
            "name": f"{queue}:{batch[0]['saga_id']}:{len(batch)}",
            "func": TASK,
            "args": (batch,),
            "cluster": queue,
            "kwargs": {},
            "started": now,
        }
        rows += [
            key.get_db_prep_save(queue, connection),
            payload.get_db_prep_save(SignedPackage.dumps(task), connection),
            lock.get_db_prep_save(now, connection),
        ]
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO django_q_ormq (key, payload, lock) VALUES "
            + ", ".join(["(%s, %s, %s)"] * len(by_queue)),
            rows,
        )
    return list(by_queue)
