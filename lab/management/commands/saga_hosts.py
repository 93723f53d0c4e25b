"""`manage.py saga_hosts`: saga workers and django-q2 clusters on two namespaced hosts (Linux
network namespaces, loopback-range addresses) against one PostgreSQL; host A is cut off and
killed mid-run and host B takes its sagas over (lab.hosts). `--no-cut` measures throughput on
`--hosts` hosts instead; `--compare` measures one host against two.

Each run has a fresh database of its own and a process of its own (as saga_chaos). Progress and
a summary go to standard output, then one JSON line of figures, the last line. Exits 1 when a
saga does not finish, the audit finds a violation, or the cut did not cut; needs root and
iproute2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab import hosts, ledger, netns
from lab.bench.spec import decline_rate
from lab.system import MANAGE, System, local_env, scratch_database

NUMBERS = ("orders", "concurrency", "skus", "saga_workers", "q_workers", "quiet_timeout")
PASSED = (*NUMBERS, "hosts", "cut_after", "kill_after", "warmup", "decline_rate")


class Command(BaseCommand):
    help = (
        "Two namespaced hosts share the work through PostgreSQL; host A is cut off and killed "
        "mid-run and host B takes over. --no-cut: throughput; --compare: one host against two."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hosts", type=int, default=2, help="namespaced hosts (2)")
        parser.add_argument("--orders", type=int, default=300, help="orders to place (300)")
        parser.add_argument(
            "--concurrency", type=int, default=16, help="clients placing orders (16)"
        )
        parser.add_argument("--skus", type=int, default=10, help="products (10)")
        parser.add_argument(
            "--decline-rate",
            type=decline_rate,
            default=Fraction(1, 20),
            metavar="R",
            help="share of orders paid with a declined card (0.05)",
        )
        parser.add_argument("--saga-workers", type=int, default=1, help="saga workers per host (1)")
        parser.add_argument(
            "--q-workers", type=int, default=2, help="django-q2 workers per queue per host (2)"
        )
        parser.add_argument("--no-cut", action="store_true", help="cut nothing: measure throughput")
        parser.add_argument(
            "--compare",
            action="store_true",
            help="measure one host, then two (implies --no-cut) and print the table",
        )
        parser.add_argument(
            "--cut-after",
            type=float,
            default=0.4,
            help="share of the orders finished when host A is cut off (0.4)",
        )
        parser.add_argument(
            "--kill-after",
            type=float,
            default=3.0,
            help="seconds from the cut to the SIGKILL of host A (3)",
        )
        parser.add_argument(
            "--warmup", type=int, default=0, help="orders placed before the measured ones (0)"
        )
        parser.add_argument(
            "--quiet-timeout",
            type=float,
            default=180.0,
            help="seconds to wait for the queues to drain once every saga ended (180)",
        )
        parser.add_argument("--keep", action="store_true", help="keep the database and logs")
        parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--tag", help=argparse.SUPPRESS)
        parser.add_argument("--log-dir", help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        self.check_options(options)
        if options["inside"]:
            self.inside(options)
            return
        reason = netns.unavailable()
        if reason:
            raise CommandError(f"namespaced hosts cannot be made here: {reason}")
        if not settings.DATABASE_URL.startswith("postgres"):
            raise CommandError("saga_hosts needs PostgreSQL: set DATABASE_URL=postgres://...")
        if options["compare"]:
            runs = [self.fresh_run({**options, "hosts": n, "no_cut": True}) for n in (1, 2)]
            self.stdout.write("")
            self.stdout.write(comparison(runs))
            if not all(run and run["ok"] for run in runs):
                raise CommandError("a measured run failed")
            return
        figures = self.fresh_run(options)
        if not figures or not figures["ok"]:
            raise CommandError("the run failed (see above)")

    def check_options(self, options: dict[str, Any]) -> None:
        problems = [
            f"--{name.replace('_', '-')} must be positive" for name in NUMBERS if options[name] <= 0
        ]
        if not 1 <= options["hosts"] <= 8:
            problems.append("--hosts must be from 1 to 8")
        cutting = not (options["no_cut"] or options["compare"])
        if cutting and options["hosts"] < 2:
            problems.append("cutting a host off needs --hosts 2 or more (or --no-cut)")
        if not 0 < options["cut_after"] < 1:
            problems.append("--cut-after must be between 0 and 1")
        if options["kill_after"] < 0 or options["warmup"] < 0:
            problems.append("--kill-after and --warmup cannot be negative")
        if not 0 <= options["decline_rate"] <= 1:
            problems.append("--decline-rate must be from 0 to 1")
        if problems:
            raise CommandError("; ".join(problems))

    def fresh_run(self, options: dict[str, Any]) -> dict[str, Any] | None:
        """One run in a process of its own on a fresh database; its figures (None: none came).
        The namespaces of the run are removed here too, whatever became of that process."""
        tag = netns.new_tag()
        tmp = Path(tempfile.mkdtemp(prefix="saga_hosts_"))
        cut = not (options["no_cut"] or options["compare"])
        self.stdout.write(
            f"{options['hosts']} namespaced host(s), {'cut' if cut else 'no cut'}: a fresh "
            f"database; logs in {tmp}"
        )
        argv = [sys.executable, MANAGE, "saga_hosts", "--inside", f"--tag={tag}"]
        argv += [f"--log-dir={tmp}"]
        argv += [f"--{name.replace('_', '-')}={options[name]}" for name in PASSED]
        argv += [] if cut else ["--no-cut"]
        env = {**local_env(tmp, settings.SECRET_KEY), **(hosts.TAKEOVER_TIMINGS if cut else {})}
        last = ""
        try:
            with scratch_database(settings.DATABASE_URL, tmp, "saga_hosts", options["keep"]) as db:
                last = self.follow(argv, System.process_env({**db, **env}))
        finally:
            removed = netns.remove(tag)
            if removed:
                self.stdout.write(f"removed namespaces left behind: {', '.join(removed)}")
        try:
            figures: dict[str, Any] = json.loads(last)
        except json.JSONDecodeError:
            self.stdout.write(f"the run printed no figures; logs in {tmp}")
            return None
        if figures["ok"] and not options["keep"]:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            self.stdout.write(f"logs in {tmp}")
        return figures

    def follow(self, argv: list[str], env: dict[str, str]) -> str:
        """Run the inside process, echoing its output; returns its last line. A Ctrl-C reaches
        it too (same process group) and it cleans up: keep echoing until it is done; a second
        Ctrl-C kills it. SIGTERM is passed on."""
        child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
        signal.signal(signal.SIGTERM, lambda *_: child.terminate())
        assert child.stdout is not None
        last, interrupted = "", False
        try:
            while True:
                try:
                    for line in child.stdout:
                        self.stdout.write(line.rstrip("\n"))
                        last = line.strip() or last
                    break
                except KeyboardInterrupt:
                    if interrupted:
                        raise
                    interrupted = True
                    self.stdout.write("interrupted: stopping the hosts, removing the namespaces")
            child.wait()
        finally:
            if child.poll() is None:
                child.kill()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if interrupted:
            raise CommandError("interrupted")
        return last

    def inside(self, options: dict[str, Any]) -> None:
        os.environ["PGAPPNAME"] = hosts.OBSERVER  # before the first connection: not a host's
        # A SIGTERM (passed on from outside) unwinds like an error: the hosts are cleaned up.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        from io import StringIO

        from django.core.management import call_command

        log_dir = Path(options["log_dir"] or tempfile.mkdtemp(prefix="saga_hosts_"))
        say = self.say
        call_command("migrate", "--no-input", verbosity=0)
        call_command("seed_demo", stdout=StringIO())
        ledger.install()
        run_options = hosts.Options(
            hosts=options["hosts"],
            orders=options["orders"],
            concurrency=options["concurrency"],
            skus=options["skus"],
            decline_rate=options["decline_rate"],
            saga_workers=options["saga_workers"],
            q_workers=options["q_workers"],
            cut=not options["no_cut"],
            cut_after=options["cut_after"],
            kill_after=options["kill_after"],
            warmup=options["warmup"],
            quiet_timeout=options["quiet_timeout"],
        )
        try:
            result = self.run_hosts(run_options, options, log_dir)
        except KeyboardInterrupt:
            raise CommandError("interrupted: the hosts were stopped and removed") from None
        say("")
        for line in result.summary():
            say(line)
        self.stdout.write(json.dumps(result.figures()))
        if not result.ok:
            raise CommandError("the run failed")

    def run_hosts(
        self, run_options: hosts.Options, options: dict[str, Any], log_dir: Path
    ) -> hosts.HostsResult:
        say = self.say
        with hosts.running_hosts(
            run_options,
            tag=options["tag"] or netns.new_tag(),
            database_url=settings.DATABASE_URL,
            env={},  # the rest comes from this process's environment (set outside)
            log_dir=log_dir,
        ) as running:
            for host in running:
                say(
                    f"{host.name}: namespace {host.net.namespace}, {host.net.inside} <-> "
                    f"{host.net.outside} (forwarder to PostgreSQL); "
                    f"{run_options.saga_workers} saga worker(s) and "
                    f"{len(host.system.procs) - run_options.saga_workers} django-q2 clusters "
                    f"x {run_options.q_workers} workers, all beating from {host.name}"
                )
            return hosts.run(running, run_options, say=say, stream=sys.stdout)

    def say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()


def comparison(runs: list[dict[str, Any] | None]) -> str:
    """One host against two, as a Markdown table. CPU: the hosts' processes and their
    forwarders, per order and in cores (CPU seconds over the run's seconds); PostgreSQL is left
    out (the server's processes serve anybody's databases)."""
    rows = [
        "| hosts | saga workers | service workers | orders | c | sagas/s | p50 ms | p99 ms "
        "| decisions / commands per host | hosts' CPU ms/order | cores used | load average "
        "(start, end) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        if run is None:
            rows.append("| run failed |" + " |" * 11)
            continue
        n = run["hosts"]
        shares = ", ".join(f"{w['decisions']} / {w['commands']}" for w in run["work"].values())
        cpu = run["cpu_seconds"] or {}
        spent = sum(
            v for role, v in cpu.items() if role.startswith("host-") or role == "forwarders"
        )
        per_order = f"{spent * 1000 / run['orders']:.0f}" if cpu else "-"
        cores = f"{spent / run['seconds']:.2f}" if cpu and run["seconds"] else "-"
        rows.append(
            f"| {n} | {n * run['saga_workers_per_host']} "
            f"| {n * len(settings.SERVICE_QUEUES) * run['q_workers_per_queue_per_host']} "
            f"| {run['orders']} | {run['concurrency']} | {run['sagas_per_second']} "
            f"| {run['p50_ms']} | {run['p99_ms']} | {shares} | {per_order} | {cores} "
            f"| {', '.join(run['loadavg'])} |"
        )
    return "\n".join(rows)
