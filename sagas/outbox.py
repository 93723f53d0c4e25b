"""The outbox: commands go out as django-q2 tasks, one per service queue, written by the
transaction that decided them.

The broker table lives in the saga database, so a decision and its messages commit or roll back
together; the queues are NOTIFYed on that commit, each notification carrying its task (sagas.broker
listens). The task rows are the ones `django_q.tasks.async_task` writes, inserted in one statement
for all queues of a decision.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from sagas import bulk
from sagas.broker import channel
from sagas.messages import Command
from sagas.notify import notify

TASK = "sagas.transport.execute"
MAX_NOTIFY_PAYLOAD = 7999  # bytes: PostgreSQL's limit is 8000 (the text here is ASCII)


def enqueue(commands: Iterable[Command]) -> None:
    """Queue `commands`, one django-q2 task per service queue, in the caller's transaction on
    the broker's database; each queue written to is NOTIFYed when it commits."""
    by_queue: dict[str, list[dict]] = defaultdict(list)
    for command in commands:
        by_queue[command.queue].append(command.to_dict())
    now = timezone.now()
    queues = sorted(by_queue)
    tasks = [
        OrmQ(key=queue, payload=SignedPackage.dumps(_task(queue, by_queue[queue], now)), lock=now)
        for queue in queues
    ]
    ids = bulk.insert(OrmQ, ["key", "payload", "lock"], tasks, using=Conf.ORM)
    notify(
        *[channel(queue) for queue in queues],
        using=Conf.ORM,
        payloads=[carried(pk, task.payload) for pk, task in zip(ids, tasks, strict=True)],
    )


def carried(pk: int, payload: str) -> str:
    """A NOTIFY payload that carries the task itself (`<id> <payload>`), so that the pusher
    need not claim it (sagas.broker); empty (a bare wake-up) if it would not fit."""
    text = f"{pk} {payload}"
    return text if len(text) < MAX_NOTIFY_PAYLOAD else ""


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
