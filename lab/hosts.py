"""Many workers on many hosts: saga workers and django-q2 clusters on namespaced "hosts"
(lab.netns) that share the work through PostgreSQL alone, reached over each host's own network
path (lab.forwarder). Orders are placed from this machine's namespace with the storefront's
service function.

The takeover run cuts host A off mid-run (its link goes down) and then SIGKILLs everything on
it: the sagas leased to A come back to the pool when their lease expires and the server has
ended A's sessions, the tasks A's clusters had claimed are delivered again after Q_RETRY, and
host B finishes everything. The measured run (`cut=False`) places the same load on one host or
two, for throughput. Who did what comes from the ledger the database keeps (lab.ledger).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from django.db import connection, connections
from django.db.models.functions import Now

from lab import ledger, netns
from lab.audit import AuditReport, audit
from lab.bench import meters
from lab.bench.load import DirectCheckout, Outcome, Progress, drive, order_bodies
from lab.bench.report import percentile
from lab.bench.spec import RunSpec
from lab.system import System
from sagas.config import saga_config
from sagas.core.state import SagaStatus

# Short timings for the takeover, so that it plays out in seconds; still handler timeout <
# q2 retry < step deadline. The measured run keeps the defaults.
TAKEOVER_TIMINGS = {
    "Q_TIMEOUT": "3",
    "Q_RETRY": "8",
    "SAGA_STEP_DEADLINE_SECONDS": "12",
    "SAGA_LEASE_SECONDS": "4",
    "DB_IDLE_TX_TIMEOUT_MS": "10000",
}
OBSERVER = "saga_hosts"  # application_name of this process's own connections
LEASE_WAIT = 1.0  # seconds the cut waits for A to hold leases (Cutter.wait_for_work_in_flight)
IN_FLIGHT_WAIT = 10.0  # ... and at most, for A to have work in flight
READY_SECONDS = 90.0  # for every process of every host to beat through its network path


@dataclass
class Host:
    """One namespaced host: its network, its path to the database and its processes."""

    net: netns.Host
    system: System
    forwarder: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.net.name

    def kill(self) -> None:
        """SIGKILL every process on the host, as a power cut would."""
        for proc in self.system.procs:
            if proc.alive:
                self.system.signal(proc, signal.SIGKILL)
        for pid in netns.pids(self.net.namespace):  # anything that left its process group
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.system.procs:
            if proc.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(10)
        deadline = time.monotonic() + 10  # the children of the killed go when they are reaped
        while netns.pids(self.net.namespace) and time.monotonic() < deadline:
            time.sleep(0.1)


@dataclass
class Options:
    hosts: int = 2
    orders: int = 300
    concurrency: int = 16
    skus: int = 10
    decline_rate: Fraction = Fraction(1, 20)
    saga_workers: int = 1  # per host
    q_workers: int = 2  # per service queue, per host
    cut: bool = True
    cut_after: float = 0.4  # share of the orders finished when host A is cut off
    kill_after: float = 3.0  # seconds between the cut and the SIGKILL
    warmup: int = 0
    quiet_timeout: float = 180.0


@contextmanager
def running_hosts(
    options: Options, *, tag: str, database_url: str, env: dict[str, str], log_dir: Path
) -> Iterator[list[Host]]:
    """Make the hosts, start a forwarder and the workers on each, wait until every process beats
    from its host; on the way out stop the workers, the forwarders and remove the namespaces,
    whatever happened."""
    hosts: list[Host] = []
    url = urlsplit(database_url)
    user = url.netloc.rpartition("@")[0]  # with its password, if any
    target = f"{url.hostname or '127.0.0.1'}:{url.port or 5432}"
    try:
        for net in netns.create(tag, options.hosts):
            hostenv = {
                **env,
                # The host's path to the database; a host has no Redis, no shared cache.
                "DATABASE_URL": url._replace(netloc=f"{user}@{net.outside}:5432").geturl(),
                "REDIS_URL": "",
                "CACHE_DIR": str(log_dir / net.name / "cache"),
            }
            system = System(
                env=hostenv,
                log_dir=log_dir / net.name,
                saga_workers=options.saga_workers,
                q_workers=options.q_workers,
                web_servers=0,
                launcher=net.launcher(),
                worker_prefix=f"{net.name}/",
            )
            for proc in system.procs:  # the ledger tells processes apart by application name
                proc.env = {**proc.env, "PGAPPNAME": f"{net.name}/{proc.name}"}
            hosts.append(Host(net, system))
        for host in hosts:
            host.forwarder = start_forwarder(f"{host.net.outside}:5432", target, log_dir)
        for host in hosts:
            host.system.start()
        wait_until_beating(hosts, options)
        yield hosts
    finally:
        for host in hosts:
            host.system.stop(timeout=15)
        for host in hosts:
            if host.forwarder is not None and host.forwarder.poll() is None:
                host.forwarder.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    host.forwarder.wait(5)
                host.forwarder.kill()
        netns.remove(tag)


def start_forwarder(listen: str, target: str, log_dir: Path) -> subprocess.Popen[bytes]:
    with (log_dir / f"forwarder-{listen}.log").open("ab") as log:
        forwarder = subprocess.Popen(
            [sys.executable, "-m", "lab.forwarder", listen, target],
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,  # a Ctrl-C reaches the run, which stops the hosts first
            cwd=Path(__file__).resolve().parent.parent,
        )
    assert forwarder.stdout is not None
    if not forwarder.stdout.readline():
        raise RuntimeError(f"the forwarder on {listen} did not start; see {log_dir}")
    return forwarder


def wait_until_beating(hosts: list[Host], options: Options) -> None:
    """Every saga worker and cluster of every host has beaten from that host (its heartbeat row
    names the host): each reached the database through its host's network."""
    from sagas.models import HeartbeatRole, WorkerHeartbeat

    queues = len(hosts[0].system.procs) - options.saga_workers
    deadline = time.monotonic() + READY_SECONDS
    while True:
        missing = []
        for host in hosts:
            dead = [p.name for p in host.system.procs if not p.alive]
            if dead:
                raise RuntimeError(f"{host.name}: processes died at start: {dead}")
            rows = WorkerHeartbeat.objects.filter(host=host.name)
            workers = rows.filter(role=HeartbeatRole.SAGA_WORKER).count()
            clusters = rows.filter(role=HeartbeatRole.CLUSTER).values("queue").distinct().count()
            if workers < options.saga_workers or clusters < queues:
                missing.append(f"{host.name} ({workers} saga workers, {clusters} clusters)")
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every process beat within {READY_SECONDS:.0f} s: {missing}")
        time.sleep(0.5)


@dataclass
class Cut:
    """What happened to host A, stamped with the database clock where it matters."""

    at: datetime | None = None  # when the link went down
    started: float = 0.0  # time.monotonic() then
    reached_before: bool = False  # A reached its database path just before the cut ...
    reached_after: bool = True  # ... and no longer after it
    leased: set[str] = field(default_factory=set)  # sagas leased to A's saga workers after the cut
    held_tasks: set[int] = field(default_factory=set)  # queue tasks A's clusters still held
    killed_after: float = 0.0  # seconds from the cut to the SIGKILL
    in_flight: int = 0  # unfinished sagas A had decided for or run a command of, just before
    leases_freed_after: float | None = None  # seconds from the cut until B could take them
    tasks_redelivered_after: float | None = None  # ... until A's queue tasks were acknowledged
    error: BaseException | None = None


class Cutter:
    """Watches the run from a thread of its own; when `cut_after` of the orders have finished,
    cuts host A off (while its saga worker holds leases, if it can catch it within a second),
    then kills it."""

    def __init__(self, host: Host, options: Options, say: Callable[[str], None]) -> None:
        self.host, self.options, self.say = host, options, say
        self.cut = Cut()
        self.done = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="cutter", daemon=True)

    def run(self) -> None:
        try:
            self.wait_for_progress()
            if not self.stop.is_set():
                self.cut_and_kill()
                self.watch_leases()
        except BaseException as exc:  # reported by the run, which fails
            self.cut.error = exc
        finally:
            self.done.set()
            connections.close_all()

    def wait_for_progress(self) -> None:
        from sagas.models import Saga

        target = max(1, int(self.options.orders * self.options.cut_after))
        while not self.stop.is_set():
            if Saga.objects.filter(finished_at__isnull=False).count() >= target:
                return
            time.sleep(0.1)

    def leased_to_a(self) -> set[str]:
        from sagas.models import Saga

        return {
            str(pk)
            for pk in Saga.objects.filter(
                lease_owner__startswith=f"{self.host.name}/", finished_at__isnull=True
            ).values_list("id", flat=True)
        }

    def holds_leases(self) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM sagas_saga WHERE lease_owner LIKE %s LIMIT 1",
                [f"{self.host.name}/%"],
            )
            return cursor.fetchone() is not None

    def wait_for_work_in_flight(self) -> None:
        """Hold the cut until A has something to take over: sagas it decided for or ran a
        command of, unfinished (two, so that one finishing just before the cut leaves one; a
        single one sometimes finished in the moment before the link went down, and nothing was
        left to take over).
        Within the first second, wait for a moment its saga worker also holds leases, so that
        the takeover by lease expiry is part of the run: it holds them only while it processes
        a batch (milliseconds), and most replies are decided where they land, by the service
        workers, so its batches are rare. The wait for leases ends early when the last orders
        are being placed: on a fast machine a second is much of a short run, and once the
        orders are all placed and done there is nothing in flight left to take over."""
        prefix = f"{self.host.name}/"
        started = time.monotonic()
        while not self.stop.is_set():
            waited = time.monotonic() - started
            self.cut.in_flight = ledger.in_flight(prefix)
            enough = self.cut.in_flight >= 2
            if enough and (waited >= LEASE_WAIT or self.holds_leases()):
                return
            if enough and self.last_orders_placed():
                return
            if waited >= IN_FLIGHT_WAIT:
                return
            time.sleep(0.005)

    def last_orders_placed(self) -> bool:
        """Whether the driver is placing the run's last orders (two clients' worth)."""
        from sagas.models import Saga

        placed = Saga.objects.count() - self.options.warmup
        return placed >= self.options.orders - 2 * self.options.concurrency

    def cut_and_kill(self) -> None:
        from django_q.models import OrmQ

        net = self.host.net
        self.cut.reached_before = netns.reaches(net, 5432)
        self.wait_for_work_in_flight()
        plug = netns.Plug(net)
        try:
            plug.pull()
            self.cut.started, self.cut.at = time.monotonic(), database_now()
            time.sleep(0.3)  # what A sent before the cut has reached the server by now
            self.cut.leased = self.leased_to_a()  # A's until they expire, at the earliest
        finally:
            plug.close()
        self.cut.reached_after = netns.reaches(net, 5432)
        self.say(
            f"  cut {net.name} off ({net.veth} down) with {self.cut.in_flight} unfinished sagas "
            f"it had worked on and {len(self.cut.leased)} leased to it: from inside it, the "
            f"database path {'still answers!' if self.cut.reached_after else 'no longer answers'}"
        )
        self.stop.wait(max(0.0, self.options.kill_after - (time.monotonic() - self.cut.started)))
        # Queue tasks A's clusters claimed before the cut and can no longer acknowledge. B's
        # clusters acknowledge theirs within a second; a task claimed before the cut (its lock
        # runs out Q_RETRY after its claim) and still unacknowledged now is A's.
        assert self.cut.at is not None
        claimed_before = self.cut.at.timestamp() + saga_config().queue_retry
        self.cut.held_tasks = {
            pk
            for pk, lock in OrmQ.objects.filter(lock__gt=Now()).values_list("id", "lock")
            if lock.timestamp() <= claimed_before
        }
        self.host.kill()
        self.cut.killed_after = time.monotonic() - self.cut.started
        left = netns.pids(net.namespace)
        self.say(
            f"  killed {net.name} (SIGKILL) {self.cut.killed_after:.1f} s after the cut: "
            f"{len(self.cut.held_tasks)} queue tasks claimed by its clusters; "
            f"{len(left)} processes left on it"
        )

    def watch_leases(self) -> None:
        """When the sagas A held become claimable again (their lease expired and the server
        ended A's sessions, which released their row locks), and when the queue tasks A's
        clusters held were delivered again and acknowledged."""
        from django_q.models import OrmQ

        from sagas.models import Saga

        leased, held = set(self.cut.leased), set(self.cut.held_tasks)
        while (leased or held) and not self.stop.is_set():
            elapsed = time.monotonic() - self.cut.started
            if leased:
                leased &= {
                    str(pk)
                    for pk in Saga.objects.filter(
                        id__in=list(leased), lease_owner__startswith=f"{self.host.name}/"
                    ).values_list("id", flat=True)
                }
                if not leased:
                    self.cut.leases_freed_after = elapsed
                    self.say(
                        f"  the {len(self.cut.leased)} sagas leased to {self.host.name} were "
                        f"claimed by another worker {elapsed:.1f} s after the cut"
                    )
            if held:
                held &= set(OrmQ.objects.filter(id__in=list(held)).values_list("id", flat=True))
                if not held:
                    self.cut.tasks_redelivered_after = elapsed
                    self.say(
                        f"  the {len(self.cut.held_tasks)} queue tasks {self.host.name}'s "
                        f"clusters held were delivered again and acknowledged {elapsed:.1f} s "
                        "after the cut"
                    )
            time.sleep(0.2)


@dataclass
class HostWork:
    name: str
    sagas: int  # sagas its saga workers decided something for
    decisions: int
    finished: int  # sagas whose final decision its saga workers committed
    commands: int  # command effects its clusters committed
    sagas_before_cut: int | None = None
    commands_before_cut: int | None = None


@dataclass
class HostsResult:
    options: Options
    outcomes: list[Outcome]
    report: AuditReport
    hosts: list[HostWork]
    cut: Cut | None
    taken_over: int = 0  # sagas A worked on or held before the cut, unfinished, B finished
    taken_over_by: float | None = None  # seconds from the cut until the last of them finished
    leased_taken_over: int = 0  # of the sagas leased to A at the cut, those B finished
    held_tasks_left: int = 0  # of the tasks A's clusters held, those still queued at the end
    time_to_quiet: float = 0.0  # from the cut (or the first order) until nothing is in flight
    loadavg: tuple[str, str] = ("", "")  # /proc/loadavg at the start and at the end
    cpu_seconds: dict[str, float] | None = None  # by role, from the first order to quiet

    @property
    def seconds(self) -> float:
        ended = [o.finished for o in self.outcomes if o.finished is not None]
        if not ended:
            return 0.0
        return max(ended) - min(o.submitted for o in self.outcomes)

    @property
    def ok(self) -> bool:
        finished = all(o.status in (SagaStatus.COMPLETED, SagaStatus.FAILED) for o in self.outcomes)
        done = finished and self.report.quiet and not self.report.violations
        if self.cut is None:
            return done
        cut = self.cut
        return done and cut.error is None and cut.reached_before and not cut.reached_after

    def figures(self) -> dict[str, Any]:
        latencies = [o.latency_ms for o in self.outcomes if o.latency_ms is not None]
        statuses = Counter(o.status for o in self.outcomes)
        cut = self.cut
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        return {
            "hosts": self.options.hosts,
            "orders": len(self.outcomes),
            "concurrency": self.options.concurrency,
            "saga_workers_per_host": self.options.saga_workers,
            "q_workers_per_queue_per_host": self.options.q_workers,
            "completed": statuses[SagaStatus.COMPLETED],
            "failed": statuses[SagaStatus.FAILED],
            "stuck": statuses[SagaStatus.STUCK],
            "unfinished": self.report.unfinished,
            "audited_sagas": self.report.sagas,  # the warm-up's too
            "seconds": round(self.seconds, 2),
            "sagas_per_second": round(len(self.outcomes) / self.seconds, 2) if self.seconds else 0,
            "p50_ms": None if p50 is None else round(p50),
            "p99_ms": None if p99 is None else round(p99),
            "work": {
                w.name: {
                    "sagas": w.sagas,
                    "decisions": w.decisions,
                    "finished": w.finished,
                    "commands": w.commands,
                    "sagas_before_cut": w.sagas_before_cut,
                    "commands_before_cut": w.commands_before_cut,
                }
                for w in self.hosts
            },
            "cut": None
            if cut is None
            else {
                "reached_before": cut.reached_before,
                "reached_after": cut.reached_after,
                "leased": len(cut.leased),
                "held_tasks": len(cut.held_tasks),
                "killed_after": round(cut.killed_after, 1),
                "in_flight": cut.in_flight,
                "leases_freed_after": rounded(cut.leases_freed_after),
                "tasks_redelivered_after": rounded(cut.tasks_redelivered_after),
                "error": None if cut.error is None else repr(cut.error),
            },
            "taken_over": self.taken_over,
            "taken_over_by": rounded(self.taken_over_by),
            "leased_taken_over": self.leased_taken_over,
            "held_tasks_left": self.held_tasks_left,
            "time_to_quiet": None if cut is None else round(self.time_to_quiet, 1),
            "violations": len(self.report.violations),
            "queued_tasks": self.report.queued_tasks,
            "unread_replies": self.report.unread_replies,
            "loadavg": list(self.loadavg),
            "cpu_seconds": None
            if self.cpu_seconds is None
            else {role: round(value, 1) for role, value in self.cpu_seconds.items()},
            "ok": self.ok,
        }

    def summary(self) -> list[str]:
        f = self.figures()
        lines = [
            f"orders {f['orders']}: {f['completed']} completed, {f['failed']} failed, "
            f"{f['stuck']} stuck, {f['unfinished']} unfinished",
            f"throughput {f['sagas_per_second']} sagas/s over {f['seconds']} s; latency p50 "
            f"{f['p50_ms']} ms, p99 {f['p99_ms']} ms (concurrency {f['concurrency']})",
        ]
        for w in self.hosts:
            before = (
                ""
                if w.sagas_before_cut is None
                else f" (before the cut: {w.sagas_before_cut} sagas, "
                f"{w.commands_before_cut} commands)"
            )
            lines.append(
                f"{w.name}: saga workers decided for {w.sagas} sagas in {w.decisions} "
                f"decisions and finished {w.finished}; its clusters executed {w.commands} "
                f"commands{before}"
            )
        if self.cut is not None:
            cut = self.cut
            lines += [
                f"taken over from host-a: {self.taken_over} sagas it had worked on or held and "
                "that were unfinished at the cut were finished by the others, the last "
                f"{seconds(self.taken_over_by)} after the cut; of the {len(cut.leased)} sagas "
                f"leased to it at the cut, {self.leased_taken_over} (claimed again after "
                f"{seconds(cut.leases_freed_after)}); of the {len(cut.held_tasks)} queue tasks "
                f"its clusters held, {len(cut.held_tasks) - self.held_tasks_left} were "
                f"delivered again and acknowledged (after {seconds(cut.tasks_redelivered_after)})",
                f"time to quiet: {self.time_to_quiet:.1f} s after the cut (the rest of the "
                "orders included)",
            ]
            if cut.error is not None:
                lines.append(f"the cut failed: {cut.error!r}")
        lines.append(
            f"audit of all {self.report.sagas} sagas: {len(self.report.violations)} violations, "
            f"{self.report.queued_tasks} queued tasks, {self.report.unread_replies} unread "
            f"replies, {self.report.failed_tasks} failed tasks; lost orders: "
            f"{sum(o.status not in (SagaStatus.COMPLETED, SagaStatus.FAILED) for o in self.outcomes)}"
        )
        lines += [f"  violation: {v}" for v in self.report.violations]
        if self.cpu_seconds is not None:
            lines.append(
                "CPU seconds from the first order to quiet: "
                + ", ".join(f"{role} {value:.1f}" for role, value in self.cpu_seconds.items())
                + f" (in {self.seconds:.1f} s on {os.cpu_count()} cores; PostgreSQL: the whole "
                "server, anybody's databases)"
            )
        lines.append(f"load average at the start {self.loadavg[0]}, at the end {self.loadavg[1]}")
        return lines


def prepare(options: Options) -> tuple[DirectCheckout, list[str]]:
    """Products with stock for every order, and the checkout the clients place orders with."""
    from django.contrib.auth import get_user_model

    from inventory.services import create_product

    skus = [f"HOSTS-{n}" for n in range(options.skus)]
    for sku in skus:
        create_product(
            sku=sku,
            name="hosts",
            price=Decimal("12.50"),
            currency="EUR",
            stock=options.orders + options.warmup,
        )
    return DirectCheckout(get_user_model().objects.get(username="demo").pk), skus


def run(
    hosts: list[Host], options: Options, *, say: Callable[[str], None], stream: TextIO
) -> HostsResult:
    loadavg_start = loadavg()
    checkout, skus = prepare(options)
    if options.warmup:
        warm = order_bodies(RunSpec(orders=options.warmup), skus)
        drive(
            checkout,
            warm,
            min(options.concurrency, options.warmup),
            Progress(stream, "warm-up", options.warmup),
        )
    spec = RunSpec(
        orders=options.orders,
        concurrency=options.concurrency,
        skus=options.skus,
        decline_rate=options.decline_rate,
        direct=True,
    )
    bodies = order_bodies(spec, skus)
    say(
        f"placing {options.orders} orders ({spec.declined} declined) at concurrency "
        f"{options.concurrency} on {len(hosts)} host(s)"
        + (
            f"; host-a is cut off after {options.cut_after:.0%} have finished"
            if options.cut
            else ""
        )
    )
    cutter = Cutter(hosts[0], options, say) if options.cut else None
    if cutter is not None:
        cutter.thread.start()
    roles = cpu_roles(hosts)
    cpu_start = meters.sample_cpu(roles)
    started, measured_from = time.monotonic(), database_now()
    try:
        outcomes = drive(
            checkout, bodies, options.concurrency, Progress(stream, "orders", options.orders)
        )
        if cutter is not None:
            cutter.done.wait(60)
        say("every saga has ended; waiting for the queues to drain")
        deadline = time.monotonic() + options.quiet_timeout
        report = audit()
        while not report.quiet and time.monotonic() < deadline:
            time.sleep(0.5)
            report = audit()
        quiet_at = time.monotonic()
        # A killed host's processes take their CPU time with them: measured runs only.
        cpu = None if cutter is not None else meters.cpu_ms(cpu_start, meters.sample_cpu(roles))
    finally:
        if cutter is not None:
            cutter.stop.set()
            cutter.thread.join(30)
    from_ = cutter.cut.started if cutter is not None and cutter.cut.started else started
    return account(
        hosts,
        options,
        outcomes,
        report,
        None if cutter is None else cutter.cut,
        since=measured_from,
        cpu_ms=cpu,
        time_to_quiet=quiet_at - from_,
        loadavg=(loadavg_start, loadavg()),
    )


def account(
    hosts: list[Host],
    options: Options,
    outcomes: list[Outcome],
    report: AuditReport,
    cut: Cut | None,
    *,
    since: datetime,
    cpu_ms: dict[str, float] | None,
    time_to_quiet: float,
    loadavg: tuple[str, str],
) -> HostsResult:
    """Who did what, from the ledger; and what the others took over from host A."""
    from django.db.models import Max
    from django_q.models import OrmQ

    from sagas.models import Saga

    names = [f"{host.name}/" for host in hosts]
    total = ledger.work(names, since=since)  # the measured orders: no warm-up
    before = ledger.work(names, since=since, until=cut.at) if cut is not None and cut.at else None
    work = []
    for prefix, host in zip(names, hosts, strict=True):
        mine = total[prefix]
        work.append(
            HostWork(
                host.name,
                len(mine.sagas),
                mine.decisions,
                len(mine.finished),
                mine.commands,
                None if before is None else len(before[prefix].sagas),
                None if before is None else before[prefix].commands,
            )
        )
    result = HostsResult(
        options,
        outcomes,
        report,
        work,
        cut,
        cpu_seconds=None if cpu_ms is None else {k: v / 1000 for k, v in cpu_ms.items()},
        time_to_quiet=time_to_quiet,
        loadavg=loadavg,
    )
    if cut is not None and before is not None:
        # The sagas A had decided for, run a command of or held leased, still unfinished when
        # its link went down, and finished by another host.
        finished_before: set[str] = set().union(*(before[p].finished for p in names))
        others = set().union(*(total[p].finished for p in names[1:]))
        a = before[names[0]]
        taken = ((a.sagas | a.commanded | cut.leased) - finished_before) & others
        result.taken_over = len(taken)
        last = Saga.objects.filter(id__in=list(taken)).aggregate(last=Max("finished_at"))["last"]
        if last is not None and cut.at is not None:
            result.taken_over_by = (last - cut.at).total_seconds()
        result.leased_taken_over = len(cut.leased & others)
        result.held_tasks_left = OrmQ.objects.filter(id__in=list(cut.held_tasks)).count()
    return result


def cpu_roles(hosts: list[Host]) -> dict[str, meters.Pids]:
    """The processes whose CPU time a measured run reports, listed afresh at each sample."""

    def host_pids(host: Host) -> meters.Pids:
        return lambda: [
            pid
            for proc in host.system.procs
            if proc.alive
            for pid in (proc.pid, *proc.descendants())
        ]

    def forwarders() -> list[int]:
        return [h.forwarder.pid for h in hosts if h.forwarder is not None]

    return {
        **{host.name: host_pids(host) for host in hosts},
        "forwarders": forwarders,
        "postgres": meters.postgres_pids,
        "driver": lambda: [os.getpid()],
    }


def database_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        stamp: datetime = cursor.fetchone()[0]
        return stamp


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"
