"""`manage.py saga_worker`: run one orchestrator worker until SIGTERM or SIGINT.

Like every management command it runs the system checks first: a bad saga configuration
(sagas.checks) stops it before it claims anything. Its checks include the database checks on the
saga database, as `migrate`'s do: a saga in flight whose definition version is not registered
(sagas.E004) stops it too."""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand
from django.db import router

from sagas.config import saga_config
from sagas.models import Saga
from sagas.worker import SagaWorker


class Command(BaseCommand):
    help = "Run a saga worker: claim due sagas, apply their replies and timers, send commands."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--name", help="worker name used for leases (default host:pid)")

    def get_check_kwargs(self, options: dict[str, Any]) -> dict[str | None, Any]:
        return {**super().get_check_kwargs(options), "databases": [router.db_for_write(Saga)]}

    def handle(self, *args: Any, **options: Any) -> None:
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
