"""The web tier's database engine: django-prometheus's PostgreSQL engine (query metrics for
/metrics), whose connection pool checks a connection it hands out without a round trip.

With CONN_HEALTH_CHECKS on, Django has psycopg's pool test each connection it hands out with an
empty query: a round trip, and a transaction on the server, per request. An idle pooled
connection that LISTENs to nothing has nothing to read, unless the server has closed it (a
restart, a failover, `pg_terminate_backend`, `idle_session_timeout`), which sends an error and
closes the socket: `check_idle_connection` looks at the socket instead, and a connection with
anything to read is closed, so that the pool replaces it. A server that vanished without closing
its sockets goes unseen here, as it would by the empty query until TCP gave up.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from django_prometheus.db.backends.postgresql import base
from psycopg import pq


def check_idle_connection(conn: psycopg.Connection[Any]) -> None:
    """Raise (and close `conn`) unless it is open, idle and has nothing to read."""
    pgconn = conn.pgconn
    healthy = (
        not conn.closed
        and pgconn.status == pq.ConnStatus.OK
        and pgconn.transaction_status == pq.TransactionStatus.IDLE
        and not _readable(pgconn.socket)
    )
    if not healthy:
        conn.close()
        raise psycopg.OperationalError("the server closed this pooled connection")


def _readable(fd: int) -> bool:
    """Whether `fd` has anything to read, or has hung up, now (poll: no limit on fd numbers,
    which a web process with many websocket clients can push past select()'s 1024)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> Any:
        pool = super().pool
        # Django gives the pool `check=ConnectionPool.check_connection` (the empty query) when
        # CONN_HEALTH_CHECKS is on, and takes no `check` of ours in the pool options.
        if pool is not None and pool._check is not None:
            pool._check = check_idle_connection
        return pool
