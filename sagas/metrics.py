"""Prometheus metrics. Counters are recorded in whichever process acts (multiprocess-safe);
gauges that describe the whole system are read from the database at scrape time."""

from __future__ import annotations

import os
from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

SAGAS_STARTED = Counter("saga_started_total", "Sagas started", ["type"])
SAGAS_FINISHED = Counter("saga_finished_total", "Sagas finished", ["type", "status", "reason"])
STEP_EVENTS = Counter("saga_step_events_total", "Step events by kind", ["step", "kind"])
# A saga turning back (a refusal, retries exhausted, an operator's cancel): counted once per saga.
COMPENSATIONS = Counter(
    "saga_compensations_total", "Sagas that started compensating", ["type", "reason"]
)
COMMANDS = Counter("saga_commands_total", "Commands performed by services", ["command", "outcome"])
SAGA_DURATION = Histogram(
    "saga_duration_seconds",
    "Submit-to-finish time of finished sagas",
    ["type", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
BATCH_SIZE = Histogram(
    "saga_worker_batch_size",
    "Sagas processed per worker transaction",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200),
)
TASKS_PER_DELIVERY = Histogram(
    "saga_service_tasks_per_delivery",
    "Queue tasks a service worker was handed at once (more than one: merged under load)",
    buckets=(1, 2, 3, 4, 6, 8),
)


class DatabaseGauges(Collector):
    """What describes the whole system, read from the database at scrape time: sagas by status,
    the oldest due saga's age, queue depth, failed tasks and the workers' heartbeats."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db.models import Count, Min
        from django.utils import timezone
        from django_q.models import Failure, OrmQ

        from sagas import heartbeat
        from sagas.config import saga_config
        from sagas.models import HeartbeatRole, Saga

        config = saga_config()
        by_status = GaugeMetricFamily("saga_instances", "Sagas by status", labels=["status"])
        for row in Saga.objects.values("status").annotate(n=Count("id")):
            by_status.add_metric([row["status"]], row["n"])
        yield by_status
        oldest = Saga.objects.filter(due_at__isnull=False).aggregate(m=Min("due_at"))["m"]
        age = max(0.0, (timezone.now() - oldest).total_seconds()) if oldest else 0.0
        yield GaugeMetricFamily("saga_oldest_due_seconds", "Age of the oldest due saga", value=age)
        # What the oldest due age is compared with: a saga overdue by more than a reply deadline
        # means no worker looked at it in time.
        yield GaugeMetricFamily(
            "saga_step_deadline_seconds",
            "Configured wait for a reply before a command is sent again",
            value=config.step_deadline,
        )
        depth = GaugeMetricFamily(
            "saga_queue_depth", "Tasks waiting per service queue", labels=["queue"]
        )
        waiting = dict.fromkeys(config.cluster_queues, 0)
        for row in OrmQ.objects.values("key").annotate(n=Count("id")):
            waiting[row["key"]] = row["n"]
        for queue, n in sorted(waiting.items()):
            depth.add_metric([queue], n)
        yield depth
        # Tasks django-q2 gave up on (Q_MAX_ATTEMPTS): kept for operators, never dropped silently.
        yield GaugeMetricFamily(
            "saga_failed_tasks",
            "Failed django-q2 tasks kept for operators",
            value=Failure.objects.count(),
        )
        expected = [(HeartbeatRole.SAGA_WORKER.value, "")] + [
            (HeartbeatRole.CLUSTER.value, queue) for queue in config.cluster_queues
        ]
        ages = GaugeMetricFamily(
            "saga_heartbeat_age_seconds",
            "Seconds since the freshest heartbeat of any process of the role (+Inf: none)",
            labels=["role", "queue"],
        )
        live = GaugeMetricFamily(
            "saga_heartbeat_live_processes",
            f"Processes of the role that beat in the last {heartbeat.LIVE_SECONDS:.0f} s",
            labels=["role", "queue"],
        )
        for health in heartbeat.role_health(expected):
            ages.add_metric([health.role, health.queue], health.age)
            live.add_metric([health.role, health.queue], health.live)
        yield ages
        yield live


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text: counters from every process (multiprocess mode when
    PROMETHEUS_MULTIPROC_DIR is set) plus the database gauges, read now."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    gauges = CollectorRegistry()
    gauges.register(DatabaseGauges())
    body = generate_latest(registry) + generate_latest(gauges)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
