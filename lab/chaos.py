"""The chaos run: the real system on PostgreSQL under a seeded storm of faults, then the
invariants of docs/architecture.md §4 checked across every service.

Faults: SIGKILL of saga workers and django-q2 workers (restarted), SIGSTOP of a saga worker past
its lease then SIGCONT, pg_terminate_backend of the system's connections, duplicated commands and
replies, and handler errors, delays and mid-handler crashes through SAGA_FAULTS. Every draw comes
from one seeded generator, so the schedule of a run can be replayed (the processes' timing cannot).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests
from django.db import DatabaseError, connections

from lab.audit import AuditReport
from lab.system import Proc, System, database_names
from payments import testcards
from sagas.core.state import SagaStatus, StepStatus, step_log
from storefront.samples import order_body

# Service-side faults: transient errors, slow handlers and workers dying before or after commit.
DEFAULT_FAULTS = ",".join(
    [
        "orders.create:error:0.05",
        "orders.create:delay=50:0.1",
        "inventory.reserve:crash:0.02",
        "inventory.release:error:0.1",
        "payments.charge:error:0.05",
        "payments.charge:crash:0.02",
        "payments.refund:error:0.1",
        "shipping.schedule:error:0.05",
        "shipping.schedule:delay=100:0.05",
        "orders.approve:crash:0.02",
        "orders.cancel:error:0.1",
    ]
)

# The chaos run's own connections (audit, fault injection) carry this name and are spared.
OBSERVER = "saga_chaos"

# Short timings so recovery plays out quickly; still handler timeout < q2 retry < deadline.
TIMINGS = {
    "Q_TIMEOUT": "3",
    "Q_RETRY": "8",
    "Q_MAX_ATTEMPTS": "10",
    "SAGA_STEP_DEADLINE_SECONDS": "12",
    "SAGA_LEASE_SECONDS": "4",
    "SAGA_RETRY_INITIAL_SECONDS": "0.1",
    "SAGA_RETRY_MAX_SECONDS": "2",
    "SAGA_MAX_ATTEMPTS": "8",
    "SAGA_COMPENSATION_MAX_ATTEMPTS": "30",
    "DB_IDLE_TX_TIMEOUT_MS": "10000",
}


@dataclass
class ChaosCounts:
    kills: int = 0
    stops: int = 0
    terminated: int = 0
    duplicates: int = 0
    restarts: int = 0
    pg_restarts: int = 0
    last_fault: float = 0.0


@dataclass
class ChaosResult:
    seed: int
    orders: int
    accepted: int
    counts: ChaosCounts
    report: AuditReport
    lost: list[str] = field(default_factory=list)
    time_to_quiet: float = 0.0
    quiet: bool = False
    fenced: int = 0  # decisions of paused workers refused because their lease was taken over
    drain: float = 0.0  # from the last order placed to every saga finished, faults still firing

    @property
    def ok(self) -> bool:
        return self.quiet and not self.lost and not self.report.violations

    def line(self) -> str:
        by = self.report.by_status
        reasons = ",".join(f"{k}:{v}" for k, v in sorted(self.report.failure_reasons.items()))
        queued = ",".join(f"{k}:{v}" for k, v in sorted(self.report.queued_by_queue.items()))
        # Which tasks failed: a command's failure that stays is a bug; a housekeeping task's,
        # cut by a terminated connection, runs again at its next schedule.
        failed = ",".join(f"{k}:{v}" for k, v in sorted(self.report.failed_by_func.items()))
        return (
            f"chaos seed={self.seed} orders={self.orders} accepted={self.accepted} "
            f"kills={self.counts.kills} stops={self.counts.stops} fenced={self.fenced} "
            f"terminated={self.counts.terminated} duplicates={self.counts.duplicates} "
            f"restarts={self.counts.restarts} pg_restarts={self.counts.pg_restarts} "
            f"completed={by.get(SagaStatus.COMPLETED, 0)} failed={by.get(SagaStatus.FAILED, 0)} "
            f"stuck={by.get(SagaStatus.STUCK, 0)} lost={len(self.lost)} "
            f"failed_tasks={self.report.failed_tasks} violations={len(self.report.violations)} "
            f"drain={self.drain:.1f}s time_to_quiet={self.time_to_quiet:.1f}s "
            f"databases={len(set(self.report.databases.values()))} reasons={reasons}"
            + (f" failed_task_funcs={failed}" if failed else "")
            # What kept a run from quiet, when it was not: tasks left per queue, inbox rows.
            + (
                ""
                if self.quiet
                else f" unfinished={self.report.unfinished} queued={queued or 0}"
                f" unread_replies={self.report.unread_replies}"
            )
        )


class Chaos:
    def __init__(
        self,
        system: System,
        seed: int,
        tokens: dict[str, str],
        *,
        orders: int,
        interval: float,
        say: Callable[[str], None],
    ) -> None:
        self.system, self.seed, self.orders, self.interval, self.say = (
            system,
            seed,
            orders,
            interval,
            say,
        )
        self.random = random.Random(seed)
        self.counts = ChaosCounts()
        self.tokens = tokens
        self.accepted: dict[str, str] = {}  # order id -> saga id
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.database_url = system.env["DATABASE_URL"]
        # Default's and, with a database per service, each service's: connections to all of them
        # are fair game.
        self.dbnames = database_names(system.env)

    # --- the load --------------------------------------------------------------------------

    def order_bodies(self) -> list[dict[str, Any]]:
        """A seeded mix: good orders, each refusal, and scarce stock contended by many."""
        bodies = []
        for _ in range(self.orders):
            roll = self.random.random()
            card, sku, country, quantity = testcards.OK, "MUG-002", "FR", 1
            if roll < 0.25:
                sku = "CHAOS-SCARCE"  # 20 units for many orders: most fail out_of_stock
            elif roll < 0.30:
                card = testcards.DECLINED
            elif roll < 0.35:
                card = testcards.INSUFFICIENT_FUNDS
            elif roll < 0.37:
                card = testcards.PROCESSING_ERROR
            elif roll < 0.42:
                country = "AQ"
            elif roll < 0.47:
                sku, quantity = "RARE-005", 50
            bodies.append(order_body(sku=sku, quantity=quantity, card=card, country=country))
        return bodies

    def submit(self, body: dict[str, Any]) -> None:
        """Place one order, retrying through faults with one Idempotency-Key: one order at most."""
        http = requests.Session()
        http.headers.update(
            {"Authorization": f"Token {self.tokens['demo']}", "Idempotency-Key": str(uuid.uuid4())}
        )
        for attempt in range(60):
            try:
                answer = http.post(f"{self.system.url}/api/orders/", json=body, timeout=30)
                if answer.status_code == 202:
                    placed = answer.json()
                    with self.lock:
                        self.accepted[placed["order_id"]] = placed["saga_id"]
                    return
                if answer.status_code < 500 and answer.status_code not in (409, 429):
                    raise RuntimeError(f"order refused: {answer.status_code} {answer.text[:200]}")
            except requests.RequestException:
                pass
            time.sleep(min(2.0, 0.1 * (attempt + 1)))
        raise RuntimeError("an order could not be placed in 60 attempts")

    # --- the faults ------------------------------------------------------------------------

    def saga_workers(self) -> list[Proc]:
        return [p for p in self.system.procs if p.name.startswith("saga_worker")]

    def clusters(self) -> list[Proc]:
        return [p for p in self.system.procs if p.name.startswith("q_")]

    def kill_saga_worker(self) -> None:
        proc = self.random.choice(self.saga_workers())
        self.system.restart(proc)
        self.counts.kills += 1

    def kill_q2_worker(self) -> None:
        proc = self.random.choice(self.clusters())
        # The sentinel's children: its workers, pusher and monitor (the sentinel respawns them).
        below = proc.descendants()[1:]
        if not below:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.random.choice(below), signal.SIGKILL)
            self.counts.kills += 1

    def kill_cluster(self) -> None:
        self.system.restart(self.random.choice(self.clusters()))
        self.counts.kills += 1

    def stop_saga_worker(self, lease: float) -> None:
        proc = self.random.choice(self.saga_workers())
        self.system.signal(proc, signal.SIGSTOP)
        self.counts.stops += 1
        time.sleep(lease + 1 + self.random.random() * 2)  # past its lease: others take over
        self.system.signal(proc, signal.SIGCONT)

    def terminate_connections(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = ANY(%s) AND backend_type = 'client backend' "
                "AND application_name <> %s ORDER BY random() LIMIT %s",
                [self.dbnames, OBSERVER, self.random.randint(1, 4)],
            ).fetchall()
        self.counts.terminated += sum(1 for (ok,) in rows if ok)

    def duplicate_messages(self) -> None:
        """Deliver messages twice: a queued command and a waiting reply (in-flight duplicates),
        and an old command and an old success reply of a random saga (late duplicates)."""
        from sagas import transport
        from sagas.models import SagaReply

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            commands = conn.execute(
                "INSERT INTO django_q_ormq (key, payload, lock) SELECT key, payload, now() "
                "FROM django_q_ormq ORDER BY random() LIMIT 1 RETURNING id"
            ).fetchall()
        waiting = SagaReply.objects.order_by("?").first()
        if waiting is not None:  # through the real delivery path, as a redelivered task would
            transport.deliver([waiting.to_reply()])
        self.counts.duplicates += len(commands) + (waiting is not None) + self.replay_old_messages()

    def replay_old_messages(self) -> int:
        """Send again a command a saga already sent, and repeat a success it already got."""
        from django.db import transaction

        from sagas import outbox, registry, transport
        from sagas.messages import Command, Outcome, Reply
        from sagas.models import Saga

        saga = Saga.objects.order_by("?").first()
        if saga is None:
            return 0
        definition = registry.definition(saga.type, saga.version)
        sent = [(name, st) for name, st in step_log(saga.state).items() if st["attempts"]]
        if not sent:
            return 0
        name, step = self.random.choice(sent)
        with transaction.atomic():
            step_def = definition.step(name)
            command = Command(
                step_def.action,
                str(saga.id),
                name,
                False,
                step["attempts"],
                step_def.payload_of(saga.data),
            )
            outbox.enqueue([command])
        transport.deliver(
            [Reply(str(saga.id), name, False, step["attempts"], Outcome.OK)]
            if step["status"] == StepStatus.SUCCEEDED
            else []
        )
        return 2 if step["status"] == StepStatus.SUCCEEDED else 1

    def supervise(self) -> None:
        """Restart any process that died on its own (what systemd or Kubernetes would do)."""
        for proc in self.system.procs:
            if not proc.alive:
                self.system.restart(proc)
                self.counts.restarts += 1

    def restart_postgres(self) -> None:
        """Restart the local PostgreSQL server (the --pg-restart flag; needs a local cluster)."""
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(
            [
                "pg_ctlcluster",
                "--skip-systemctl-redirect",
                version,
                "main",
                "restart",
                "-m",
                "fast",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.counts.pg_restarts += 1

    def storm(self, lease: float, pg_restart: bool) -> None:
        faults: list[tuple[float, Callable[[], None]]] = [
            (3, self.kill_saga_worker),
            (4, self.kill_q2_worker),
            (1, self.kill_cluster),
            (1, lambda: self.stop_saga_worker(lease)),
            (3, self.terminate_connections),
            (3, self.duplicate_messages),
        ]
        if pg_restart:
            faults.append((1, self.restart_postgres))
        weights = [w for w, _ in faults]
        while not self.done.is_set():
            fault = self.random.choices([f for _, f in faults], weights)[0]
            try:
                fault()
            except (psycopg.Error, DatabaseError, OSError, subprocess.SubprocessError) as exc:
                connections.close_all()
                self.say(f"  a fault could not be injected: {exc}")
            self.counts.last_fault = time.monotonic()
            self.supervise()
            self.done.wait(self.interval * (0.5 + self.random.random()))


def audit_retrying(audit: Callable[[], AuditReport]) -> AuditReport:
    """The audit, retried while the database is restarting."""
    for attempt in range(60):
        try:
            return audit()
        except DatabaseError:
            connections.close_all()
            time.sleep(min(5.0, 0.5 * (attempt + 1)))
    return audit()


def run(
    system: System,
    tokens: dict[str, str],
    *,
    seed: int,
    orders: int,
    interval: float,
    lease: float,
    concurrency: int,
    quiet_timeout: float,
    min_kills: int,
    min_terminated: int,
    min_duplicates: int,
    pg_restart: bool,
    say: Callable[[str], None],
    audit: Callable[[], AuditReport],
) -> ChaosResult:
    chaos = Chaos(system, seed, tokens, orders=orders, interval=interval, say=say)
    bodies = chaos.order_bodies()
    storm = threading.Thread(target=chaos.storm, args=(lease, pg_restart), daemon=True)
    started = time.monotonic()
    storm.start()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for n, _ in enumerate(pool.map(chaos.submit, bodies), start=1):
            if n % max(1, orders // 10) == 0:
                say(
                    f"  {n}/{orders} orders placed, {chaos.counts.kills} kills so far "
                    f"({time.monotonic() - started:.0f} s)"
                )
    # Keep the storm going while sagas are in flight and until the minimum faults were dealt.
    placed_at = time.monotonic()
    deadline = placed_at + quiet_timeout
    counts = chaos.counts
    drained_at = 0.0  # when every saga had finished and every queue was empty, under fire
    while time.monotonic() < deadline:
        if not drained_at and audit_retrying(audit).quiet:
            drained_at = time.monotonic()
        if (
            drained_at
            and counts.kills >= min_kills
            and counts.terminated >= min_terminated
            and counts.duplicates >= min_duplicates
            and (counts.pg_restarts or not pg_restart)
        ):
            break
        time.sleep(1)
    chaos.done.set()
    storm.join()
    chaos.supervise()
    say(f"  faults stopped after {time.monotonic() - started:.0f} s; waiting for quiet")
    report = audit_retrying(audit)
    while not report.quiet and time.monotonic() < deadline:
        time.sleep(1)
        chaos.supervise()
        report = audit_retrying(audit)
    quiet_at = time.monotonic()
    from sagas.models import Saga

    known = set(
        map(
            str,
            Saga.objects.filter(id__in=list(chaos.accepted.values())).values_list("id", flat=True),
        )
    )
    lost = [order for order, saga in chaos.accepted.items() if saga not in known]
    return ChaosResult(
        seed,
        orders,
        len(chaos.accepted),
        chaos.counts,
        report,
        lost,
        quiet_at - chaos.counts.last_fault,
        report.quiet,
        drain=(drained_at or quiet_at) - placed_at,
    )


def fenced_decisions(log_dir: Path) -> int:
    """How many claimed sagas saga workers gave up because their fence was stale (from logs)."""
    total = 0
    for path in log_dir.glob("saga_worker.*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if "lease lost before processing" in line:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    total += int(json.loads(line)["lost"])
    return total
