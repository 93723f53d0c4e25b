"""Heartbeats: the row each process stamps, how often, what /metrics makes of them, and when the
saga worker and the cluster watchdog beat."""

from __future__ import annotations

import math
import os
import re
from datetime import timedelta
from typing import Any, cast

import pytest
from django.db import connection
from django.db.models import F
from django.test import Client

from sagas import cluster, heartbeat
from sagas.config import saga_config
from sagas.heartbeat import Heart
from sagas.models import HeartbeatRole, WorkerHeartbeat
from sagas.worker import SagaWorker

SAGA_WORKER, CLUSTER = HeartbeatRole.SAGA_WORKER, HeartbeatRole.CLUSTER


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def age_back(name: str, seconds: float) -> None:
    """Move a process's last beat `seconds` into the past, as if it had been silent since."""
    WorkerHeartbeat.objects.filter(name=name).update(
        beat_at=F("beat_at") - timedelta(seconds=seconds)
    )


def scrape() -> dict[str, float]:
    """The heartbeat samples of /metrics, keyed by their labels as written."""
    text = Client().get("/metrics").content.decode()
    return {
        f"{name}{{{labels}}}": float(value)
        for name, labels, value in re.findall(
            r"^(saga_heartbeat_\w+)\{([^}]*)\} (\S+)$", text, flags=re.MULTILINE
        )
    }


def database_now() -> Any:
    with connection.cursor() as cursor:
        cursor.execute("SELECT CURRENT_TIMESTAMP")
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_beats_update_one_row_per_process_stamped_by_the_database() -> None:
    heartbeat.beat(SAGA_WORKER, "", "saga_worker.1", restarted=True)
    heartbeat.beat(SAGA_WORKER, "", "saga_worker.1")
    heartbeat.beat(CLUSTER, "payments", "saga_worker.1")  # same name, another role: its own row

    row = WorkerHeartbeat.objects.get(role=SAGA_WORKER, name="saga_worker.1")
    assert WorkerHeartbeat.objects.count() == 2
    assert row.pid == os.getpid()
    assert row.started_at <= row.beat_at
    assert abs((database_now() - row.beat_at).total_seconds()) < 5


@pytest.mark.django_db
def test_a_restarted_process_keeps_its_row_and_gets_a_new_start_time() -> None:
    heartbeat.beat(SAGA_WORKER, "", "saga_worker.1", restarted=True)
    WorkerHeartbeat.objects.update(started_at=F("started_at") - timedelta(hours=3), pid=1)

    heartbeat.beat(SAGA_WORKER, "", "saga_worker.1", restarted=True)

    row = WorkerHeartbeat.objects.get()
    assert row.pid == os.getpid()
    assert (row.beat_at - row.started_at).total_seconds() < 5


@pytest.mark.django_db
def test_a_heart_writes_at_most_once_per_interval(
    django_assert_num_queries: Any,
) -> None:
    clock = FakeClock()
    heart = heartbeat.Heart(SAGA_WORKER, name="w", every=5.0, clock=clock)
    assert heart.beat_if_due()  # the first call beats (and prunes)
    with django_assert_num_queries(0):
        clock.now += 4.9
        assert not heart.beat_if_due()
        assert heart.seconds_until_due() == pytest.approx(0.1)
    clock.now += 0.1
    with django_assert_num_queries(1):  # one UPDATE; pruning waits its own interval
        assert heart.beat_if_due()


@pytest.mark.django_db
def test_the_gauge_reports_the_freshest_beat_of_each_role_and_inf_for_silent_roles() -> None:
    for name in ("saga_worker.1", "saga_worker.2"):
        heartbeat.beat(SAGA_WORKER, "", name)
    heartbeat.beat(CLUSTER, "payments", "host:1")
    age_back("saga_worker.1", 300)  # dead for 5 minutes; saga_worker.2 is alive
    age_back("host:1", 120)

    samples = scrape()

    worker = 'queue="",role="saga_worker"'
    assert samples[f"saga_heartbeat_age_seconds{{{worker}}}"] < 5
    assert samples[f"saga_heartbeat_live_processes{{{worker}}}"] == 1
    payments = 'queue="payments",role="cluster"'
    assert 120 <= samples[f"saga_heartbeat_age_seconds{{{payments}}}"] < 125
    assert samples[f"saga_heartbeat_live_processes{{{payments}}}"] == 0
    for queue in saga_config().service_queues:
        if queue != "payments":  # never beat: infinitely old
            assert math.isinf(
                samples[f'saga_heartbeat_age_seconds{{queue="{queue}",role="cluster"}}']
            )


@pytest.mark.django_db
def test_no_saga_worker_ever_is_infinitely_old() -> None:
    assert math.isinf(scrape()['saga_heartbeat_age_seconds{queue="",role="saga_worker"}'])


@pytest.mark.django_db
def test_rows_of_processes_silent_for_an_hour_are_pruned_by_the_next_heart() -> None:
    heartbeat.beat(SAGA_WORKER, "", "gone")
    heartbeat.beat(SAGA_WORKER, "", "quiet")
    age_back("gone", 3601)
    age_back("quiet", 3000)

    heartbeat.Heart(SAGA_WORKER, name="new").beat_if_due()

    assert set(WorkerHeartbeat.objects.values_list("name", flat=True)) == {"quiet", "new"}


def test_a_busy_saga_worker_beats_once_every_few_seconds_not_per_batch(monkeypatch: Any) -> None:
    beats: list[float] = []
    clock = FakeClock()
    monkeypatch.setattr(heartbeat, "beat", lambda *args, **kwargs: beats.append(clock.now))
    monkeypatch.setattr(heartbeat, "prune", lambda: 0)
    worker = SagaWorker(saga_config(), name="w")
    worker.heart = heartbeat.Heart(SAGA_WORKER, name="w", every=5.0, clock=clock)
    batches = 0

    def busy() -> int:  # a batch every 125 ms for 12 s
        nonlocal batches
        batches += 1
        clock.now += 0.125
        if batches == 96:
            worker.stop()
        return 10

    monkeypatch.setattr(worker, "run_once", busy)
    worker.run()

    assert [round(t - 1000.0, 1) for t in beats] == [0.0, 5.0, 10.0]


class FakeSentinel:
    def __init__(self, checks: int) -> None:
        self.checks, self.exitcode = checks, 0

    def is_alive(self) -> bool:
        self.checks -= 1
        return self.checks >= 0


class FakeCluster:
    """A django-q2 cluster whose sentinel lives for a given number of watchdog checks."""

    def __init__(self, checks: int) -> None:
        self.sentinel, self.stop_event = FakeSentinel(checks), object()


class CountingHeart:
    every, queue = 5.0, "payments"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.beats = 0

    def seconds_until_due(self) -> float:
        return 0.0

    def beat_if_due(self) -> bool:
        self.beats += 1
        return True


def test_the_watchdog_beats_only_while_its_cluster_acknowledges_or_idles(monkeypatch: Any) -> None:
    monkeypatch.setattr(cluster, "progress", cluster.Progress.new())
    heart = CountingHeart()
    limit = cluster.stall_seconds()
    # Checks 1-4: the stall rule on the beat window (two beats) says healthy, wedged (work
    # waits, nothing acknowledged), wedged, and at the fourth check the restart window says
    # wedged too, so the cluster is given up without a beat.
    beat_window = iter([False, True, True])
    restart_window = iter([False, False, False, True])

    def stalled(queue: str, watched: cluster.Progress, window: float) -> bool:
        assert queue == "payments"
        return next(restart_window if window == limit else beat_window)

    monkeypatch.setattr(cluster, "stalled", stalled)
    wedged = FakeCluster(checks=10)

    trouble = cluster.watch(wedged, "payments", cluster.StopSignal(), limit, 0, cast(Heart, heart))

    assert trouble is not None and trouble.startswith("cluster wedged")
    assert heart.beats == 1
