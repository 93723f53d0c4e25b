"""One measured run, in the measuring process, against a running system on its own database:
warm up, let PostgreSQL's statistics settle, then place the run's orders while the meters run;
stop the system, read the counters, audit, and measure the naive ceiling last (its rows belong
to no saga)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import TextIO

from django.db import connection

from lab.audit import audit
from lab.bench import meters
from lab.bench.ceiling import naive_ceiling
from lab.bench.load import Checkout, DirectCheckout, HttpCheckout, Progress, drive, order_bodies
from lab.bench.report import Measured
from lab.bench.spec import RunSpec
from lab.system import System


def measure(
    system: System,
    spec: RunSpec,
    *,
    warmup: int,
    naive_processes: int,
    say: Callable[[str], None],
    stream: TextIO,
) -> Measured:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from inventory.services import create_product

    on_postgresql = meters.on_postgresql()
    naive_orders = max(spec.orders, naive_processes)
    skus = [f"BENCH-{uuid.uuid4().hex[:6]}-{n}" for n in range(spec.skus)]
    for sku in skus:  # enough for every order of the run, the warm-up's and the ceiling's
        stock = warmup + spec.orders + naive_orders
        create_product(sku=sku, name="bench", price=Decimal("12.50"), currency="EUR", stock=stock)
    checkout: Checkout
    if spec.direct:
        checkout = DirectCheckout(get_user_model().objects.get(username="demo").pk)
    else:
        checkout = HttpCheckout(system.url, Token.objects.get(user__username="demo").key)

    if warmup:
        warm = order_bodies(RunSpec(orders=warmup), skus)  # no declines
        drive(checkout, warm, min(spec.concurrency, warmup), Progress(stream, "warm-up", warmup))
    if on_postgresql:
        say(
            f"waiting {meters.STATS_IDLE_FLUSH_SECONDS} s for idle backends to flush the "
            "warm-up's statistics"
        )
        time.sleep(meters.STATS_IDLE_FLUSH_SECONDS)

    # The backend that answers the driver's polls is the driver's cost, not the system's.
    poller = meters.own_backend()
    roles: dict[str, meters.Pids] = {
        "web": _tree(system, lambda name: name == "web"),
        "saga_workers": _tree(system, lambda name: name.startswith("saga_worker.")),
        "service_workers": _tree(system, lambda name: name.startswith("q_")),
        "driver": lambda: [os.getpid()] + ([poller] if poller else []),
    }
    if on_postgresql:
        roles["postgres"] = lambda: [pid for pid in meters.postgres_pids() if pid != poller]
    meter = meters.PhaseMeters(roles)
    bodies = order_bodies(spec, skus)
    with meter.phase():
        outcomes = drive(
            checkout, bodies, spec.concurrency, Progress(stream, spec.label, spec.orders)
        )
        meter.last_saga_ended()
        system.stop()  # every backend of the system flushes its statistics as it exits
        meter.system_stopped()

    cpu_ms: dict[str, float | None] | None = None
    if meter.cpu_ms is not None:
        cpu_ms = {"postgres": None, **meter.cpu_ms}
    report = audit()  # before the ceiling, whose rows belong to no saga
    say(f"naive ceiling: {naive_orders} orders in {naive_processes} processes")
    ceiling = naive_ceiling(naive_orders, naive_processes, skus)
    return Measured(
        spec=spec,
        database=connection.vendor,
        warmup=warmup,
        saga_workers=system.saga_workers,
        q_workers=system.q_workers,
        web=system.web_server,
        outcomes=outcomes,
        cpu_ms=cpu_ms,
        xacts=meter.xacts,
        wal_bytes=meter.wal_bytes,
        wal_by_table=meter.wal_by_table,
        naive_ceiling=ceiling,
        violations=report.violations,
    )


def _tree(system: System, chosen: Callable[[str], bool]) -> meters.Pids:
    """The pids of the chosen processes of `system` and of all their descendants, listed anew
    at each call (a cluster's workers come and go)."""

    def pids() -> list[int]:
        return [
            pid
            for proc in system.procs
            if chosen(proc.name) and proc.alive
            for pid in (proc.pid, *proc.descendants())
        ]

    return pids
