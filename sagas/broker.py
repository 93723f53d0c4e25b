"""A django-q2 broker for the service queues: the ORM broker's table, claimed better.

On PostgreSQL the outbox's NOTIFY carries each task (`<id> <payload>`, sagas.outbox), whose row
it writes as claimed for `retry`: the pusher hands the task to a worker as it arrives, without a
claim, and the worker takes the row itself, in the transaction that executes the task and
deletes it (sagas.transport). Claims remain for what no notification brought: once a second,
tasks whose lock expired (a worker died, a task failed); at the pusher's first look and after
a bare wake-up (a task too large to carry, one queued by django-q2's own `enqueue`, or a new
listening connection), every task no transaction holds, carried ones included, so that what
was carried to a pusher now gone, or sent while its connection was down, is not left waiting
for `retry`; and again at once while a claim comes back full. A claim is one
`UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)` (oldest first, no lost
compare-and-set races between clusters). Should a task reach two workers (two clusters of one
queue both receive its notification), the second finds its row gone or taken and does nothing.
Database errors are absorbed here: the pusher would otherwise sleep 10 s and die. On SQLite it
behaves as the stock ORM broker.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from typing import Any

from django.db import DatabaseError, connections, transaction
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.signing import SignedPackage

from sagas import cluster
from sagas.notify import Listener, notify

log = logging.getLogger(__name__)

LOOK_EVERY = 1.0  # seconds between claims when notifications bring every task

MERGED_TASKS = "sagas.transport.execute_tasks"

# Commit without waiting for the WAL flush, for writes whose loss in a crash only repeats work.
NO_FLUSH_WAIT = "SET LOCAL synchronous_commit = off"

# Tasks whose lock is before now() + %s (0: expired locks only), oldest first.
CLAIM = """
UPDATE django_q_ormq SET lock = now() + make_interval(secs => %s)
WHERE id IN (
    SELECT id FROM django_q_ormq WHERE key = %s AND lock < now() + make_interval(secs => %s)
    ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
)
RETURNING id, payload
"""


def channel(list_key: str) -> str:
    return "q_" + "".join(c if c.isalnum() else "_" for c in list_key)


class PostgresBroker(ORM):
    def __init__(self, list_key: str | None = None) -> None:
        super().__init__(list_key=list_key)
        self._start_listening()

    def __setstate__(self, state: Any) -> None:
        super().__setstate__(state)
        self._start_listening()

    def _start_listening(self) -> None:
        self._listener = Listener(channel(self.list_key or Conf.CLUSTER_NAME), Conf.ORM)
        self._carried: deque[tuple[int, str]] = deque()
        self._look_at = 0.0  # monotonic time of the next claim
        # The next claim takes carried tasks too (their rows locked for `retry` by the outbox):
        # at the first look and after a bare wake-up, which a new connection gives, whatever
        # was carried to a pusher now gone, or on a connection now closed, is taken at once.
        self._all = True

    @property
    def _connection(self) -> Any:
        return connections[Conf.ORM]

    def enqueue(self, task: str) -> Any:
        pk = super().enqueue(task)
        notify(channel(self.list_key), using=Conf.ORM)  # delivered when the caller commits
        return pk

    def dequeue(self) -> list[tuple[Any, str]] | None:
        tasks = self._next() if self._connection.vendor == "postgresql" else super().dequeue()
        if tasks:
            cluster.handed_on()  # the watchdog's measure of work not done (sagas.cluster)
        return tasks

    def _next(self) -> list[tuple[Any, str]] | None:
        wait = self._look_at - time.monotonic()
        if not self._carried and wait > 0:
            self._take(self._listener.wait(wait))
        elif self._carried:  # behind: take what arrived meanwhile too, without waiting
            self._take(self._listener.wait(0))
        # Carried tasks waiting together go on as one task (`merged`) of up to Q_MERGE_TASKS,
        # fewer if tasks have lately been slow (cluster.merge_size).
        most = cluster.merge_size()
        carried = [self._carried.popleft() for _ in range(min(most, len(self._carried)))]
        tasks = merged(carried, self.list_key) if len(carried) > 1 else carried
        if time.monotonic() >= self._look_at:
            claimed = self._claim(horizon=Conf.RETRY + 1 if self._all else 0)
            full = len(claimed) == Conf.BULK
            # A full claim: more may be waiting, look again at once, as widely.
            self._all = self._all and full
            self._look_at = time.monotonic() + (0 if full else LOOK_EVERY)
            tasks += claimed
        return tasks or None

    def _take(self, payloads: list[str]) -> None:
        for payload in payloads:
            pk, _, task = payload.partition(" ")
            if task:
                self._carried.append((int(pk), task))
            else:
                self._look_at, self._all = 0.0, True  # a bare wake-up: claim

    def _claim(self, horizon: float = 0) -> list[tuple[Any, str]]:
        try:
            self.get_connection()  # closes stale connections between looks, as the ORM broker does
            with transaction.atomic(using=Conf.ORM), self._connection.cursor() as cursor:
                cursor.execute(NO_FLUSH_WAIT)  # a claim lost in a crash: the task comes back
                cursor.execute(CLAIM, [Conf.RETRY, self.list_key, horizon, Conf.BULK])
                return [(pk, payload) for pk, payload in cursor.fetchall()]
        except DatabaseError as exc:
            log.warning(
                "queue claim failed; retrying",
                extra={"queue": self.list_key, "error": str(exc)[:200]},
            )
            self._connection.close()
            time.sleep(0.5)
            return []

    def acknowledge(self, task_id: Any) -> Any:
        if self._connection.vendor == "postgresql":
            self.get_connection()
            with transaction.atomic(using=Conf.ORM), self._connection.cursor() as cursor:
                # An acknowledgement lost in a crash means one more delivery, which is harmless.
                cursor.execute(NO_FLUSH_WAIT)
                cursor.execute("DELETE FROM django_q_ormq WHERE id = %s", [task_id])
                done = cursor.rowcount
        else:
            done = super().acknowledge(task_id)
        cluster.mark("acknowledged")  # the watchdog's sign of life (sagas.cluster)
        return done


def merged(carried: list[tuple[int, str]], queue: str | None) -> list[tuple[Any, str]]:
    """Carried tasks as one task (`sagas.transport.execute_tasks`), which performs them all in
    one transaction: under load, one hop through the cluster's processes and one commit for
    several tasks, while a task that arrives alone goes on alone. It goes by the first task's
    row; each row is taken, or found gone or held, as a task's own would be."""
    task = {
        "id": uuid.uuid4().hex,
        "name": f"{queue}:merged:{len(carried)}",
        "func": MERGED_TASKS,
        "args": (carried,),
        "kwargs": {},
        "started": timezone.now(),
    }
    # Uncompressed: the payloads inside are compressed already.
    return [(carried[0][0], SignedPackage.dumps(task, compressed=False))]


class PollingBroker(PostgresBroker):
    """The same claims for a queue where a second's delay does not matter (housekeeping): it
    sleeps `poll` between looks instead of LISTENing. Each listening session of a database runs a
    transaction of its own for every transaction that NOTIFYs there, on whatever channel."""

    def _next(self) -> list[tuple[Any, str]] | None:
        tasks = self._claim()
        if len(tasks) < Conf.BULK:
            time.sleep(Conf.POLL)
        return tasks or None
