"""The saga worker loop: claim due sagas, process them, sleep until the earliest timer or the poll
interval.

Replies are decided where they land (sagas.store.land), so a saga worker only recovers: timers
(reply deadlines, backoffs), sagas left with replies in their inbox, leases that ran out. It does
not LISTEN: PostgreSQL makes every listening session of a database run a transaction for every
transaction that NOTIFYs there, on any channel, so each listener costs a share of every step.

Any number of workers may run on any number of hosts. A worker that dies loses nothing: its
leases expire and another worker claims the sagas. SIGTERM stops the loop after the current
batch, which is committed or rolled back as a whole. Every few seconds the loop stamps the
worker's heartbeat (sagas.heartbeat), which the alerts watch.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from django.db import DatabaseError, InterfaceError, close_old_connections, connection

from sagas import store
from sagas.config import SagaConfig
from sagas.heartbeat import Heart
from sagas.models import HeartbeatRole

log = logging.getLogger("sagas.worker")


class SagaWorker:
    def __init__(self, config: SagaConfig, name: str | None = None) -> None:
        self.config = config
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = threading.Event()
        self.processed = 0
        self.heart = Heart(HeartbeatRole.SAGA_WORKER, name=self.name)

    def run(self) -> None:
        log.info("saga worker started", extra={"worker": self.name})
        failures = 0
        try:
            while not self.stopping.is_set():
                try:
                    self.heart.beat_if_due()  # one write every few seconds, not per batch
                    done = self.run_once()
                    # Idle: sleep until the earliest timer falls due, at most the poll interval.
                    idle = 0.0 if done else store.seconds_until_due()
                    failures = 0
                except (DatabaseError, InterfaceError) as exc:
                    # Connection lost or a statement failed: drop the connection and try again.
                    # Claimed sagas stay leased until the lease expires, then anyone may take them.
                    failures += 1
                    log.warning(
                        "database error; retrying",
                        extra={"worker": self.name, "error": str(exc)[:300]},
                    )
                    connection.close()
                    self.stopping.wait(min(5.0, 0.1 * 2**failures))
                    continue
                if not done:
                    nap = min(self.config.idle_poll_seconds, idle, self.heart.seconds_until_due())
                    self.stopping.wait(max(0.05, nap))
        finally:
            log.info(
                "saga worker stopped", extra={"worker": self.name, "processed": self.processed}
            )

    def run_once(self) -> int:
        close_old_connections()
        claimed = store.claim(self.name, self.config.claim_batch, self.config.lease_seconds)
        if not claimed:
            return 0
        done = store.process(self.name, claimed)
        self.processed += done
        return done

    def stop(self) -> None:
        self.stopping.set()
