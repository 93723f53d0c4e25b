"""`manage.py saga_bench`: measure idle latency, saga throughput and the naive ceiling.

It starts the whole system (ASGI server, saga workers, one django-q2 cluster per queue) on a
fresh database of its own (a new PostgreSQL database beside DATABASE_URL's, or a temporary
SQLite file), drives it over HTTP, prints the figures and drops the database.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab import bench
from lab.system import MANAGE, System, local_env, scratch_database

COUNTS = (
    "orders",
    "concurrency",
    "latency_orders",
    "saga_workers",
    "q_workers",
    "naive_processes",
    "skus",
)


class Command(BaseCommand):
    help = "Benchmark the order saga end to end on a fresh database and print the figures."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=500, help="orders for throughput (500)")
        parser.add_argument("--concurrency", type=int, default=20, help="client threads (20)")
        parser.add_argument(
            "--latency-orders",
            type=int,
            default=30,
            help="orders placed one at a time for idle latency (30)",
        )
        parser.add_argument("--saga-workers", type=int, default=2, help="saga workers (2)")
        parser.add_argument(
            "--q-workers", type=int, default=2, help="django-q2 workers per service queue (2)"
        )
        parser.add_argument(
            "--naive-processes", type=int, default=4, help="processes for the naive ceiling (4)"
        )
        parser.add_argument(
            "--skus",
            type=int,
            default=1,
            help="products the orders spread over (1: one hot product)",
        )
        parser.add_argument("--keep", action="store_true", help="keep the database and logs")
        # Internal: the measuring half, run in a process of its own against the bench database.
        parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        for name in COUNTS:
            if options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        if options["inside"]:
            self.measure(options)
            return
        self.fresh_database_run(options)

    def fresh_database_run(self, options: dict[str, Any]) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="saga_bench_"))
        env = {**local_env(tmp, settings.SECRET_KEY), "ORDER_THROTTLE_RATE": ""}
        with scratch_database(settings.DATABASE_URL, tmp, "saga_bench", options["keep"]) as db:
            env.update(db)
            system = System(
                env=env,
                log_dir=tmp / "logs",
                saga_workers=options["saga_workers"],
                q_workers=options["q_workers"],
            )
            self.stdout.write(f"preparing a fresh database; logs in {tmp / 'logs'}")
            system.manage("migrate", "--no-input")
            system.manage("seed_demo")
            argv = ["saga_bench", "--inside", f"--port={system.port}"]
            for name in COUNTS:
                argv.append(f"--{name.replace('_', '-')}={options[name]}")
            try:
                system.start()
                done = subprocess.run(
                    [sys.executable, MANAGE, *argv], env=System.process_env(env), check=False
                )
            finally:
                system.stop()
            if done.returncode:
                raise CommandError("the benchmark failed; see the output above and the logs")

    def measure(self, options: dict[str, Any]) -> None:
        from rest_framework.authtoken.models import Token

        from inventory.services import create_product

        write = self.stdout.write
        port = options["port"]
        total = options["orders"] + options["latency_orders"] + options["orders"] + 10
        skus = [f"BENCH-{uuid.uuid4().hex[:6]}-{n}" for n in range(options["skus"])]
        for sku in skus:
            create_product(
                sku=sku, name="bench", price=bench.Decimal("12.50"), currency="EUR", stock=total
            )
        token = Token.objects.get(user__username="demo").key
        driver = bench.Driver(f"http://127.0.0.1:{port}", token, skus)
        vendor = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        write(
            f"saga_bench on {vendor}: {options['saga_workers']} saga workers, 4 queues x "
            f"{options['q_workers']} django-q2 workers; orders spread over {len(skus)} product(s)"
        )
        driver.wait_finished([driver.place() for _ in range(3)], timeout=60)  # warm up
        lat = bench.latency(driver, options["latency_orders"])
        write(f"latency, {len(lat)} orders one at a time, submit to finish: {bench.summary(lat)}")
        result = bench.throughput(driver, options["orders"], options["concurrency"], write)
        write(
            f"throughput: {result.orders} orders at concurrency {options['concurrency']} in "
            f"{result.seconds:.2f} s = {result.per_second:.1f} orders/s "
            f"(completed {result.completed}, failed {result.failed})"
        )
        ceiling = bench.naive_ceiling(options["orders"], options["naive_processes"], skus)
        write(
            f"naive ceiling, 4 local commits per order in {options['naive_processes']} "
            f"processes, no orchestration: {ceiling:.1f} orders/s"
        )
        write(f"saga throughput = {100 * result.per_second / ceiling:.1f}% of the naive ceiling")
