"""The saga engine's settings, read once from Django settings into one typed object."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from django.conf import settings

from sagas.core.definition import RetryPolicy


@dataclass(frozen=True)
class SagaConfig:
    lease_seconds: float
    claim_batch: int
    idle_poll_seconds: float
    step_deadline: float
    retry: RetryPolicy
    compensation_retry: RetryPolicy
    handler_timeout: int
    queue_retry: int
    merge_tasks: int  # carried tasks handed on as one task at most (1: never merged)
    service_queues: tuple[str, ...]  # one django-q2 queue (cluster) per service
    housekeeping: HousekeepingConfig

    def check(self) -> list[str]:
        """The ordering that makes redelivery safe: handler timeout < q2 retry < step deadline."""
        problems = []
        if not self.handler_timeout < self.queue_retry < self.step_deadline:
            problems.append(
                f"need Q_TIMEOUT ({self.handler_timeout}) < Q_RETRY ({self.queue_retry}) "
                f"< SAGA_STEP_DEADLINE_SECONDS ({self.step_deadline})"
            )
        if self.lease_seconds <= 0:
            problems.append("SAGA_LEASE_SECONDS must be positive")
        return problems

    @property
    def cluster_queues(self) -> tuple[str, ...]:
        """Every queue a `qcluster` may serve: the services' and the engine's own."""
        return (*self.service_queues, self.housekeeping.queue)


@dataclass(frozen=True)
class HousekeepingConfig:
    retention: timedelta  # finished sagas older than this are purged
    batch_size: int  # sagas purged per transaction
    every_minutes: int  # how often the schedule runs the purge
    queue: str  # the engine's own django-q2 queue, which runs the schedule
    run_seconds: float  # a scheduled run stops after this long; the next goes on

    def check(self) -> list[str]:
        problems = []
        if self.retention <= timedelta(0):
            problems.append("SAGA_RETENTION_DAYS must be positive")
        if self.batch_size < 1:
            problems.append("SAGA_PURGE_BATCH must be at least 1")
        if self.every_minutes < 1:
            problems.append("SAGA_PURGE_EVERY_MINUTES must be at least 1")
        return problems


@cache
def saga_config() -> SagaConfig:
    return SagaConfig(
        lease_seconds=settings.SAGA_LEASE_SECONDS,
        claim_batch=settings.SAGA_CLAIM_BATCH,
        idle_poll_seconds=settings.SAGA_IDLE_POLL_SECONDS,
        step_deadline=settings.SAGA_STEP_DEADLINE_SECONDS,
        retry=RetryPolicy(
            max_attempts=settings.SAGA_MAX_ATTEMPTS,
            initial_delay=settings.SAGA_RETRY_INITIAL_SECONDS,
            max_delay=settings.SAGA_RETRY_MAX_SECONDS,
        ),
        compensation_retry=RetryPolicy(
            max_attempts=settings.SAGA_COMPENSATION_MAX_ATTEMPTS,
            initial_delay=settings.SAGA_RETRY_INITIAL_SECONDS,
            max_delay=settings.SAGA_RETRY_MAX_SECONDS,
        ),
        handler_timeout=settings.Q_TIMEOUT,
        queue_retry=settings.Q_RETRY,
        merge_tasks=settings.Q_MERGE_TASKS,
        service_queues=tuple(settings.SERVICE_QUEUES),
        housekeeping=HousekeepingConfig(
            retention=timedelta(days=settings.SAGA_RETENTION_DAYS),
            batch_size=settings.SAGA_PURGE_BATCH,
            every_minutes=settings.SAGA_PURGE_EVERY_MINUTES,
            queue=settings.HOUSEKEEPING_QUEUE,
            # Half the cluster's task timeout: a run never comes near being killed mid-batch.
            run_seconds=settings.HOUSEKEEPING_TIMEOUT / 2,
        ),
    )


@dataclass(frozen=True)
class DashboardConfig:
    poll_seconds: float  # least time between two reads of the event log by one tailer
    frame_seconds: float  # least time between two websocket frames to one client
    redis_url: str  # set: one tailer for the whole site, batches through the Redis channel layer
    batch_limit: int = 5000  # events read per look; a backlog drains one batch per poll
    recent: int = 50  # sagas in a snapshot's list
    chart_minutes: int = 10
    chart_bucket_seconds: int = 10


@cache
def dashboard_config() -> DashboardConfig:
    return DashboardConfig(
        poll_seconds=settings.DASHBOARD_POLL_SECONDS,
        frame_seconds=settings.DASHBOARD_FRAME_SECONDS,
        redis_url=settings.REDIS_URL,
    )


@cache
def listen_url() -> str:
    """Where LISTEN connections to the default database go when it is reached through a
    transaction-mode pooler (DATABASE_LISTEN_URL); empty: where its other connections go."""
    return str(settings.DATABASE_LISTEN_URL)


def notifications_arrive() -> bool:
    """Whether the queues' pushers hear NOTIFYs: not behind a transaction-mode pooler, unless
    their LISTEN goes around it (DATABASE_LISTEN_URL)."""
    return not settings.PGBOUNCER_TRANSACTION_MODE or bool(settings.DATABASE_LISTEN_URL)
