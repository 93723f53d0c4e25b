"""PostgreSQL LISTEN/NOTIFY wake-ups: a NOTIFY sent inside a transaction is delivered on commit
(dropped on rollback), so it is a safe nudge beside an outbox row. Polling stays the safety net."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from django.db import connections

from sagas.config import listen_url


def notify(*channels: str, using: str = "default") -> None:
    """Queue an empty notification on each of `channels`, delivered when the current
    transaction commits."""
    connection = connections[using]
    if channels and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(c, '') FROM unnest(%s::text[]) AS c", [list(channels)])


class Listener:
    """Waits for notifications on one channel over a dedicated autocommit connection."""

    def __init__(self, channel: str, using: str = "default") -> None:
        self.channel, self.using = channel, using
        self.conn: psycopg.Connection[Any] | None = None

    def wait(self, timeout: float) -> list[str]:
        """The payloads of the notifications that arrive within `timeout` (those of a burst
        together; none when the time is up). A new connection has missed whatever was sent
        before it: its first wait gives one empty payload at once, a sign to look."""
        if connections[self.using].vendor != "postgresql":
            time.sleep(min(timeout, 0.05))  # SQLite: no notifications; poll briskly
            return [""]
        try:
            if self.conn is None or self.conn.closed:
                self.conn = self._connect()
                return [""]
            got = [n.payload for n in self.conn.notifies(timeout=timeout, stop_after=1)]
            return got + [n.payload for n in self.conn.notifies(timeout=0)]
        except psycopg.Error:
            self.close()  # reconnect at the next wait; meanwhile behave like a short poll
            time.sleep(min(timeout, 0.5))
            return [""]

    def _connect(self) -> psycopg.Connection[Any]:
        params = connections[self.using].get_connection_params()
        for key in ("cursor_factory", "context", "prepare_threshold"):
            params.pop(key, None)
        if self.using == "default" and listen_url():
            # A transaction-mode pooler would move the session between transactions and the
            # notifications would never come: this connection goes around it.
            kept = {k: params[k] for k in ("application_name", "connect_timeout") if k in params}
            conn = psycopg.connect(listen_url(), **kept, autocommit=True)
        else:
            conn = psycopg.connect(**params, autocommit=True)
        conn.execute(f'LISTEN "{self.channel}"')
        return conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None
