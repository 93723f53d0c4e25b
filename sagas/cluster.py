"""A watchdog around a django-q2 cluster: restarts it when it wedges.

A django-q2 cluster passes tasks between its processes through multiprocessing queues, and a
process killed while it holds a queue's lock (an idle worker waiting in `get()` holds it most of
the time; the pusher and the monitor hold theirs while writing and reading) leaves that lock held
forever: the sentinel respawns the process, but the cluster never moves again (upstream #23).
The watchdog sees this from outside: work is waiting in its queue, or tasks keep running, yet no
task has been acknowledged for a while. It then kills the whole cluster and starts a fresh one.
Nothing is lost: unacknowledged tasks are delivered again after `retry`, and every command is
idempotent.

The watchdog also beats for its cluster (sagas.heartbeat), and only while the cluster is healthy:
acknowledging tasks, or idle with nothing waiting. A wedged cluster stops beating before the
watchdog restarts it, and a cluster that keeps wedging, or a watchdog that is gone, stays silent,
which is what the alerts watch.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connections
from django.db.models.functions import Now
from django_q.cluster import Cluster
from django_q.conf import Conf
from django_q.models import OrmQ

from sagas.heartbeat import Heart
from sagas.models import HeartbeatRole

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36


@dataclass
class Progress:
    """Shared with every process the cluster forks (created before the fork)."""

    executed: Any  # multiprocessing.Value('d'): when a task body last finished
    acknowledged: Any  # when the monitor last acknowledged a task

    @classmethod
    def new(cls) -> Progress:
        now = time.time()
        return cls(multiprocessing.Value("d", now), multiprocessing.Value("d", now))

    def reset(self) -> None:
        self.executed.value = self.acknowledged.value = time.time()


progress: Progress | None = None  # set in the qcluster process before the cluster starts


def mark(which: str) -> None:
    """Record progress from inside the cluster (a no-op outside a watched cluster)."""
    if progress is not None:
        getattr(progress, which).value = time.time()


def stall_seconds() -> float:
    return max(2.0 * Conf.TIMEOUT if Conf.TIMEOUT else 20.0, 10.0)


def claimable_waiting(queue: str, older_than: float) -> bool:
    """Is a task in `queue` claimable and unclaimed for `older_than` seconds?"""
    try:
        cutoff = Now() - timedelta(seconds=older_than)
        return OrmQ.objects.filter(key=queue, lock__lt=cutoff).exists()
    except DatabaseError:
        connections.close_all()  # a fresh connection next time
        return False  # cannot tell; look again next time


def stalled(queue: str, watched: Progress, limit: float) -> bool:
    now = time.time()
    if now - watched.acknowledged.value < limit:
        return False
    busy_without_acks = watched.executed.value - watched.acknowledged.value > limit / 2
    return busy_without_acks or claimable_waiting(queue, older_than=2.0)


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, parents before their children."""
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop(0)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        found += map(int, children)
        pending += map(int, children)
    return found


def kill_cluster_processes() -> None:
    for pid in descendants(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    while True:  # reap them
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                break
        except ChildProcessError:
            break


def beat_for(heart: Heart) -> None:
    """Beat for a healthy cluster; a database that cannot be reached is no reason to stop."""
    try:
        heart.beat_if_due()
    except DatabaseError as exc:
        log.warning("heartbeat failed", extra={"queue": heart.queue, "error": str(exc)[:200]})
        connections.close_all()


def run_watched(queue: str, check_every: float = 2.0) -> None:
    """Run a django-q2 cluster for `queue` until SIGTERM/SIGINT, restarting it if it wedges
    or if its sentinel dies. Beats for the cluster while it is healthy."""
    global progress
    # Orphans of a killed sentinel become our children, so they can be found and stopped.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    progress = Progress.new()
    limit = stall_seconds()
    heart = Heart(HeartbeatRole.CLUSTER, queue=queue)
    while True:
        connections.close_all()  # never carry a connection into the fork of a new cluster
        progress.reset()
        cluster = Cluster()
        cluster.start()
        while cluster.sentinel is not None and cluster.sentinel.is_alive():
            time.sleep(check_every)
            if cluster.stop_event is None:  # stopping on a signal
                break
            if stalled(queue, progress, limit):
                log.critical(
                    "cluster wedged: no task acknowledged for %.0f s; restarting it",
                    time.time() - progress.acknowledged.value,
                    extra={"queue": queue},
                )
                break
            # The stall rule on a window of two beats: beat only while tasks are acknowledged,
            # or while idle with nothing waiting.
            if not heart.seconds_until_due() and not stalled(queue, progress, 2 * heart.every):
                beat_for(heart)
        else:
            if (
                cluster.stop_event is None
                or cluster.sentinel is None
                or (cluster.sentinel.exitcode == 0)
            ):
                return  # a clean stop
            log.critical(
                "cluster sentinel died (exit %s); restarting the cluster",
                cluster.sentinel.exitcode,
                extra={"queue": queue},
            )
        if cluster.stop_event is None:
            return
        kill_cluster_processes()
