"""Heartbeats: every saga worker, and the watchdog of every django-q2 cluster, stamps its own
WorkerHeartbeat row every few seconds; /metrics turns the freshest stamp of each role into an
age that the alert rules watch (README, Alerting).

Stamps come from the database clock, so processes on hosts with skewed clocks still agree, and
an age is "database now minus the freshest stamp". A process that stops beating is not deleted:
its row ages, which is what the alerts look at, and is pruned after `KEEP`.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, DurationField, ExpressionWrapper, Max, Q
from django.db.models.functions import Now

from sagas.models import HeartbeatRole, WorkerHeartbeat

BEAT_SECONDS = 5.0  # one write per process at most this often
LIVE_SECONDS = 30.0  # a process that beat this recently counts as live (the alerts use 30 s too)
KEEP = timedelta(hours=1)  # rows of processes silent this long are deleted
PRUNE_SECONDS = 600.0  # how often each process deletes such rows


def beat(role: HeartbeatRole, queue: str, name: str, *, restarted: bool = False) -> None:
    """Stamp the row of the process (role, queue, name) with the database clock; `restarted`
    also resets its start time. The first beat of a new name inserts the row."""
    host, pid = socket.gethostname(), os.getpid()
    fields = {"host": host, "pid": pid, "beat_at": Now()}
    if restarted:
        fields["started_at"] = Now()
    row = WorkerHeartbeat.objects.filter(role=role, queue=queue, name=name)
    if row.update(**fields):
        return
    try:
        with transaction.atomic():
            WorkerHeartbeat.objects.create(
                role=role,
                queue=queue,
                name=name,
                host=host,
                pid=pid,
                started_at=Now(),
                beat_at=Now(),
            )
    except IntegrityError:  # another process of the same name inserted it first
        row.update(**fields)


def prune(older_than: timedelta = KEEP) -> int:
    """Delete the rows of processes that have been silent for `older_than`."""
    deleted, _ = WorkerHeartbeat.objects.filter(beat_at__lt=Now() - older_than).delete()
    return deleted


class Heart:
    """The heartbeat of one process: `beat_if_due()` may be called as often as the caller
    likes (a worker loop) and writes at most once every `every` seconds."""

    def __init__(
        self,
        role: HeartbeatRole,
        name: str | None = None,
        queue: str = "",
        every: float = BEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.role, self.queue, self.every, self.clock = role, queue, every, clock
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._next_beat = self._next_prune = clock()
        self._beaten = False

    def seconds_until_due(self) -> float:
        return max(0.0, self._next_beat - self.clock())

    def beat_if_due(self) -> bool:
        """Beat if `every` seconds have passed since the last attempt. A database error
        propagates; the next attempt is still `every` seconds away."""
        now = self.clock()
        if now < self._next_beat:
            return False
        self._next_beat = now + self.every
        beat(self.role, self.queue, self.name, restarted=not self._beaten)
        self._beaten = True
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_SECONDS
            prune()
        return True


@dataclass(frozen=True)
class RoleHealth:
    role: str
    queue: str
    age: float  # seconds since the freshest beat of any process of this role; inf: none
    live: int  # processes that beat within LIVE_SECONDS


def role_health(expected: Iterable[tuple[str, str]]) -> list[RoleHealth]:
    """Each role (and queue) that has beaten, plus the `expected` ones, which report an
    infinite age while no process of theirs has ever beaten (or all were pruned)."""
    rows = (
        WorkerHeartbeat.objects.values("role", "queue")
        .annotate(
            age=ExpressionWrapper(Now() - Max("beat_at"), output_field=DurationField()),
            live=Count("id", filter=Q(beat_at__gte=Now() - timedelta(seconds=LIVE_SECONDS))),
        )
        .order_by("role", "queue")
    )
    found = {
        (row["role"], row["queue"]): RoleHealth(
            row["role"], row["queue"], max(0.0, row["age"].total_seconds()), row["live"]
        )
        for row in rows
    }
    for role, queue in expected:
        found.setdefault((role, queue), RoleHealth(role, queue, math.inf, 0))
    return sorted(found.values(), key=lambda h: (h.role, h.queue))
