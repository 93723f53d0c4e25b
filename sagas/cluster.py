"""A watchdog around a django-q2 cluster: restarts it when it wedges.

A django-q2 cluster passes tasks between its processes through multiprocessing queues, and a
process killed while it holds a queue's lock (an idle worker waiting in `get()` holds it most of
the time; the pusher and the monitor hold theirs while writing and reading) leaves that lock held
forever: the sentinel respawns the process, but the cluster never moves again (upstream #23).
The watchdog sees this from outside: tasks were handed on that no worker takes, or tasks wait
claimable in the queue, or task bodies keep finishing, yet none has been acknowledged for a
while. It then kills the whole cluster and starts a fresh one.
Nothing is lost: unacknowledged tasks are delivered again after `retry`, and every command is
idempotent. A stop signal (SIGTERM, SIGINT) stops the cluster and is never taken for a crash
(see StopSignal).

The watchdog also beats for its cluster (sagas.heartbeat), and only while the cluster is healthy:
acknowledging tasks, or idle with nothing waiting. A wedged cluster stops beating before the
watchdog restarts it, and a cluster that keeps wedging, or a watchdog that is gone, stays silent,
which is what the alerts watch.

Through the same shared values, the workers tell the pusher how long tasks have lately taken, so
that it merges no more tasks than fit well within Q_TIMEOUT (`merge_size`).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading
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

from sagas.config import saga_config
from sagas.heartbeat import Heart
from sagas.models import HeartbeatRole

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36


@dataclass
class Progress:
    """Shared with every process the cluster forks (created before the fork)."""

    executed: Any  # multiprocessing.Value('d'): when a task body last finished
    acknowledged: Any  # when a task was last acknowledged (by its worker or the monitor)
    taken: Any  # when a worker last took a task from the cluster's task queue
    # When the pusher handed tasks on for the workers for the first time since a worker last
    # took one; before `taken` if none was handed on since. A task carried by its notification
    # is not claimable before `retry`: this shows that it arrived and that no worker takes it.
    handed_on: Any
    # Seconds a command task has taken lately (a moving average, 0 before the first), by which
    # the pusher sizes the tasks it merges (`merge_size`).
    task_seconds: Any

    @classmethod
    def new(cls) -> Progress:
        # Without a lock: a process killed while holding one would leave every other writer,
        # and the watchdog reading, blocked for good. One process writes a double at a time, or
        # two write nearly the same moment; the watchdog reads a value either way.
        now = time.time()
        executed, acknowledged, taken, handed_on = (
            multiprocessing.Value("d", now, lock=False) for _ in range(4)
        )
        task_seconds = multiprocessing.Value("d", 0.0, lock=False)
        return cls(executed, acknowledged, taken, handed_on, task_seconds)

    def reset(self) -> None:
        now = time.time()
        self.executed.value = self.acknowledged.value = now
        self.taken.value = self.handed_on.value = now


progress: Progress | None = None  # set in the qcluster process before the cluster starts


def mark(which: str) -> None:
    """Record progress from inside the cluster (a no-op outside a watched cluster)."""
    if progress is not None:
        getattr(progress, which).value = time.time()


def handed_on() -> None:
    """Record, from the pusher, that tasks went on for the workers: the first time since a
    worker last took one counts (a no-op outside a watched cluster)."""
    if progress is not None and progress.handed_on.value <= progress.taken.value:
        progress.handed_on.value = time.time()


# A merged task should take at most this share of Q_TIMEOUT, by the time tasks have taken lately:
# django-q2 kills a worker whose task overruns, and its tasks then wait for `retry`.
MERGE_BUDGET = 0.25


def tasks_took(seconds: float, tasks: int) -> None:
    """Record, from a worker, that `tasks` command tasks took `seconds` (a no-op outside a watched
    cluster). The average moves a fifth of the way to each new figure."""
    if progress is not None and tasks:
        average = progress.task_seconds.value
        each = seconds / tasks
        progress.task_seconds.value = each if average == 0 else average + (each - average) / 5


def merge_size() -> int:
    """How many carried tasks the pusher merges at most: Q_MERGE_TASKS, fewer where tasks have
    lately taken so long that a merge of that many would not fit in MERGE_BUDGET of Q_TIMEOUT
    (a service that turned slow: a payment gateway, say), down to 1, each alone."""
    most = saga_config().merge_tasks
    each = progress.task_seconds.value if progress is not None else 0.0
    if each > 0 and Conf.TIMEOUT:
        most = min(most, max(1, int(MERGE_BUDGET * Conf.TIMEOUT / each)))
    return most


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
    """No acknowledgement for `limit` seconds, and yet work: tasks handed on that long ago that
    no worker has taken since (workers that cannot reach the task queue), task bodies finishing
    without acknowledgements (a wedged monitor), or tasks claimable and unclaimed (a pusher that
    does not claim)."""
    now = time.time()
    acknowledged = watched.acknowledged.value
    if now - acknowledged < limit:
        return False
    handed_on, taken = watched.handed_on.value, watched.taken.value
    not_taken = handed_on > taken and now - handed_on >= limit
    busy_without_acks = watched.executed.value - acknowledged > limit / 2
    return not_taken or busy_without_acks or claimable_waiting(queue, older_than=2.0)


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


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
POLL_SECONDS = 0.1
# A signal sent to the whole process group kills the sentinel as it reaches this process: give
# our handler this long before taking a dead sentinel for a crash.
SIGNAL_GRACE_SECONDS = 1.0


class StopSignal:
    """SIGTERM or SIGINT, remembered for the watch loop.

    django-q2's own handler (Cluster.sig_handler) stops the cluster inside the handler: it sets
    the stop event and joins the sentinel. When the signal goes to the whole process group, as
    honcho's and systemd's do, the sentinel (SIGTERM at its default) dies at the same moment,
    and then either the handler finds it dead and returns without a word, so the watchdog takes
    the death for a crash and restarts the cluster, or it blocks for good in the stop event's
    `set()`, which waits for the dead sentinel to acknowledge the wake-up. This handler only
    records the signal; the loop does the stopping, with bounded waits.
    """

    def __init__(self) -> None:
        self.received: int | None = None

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._record)

    def _record(self, signum: int, frame: object) -> None:
        self.received = signum

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True as soon as a stop signal has arrived."""
        deadline = time.monotonic() + seconds
        while self.received is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(POLL_SECONDS, remaining))
        return True


def run_watched(queue: str, check_every: float = 2.0) -> None:
    """Run a django-q2 cluster for `queue` until SIGTERM/SIGINT, restarting it if it wedges
    or if its sentinel dies. A stop signal never leads to a restart. Beats for the cluster
    while it is healthy."""
    global progress
    # Orphans of a killed sentinel become our children, so they can be found and stopped.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    progress = Progress.new()
    limit = stall_seconds()
    heart = Heart(HeartbeatRole.CLUSTER, queue=queue)
    stop = StopSignal()
    stop.install()
    while stop.received is None:
        connections.close_all()  # never carry a connection into the fork of a new cluster
        progress.reset()
        # Cluster() installs django-q2's handlers: ours go back on before a signal can reach them.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            cluster = Cluster()
            stop.install()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        try:
            cluster.start()
        except RuntimeError:  # the sentinel died while starting
            if stop.received is None:
                raise
        trouble = watch(cluster, queue, stop, limit, check_every, heart)
        if trouble is None:
            log.info("stopping the cluster on a signal", extra={"queue": queue})
            stop_cluster(cluster)
            return
        log.critical("%s; restarting the cluster", trouble, extra={"queue": queue})
        kill_cluster_processes()


def watch(
    cluster: Cluster,
    queue: str,
    stop: StopSignal,
    limit: float,
    check_every: float,
    heart: Heart | None = None,
) -> str | None:
    """Wait for a stop signal (None) or for a reason to restart the cluster (returned); beat
    for the cluster meanwhile, while it is healthy."""
    assert progress is not None
    while not stop.wait(check_every):
        sentinel = cluster.sentinel
        if sentinel is None or not sentinel.is_alive():
            if stop.wait(SIGNAL_GRACE_SECONDS):
                return None
            exitcode = sentinel.exitcode if sentinel is not None else None
            return f"cluster sentinel died (exit {exitcode})"
        if stalled(queue, progress, limit):
            return (
                f"cluster wedged: no task acknowledged for "
                f"{time.time() - progress.acknowledged.value:.0f} s"
            )
        # The stall rule on a window of two beats: beat only while tasks are acknowledged, or
        # while idle with nothing waiting.
        if (
            heart
            and not heart.seconds_until_due()
            and not stalled(queue, progress, 2 * heart.every)
        ):
            beat_for(heart)
    return None


def stop_cluster(cluster: Cluster) -> None:
    """Stop the cluster after its running tasks if its sentinel lives, then make sure nothing
    of it is left."""
    sentinel = cluster.sentinel
    if sentinel is not None and sentinel.is_alive() and cluster.stop_event is not None:
        # set() waits for the sentinel to acknowledge; should it die meanwhile, that wait never
        # ends: leave it to a daemon thread and bound ours by the sentinel's own stop.
        threading.Thread(target=cluster.stop_event.set, daemon=True).start()
        sentinel.join(stop_grace_seconds())
    kill_cluster_processes()


def stop_grace_seconds() -> float:
    """How long a stopping sentinel may take: its workers finish their running task first."""
    return (Conf.TIMEOUT or 30) + 5.0
