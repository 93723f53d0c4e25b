"""`manage.py saga_bench`: measure one configuration of the whole system end to end, or the
standard set of them (`--suite standard`).

Each run has a fresh database of its own (a new PostgreSQL database beside DATABASE_URL's, or a
temporary SQLite file) and a measuring process of its own, which starts the system (ASGI server,
saga workers, one django-q2 cluster per queue), measures, stops it and drops the database. A run
prints its figures as one JSON line, the last line on standard output; progress and notes go to
standard error. A run whose invariant audit finds a violation fails: exit status 1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab import sequential
from lab.bench.report import figures, table
from lab.bench.spec import SUITES, RunSpec, decline_rate
from lab.system import MANAGE, System, local_env, scratch_database

# The shape of one run; `--suite` brings its own, so these may not be given with it.
RUN_OPTIONS = ("orders", "concurrency", "skus", "decline_rate", "direct", "sequential")
SYSTEM_COUNTS = ("saga_workers", "q_workers", "naive_processes")
WEB_SERVERS = ("uvicorn", "daphne")


def say(line: str) -> None:
    """A note for the person watching, on standard error (standard output is for the figures)."""
    print(line, file=sys.stderr, flush=True)


class Command(BaseCommand):
    help = (
        "Benchmark the order saga end to end on a fresh database: one run, or --suite standard. "
        "Prints one JSON line of figures per run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, help="orders in the measured phase (500)")
        parser.add_argument(
            "--concurrency",
            type=int,
            help="clients, each waiting for its saga to end before the next order (20)",
        )
        parser.add_argument(
            "--skus", type=int, help="products the orders spread over (1: one hot product)"
        )
        parser.add_argument(
            "--decline-rate",
            type=decline_rate,
            metavar="R",
            help="share of orders paid with a declined card, 0 to 1, e.g. 0.05 (0)",
        )
        parser.add_argument(
            "--direct",
            action="store_true",
            default=None,
            help="place orders with the storefront's place_order in this process, not over HTTP",
        )
        parser.add_argument(
            "--sequential",
            action="store_true",
            default=None,
            help="run the order saga with its steps forced into a chain",
        )
        parser.add_argument(
            "--suite", choices=sorted(SUITES), help="run a set of configurations instead"
        )
        parser.add_argument(
            "--warmup", type=int, default=20, help="orders placed before measuring (20)"
        )
        parser.add_argument("--saga-workers", type=int, default=2, help="saga workers (2)")
        parser.add_argument(
            "--q-workers", type=int, default=2, help="django-q2 workers per service queue (2)"
        )
        parser.add_argument(
            "--naive-processes", type=int, default=4, help="processes for the naive ceiling (4)"
        )
        parser.add_argument(
            "--web",
            choices=WEB_SERVERS,
            default="uvicorn",
            help="the web server: uvicorn, one process of what `make serve` runs (uvloop,"
            " httptools), or daphne, as `make run` serves (uvicorn)",
        )
        parser.add_argument(
            "--keep", action="store_true", help="keep the database and the logs of a passed run"
        )
        # Internal: the measuring process of one run, against the run's own database.
        parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--name", default="", help=argparse.SUPPRESS)
        parser.add_argument("--log-dir", help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        runs = self.checked(options)
        if options["inside"]:
            self.inside(runs[0], options)
            return
        results = []
        for number, spec in enumerate(runs, 1):
            if len(runs) > 1:
                say(f"run {number}/{len(runs)}: {spec.label}")
            results.append(self.fresh_database_run(spec, options))
        if options["suite"]:
            self.stdout.write(table([r for r, _ in results], [s.label for s in runs]))
        failed = [spec.label for spec, (_, ok) in zip(runs, results, strict=True) if not ok]
        if failed:
            raise CommandError(f"benchmark run(s) failed: {', '.join(failed)}")

    def checked(self, options: dict[str, Any]) -> list[RunSpec]:
        """The runs asked for; raises CommandError on any bad value, before anything starts."""
        problems = [
            f"--{name.replace('_', '-')} must be at least 1, not {options[name]}"
            for name in SYSTEM_COUNTS
            if options[name] < 1
        ]
        if options["warmup"] < 0:
            problems.append(f"--warmup must be 0 or more, not {options['warmup']}")
        if options["suite"]:
            given = [f"--{n.replace('_', '-')}" for n in RUN_OPTIONS if options[n] is not None]
            if given:
                problems.append(f"--suite runs its own set; leave out {', '.join(given)}")
            runs = list(SUITES[options["suite"]])
        else:
            runs = [
                RunSpec(
                    name=options["name"],
                    orders=500 if options["orders"] is None else options["orders"],
                    concurrency=20 if options["concurrency"] is None else options["concurrency"],
                    skus=1 if options["skus"] is None else options["skus"],
                    decline_rate=options["decline_rate"] or Fraction(0),
                    direct=bool(options["direct"]),
                    sequential=bool(options["sequential"]),
                )
            ]
            problems += runs[0].problems()
        if problems:
            raise CommandError("; ".join(problems))
        return runs

    def fresh_database_run(
        self, spec: RunSpec, options: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, bool]:
        """Run `spec` in a measuring process of its own on a fresh database; echo its JSON line
        and return the figures (None if it printed none) and whether the run passed."""
        tmp = Path(tempfile.mkdtemp(prefix="saga_bench_"))
        say(f"{spec.label}: a fresh database; logs in {tmp / 'logs'} (kept if the run fails)")
        env = {
            **local_env(tmp, settings.SECRET_KEY),
            "ORDER_THROTTLE_RATE": "",
            sequential.ENV: "1" if spec.sequential else "",
        }
        argv = [sys.executable, MANAGE, "saga_bench", "--inside", f"--log-dir={tmp}"]
        argv += spec.argv()
        argv += [f"--{n.replace('_', '-')}={options[n]}" for n in (*SYSTEM_COUNTS, "warmup", "web")]
        with scratch_database(settings.DATABASE_URL, tmp, "saga_bench", options["keep"]) as db:
            if db["DATABASE_URL"]:
                kept = " (kept)" if options["keep"] else ""
                say(f"{spec.label}: database {urlsplit(db['DATABASE_URL']).path[1:]}{kept}")
            done = subprocess.run(
                argv,
                env=System.process_env({**db, **env}),
                stdout=subprocess.PIPE,
                text=True,
                check=False,
            )
        lines = done.stdout.splitlines()
        for line in lines[:-1]:
            say(line)
        result = None
        if lines:
            try:
                result = json.loads(lines[-1])
            except json.JSONDecodeError:
                say(lines[-1])
            else:
                self.stdout.write(lines[-1])
        passed = done.returncode == 0 and result is not None
        if not passed:
            say(f"{spec.label}: the run failed (exit {done.returncode}); logs in {tmp / 'logs'}")
        elif not options["keep"]:
            shutil.rmtree(tmp, ignore_errors=True)
        return result, passed

    def inside(self, spec: RunSpec, options: dict[str, Any]) -> None:
        from lab.bench.measure import measure

        log_dir = Path(options["log_dir"] or tempfile.mkdtemp(prefix="saga_bench_"))
        # The rest of the system's settings come from this process's environment (set outside).
        system = System(
            env={},
            log_dir=log_dir / "logs",
            saga_workers=options["saga_workers"],
            q_workers=options["q_workers"],
            web_server=options["web"],
        )
        system.migrate()
        system.manage("seed_demo")
        say(
            f"{spec.label}: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}, "
            f"{system.saga_workers} saga workers, {len(settings.SERVICE_QUEUES)} queues x "
            f"{system.q_workers} django-q2 workers; {spec.orders} orders at concurrency "
            f"{spec.concurrency} {'direct' if spec.direct else f'over HTTP ({system.web_server})'}, "
            f"{'chained' if spec.sequential else 'parallel'} steps, {spec.skus} product(s), "
            f"{spec.declined} declined"
        )
        try:
            system.start()
            say(
                f"{spec.label}: pids (for py-spy) "
                + ", ".join(f"{p.name} {p.pid}" for p in system.procs)
            )
            run = measure(
                system,
                spec,
                warmup=options["warmup"],
                naive_processes=options["naive_processes"],
                say=say,
                stream=sys.stderr,
            )
        finally:
            system.stop()
        result = figures(run)
        for violation in run.violations:
            say(f"  violation: {violation}")
        self.stdout.write(json.dumps(result))
        if run.violations:
            raise CommandError(f"{len(run.violations)} invariant violation(s)")
