"""The tailer: one thread per web process that follows the event log and hands each batch to the
channel-layer group every dashboard consumer is in (docs/architecture.md §7).

Cost: one query per poll interval per web process, whatever the number of clients; it runs only
while the process has a dashboard client. It polls, on every database: a NOTIFY from each
deciding transaction would cost every session LISTENing in the database a transaction per
decision, and the engine would pay for a dashboard nobody has open. With REDIS_URL the group
spans processes, so only one tailer of the site publishes: the web processes that have clients
hold a short Redis lease in turn, and the holder records how far it got so that a successor
continues from there. Either way a consumer checks that each batch starts where the last one
ended and reads any gap from the log itself (consumer.py), so a lost, repeated or late batch, or
two tailers for a moment, cost a query, never an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from typing import Protocol

from channels.layers import get_channel_layer
from django.db import DatabaseError, InterfaceError, connection

from sagas.config import DashboardConfig, dashboard_config
from sagas.dashboard import feed
from sagas.dashboard.feed import Batch, Position

log = logging.getLogger("sagas.dashboard")

GROUP = "sagas.dashboard"
COUNTS_EVERY = 1.0  # seconds: status counts are recounted at most this often, and only after events


class Leadership(Protocol):
    def hold(self) -> bool:
        """Take or keep the right to publish; False: stand by."""

    def release(self) -> None: ...

    def resume_from(self) -> Position | None:
        """Where the previous holder stopped, if known."""

    def reached(self, position: Position) -> None: ...


class EveryProcess:
    """In-process channel layer: each web process publishes to its own clients."""

    def hold(self) -> bool:
        return True

    def release(self) -> None:
        pass

    def resume_from(self) -> Position | None:
        return None

    def reached(self, position: Position) -> None:
        pass


HOLD = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not owner then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLease:
    """Redis channel layer: one publisher for the site, by a lease that its holder renews at
    every look. A holder that stalls past the lease may publish beside its successor for a moment;
    consumers drop what they already have."""

    def __init__(self, url: str, site: str, ttl: float = 3.0) -> None:
        import redis

        # One lease per database: sites that share a Redis do not share a tailer.
        self.KEY = f"sagas:dashboard:{site}:tailer"
        self.POSITION = f"sagas:dashboard:{site}:position"
        self.redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self.me = uuid.uuid4().hex
        self.ttl_ms = int(ttl * 1000)
        self._hold = self.redis.register_script(HOLD)
        self._release = self.redis.register_script(RELEASE)

    def hold(self) -> bool:
        try:
            return bool(self._hold(keys=[self.KEY], args=[self.me, self.ttl_ms]))
        except self.errors as exc:
            log.warning("dashboard lease unavailable", extra={"error": str(exc)[:200]})
            return False

    def release(self) -> None:
        with contextlib.suppress(*self.errors):  # else it expires by itself
            self._release(keys=[self.KEY], args=[self.me])

    def resume_from(self) -> Position | None:
        try:
            raw = self.redis.get(self.POSITION)
        except self.errors:
            return None
        return Position.parse(raw.decode()) if isinstance(raw, bytes) else None

    def reached(self, position: Position) -> None:
        # Lost: a successor starts at the head and consumers read the gap.
        with contextlib.suppress(*self.errors):
            self.redis.set(self.POSITION, str(position), ex=3600)


class Tailer(threading.Thread):
    def __init__(
        self,
        hub: Hub,
        loop: asyncio.AbstractEventLoop,
        leadership: Leadership,
        config: DashboardConfig,
    ) -> None:
        super().__init__(name="dashboard-tailer", daemon=True)
        self.hub, self.loop, self.leadership, self.config = hub, loop, leadership, config
        self.stopping = threading.Event()
        self.began = time.monotonic()
        self.reads = 0  # queries made

    def run(self) -> None:
        try:
            self._follow()
        except Exception:
            log.exception("dashboard tailer stopped")
            raise
        finally:
            self.leadership.release()
            connection.close()

    def _follow(self) -> None:
        config = self.config
        position: Position | None = None
        last_read = last_counts = 0.0
        counts_due, failures = True, 0
        while self.hub.keeps(self):
            pause = last_read + config.poll_seconds - time.monotonic()
            if pause > 0:
                self.stopping.wait(pause)
                continue
            if not self.leadership.hold():
                position, last_read = None, time.monotonic()
                continue
            want_counts = counts_due and time.monotonic() - last_counts >= COUNTS_EVERY
            try:
                if position is None:
                    position = self.leadership.resume_from() or feed.head()
                batch = feed.read_after(position, limit=config.batch_limit, counts=want_counts)
                failures = 0
            except (DatabaseError, InterfaceError) as exc:
                failures += 1
                log.warning("dashboard tailer: database error", extra={"error": str(exc)[:300]})
                connection.close()
                self.stopping.wait(min(5.0, 0.25 * 2**failures))
                continue
            self.reads += 1
            last_read = time.monotonic()
            if want_counts:
                last_counts, counts_due = last_read, False
            if batch.events:
                counts_due = True
            if batch.events or batch.counts is not None:
                if not self._publish(batch):
                    return
                position = batch.end
                self.leadership.reached(position)

    def _publish(self, batch: Batch) -> bool:
        """Hand the batch to the group from the server's event loop; one at a time, in order."""
        layer = get_channel_layer()
        assert layer is not None
        publish = layer.group_send(GROUP, batch.message())
        try:
            sent = asyncio.run_coroutine_threadsafe(publish, self.loop)
        except RuntimeError:  # the event loop is gone: the server is stopping
            publish.close()
            return False
        try:
            sent.result(timeout=10)
        except Exception as exc:  # the layer failed (Redis down): consumers will read the gap
            log.warning("dashboard batch not published", extra={"error": str(exc)[:300]})
        return True


class Hub:
    """This process's dashboard clients and its one tailer, started with the first client and
    stopped after the last one leaves."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clients = 0
        self.tailer: Tailer | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        with self.lock:
            self.clients += 1
            if self.tailer is not None and self.tailer.loop is not loop:
                self.tailer.stopping.set()  # a new event loop (tests): start afresh
            if self.tailer is None or self.tailer.stopping.is_set():  # none, or one on its way out
                config = dashboard_config()
                leadership: Leadership = (
                    RedisLease(config.redis_url, site=str(connection.settings_dict["NAME"]))
                    if config.redis_url
                    else EveryProcess()
                )
                self.tailer = Tailer(self, loop, leadership, config)
                self.tailer.start()

    def detach(self) -> None:
        with self.lock:
            self.clients = max(0, self.clients - 1)
            if not self.clients and self.tailer is not None:
                self.tailer.stopping.set()

    def keeps(self, tailer: Tailer) -> bool:
        """Whether `tailer` should go on; when not, it is forgotten in the same step, so that the
        next client starts a new one."""
        with self.lock:
            if self.tailer is tailer and self.clients and not tailer.stopping.is_set():
                return True
            if self.tailer is tailer:
                self.tailer = None
            return False


hub = Hub()
