"""`manage.py saga_worker`: run one orchestrator worker until SIGTERM or SIGINT.

Like every management command it runs the system checks first: a bad saga configuration
(sagas.checks) stops it before it claims anything. It also runs the engine's database check on
the saga database, as `migrate` does: a saga in flight whose definition version is not
registered (sagas.E004) stops it too. A database it cannot reach yet does not: the worker's loop
waits for it (the check then only warns, sagas.W004)."""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand
from django.db import router

from sagas import checks
from sagas.config import saga_config
from sagas.models import Saga
from sagas.worker import SagaWorker


class Command(BaseCommand):
    help = "Run a saga worker: claim due sagas, apply their replies and timers, send commands."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--name", help="worker name used for leases (default host:pid)")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["skip_checks"]:
            # Only the engine's checks with the database: Django's own database checks would
            # connect too, and turn a database that is still starting into a traceback.
            self.check(tags=[checks.TAG], databases=[router.db_for_write(Saga)])
        config = saga_config()
        worker = SagaWorker(config, name=options["name"])
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: worker.stop())
        self.stdout.write(
            f"saga worker {worker.name} running (batch {config.claim_batch}, "
            f"lease {config.lease_seconds}s); SIGTERM stops it after the current batch"
        )
        worker.run()
        self.stdout.write(f"saga worker {worker.name} stopped after {worker.processed} sagas")
