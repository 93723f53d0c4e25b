"""`manage.py saga_chaos`: run the whole system on a fresh PostgreSQL database under a seeded
storm of faults, then check every invariant. Prints one report line; exits 1 on any violation,
lost order, or a system that does not become quiet."""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab import chaos
from lab.faults import parse as parse_faults
from lab.system import MANAGE, System, databases_of_this_process, local_env, scratch_database

NUMBERS = (
    "orders",
    "interval",
    "concurrency",
    "saga_workers",
    "q_workers",
    "quiet_timeout",
    "min_kills",
    "min_terminated",
    "min_duplicates",
)


class Command(BaseCommand):
    help = "Chaos run: kill, stop, disconnect and duplicate under load; then audit the invariants."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=200, help="orders to place (200)")
        parser.add_argument("--seed", type=int, help="replay a run's fault schedule (random)")
        parser.add_argument(
            "--interval", type=float, default=1.0, help="mean seconds between faults (1.0)"
        )
        parser.add_argument("--concurrency", type=int, default=8, help="client threads (8)")
        parser.add_argument("--saga-workers", type=int, default=2, help="saga workers (2)")
        parser.add_argument(
            "--q-workers", type=int, default=2, help="django-q2 workers per queue (2)"
        )
        parser.add_argument(
            "--quiet-timeout",
            type=float,
            default=300,
            help="seconds to wait for the system to become quiet (300)",
        )
        parser.add_argument(
            "--min-kills",
            type=int,
            default=10,
            help="keep the storm going until this many kills (10)",
        )
        parser.add_argument(
            "--min-terminated",
            type=int,
            default=5,
            help="... and this many terminated connections (5)",
        )
        parser.add_argument(
            "--min-duplicates",
            type=int,
            default=1,
            help="... and this many duplicated messages (1)",
        )
        parser.add_argument(
            "--faults",
            default=chaos.DEFAULT_FAULTS,
            help="SAGA_FAULTS for the service workers (a default mix)",
        )
        parser.add_argument(
            "--pg-restart",
            action="store_true",
            help="also restart the local PostgreSQL server now and then",
        )
        parser.add_argument("--keep", action="store_true", help="keep the database and logs")
        parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        for name in NUMBERS:
            if options[name] <= 0:
                raise CommandError(f"--{name.replace('_', '-')} must be positive")
        parse_faults(options["faults"])  # a bad spec fails here, before anything starts
        if options["seed"] is None:
            options["seed"] = random.SystemRandom().randrange(1, 10**9)
        if options["inside"]:
            self.inside(options)
        else:
            self.outside(options)

    def outside(self, options: dict[str, Any]) -> None:
        if not settings.DATABASE_URL.startswith("postgres"):
            raise CommandError("the chaos run needs PostgreSQL: set DATABASE_URL=postgres://...")
        tmp = Path(tempfile.mkdtemp(prefix="saga_chaos_"))
        self.stdout.write(f"chaos seed {options['seed']}: fresh databases, logs in {tmp}")
        argv = [sys.executable, MANAGE, "saga_chaos", "--inside", f"--log-dir={tmp}"]
        argv += [f"--{n.replace('_', '-')}={options[n]}" for n in (*NUMBERS, "seed", "faults")]
        argv += ["--pg-restart"] if options["pg_restart"] else []
        with scratch_database(settings.DATABASE_URL, tmp, "saga_chaos", options["keep"]) as db:
            env = System.process_env({**db, **local_env(tmp, settings.SECRET_KEY), **chaos.TIMINGS})
            done = subprocess.run(argv, env=env, check=False)
        if done.returncode:
            raise CommandError(f"the chaos run failed (seed {options['seed']}); logs in {tmp}")

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.add_argument("--log-dir", help=argparse.SUPPRESS)
        return parser

    def inside(self, options: dict[str, Any]) -> None:
        os.environ["PGAPPNAME"] = chaos.OBSERVER  # libpq: names this process's connections
        from lab.audit import audit

        say = self.stdout.write
        log_dir = Path(options["log_dir"] or tempfile.mkdtemp(prefix="saga_chaos_"))
        # The rest of the system's settings come from this process's environment (set outside).
        env = {
            **databases_of_this_process(),  # fresh ones, made outside: default and any service's
            "SAGA_FAULTS": options["faults"],
            "SAGA_FAULT_SEED": str(options["seed"]),
            "PGAPPNAME": "saga",
        }
        system = System(
            env=env,
            log_dir=log_dir / "logs",
            saga_workers=options["saga_workers"],
            q_workers=options["q_workers"],
        )
        system.migrate()
        tokens = dict(re.findall(r"user (\w+): API token (\w+)", system.manage("seed_demo")))
        from inventory.services import create_product

        create_product(
            sku="CHAOS-SCARCE",
            name="Contended",
            price=Decimal("5.00"),
            currency="EUR",
            stock=20,
        )
        system.start()
        try:
            result = chaos.run(
                system,
                tokens,
                seed=options["seed"],
                orders=options["orders"],
                interval=options["interval"],
                lease=float(chaos.TIMINGS["SAGA_LEASE_SECONDS"]),
                concurrency=options["concurrency"],
                quiet_timeout=options["quiet_timeout"],
                say=say,
                audit=audit,
                min_kills=options["min_kills"],
                min_terminated=options["min_terminated"],
                min_duplicates=options["min_duplicates"],
                pg_restart=options["pg_restart"],
            )
        finally:
            system.stop()
        result.fenced = chaos.fenced_decisions(system.log_dir)
        for violation in result.report.violations:
            say(f"  violation: {violation}")
        for order in result.lost[:20]:
            say(f"  lost order: {order}")
        say(result.line())
        if not result.ok:
            raise CommandError(
                "chaos run failed: "
                + (
                    "violations"
                    if result.report.violations
                    else "lost orders"
                    if result.lost
                    else "the system did not become quiet"
                )
            )
