"""A django-q2 broker for the service queues: the ORM broker's table, claimed better.

On PostgreSQL it claims with one `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`
(oldest first, no lost compare-and-set races between clusters), and when the queue is empty it
waits on LISTEN instead of sleeping, so a command is picked up as soon as the transaction that
queued it commits (enqueue NOTIFYs on commit). Tasks whose lock expired (a worker died) are
seen again at the next poll. Database errors are absorbed here: the pusher would otherwise
sleep 10 s and die. On SQLite it behaves as the stock ORM broker.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import DatabaseError, connections, transaction
from django_q.brokers.orm import ORM
from django_q.conf import Conf

from sagas import cluster
from sagas.notify import Listener, notify

log = logging.getLogger(__name__)

MAX_IDLE_WAIT = 1.0  # seconds between looks for redeliverable tasks when nothing is notified

# Commit without waiting for the WAL flush, for writes whose loss in a crash only repeats work.
NO_FLUSH_WAIT = "SET LOCAL synchronous_commit = off"

CLAIM = """
UPDATE django_q_ormq SET lock = now() + make_interval(secs => %s)
WHERE id IN (
    SELECT id FROM django_q_ormq WHERE key = %s AND lock < now()
    ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
)
RETURNING id, payload
"""


def channel(list_key: str) -> str:
    return "q_" + "".join(c if c.isalnum() else "_" for c in list_key)


class PostgresBroker(ORM):
    def __init__(self, list_key: str | None = None) -> None:
        super().__init__(list_key=list_key)
        self._listener = Listener(channel(self.list_key or Conf.CLUSTER_NAME), Conf.ORM)
        self._drained = False

    def __setstate__(self, state: Any) -> None:
        super().__setstate__(state)
        self._listener = Listener(channel(self.list_key or Conf.CLUSTER_NAME), Conf.ORM)
        self._drained = False

    @property
    def _connection(self) -> Any:
        return connections[Conf.ORM]

    def enqueue(self, task: str) -> Any:
        pk = super().enqueue(task)
        notify(channel(self.list_key), using=Conf.ORM)  # delivered when the caller commits
        return pk

    def dequeue(self) -> list[tuple[Any, str]] | None:
        if self._connection.vendor != "postgresql":
            return super().dequeue()
        if self._drained:
            # The last claim took fewer tasks than it could: the queue was empty then. Wait
            # for the next NOTIFY (one that came meanwhile returns at once) instead of asking
            # again: that empty claim was one more transaction per task.
            self._drained = False
            self._idle()
        try:
            self.get_connection()  # closes stale connections between looks, as the ORM broker does
            with transaction.atomic(using=Conf.ORM), self._connection.cursor() as cursor:
                cursor.execute(NO_FLUSH_WAIT)  # a claim lost in a crash: the task comes back
                cursor.execute(CLAIM, [Conf.RETRY, self.list_key, Conf.BULK])
                tasks = [(pk, payload) for pk, payload in cursor.fetchall()]
        except DatabaseError as exc:
            log.warning(
                "queue claim failed; retrying",
                extra={"queue": self.list_key, "error": str(exc)[:200]},
            )
            self._connection.close()
            time.sleep(0.5)
            return None
        if tasks:
            self._drained = len(tasks) < Conf.BULK
            return tasks
        self._idle()
        return None

    def _idle(self) -> None:
        self._listener.wait(max(Conf.POLL, MAX_IDLE_WAIT))

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


class PollingBroker(PostgresBroker):
    """The same claims for a queue where a second's delay does not matter (housekeeping): it
    sleeps `poll` between looks instead of LISTENing. Each listening session of a database runs a
    transaction of its own for every transaction that NOTIFYs there, on whatever channel."""

    def _idle(self) -> None:
        time.sleep(Conf.POLL)
