"""The outbox: commands go out as django-q2 tasks, one per service queue, written by the
transaction that decided them.

The broker table lives in the saga database, so a decision and its messages commit or roll back
together; the queues are NOTIFYed on that commit, each notification carrying its task (sagas.broker
listens). The task rows are the ones `django_q.tasks.async_task` writes, inserted with their
notifications in one statement for all queues of a decision, which on PostgreSQL also writes
the decision itself (sagas.store.record).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connections
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from sagas import bulk
from sagas.broker import channel
from sagas.config import notifications_arrive
from sagas.messages import Command

TASK = "sagas.transport.execute"
MAX_NOTIFY_PAYLOAD = 8000  # bytes, PostgreSQL's limit (the text here is ASCII)


# A task is delivered, executed and redelivered whole: a worker that dies or times out in one
# command takes the others of its task down with it, and their redelivery runs them all again.
# So a decision of many sagas (a saga worker's batch of timers) sends each queue several small
# tasks rather than one large one; `Q_TIMEOUT` must cover this many commands of a service.
COMMANDS_PER_TASK = 4


def enqueue(commands: Iterable[Command], along: list[bulk.Write] | None = None) -> None:
    """Queue `commands`, django-q2 tasks of up to `COMMANDS_PER_TASK` for each service queue,
    in the caller's transaction on the broker's database; each queue written to is NOTIFYed
    when it commits. `along`: other writes to make in the same statement (PostgreSQL, on the
    broker's database)."""
    by_queue: dict[str, list[dict]] = defaultdict(list)
    for command in commands:
        by_queue[command.queue].append(command.to_dict())
    now = timezone.now()
    queues, batches = [], []
    for queue in sorted(by_queue):
        for start in range(0, len(by_queue[queue]), COMMANDS_PER_TASK):
            queues.append(queue)
            batches.append(by_queue[queue][start : start + COMMANDS_PER_TASK])
    payloads = [
        SignedPackage.dumps(_task(queue, batch, now))
        for queue, batch in zip(queues, batches, strict=True)
    ]
    on_postgresql = connections[Conf.ORM].vendor == "postgresql"
    hears = on_postgresql and notifications_arrive()
    carried = [hears and fits(payload) for payload in payloads]
    # A task its notification carries is written as claimed for `retry`, from now: the pusher
    # that receives it hands it on without claiming, and only if its worker never takes the row
    # (it died) does a claim find it again, once `retry` has passed.
    claimed = now + timedelta(seconds=Conf.RETRY)
    locks = [claimed if carry else now for carry in carried]
    if not on_postgresql:
        assert not along, "several writes in one statement need PostgreSQL"
        tasks = [
            OrmQ(key=queue, payload=payload, lock=lock)
            for queue, payload, lock in zip(queues, payloads, locks, strict=True)
        ]
        bulk.insert(OrmQ, ["key", "payload", "lock"], tasks, using=Conf.ORM)
        return
    writes = list(along or [])
    if payloads:
        writes.append(("task", INSERT, [queues, payloads, locks]))
    notified = (NOTIFY, [payloads, [channel(queue) for queue in queues], carried])
    bulk.together(writes, notified if hears and payloads else None, using=Conf.ORM)


# The tasks, and a notification on each one's queue carrying `<id> <payload>`, or nothing (a
# bare wake-up) for a task too large to carry: one statement, one round trip. A task is matched
# to its notification by its payload, which is unique (it holds the task's own uuid).
INSERT = f"""INSERT INTO {OrmQ._meta.db_table} (key, payload, lock)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[])
    RETURNING id, payload"""
NOTIFY = """
SELECT pg_notify(n.channel, CASE WHEN n.carried THEN task.id || ' ' || task.payload ELSE '' END)
FROM task
JOIN unnest(%s::text[], %s::text[], %s::boolean[]) AS n(payload, channel, carried) USING (payload)
"""


def fits(payload: str) -> bool:
    """Whether a NOTIFY can carry the task (`<id> <payload>`, the id up to 19 digits): else the
    notification is a bare wake-up and the pusher claims the task."""
    return len(payload) + 20 < MAX_NOTIFY_PAYLOAD


def _task(queue: str, batch: list[dict], now: datetime) -> dict:
    return {
        "id": uuid.uuid4().hex,
        "name": f"{queue}:{batch[0]['saga_id']}:{len(batch)}",
        "func": TASK,
        "args": (batch,),
        "cluster": queue,
        "kwargs": {},
        "started": now,
    }
