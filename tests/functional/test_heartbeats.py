"""Heartbeats of real processes: a saga worker and a django-q2 cluster beat while they run, the
web process's /metrics reports a small age, and once they stop the age only grows."""

from __future__ import annotations

import math
import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from lab.system import Proc, System, local_env
from tests.functional.harness import FAST, postgres_database

pytestmark = pytest.mark.processes

WORKER = 'queue="",role="saga_worker"'
PAYMENTS = 'queue="payments",role="cluster"'
ORDERS = 'queue="orders",role="cluster"'


@contextmanager
def web_worker_and_payments_cluster(tmp: Path) -> Iterator[System]:
    """The web server, one saga worker and the payments queue's cluster on a fresh database."""
    with postgres_database() as databases:
        env = {**local_env(tmp, "functional-tests-" + "x" * 50), **FAST, **databases}
        system = System(
            env=env, log_dir=tmp / "logs", saga_workers=1, q_workers=1, queues=("payments",)
        )
        system.migrate()
        system.start()
        try:
            yield system
        finally:
            system.stop()


def sql(system: System, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(system.env["DATABASE_URL"], autocommit=True) as conn:
        cursor = conn.execute(query)
        return list(cursor.fetchall()) if cursor.description else []


def heartbeats(system: System) -> dict[str, tuple[int, Any]]:
    """(pid, beat_at) of each process that beat, keyed like the gauge's labels."""
    rows = sql(system, "SELECT role, queue, pid, beat_at FROM sagas_workerheartbeat")
    return {f'queue="{queue}",role="{role}"': (pid, beat_at) for role, queue, pid, beat_at in rows}


def scrape(system: System) -> dict[str, dict[str, float]]:
    """The heartbeat gauges of the web process's /metrics: {metric: {labels: value}}."""
    text = requests.get(f"{system.url}/metrics", timeout=10).text
    found: dict[str, dict[str, float]] = {}
    for name, labels, value in re.findall(
        r"^(saga_heartbeat_\w+)\{([^}]*)\} (\S+)$", text, flags=re.MULTILINE
    ):
        found.setdefault(name, {})[labels] = float(value)
    return found


def wait_for(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def proc(system: System, name: str) -> Proc:
    return next(p for p in system.procs if p.name == name)


def test_a_saga_worker_and_a_cluster_beat_while_they_run_and_age_once_stopped(
    tmp_path: Path,
) -> None:
    with web_worker_and_payments_cluster(tmp_path) as system:
        worker, cluster = proc(system, "saga_worker.1"), proc(system, "q_payments")
        wait_for(lambda: {WORKER, PAYMENTS} <= heartbeats(system).keys())
        beats = heartbeats(system)
        assert beats[WORKER][0] == worker.pid
        assert beats[PAYMENTS][0] == cluster.pid  # the watchdog beats for its cluster

        running = scrape(system)
        ages, live = running["saga_heartbeat_age_seconds"], running["saga_heartbeat_live_processes"]
        assert ages[WORKER] < 10 and ages[PAYMENTS] < 10  # a beat every 5 s
        assert live[WORKER] == live[PAYMENTS] == 1
        assert math.isinf(ages[ORDERS]) and live[ORDERS] == 0  # no cluster serves it

        for stopping in (worker, cluster):
            system.signal(stopping, signal.SIGTERM, group=False)
        for stopped in (worker, cluster):
            assert stopped.popen is not None
            stopped.popen.wait(60)
        # A controlled clock instead of a long sleep: as if both had been silent for 2 minutes.
        sql(system, "UPDATE sagas_workerheartbeat SET beat_at = beat_at - interval '120 seconds'")
        silent = heartbeats(system)
        first = scrape(system)["saga_heartbeat_age_seconds"]
        time.sleep(2)
        second = scrape(system)

        for key in (WORKER, PAYMENTS):
            assert 120 <= first[key] < 180
            assert second["saga_heartbeat_age_seconds"][key] >= first[key] + 1.5  # nobody beats
            assert second["saga_heartbeat_live_processes"][key] == 0
        assert heartbeats(system) == silent
