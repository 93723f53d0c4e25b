"""`manage.py saga_engine_bench`: the CPU of the hot path in one process, without the system's
processes around it: for comparing two versions of the hot path in a minute (A/B interleaved).

On a fresh database (a new PostgreSQL database beside DATABASE_URL's, or a temporary SQLite
file), a process of its own places `--orders` orders with the storefront's `place_order` (what a
request to `POST /api/orders/` runs), then performs the queued tasks one at a time, oldest first,
with `sagas.transport.execute`, as a service worker does: each task takes its queue row in the
transaction that performs its commands and lands their replies. It goes on until no task is
left, and prints one JSON line: per saga, the CPU of the checkout and of the tasks in this
process, and of its PostgreSQL backend; the statements each phase ran; how the sagas ended.

Left out, on purpose: the web server and HTTP, django-q2's processes (pusher, monitor, worker
loop), the saga workers (no timer falls due in a run), and contention (every task runs alone).
`saga_bench` measures the whole system.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.utils import timezone

from lab.bench.meters import cpu_ticks, own_backend
from lab.management.commands.saga_bench import say
from lab.system import MANAGE, System, local_env, scratch_database

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


class Command(BaseCommand):
    help = (
        "Time the hot path in one process on a fresh database: place orders with place_order, "
        "then perform every queued task in turn as a service worker does. Prints one JSON line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=300, help="orders measured (300)")
        parser.add_argument(
            "--warmup", type=int, default=20, help="orders run through before measuring (20)"
        )
        parser.add_argument("--keep", action="store_true", help="keep the database")
        parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["orders"] < 1:
            raise CommandError(f"--orders must be at least 1, not {options['orders']}")
        if options["warmup"] < 0:
            raise CommandError(f"--warmup must be 0 or more, not {options['warmup']}")
        if options["inside"]:
            self.stdout.write(json.dumps(measure(options["orders"], options["warmup"])))
            return
        tmp = Path(tempfile.mkdtemp(prefix="saga_engine_bench_"))
        argv = [sys.executable, MANAGE, "saga_engine_bench", "--inside"]
        argv += [f"--orders={options['orders']}", f"--warmup={options['warmup']}"]
        with scratch_database(
            settings.DATABASE_URL, tmp, "saga_engine_bench", options["keep"], services=()
        ) as db:
            if db["DATABASE_URL"]:
                kept = " (kept)" if options["keep"] else ""
                say(f"database {urlsplit(db['DATABASE_URL']).path[1:]}{kept}")
            env = System.process_env({**db, **local_env(tmp, settings.SECRET_KEY)})
            done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, text=True, check=False)
        if options["keep"] and not db["DATABASE_URL"]:
            say(f"database {db['SQLITE_PATH']} (kept)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        lines = done.stdout.splitlines()
        if done.returncode or not lines:
            raise CommandError(f"the run failed (exit {done.returncode})")
        self.stdout.write(lines[-1])


def measure(orders: int, warmup: int) -> dict[str, Any]:
    """The measuring process, on its fresh database."""
    from django.contrib.auth import get_user_model

    from inventory.services import create_product
    from storefront.checkout import place_order
    from storefront.samples import order_body

    say("migrating")
    call_command("migrate_all", "--no-input", verbosity=0)
    user = get_user_model().objects.create_user(username=f"bench-{uuid.uuid4().hex[:8]}")
    sku = f"ENGINE-{uuid.uuid4().hex[:6]}"
    create_product(
        sku=sku, name="bench", price=Decimal("12.50"), currency="EUR", stock=orders + warmup
    )

    def place(count: int) -> None:
        for _ in range(count):
            place_order(owner_id=user.pk, **order_body(sku=sku, quantity=1))

    place(warmup)
    perform_queued()
    checkout, tasks = Phase(), Phase()
    measured_from = timezone.now()
    with checkout.measured():
        place(orders)
    say(f"placed {orders} orders")
    with tasks.measured():
        performed = perform_queued()
    say(f"performed {performed} tasks")
    ended = _statuses(measured_from)

    def per_saga(value: float) -> float:
        return round(value / orders, 2)

    return {
        "orders": orders,
        "warmup": warmup,
        "database": connection.vendor,
        "completed": ended.get("completed", 0),
        "failed": ended.get("failed", 0),
        "in_flight": sum(n for status, n in ended.items() if status not in ("completed", "failed")),
        "tasks_per_saga": per_saga(performed),
        "cpu_ms_per_saga": {
            "checkout": per_saga(checkout.cpu_ms),
            "tasks": per_saga(tasks.cpu_ms),
            "postgres": None
            if checkout.backend_ms is None or tasks.backend_ms is None
            else per_saga(checkout.backend_ms + tasks.backend_ms),
        },
        "statements_per_saga": {
            "checkout": per_saga(checkout.statements),
            "tasks": per_saga(tasks.statements),
        },
    }


def _statuses(since: datetime) -> dict[str, int]:
    """How many of the sagas started from `since` (the measured ones) are in each status."""
    from django.db.models import Count

    from sagas.models import Saga

    started = Saga.objects.filter(created_at__gte=since)
    return dict(started.values_list("status").annotate(n=Count("id")).order_by())


def perform_queued() -> int:
    """Perform every queued task, oldest first, until none is left; returns how many."""
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    from sagas import transport

    performed = 0
    while batch := list(OrmQ.objects.order_by("id").values_list("id", "payload")[:100]):
        for pk, payload in batch:
            # django-q2's worker around a task: its hooks before and after, the body between
            task = {**SignedPackage.loads(payload), "ack_id": pk}
            transport.take_acknowledgement(None, task["func"], task)
            try:
                transport.execute(*task["args"])
                task["success"] = True
            finally:
                transport.give_back_acknowledgement(None, task["func"], task)
            performed += 1
    return performed


class Phase:
    """CPU of this process (process time) and of its PostgreSQL backend, and the statements it
    ran, over a block."""

    def __init__(self) -> None:
        self.cpu_ms = 0.0
        self.backend_ms: float | None = None
        self.statements = 0

    @contextmanager
    def measured(self) -> Iterator[None]:
        backend = own_backend()
        before = cpu_ticks(backend) if backend else None
        started = time.process_time()
        with connection.execute_wrapper(self._count):
            yield
        self.cpu_ms = (time.process_time() - started) * 1000
        if backend and before is not None and own_backend() == backend:
            self.backend_ms = (cpu_ticks(backend) - before) * TICK_MS

    def _count(self, execute: Callable[..., Any], *args: Any) -> Any:
        self.statements += 1
        return execute(*args)
